//! `DockerProvider`: one container per machine on one bridge network per run.
//!
//! Invariants:
//! - everything a run creates carries the labels of [`Controller::labels`],
//!   so `shutdown` (and the sweep of a later run, if this one is killed)
//!   finds it by label, not by memory;
//! - machine `mK` has hostname `mK` and the fixed address `<subnet>.(K+2)`,
//!   which survives kill and restart (the container is restarted, not
//!   recreated, so its filesystem, /data included, persists);
//! - a cut is recorded before it is applied, and re-applied when the
//!   receiving container restarts (a restarted container has a new network
//!   namespace).

use crate::engine::{Controller, Engine};
use crate::image::{self, AgentImage, AgentSource, Artifact, BUNDLE_DIR, DATA_DIR, LOG_DIR};
use crate::netfilter::{self, DropRule};
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig,
};
use bollard::models::{ContainerState, NetworkCreateRequest, NetworkingConfig};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, KillContainerOptions, LogsOptions,
    RemoveContainerOptions,
};
use distzero_core::{Error, MachineId, Mode, Result, Settings};
use distzero_real::provider::{AgentLaunch, MachineAddrs, Provider};
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a started agent has to listen on its port.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Highest machine id that fits a /24 (addresses .2 ..= .254).
pub const MAX_MACHINE: u32 = 252;

/// The network of a run.
#[derive(Clone, Debug)]
struct RunNet {
    run_id: String,
    name: String,
    prefix: [u8; 3],
}

#[derive(Clone, Debug)]
struct Machine {
    container: String,
    ip: Ipv4Addr,
    port: u16,
}

/// The one fixed subnet of this process, held by one run at a time.
struct SubnetLease;

/// The thread whose run holds the fixed subnet, if any.
static SUBNET_HELD: std::sync::Mutex<Option<std::thread::ThreadId>> = std::sync::Mutex::new(None);
static SUBNET_FREED: std::sync::Condvar = std::sync::Condvar::new();

impl SubnetLease {
    /// Wait until no other run of this process holds the subnet; None
    /// when this thread holds it already (waiting would never end).
    fn acquire() -> Option<SubnetLease> {
        let me = std::thread::current().id();
        let mut held = SUBNET_HELD.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match *held {
                None => break,
                Some(t) if t == me => return None,
                Some(_) => held = SUBNET_FREED.wait(held).unwrap_or_else(|e| e.into_inner()),
            }
        }
        *held = Some(me);
        Some(SubnetLease)
    }
}

impl Drop for SubnetLease {
    fn drop(&mut self) {
        *SUBNET_HELD.lock().unwrap_or_else(|e| e.into_inner()) = None;
        SUBNET_FREED.notify_one();
    }
}

/// Docker side of virtual mode.
pub struct DockerProvider {
    engine: Engine,
    artifact: Artifact,
    image: AgentImage,
    controller: Controller,
    subnet: Option<[u8; 3]>,
    /// Held while this run owns the fixed `DISTZERO_DOCKER_SUBNET`: runs of
    /// one process that set it take turns instead of colliding.
    subnet_lease: Option<SubnetLease>,
    /// Removes the run's containers and network if the process is
    /// interrupted (`distzero_real::cleanup`).
    cleanup: Option<distzero_real::cleanup::Registration>,
    net: Option<RunNet>,
    machines: BTreeMap<MachineId, Machine>,
    /// Cuts in force (from, to).
    cuts: BTreeSet<(MachineId, MachineId)>,
    /// Whether iptables via nsenter works here; None until tried.
    netfilter: Option<bool>,
    ready_timeout: Duration,
    /// The run this provider serves, when fixed up front.
    expected_run: Option<String>,
    /// `DISTZERO_LOG_LEVEL`, passed on to the agents.
    log_level: String,
    /// `DISTZERO_LOG_MESSAGES`, passed on to the agents.
    log_messages: String,
}

impl std::fmt::Debug for DockerProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerProvider")
            .field("image", &self.image.reference)
            .field("run", &self.net.as_ref().map(|n| &n.run_id))
            .field("machines", &self.machines.len())
            .finish()
    }
}

