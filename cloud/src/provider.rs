//! `SshProvider`: agents on hosts from an [`Inventory`], driven over SSH.
//!
//! Per host, in `<DISTZERO_CLOUD_DIR>` (`<dir>` below):
//! - `bin/agent-<sha16>/`: the agent bundle (`distzero_real::artifact`: the
//!   program as `agent`, its shared libraries and loader in `lib/`, started
//!   through the loader), named by the bundle's hash and copied with scp
//!   once per bundle, each file to a temporary name, then renamed, the
//!   program last (concurrent runs are safe: the program there means the
//!   bundle is whole);
//! - `bin/hostctl-<sha16>.sh`: the host side ([`HOSTCTL`], a POSIX sh
//!   script) that starts, signals and cleans up agents;
//! - `<run id>/controller`: who runs the run (boot id, pid, start time, host
//!   name of the controller), so a later run's sweep can tell it is dead;
//! - `<run id>/m<k>/`: machine k's folder: `agent.pid`, logs `m<k>.jsonl`,
//!   `m<k>.log`, `m<k>.stderr`, and its disk `data/` (kept across crash and
//!   restart).
//!
//! Invariants:
//! - the run id is on every agent's command line and in every path and
//!   packet filter a run creates; the cookie is never on a command line nor
//!   on a disk: it goes to the host script on stdin and to the agent in its
//!   environment;
//! - `start` returns once the agent listens (or fails with the host, the
//!   cause and the tail of the agent's log); the remote cluster then dials;
//! - a cut `from -> to` drops, on `to`'s host, TCP packets from `from`'s
//!   address to `to`'s port (`iptables -I INPUT ... -m comment --comment
//!   distzero-<run>`). Dropping on arrival, not in the sender's OUTPUT chain:
//!   a packet dropped in OUTPUT makes the sender's `send` fail at once with
//!   EPERM, which no real network does; dropped on arrival, the sender sees
//!   silence and its timeouts run. No real cut (agent filter alone) when the
//!   host has no iptables, or when another machine of the run shares
//!   `from`'s address (the rule could not tell them apart);
//! - SSH: one shared connection per host and run (`ControlMaster`, sockets
//!   in `/tmp/dz-ssh-<run id>/`, closed at shutdown, idle masters exit by
//!   themselves); plus one long-lived shell per host, opened when its first
//!   agent starts, through which kill, stop, cont, cut and heal run: a fault
//!   then takes milliseconds, not a new SSH session (tests that time a crash
//!   against a running stream depend on it). A broken shell falls back to a
//!   plain ssh call;
//! - a failed start rolls the deploy back at once (logs pulled, every agent
//!   of the run stopped, its folders and filters removed) and refuses later
//!   starts; the error names the machine, the host and the cause;
//! - `shutdown` pulls the logs (if not pulled yet), stops the agents, removes
//!   the run's folders and filters on every host it used, and releases the
//!   hosts. Agents also exit on their own when the controller is gone (the
//!   orphan rule), except frozen ones: the sweep at the start of a later run
//!   kills the agents of dead runs (whose controller pid is gone) and removes
//!   their filters and folders.

use crate::inventory::{Host, Inventory, StaticInventory};
use crate::ssh::{
    shell_line, shell_quote, CallError, HostKeys, Output, Session, Ssh, COMMAND_TIMEOUT,
};
use distzero_core::settings::LogMessages;
use distzero_core::{Error, MachineId, Mode, Result, Settings};
use distzero_real::artifact::{AgentSource, Artifact, PROGRAM};
use distzero_real::provider::{AgentLaunch, MachineAddrs, Provider};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The host side, installed on each host by its hash.
pub const HOSTCTL: &str = include_str!("hostctl.sh");

/// Agents listen on a port in this range (picked per start, kept on restart).
pub const PORT_RANGE: std::ops::Range<u16> = 20_000..60_000;
/// Start attempts on busy ports before giving up.
const PORT_TRIES: usize = 8;

/// Exit codes of hostctl.sh.
mod code {
    pub const ALREADY: i32 = 3;
    pub const EXITED: i32 = 4;
    pub const NO_IPTABLES: i32 = 20;
    pub const PORT_BUSY: i32 = 75;
    pub const NO_AGENT: i32 = 98;
    pub const NO_HOSTCTL: i32 = 99;
}

#[derive(Clone, Debug)]
struct Placed {
    host: Host,
    ip: IpAddr,
    port: u16,
}

/// A real packet filter in force.
#[derive(Clone, Debug)]
struct RealCut {
    host: Host,
    from_ip: IpAddr,
    port: u16,
}

/// Identity of this controller process, as recorded on the hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerRecord {
    pub boot_id: String,
    pub pid: u32,
    /// Start time of the process in clock ticks since boot (`/proc/<pid>/stat`).
    pub start: u64,
    pub host_name: String,
}

