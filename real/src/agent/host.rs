//! The host loop: the one owner of an agent's nodes, timers, links and
//! filters. Socket tasks feed it [`Event`]s; it calls node callbacks with the
//! log scope set, then routes what the nodes sent.

use super::conn::{self, Event, Ident};
use super::disk::FileDisk;
use super::msgtrace::{self, frame_dropped};
use super::{AgentClock, AgentConfig, Exit, StopHandle};
use crate::wire::{Command, FromAgent, PeerFrame, ToAgent};
use distzero_core::clock::MachineClock;
use distzero_core::context::{DiskStore, Env};
use distzero_core::error::{Error, Result};
use distzero_core::history::{self, Op};
use distzero_core::ids::{MachineId, NodeId, TimerId};
use distzero_core::link::Link;
use distzero_core::log::{self, RunLog, Scope};
use distzero_core::msglog::Reason;
use distzero_core::net::{Loss, Net, NetOp, Verdict, MAX_QUEUED_PER_PAIR};
use distzero_core::node::AnyNode;
use distzero_core::registry::{NodeSpec, Registry};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

/// How often the loop checks the orphan rule and flushes its logs.
const TICK: Duration = Duration::from_millis(200);
/// A controller connection silent this long (it pings every second) is dead.
const CONTROLLER_SILENCE: Duration = Duration::from_secs(5);
/// Events handled per loop turn before timers get a look.
const EVENT_BATCH: usize = 1024;
/// Most records kept while no controller is connected (sent when one
/// connects); past it they are counted, and the controller told.
pub const MAX_UNSENT_RECORDS: usize = 100_000;

/// `now + d`, or about a century on when that overflows (a timer set for "never").
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// What the nodes see: the parts of the agent an [`Env`] needs.
struct HostEnv {
    machine: MachineId,
    clock: AgentClock,
    /// This machine's clocks, as the controller set them (applied to what
    /// the nodes read and to their timers).
    mclock: MachineClock,
    rng: ChaCha8Rng,
    disk: FileDisk,
    timers: BTreeMap<(Instant, u64), (NodeId, u64)>,
    timer_at: BTreeMap<u64, Instant>,
    next_timer: u64,
    outbox: Vec<(NodeId, NodeId, Vec<u8>)>,
    /// Ops the nodes recorded in this callback, with their JSON: sent to
    /// the controller right after it, before its messages are routed.
    records: Vec<(NodeId, Op, String)>,
}