impl DockerProvider {
    /// Connect to Docker, sweep what killed runs left, and make sure the
    /// agent image exists (the agent of `DISTZERO_AGENT_BIN`, else a static
    /// build of the workspace's `distzero-agent`).
    pub fn new(settings: &Settings) -> Result<DockerProvider> {
        DockerProvider::with_agent(settings, &AgentSource::Workspace)
    }

    /// Same, with the agent from `source` (a test made by
    /// `workflow_tests!` passes its own test binary).
    pub fn with_agent(settings: &Settings, source: &AgentSource) -> Result<DockerProvider> {
        let engine = Engine::connect(settings)?;
        let swept = engine.sweep()?;
        if !swept.containers.is_empty() || !swept.networks.is_empty() {
            eprintln!(
                "distzero-virtual: removed leftovers of killed runs: containers {:?}, networks {:?}",
                swept.containers, swept.networks
            );
        }
        let artifact = Artifact::resolve(settings, source)?;
        let image = image::ensure_image(&engine, &artifact)?;
        Ok(DockerProvider {
            engine,
            artifact,
            image,
            controller: Controller::current(),
            subnet: settings.docker_subnet()?,
            subnet_lease: None,
            cleanup: None,
            net: None,
            machines: BTreeMap::new(),
            cuts: BTreeSet::new(),
            netfilter: None,
            ready_timeout: READY_TIMEOUT,
            expected_run: None,
            log_level: settings.raw("DISTZERO_LOG_LEVEL").to_string(),
            log_messages: settings.raw("DISTZERO_LOG_MESSAGES").to_string(),
        })
    }

    /// A provider for one run: launches of other runs are refused.
    pub fn for_run(settings: &Settings, run_id: &str) -> Result<DockerProvider> {
        DockerProvider::for_run_with_agent(settings, run_id, &AgentSource::Workspace)
    }

    /// [`DockerProvider::for_run`] with the agent from `source`.
    pub fn for_run_with_agent(
        settings: &Settings,
        run_id: &str,
        source: &AgentSource,
    ) -> Result<DockerProvider> {
        let mut p = DockerProvider::with_agent(settings, source)?;
        p.expected_run = Some(run_id.to_string());
        Ok(p)
    }

    /// Label the run's resources with another controller (tests of the sweep
    /// use this to stand for a killed controller).
    pub fn set_controller(&mut self, controller: Controller) {
        self.controller = controller;
    }