impl ControllerRecord {
    /// This process.
    pub fn current() -> ControllerRecord {
        let pid = std::process::id();
        ControllerRecord {
            boot_id: boot_id(),
            pid,
            start: proc_start(pid).unwrap_or(0),
            host_name: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} {} {} {}",
            self.boot_id,
            self.pid,
            self.start,
            if self.host_name.is_empty() {
                "-"
            } else {
                &self.host_name
            }
        )
    }

    pub fn parse(line: &str) -> Option<ControllerRecord> {
        let mut it = line.split_whitespace();
        Some(ControllerRecord {
            boot_id: it.next()?.to_string(),
            pid: it.next()?.parse().ok()?,
            start: it.next()?.parse().ok()?,
            host_name: it.next().unwrap_or("-").to_string(),
        })
    }

    /// Whether the run of this record is dead, as seen from this machine:
    /// Some(true) if its controller ran here and is gone, Some(false) if it
    /// runs, None if it ran on another machine (cannot tell).
    pub fn is_dead_here(&self, here_boot_id: &str) -> Option<bool> {
        if self.boot_id != here_boot_id || here_boot_id == "unknown" {
            return None;
        }
        Some(proc_start(self.pid) != Some(self.start))
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Start time (field 22 of `/proc/<pid>/stat`) of a live, non-zombie process.
fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    // rest starts at field 3 (state); field 22 is index 19.
    fields.get(19)?.parse().ok()
}

/// Where hostctl is installed under the hosts' folder `dir`.
pub fn hostctl_path(dir: &str) -> String {
    format!(
        "{}/bin/hostctl-{}.sh",
        dir.trim_end_matches('/'),
        short_hash(HOSTCTL.as_bytes())
    )
}

/// A short hex hash (the first 16 of sha256).
fn short_hash(bytes: &[u8]) -> String {
    distzero_real::artifact::sha256_hex(bytes)[..16].to_string()
}

/// Agents on cloud hosts over SSH. Mode: cloud.
pub struct SshProvider {
    inventory: Box<dyn Inventory>,
    ssh: Ssh,
    run_id: String,
    /// Root folder on the hosts.
    dir: String,
    /// The run's local log folder.
    log_dir: PathBuf,
    /// The agent bundle and its folder on the hosts.
    artifact: Artifact,
    agent_dir: String,
    hostctl_remote: String,
    log_level: String,
    /// `DISTZERO_LOG_MESSAGES` as the agents read it (validated: `off`,
    /// `failing` or `on`), passed on in their environment.
    log_messages: &'static str,
    /// Where agents listen (`DISTZERO_CLOUD_BIND`); None = the host's address.
    bind: Option<std::net::IpAddr>,
    controller: ControllerRecord,
    machines: BTreeMap<MachineId, Placed>,
    /// Hosts of this run and the machine folders made on each.
    used: BTreeMap<Host, BTreeSet<u32>>,
    cuts: BTreeMap<(MachineId, MachineId), RealCut>,
    no_iptables: BTreeSet<Host>,
    logs_pulled: bool,
    /// Why the deploy was rolled back, if it was.
    failed: Option<String>,
    /// A long-lived shell per host for the faults of a running test.
    sessions: BTreeMap<Host, Session>,
    shut_down: bool,
    /// What the clean-up on interrupt removes: the machines per host.
    on_interrupt: std::sync::Arc<std::sync::Mutex<BTreeMap<Host, BTreeSet<u32>>>>,
    cleanup: Option<distzero_real::cleanup::Registration>,
}

fn infra(msg: String) -> Error {
    Error::Infra(msg)
}

impl SshProvider {
    /// The provider of a run from the settings: the static inventory of
    /// `DISTZERO_CLOUD_HOSTS`, the agent of `DISTZERO_AGENT_BIN` or a static
    /// build of this workspace's. Sweeps what dead runs left on the hosts
    /// (once per process).
    pub fn for_run(settings: &Settings, run_id: &str, log_dir: &Path) -> Result<SshProvider> {
        Self::for_run_with_agent(settings, run_id, log_dir, &AgentSource::Workspace)
    }

    /// [`SshProvider::for_run`] with the agent from `source` (a test made by
    /// `workflow_tests!` passes its own test binary).
    pub fn for_run_with_agent(
        settings: &Settings,
        run_id: &str,
        log_dir: &Path,
        source: &AgentSource,
    ) -> Result<SshProvider> {
        let inventory = inventory_from_settings(settings, run_id, log_dir)?;
        Self::with_inventory_and_agent(inventory, settings, run_id, log_dir, source)
    }

    /// Same, with any inventory.
    pub fn with_inventory(
        inventory: Box<dyn Inventory>,
        settings: &Settings,
        run_id: &str,
        log_dir: &Path,
    ) -> Result<SshProvider> {
        Self::with_inventory_and_agent(
            inventory,
            settings,
            run_id,
            log_dir,
            &AgentSource::Workspace,
        )
    }