impl HostEnv {
    /// Real time since the cluster's epoch, in ns (the clock model's `t`).
    fn t(&self) -> u64 {
        u64::try_from(self.clock.now().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Env for HostEnv {
    fn now(&self, _machine: MachineId) -> Duration {
        Duration::from_nanos(self.mclock.mono(self.t()))
    }
    fn wall_clock(&self, _machine: MachineId) -> Duration {
        let t = self.t();
        let skew = self.mclock.wall(t) - t as i128;
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        Duration::from_nanos(u64::try_from((real + skew).max(0)).unwrap_or(u64::MAX))
    }
    fn send(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        self.outbox.push((from, to, bytes));
    }
    fn set_timer(&mut self, node: NodeId, after: Duration, tag: u64) -> TimerId {
        self.next_timer += 1;
        let id = self.next_timer;
        let span = self
            .mclock
            .real_span(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX));
        let at = later(Instant::now(), Duration::from_nanos(span));
        self.timers.insert((at, id), (node, tag));
        self.timer_at.insert(id, at);
        TimerId(id)
    }
    fn cancel_timer(&mut self, _node: NodeId, timer: TimerId) {
        if let Some(at) = self.timer_at.remove(&timer.0) {
            self.timers.remove(&(at, timer.0));
        }
    }
    fn rng(&mut self, _node: NodeId) -> &mut ChaCha8Rng {
        &mut self.rng
    }
    fn disk(&mut self, machine: MachineId) -> &mut dyn DiskStore {
        if machine != self.machine {
            tracing::error!(%machine, "a node asked for another machine's disk; it gets its own");
        }
        &mut self.disk
    }
    fn sync_disk(&mut self, _machine: MachineId) -> std::io::Result<()> {
        let took = self.disk.sync()?;
        if !took.is_zero() {
            // A slow fsync blocks the machine's one thread: so does this.
            std::thread::sleep(took);
        }
        Ok(())
    }
    fn buggify(&mut self, _node: NodeId) -> bool {
        false
    }
    fn record(&mut self, node: NodeId, mut op: Op) {
        // Real time, never the machine's clock (see `distzero_core::clock`).
        op.time = self.clock.now();
        // The log scope is the node's, as for its other events.
        let json = op.to_json();
        history::log_op_json(&json);
        self.records.push((node, op, json));
    }
}

/// A message waiting out its link latency.
struct Delayed {
    due: Instant,
    frame: PeerFrame,
}

struct Host {
    ident: Arc<Ident>,
    registry: Registry,
    env: HostEnv,
    nodes: BTreeMap<u32, Box<dyn AnyNode>>,
    peers: BTreeMap<MachineId, SocketAddr>,
    /// The network model (the simulator's own), this agent's copy (its
    /// draws of loss and latency seeded apart from the nodes' rng): links
    /// and holds of its outgoing pairs, cuts and epochs of the pairs it is
    /// an end of, every machine's life. Its times are ns since `t0`.
    net: Net<PeerFrame>,
    t0: Instant,
    /// Messages waiting out their link latency, per destination, bounded.
    delayed: BTreeMap<MachineId, VecDeque<Delayed>>,
    /// The outgoing link task of each peer, fed through a bounded channel.
    out: BTreeMap<MachineId, tokio::sync::mpsc::Sender<PeerFrame>>,
    /// The newest inbound link of each peer (connection ids grow).
    peer_in: BTreeMap<MachineId, u64>,
    local: VecDeque<(NodeId, NodeId, u64, Vec<u8>)>,
    controller: Option<(u64, UnboundedSender<FromAgent>, tokio::task::JoinHandle<()>)>,
    /// Records waiting for a controller (at most [`MAX_UNSENT_RECORDS`]),
    /// and how many did not fit.
    unsent: VecDeque<FromAgent>,
    unsent_lost: u64,
    /// Last frame from a controller, or when the agent last had none.
    last_heard: Instant,
    orphan: Duration,
}

pub(super) async fn run(
    cfg: AgentConfig,
    registry: Registry,
    stop: StopHandle,
    clock: AgentClock,
    boot: u64,
    log: RunLog,
) -> Result<Exit> {
    let me = cfg.machine;
    log::set_scope(Scope {
        machine: Some(me),
        node: None,
        time: Duration::ZERO,
    });
    let listener = match cfg.listener {
        Some(l) => {
            l.set_nonblocking(true)
                .map_err(|e| Error::io("making the agent's listener non-blocking", e))?;
            tokio::net::TcpListener::from_std(l)
                .map_err(|e| Error::io("adopting the agent's listener", e))?
        }
        None => tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| {
                Error::io(
                    format!(
                        "{me} cannot listen on {} (port taken? another agent still running?)",
                        cfg.listen
                    ),
                    e,
                )
            })?,
    };
    let local_addr = listener.local_addr().ok();
    let disk_dir = cfg.data_dir.join("disk");
    let mix = (u64::from(me.0) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ boot.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let disk = FileDisk::open(&disk_dir, cfg.seed ^ mix ^ 0xD15C)
        .map_err(|e| Error::io(format!("opening the disk {}", disk_dir.display()), e))?;
    msgtrace::start(boot);
    let ident = Arc::new(Ident {
        machine: me,
        run_id: cfg.run_id.clone(),
        cookie: cfg.cookie.clone(),
        known: Default::default(),
    });
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(conn::accept_loop(listener, ident.clone(), ev_tx));

    let mut host = Host {
        ident,
        registry,
        env: HostEnv {
            machine: me,
            clock,
            mclock: MachineClock::default(),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ mix),
            disk,
            timers: BTreeMap::new(),
            timer_at: BTreeMap::new(),
            next_timer: 0,
            outbox: Vec::new(),
            records: Vec::new(),
        },
        nodes: BTreeMap::new(),
        peers: BTreeMap::new(),
        // No latency of its own on top of the real network's, until set.
        net: Net::new(Link::fixed(Duration::ZERO)).seeded(cfg.seed ^ mix ^ 0x5555_5555),
        t0: Instant::now(),
        delayed: BTreeMap::new(),
        out: BTreeMap::new(),
        peer_in: BTreeMap::new(),
        local: VecDeque::new(),
        controller: None,
        unsent: VecDeque::new(),
        unsent_lost: 0,
        last_heard: Instant::now(),
        orphan: cfg.orphan,
    };
    tracing::info!(
        run = %cfg.run_id,
        boot,
        listen = %local_addr.map(|a| a.to_string()).unwrap_or_default(),
        kinds = %host.registry.kinds().join(","),
        "agent started"
    );

    let mut sigterm = if cfg.handle_signals { signals() } else { None };
    let mut next_tick = Instant::now() + TICK;
    let mut last_tick = Instant::now();
    loop {
        if stop.is_killed() {
            tracing::info!("killed");
            return Ok(Exit::Killed);
        }
        if stop.freeze_if_paused() {
            // Frozen: whatever time passed is not the controller's fault.
            host.last_heard = Instant::now();
            last_tick = Instant::now();
            continue;
        }
        host.run_local();
        host.fire_timers();
        host.release_delayed();
        if !host.local.is_empty() {
            // Let the socket tasks run between bursts of local messages.
            tokio::task::yield_now().await;
        }

        let now = Instant::now();
        if now >= next_tick {
            if now.duration_since(last_tick) > TICK * 5 {
                // The process was frozen (SIGSTOP) or stalled: restart the clock.
                host.last_heard = now;
            }
            last_tick = now;
            next_tick = now + TICK;
            log.flush();
            if let Some(exit) = host.check_orphan(now) {
                return Ok(exit);
            }
        }

        let mut deadline = next_tick;
        if let Some(((at, _), _)) = host.env.timers.first_key_value() {
            deadline = deadline.min(*at);
        }
        for q in host.delayed.values() {
            if let Some(d) = q.front() {
                deadline = deadline.min(d.due);
            }
        }
        if !host.local.is_empty() {
            deadline = Instant::now();
        }
        tokio::select! {
            ev = ev_rx.recv() => {
                let Some(ev) = ev else { return Ok(Exit::Killed) };
                if let Some(exit) = host.handle(ev).await {
                    return Ok(exit);
                }
                for _ in 0..EVENT_BATCH {
                    match ev_rx.try_recv() {
                        Ok(ev) => if let Some(exit) = host.handle(ev).await { return Ok(exit) },
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
            _ = stop.inner.wake.notified() => {}
            _ = async {
                match sigterm.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::info!("SIGTERM or SIGINT: exiting");
                host.goodbye().await;
                return Ok(Exit::Signal);
            }
        }
    }
}

/// SIGTERM and SIGINT as one stream (unix only).
fn signals() -> Option<tokio::sync::mpsc::UnboundedReceiver<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).ok()?;
        let mut int = signal(SignalKind::interrupt()).ok()?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = tx.send(());
        });
        Some(rx)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

impl Host {
    fn me(&self) -> MachineId {
        self.env.machine
    }

