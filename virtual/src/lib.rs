//! distzero-virtual: virtual mode, one Docker container per machine.
//!
//! - [`image`]: the agent image, built without a registry (the agent bundle,
//!   a static agent or the test binary with its libraries, in a root
//!   filesystem tar, imported and tagged by the bundle's hash);
//! - [`engine`]: the Docker engine driven synchronously, the labels of a
//!   run, and the sweep of what killed runs left behind;
//! - [`provider`]: [`DockerProvider`], the `distzero_real::provider::Provider`
//!   that starts, kills, freezes and cuts off containers;
//! - [`run_workflow`]: what `distzero::workflow_tests!` calls for `virtual_mode::*`.
//!
//! Settings come from `distzero_core::Settings` only: `DISTZERO_DOCKER_HOST`,
//! `DISTZERO_DOCKER_SUBNET`, `DISTZERO_AGENT_BIN`, `DISTZERO_AGENT_ORPHAN_SECS`.

pub mod engine;
pub mod image;
mod netfilter;
pub mod provider;

pub use bollard;
pub use engine::{Controller, Engine, SweepReport};
pub use image::AgentImage;
pub use provider::DockerProvider;

use distzero_real::provider::Provider;

/// Run one workflow test body on a cluster of containers (a
/// `distzero_real::remote::RemoteCluster` over a [`DockerProvider`]) whose
/// agents come from `agent` (`distzero::workflow_tests!` passes its own test
/// binary). Panics, failing the test, with a message naming the test, the
/// cause and the log folder (`<DISTZERO_LOG_DIR>/<test>/virtual-<run id>/`).
pub fn run_workflow(
    test_name: &str,
    agent: &image::AgentSource,
    body: fn(&mut dyn distzero_core::Cluster) -> distzero_core::Result<()>,
) {
    distzero_real::remote::run_remote_workflow(
        test_name,
        distzero_core::Mode::Virtual,
        |settings, run_id, _log_dir| {
            let provider = DockerProvider::for_run_with_agent(settings, run_id, agent)?;
            Ok(Box::new(provider) as Box<dyn Provider>)
        },
        body,
    )
}
