//! The loopback provider: every agent is a thread of this process, listening
//! on its own port of 127.0.0.1. It runs the real agent, wire protocol and
//! remote cluster without Docker, so CI tests all of them.
//!
//! - kill: the agent's loop returns at once; its runtime, sockets and state
//!   drop without a goodbye. restart: a new agent thread on the same port
//!   and data dir.
//! - pause: the agent's thread blocks (like SIGSTOP); its sockets stay open.
//! - no packet filter: `cut` returns false and the agent-level filter acts.
//! - data dirs under `<log dir>/data/m<id>`; agents log straight into the
//!   run's log folder, so `collect_logs` has nothing to copy there.
//!
//! [`ProcessProvider`] runs each agent as a child process instead (the
//! agent binary, or any command that ends in [`crate::agent::main_with`]):
//! kill is SIGKILL, pause is SIGSTOP, and the orphan rule is real.

use crate::agent::{run_agent, AgentConfig, Exit, StopHandle};
use crate::provider::{AgentLaunch, MachineAddrs, Provider};
use distzero_core::cluster::{Cluster, Mode};
use distzero_core::error::{Error, Result};
use distzero_core::ids::MachineId;
use distzero_core::registry::Registry;
use distzero_core::settings::Settings;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct LoopAgent {
    port: u16,
    stop: StopHandle,
    thread: Option<JoinHandle<Result<Exit>>>,
}

/// Agents as threads on 127.0.0.1.
pub struct LoopbackProvider {
    registry: Registry,
    dir: PathBuf,
    log_level: Option<tracing::Level>,
    log_messages: bool,
    agents: BTreeMap<MachineId, LoopAgent>,
}

/// Bind 127.0.0.1:`port` (0 = any free port) with SO_REUSEADDR.
fn bind(port: u16) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).into())?;
    s.listen(128)?;
    Ok(s.into())
}

impl LoopbackProvider {
    /// Agents built from `registry`, logging into `run_dir` (the run's log folder).
    pub fn new(
        registry: Registry,
        run_dir: &Path,
        settings: &Settings,
    ) -> Result<LoopbackProvider> {
        Ok(LoopbackProvider {
            registry,
            dir: run_dir.to_path_buf(),
            log_level: settings.log_level()?,
            log_messages: settings.log_messages()? != distzero_core::settings::LogMessages::Off,
            agents: BTreeMap::new(),
        })
    }

    fn launch(&mut self, launch: &AgentLaunch, port: u16) -> Result<MachineAddrs> {
        let m = launch.machine;
        // A restart binds the port its predecessor just released: retry briefly.
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match bind(port) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline && port != 0 => {
                    tracing::debug!(machine = %m, port, error = %e, "port busy; retrying");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("binding 127.0.0.1:{port} for the agent of {m}"),
                        e,
                    ))
                }
            }
        };
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the agent's port", e))?;
        let cfg = AgentConfig {
            machine: m,
            run_id: launch.run_id.clone(),
            cookie: launch.cookie.clone(),
            seed: launch.seed,
            listen: addr,
            listener: Some(listener),
            epoch_micros: launch.epoch_micros,
            orphan: Duration::from_secs(launch.orphan_secs.max(1)),
            log_dir: self.dir.clone(),
            data_dir: self.dir.join("data").join(m.to_string()),
            log_level: self.log_level,
            log_messages: self.log_messages,
            handle_signals: false,
        };
        let stop = StopHandle::new();
        let registry = self.registry.clone();
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("distzero-agent-{m}"))
            .spawn(move || run_agent(cfg, registry, s))
            .map_err(|e| Error::io(format!("starting the agent thread of {m}"), e))?;
        self.agents.insert(
            m,
            LoopAgent {
                port: addr.port(),
                stop,
                thread: Some(thread),
            },
        );
        Ok(MachineAddrs {
            control: addr,
            peer: addr,
        })
    }

    fn agent(&mut self, m: MachineId) -> Result<&mut LoopAgent> {
        self.agents.get_mut(&m).ok_or(Error::NoSuchMachine(m))
    }

    /// How the agent of `m` ended, if its thread has ended (else None).
    pub fn exit_of(&mut self, m: MachineId) -> Option<std::result::Result<Exit, String>> {
        let a = self.agents.get_mut(&m)?;
        if !a.thread.as_ref().is_some_and(|t| t.is_finished()) {
            return None;
        }
        let t = a.thread.take()?;
        Some(match t.join() {
            Ok(Ok(exit)) => Ok(exit),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("the agent thread of {m} panicked")),
        })
    }

    fn stop_and_join(a: &mut LoopAgent, m: MachineId) {
        a.stop.kill();
        if let Some(t) = a.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if t.is_finished() {
                match t.join() {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(machine = %m, error = %e, "agent ended with an error")
                    }
                    Err(_) => tracing::error!(machine = %m, "agent thread panicked"),
                }
            } else {
                tracing::error!(machine = %m, "agent thread did not stop within 5 s (a node callback that never returns?); left behind");
            }
        }
    }
}

