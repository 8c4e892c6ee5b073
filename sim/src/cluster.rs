//! The simulated cluster: a deterministic event loop on virtual time.

use crate::msgtrace;
use crate::payload::Payload;
use crate::queue::Queue;
use distzero_core::clock::{ClockFault, MachineClock, SIM_EPOCH};
use distzero_core::context::{DiskStore, Env};
use distzero_core::disk::{DiskFault, DiskModel};
use distzero_core::history::{self, History, Op, RunHistory};
use distzero_core::log::{self, Clock, RunLog, Scope};
use distzero_core::msglog::{self, Reason};
use distzero_core::nemesis::{self, NemesisDriver, Schedule};
use distzero_core::net::{self, FxBuild, Net, NetOp, Verdict};
use distzero_core::{
    AnyNode, Cluster, Error, Link, MachineId, Mode, NodeId, NodeSpec, Registry, Result, TimerId,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How to build a [`SimCluster`].
#[derive(Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub registry: Registry,
    /// Folder of this run's logs; None = no log files.
    pub log_dir: Option<PathBuf>,
    pub log_level: Option<tracing::Level>,
    /// Log every send, delivery and drop of a message (when the run writes
    /// logs; `DISTZERO_LOG_MESSAGES`).
    pub log_messages: bool,
    /// Probability that `ctx.buggify()` is true.
    pub buggify: f64,
    /// Link of every pair unless set otherwise.
    pub default_link: Link,
    /// Opt-in hostility beyond the contract: reorder messages per pair.
    pub reorder: bool,
    /// Opt-in hostility beyond the contract: duplicate messages with this probability.
    pub duplicate: f64,
    /// Most events one run may handle; more is a failure ([`Error::Budget`]).
    pub max_events: u64,
    /// Most events at one virtual instant (zero-delay timers or zero-latency
    /// links that never let time advance); more is a failure.
    pub max_events_per_instant: u64,
    /// Most events waiting in the queue at once (messages in flight, timers
    /// set): a message storm fails the run before it eats the memory.
    pub max_pending: usize,
    /// Set from outside (a sweep's watchdog) to stop the run: the next
    /// check (every few thousand events) fails it with [`Error::Budget`].
    pub cancel: Option<Arc<AtomicBool>>,
    /// Schedules that replace the ones the test's nemesis declarations
    /// would draw, one per declaration in order (a shrunk schedule,
    /// `DISTZERO_SCHEDULE`); None = drawn from the seed.
    pub schedules: Option<Vec<Schedule>>,
    /// Swarm testing for nemeses that do not say (`DISTZERO_SWARM`).
    pub swarm: bool,
    /// Most ops the run's history keeps ([`history::MAX_HISTORY_OPS`]);
    /// past it, `history()` fails naming the limit.
    pub max_history_ops: usize,
}

/// Default of [`SimConfig::max_events`].
pub const MAX_EVENTS: u64 = 1_000_000_000;
/// Default of [`SimConfig::max_events_per_instant`].
pub const MAX_EVENTS_PER_INSTANT: u64 = 1_000_000;
/// Default of [`SimConfig::max_pending`] (about 1 GiB of events).
pub const MAX_PENDING: usize = 16_000_000;
/// Events between two looks at the budgets (the cancel flag, the queue's
/// length, events at one instant; fewer if the instant budget is small).
const CHECK_EVERY: u64 = 1 << 14;

impl SimConfig {
    pub fn new(seed: u64, registry: Registry) -> Self {
        SimConfig {
            seed,
            registry,
            log_dir: None,
            log_level: Some(tracing::Level::INFO),
            log_messages: false,
            buggify: 0.05,
            default_link: Link::default(),
            reorder: false,
            duplicate: 0.0,
            max_events: MAX_EVENTS,
            max_events_per_instant: MAX_EVENTS_PER_INSTANT,
            max_pending: MAX_PENDING,
            cancel: None,
            schedules: None,
            swarm: false,
            max_history_ops: history::MAX_HISTORY_OPS,
        }
    }
}

/// Counters of a run, for benchmarks and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub events: u64,
    pub delivered: u64,
    pub lost: u64,
    pub timers: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Up,
    Paused,
    Down,
}

enum Event {
    Start {
        node: NodeId,
        incarnation: u32,
    },
    Deliver {
        from: NodeId,
        to: NodeId,
        /// Taken at send: the message arrives only if it still holds.
        stamp: net::Stamp,
        /// The message's id in the run's message events.
        id: u32,
        bytes: Payload,
    },
    Timer {
        node: NodeId,
        incarnation: u32,
        id: u64,
        tag: u64,
    },
    /// A slow sync of this machine's disk is over: what reached the machine
    /// meanwhile is handled now, in order.
    Wake {
        machine: MachineId,
        incarnation: u32,
    },
}

impl Event {
    fn target(&self) -> MachineId {
        match self {
            Event::Start { node, .. } | Event::Timer { node, .. } => node.machine,
            Event::Deliver { to, .. } => to.machine,
            Event::Wake { machine, .. } => *machine,
        }
    }
}

// Events are what the queue holds per message in flight: keep them small.
const _: () = assert!(std::mem::size_of::<Event>() <= 48);

/// An event and its virtual time (ns), as parked at a paused machine.
struct Entry {
    time: u64,
    event: Event,
}

struct Slot {
    /// Shared by consecutive spawns of one spec (memory per machine).
    spec: Arc<NodeSpec>,
    node: Option<Box<dyn AnyNode>>,
}

struct Machine {
    state: State,
    slots: Slots,
    /// Events that reached the machine while it was paused, in order.
    parked: Vec<Entry>,
    /// A slow sync runs (until its `Wake`): what reaches the machine waits
    /// in `World::stalls`, in order.
    stalled: bool,
}

