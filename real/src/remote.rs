//! The controller side of real modes: a [`Cluster`] that drives agents over
//! the wire, with a [`Provider`] starting and stopping them.
//!
//! Public face (what the Docker, cloud and loopback modes call):
//!
//! ```text
//! RemoteCluster::new(provider: Box<dyn Provider>, test_name: &str, settings: &Settings) -> Result<RemoteCluster>
//! RemoteCluster::with_run(provider, test_name: &str, run_id: &str, log_dir: &Path, settings: &Settings) -> Result<RemoteCluster>
//! RemoteCluster::run_id(&self) -> &str            (also Cluster::run_id)
//! RemoteCluster::cookie(&self) -> &str            (what the provider gave agents in DISTZERO_COOKIE)
//! RemoteCluster::addrs(&self, MachineId) -> Option<MachineAddrs>
//! RemoteCluster::set_max_history_ops(&mut self, usize)   (bound of Cluster::history, default MAX_HISTORY_OPS)
//! new_run_id() -> String                          (short, unique: time + random, lowercase hex)
//! run_log_dir(settings, test_name, mode, run_id) -> PathBuf   (`<log dir>/<test>/<mode>-<run id>`)
//! run_remote_workflow(test_name: &str, mode: Mode,
//!     make_provider: impl FnOnce(&Settings, &str /*run id*/, &Path /*log dir*/) -> Result<Box<dyn Provider>>,
//!     body: fn(&mut dyn Cluster) -> Result<()>)
//! ```
//!
//! `run_remote_workflow` picks the run id and the log folder first (the
//! provider needs both), builds the cluster, runs the body catching panics,
//! always shuts down, and on failure panics naming the test, the mode, the
//! error and the log folder.
//!
//! How it works: a small tokio runtime in the background holds one control
//! connection per machine (handshake first; a ping every second keeps the
//! agent from its orphan rule). Frames from agents come back through one
//! channel that the synchronous methods drain (`pump`). Commands are acked by
//! the agent, so `cut` returns once the cut is in force; a paused machine
//! cannot ack, so commands to it are sent without waiting and apply when it
//! resumes. A crashed machine's specs, links and filters are kept and sent
//! again on restart. Controller events go to `controller.jsonl` in the log
//! folder. Ops nodes record (`ctx.record`) arrive as
//! [`FromAgent::Recorded`]; each link's reader appends them to the run's
//! history as it reads them (whatever the test is doing, from any link of
//! the machine, current or not), and a crash lets the dying link read what
//! its agent sent for at most 250 ms: `Cluster::history` loses nothing that
//! reached the controller.
//!
//! Semantics worth knowing: `heal` drops what a `hold` queued (as in
//! simulation; `release` delivers it). A call to a crashed or paused machine
//! waits out its timeout. A control link that breaks is re-dialed on the next
//! command (at most every [`REDIAL_PATIENCE`]); `restart` of a machine whose
//! agent died on its own (a node panicked) starts it again. Agents listen on
//! [`DEFAULT_AGENT_PORT`] unless the provider picks another.

use crate::provider::{AgentLaunch, MachineAddrs, Provider};
use crate::wire::{self, Command, FromAgent, Role, ToAgent, WireError};
use distzero_core::clock::{ClockFault, MachineClock};
use distzero_core::cluster::{Cluster, Mode};
use distzero_core::disk::DiskFault;
use distzero_core::error::{Error, Result};
use distzero_core::history::{History, RunHistory};
use distzero_core::ids::{MachineId, NodeId};
use distzero_core::link::Link;
use distzero_core::log::{Clock, RunLog};
use distzero_core::nemesis::{self, NemesisDriver};
use distzero_core::net::{self, Net, NetOp};
use distzero_core::registry::NodeSpec;
use distzero_core::settings::{SeedChoice, Settings};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;

/// The port agents listen on, unless their provider picks another.
pub const DEFAULT_AGENT_PORT: u16 = 7410;
/// How long `add_machine` and `restart` keep dialing a new agent.
pub const DIAL_PATIENCE: Duration = Duration::from_secs(20);
/// How long a command re-dials a machine whose control link broke.
pub const REDIAL_PATIENCE: Duration = Duration::from_secs(2);
/// How long a command waits for its ack.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The controller pings every agent this often when it has nothing to say.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Most acks kept for commands nobody waits for.
const MAX_ACKS: usize = 4096;
/// After killing a machine, how long its control link may go on reading
/// what the agent sent before it died (its last records) until it closes.
const CRASH_DRAIN: Duration = Duration::from_millis(250);

/// The run's history, shared with the control links' readers: each record
/// is kept the moment it is read, whatever the test is doing.
type SharedHistory = Arc<Mutex<RunHistory>>;

fn lock(h: &SharedHistory) -> std::sync::MutexGuard<'_, RunHistory> {
    h.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Up,
    Paused,
    Down,
}