    /// Same, with any inventory and the agent from `source`.
    pub fn with_inventory_and_agent(
        inventory: Box<dyn Inventory>,
        settings: &Settings,
        run_id: &str,
        log_dir: &Path,
        source: &AgentSource,
    ) -> Result<SshProvider> {
        if run_id.is_empty()
            || !run_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::Setting(format!(
                "run id {run_id:?} is not valid: letters, digits, - and _ only"
            )));
        }
        let dir = settings.cloud_dir().trim_end_matches('/').to_string();
        if !dir.starts_with('/') || dir.len() < 2 {
            return Err(Error::Setting(format!(
                "DISTZERO_CLOUD_DIR={dir:?} is not valid: DISTZERO_CLOUD_DIR accepts an absolute folder other than /"
            )));
        }
        let bind = settings.cloud_bind()?;
        let log_messages = match settings.log_messages()? {
            LogMessages::Off => "off",
            LogMessages::Failing => "failing",
            LogMessages::On => "on",
        };
        let mut ssh = ssh_from_settings(settings, log_dir)?;
        let artifact = Artifact::resolve(settings, source)?;
        let agent_dir = format!("{dir}/bin/agent-{}", artifact.tag());
        let hostctl_remote = hostctl_path(&dir);
        // One shared connection per host for the run (short path: a unix
        // socket path has ~100 bytes at most).
        ssh.control_dir = Some(std::env::temp_dir().join(format!("dz-ssh-{run_id}")));
        ssh.prepare_control_dir()
            .map_err(|e| Error::io("creating the folder of the run's ssh connections", e))?;
        let on_interrupt: std::sync::Arc<std::sync::Mutex<BTreeMap<Host, BTreeSet<u32>>>> =
            Default::default();
        let cleanup = {
            let (ssh, hostctl, dir, run) = (
                ssh.clone(),
                hostctl_remote.clone(),
                dir.clone(),
                run_id.to_string(),
            );
            let used = on_interrupt.clone();
            distzero_real::cleanup::register(
                format!("the agents and folders of run {run_id} on its hosts"),
                move || {
                    let used = used.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    for (host, ks) in &used {
                        let ks: Vec<String> = ks.iter().map(u32::to_string).collect();
                        let mut args = vec!["finish", dir.as_str(), run.as_str()];
                        args.extend(ks.iter().map(String::as_str));
                        let _ = ctl(&ssh, &hostctl, host, &args, b"");
                    }
                    let hosts: Vec<Host> = used.keys().cloned().collect();
                    ssh.close_masters(&hosts);
                },
            )
        };
        let p = SshProvider {
            on_interrupt,
            cleanup: Some(cleanup),
            inventory,
            ssh,
            run_id: run_id.to_string(),
            dir,
            log_dir: log_dir.to_path_buf(),
            artifact,
            agent_dir,
            hostctl_remote,
            log_level: settings.raw("DISTZERO_LOG_LEVEL").to_string(),
            log_messages,
            bind,
            controller: ControllerRecord::current(),
            machines: BTreeMap::new(),
            used: BTreeMap::new(),
            cuts: BTreeMap::new(),
            no_iptables: BTreeSet::new(),
            logs_pulled: false,
            failed: None,
            sessions: BTreeMap::new(),
            shut_down: false,
        };
        p.sweep_once();
        tracing::info!(
            run = %p.run_id,
            inventory = %p.inventory.describe(),
            agent = %p.artifact.program().display(),
            bundle = %p.agent_dir,
            "cloud provider ready"
        );
        Ok(p)
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The ssh client settings in use (tests reach hosts with them).
    pub fn ssh(&self) -> &Ssh {
        &self.ssh
    }

    /// The host a machine runs on.
    pub fn host_of(&self, m: MachineId) -> Option<&Host> {
        self.machines.get(&m).map(|p| &p.host)
    }

    /// Run one hostctl command on `host`; install hostctl first if missing.
    fn ctl(&self, host: &Host, args: &[&str], stdin: &[u8]) -> Result<Output> {
        ctl(&self.ssh, &self.hostctl_remote, host, args, stdin)
    }

    /// A hostctl command through the host's shell session (opened on first
    /// use); through a new ssh call if the session is broken.
    fn fast(&mut self, host: &Host, args: &[&str]) -> Result<Output> {
        let line = format!(
            "sh {} {}",
            shell_quote(&self.hostctl_remote),
            shell_line(args)
        );
        if !self.sessions.contains_key(host) {
            match self.ssh.open_session(host) {
                Ok(s) => {
                    self.sessions.insert(host.clone(), s);
                }
                Err(e) => tracing::debug!(%host, error = %e, "no shell session"),
            }
        }
        if let Some(s) = self.sessions.get_mut(host) {
            match s.run(&line, COMMAND_TIMEOUT) {
                Ok(out) => return Ok(out),
                Err(e) => {
                    tracing::debug!(%host, error = %e, "shell session broke; falling back to ssh");
                    if let Some(s) = self.sessions.remove(host) {
                        s.close();
                    }
                }
            }
        }
        self.ctl(host, args, b"")
    }

    /// The program's path on the hosts: there means the bundle is whole.
    fn agent_remote(&self) -> String {
        format!("{}/{PROGRAM}", self.agent_dir)
    }

    /// Copy the bundle to `host`: each file to a temporary name, then all
    /// renamed in one go, the program last.
    fn install_agent(&self, host: &Host) -> Result<()> {
        let suffix = format!(".tmp-{}-{}", self.run_id, std::process::id());
        let mut dirs: BTreeSet<String> = BTreeSet::new();
        for f in &self.artifact.files {
            let remote = format!("{}/{}", self.agent_dir, f.path);
            if let Some((d, _)) = remote.rsplit_once('/') {
                dirs.insert(d.to_string());
            }
        }
        let mkdir = format!(
            "mkdir -p {}",
            dirs.iter()
                .map(|d| shell_quote(d))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let out = self
            .ssh
            .run(host, &mkdir, b"", COMMAND_TIMEOUT)
            .map_err(|e| host_err(host, "preparing the agent's folder", e))?;
        if out.code != 0 {
            return Err(infra(format!(
                "host {host}: copy failed: cannot create {} (check DISTZERO_CLOUD_DIR): {}",
                self.agent_dir,
                out.text()
            )));
        }
        // The program last: its presence tells hostctl the bundle is whole.
        let mut files: Vec<_> = self.artifact.files.iter().collect();
        files.sort_by_key(|f| f.path == PROGRAM);
        let tmps: Vec<(String, String)> = files
            .iter()
            .map(|f| {
                let to = format!("{}/{}", self.agent_dir, f.path);
                (format!("{to}{suffix}"), to)
            })
            .collect();
        let remove_tmps = || {
            // Best effort: no half-copied file left behind.
            let rm = format!(
                "rm -f {}",
                tmps.iter()
                    .map(|(t, _)| shell_quote(t))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let _ = self.ssh.run(host, &rm, b"", COMMAND_TIMEOUT);
        };
        for (f, (tmp, _)) in files.iter().zip(&tmps) {
            if let Err(e) = self.ssh.copy_to(host, &f.source, tmp) {
                remove_tmps();
                return Err(host_err(
                    host,
                    &format!("copy failed: copying {} of the agent", f.source.display()),
                    e,
                ));
            }
        }
        let mv = tmps
            .iter()
            .map(|(t, f)| {
                format!(
                    "chmod 755 {t} && mv -f {t} {f}",
                    t = shell_quote(t),
                    f = shell_quote(f)
                )
            })
            .collect::<Vec<_>>()
            .join(" && ");
        let out = self
            .ssh
            .run(host, &mv, b"", COMMAND_TIMEOUT)
            .map_err(|e| host_err(host, "installing the agent", e))?;
        if out.code != 0 {
            remove_tmps();
            return Err(infra(format!(
                "host {host}: copy failed: installing the agent in {}: {}",
                self.agent_dir,
                out.text()
            )));
        }
        Ok(())
    }

    fn pick_port() -> u16 {
        use rand::Rng;
        rand::thread_rng().gen_range(PORT_RANGE)
    }

    /// Start the agent of `launch` on `host`, trying `port` first.
    fn launch_on(
        &mut self,
        launch: &AgentLaunch,
        host: Host,
        first_port: Option<u16>,
    ) -> Result<MachineAddrs> {
        let m = launch.machine;
        let ip = resolve(&host)?;
        let mdir = format!("{}/{}/{m}", self.dir, self.run_id);
        let k = m.0.to_string();
        let mut cookie = launch.cookie.clone().into_bytes();
        cookie.push(b'\n');
        let mut port = first_port.unwrap_or_else(Self::pick_port);
        let mut installed = false;
        let mut attempt = 0;
        loop {
            let l = AgentLaunch {
                port,
                ..launch.clone()
            };
            let agent_args = l.args_on(self.bind.unwrap_or(ip), &mdir, &format!("{mdir}/data"));
            let command = self.artifact.command(&self.agent_dir, &agent_args)?;
            let port_s = port.to_string();
            let record = self.controller.line();
            let agent_remote = self.agent_remote();
            let mut args: Vec<&str> = vec![
                "start",
                &self.dir,
                &self.run_id,
                &k,
                &agent_remote,
                &port_s,
                &self.log_level,
                &record,
                "--",
            ];
            args.extend(command.argv.iter().map(String::as_str));
            // The cookie, then the artifact's environment, one `NAME=value`
            // a line, on stdin: never on a command line.
            let mut stdin = cookie.clone();
            stdin.extend_from_slice(
                format!("DISTZERO_LOG_MESSAGES={}\n", self.log_messages).as_bytes(),
            );
            for (name, value) in &command.env {
                stdin.extend_from_slice(format!("{name}={value}\n").as_bytes());
            }
            let out = self
                .ctl(&host, &args, &stdin)
                .map_err(|e| Error::Infra(format!("{m}: {e}")))?;
            self.used.entry(host.clone()).or_default().insert(m.0);
            self.on_interrupt
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(host.clone())
                .or_default()
                .insert(m.0);
            match out.code {
                0 => {
                    tracing::info!(machine = %m, %host, port, "agent started: {}", out.stdout.trim());
                    // Warm the host's shell session now: a fault later
                    // (kill, stop, cut) then costs no new SSH session.
                    if !self.sessions.contains_key(&host) {
                        match self.ssh.open_session(&host) {
                            Ok(s) => {
                                self.sessions.insert(host.clone(), s);
                            }
                            Err(e) => tracing::debug!(%host, error = %e, "no shell session"),
                        }
                    }
                    self.machines.insert(
                        m,
                        Placed {
                            host: host.clone(),
                            ip,
                            port,
                        },
                    );
                    let addr = SocketAddr::new(ip, port);
                    return Ok(MachineAddrs {
                        control: addr,
                        peer: addr,
                    });
                }
                code::NO_AGENT if !installed => {
                    tracing::info!(%host, bundle = %self.agent_dir, bytes = self.artifact.size(), "copying the agent");
                    self.install_agent(&host)
                        .map_err(|e| Error::Infra(format!("{m}: {e}")))?;
                    installed = true;
                }
                code::PORT_BUSY if attempt + 1 < PORT_TRIES => {
                    attempt += 1;
                    tracing::debug!(machine = %m, %host, port, "port busy; trying another");
                    port = Self::pick_port();
                }
                code::EXITED => {
                    return Err(infra(format!(
                        "{m} on host {host}: agent exited: {}",
                        out.text()
                    )))
                }
                code::ALREADY => {
                    return Err(infra(format!(
                        "{m} on host {host}: {} (a run id used twice?)",
                        out.text()
                    )))
                }
                c => {
                    return Err(infra(format!(
                        "{m} on host {host}: the agent did not come up (hostctl exit {c}): {}",
                        out.text()
                    )))
                }
            }
        }
    }

    fn placed(&self, m: MachineId) -> Result<&Placed> {
        self.machines.get(&m).ok_or(Error::NoSuchMachine(m))
    }

    fn signal(&mut self, m: MachineId, what: &str) -> Result<Output> {
        let p = self.placed(m)?.clone();
        let k = m.0.to_string();
        let (dir, run) = (self.dir.clone(), self.run_id.clone());
        let out = self
            .fast(&p.host, &[what, &dir, &run, &k])
            .map_err(|e| Error::Infra(format!("{what} of {m}: {e}")))?;
        if out.code != 0 {
            return Err(infra(format!(
                "{what} of {m} on host {}: {}",
                p.host,
                out.text()
            )));
        }
        Ok(out)
    }

    /// Pull every machine's logs into `dir` (`m<k>.jsonl`, `.log`, `.stderr`,
    /// and those of earlier boots). Goes on past failures; returns the first.
    fn pull_logs(&mut self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut first: Option<Error> = None;
        for (m, p) in &self.machines {
            let k = m.0.to_string();
            let res = self
                .ctl(&p.host, &["logs", &self.dir, &self.run_id, &k], b"")
                .and_then(|out| {
                    let files: Vec<String> = out
                        .stdout
                        .lines()
                        .map(str::to_string)
                        .filter(|l| !l.is_empty())
                        .collect();
                    self.ssh
                        .copy_from(&p.host, &files, dir)
                        .map_err(|e| host_err(&p.host, &format!("pulling the logs of {m}"), e))
                });
            if let Err(e) = res {
                tracing::error!(machine = %m, error = %e, "pulling logs failed");
                first.get_or_insert(e);
            }
        }
        self.logs_pulled = true;
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Stop every agent of the run, remove its folders and packet filters
    /// on every host it used. Returns the first error.
    fn stop_all(&mut self) -> Option<Error> {
        let mut first: Option<Error> = None;
        // Every host this run touched: its agents, folders and filters go.
        let per_host: BTreeMap<Host, Vec<String>> = self
            .used
            .iter()
            .map(|(h, ks)| (h.clone(), ks.iter().map(u32::to_string).collect()))
            .collect();
        let (ssh, hostctl, dir, run) = (&self.ssh, &self.hostctl_remote, &self.dir, &self.run_id);
        let results: Vec<(Host, Result<Output>)> = std::thread::scope(|s| {
            let handles: Vec<_> = per_host
                .iter()
                .map(|(host, ks)| {
                    s.spawn(move || {
                        let mut args = vec!["finish", dir.as_str(), run.as_str()];
                        args.extend(ks.iter().map(String::as_str));
                        (host.clone(), ctl(ssh, hostctl, host, &args, b""))
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for (host, r) in results {
            match r {
                Ok(out) if out.code == 0 => {}
                Ok(out) => {
                    first.get_or_insert(infra(format!(
                        "cleaning up run {} on host {host}: {}",
                        self.run_id,
                        out.text()
                    )));
                }
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        self.cuts.clear();
        first
    }

    /// A machine failed to come up: keep its logs, stop what was started,
    /// refuse further starts. The caller reports the error.
    fn rollback(&mut self, cause: &Error) {
        tracing::error!(run = %self.run_id, error = %cause, "deploy failed: stopping the machines already started");
        if !self.logs_pulled && !self.machines.is_empty() {
            let dir = self.log_dir.clone();
            if let Err(e) = self.pull_logs(&dir) {
                tracing::warn!(error = %e, "pulling logs during the rollback");
            }
        }
        if let Some(e) = self.stop_all() {
            tracing::error!(error = %e, "rollback incomplete");
        }
        self.failed = Some(cause.to_string());
    }

    /// Kill the agents of dead runs on every inventory host (once per
    /// process and host list). Unreachable hosts are skipped with a warning.
    fn sweep_once(&self) {
        static SWEPT: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
        let key = format!("{}|{:?}", self.dir, self.inventory.known());
        {
            let mut swept = SWEPT.lock().unwrap_or_else(|p| p.into_inner());
            if !swept.insert(key) {
                return;
            }
        }
        let hosts = self.inventory.known();
        let (ssh, hostctl, dir) = (&self.ssh, &self.hostctl_remote, &self.dir);
        std::thread::scope(|s| {
            for host in &hosts {
                s.spawn(move || {
                    if let Err(e) = sweep_host(ssh, hostctl, dir, host) {
                        tracing::warn!(%host, error = %e, "sweep of dead runs skipped");
                    }
                });
            }
        });
    }
}

/// Kill what dead runs of this machine's controllers left on `host`.
/// Returns the runs swept.
pub fn sweep_host(ssh: &Ssh, hostctl: &str, dir: &str, host: &Host) -> Result<Vec<String>> {
    let out = ctl(ssh, hostctl, host, &["runs", dir], b"")?;
    let here = boot_id();
    let dead: Vec<String> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let (run, rec) = l.split_once(' ')?;
            let rec = ControllerRecord::parse(rec)?;
            (rec.is_dead_here(&here) == Some(true)).then(|| run.to_string())
        })
        .collect();
    if dead.is_empty() {
        return Ok(dead);
    }
    let mut args = vec!["sweep", dir];
    args.extend(dead.iter().map(String::as_str));
    let out = ctl(ssh, hostctl, host, &args, b"")?;
    tracing::info!(%host, runs = ?dead, "swept dead runs: {}", out.text());
    Ok(dead)
}

/// The inventory of the settings: EC2 instances launched for the run
/// (`DISTZERO_CLOUD_PROVIDER=ec2`), else the hosts of `DISTZERO_CLOUD_HOSTS`.
pub fn inventory_from_settings(
    settings: &Settings,
    run_id: &str,
    log_dir: &Path,
) -> Result<Box<dyn Inventory>> {
    match settings.cloud_provider()? {
        "ec2" => {
            let probe = ssh_from_settings(settings, log_dir)?;
            Ok(Box::new(crate::ec2::Ec2Inventory::from_settings(
                settings,
                run_id,
                Some(probe),
            )?))
        }
        _ => Ok(Box::new(StaticInventory::from_settings(settings)?)),
    }
}

/// `host: <what>: <cause>` for a failed ssh or scp call.
fn host_err(host: &Host, what: &str, e: CallError) -> Error {
    Error::Infra(format!("host {host}: {what}: {e}"))
}

/// Run a hostctl command on `host`, installing the script first when it is
/// missing (exit 99).
pub fn ctl(ssh: &Ssh, hostctl: &str, host: &Host, args: &[&str], stdin: &[u8]) -> Result<Output> {
    let line = format!(
        "test -f {c} || exit {miss}; exec sh {c} {rest}",
        c = shell_quote(hostctl),
        miss = code::NO_HOSTCTL,
        rest = shell_line(args)
    );
    let what = match args.first().copied() {
        Some("start") => "starting the agent",
        Some(w) => w,
        None => "hostctl",
    };
    let out = ssh
        .run(host, &line, stdin, COMMAND_TIMEOUT)
        .map_err(|e| host_err(host, what, e))?;
    if out.code != code::NO_HOSTCTL {
        return Ok(out);
    }
    install_hostctl(ssh, hostctl, host)?;
    ssh.run(host, &line, stdin, COMMAND_TIMEOUT)
        .map_err(|e| host_err(host, what, e))
}

fn install_hostctl(ssh: &Ssh, hostctl: &str, host: &Host) -> Result<()> {
    let folder = hostctl.rsplit_once('/').map(|(d, _)| d).unwrap_or(".");
    // Unique per call: threads of one process may install at once.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = format!("{hostctl}.tmp-{}-{n}", std::process::id());
    let line = format!(
        "mkdir -p {d} && cat > {t} && mv -f {t} {f}",
        d = shell_quote(folder),
        t = shell_quote(&tmp),
        f = shell_quote(hostctl)
    );
    let out = ssh
        .run(host, &line, HOSTCTL.as_bytes(), COMMAND_TIMEOUT)
        .map_err(|e| host_err(host, "installing hostctl", e))?;
    if out.code != 0 {
        return Err(infra(format!(
            "host {host}: copy failed: installing {hostctl}: {}",
            out.text()
        )));
    }
    Ok(())
}

/// The address of a host (IPv4 preferred).
fn resolve(host: &Host) -> Result<IpAddr> {
    let addrs: Vec<SocketAddr> = (host.addr.as_str(), host.port)
        .to_socket_addrs()
        .map_err(|e| {
            infra(format!(
                "host {host}: unreachable (cannot resolve {}: {e})",
                host.addr
            ))
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .map(|a| a.ip())
        .ok_or_else(|| {
            infra(format!(
                "host {host}: unreachable ({} resolves to no address)",
                host.addr
            ))
        })
}

/// The ssh client of a run: the key of `DISTZERO_CLOUD_SSH_KEY`, host keys
/// from `DISTZERO_CLOUD_KNOWN_HOSTS` or trusted on first use into
/// `<log dir>/ssh_known_hosts`.
pub fn ssh_from_settings(settings: &Settings, log_dir: &Path) -> Result<Ssh> {
    let key = settings.cloud_ssh_key();
    if let Some(k) = &key {
        if !k.is_file() {
            return Err(Error::Setting(format!(
                "DISTZERO_CLOUD_SSH_KEY={} is not valid: DISTZERO_CLOUD_SSH_KEY accepts the path of a private key file, and there is none",
                k.display()
            )));
        }
    }
    let host_keys = match settings.raw("DISTZERO_CLOUD_KNOWN_HOSTS") {
        "" => {
            std::fs::create_dir_all(log_dir)
                .map_err(|e| Error::io(format!("creating {}", log_dir.display()), e))?;
            HostKeys::FirstUse(log_dir.join("ssh_known_hosts"))
        }
        f => {
            let p = PathBuf::from(f);
            if !p.is_file() {
                return Err(Error::Setting(format!(
                    "DISTZERO_CLOUD_KNOWN_HOSTS={f} is not valid: DISTZERO_CLOUD_KNOWN_HOSTS accepts a known_hosts file, and there is none"
                )));
            }
            HostKeys::Known(p)
        }
    };
    Ok(Ssh {
        key,
        host_keys,
        connect_timeout_secs: crate::ssh::CONNECT_TIMEOUT_SECS,
        control_dir: None,
    })
}

impl Provider for SshProvider {
    fn mode(&self) -> Mode {
        Mode::Cloud
    }

    fn start(&mut self, launch: &AgentLaunch) -> Result<MachineAddrs> {
        if self.shut_down {
            return Err(Error::Unsupported("the cloud provider is shut down".into()));
        }
        if let Some(why) = &self.failed {
            return Err(infra(format!(
                "the deploy of run {} was rolled back after: {why}",
                self.run_id
            )));
        }
        if self.machines.contains_key(&launch.machine) {
            return Err(Error::Unsupported(format!(
                "{} was started already",
                launch.machine
            )));
        }
        let host = match self.inventory.acquire(&self.run_id, 1).and_then(|hosts| {
            hosts
                .into_iter()
                .next()
                .ok_or_else(|| infra(format!("{} gave no host", self.inventory.describe())))
        }) {
            Ok(h) => h,
            Err(e) => {
                let e = match e {
                    Error::Setting(m) => Error::Setting(format!("{}: {m}", launch.machine)),
                    e => infra(format!("{}: no host: {e}", launch.machine)),
                };
                self.rollback(&e);
                return Err(e);
            }
        };
        match self.launch_on(launch, host.clone(), None) {
            Ok(a) => Ok(a),
            Err(e) => {
                if let Err(r) = self
                    .inventory
                    .release(&self.run_id, std::slice::from_ref(&host))
                {
                    tracing::warn!(%host, error = %r, "releasing a host that failed");
                }
                self.rollback(&e);
                Err(e)
            }
        }
    }

    fn kill(&mut self, machine: MachineId) -> Result<()> {
        if !self.machines.contains_key(&machine) {
            return Ok(());
        }
        self.signal(machine, "kill").map(|_| ())
    }

    fn restart(&mut self, launch: &AgentLaunch) -> Result<MachineAddrs> {
        let m = launch.machine;
        let p = self.placed(m)?.clone();
        self.signal(m, "kill")?;
        self.launch_on(launch, p.host, Some(p.port))
    }

    fn pause(&mut self, machine: MachineId) -> Result<()> {
        self.signal(machine, "stop").map(|_| ())
    }

    fn resume(&mut self, machine: MachineId) -> Result<()> {
        self.signal(machine, "cont").map(|_| ())
    }

    fn cut(&mut self, from: MachineId, to: MachineId) -> Result<bool> {
        let f = self.placed(from)?.clone();
        let t = self.placed(to)?.clone();
        if self.cuts.contains_key(&(from, to)) {
            return Ok(true);
        }
        if self.no_iptables.contains(&t.host) {
            return Ok(false);
        }
        let shared = self
            .machines
            .iter()
            .any(|(m, p)| *m != from && p.ip == f.ip);
        if shared {
            tracing::info!(%from, %to, "no real cut: another machine shares the address of {from}");
            return Ok(false);
        }
        let (run, ip, port) = (self.run_id.clone(), f.ip.to_string(), t.port.to_string());
        let out = self.fast(&t.host, &["cut", &run, &ip, &port])?;
        match out.code {
            0 => {
                self.cuts.insert(
                    (from, to),
                    RealCut {
                        host: t.host,
                        from_ip: f.ip,
                        port: t.port,
                    },
                );
                Ok(true)
            }
            code::NO_IPTABLES => {
                tracing::warn!(host = %t.host, why = %out.text(), "no iptables: the agent-level filter acts alone");
                self.no_iptables.insert(t.host);
                Ok(false)
            }
            c => Err(infra(format!(
                "cut {from} -> {to} on host {} failed (hostctl exit {c}): {}",
                t.host,
                out.text()
            ))),
        }
    }

    fn heal(&mut self, from: MachineId, to: MachineId) -> Result<()> {
        let Some(c) = self.cuts.remove(&(from, to)) else {
            return Ok(());
        };
        let (ip, port) = (c.from_ip.to_string(), c.port.to_string());
        let run = self.run_id.clone();
        let out = self.fast(&c.host, &["heal", &run, &ip, &port])?;
        if out.code != 0 {
            return Err(infra(format!(
                "heal {from} -> {to} on host {} failed: {}",
                c.host,
                out.text()
            )));
        }
        Ok(())
    }

    fn collect_logs(&mut self, dir: &Path) -> Result<()> {
        self.pull_logs(dir)
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.shut_down {
            return Ok(());
        }
        self.shut_down = true;
        let mut first: Option<Error> = None;
        if !self.logs_pulled && !self.machines.is_empty() {
            let dir = self.log_dir.clone();
            if let Err(e) = self.pull_logs(&dir) {
                first.get_or_insert(e);
            }
        }
        if let Some(e) = self.stop_all() {
            first.get_or_insert(e);
        }
        self.cuts.clear();
        let hosts: Vec<Host> = self.used.keys().cloned().collect();
        for (_, s) in std::mem::take(&mut self.sessions) {
            s.close();
        }
        let mut all = self.inventory.known();
        all.extend(hosts.iter().cloned());
        self.ssh.close_masters(&all);
        if let Err(e) = self.inventory.release(&self.run_id, &hosts) {
            first.get_or_insert(e);
        }
        self.cleanup = None;
        match first {
            Some(e) => {
                tracing::error!(error = %e, "cloud shutdown incomplete");
                Err(e)
            }
            None => Ok(()),
        }
    }
}

impl Drop for SshProvider {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!(
                "distzero-cloud: shutting down run {} failed: {e}",
                self.run_id
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_records_round_trip_and_tell_dead_from_alive() {
        let me = ControllerRecord::current();
        assert_eq!(ControllerRecord::parse(&me.line()), Some(me.clone()));
        assert_eq!(me.is_dead_here(&boot_id()), Some(false));
        let gone = ControllerRecord {
            start: me.start + 1,
            ..me.clone()
        };
        assert_eq!(gone.is_dead_here(&boot_id()), Some(true));
        let elsewhere = ControllerRecord {
            boot_id: "another-machine".into(),
            ..me
        };
        assert_eq!(elsewhere.is_dead_here(&boot_id()), None);
        assert_eq!(ControllerRecord::parse("b 12 x h"), None);
        assert_eq!(
            ControllerRecord::parse("b 12 34"),
            Some(ControllerRecord {
                boot_id: "b".into(),
                pid: 12,
                start: 34,
                host_name: "-".into()
            })
        );
    }

    #[test]
    fn hostctl_is_valid_sh_and_refuses_unsafe_names() {
        let dir = std::env::temp_dir().join(format!("dz-hostctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("hostctl.sh");
        std::fs::write(&script, HOSTCTL).unwrap();
        let syntax = std::process::Command::new("sh")
            .arg("-n")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            syntax.status.success(),
            "{}",
            String::from_utf8_lossy(&syntax.stderr)
        );
        let run = |args: &[&str]| {
            std::process::Command::new("sh")
                .arg(&script)
                .args(args)
                .output()
                .unwrap()
        };
        let o = run(&["finish", "/tmp/x", "../../etc", "0"]);
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stdout).contains("unsafe"));
        let o = run(&["bogus"]);
        assert_eq!(o.status.code(), Some(2));
        // Nothing runs under this run id: listing agents finds none.
        let o = run(&["agents", dir.to_str().unwrap(), "nope"]);
        assert_eq!(o.status.code(), Some(0));
        assert!(o.stdout.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_settings_name_the_variable() {
        use std::collections::BTreeMap;
        let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let s = Settings::from_sources(
            &env(&[("DISTZERO_CLOUD_SSH_KEY", "/no/such/key")]),
            &BTreeMap::new(),
            None,
        )
        .unwrap();
        let e = ssh_from_settings(&s, &std::env::temp_dir())
            .unwrap_err()
            .to_string();
        assert!(e.contains("DISTZERO_CLOUD_SSH_KEY"), "{e}");
        let s = Settings::from_sources(
            &env(&[("DISTZERO_CLOUD_KNOWN_HOSTS", "/no/such/file")]),
            &BTreeMap::new(),
            None,
        )
        .unwrap();
        let e = ssh_from_settings(&s, &std::env::temp_dir())
            .unwrap_err()
            .to_string();
        assert!(e.contains("DISTZERO_CLOUD_KNOWN_HOSTS"), "{e}");
        let s = Settings::from_sources(
            &env(&[
                ("DISTZERO_CLOUD_HOSTS", "h"),
                ("DISTZERO_CLOUD_DIR", "relative"),
            ]),
            &BTreeMap::new(),
            None,
        )
        .unwrap();
        let e = SshProvider::for_run(&s, "r1", &std::env::temp_dir())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("DISTZERO_CLOUD_DIR"), "{e}");
        let e = SshProvider::for_run(&s, "../x", &std::env::temp_dir())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("run id"), "{e}");
    }
}