/// The nodes of a machine: most machines hold one, kept inline (no
/// allocation, and one cache line from the machine to its node).
#[derive(Default)]
enum Slots {
    #[default]
    Zero,
    One(Slot),
    Many(Vec<Slot>),
}

impl Slots {
    #[inline]
    fn as_slice(&self) -> &[Slot] {
        match self {
            Slots::Zero => &[],
            Slots::One(s) => std::slice::from_ref(s),
            Slots::Many(v) => v,
        }
    }

    #[inline]
    fn as_mut_slice(&mut self) -> &mut [Slot] {
        match self {
            Slots::Zero => &mut [],
            Slots::One(s) => std::slice::from_mut(s),
            Slots::Many(v) => v,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn push(&mut self, slot: Slot) {
        *self = match std::mem::take(self) {
            Slots::Zero => Slots::One(slot),
            Slots::One(first) => Slots::Many(vec![first, slot]),
            Slots::Many(mut v) => {
                v.push(slot);
                Slots::Many(v)
            }
        };
    }
}

/// Everything but the nodes: what a node's context reaches.
struct World {
    now: u64,
    /// Events in (time, insertion) order: the order of a heap keyed by
    /// (virtual time, sequence number).
    queue: Queue<Event>,
    /// Each machine's stream of draws (`ctx.rng()`, buggify), made on
    /// first use from the seed and the machine: one machine's draws never
    /// move another's. The controller's nodes draw from `controller_rng`.
    rngs: Vec<Option<Box<ChaCha8Rng>>>,
    controller_rng: ChaCha8Rng,
    /// The network model; a held link queues (from, to, message id, bytes).
    net: Net<(NodeId, NodeId, u32, Payload)>,
    /// Id of the next message sent (counts every send; wraps at 2^32).
    next_msg: u32,
    /// Whether the run logs message events ([`SimConfig::log_messages`]).
    msg_log: bool,
    /// Opt-in hostility: probability of delivering a second copy.
    duplicate: f64,
    /// Each machine's disk (`distzero_core::disk`), made on first use (an
    /// idle machine costs no memory for it).
    disks: Vec<Option<Box<DiskModel>>>,
    /// Each machine's clocks (`distzero_core::clock`); `clocks_exact` while
    /// no clock fault was ever applied (then every clock reads real time:
    /// the fast path).
    clocks: Vec<MachineClock>,
    clocks_exact: bool,
    /// The run's seed: each disk's faults draw from it and the machine.
    seed: u64,
    /// Events waiting at stalled machines, in order.
    stalls: BTreeMap<MachineId, Vec<Entry>>,
    /// Time a slow sync took in the current callback: the callback goes on
    /// that much later, and its machine stalls until then.
    io_delay: u64,
    next_timer: u64,
    /// Ids of the timers set and not yet fired or cancelled: a timer fires
    /// only if its id is still here, and nothing stays once it came due.
    pending: HashSet<u64, FxBuild>,
    /// Replies that reached controller client addresses, by client id.
    inbox: BTreeMap<u32, Vec<u8>>,
    waiting: HashSet<u32, FxBuild>,
    buggify: f64,
    stats: SimStats,
    /// What nodes recorded with `ctx.record`: here, outside the machines,
    /// so a crash loses none of it.
    history: RunHistory,
}

impl World {
    #[inline]
    fn push(&mut self, time: u64, event: Event) {
        self.queue.push(time, event);
    }

    /// Send one message: through the network model between machines, at
    /// once between nodes of one machine (no link between them).
    #[inline]
    fn route(&mut self, from: NodeId, to: NodeId, bytes: Payload) {
        let id = self.next_msg;
        self.next_msg = id.wrapping_add(1);
        if self.msg_log {
            msgtrace::sent(
                self.now + self.io_delay,
                id,
                from,
                to,
                bytes.as_slice().len(),
            );
        }
        if from.machine == to.machine {
            let stamp = self.net.stamp(from.machine, to.machine);
            self.push(
                self.now + self.io_delay,
                Event::Deliver {
                    from,
                    to,
                    stamp,
                    id,
                    bytes,
                },
            );
            return;
        }
        let verdict = self
            .net
            .route(self.now + self.io_delay, from.machine, to.machine);
        match verdict {
            Verdict::At(at, stamp) if self.duplicate <= 0.0 => self.push(
                at,
                Event::Deliver {
                    from,
                    to,
                    stamp,
                    id,
                    bytes,
                },
            ),
            _ => self.route_rare(verdict, from, to, id, bytes),
        }
    }

    /// Duplicates, losses and holds: off the hot path.
    #[inline(never)]
    fn route_rare(&mut self, verdict: Verdict, from: NodeId, to: NodeId, id: u32, bytes: Payload) {
        match verdict {
            Verdict::At(at, stamp) => {
                // Drawn after the message's fate, from its own keyed draws.
                let draws = self.net.draws();
                if self.duplicate > 0.0 && draws.gen_bool(self.duplicate) {
                    let extra = draws.gen_range(0..=2_000_000u64);
                    self.push(
                        at + extra,
                        Event::Deliver {
                            from,
                            to,
                            stamp,
                            id,
                            bytes: bytes.clone(),
                        },
                    );
                }
                self.push(
                    at,
                    Event::Deliver {
                        from,
                        to,
                        stamp,
                        id,
                        bytes,
                    },
                );
            }
            Verdict::Lost(why) => {
                self.stats.lost += 1;
                if self.msg_log {
                    let n = bytes.as_slice().len();
                    msgtrace::dropped(self.now, from, id, from, to, n, Reason::of(why));
                }
                tracing::debug!(%from, %to, ?why, "message lost");
            }
            Verdict::Held(stamp) => {
                let n = bytes.as_slice().len();
                if !self
                    .net
                    .park(from.machine, to.machine, (from, to, id, bytes), stamp)
                {
                    self.stats.lost += 1;
                    if self.msg_log {
                        msgtrace::dropped(self.now, from, id, from, to, n, Reason::Full);
                    }
                    tracing::debug!(%from, %to, "message lost: the hold's queue is full");
                }
            }
        }
    }
}

impl World {
    /// The machine's stream of draws, made on first use.
    fn rng_of(&mut self, machine: MachineId) -> &mut ChaCha8Rng {
        if machine.is_controller() {
            return &mut self.controller_rng;
        }
        let i = machine.0 as usize;
        if self.rngs.len() <= i {
            self.rngs.resize_with(i + 1, || None);
        }
        let seed = rng_seed(self.seed, machine);
        self.rngs[i].get_or_insert_with(|| Box::new(ChaCha8Rng::seed_from_u64(seed)))
    }

    /// The machine's disk, made on first use.
    fn disk_of(&mut self, machine: MachineId) -> &mut DiskModel {
        let seed = disk_seed(self.seed, machine);
        self.disks[machine.0 as usize].get_or_insert_with(|| Box::new(DiskModel::new(seed)))
    }
}

impl Env for World {
    fn now(&self, machine: MachineId) -> Duration {
        let t = self.now + self.io_delay;
        if self.clocks_exact {
            return Duration::from_nanos(t);
        }
        match self.clocks.get(machine.0 as usize) {
            Some(c) => Duration::from_nanos(c.mono(t)),
            None => Duration::from_nanos(t),
        }
    }

    fn wall_clock(&self, machine: MachineId) -> Duration {
        let t = self.now + self.io_delay;
        let wall = self
            .clocks
            .get(machine.0 as usize)
            .map_or(t as i128, |c| c.wall(t));
        let ns = SIM_EPOCH.as_nanos() as i128 + wall;
        Duration::from_nanos(u64::try_from(ns.max(0)).unwrap_or(u64::MAX))
    }

    fn send(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        self.route(from, to, Payload::from_vec(bytes));
    }

    fn send_slice(&mut self, from: NodeId, to: NodeId, bytes: &[u8]) {
        self.route(from, to, Payload::from_slice(bytes));
    }

    fn set_timer(&mut self, node: NodeId, after: Duration, tag: u64) -> TimerId {
        self.next_timer += 1;
        let id = self.next_timer;
        let incarnation = self.net.life(node.machine);
        let after = u64::try_from(after.as_nanos()).unwrap_or(u64::MAX);
        let span = match self.clocks.get(node.machine.0 as usize) {
            Some(c) if !self.clocks_exact => c.real_span(after),
            _ => after,
        };
        let at = (self.now + self.io_delay).saturating_add(span);
        self.pending.insert(id);
        self.push(
            at,
            Event::Timer {
                node,
                incarnation,
                id,
                tag,
            },
        );
        TimerId(id)
    }

    fn cancel_timer(&mut self, _node: NodeId, timer: TimerId) {
        self.pending.remove(&timer.0);
    }

    fn rng(&mut self, node: NodeId) -> &mut ChaCha8Rng {
        self.rng_of(node.machine)
    }

    fn disk(&mut self, machine: MachineId) -> &mut dyn DiskStore {
        self.disk_of(machine)
    }

    fn sync_disk(&mut self, machine: MachineId) -> std::io::Result<()> {
        let took = self.disk_of(machine).sync()?;
        self.io_delay += u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        Ok(())
    }

    fn buggify(&mut self, node: NodeId) -> bool {
        self.buggify > 0.0 && {
            let p = self.buggify;
            self.rng_of(node.machine).gen_bool(p)
        }
    }

    fn record(&mut self, node: NodeId, mut op: Op) {
        // Real time, never the machine's clock (see `distzero_core::clock`).
        op.time = Duration::from_nanos(self.now + self.io_delay);
        // The log scope is the node's: the event lands in its machine's file.
        let json = op.to_json();
        history::log_op_json(&json);
        match history::check_op_size(node, &op, &json) {
            Ok(()) => self.history.record(node, op),
            Err(why) => self.history.fail(why),
        }
    }
}

/// The simulated cluster. Single-threaded and deterministic: all state is
/// here, and all randomness is seeded with `seed`, in separate streams: one
/// per machine (its nodes' `ctx.rng()`), keyed draws per message
/// ([`distzero_core::net::Draws`]), one per disk and one per nemesis
/// declaration.
pub struct SimCluster {
    seed: u64,
    run_id: String,
    registry: Registry,
    world: World,
    machines: Vec<Machine>,
    next_client: u32,
    /// The spec of the last spawn, shared with the next if it is the same.
    last_spec: Option<Arc<NodeSpec>>,
    log: Option<RunLog>,
    log_dir: PathBuf,
    /// Whether this run writes logs: only then does every event set the
    /// thread's log [`Scope`] (logging off costs nothing per event).
    scoped: bool,
    _log_guard: Option<log::LogGuard>,
    budget: Budget,
    nemesis: NemesisDriver,
}

/// The run's limits, and how much of them is spent.
struct Budget {
    max_events: u64,
    max_per_instant: u64,
    max_pending: usize,
    cancel: Option<Arc<AtomicBool>>,
    /// The virtual time at the last look at the budgets, and how many
    /// events ran at it since (counted at each look).
    instant: u64,
    at_instant: u64,
    /// The event count at the last look, and at the next.
    checked_at: u64,
    next_check: u64,
    /// Events between two looks.
    interval: u64,
    /// Why the run went over budget (it stays over).
    over: Option<String>,
    spent: Option<Spent>,
}

/// The budget a run went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spent {
    /// [`SimConfig::max_events`].
    Events,
    /// [`SimConfig::max_events_per_instant`].
    EventsPerInstant,
    /// [`SimConfig::max_pending`].
    Pending,
    /// [`SimConfig::cancel`] was set (a wall-time budget).
    Cancelled,
}

/// From this many machines on, the event loop prefetches (see `prefetch`).
const PREFETCH_FROM: usize = 2048;
/// How far ahead in the queue to fetch a machine, and its node.
const PREFETCH_MACHINE: usize = 8;
const PREFETCH_NODE: usize = 3;

/// Ask the CPU to bring the cache line at `p` in; never faults.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing architecturally and
    // never faults, whatever the address.
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Set the log scope of a node's callback (when the run writes logs).
#[inline]
fn enter(scoped: bool, machine: MachineId, node: NodeId, now: u64) {
    if scoped {
        log::set_scope(Scope {
            machine: Some(machine),
            node: Some(node),
            time: Duration::from_nanos(now),
        });
    }
}

impl SimCluster {
    pub fn new(config: SimConfig) -> Result<SimCluster> {
        let (log, guard, log_dir) = match &config.log_dir {
            Some(dir) => {
                if dir.exists() {
                    std::fs::remove_dir_all(dir)
                        .map_err(|e| Error::io(format!("clearing {}", dir.display()), e))?;
                }
                let log = RunLog::new(dir, Clock::Scope, config.log_level)
                    .map_err(|e| Error::io(format!("creating log folder {}", dir.display()), e))?;
                let guard = log.install();
                (Some(log), Some(guard), dir.clone())
            }
            None => (None, None, PathBuf::new()),
        };
        log::set_scope(Scope::default());
        let scoped = log.is_some() && config.log_level.is_some();
        let mut net = Net::new(config.default_link).seeded(config.seed);
        net.reorder = config.reorder;
        let cluster = SimCluster {
            seed: config.seed,
            run_id: format!("sim-{}", config.seed),
            registry: config.registry,
            world: World {
                now: 0,
                queue: Queue::default(),
                rngs: Vec::new(),
                controller_rng: ChaCha8Rng::seed_from_u64(rng_seed(
                    config.seed,
                    MachineId::CONTROLLER,
                )),
                net,
                duplicate: config.duplicate,
                disks: Vec::new(),
                clocks: Vec::new(),
                clocks_exact: true,
                seed: config.seed,
                stalls: BTreeMap::new(),
                io_delay: 0,
                next_timer: 0,
                pending: HashSet::default(),
                inbox: BTreeMap::new(),
                waiting: HashSet::default(),
                buggify: config.buggify,
                stats: SimStats::default(),
                history: RunHistory::with_limit(config.max_history_ops),
                next_msg: 0,
                msg_log: config.log_messages && scoped,
            },
            machines: Vec::new(),
            next_client: 0,
            last_spec: None,
            log,
            log_dir,
            scoped,
            _log_guard: guard,
            budget: Budget {
                max_events: config.max_events,
                max_per_instant: config.max_events_per_instant,
                max_pending: config.max_pending,
                cancel: config.cancel,
                instant: 0,
                at_instant: 0,
                checked_at: 0,
                next_check: 0,
                interval: CHECK_EVERY.min((config.max_events_per_instant / 4).max(1)),
                over: None,
                spent: None,
            },
            nemesis: NemesisDriver::new(config.seed, config.default_link, config.schedules)
                .with_swarm(config.swarm),
        };
        // Context names the messages it encodes only while this is on.
        msglog::set_enabled(cluster.world.msg_log);
        tracing::info!(seed = config.seed, "simulated cluster started");
        Ok(cluster)
    }