struct Conn {
    gen: u64,
    tx: tokio::sync::mpsc::UnboundedSender<ToAgent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Machine {
    launch: AgentLaunch,
    addrs: MachineAddrs,
    conn: Option<Conn>,
    specs: Vec<NodeSpec>,
    state: State,
    /// When a re-dial last failed: no new attempt for [`REDIAL_PATIENCE`].
    redial_failed: Option<Instant>,
    /// Its clocks (the canonical copy; the agent gets it on every change
    /// and at every start).
    clock: MachineClock,
    /// Disk faults in force since the last `Reset` (`Corrupt` acts once and
    /// is not kept): sent again to a restarted agent.
    disk_faults: Vec<DiskFault>,
}

enum CtlEvent {
    Frame {
        machine: MachineId,
        gen: u64,
        frame: FromAgent,
    },
    Down {
        machine: MachineId,
        gen: u64,
        why: String,
    },
}

/// A cluster of real agents (loopback threads, containers or hosts).
pub struct RemoteCluster {
    provider: Box<dyn Provider>,
    mode: Mode,
    rt: tokio::runtime::Runtime,
    test_name: String,
    run_id: String,
    log_dir: PathBuf,
    cookie: String,
    seed: u64,
    epoch_micros: u64,
    orphan_secs: u64,
    start: Instant,
    machines: BTreeMap<MachineId, Machine>,
    events_tx: std_mpsc::Sender<CtlEvent>,
    events: std_mpsc::Receiver<CtlEvent>,
    next_gen: u64,
    next_client: u32,
    next_seq: u64,
    /// Acks not yet taken by the command that waits for them (at most
    /// [`MAX_ACKS`]: acks of commands to a paused machine nobody waits for).
    acks: BTreeMap<u64, Option<String>>,
    /// The network model as the controller knows it: every change goes
    /// here first, then to the agents at both ends; a (re)started agent
    /// joins with its part of it.
    net: Net<()>,
    awaiting: Option<u32>,
    reply: Option<Vec<u8>>,
    /// Pairs with a real packet filter in place (provider.cut said true).
    real_cuts: BTreeSet<(MachineId, MachineId)>,
    /// What nodes recorded (`ctx.record`), as their agents reported it.
    history: SharedHistory,
    log: RunLog,
    shut_down: bool,
    /// The test's nemesis, fired by [`RemoteCluster::wait`] on real time.
    nemesis: NemesisDriver,
}

/// A short unique run id: seconds since 2024 and 16 random bits, in hex.
pub fn new_run_id() -> String {
    use rand::Rng;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let since = secs.saturating_sub(1_704_067_200) as u32;
    format!("{since:x}{:04x}", rand::thread_rng().gen::<u16>())
}

/// `<settings log dir>/<test>/<mode>-<run id>`.
pub fn run_log_dir(settings: &Settings, test_name: &str, mode: Mode, run_id: &str) -> PathBuf {
    settings
        .log_dir()
        .join(test_name)
        .join(format!("{}-{run_id}", mode.name()))
}

fn seed_of(test_name: &str, settings: &Settings) -> Result<u64> {
    Ok(match settings.seed()? {
        SeedChoice::Fixed(s) => s,
        SeedChoice::Random => rand::random(),
        SeedChoice::FromTestName => {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in test_name.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x100_0000_01b3);
            }
            h
        }
    })
}