    /// Call a node's callback with the log scope set, then route its sends.
    fn with_node(
        &mut self,
        local: u32,
        f: impl FnOnce(&mut dyn AnyNode, &mut HostEnv, NodeId),
    ) -> bool {
        let Some(mut node) = self.nodes.remove(&local) else {
            return false;
        };
        let id = NodeId::new(self.me(), local);
        let prev = log::set_scope(Scope {
            machine: Some(self.me()),
            node: Some(id),
            time: self.env.clock.now(),
        });
        f(node.as_mut(), &mut self.env, id);
        log::set_scope(prev);
        self.nodes.insert(local, node);
        self.send_records();
        self.route_outbox();
        true
    }

    /// Send what the nodes recorded to the controller, at once: its
    /// history outlives this machine. An op over
    /// [`history::MAX_OP_BYTES`] goes as the error it is.
    fn send_records(&mut self) {
        for (node, op, json) in std::mem::take(&mut self.env.records) {
            let frame = match history::check_op_size(node, &op, &json) {
                Ok(()) => FromAgent::Recorded { node, op: json },
                Err(reason) => {
                    tracing::error!(%reason, "an op too large for the run's history");
                    FromAgent::RecordFailed { reason }
                }
            };
            self.record_to_controller(frame);
        }
    }

