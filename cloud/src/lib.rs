//! distzero-cloud: cloud mode, one agent per machine on hosts reached over SSH.
//!
//! - [`inventory`]: where hosts come from: the [`Inventory`] trait (acquire
//!   hosts for a run, release them) and [`StaticInventory`], existing hosts
//!   from `DISTZERO_CLOUD_HOSTS`; a provisioning inventory (EC2, Kubernetes)
//!   implements the same trait;
//! - [`ssh`]: the OpenSSH client (`ssh`, `scp`) run non-interactively with
//!   deadlines, its failures classified (unreachable, auth refused, host key);
//!   shared connections and long-lived shell sessions for fast faults;
//! - [`provider`]: [`SshProvider`], the `distzero_real::provider::Provider` that
//!   copies the agent bundle (the test binary with its libraries and loader,
//!   or a static agent), starts it detached, kills (SIGKILL), freezes
//!   (SIGSTOP/SIGCONT), cuts links with iptables tagged with the run id, pulls
//!   the logs back and cleans up; the host side is `hostctl.sh`;
//! - [`ec2`]: [`Ec2Inventory`], machines launched on EC2 per run
//!   (`DISTZERO_CLOUD_PROVIDER=ec2`), tagged with the run, terminated after
//!   it, on failure and on interrupt; dead runs swept by tag; [`aws`]: the
//!   small EC2 Query API client it uses (standard credentials, SigV4);
//! - [`run_workflow`]: what `distzero::workflow_tests!` calls for `cloud_mode::*`.
//!
//! Settings come from `distzero_core::Settings` only: `DISTZERO_CLOUD_HOSTS`,
//! `DISTZERO_CLOUD_USER`, `DISTZERO_CLOUD_SSH_KEY`,
//! `DISTZERO_CLOUD_KNOWN_HOSTS`, `DISTZERO_CLOUD_DIR`,
//! `DISTZERO_AGENT_BIN`,
//! `DISTZERO_AGENT_ORPHAN_SECS`. With no cloud account, `scripts/cloud-standin.sh`
//! makes local stand-in hosts (network namespaces with an sshd each):
//!
//! ```text
//! sudo scripts/cloud-standin.sh run 6 -- cargo test cloud
//! ```
//!
//! and for instances provisioned through the EC2 API, moto's EC2 server
//! with an SSH host at each instance's address:
//!
//! ```text
//! sudo scripts/ec2-standin.sh run -- cargo test --test workflows cloud
//! ```

pub mod aws;
pub mod ec2;
pub mod inventory;
pub mod provider;
pub mod ssh;

pub use ec2::Ec2Inventory;
pub use inventory::{Host, Inventory, StaticInventory};
pub use provider::SshProvider;

use distzero_real::provider::Provider;

/// Run one workflow test body on agents deployed to the cloud hosts of the
/// settings (a `distzero_real::remote::RemoteCluster` over an [`SshProvider`]).
/// Panics, failing the test, with a message naming the test, the cause and
/// the log folder (`<DISTZERO_LOG_DIR>/<test>/cloud-<run id>/`); with no
/// `DISTZERO_CLOUD_HOSTS`, the message says how to get hosts.
pub fn run_workflow(
    test_name: &str,
    agent: &distzero_real::artifact::AgentSource,
    body: fn(&mut dyn distzero_core::Cluster) -> distzero_core::Result<()>,
) {
    distzero_real::remote::run_remote_workflow(
        test_name,
        distzero_core::Mode::Cloud,
        |settings, run_id, log_dir| {
            let provider = SshProvider::for_run_with_agent(settings, run_id, log_dir, agent)?;
            Ok(Box::new(provider) as Box<dyn Provider>)
        },
        body,
    )
}