    pub fn stats(&self) -> SimStats {
        self.world.stats
    }

    /// Flush log files (also done on drop).
    pub fn flush_logs(&self) {
        if let Some(l) = &self.log {
            l.flush();
        }
    }

    fn machine(&self, m: MachineId) -> Result<&Machine> {
        self.machines
            .get(m.0 as usize)
            .ok_or(Error::NoSuchMachine(m))
    }

    fn machine_mut(&mut self, m: MachineId) -> Result<&mut Machine> {
        self.machines
            .get_mut(m.0 as usize)
            .ok_or(Error::NoSuchMachine(m))
    }

    /// A change to the network, checked and logged; what a release frees
    /// is sent on in order.
    fn net_op(&mut self, op: NetOp, what: &str) -> Result<()> {
        match op {
            NetOp::Cut { from, to }
            | NetOp::Heal { from, to }
            | NetOp::Hold { from, to }
            | NetOp::Release { from, to }
            | NetOp::SetLink { from, to, .. } => {
                self.machine(from)?;
                self.machine(to)?;
                net::check_pair(from, to)?;
                self.controller_log();
                tracing::info!(%from, %to, "{what}");
            }
            NetOp::HealAll | NetOp::Life { .. } => {
                self.controller_log();
                tracing::info!("{what}");
            }
        }
        let now = self.world.now;
        let applied = self.world.net.apply(&op, now);
        for ((f, t, id, bytes), _) in applied.discarded {
            self.world.stats.lost += 1;
            if self.world.msg_log {
                let n = bytes.as_slice().len();
                msgtrace::dropped(now, f, id, f, t, n, Reason::Healed);
            }
        }
        for ((f, t, id, bytes), stamp) in applied.released {
            match self.world.net.reroute(now, f.machine, t.machine, stamp) {
                Verdict::At(at, stamp) => self.world.push(
                    at,
                    Event::Deliver {
                        from: f,
                        to: t,
                        stamp,
                        id,
                        bytes,
                    },
                ),
                verdict => {
                    self.world.stats.lost += 1;
                    if self.world.msg_log {
                        let why = match verdict {
                            Verdict::Lost(why) => Reason::of(why),
                            _ => Reason::Full,
                        };
                        let n = bytes.as_slice().len();
                        msgtrace::dropped(now, f, id, f, t, n, why);
                    }
                }
            }
        }
        Ok(())
    }