    /// One record frame to the controller; without one, kept (bounded)
    /// until one connects.
    fn record_to_controller(&mut self, frame: FromAgent) {
        let frame = match &self.controller {
            Some((_, tx, _)) => match tx.send(frame) {
                Ok(()) => return,
                Err(back) => back.0,
            },
            None => frame,
        };
        if self.unsent.len() < MAX_UNSENT_RECORDS {
            self.unsent.push_back(frame);
        } else {
            if self.unsent_lost == 0 {
                tracing::error!(
                    limit = MAX_UNSENT_RECORDS,
                    "no controller, and too many records wait for one: records are lost"
                );
            }
            self.unsent_lost += 1;
        }
    }

    /// A controller connected: what waited for it, and what was lost.
    fn flush_records(&mut self) {
        let Some((_, tx, _)) = &self.controller else {
            return;
        };
        let tx = tx.clone();
        if !self.unsent.is_empty() {
            tracing::info!(
                records = self.unsent.len(),
                "sending the records kept while no controller was connected"
            );
        }
        while let Some(frame) = self.unsent.pop_front() {
            if let Err(back) = tx.send(frame) {
                self.unsent.push_front(back.0);
                return;
            }
        }
        if self.unsent_lost > 0 {
            let reason = format!(
                "{} lost {} recorded ops while no controller was connected (more than \
                 MAX_UNSENT_RECORDS = {MAX_UNSENT_RECORDS} waited)",
                self.me(),
                self.unsent_lost
            );
            if tx.send(FromAgent::RecordFailed { reason }).is_ok() {
                self.unsent_lost = 0;
            }
        }
    }

    fn route_outbox(&mut self) {
        let out = std::mem::take(&mut self.env.outbox);
        for (from, to, bytes) in out {
            self.route(from, to, bytes);
        }
    }

    fn route(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        let (me, size) = (self.me(), bytes.len());
        let id = msgtrace::sent(me, from, to, size);
        if to.is_client() {
            match &self.controller {
                Some((_, tx, _)) => {
                    msgtrace::delivered(me, id, from, to, size);
                    let _ = tx.send(FromAgent::ToClient { from, to, bytes });
                }
                None => {
                    msgtrace::dropped(me, id, from, to, size, Reason::ClientGone);
                    tracing::debug!(%from, %to, "no controller connected; a reply to a client is lost")
                }
            }
        } else if to.machine == self.me() {
            self.local.push_back((from, to, id, bytes));
        } else {
            let dest = to.machine;
            let (now, me) = (self.model_now(), self.me());
            match self.net.route(now, me, dest) {
                Verdict::At(due, stamp) => {
                    let frame = PeerFrame::Msg {
                        from,
                        to,
                        stamp,
                        id,
                        bytes,
                    };
                    self.enqueue(dest, due, frame);
                }
                Verdict::Held(stamp) => {
                    let frame = PeerFrame::Msg {
                        from,
                        to,
                        stamp,
                        id,
                        bytes,
                    };
                    if !self.net.park(self.me(), dest, frame, stamp) {
                        msgtrace::dropped(me, id, from, to, size, Reason::Full);
                        tracing::debug!(%from, %to, "lost: the hold's queue is full");
                    }
                }
                Verdict::Lost(why) => {
                    msgtrace::dropped(me, id, from, to, size, Reason::of(why));
                    tracing::trace!(%from, %to, ?why, "lost on the link")
                }
            }
        }
    }

