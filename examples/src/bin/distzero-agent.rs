//! The agent binary shipped to containers and hosts: hosts the example
//! nodes. Arguments: see `distzero::provider::AgentLaunch::args`; the cluster
//! cookie comes in `DISTZERO_COOKIE`.

fn main() {
    distzero::agent::main_with(distzero_examples::registry())
}
