//! The Docker engine, driven synchronously: one bollard client and a
//! current-thread tokio runtime that runs each call to completion.
//!
//! Also the labels every run puts on what it creates, the queries by label,
//! and the sweep that removes what killed runs left behind.

use bollard::models::{ContainerSummary, Network};
use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, RemoveContainerOptions,
};
use bollard::Docker;
use distzero_core::{Error, Result, Settings};
use std::collections::HashMap;
use std::future::Future;

/// Label carrying the run id; on every container and network of a run.
pub const LABEL_RUN: &str = "distzero.run";
/// Label carrying the controller's pid.
pub const LABEL_PID: &str = "distzero.controller-pid";
/// Label carrying the controller's start time (clock ticks since boot, from
/// `/proc/<pid>/stat`), so that a reused pid is not taken for the controller.
pub const LABEL_START: &str = "distzero.controller-start";
/// Label carrying the controller's host name: a sweep only judges runs of its
/// own host, whose pids it can see.
pub const LABEL_HOST: &str = "distzero.controller-host";

/// Who controls a run: the process that created it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Controller {
    pub pid: u32,
    /// Start time of the process in clock ticks since boot; 0 if unknown.
    pub start: u64,
    pub host: String,
}

impl Controller {
    /// This process.
    pub fn current() -> Controller {
        let pid = std::process::id();
        Controller {
            pid,
            start: process_start(pid).unwrap_or(0),
            host: host_name(),
        }
    }

    /// The labels that name this controller.
    pub fn labels(&self, run_id: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_RUN.to_string(), run_id.to_string()),
            (LABEL_PID.to_string(), self.pid.to_string()),
            (LABEL_START.to_string(), self.start.to_string()),
            (LABEL_HOST.to_string(), self.host.clone()),
        ])
    }

    /// Read back from labels; None if they do not name a controller.
    pub fn from_labels(labels: &HashMap<String, String>) -> Option<Controller> {
        let pid = labels.get(LABEL_PID)?.parse().ok()?;
        let start = labels
            .get(LABEL_START)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let host = labels.get(LABEL_HOST).cloned().unwrap_or_default();
        Some(Controller { pid, start, host })
    }

    /// Whether this controller still runs. Only meaningful for controllers of
    /// this host; a controller of another host counts as alive (not ours to judge).
    pub fn is_alive(&self) -> bool {
        if !self.host.is_empty() && self.host != host_name() {
            return true;
        }
        match process_start(self.pid) {
            None => false,
            Some(start) => self.start == 0 || start == self.start,
        }
    }
}

/// Start time (field 22 of `/proc/<pid>/stat`) of a live process.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields resume after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state); field 22 is the 20th of rest.
    let field = rest.split_whitespace().nth(19)?;
    // A zombie still has an entry; it is not alive.
    if rest.split_whitespace().next() == Some("Z") {
        return None;
    }
    field.parse().ok()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// What a sweep removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Names of the removed containers.
    pub containers: Vec<String>,
    /// Names of the removed networks.
    pub networks: Vec<String>,
}

/// A connected Docker engine with its own runtime.
pub struct Engine {
    rt: tokio::runtime::Runtime,
    docker: Docker,
    host: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("host", &self.host).finish()
    }
}

impl Engine {
    /// Connect to `DISTZERO_DOCKER_HOST` and agree on an API version.
    pub fn connect(settings: &Settings) -> Result<Engine> {
        Engine::connect_to(settings.docker_host())
    }

    /// Connect to the engine at `host` (a `DISTZERO_DOCKER_HOST` value).
    pub fn connect_to(host: &str) -> Result<Engine> {
        let host = host.to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the runtime that drives Docker", e))?;
        let docker = {
            let _guard = rt.enter();
            Docker::connect_with_host(&host).map_err(|e| connect_error(&host, &e))?
        };
        let mut engine = Engine {
            rt,
            docker: docker.clone(),
            host: host.clone(),
        };
        engine.docker = engine
            .block(docker.negotiate_version())
            .map_err(|e| connect_error(&host, &e))?;
        Ok(engine)
    }

    /// The engine's address (`DISTZERO_DOCKER_HOST`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the engine runs on this host (a unix socket), so that its
    /// container pids are ours to `nsenter`.
    pub fn is_local(&self) -> bool {
        self.host.starts_with("unix://")
    }