    /// Time a started agent has to listen before `start` fails.
    pub fn set_ready_timeout(&mut self, t: Duration) {
        self.ready_timeout = t;
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn image(&self) -> &AgentImage {
        &self.image
    }

    /// The agent bundle the image holds.
    pub fn artifact(&self) -> &Artifact {
        &self.artifact
    }

    /// The run id, once the first machine started.
    pub fn run_id(&self) -> Option<&str> {
        self.net.as_ref().map(|n| n.run_id.as_str())
    }

    /// The Docker network of the run, once the first machine started.
    pub fn network_name(&self) -> Option<&str> {
        self.net.as_ref().map(|n| n.name.as_str())
    }

    /// Container name of a machine.
    pub fn container_name(&self, machine: MachineId) -> Option<&str> {
        self.machines.get(&machine).map(|m| m.container.as_str())
    }

    /// The address of a machine on the run's network.
    pub fn machine_ip(&self, machine: MachineId) -> Option<Ipv4Addr> {
        self.machines.get(&machine).map(|m| m.ip)
    }

    fn machine(&self, id: MachineId) -> Result<&Machine> {
        self.machines.get(&id).ok_or(Error::NoSuchMachine(id))
    }

    fn ensure_network(&mut self, run_id: &str) -> Result<RunNet> {
        if let Some(expected) = self.expected_run.as_deref().filter(|e| *e != run_id) {
            return Err(Error::Unsupported(format!(
                "this Docker provider serves run {expected}; a launch of run {run_id} needs its own provider"
            )));
        }
        if let Some(net) = &self.net {
            if net.run_id != run_id {
                return Err(Error::Unsupported(format!(
                    "this Docker provider serves run {}; a launch of run {run_id} needs its own provider",
                    net.run_id
                )));
            }
            return Ok(net.clone());
        }
        let name = format!("distzero-{}", sanitize(run_id));
        let labels = self.controller.labels(run_id);
        let taken = self.taken_subnets()?;
        let candidates: Vec<[u8; 3]> = match self.subnet {
            Some(p) => {
                // Tests of one `cargo test` run side by side: with one fixed
                // subnet they take turns (another process is refused below).
                // (A second run in the thread that holds it is refused below.)
                if self.subnet_lease.is_none() {
                    self.subnet_lease = SubnetLease::acquire();
                }
                let taken = self.taken_subnets()?;
                if let Some(owner) = taken.iter().find(|(net, _)| overlaps(*net, p)) {
                    return Err(Error::Infra(format!(
                        "DISTZERO_DOCKER_SUBNET={}.{}.{} overlaps {} ({}): another run or network holds it; \
                         unset DISTZERO_DOCKER_SUBNET to pick a free /24 per run (needed when tests run in parallel)",
                        p[0], p[1], p[2], owner.1, fmt_cidr(owner.0)
                    )));
                }
                vec![p]
            }
            None => {
                let start = (fnv(run_id) ^ u64::from(self.controller.pid)) % 1024;
                (0..1024u64)
                    .map(|i| {
                        let k = (start + i) % 1024;
                        [172, 28 + (k / 256) as u8, (k % 256) as u8]
                    })
                    .filter(|p| !taken.iter().any(|(net, _)| overlaps(*net, *p)))
                    .take(8)
                    .collect()
            }
        };
        let mut last_err = None;
        for p in candidates {
            let req = NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(format!("{}.{}.{}.0/24", p[0], p[1], p[2])),
                        gateway: Some(format!("{}.{}.{}.1", p[0], p[1], p[2])),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                labels: Some(labels.clone()),
                ..Default::default()
            };
            match self.engine.block(self.engine.docker().create_network(req)) {
                Ok(_) => {
                    let (host, run) = (self.engine.host().to_string(), run_id.to_string());
                    self.cleanup = Some(distzero_real::cleanup::register(
                        format!("the containers and network of run {run_id}"),
                        move || {
                            if let Ok(engine) = Engine::connect_to(&host) {
                                let _ = engine.remove_run(&run);
                            }
                        },
                    ));
                    let net = RunNet {
                        run_id: run_id.to_string(),
                        name: name.clone(),
                        prefix: p,
                    };
                    self.net = Some(net.clone());
                    return Ok(net);
                }
                // Another run took it between our look and our create: next.
                Err(e)
                    if e.to_string().to_ascii_lowercase().contains("overlap")
                        && self.subnet.is_none() =>
                {
                    last_err = Some(e)
                }
                Err(e) => return Err(self.engine.err(&format!("creating network {name}"), e)),
            }
        }
        Err(match last_err {
            Some(e) => self.engine.err(&format!("creating network {name} (no free /24 in 172.28.0.0/14)"), e),
            None => Error::Infra(format!(
                "no free /24 in 172.28.0.0/14 for network {name}; set DISTZERO_DOCKER_SUBNET to a free one"
            )),
        })
    }

    /// Subnets of existing Docker networks and of host routes, with an owner name.
    fn taken_subnets(&self) -> Result<Vec<((u32, u32), String)>> {
        let mut out = Vec::new();
        let nets = self
            .engine
            .block(
                self.engine
                    .docker()
                    .list_networks(None::<bollard::query_parameters::ListNetworksOptions>),
            )
            .map_err(|e| self.engine.err("listing networks", e))?;
        for n in nets {
            let owner = format!("Docker network {}", n.name.unwrap_or_default());
            for c in n.ipam.and_then(|i| i.config).unwrap_or_default() {
                if let Some(net) = c.subnet.as_deref().and_then(parse_cidr) {
                    out.push((net, owner.clone()));
                }
            }
        }
        if self.engine.is_local() {
            out.extend(
                host_routes()
                    .into_iter()
                    .map(|r| (r, "a route of this host".to_string())),
            );
        }
        Ok(out)
    }