    /// [`SimCluster::run_to`], stopping at the times the nemesis has
    /// something due to fire it (between events: a fault due at `t` comes
    /// after every event at `t` so far).
    fn wait_to(&mut self, until: u64, client: Option<u32>) -> Result<()> {
        loop {
            let due = self
                .nemesis
                .next_due()
                .map(|d| d.as_nanos().min(u64::MAX as u128) as u64);
            let Some(due) = due.filter(|&d| d <= until) else {
                return self.run_to(until, client);
            };
            self.run_to(due, client)?;
            if client.is_some_and(|c| self.world.inbox.contains_key(&c)) {
                return Ok(());
            }
            nemesis::fire_due(self)?;
        }
    }

    /// Run every event up to and including virtual time `until` (ns), or
    /// until the reply for `client` arrives. Fails once a budget is spent
    /// (and from then on: a run over budget stays failed).
    fn run_to(&mut self, until: u64, client: Option<u32>) -> Result<()> {
        if let Some(over) = &self.budget.over {
            return Err(Error::Budget(over.clone()));
        }
        if self
            .budget
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            // Also when no event comes: a body that only lets time pass.
            return Err(self.over_budget(self.world.now));
        }
        let result = match client {
            None if self.machines.len() >= PREFETCH_FROM => loop {
                let Some((time, event)) = self.world.queue.pop_until(until) else {
                    break Ok(());
                };
                if let Err(e) = self.charge(time) {
                    break Err(e);
                }
                self.prefetch();
                self.world.now = time;
                self.step(Entry { time, event });
            },
            None => loop {
                let Some((time, event)) = self.world.queue.pop_until(until) else {
                    break Ok(());
                };
                if let Err(e) = self.charge(time) {
                    break Err(e);
                }
                self.world.now = time;
                self.step(Entry { time, event });
            },
            Some(c) => loop {
                if self.world.inbox.contains_key(&c) {
                    break Ok(());
                }
                let Some((time, event)) = self.world.queue.pop_until(until) else {
                    break Ok(());
                };
                if let Err(e) = self.charge(time) {
                    break Err(e);
                }
                self.world.now = time;
                self.step(Entry { time, event });
            },
        };
        if result.is_ok() && !client.is_some_and(|c| self.world.inbox.contains_key(&c)) {
            self.world.now = self.world.now.max(until);
        }
        // Back to the controller's scope, at the time reached.
        self.controller_log();
        result
    }