impl Provider for LoopbackProvider {
    fn mode(&self) -> Mode {
        Mode::Loopback
    }

    fn start(&mut self, launch: &AgentLaunch) -> Result<MachineAddrs> {
        if self.agents.contains_key(&launch.machine) {
            return Err(Error::Unsupported(format!(
                "{} was started already",
                launch.machine
            )));
        }
        self.launch(launch, 0)
    }

    fn kill(&mut self, machine: MachineId) -> Result<()> {
        let a = self.agent(machine)?;
        Self::stop_and_join(a, machine);
        Ok(())
    }

    fn restart(&mut self, launch: &AgentLaunch) -> Result<MachineAddrs> {
        let m = launch.machine;
        let a = self.agent(m)?;
        Self::stop_and_join(a, m);
        let port = a.port;
        self.launch(launch, port)
    }

    fn pause(&mut self, machine: MachineId) -> Result<()> {
        let a = self.agent(machine)?;
        if !a.stop.pause(Duration::from_secs(5)) {
            return Err(Error::Infra(format!(
                "the agent of {machine} did not pause within 5 s"
            )));
        }
        Ok(())
    }

    fn resume(&mut self, machine: MachineId) -> Result<()> {
        self.agent(machine)?.stop.resume();
        Ok(())
    }

    fn collect_logs(&mut self, dir: &Path) -> Result<()> {
        copy_machine_logs(&self.dir, dir)
    }

    fn shutdown(&mut self) -> Result<()> {
        let ids: Vec<MachineId> = self.agents.keys().copied().collect();
        for m in ids {
            if let Some(a) = self.agents.get_mut(&m) {
                a.stop.resume();
                Self::stop_and_join(a, m);
            }
        }
        Ok(())
    }
}

impl Drop for LoopbackProvider {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Copy the machines' log files from `from` into `to` (nothing when the same).
fn copy_machine_logs(from: &Path, to: &Path) -> Result<()> {
    if from == to {
        return Ok(());
    }
    std::fs::create_dir_all(to).map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let n = name.to_string_lossy();
        if n.starts_with('m')
            && (n.ends_with(".jsonl") || n.ends_with(".log") || n.ends_with(".stderr"))
        {
            std::fs::copy(entry.path(), to.join(&name))
                .map_err(|e| Error::io(format!("copying {}", entry.path().display()), e))?;
        }
    }
    Ok(())
}

/// Run a workflow test on loopback agents built from `registry`.
pub fn run_loopback_workflow(
    test_name: &str,
    registry: Registry,
    body: fn(&mut dyn Cluster) -> Result<()>,
) {
    crate::remote::run_remote_workflow(
        test_name,
        Mode::Loopback,
        move |settings, _run_id, dir| Ok(Box::new(LoopbackProvider::new(registry, dir, settings)?)),
        body,
    )
}

/// Builds the command of one agent process from its arguments.
pub type AgentCommand = Box<dyn FnMut(&[String]) -> std::process::Command + Send>;

struct Proc {
    port: u16,
    child: Option<std::process::Child>,
}

/// Agents as child processes on 127.0.0.1: the agent binary itself, so the
/// real process path runs (its `main`, SIGKILL crashes, SIGSTOP pauses, the
/// orphan rule when this process dies). Mode: loopback.
pub struct ProcessProvider {
    make: AgentCommand,
    dir: PathBuf,
    log_level: String,
    procs: BTreeMap<MachineId, Proc>,
    /// Pids of running agents, for the clean-up on interrupt.
    pids: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<u32>>>,
    cleanup: Option<crate::cleanup::Registration>,
}

/// A port of 127.0.0.1 free right now.
fn free_port() -> Result<u16> {
    let l = bind(0).map_err(|e| Error::io("finding a free port on 127.0.0.1", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port on 127.0.0.1", e))
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .map_err(|e| Error::io(format!("running `kill {sig} {pid}`"), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Infra(format!(
            "`kill {sig} {pid}` failed ({status})"
        )))
    }
}

/// Whether every thread of `pid` is stopped (state `T` in /proc). True
/// where /proc cannot tell (not Linux).
fn all_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|stat| {
                // `pid (comm) S ...`: the state follows the last `)`.
                let rest = &stat[stat.rfind(')')? + 1..];
                rest.split_whitespace().next().map(|s| s == "T" || s == "t")
            })
            .unwrap_or(true)
    })
}

impl ProcessProvider {
    /// Agents run `program` (a `distzero-agent` binary) with the launch arguments.
    pub fn new(program: &Path, run_dir: &Path, settings: &Settings) -> ProcessProvider {
        let program = program.to_path_buf();
        Self::with_command(
            Box::new(move |args| {
                let mut c = std::process::Command::new(&program);
                c.args(args);
                c
            }),
            run_dir,
            settings,
        )
    }