    /// The bollard client, for calls this crate does not wrap.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Run a future to completion. Works from inside another runtime too (a
    /// `Drop` in async code): then a helper thread drives it.
    pub fn block<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(|| self.rt.block_on(fut))
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
        } else {
            self.rt.block_on(fut)
        }
    }

    /// Map a bollard error into ours, naming what was attempted.
    pub fn err(&self, what: &str, e: bollard::errors::Error) -> Error {
        docker_error(&self.host, what, e)
    }

    /// Containers (running or not) labelled with a run: `Some(id)` for one
    /// run, `None` for every distzero run.
    pub fn containers(&self, run_id: Option<&str>) -> Result<Vec<ContainerSummary>> {
        let opts = ListContainersOptions {
            all: true,
            filters: Some(label_filter(run_id)),
            ..Default::default()
        };
        self.block(self.docker.list_containers(Some(opts)))
            .map_err(|e| self.err("listing containers", e))
    }

    /// Networks labelled with a run (see [`Engine::containers`]).
    pub fn networks(&self, run_id: Option<&str>) -> Result<Vec<Network>> {
        let opts = ListNetworksOptions {
            filters: Some(label_filter(run_id)),
        };
        self.block(self.docker.list_networks(Some(opts)))
            .map_err(|e| self.err("listing networks", e))
    }

    /// Remove every container and network of a run (force). Returns what it
    /// removed; the first failure is returned after trying everything.
    pub fn remove_run(&self, run_id: &str) -> Result<SweepReport> {
        let containers = self.containers(Some(run_id))?;
        let networks = self.networks(Some(run_id))?;
        self.remove(containers, networks)
    }

    fn remove(
        &self,
        containers: Vec<ContainerSummary>,
        networks: Vec<Network>,
    ) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        let mut first_err = None;
        // Containers go at once (each removal waits for its kill), then the networks.
        let targets: Vec<(String, String)> = containers
            .into_iter()
            .filter_map(|c| {
                let id = c.id?;
                Some((summary_name(&c.names).unwrap_or_else(|| id.clone()), id))
            })
            .collect();
        let docker = &self.docker;
        let removals = targets.iter().map(|(name, id)| async move {
            let opts = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            (name, docker.remove_container(id, Some(opts)).await)
        });
        for (name, res) in self.block(futures_util::future::join_all(removals)) {
            match res {
                Ok(()) => report.containers.push(name.clone()),
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    first_err.get_or_insert(self.err(&format!("removing container {name}"), e));
                }
            }
        }
        for n in networks {
            let Some(id) = n.id else { continue };
            let name = n.name.unwrap_or_else(|| id.clone());
            match self.block(self.docker.remove_network(&id)) {
                Ok(()) => report.networks.push(name),
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    first_err.get_or_insert(self.err(&format!("removing network {name}"), e));
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Remove containers and networks of runs whose controller is gone (a
    /// killed or crashed test). Runs of live controllers, and of other hosts,
    /// are left alone.
    pub fn sweep(&self) -> Result<SweepReport> {
        let dead = |labels: &Option<HashMap<String, String>>| {
            labels
                .as_ref()
                .and_then(Controller::from_labels)
                .is_some_and(|c| !c.is_alive())
        };
        let containers: Vec<_> = self
            .containers(None)?
            .into_iter()
            .filter(|c| dead(&c.labels))
            .collect();
        let networks: Vec<_> = self
            .networks(None)?
            .into_iter()
            .filter(|n| dead(&n.labels))
            .collect();
        self.remove(containers, networks)
    }
}

fn label_filter(run_id: Option<&str>) -> HashMap<String, Vec<String>> {
    let label = match run_id {
        Some(id) => format!("{LABEL_RUN}={id}"),
        None => LABEL_RUN.to_string(),
    };
    HashMap::from([("label".to_string(), vec![label])])
}

fn summary_name(names: &Option<Vec<String>>) -> Option<String> {
    names
        .as_ref()?
        .first()
        .map(|n| n.trim_start_matches('/').to_string())
}

/// Whether Docker answered 404 (no such object).
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// An error with its chain of causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        cur = s.source();
    }
    text
}

fn connect_error(host: &str, e: &bollard::errors::Error) -> Error {
    let text = chain(e);
    // The socket itself tells best why it cannot be used.
    let socket_denied = host.strip_prefix("unix://").is_some_and(|path| {
        std::os::unix::net::UnixStream::connect(path)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    });
    if socket_denied || text.to_ascii_lowercase().contains("permission denied") {
        let socket = host.trim_start_matches("unix://");
        return Error::Infra(format!(
            "no permission on the Docker socket {socket}: add this user to the `docker` group \
             (then log in again) or run as root; or point DISTZERO_DOCKER_HOST elsewhere ({text})"
        ));
    }
    if matches!(e, bollard::errors::Error::UnsupportedURISchemeError { .. }) {
        return Error::Infra(format!(
            "DISTZERO_DOCKER_HOST={host:?} is not a Docker address this build supports: use unix:///path/to/docker.sock or tcp://host:port"
        ));
    }
    Error::Infra(format!(
        "cannot reach the Docker engine at {host}: {text}. Is the Docker daemon running? \
         Set DISTZERO_DOCKER_HOST to its address (default unix:///var/run/docker.sock)"
    ))
}

/// Map a bollard error: connection failures get the "is Docker running" hint.
pub fn docker_error(host: &str, what: &str, e: bollard::errors::Error) -> Error {
    use bollard::errors::Error as B;
    match e {
        B::DockerResponseServerError {
            status_code,
            message,
        } => Error::Infra(format!(
            "Docker refused {what}: {message} (HTTP {status_code})"
        )),
        B::SocketNotFoundError(_) | B::HyperResponseError { .. } | B::IOError { .. } => {
            let base = connect_error(host, &e);
            Error::Infra(format!("{what}: {base}"))
        }
        other => Error::Infra(format!("{what}: Docker error: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_labels_round_trip() {
        let me = Controller::current();
        assert!(me.start > 0);
        assert!(me.is_alive());
        let labels = me.labels("r1");
        assert_eq!(labels[LABEL_RUN], "r1");
        assert_eq!(Controller::from_labels(&labels), Some(me.clone()));
        let reused = Controller {
            start: me.start + 1,
            ..me.clone()
        };
        assert!(
            !reused.is_alive(),
            "a pid with another start time is another process"
        );
        let other_host = Controller {
            host: "elsewhere.example".into(),
            pid: u32::MAX - 1,
            ..me
        };
        assert!(other_host.is_alive(), "runs of other hosts are not judged");
    }

    #[test]
    fn a_reaped_process_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let c = Controller {
            pid,
            start: 0,
            host: host_name(),
        };
        assert!(!c.is_alive());
    }
}