    /// Count one event at `time` against the budgets: one compare per
    /// event; the budgets themselves are looked at every few thousand
    /// events (at fixed event counts, so a run fails at the same event
    /// whatever the machine).
    #[inline(always)]
    fn charge(&mut self, time: u64) -> Result<()> {
        debug_assert!(time >= self.world.now, "virtual time went backwards");
        if self.world.stats.events >= self.budget.next_check {
            return self.check_budgets(time);
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn check_budgets(&mut self, time: u64) -> Result<()> {
        let events = self.world.stats.events;
        let b = &mut self.budget;
        // Time only grows: if it is where it was at the last look, every
        // event since then happened at this one instant.
        let since = events - b.checked_at;
        if time == b.instant {
            b.at_instant += since;
        } else {
            b.instant = time;
            b.at_instant = 0;
        }
        b.checked_at = events;
        b.next_check = events
            .saturating_add(b.interval)
            .min(b.max_events.max(events + 1));
        if b.at_instant > b.max_per_instant
            || events >= b.max_events
            || self.world.queue.len() > b.max_pending
            || b.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(self.over_budget(time));
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn over_budget(&mut self, time: u64) -> Error {
        let b = &mut self.budget;
        let at = Duration::from_nanos(time);
        let pending = self.world.queue.len();
        let (spent, why) = if b.at_instant > b.max_per_instant {
            (
                Spent::EventsPerInstant,
                format!(
                    "simulation budget spent: more than {} events at virtual time {at:?} without \
                     time moving on (a livelock: zero-delay timers or zero-latency messages \
                     feeding each other?); the limit is SimConfig::max_events_per_instant",
                    b.max_per_instant
                ),
            )
        } else if self.world.stats.events >= b.max_events {
            (
                Spent::Events,
                format!(
                    "simulation budget spent: {} events by virtual time {at:?}; the limit is \
                     SimConfig::max_events (DISTZERO_MAX_EVENTS)",
                    b.max_events
                ),
            )
        } else if pending > b.max_pending {
            (
                Spent::Pending,
                format!(
                    "simulation budget spent: {pending} events pending at virtual time {at:?} \
                     (a message storm?); the limit is SimConfig::max_pending",
                ),
            )
        } else {
            (
                Spent::Cancelled,
                format!(
                    "run cancelled at virtual time {at:?} after {} events (wall-time budget)",
                    self.world.stats.events
                ),
            )
        };
        b.spent = Some(spent);
        b.over = Some(why.clone());
        Error::Budget(why)
    }

    /// Which budget the run went over, if any.
    pub fn spent(&self) -> Option<Spent> {
        self.budget.spent
    }

    /// Many machines: their state does not stay in cache, and the events
    /// of a burst visit them in no useful order. The queue knows which
    /// machines come next: fetch the machine of the event a few places
    /// ahead, and the node of the one right behind it.
    #[inline(always)]
    fn prefetch(&self) {
        if let Some(e) = self.world.queue.peek_ahead(PREFETCH_MACHINE) {
            if let Some(m) = self.machines.get(e.target().0 as usize) {
                prefetch(m as *const Machine as *const u8);
            }
        }
        if let Some(e) = self.world.queue.peek_ahead(PREFETCH_NODE) {
            if let Some(m) = self.machines.get(e.target().0 as usize) {
                if let Slots::One(Slot { node: Some(n), .. }) = &m.slots {
                    prefetch(&**n as *const dyn AnyNode as *const u8);
                }
            }
        }
    }

    #[inline]
    fn step(&mut self, entry: Entry) {
        self.world.stats.events += 1;
        let target = entry.event.target();
        if target.is_controller() {
            if let Event::Deliver {
                from,
                to,
                id,
                bytes,
                ..
            } = entry.event
            {
                let waited = self.world.waiting.remove(&to.local);
                if self.world.msg_log {
                    let (now, n) = (self.world.now, bytes.as_slice().len());
                    match waited {
                        true => msgtrace::delivered(now, id, from, to, n),
                        false => msgtrace::dropped(now, to, id, from, to, n, Reason::ClientGone),
                    }
                }
                if waited {
                    self.world.inbox.insert(to.local, bytes.into_vec());
                }
            }
            return;
        }
        let Some(machine) = self.machines.get_mut(target.0 as usize) else {
            return;
        };
        match machine.state {
            State::Down => {
                if let Event::Deliver {
                    from,
                    to,
                    id,
                    bytes,
                    ..
                } = &entry.event
                {
                    self.world.stats.lost += 1;
                    if self.world.msg_log {
                        let n = bytes.as_slice().len();
                        msgtrace::dropped(self.world.now, *to, *id, *from, *to, n, Reason::Crash);
                    }
                }
                return;
            }
            State::Paused => {
                machine.parked.push(entry);
                return;
            }
            State::Up => {}
        }
        if machine.stalled {
            self.stalled(target, entry);
            return;
        }
        let incarnation = self.world.net.life(target);
        match entry.event {
            Event::Start {
                node,
                incarnation: inc,
            } => {
                debug_assert!(inc <= incarnation, "a start from a future life");
                if inc != incarnation {
                    return;
                }
                let Some(slot) = machine.slots.as_mut_slice().get_mut(node.local as usize) else {
                    return;
                };
                let Some(n) = slot.node.as_mut() else { return };
                enter(self.scoped, target, node, self.world.now);
                tracing::info!(kind = %slot.spec.kind, "node started");
                n.start(&mut self.world, node);
            }
            Event::Deliver {
                from,
                to,
                stamp,
                id,
                bytes,
            } => {
                if !self.world.net.accept(from.machine, to.machine, stamp) {
                    // An end crashed or the link was cut since it was sent.
                    self.world.stats.lost += 1;
                    if self.world.msg_log {
                        let (now, n) = (self.world.now, bytes.as_slice().len());
                        msgtrace::dropped(now, to, id, from, to, n, Reason::Stale);
                    }
                    return;
                }
                let Some(n) = machine
                    .slots
                    .as_mut_slice()
                    .get_mut(to.local as usize)
                    .and_then(|s| s.node.as_mut())
                else {
                    self.world.stats.lost += 1;
                    if self.world.msg_log {
                        let (now, n) = (self.world.now, bytes.as_slice().len());
                        msgtrace::dropped(now, to, id, from, to, n, Reason::NoNode);
                    }
                    return;
                };
                self.world.stats.delivered += 1;
                enter(self.scoped, target, to, self.world.now);
                if self.world.msg_log {
                    msgtrace::delivered(self.world.now, id, from, to, bytes.as_slice().len());
                }
                n.message(&mut self.world, to, from, bytes.as_slice());
            }
            Event::Timer {
                node,
                incarnation: inc,
                id,
                tag,
            } => {
                // Its id leaves the pending set whatever happens next.
                let cancelled = !self.world.pending.remove(&id);
                debug_assert!(inc <= incarnation, "a timer from a future life");
                if cancelled || inc != incarnation {
                    return;
                }
                let Some(n) = machine
                    .slots
                    .as_mut_slice()
                    .get_mut(node.local as usize)
                    .and_then(|s| s.node.as_mut())
                else {
                    return;
                };
                self.world.stats.timers += 1;
                enter(self.scoped, target, node, self.world.now);
                n.timer(&mut self.world, node, TimerId(id), tag);
            }
            Event::Wake { .. } => {}
        }
        if self.world.io_delay > 0 {
            self.stall(target);
        }
    }

    /// An event reached a stalled machine: it waits, unless it is the wake
    /// that ends the stall, which lets the waiting ones go, in order.
    #[cold]
    fn stalled(&mut self, target: MachineId, entry: Entry) {
        let Event::Wake { incarnation, .. } = entry.event else {
            self.world.stalls.entry(target).or_default().push(entry);
            return;
        };
        if incarnation != self.world.net.life(target) {
            return; // the wake of a stall in an earlier life
        }
        if let Some(m) = self.machines.get_mut(target.0 as usize) {
            m.stalled = false;
        }
        for e in self.world.stalls.remove(&target).unwrap_or_default() {
            self.world.push(self.world.now, e.event);
        }
    }

    /// A callback ran a slow sync: the machine handles nothing more until
    /// the time it took has passed.
    #[cold]
    fn stall(&mut self, machine: MachineId) {
        let until = self.world.now + std::mem::take(&mut self.world.io_delay);
        if let Some(m) = self.machines.get_mut(machine.0 as usize) {
            debug_assert!(!m.stalled, "a stalled machine ran a callback");
            m.stalled = true;
            let incarnation = self.world.net.life(machine);
            self.world.push(
                until,
                Event::Wake {
                    machine,
                    incarnation,
                },
            );
        }
    }

    fn new_client(&mut self) -> NodeId {
        self.next_client += 1;
        NodeId::client(self.next_client)
    }

    fn check_node(&self, to: NodeId) -> Result<()> {
        let m = self.machine(to.machine)?;
        if (to.local as usize) < m.slots.len() {
            Ok(())
        } else {
            Err(Error::NoSuchNode(to))
        }
    }

    fn controller_log(&self) {
        log::set_scope(Scope {
            machine: None,
            node: None,
            time: Duration::from_nanos(self.world.now),
        });
    }
}

/// The seed of a machine's stream of draws.
fn rng_seed(seed: u64, machine: MachineId) -> u64 {
    distzero_core::net::mix64(seed ^ u64::from(machine.0).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The seed of a machine's disk faults: apart from the cluster's rng, so
/// adding a disk fault does not move the nodes' draws.
fn disk_seed(seed: u64, machine: MachineId) -> u64 {
    seed ^ 0xD15C_0000_0000_0000 ^ u64::from(machine.0).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        if self.world.msg_log {
            msglog::set_enabled(false);
        }
        self.flush_logs();
    }
}

impl Cluster for SimCluster {
    fn mode(&self) -> Mode {
        Mode::Simulated
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
        Duration::from_nanos(self.world.now)
    }

    fn history(&self) -> Result<History> {
        self.world.history.history()
    }

    fn add_machine(&mut self) -> Result<MachineId> {
        let id = MachineId(self.machines.len() as u32);
        if id.is_controller() {
            return Err(Error::Unsupported("too many machines".into()));
        }
        self.machines.push(Machine {
            state: State::Up,
            slots: Slots::Zero,
            parked: Vec::new(),
            stalled: false,
        });
        self.world.disks.push(None);
        self.world.clocks.push(MachineClock::new(self.world.now));
        self.controller_log();
        tracing::debug!(machine = %id, "machine added");
        Ok(id)
    }

    fn machines(&self) -> Vec<MachineId> {
        (0..self.machines.len() as u32).map(MachineId).collect()
    }

    fn spawn(&mut self, machine: MachineId, spec: NodeSpec) -> Result<NodeId> {
        let node = self.registry.build(&spec)?;
        self.machine(machine)?;
        let spec = match &self.last_spec {
            Some(last) if **last == spec => last.clone(),
            _ => {
                let spec = Arc::new(spec);
                self.last_spec = Some(spec.clone());
                spec
            }
        };
        let now = self.world.now;
        let incarnation = self.world.net.life(machine);
        let m = self.machine_mut(machine)?;
        let id = NodeId::new(machine, m.slots.len() as u32);
        let up = m.state != State::Down;
        m.slots.push(Slot {
            spec,
            node: up.then_some(node),
        });
        if up {
            self.world.push(
                now,
                Event::Start {
                    node: id,
                    incarnation,
                },
            );
        }
        Ok(id)
    }

    fn next_node_id(&self, machine: MachineId) -> Result<NodeId> {
        let local = self.machine(machine)?.slots.len() as u32;
        Ok(NodeId::new(machine, local))
    }

    fn send_bytes(&mut self, to: NodeId, bytes: Vec<u8>) -> Result<()> {
        self.check_node(to)?;
        let from = self.new_client();
        self.world.route(from, to, Payload::from_vec(bytes));
        Ok(())
    }

    fn call_bytes(&mut self, to: NodeId, bytes: Vec<u8>, timeout: Duration) -> Result<Vec<u8>> {
        self.check_node(to)?;
        let from = self.new_client();
        self.world.waiting.insert(from.local);
        self.world.route(from, to, Payload::from_vec(bytes));
        let deadline = self.world.now + timeout.as_nanos() as u64;
        let ran = self.wait_to(deadline, Some(from.local));
        self.world.waiting.remove(&from.local);
        ran?;
        match self.world.inbox.remove(&from.local) {
            Some(reply) => Ok(reply),
            None => Err(Error::Timeout { to, after: timeout }),
        }
    }

    fn run_for(&mut self, duration: Duration) -> Result<()> {
        let until = self.world.now + duration.as_nanos() as u64;
        self.wait_to(until, None)
    }

    fn cut(&mut self, from: MachineId, to: MachineId) -> Result<()> {
        self.net_op(NetOp::Cut { from, to }, "cut")
    }

    fn heal(&mut self, from: MachineId, to: MachineId) -> Result<()> {
        self.net_op(NetOp::Heal { from, to }, "heal")
    }

    fn heal_all(&mut self) -> Result<()> {
        self.net_op(NetOp::HealAll, "heal all")
    }

    fn hold(&mut self, from: MachineId, to: MachineId) -> Result<()> {
        self.net_op(NetOp::Hold { from, to }, "hold")
    }

    fn release(&mut self, from: MachineId, to: MachineId) -> Result<()> {
        self.net_op(NetOp::Release { from, to }, "release")
    }

    fn set_link(&mut self, from: MachineId, to: MachineId, link: Link) -> Result<()> {
        link.validate()?;
        self.net_op(NetOp::SetLink { from, to, link }, "set link")
    }

    fn crash(&mut self, machine: MachineId) -> Result<()> {
        let m = self.machine_mut(machine)?;
        if m.state == State::Down {
            return Ok(());
        }
        m.state = State::Down;
        let parked = std::mem::take(&mut m.parked);
        m.stalled = false;
        for slot in m.slots.as_mut_slice() {
            slot.node = None;
        }
        self.world.net.crash(machine);
        let stalled = self.world.stalls.remove(&machine).unwrap_or_default();
        let now = self.world.now;
        let kept = self.world.disks[machine.0 as usize]
            .as_mut()
            .map_or(0, |d| {
                d.rekey(now);
                d.crash()
            });
        self.controller_log();
        tracing::info!(%machine, unsynced_kept = kept, "crash");
        if self.world.msg_log {
            // What waited at the paused or stalled machine dies with it.
            for e in parked.into_iter().chain(stalled) {
                if let Event::Deliver {
                    from,
                    to,
                    id,
                    bytes,
                    ..
                } = e.event
                {
                    let n = bytes.as_slice().len();
                    msgtrace::dropped(self.world.now, to, id, from, to, n, Reason::Crash);
                }
            }
        }
        Ok(())
    }

    fn restart(&mut self, machine: MachineId) -> Result<()> {
        if self.machine(machine)?.state != State::Down {
            self.controller_log();
            tracing::info!(%machine, "restart ignored: machine is running");
            return Ok(());
        }
        let mut built = Vec::new();
        for slot in self.machine(machine)?.slots.as_slice() {
            built.push(self.registry.build(&slot.spec)?);
        }
        let now = self.world.now;
        self.world.net.restart(machine);
        let inc = self.world.net.life(machine);
        let m = self.machine_mut(machine)?;
        m.state = State::Up;
        let mut starts = Vec::new();
        for (i, (slot, node)) in m.slots.as_mut_slice().iter_mut().zip(built).enumerate() {
            slot.node = Some(node);
            starts.push(NodeId::new(machine, i as u32));
        }
        self.controller_log();
        tracing::info!(%machine, "restart");
        for node in starts {
            self.world.push(
                now,
                Event::Start {
                    node,
                    incarnation: inc,
                },
            );
        }
        Ok(())
    }

    fn pause(&mut self, machine: MachineId) -> Result<()> {
        let m = self.machine_mut(machine)?;
        if m.state == State::Up {
            m.state = State::Paused;
            self.controller_log();
            tracing::info!(%machine, "pause");
        }
        Ok(())
    }

    fn resume(&mut self, machine: MachineId) -> Result<()> {
        let now = self.world.now;
        let m = self.machine_mut(machine)?;
        if m.state != State::Paused {
            return Ok(());
        }
        m.state = State::Up;
        let parked = std::mem::take(&mut m.parked);
        self.controller_log();
        tracing::info!(%machine, parked = parked.len(), "resume");
        for e in parked {
            self.world.push(now.max(e.time), e.event);
        }
        Ok(())
    }

    fn disk_fault(&mut self, machine: MachineId, fault: DiskFault) -> Result<()> {
        self.machine(machine)?;
        fault.validate().map_err(Error::Unsupported)?;
        self.controller_log();
        tracing::info!(%machine, ?fault, "disk fault");
        match &mut self.world.disks[machine.0 as usize] {
            // A disk never used has no faults to reset.
            None if fault == DiskFault::Reset => {}
            _ => {
                let now = self.world.now;
                let disk = self.world.disk_of(machine);
                disk.rekey(now);
                // The model is the disk: nothing else to damage.
                let _ = disk.fault(&fault);
            }
        }
        Ok(())
    }

    fn clock_fault(&mut self, machine: MachineId, fault: ClockFault) -> Result<()> {
        self.machine(machine)?;
        fault.validate().map_err(Error::Unsupported)?;
        self.controller_log();
        tracing::info!(%machine, ?fault, "clock fault");
        let now = self.world.now;
        self.world.clocks[machine.0 as usize].fault(now, &fault);
        self.world.clocks_exact = self.world.clocks.iter().all(MachineClock::is_exact);
        Ok(())
    }

    fn nemesis_driver(&mut self) -> &mut NemesisDriver {
        &mut self.nemesis
    }

    fn shutdown(&mut self) -> Result<()> {
        self.controller_log();
        tracing::info!(
            events = self.world.stats.events,
            delivered = self.world.stats.delivered,
            lost = self.world.stats.lost,
            "simulated cluster stopped"
        );
        self.flush_logs();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distzero_core::{Context, Node};

    /// Sets a timer on start; cancels it when told (after it fired).
    struct Timed {
        timer: Option<TimerId>,
        fired: u32,
    }

    impl Node for Timed {
        type Msg = u8;
        fn on_start(&mut self, ctx: &mut Context<'_, u8>) {
            self.timer = Some(ctx.set_timer(Duration::from_millis(5), 0));
            let never = ctx.set_timer(Duration::from_millis(10), 1);
            ctx.cancel_timer(never);
        }
        fn on_message(&mut self, ctx: &mut Context<'_, u8>, from: NodeId, _m: u8) {
            if let Some(t) = self.timer.take() {
                ctx.cancel_timer(t);
            }
            ctx.send(from, self.fired as u8);
        }
        fn on_timer(&mut self, _ctx: &mut Context<'_, u8>, _t: TimerId, _tag: u64) {
            self.fired += 1;
        }
    }

    #[test]
    fn cancelling_a_fired_timer_leaves_nothing_behind() {
        let mut r = Registry::new();
        r.register("timed", |_: serde_json::Value| Timed {
            timer: None,
            fired: 0,
        });
        let mut sim = SimCluster::new(SimConfig::new(1, r)).unwrap();
        let c: &mut dyn Cluster = &mut sim;
        let m = c.add_machine().unwrap();
        let n = c.spawn_node(m, "timed", serde_json::json!({})).unwrap();
        c.run_for(Duration::from_millis(50)).unwrap();
        // The 5 ms timer fired once; the cancelled 10 ms one never did.
        let fired: u8 = c.call(n, &0u8, Duration::from_secs(1)).unwrap();
        assert_eq!(fired, 1);
        c.run_for(Duration::from_millis(50)).unwrap();
        assert!(
            sim.world.pending.is_empty(),
            "ids of fired or cancelled timers stay: {:?}",
            sim.world.pending
        );
    }
}
