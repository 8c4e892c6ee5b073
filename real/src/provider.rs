//! The seam between the remote cluster (controller side, mode-free) and the
//! places agents run: local processes, Docker containers, cloud hosts.
//!
//! A provider starts and stops agent processes and applies the faults that
//! need the host (kill, freeze, packet filters). Everything else (spawning
//! nodes, calls, latency, holds) goes to the agents over the wire.
//!
//! Shared contract of `src/remote.rs` (the RemoteCluster), `virtual/` and
//! `cloud/`: change it only additively (new methods with defaults).

use distzero_core::error::Result;
use distzero_core::ids::MachineId;
use std::net::SocketAddr;
use std::path::Path;

/// Everything an agent needs to start; the provider turns it into a command
/// line (`AgentLaunch::args`) and writes the cookie as the first line of
/// the agent's stdin: never in its arguments, its environment or a
/// container's configuration.
#[derive(Clone, Debug)]
pub struct AgentLaunch {
    pub machine: MachineId,
    pub run_id: String,
    pub cookie: String,
    pub seed: u64,
    /// Port the agent listens on, for the controller and its peers.
    pub port: u16,
    /// Unix time (microseconds) of the cluster's start, so agents log times
    /// relative to the same origin as the controller.
    pub epoch_micros: u64,
    /// Seconds without a controller after which the agent exits.
    pub orphan_secs: u64,
}

impl AgentLaunch {
    /// Arguments for an agent that listens on every address of its host
    /// (`0.0.0.0`): right inside a container, whose network namespace holds
    /// only its own interfaces. Paths are the provider's choice.
    pub fn args(&self, log_dir: &str, data_dir: &str) -> Vec<String> {
        self.args_on(std::net::Ipv4Addr::UNSPECIFIED.into(), log_dir, data_dir)
    }

    /// Arguments for an agent that listens on `bind` only: the address the
    /// controller and its peers use (loopback for local providers).
    pub fn args_on(&self, bind: std::net::IpAddr, log_dir: &str, data_dir: &str) -> Vec<String> {
        vec![
            "--machine".into(),
            self.machine.0.to_string(),
            "--run-id".into(),
            self.run_id.clone(),
            "--seed".into(),
            self.seed.to_string(),
            "--listen".into(),
            SocketAddr::new(bind, self.port).to_string(),
            "--epoch-micros".into(),
            self.epoch_micros.to_string(),
            "--orphan-secs".into(),
            self.orphan_secs.to_string(),
            "--log-dir".into(),
            log_dir.into(),
            "--data-dir".into(),
            data_dir.into(),
        ]
    }
}

/// Where a started machine's agent can be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineAddrs {
    /// The controller dials this.
    pub control: SocketAddr,
    /// Peer agents dial this (may differ from `control`, e.g. a container's
    /// address on its own network as seen by other containers).
    pub peer: SocketAddr,
}

/// Starts and stops agents and applies host-level faults.
pub trait Provider {
    /// `virtual`, `cloud`, `loopback`: used in log folder names.
    fn mode(&self) -> distzero_core::Mode;

    /// Start the agent of a new machine; return once its process runs (the
    /// remote cluster then dials it, retrying for a while).
    fn start(&mut self, launch: &AgentLaunch) -> Result<MachineAddrs>;

    /// Kill the agent process at once (SIGKILL): no clean-up runs.
    fn kill(&mut self, machine: MachineId) -> Result<()>;

    /// Start the agent again after `kill`, with the same launch; its disk is
    /// kept. Returns its (possibly new) addresses.
    fn restart(&mut self, launch: &AgentLaunch) -> Result<MachineAddrs>;

    /// Freeze the process (SIGSTOP or docker pause) / thaw it.
    fn pause(&mut self, machine: MachineId) -> Result<()>;
    fn resume(&mut self, machine: MachineId) -> Result<()>;

    /// Drop real packets from `from` to `to` if this host allows it. Returns
    /// false when it cannot (the agent-level filter then acts alone).
    fn cut(&mut self, from: MachineId, to: MachineId) -> Result<bool> {
        let _ = (from, to);
        Ok(false)
    }

    fn heal(&mut self, from: MachineId, to: MachineId) -> Result<()> {
        let _ = (from, to);
        Ok(())
    }

    /// Copy every machine's JSON-lines log (`<machine>.jsonl`, `.log`) into `dir`.
    fn collect_logs(&mut self, dir: &Path) -> Result<()>;

    /// Stop and remove everything this run created. Idempotent.
    fn shutdown(&mut self) -> Result<()>;
}