    /// Model time: ns since the host loop started.
    fn model_now(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Send `frame` at model time `due` (at once if due and nothing waits
    /// ahead of it), in order per destination, at most
    /// [`MAX_QUEUED_PER_PAIR`] waiting.
    fn enqueue(&mut self, dest: MachineId, due: u64, frame: PeerFrame) {
        let due = later(self.t0, Duration::from_nanos(due));
        let q = self.delayed.entry(dest).or_default();
        if q.is_empty() && due <= Instant::now() {
            self.send_out(dest, frame);
        } else if q.len() >= MAX_QUEUED_PER_PAIR {
            self.net.stats.count(Loss::Full);
            frame_dropped(self.me(), &frame, Reason::Full);
            tracing::debug!(to = %dest, "lost: the link's queue is full");
        } else {
            debug_assert!(q.back().is_none_or(|d| d.due <= due), "FIFO per pair");
            q.push_back(Delayed { due, frame });
        }
    }

    /// Onto the peer link, unless the model says it is stale (an end
    /// crashed or the pair was cut since it was sent).
    fn send_out(&mut self, dest: MachineId, frame: PeerFrame) {
        let PeerFrame::Msg { stamp, .. } = &frame;
        if !self.net.accept(self.me(), dest, *stamp) {
            self.net.stats.count(Loss::Stale);
            frame_dropped(self.me(), &frame, Reason::Stale);
            tracing::trace!(to = %dest, "lost: cut or crashed while in flight");
            return;
        }
        self.write_peer(dest, frame);
    }

    fn write_peer(&mut self, dest: MachineId, mut frame: PeerFrame) {
        use tokio::sync::mpsc::error::TrySendError;
        if let Some(tx) = self.out.get(&dest) {
            match tx.try_send(frame) {
                Ok(()) => return,
                Err(TrySendError::Full(frame)) => {
                    // The peer does not keep up (or its link stalls under a
                    // real cut): a legal loss, counted.
                    self.net.stats.count(Loss::Full);
                    frame_dropped(self.me(), &frame, Reason::Full);
                    tracing::debug!(to = %dest, "lost: the peer link's queue is full");
                    return;
                }
                Err(TrySendError::Closed(back)) => frame = back,
            }
        }
        let Some(addr) = self.peers.get(&dest).copied() else {
            frame_dropped(self.me(), &frame, Reason::NoAddress);
            tracing::warn!(to = %dest, "no address for this machine (SetPeers has not named it); message dropped");
            return;
        };
        let (tx, rx) = tokio::sync::mpsc::channel(MAX_QUEUED_PER_PAIR);
        tokio::spawn(conn::peer_link(self.ident.clone(), dest, addr, rx));
        let _ = tx.try_send(frame);
        self.out.insert(dest, tx);
    }

    fn release_delayed(&mut self) {
        let now = Instant::now();
        let dests: Vec<MachineId> = self.delayed.keys().copied().collect();
        for dest in dests {
            while let Some(q) = self.delayed.get_mut(&dest) {
                if q.front().is_none_or(|d| d.due > now) {
                    break;
                }
                let Some(d) = q.pop_front() else { break };
                self.send_out(dest, d.frame);
            }
            if self.delayed.get(&dest).is_some_and(VecDeque::is_empty) {
                self.delayed.remove(&dest);
            }
        }
    }

    fn run_local(&mut self) {
        for _ in 0..EVENT_BATCH {
            let Some((from, to, id, bytes)) = self.local.pop_front() else {
                return;
            };
            self.deliver(from, to, id, bytes);
        }
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, id: u64, bytes: Vec<u8>) {
        let (me, size) = (self.me(), bytes.len());
        if self.nodes.contains_key(&to.local) {
            msgtrace::delivered(me, id, from, to, size);
        }
        let delivered = self.with_node(to.local, |n, env, me| n.message(env, me, from, &bytes));
        if !delivered {
            msgtrace::dropped(me, id, from, to, size, Reason::NoNode);
            tracing::debug!(%from, %to, "no such node here; message dropped");
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        for _ in 0..EVENT_BATCH {
            let Some((&(at, id), _)) = self.env.timers.first_key_value() else {
                return;
            };
            if at > now {
                return;
            }
            let Some((node, tag)) = self.env.timers.remove(&(at, id)) else {
                return;
            };
            self.env.timer_at.remove(&id);
            self.with_node(node.local, |n, env, me| n.timer(env, me, TimerId(id), tag));
        }
    }

    fn check_orphan(&mut self, now: Instant) -> Option<Exit> {
        if self.controller.is_some()
            && now.duration_since(self.last_heard) > CONTROLLER_SILENCE.max(self.orphan)
        {
            tracing::warn!("the controller has been silent too long; dropping its connection");
            self.controller = None;
            self.last_heard = now;
        }
        if self.controller.is_none() && now.duration_since(self.last_heard) >= self.orphan {
            tracing::warn!(
                after_secs = self.orphan.as_secs(),
                "no controller: exiting (orphan rule)"
            );
            return Some(Exit::Orphaned);
        }
        None
    }

    async fn handle(&mut self, ev: Event) -> Option<Exit> {
        match ev {
            Event::ControllerUp { conn, tx, writer } => {
                if let Some((old, _, _)) = self.controller.replace((conn, tx, writer)) {
                    // Dropping its sender ends its writer, which closes it.
                    tracing::info!(
                        old,
                        new = conn,
                        "a new controller connection replaces the old one"
                    );
                }
                self.last_heard = Instant::now();
                self.flush_records();
            }
            Event::ControllerDown { conn } => {
                if matches!(&self.controller, Some((c, _, _)) if *c == conn) {
                    tracing::warn!("lost the controller connection");
                    self.controller = None;
                    self.last_heard = Instant::now();
                }
            }
            Event::Control { conn, frame } => {
                if !matches!(&self.controller, Some((c, _, _)) if *c == conn) {
                    return None; // an old connection's last frames
                }
                self.last_heard = Instant::now();
                match frame {
                    ToAgent::Ping => {}
                    ToAgent::Deliver { from, to, bytes } => {
                        if to.machine != self.me() {
                            tracing::warn!(%to, "the controller sent a message for another machine; dropped");
                        } else {
                            let id = msgtrace::from_client(self.me());
                            self.deliver(from, to, id, bytes);
                        }
                    }
                    ToAgent::Cmd { seq, cmd } => {
                        let shutdown = matches!(cmd, Command::Shutdown);
                        let error = self.command(cmd).err();
                        if let Some((_, tx, _)) = &self.controller {
                            let _ = tx.send(FromAgent::Ack { seq, error });
                        }
                        if shutdown {
                            tracing::info!("shutdown by the controller");
                            self.goodbye().await;
                            return Some(Exit::Shutdown);
                        }
                    }
                }
            }
            Event::Peer {
                conn,
                from,
                to,
                stamp,
                id,
                bytes,
            } => {
                let latest = self.peer_in.entry(from.machine).or_insert(conn);
                if !self.net.accept(from.machine, to.machine, stamp) {
                    msgtrace::dropped(self.me(), id, from, to, bytes.len(), Reason::Stale);
                    tracing::debug!(%from, %to, "dropped: cut or crashed while in flight");
                } else if conn >= *latest {
                    *latest = conn;
                    self.deliver(from, to, id, bytes);
                } else {
                    msgtrace::dropped(self.me(), id, from, to, bytes.len(), Reason::Stale);
                    tracing::debug!(%from, %to, "dropped: arrived on a replaced link");
                }
            }
        }
        None
    }

    /// Let the controller writer send what it holds (an ack) before exiting.
    async fn goodbye(&mut self) {
        if let Some((_, tx, writer)) = self.controller.take() {
            drop(tx);
            let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
        }
    }

    fn command(&mut self, cmd: Command) -> std::result::Result<(), String> {
        match cmd {
            Command::Spawn {
                local,
                kind,
                config,
            } => {
                if self.nodes.contains_key(&local) {
                    return Err(format!(
                        "node {} is already running",
                        NodeId::new(self.me(), local)
                    ));
                }
                let config: serde_json::Value = serde_json::from_str(&config)
                    .map_err(|e| format!("config of node kind `{kind}` is not JSON: {e}"))?;
                let spec = NodeSpec { kind, config };
                let node = self
                    .registry
                    .build(&spec)
                    .map_err(|e| format!("{e} (in the agent's registry)"))?;
                tracing::info!(kind = %spec.kind, local, "spawned");
                self.nodes.insert(local, node);
                self.with_node(local, |n, env, me| n.start(env, me));
            }
            Command::SetPeers { peers } => {
                let new: BTreeMap<MachineId, SocketAddr> = peers.into_iter().collect();
                for (m, addr) in &new {
                    if self.peers.get(m) != Some(addr) {
                        self.out.remove(m); // its link task ends; the next send dials anew
                    }
                }
                self.peers = new;
                self.ident.set_peers(self.peers.values().map(|a| a.ip()));
            }
            Command::Net { op } => {
                if let NetOp::SetLink { link, .. } = &op {
                    link.validate().map_err(|e| e.to_string())?;
                }
                let now = self.model_now();
                let applied = self.net.apply(&op, now);
                let me = self.me();
                for (frame, _) in &applied.discarded {
                    frame_dropped(me, frame, Reason::Healed);
                }
                for (frame, stamp) in applied.released {
                    let dest = match &frame {
                        PeerFrame::Msg { to, .. } => to.machine,
                    };
                    let me = self.me();
                    match self.net.reroute(now, me, dest, stamp) {
                        Verdict::At(due, _) => self.enqueue(dest, due, frame),
                        _ => {
                            frame_dropped(me, &frame, Reason::Stale);
                            tracing::trace!(to = %dest, "a held message is stale on release")
                        }
                    }
                }
            }
            Command::Join { state } => {
                // Lives agree: the controller counts this machine up.
                let mine = state.lives.iter().find(|(m, _)| *m == self.me());
                if mine.is_some_and(|(_, life)| life % 2 == 1) {
                    return Err(format!(
                        "the controller counts {} as down (life {:?}) while its agent runs",
                        self.me(),
                        mine.map(|(_, l)| *l)
                    ));
                }
                // A bad link (a NaN loss) would panic a later draw: refuse.
                for (_, _, link) in &state.links {
                    link.validate().map_err(|e| e.to_string())?;
                }
                let now = self.model_now();
                self.net.load(&state, now);
            }
            Command::Disk { fault } => {
                fault.validate()?;
                tracing::info!(?fault, "disk fault");
                if let Err(e) = self.env.disk.fault(&fault) {
                    tracing::error!(?fault, error = %e, "could not damage the disk's files");
                }
            }
            Command::Clock { clock } => {
                tracing::info!(ppm = clock.ppm(), "clock set");
                self.env.mclock = clock;
            }
            Command::Shutdown => {}
        }
        Ok(())
    }
}
