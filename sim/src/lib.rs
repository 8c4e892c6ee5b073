pub fn run_workflow(_n:&str,_r:distzero::Registry,_f:fn(&mut dyn distzero::Cluster)->distzero::Result<()>){todo!()}