    /// Agents run whatever `make` builds from the launch arguments.
    pub fn with_command(
        make: AgentCommand,
        run_dir: &Path,
        settings: &Settings,
    ) -> ProcessProvider {
        ProcessProvider {
            make,
            dir: run_dir.to_path_buf(),
            log_level: settings.raw("DISTZERO_LOG_LEVEL").to_string(),
            procs: BTreeMap::new(),
            pids: Default::default(),
            cleanup: None,
        }
    }

    fn spawn(&mut self, launch: &AgentLaunch, port: u16) -> Result<MachineAddrs> {
        let m = launch.machine;
        let launch = AgentLaunch {
            port,
            ..launch.clone()
        };
        let data = self.dir.join("data").join(m.to_string());
        // Local processes: reachable from this machine only.
        let args = launch.args_on(
            std::net::Ipv4Addr::LOCALHOST.into(),
            &self.dir.to_string_lossy(),
            &data.to_string_lossy(),
        );
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("creating {}", self.dir.display()), e))?;
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{m}.stderr")))
            .map_err(|e| Error::io(format!("opening the stderr file of {m}"), e))?;
        let mut cmd = (self.make)(&args);
        // The cookie on stdin: not in the arguments or the environment.
        cmd.env_remove("DISTZERO_COOKIE")
            .env("DISTZERO_LOG_LEVEL", &self.log_level)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(stderr);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting the agent process of {m}"), e))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            // A write that fails means the agent died at once: the dial
            // that follows reports it.
            let _ = writeln!(stdin, "{}", launch.cookie);
        }
        self.pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(child.id());
        if self.cleanup.is_none() {
            let pids = self.pids.clone();
            self.cleanup = Some(crate::cleanup::register(
                format!("the agent processes of {}", self.dir.display()),
                move || {
                    for pid in pids.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                        let _ = signal(*pid, "-KILL");
                    }
                },
            ));
        }
        self.procs.insert(
            m,
            Proc {
                port,
                child: Some(child),
            },
        );
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        Ok(MachineAddrs {
            control: addr,
            peer: addr,
        })
    }

    fn proc(&mut self, m: MachineId) -> Result<&mut Proc> {
        self.procs.get_mut(&m).ok_or(Error::NoSuchMachine(m))
    }

    fn pid(&mut self, m: MachineId) -> Result<u32> {
        match &self.proc(m)?.child {
            Some(c) => Ok(c.id()),
            None => Err(Error::Unsupported(format!(
                "the agent process of {m} is not running"
            ))),
        }
    }

    /// SIGKILL and reap.
    fn kill_now(pids: &std::sync::Mutex<std::collections::BTreeSet<u32>>, p: &mut Proc) {
        if let Some(mut c) = p.child.take() {
            pids.lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&c.id());
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Provider for ProcessProvider {
    fn mode(&self) -> Mode {
        Mode::Loopback
    }

    fn start(&mut self, launch: &AgentLaunch) -> Result<MachineAddrs> {
        if self.procs.contains_key(&launch.machine) {
            return Err(Error::Unsupported(format!(
                "{} was started already",
                launch.machine
            )));
        }
        let port = free_port()?;
        self.spawn(launch, port)
    }

    fn kill(&mut self, machine: MachineId) -> Result<()> {
        let pids = self.pids.clone();
        Self::kill_now(&pids, self.proc(machine)?);
        Ok(())
    }

    fn restart(&mut self, launch: &AgentLaunch) -> Result<MachineAddrs> {
        let pids = self.pids.clone();
        let p = self.proc(launch.machine)?;
        Self::kill_now(&pids, p);
        let port = p.port;
        self.spawn(launch, port)
    }

    /// SIGSTOP, then wait until every thread is stopped: kill(2) returns
    /// before a busy thread has stopped, and a reply sent in that window
    /// would make a pause leak.
    fn pause(&mut self, machine: MachineId) -> Result<()> {
        let pid = self.pid(machine)?;
        signal(pid, "-STOP")?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while !all_stopped(pid) {
            if Instant::now() > deadline {
                return Err(Error::Infra(format!(
                    "the agent process of {machine} (pid {pid}) did not stop within 2 s of SIGSTOP"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    fn resume(&mut self, machine: MachineId) -> Result<()> {
        let pid = self.pid(machine)?;
        signal(pid, "-CONT")
    }

    fn collect_logs(&mut self, dir: &Path) -> Result<()> {
        copy_machine_logs(&self.dir, dir)
    }

    /// Agents told to shut down have 2 s to exit; then SIGKILL.
    fn shutdown(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let pids = self.pids.clone();
        for (m, p) in self.procs.iter_mut() {
            let Some(c) = p.child.as_mut() else { continue };
            let _ = signal(c.id(), "-CONT");
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        tracing::warn!(machine = %m, "agent process still running at shutdown; killing it");
                        break;
                    }
                }
            }
            Self::kill_now(&pids, p);
        }
        self.cleanup = None;
        Ok(())
    }
}

impl Drop for ProcessProvider {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