    fn create_container(
        &self,
        net: &RunNet,
        launch: &AgentLaunch,
        name: &str,
        ip: Ipv4Addr,
    ) -> Result<()> {
        let start = self
            .artifact
            .command(BUNDLE_DIR, &launch.args(LOG_DIR, DATA_DIR))?;
        // No cookie here: a container's configuration is on show
        // (`docker inspect`); the agent reads it on stdin at each start.
        let mut env = vec![
            format!("DISTZERO_LOG_LEVEL={}", self.log_level),
            format!("DISTZERO_LOG_MESSAGES={}", self.log_messages),
            "RUST_BACKTRACE=1".into(),
        ];
        env.extend(start.env.iter().map(|(k, v)| format!("{k}={v}")));
        let mut labels = self.controller.labels(&launch.run_id);
        labels.insert("distzero.machine".into(), launch.machine.to_string());
        let body = ContainerCreateBody {
            hostname: Some(launch.machine.to_string()),
            image: Some(self.image.reference.clone()),
            entrypoint: Some(start.argv),
            cmd: None,
            env: Some(env),
            open_stdin: Some(true),
            stdin_once: Some(true),
            attach_stdin: Some(true),
            labels: Some(labels),
            host_config: Some(HostConfig {
                init: Some(true),
                auto_remove: Some(false),
                network_mode: Some(net.name.clone()),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    net.name.clone(),
                    EndpointSettings {
                        ipam_config: Some(EndpointIpamConfig {
                            ipv4_address: Some(ip.to_string()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        self.engine
            .block(self.engine.docker().create_container(Some(opts), body))
            .map_err(|e| {
                self.engine.err(
                    &format!("creating container {name} for machine {}", launch.machine),
                    e,
                )
            })?;
        Ok(())
    }

    /// Start the container and wait until its agent listens; on failure the
    /// error names the machine and carries the container's last output.
    fn start_and_wait(&self, machine: MachineId, m: &Machine, cookie: &str) -> Result<()> {
        let docker = self.engine.docker();
        let started = |e| {
            self.engine.err(
                &format!("starting container {} of machine {machine}", m.container),
                e,
            )
        };
        // Attached to stdin before the start; the cookie is written once the
        // agent runs, then stdin closes (`stdin_once`).
        let attach = bollard::query_parameters::AttachContainerOptionsBuilder::default()
            .stdin(true)
            .stream(true)
            .build();
        let attached = self
            .engine
            .block(docker.attach_container(&m.container, Some(attach)))
            .map_err(started)?;
        self.engine
            .block(docker.start_container(
                &m.container,
                None::<bollard::query_parameters::StartContainerOptions>,
            ))
            .map_err(started)?;
        let mut input = attached.input;
        let line = format!("{cookie}\n");
        let passed = self.engine.block(async move {
            use tokio::io::AsyncWriteExt;
            input.write_all(line.as_bytes()).await?;
            input.shutdown().await
        });
        if let Err(e) = passed {
            // An agent that died at once: the wait below reports its output.
            tracing::warn!(%machine, error = %e, "could not pass the cookie");
        }
        let deadline = Instant::now() + self.ready_timeout;
        let why = loop {
            let state = self.container_state(&m.container)?;
            if state.running != Some(true) {
                break format!(
                    "its agent exited with code {}{}",
                    state.exit_code.unwrap_or(-1),
                    state
                        .error
                        .filter(|e| !e.is_empty())
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
            }
            let pid = state.pid.unwrap_or(0);
            let up = match (self.engine.is_local() && pid > 0)
                .then(|| netfilter::listens(pid, m.port))
                .flatten()
            {
                Some(up) => up,
                None => TcpStream::connect_timeout(
                    &SocketAddr::from((m.ip, m.port)),
                    Duration::from_millis(200),
                )
                .is_ok(),
            };
            if up {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break format!(
                    "its agent did not listen on {}:{} within {:?}",
                    m.ip, m.port, self.ready_timeout
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        let lines = self.last_output(&m.container, 20);
        Err(Error::Infra(format!(
            "machine {machine} (container {}, image {}) did not come up: {why}. Last lines of its output:\n{}",
            m.container,
            self.image.reference,
            if lines.trim().is_empty() { "(no output)".to_string() } else { lines }
        )))
    }

    /// The container's last `n` lines of stdout and stderr ("" on failure).
    pub fn last_output(&self, container: &str, n: usize) -> String {
        let opts = LogsOptions {
            stdout: true,
            stderr: true,
            tail: n.to_string(),
            ..Default::default()
        };
        let read = async {
            let mut out = String::new();
            let mut s = self.engine.docker().logs(container, Some(opts));
            while let Some(Ok(chunk)) = s.next().await {
                out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
            out
        };
        image::tail(&self.engine.block(read), n)
    }

    /// The container's state as the engine reports it.
    fn container_state(&self, container: &str) -> Result<ContainerState> {
        let info = self
            .engine
            .block(self.engine.docker().inspect_container(container, None))
            .map_err(|e| {
                self.engine
                    .err(&format!("inspecting container {container}"), e)
            })?;
        Ok(info.state.unwrap_or_default())
    }

    fn container_pid(&self, container: &str) -> Result<Option<i64>> {
        let state = self.container_state(container)?;
        Ok(state.pid.filter(|p| *p > 0 && state.running == Some(true)))
    }

    fn drop_rule(&self, from: MachineId, to: MachineId) -> Result<Option<DropRule>> {
        let src = self.machine(from)?.ip;
        let dst = self.machine(to)?;
        let Some(pid) = self.container_pid(&dst.container)? else {
            return Ok(None);
        };
        let run = self.run_id().unwrap_or_default();
        Ok(Some(DropRule {
            from: src,
            pid,
            comment: format!("distzero.run={run} {from}->{to}"),
        }))
    }

    /// Apply again the cuts into `machine` (its namespace is new after a restart).
    fn reapply_cuts(&mut self, machine: MachineId) -> Result<()> {
        let into: Vec<_> = self
            .cuts
            .iter()
            .filter(|(_, to)| *to == machine)
            .copied()
            .collect();
        for (from, to) in into {
            if let Some(rule) = self.drop_rule(from, to)? {
                if let Err(e) = rule.add() {
                    self.netfilter = Some(false);
                    eprintln!(
                        "distzero-virtual: could not re-apply cut {from}->{to} after restart: {e}"
                    );
                }
            }
        }
        Ok(())
    }

    fn wait_stopped(&self, container: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.container_pid(container)?.is_some() {
            if Instant::now() >= deadline {
                return Err(Error::Infra(format!(
                    "container {container} still runs 10s after SIGKILL"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Provider for DockerProvider {
    fn mode(&self) -> Mode {
        Mode::Virtual
    }

    fn start(&mut self, launch: &AgentLaunch) -> Result<MachineAddrs> {
        let id = launch.machine;
        if self.machines.contains_key(&id) {
            return Err(Error::Unsupported(format!(
                "machine {id} is already started; use restart after a kill"
            )));
        }
        if id.0 > MAX_MACHINE {
            return Err(Error::Unsupported(format!(
                "machine {id}: virtual mode has room for machines m0..=m{MAX_MACHINE} on one /24"
            )));
        }
        let net = self.ensure_network(&launch.run_id)?;
        let ip = Ipv4Addr::new(
            net.prefix[0],
            net.prefix[1],
            net.prefix[2],
            (id.0 + 2) as u8,
        );
        let container = format!("{}-{id}", net.name);
        self.create_container(&net, launch, &container, ip)?;
        let m = Machine {
            container,
            ip,
            port: launch.port,
        };
        if let Err(e) = self.start_and_wait(id, &m, &launch.cookie) {
            let opts = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            let _ = self.engine.block(
                self.engine
                    .docker()
                    .remove_container(&m.container, Some(opts)),
            );
            return Err(e);
        }
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, launch.port));
        self.machines.insert(id, m);
        Ok(MachineAddrs {
            control: addr,
            peer: addr,
        })
    }

    fn kill(&mut self, machine: MachineId) -> Result<()> {
        let m = self.machine(machine)?.clone();
        let docker = self.engine.docker();
        let state = self.container_state(&m.container)?;
        if state.running != Some(true) {
            return Ok(()); // already down
        }
        let opts = KillContainerOptions {
            signal: "SIGKILL".into(),
        };
        self.engine
            .block(docker.kill_container(&m.container, Some(opts)))
            .map_err(|e| {
                self.engine
                    .err(&format!("killing machine {machine} ({})", m.container), e)
            })?;
        if state.paused == Some(true) {
            // A frozen process gets its SIGKILL once thawed.
            let _ = self.engine.block(docker.unpause_container(&m.container));
        }
        self.wait_stopped(&m.container)
    }

    fn restart(&mut self, launch: &AgentLaunch) -> Result<MachineAddrs> {
        let id = launch.machine;
        let m = self.machine(id)?.clone();
        if self.container_pid(&m.container)?.is_some() {
            return Err(Error::Unsupported(format!(
                "machine {id} is running; kill it before a restart"
            )));
        }
        self.start_and_wait(id, &m, &launch.cookie)?;
        self.reapply_cuts(id)?;
        let addr = SocketAddr::V4(SocketAddrV4::new(m.ip, m.port));
        Ok(MachineAddrs {
            control: addr,
            peer: addr,
        })
    }

    fn pause(&mut self, machine: MachineId) -> Result<()> {
        let c = self.machine(machine)?.container.clone();
        self.engine
            .block(self.engine.docker().pause_container(&c))
            .map_err(|e| {
                self.engine
                    .err(&format!("pausing machine {machine} ({c})"), e)
            })
    }

    fn resume(&mut self, machine: MachineId) -> Result<()> {
        let c = self.machine(machine)?.container.clone();
        self.engine
            .block(self.engine.docker().unpause_container(&c))
            .map_err(|e| {
                self.engine
                    .err(&format!("resuming machine {machine} ({c})"), e)
            })
    }

    fn cut(&mut self, from: MachineId, to: MachineId) -> Result<bool> {
        self.machine(from)?;
        self.machine(to)?;
        if !self.engine.is_local() || self.netfilter == Some(false) {
            return Ok(false);
        }
        if self.cuts.contains(&(from, to)) {
            return Ok(true);
        }
        match self.drop_rule(from, to)? {
            // `to` is down: applied when it restarts.
            None => {
                self.cuts.insert((from, to));
                Ok(self.netfilter.unwrap_or(true))
            }
            Some(rule) => match rule.add() {
                Ok(()) => {
                    self.netfilter = Some(true);
                    self.cuts.insert((from, to));
                    Ok(true)
                }
                Err(why) => {
                    eprintln!("distzero-virtual: no real packet drops on this host ({why}); the agents' filter acts alone");
                    self.netfilter = Some(false);
                    Ok(false)
                }
            },
        }
    }

    fn heal(&mut self, from: MachineId, to: MachineId) -> Result<()> {
        if !self.cuts.remove(&(from, to)) {
            return Ok(());
        }
        if let Some(rule) = self.drop_rule(from, to)? {
            rule.remove()
                .map_err(|e| Error::Infra(format!("healing {from}->{to}: {e}")))?;
        }
        Ok(())
    }

    fn collect_logs(&mut self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut first_err = None;
        for (id, m) in &self.machines {
            if let Err(e) = self.copy_logs(*id, m, dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn shutdown(&mut self) -> Result<()> {
        let Some(net) = &self.net else { return Ok(()) };
        let run_id = net.run_id.clone();
        self.engine.remove_run(&run_id)?;
        // Left over if a create raced with the listing: once more.
        let rest = self.engine.containers(Some(&run_id))?.len()
            + self.engine.networks(Some(&run_id))?.len();
        if rest > 0 {
            self.engine.remove_run(&run_id)?;
        }
        self.machines.clear();
        self.cuts.clear();
        self.net = None;
        self.subnet_lease = None;
        self.cleanup = None;
        Ok(())
    }
}

impl DockerProvider {
    /// Copy `/logs/*.jsonl` and `*.log` of one container into `dir` (files
    /// not named after the machine get its name as a prefix), plus the
    /// container's console output as `<machine>.console.log`.
    fn copy_logs(&self, id: MachineId, m: &Machine, dir: &Path) -> Result<()> {
        let opts = DownloadFromContainerOptions {
            path: LOG_DIR.into(),
        };
        let fetch = async {
            let mut bytes = Vec::new();
            let mut s = self
                .engine
                .docker()
                .download_from_container(&m.container, Some(opts));
            while let Some(chunk) = s.next().await {
                bytes.extend_from_slice(&chunk?);
            }
            Ok::<_, bollard::errors::Error>(bytes)
        };
        let tar = self.engine.block(fetch).map_err(|e| {
            self.engine
                .err(&format!("copying {LOG_DIR} out of {}", m.container), e)
        })?;
        let io = |what: String| move |e| Error::io(what, e);
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries = archive
            .entries()
            .map_err(io(format!("reading the log archive of {}", m.container)))?;
        for entry in entries {
            let mut entry =
                entry.map_err(io(format!("reading the log archive of {}", m.container)))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let path = entry
                .path()
                .map_err(io("a log file name".into()))?
                .into_owned();
            let Some(file) = path
                .file_name()
                .and_then(|f| f.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if !(file.ends_with(".jsonl") || file.ends_with(".log")) {
                continue;
            }
            let machine = id.to_string();
            let named = if file.starts_with(&machine)
                && !file[machine.len()..].starts_with(|c: char| c.is_ascii_digit())
            {
                file
            } else {
                format!("{machine}-{file}")
            };
            let target = dir.join(named);
            let mut out = std::fs::File::create(&target)
                .map_err(io(format!("creating {}", target.display())))?;
            std::io::copy(&mut entry, &mut out)
                .map_err(io(format!("writing {}", target.display())))?;
        }
        let console = self.last_output(&m.container, 100_000);
        if !console.is_empty() {
            let target = dir.join(format!("{id}.console.log"));
            std::fs::write(&target, console + "\n")
                .map_err(io(format!("writing {}", target.display())))?;
        }
        Ok(())
    }
}

impl Drop for DockerProvider {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!(
                "distzero-virtual: cleaning up run {:?} failed: {e}",
                self.run_id()
            );
        }
    }
}

/// Docker names accept `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if out.is_empty() {
        "run".into()
    } else {
        out
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// (network address, mask) of `a.b.c.d/len`.
fn parse_cidr(s: &str) -> Option<(u32, u32)> {
    let (addr, len) = s.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(addr) & mask, mask))
}

fn fmt_cidr((addr, mask): (u32, u32)) -> String {
    format!("{}/{}", Ipv4Addr::from(addr), mask.count_ones())
}

/// Whether a network overlaps the /24 `p.0`.
fn overlaps((addr, mask): (u32, u32), p: [u8; 3]) -> bool {
    let ours = u32::from(Ipv4Addr::new(p[0], p[1], p[2], 0));
    let common = mask & 0xffff_ff00;
    (addr & common) == (ours & common)
}

/// Destinations of this host's IPv4 routes (the default route excluded).
fn host_routes() -> Vec<(u32, u32)> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?.swap_bytes();
            (mask != 0).then_some((dest & mask, mask))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_overlap() {
        let n = parse_cidr("172.28.5.0/24").unwrap();
        assert!(overlaps(n, [172, 28, 5]));
        assert!(!overlaps(n, [172, 28, 6]));
        let wide = parse_cidr("172.16.0.0/12").unwrap();
        assert!(overlaps(wide, [172, 28, 200]));
        let narrow = parse_cidr("172.28.5.128/25").unwrap();
        assert!(overlaps(narrow, [172, 28, 5]));
        assert_eq!(fmt_cidr(wide), "172.16.0.0/12");
        assert!(parse_cidr("nonsense").is_none());
    }

    #[test]
    fn names_are_docker_safe() {
        assert_eq!(sanitize("a b/c"), "a-b-c");
        assert_eq!(sanitize(""), "run");
    }
}