fn fresh_cookie() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl RemoteCluster {
    /// A cluster whose run id and log folder are picked here.
    pub fn new(
        provider: Box<dyn Provider>,
        test_name: &str,
        settings: &Settings,
    ) -> Result<RemoteCluster> {
        let run_id = new_run_id();
        let dir = run_log_dir(settings, test_name, provider.mode(), &run_id);
        Self::with_run(provider, test_name, &run_id, &dir, settings)
    }

    /// A cluster with a run id and log folder chosen by the caller (who
    /// needed them to build the provider). On error the provider is shut down.
    pub fn with_run(
        mut provider: Box<dyn Provider>,
        test_name: &str,
        run_id: &str,
        log_dir: &Path,
        settings: &Settings,
    ) -> Result<RemoteCluster> {
        let start = Instant::now();
        let (seed, orphan_secs, log, rt) = match Self::runtime(settings, test_name, log_dir, start)
        {
            Ok(parts) => parts,
            Err(e) => {
                let _ = provider.shutdown();
                return Err(e);
            }
        };
        let checked = settings.schedules().and_then(|s| {
            let cookie = settings.cookie()?.map(str::to_string);
            Ok((s, settings.swarm()?, cookie))
        });
        let schedules = match checked {
            Ok(s) => s,
            Err(e) => {
                let _ = provider.shutdown();
                return Err(e);
            }
        };
        let epoch_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        let (events_tx, events) = std_mpsc::channel();
        let c = RemoteCluster {
            mode: provider.mode(),
            provider,
            rt,
            test_name: test_name.to_string(),
            run_id: run_id.to_string(),
            log_dir: log_dir.to_path_buf(),
            cookie: schedules.2.clone().unwrap_or_else(fresh_cookie),
            seed,
            epoch_micros,
            orphan_secs,
            start,
            machines: BTreeMap::new(),
            events_tx,
            events,
            next_gen: 0,
            next_client: 0,
            next_seq: 0,
            acks: BTreeMap::new(),
            net: Net::new(BASE_LINK),
            awaiting: None,
            reply: None,
            real_cuts: BTreeSet::new(),
            history: Arc::new(Mutex::new(RunHistory::new())),
            log,
            shut_down: false,
            nemesis: NemesisDriver::new(seed, BASE_LINK, schedules.0).with_swarm(schedules.1),
        };
        {
            let _g = c.log.install();
            tracing::info!(test = %c.test_name, mode = c.mode.name(), run = %c.run_id, seed = c.seed, "cluster started");
        }
        Ok(c)
    }

    /// What can fail before the cluster exists: the seed, the orphan
    /// setting, the controller's log and its tokio runtime.
    fn runtime(
        settings: &Settings,
        test_name: &str,
        log_dir: &Path,
        start: Instant,
    ) -> Result<(u64, u64, RunLog, tokio::runtime::Runtime)> {
        let seed = seed_of(test_name, settings)?;
        let orphan_secs = settings.agent_orphan()?.as_secs();
        let log = RunLog::new(
            log_dir,
            Clock::Real(Arc::new(move || start.elapsed())),
            settings.log_level()?,
        )
        .map_err(|e| Error::io(format!("creating the log folder {}", log_dir.display()), e))?;
        // The runtime's thread logs into the controller's files too.
        let thread_log = log.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("distzero-controller")
            .on_thread_start(move || std::mem::forget(thread_log.install()))
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the controller's tokio runtime", e))?;
        Ok((seed, orphan_secs, log, rt))
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The cluster cookie (agents get it in `DISTZERO_COOKIE`).
    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    /// Where a machine's agent can be reached, if the machine exists.
    pub fn addrs(&self, machine: MachineId) -> Option<MachineAddrs> {
        self.machines.get(&machine).map(|m| m.addrs)
    }

    pub fn test_name(&self) -> &str {
        &self.test_name
    }

    /// Keep at most `limit` ops in the run's history (by default
    /// [`distzero_core::history::MAX_HISTORY_OPS`]); past it,
    /// [`Cluster::history`] fails naming the limit.
    pub fn set_max_history_ops(&mut self, limit: usize) {
        lock(&self.history).set_limit(limit);
    }

    fn machine(&self, id: MachineId) -> Result<&Machine> {
        self.machines.get(&id).ok_or(Error::NoSuchMachine(id))
    }

    fn machine_mut(&mut self, id: MachineId) -> Result<&mut Machine> {
        self.machines.get_mut(&id).ok_or(Error::NoSuchMachine(id))
    }

    /// No machine `id`, or no control link to it.
    fn link_gone(&self, id: MachineId) -> bool {
        self.machines.get(&id).is_none_or(|m| m.conn.is_none())
    }

    /// The node exists, and a message of `len` bytes fits in a frame.
    fn check_send(&self, to: NodeId, len: usize) -> Result<()> {
        if len > wire::MAX_FRAME - 64 {
            return Err(Error::Unsupported(format!(
                "a message of {len} bytes to {to} exceeds the wire's frame limit of {} bytes",
                wire::MAX_FRAME
            )));
        }
        self.check_node(to)
    }

    fn check_node(&self, to: NodeId) -> Result<()> {
        let m = self.machine(to.machine)?;
        if (to.local as usize) < m.specs.len() {
            Ok(())
        } else {
            Err(Error::NoSuchNode(to))
        }
    }

    fn check_pair(&self, from: MachineId, to: MachineId) -> Result<()> {
        self.machine(from)?;
        self.machine(to)?;
        net::check_pair(from, to)
    }

    /// Dial a machine's agent until the handshake passes (or [`DIAL_PATIENCE`]).
    fn connect(&mut self, id: MachineId, patience: Duration) -> Result<()> {
        let addr = self.machine(id)?.addrs.control;
        let cookie = self.cookie.clone();
        let run_id = self.run_id.clone();
        let dialed = self.rt.block_on(async move {
            let deadline = tokio::time::Instant::now() + patience;
            let mut wait = Duration::from_millis(20);
            loop {
                let err = match crate::agent::conn::dial(
                    addr,
                    &cookie,
                    &run_id,
                    Role::Controller,
                    Duration::from_secs(2),
                )
                .await
                {
                    Ok((s, who)) if who == id => return Ok(s),
                    Ok((_, who)) => {
                        format!("{who} answered instead (a stale agent on that address?)")
                    }
                    Err(e @ WireError::Auth(_)) => return Err(e.to_string()),
                    Err(e) => e.to_string(),
                };
                if tokio::time::Instant::now() + wait > deadline {
                    return Err(err);
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
            }
        });
        let stream = dialed.map_err(|cause| {
            Error::Infra(format!(
                "could not reach the agent of {id} at {addr} within {patience:?}: {cause}; its log is in {}",
                self.log_dir.display()
            ))
        })?;
        self.next_gen += 1;
        let gen = self.next_gen;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = self.rt.spawn(control_link(
            id,
            gen,
            stream,
            rx,
            self.events_tx.clone(),
            self.history.clone(),
        ));
        tracing::info!(machine = %id, %addr, "control link up");
        self.machine_mut(id)?.conn = Some(Conn { gen, tx, task });
        Ok(())
    }

    /// Handle one event from the agents.
    fn on_event(&mut self, ev: CtlEvent) {
        match ev {
            CtlEvent::Frame {
                machine,
                gen,
                frame,
            } => {
                let current = self
                    .machines
                    .get(&machine)
                    .and_then(|m| m.conn.as_ref())
                    .map(|c| c.gen);
                if current != Some(gen) {
                    return;
                }
                match frame {
                    FromAgent::Ack { seq, error } => {
                        if self.acks.len() >= MAX_ACKS {
                            self.acks.pop_first();
                        }
                        self.acks.insert(seq, error);
                    }
                    FromAgent::ToClient { from, to, bytes } => {
                        if self.awaiting == Some(to.local) && self.reply.is_none() {
                            self.reply = Some(bytes);
                        } else {
                            tracing::debug!(%from, %to, "a message to a client no one waits for");
                        }
                    }
                    // Kept by the link's reader as it reads them.
                    FromAgent::Recorded { .. } | FromAgent::RecordFailed { .. } => {}
                }
            }
            CtlEvent::Down { machine, gen, why } => {
                let Some(m) = self.machines.get_mut(&machine) else {
                    return;
                };
                if m.conn.as_ref().map(|c| c.gen) == Some(gen) {
                    m.conn = None;
                    if self.shut_down || m.state == State::Down {
                        tracing::debug!(%machine, %why, "control link closed");
                    } else {
                        tracing::warn!(%machine, %why, "lost the control link");
                    }
                }
            }
        }
    }

    /// Handle events until `deadline` or until `done` holds.
    /// [`RemoteCluster::pump`] until `deadline` or `done`, firing the
    /// nemesis at the times it has something due.
    fn wait(&mut self, deadline: Instant, mut done: impl FnMut(&Self) -> bool) -> Result<()> {
        loop {
            let due = self
                .nemesis
                .next_due()
                .and_then(|d| self.start.checked_add(d))
                .filter(|&d| d <= deadline);
            let Some(due) = due else {
                self.pump(deadline, done);
                return Ok(());
            };
            self.pump(due, &mut done);
            if done(self) {
                return Ok(());
            }
            nemesis::fire_due(self)?;
        }
    }

    fn pump(&mut self, deadline: Instant, mut done: impl FnMut(&Self) -> bool) {
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.events.recv_timeout(left) {
                Ok(ev) => {
                    self.on_event(ev);
                    while let Ok(ev) = self.events.try_recv() {
                        self.on_event(ev);
                    }
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => return,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(left.min(Duration::from_millis(10)));
                }
            }
        }
    }

    /// After a kill: let the machine's control link read what its agent
    /// sent before it died (records the history must keep) until the link
    /// closes, for at most [`CRASH_DRAIN`]; then drop it.
    fn drain_link(&mut self, conn: Option<Conn>) {
        let Some(mut conn) = conn else { return };
        let task = &mut conn.task;
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(CRASH_DRAIN, task).await });
    }

    fn send_frame(&mut self, id: MachineId, frame: ToAgent) -> Result<()> {
        let m = self.machine(id)?;
        let recently_failed = m
            .redial_failed
            .is_some_and(|t| t.elapsed() < REDIAL_PATIENCE);
        if m.conn.is_none() && m.state == State::Up && !recently_failed {
            // The link broke (or another controller took over): dial again.
            tracing::info!(machine = %id, "re-dialing the control link");
            if let Err(e) = self.connect(id, REDIAL_PATIENCE) {
                self.machine_mut(id)?.redial_failed = Some(Instant::now());
                return Err(e);
            }
            self.machine_mut(id)?.redial_failed = None;
        }
        let m = self.machine(id)?;
        let Some(conn) = &m.conn else {
            return Err(Error::Infra(format!(
                "{id} has no control link (its agent exited or was killed?); see its log in {}",
                self.log_dir.display()
            )));
        };
        conn.tx.send(frame).map_err(|_| {
            Error::Infra(format!(
                "the control link of {id} is closed; see its log in {}",
                self.log_dir.display()
            ))
        })
    }

    /// Send a command; wait for its ack unless the machine cannot answer
    /// (paused: it applies on resume; down: it is kept for the restart).
    fn command(&mut self, id: MachineId, cmd: Command) -> Result<()> {
        let state = self.machine(id)?.state;
        if state == State::Down {
            return Ok(());
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        let what = command_name(&cmd);
        self.send_frame(id, ToAgent::Cmd { seq, cmd })?;
        if state == State::Paused {
            return Ok(());
        }
        let deadline = Instant::now() + ACK_TIMEOUT;
        self.pump(deadline, |c| c.acks.contains_key(&seq) || c.link_gone(id));
        match self.acks.remove(&seq) {
            Some(None) => Ok(()),
            Some(Some(err)) => Err(Error::Infra(format!("{id} refused `{what}`: {err}"))),
            None if self.link_gone(id) => Err(Error::Infra(format!(
                "{id} lost its control link before acknowledging `{what}` (its agent exited?); see its log in {}",
                self.log_dir.display()
            ))),
            None => Err(Error::Infra(format!(
                "{id} did not acknowledge `{what}` within {ACK_TIMEOUT:?} (agent stuck or gone); see its log in {}",
                self.log_dir.display()
            ))),
        }
    }

    fn peer_table(&self) -> Vec<(MachineId, std::net::SocketAddr)> {
        self.machines
            .iter()
            .map(|(id, m)| (*id, m.addrs.peer))
            .collect()
    }

    /// Tell every running agent where its peers are. Only a failure of
    /// `started` (the machine just (re)started) is an error; another agent
    /// that cannot be told is logged (it may be dying on its own).
    fn broadcast_peers(&mut self, started: MachineId) -> Result<()> {
        let table = self.peer_table();
        let ids: Vec<MachineId> = self.machines.keys().copied().collect();
        for id in ids {
            let res = self.command(
                id,
                Command::SetPeers {
                    peers: table.clone(),
                },
            );
            match res {
                Err(e) if id == started => return Err(e),
                Err(e) => {
                    tracing::warn!(machine = %id, error = %e, "could not update its peer table")
                }
                Ok(()) => {}
            }
        }
        Ok(())
    }

    /// Real time since the cluster started, in ns (the clock model's `t`).
    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// After a (re)start: its part of the network model, then the nodes
    /// from their specs.
    fn replay_machine(&mut self, id: MachineId) -> Result<()> {
        let state = self.net.state_for(id);
        self.command(id, Command::Join { state })?;
        let (clock, faults) = {
            let m = self.machine(id)?;
            (m.clock, m.disk_faults.clone())
        };
        if !clock.is_exact() {
            // An agent starts on real time: only a changed clock is sent.
            self.command(id, Command::Clock { clock })?;
        }
        for fault in faults {
            self.command(id, Command::Disk { fault })?;
        }
        let specs = self.machine(id)?.specs.clone();
        for (local, spec) in specs.into_iter().enumerate() {
            self.command(id, spawn_cmd(local as u32, &spec)?)?;
        }
        Ok(())
    }

    /// Apply a network change to the controller's model, then to the
    /// agents of `ends` (acknowledged, unless paused or down).
    fn net_op(&mut self, op: NetOp, ends: &[MachineId]) -> Result<()> {
        self.net.apply(&op, 0);
        for &m in ends {
            self.command(m, Command::Net { op: op.clone() })?;
        }
        Ok(())
    }

    /// Tell every other agent the new life of `machine` (a crash or a
    /// restart): from now on, what is in flight to or from its previous
    /// life is dropped. An agent that cannot be told is logged.
    fn broadcast_life(&mut self, machine: MachineId) {
        let op = NetOp::Life {
            machine,
            life: self.net.life(machine),
        };
        let others: Vec<MachineId> = self
            .machines
            .keys()
            .copied()
            .filter(|m| *m != machine)
            .collect();
        for m in others {
            if let Err(e) = self.command(m, Command::Net { op: op.clone() }) {
                tracing::warn!(%m, error = %e, "could not tell it a machine's new life");
            }
        }
    }

    fn start_machine(&mut self, id: MachineId, restart: bool) -> Result<()> {
        let launch = self.machine(id)?.launch.clone();
        let addrs = if restart {
            self.provider.restart(&launch)
        } else {
            self.provider.start(&launch)
        }
        .map_err(|e| Error::Infra(format!("starting the agent of {id} failed: {e}")))?;
        let m = self.machine_mut(id)?;
        m.addrs = addrs;
        m.conn = None;
        m.state = State::Up;
        self.connect(id, DIAL_PATIENCE)?;
        self.broadcast_peers(id)?;
        self.replay_machine(id)
    }

    fn shutdown_inner(&mut self) -> Result<()> {
        let mut first_err: Option<Error> = None;
        // Tell every agent at once (a paused one acts on it when thawed),
        // then wait for the running ones to acknowledge.
        let ids: Vec<MachineId> = self.machines.keys().copied().collect();
        let mut waiting = Vec::new();
        for id in ids {
            let Some(m) = self.machines.get(&id) else {
                continue;
            };
            if m.state == State::Down || m.conn.is_none() {
                continue;
            }
            let running = m.state == State::Up;
            self.next_seq += 1;
            let seq = self.next_seq;
            let cmd = ToAgent::Cmd {
                seq,
                cmd: Command::Shutdown,
            };
            if self.send_frame(id, cmd).is_ok() && running {
                waiting.push((id, seq));
            }
        }
        let deadline = later(Duration::from_secs(2));
        self.pump(deadline, |c| {
            waiting
                .iter()
                .all(|(id, seq)| c.acks.contains_key(seq) || c.link_gone(*id))
        });
        for m in self.machines.values_mut() {
            m.conn = None;
            m.state = State::Down;
        }
        if let Err(e) = self.provider.collect_logs(&self.log_dir) {
            tracing::error!(error = %e, "collecting the agents' logs failed");
            first_err.get_or_insert(Error::Infra(format!(
                "collecting logs into {}: {e}",
                self.log_dir.display()
            )));
        }
        if let Err(e) = self.provider.shutdown() {
            tracing::error!(error = %e, "shutting the provider down failed");
            first_err.get_or_insert(e);
        }
        tracing::info!("shut down");
        self.log.flush();
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// `now + d`, saturating at about a century.
/// The link of every pair a test does not set: real modes add nothing to
/// the real network's own latency (and refuse the simulation-only
/// `DISTZERO_LATENCY`/`DISTZERO_LOSS`); a nemesis's recovery restores it.
const BASE_LINK: Link = Link::fixed(Duration::ZERO);

fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

fn command_name(cmd: &Command) -> &'static str {
    match cmd {
        Command::Spawn { .. } => "spawn",
        Command::SetPeers { .. } => "set peers",
        Command::Net { .. } => "network change",
        Command::Join { .. } => "join the network",
        Command::Disk { .. } => "disk fault",
        Command::Clock { .. } => "clock fault",
        Command::Shutdown => "shutdown",
    }
}

fn spawn_cmd(local: u32, spec: &NodeSpec) -> Result<Command> {
    let config = serde_json::to_string(&spec.config).map_err(|e| Error::BadConfig {
        kind: spec.kind.clone(),
        reason: e.to_string(),
    })?;
    Ok(Command::Spawn {
        local,
        kind: spec.kind.clone(),
        config,
    })
}

/// One machine's control connection: write (batched, with pings when idle),
/// read frames into the controller's channel (records straight into the
/// run's history, from any link of the machine, current or not); tell it
/// when the link ends.
async fn control_link(
    machine: MachineId,
    gen: u64,
    stream: tokio::net::TcpStream,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<ToAgent>,
    events: std_mpsc::Sender<CtlEvent>,
    history: SharedHistory,
) {
    let (mut rd, mut wr) = stream.into_split();
    let ev = events.clone();
    let reader = async move {
        loop {
            match wire::read_frame::<FromAgent, _>(&mut rd).await {
                Ok(Some(FromAgent::Recorded { node, op })) => {
                    if node.machine != machine {
                        tracing::warn!(%machine, %node, "an agent recorded an op for a node of another machine");
                    }
                    lock(&history).record_json(node, &op);
                }
                Ok(Some(FromAgent::RecordFailed { reason })) => lock(&history).fail(reason),
                Ok(Some(frame)) => {
                    if ev
                        .send(CtlEvent::Frame {
                            machine,
                            gen,
                            frame,
                        })
                        .is_err()
                    {
                        return "controller gone".to_string();
                    }
                }
                Ok(None) => return "the agent closed the connection".to_string(),
                Err(e) => return e.to_string(),
            }
        }
    };
    let writer = async move {
        let mut buf = Vec::new();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            buf.clear();
            tokio::select! {
                f = rx.recv() => match f {
                    Some(f) => { let _ = wire::encode_frame(&f, &mut buf); }
                    None => { let _ = wr.shutdown().await; return "closed by the controller".to_string(); }
                },
                _ = ping.tick() => { let _ = wire::encode_frame(&ToAgent::Ping, &mut buf); }
            }
            while buf.len() < 256 * 1024 {
                match rx.try_recv() {
                    Ok(f) => {
                        if let Err(e) = wire::encode_frame(&f, &mut buf) {
                            tracing::error!(%machine, error = %e, "a frame to the agent was not sent");
                        }
                    }
                    Err(_) => break,
                }
            }
            if let Err(e) = wr.write_all(&buf).await {
                return format!("write failed: {e}");
            }
        }
    };
    let why = tokio::select! {
        w = reader => w,
        w = writer => w,
    };
    let _ = events.send(CtlEvent::Down { machine, gen, why });
}

