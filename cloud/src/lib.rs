pub fn run_workflow(_n:&str,_f:fn(&mut dyn distzero::Cluster)->distzero::Result<()>){todo!()}