impl Cluster for RemoteCluster {
    fn mode(&self) -> Mode {
        self.mode
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn run_id(&self) -> &str {
        &self.run_id
    }

    fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn history(&self) -> Result<History> {
        lock(&self.history).history()
    }

    fn add_machine(&mut self) -> Result<MachineId> {
        let _g = self.log.install();
        if self.shut_down {
            return Err(Error::Unsupported("the cluster is shut down".into()));
        }
        let id = MachineId(self.machines.len() as u32);
        let launch = AgentLaunch {
            machine: id,
            run_id: self.run_id.clone(),
            cookie: self.cookie.clone(),
            seed: self.seed,
            port: DEFAULT_AGENT_PORT,
            epoch_micros: self.epoch_micros,
            orphan_secs: self.orphan_secs,
        };
        tracing::info!(machine = %id, "add machine");
        let placeholder = "0.0.0.0:0"
            .parse()
            .map_err(|_| Error::Unsupported("address".into()))?;
        self.machines.insert(
            id,
            Machine {
                launch,
                addrs: MachineAddrs {
                    control: placeholder,
                    peer: placeholder,
                },
                conn: None,
                clock: MachineClock::new(self.now_ns()),
                disk_faults: Vec::new(),
                specs: Vec::new(),
                state: State::Down,
                redial_failed: None,
            },
        );
        if let Err(e) = self.start_machine(id, false) {
            self.machines.remove(&id);
            let _ = self.provider.kill(id);
            tracing::error!(machine = %id, error = %e, "add machine failed");
            return Err(e);
        }
        Ok(id)
    }

    fn machines(&self) -> Vec<MachineId> {
        self.machines.keys().copied().collect()
    }

    fn spawn(&mut self, machine: MachineId, spec: NodeSpec) -> Result<NodeId> {
        let _g = self.log.install();
        let local = self.machine(machine)?.specs.len() as u32;
        let id = NodeId::new(machine, local);
        let cmd = spawn_cmd(local, &spec)?;
        tracing::info!(node = %id, kind = %spec.kind, "spawn");
        self.command(machine, cmd)?;
        self.machine_mut(machine)?.specs.push(spec);
        Ok(id)
    }

    fn next_node_id(&self, machine: MachineId) -> Result<NodeId> {
        let local = self.machine(machine)?.specs.len() as u32;
        Ok(NodeId::new(machine, local))
    }

    fn send_bytes(&mut self, to: NodeId, bytes: Vec<u8>) -> Result<()> {
        let _g = self.log.install();
        self.check_send(to, bytes.len())?;
        let from = NodeId::client(self.next_client);
        self.next_client += 1;
        if self.machine(to.machine)?.state == State::Down {
            tracing::debug!(%to, "send to a crashed machine: lost");
            return Ok(());
        }
        if let Err(e) = self.send_frame(to.machine, ToAgent::Deliver { from, to, bytes }) {
            tracing::warn!(%to, error = %e, "send lost");
        }
        Ok(())
    }

    fn call_bytes(&mut self, to: NodeId, bytes: Vec<u8>, timeout: Duration) -> Result<Vec<u8>> {
        let _g = self.log.install();
        self.check_send(to, bytes.len())?;
        let client = self.next_client;
        self.next_client += 1;
        let from = NodeId::client(client);
        let deadline = later(timeout);
        self.awaiting = Some(client);
        self.reply = None;
        if self.machine(to.machine)?.state != State::Down {
            if let Err(e) = self.send_frame(to.machine, ToAgent::Deliver { from, to, bytes }) {
                tracing::warn!(%to, error = %e, "call request lost");
            }
        }
        let waited = self.wait(deadline, |c| c.reply.is_some());
        self.awaiting = None;
        waited?;
        match self.reply.take() {
            Some(b) => Ok(b),
            None => {
                tracing::info!(%to, %from, after_ms = timeout.as_millis() as u64, "call timed out");
                Err(Error::Timeout { to, after: timeout })
            }
        }
    }

    fn run_for(&mut self, duration: Duration) -> Result<()> {
        let _g = self.log.install();
        let deadline = later(duration);
        self.wait(deadline, |_| false)
    }

    fn cut(&mut self, from: MachineId, to: MachineId) -> Result<()> {
        let _g = self.log.install();
        self.check_pair(from, to)?;
        tracing::info!(%from, %to, "cut");
        // The receiver first: what is in flight is dropped on arrival.
        self.net_op(NetOp::Cut { from, to }, &[to, from])?;
        if self.provider.cut(from, to)? {
            self.real_cuts.insert((from, to));
        }
        Ok(())
    }

    fn heal(&mut self, from: MachineId, to: MachineId) -> Result<()> {
        let _g = self.log.install();
        self.check_pair(from, to)?;
        tracing::info!(%from, %to, "heal");
        self.net_op(NetOp::Heal { from, to }, &[from, to])?;
        if self.real_cuts.remove(&(from, to)) {
            self.provider.heal(from, to)?;
        }
        Ok(())
    }

    fn heal_all(&mut self) -> Result<()> {
        let _g = self.log.install();
        tracing::info!("heal all");
        let ids: Vec<MachineId> = self.machines.keys().copied().collect();
        self.net_op(NetOp::HealAll, &ids)?;
        for (from, to) in std::mem::take(&mut self.real_cuts) {
            self.provider.heal(from, to)?;
        }
        Ok(())
    }

    fn hold(&mut self, from: MachineId, to: MachineId) -> Result<()> {
        let _g = self.log.install();
        self.check_pair(from, to)?;
        tracing::info!(%from, %to, "hold");
        self.net_op(NetOp::Hold { from, to }, &[from])
    }

    fn release(&mut self, from: MachineId, to: MachineId) -> Result<()> {
        let _g = self.log.install();
        self.check_pair(from, to)?;
        tracing::info!(%from, %to, "release");
        self.net_op(NetOp::Release { from, to }, &[from])
    }

    fn set_link(&mut self, from: MachineId, to: MachineId, link: Link) -> Result<()> {
        let _g = self.log.install();
        self.check_pair(from, to)?;
        link.validate()?;
        tracing::info!(%from, %to, ?link, "set link");
        self.net_op(NetOp::SetLink { from, to, link }, &[from])
    }

    fn crash(&mut self, machine: MachineId) -> Result<()> {
        let _g = self.log.install();
        if self.machine(machine)?.state == State::Down {
            return Ok(());
        }
        tracing::info!(%machine, "crash");
        self.provider.kill(machine)?;
        let m = self.machine_mut(machine)?;
        m.state = State::Down;
        let conn = m.conn.take();
        self.drain_link(conn);
        self.net.crash(machine);
        self.broadcast_life(machine);
        Ok(())
    }

    fn restart(&mut self, machine: MachineId) -> Result<()> {
        let _g = self.log.install();
        let m = self.machine(machine)?;
        if m.state != State::Down {
            // Running, unless its agent died on its own (e.g. a node panicked).
            let lost = m.conn.is_none() && self.connect(machine, Duration::from_secs(1)).is_err();
            if !lost {
                tracing::info!(%machine, "restart ignored: machine is running");
                return Ok(());
            }
            tracing::warn!(%machine, "its agent is gone without a crash; restarting it");
            self.provider.kill(machine)?;
            self.machine_mut(machine)?.state = State::Down;
            self.net.crash(machine);
        }
        tracing::info!(%machine, "restart");
        // Everyone learns the new life before it can send a word.
        self.net.restart(machine);
        self.broadcast_life(machine);
        self.start_machine(machine, true)
    }

    fn pause(&mut self, machine: MachineId) -> Result<()> {
        let _g = self.log.install();
        if self.machine(machine)?.state != State::Up {
            tracing::info!(%machine, "pause ignored: machine is not running");
            return Ok(());
        }
        tracing::info!(%machine, "pause");
        self.provider.pause(machine)?;
        self.machine_mut(machine)?.state = State::Paused;
        Ok(())
    }

    fn resume(&mut self, machine: MachineId) -> Result<()> {
        let _g = self.log.install();
        if self.machine(machine)?.state != State::Paused {
            return Ok(());
        }
        tracing::info!(%machine, "resume");
        self.provider.resume(machine)?;
        self.machine_mut(machine)?.state = State::Up;
        Ok(())
    }

    fn disk_fault(&mut self, machine: MachineId, fault: DiskFault) -> Result<()> {
        let _g = self.log.install();
        fault.validate().map_err(Error::Unsupported)?;
        tracing::info!(%machine, ?fault, "disk fault");
        let m = self.machine_mut(machine)?;
        match fault {
            // No fault in force (`Corrupt` acted once): nothing to reset,
            // no command (every nemesis window ends with a reset).
            DiskFault::Reset if m.disk_faults.is_empty() => return Ok(()),
            DiskFault::Reset => m.disk_faults.clear(),
            DiskFault::Corrupt => {}
            ref f => m.disk_faults.push(f.clone()),
        }
        self.command(machine, Command::Disk { fault })
    }

    fn clock_fault(&mut self, machine: MachineId, fault: ClockFault) -> Result<()> {
        let _g = self.log.install();
        fault.validate().map_err(Error::Unsupported)?;
        tracing::info!(%machine, ?fault, "clock fault");
        let now = self.now_ns();
        let m = self.machine_mut(machine)?;
        if fault == ClockFault::Reset && m.clock.is_exact() {
            return Ok(()); // it reads real time already
        }
        m.clock.fault(now, &fault);
        let clock = m.clock;
        self.command(machine, Command::Clock { clock })
    }

    fn nemesis_driver(&mut self) -> &mut NemesisDriver {
        &mut self.nemesis
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.shut_down {
            return Ok(());
        }
        self.shut_down = true;
        let _g = self.log.install();
        self.shutdown_inner()
    }
}

impl Drop for RemoteCluster {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("distzero: shutting down run {} failed: {e}", self.run_id);
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Run one workflow test on a real cluster: see the module docs.
pub fn run_remote_workflow(
    test_name: &str,
    mode: Mode,
    make_provider: impl FnOnce(&Settings, &str, &Path) -> Result<Box<dyn Provider>>,
    body: fn(&mut dyn Cluster) -> Result<()>,
) {
    // Simulation-only settings (reorder, latency, buggify, seeds, …) are
    // refused, not silently ignored.
    let settings = match Settings::load().and_then(|s| {
        s.refuse_simulation_only(mode.name())?;
        s.writable_log_dir()?;
        Ok(s)
    }) {
        Ok(s) => s,
        Err(e) => panic!(
            "workflow test `{test_name}` ({} mode) cannot start: {e}",
            mode.name()
        ),
    };
    let run_id = new_run_id();
    let log_dir = run_log_dir(&settings, test_name, mode, &run_id);
    let outcome = (|| -> std::result::Result<(), String> {
        let provider = make_provider(&settings, &run_id, &log_dir)
            .map_err(|e| format!("setting up failed: {e}"))?;
        let mut cluster =
            RemoteCluster::with_run(provider, test_name, &run_id, &log_dir, &settings)
                .map_err(|e| format!("starting the cluster failed: {e}"))?;
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut cluster)));
        let shut = cluster.shutdown();
        match res {
            Ok(Ok(())) => {
                shut.map_err(|e| format!("the test passed but shutting down failed: {e}"))
            }
            Ok(Err(e)) => Err(format!("the test returned an error: {e}")),
            Err(p) => Err(format!("the test panicked: {}", panic_message(p.as_ref()))),
        }
    })();
    if let Err(msg) = outcome {
        let logs = if log_dir.exists() {
            format!("\n  logs: {}", log_dir.display())
        } else {
            String::new()
        };
        panic!(
            "workflow test `{test_name}` failed in {} mode (run {run_id}): {msg}{logs}",
            mode.name()
        );
    }
}
