//! The one interface a workflow test sees, in every mode.

use crate::clock::ClockFault;
use crate::disk::DiskFault;
use crate::error::{Error, Result};
use crate::history::History;
use crate::ids::{MachineId, NodeId};
use crate::link::Link;
use crate::message::{decode, encode};
use crate::nemesis::{self, Nemesis, NemesisDriver, Schedule};
use crate::registry::{KindOf, NodeSpec};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;
use std::time::Duration;

/// Which world a cluster runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One thread, virtual time, one seed.
    Simulated,
    /// Agents as local processes or threads on 127.0.0.1 (the transport's own tests).
    Loopback,
    /// One Docker container per machine.
    Virtual,
    /// Real hosts over SSH.
    Cloud,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Simulated => "simulated",
            Mode::Loopback => "loopback",
            Mode::Virtual => "virtual",
            Mode::Cloud => "cloud",
        }
    }
}

/// A cluster: machines, the nodes on them, the network between them, and the
/// faults a test injects. Object safe and synchronous, so that one workflow
/// test, `fn(&mut dyn Cluster) -> Result<()>`, runs in every mode.
///
/// Typed helpers (`call`, `spawn_node`, `run_until`, `partition`, …) are on
/// `dyn Cluster` itself.
pub trait Cluster {
    fn mode(&self) -> Mode;
    /// The seed of this run (simulation replays it exactly).
    fn seed(&self) -> u64;
    /// A unique id of this run; labels everything the run creates.
    fn run_id(&self) -> &str;
    /// The folder that holds this run's logs.
    fn log_dir(&self) -> &Path;
    /// Time since the cluster started: virtual in simulation, real elsewhere.
    fn now(&self) -> Duration;
    /// The ops nodes recorded so far with [`crate::Context::record`], in
    /// record order, kept outside every machine (a crashed client's ops
    /// stay), with logs on or off: check it as is, e.g.
    /// `check_kv(&c.history()?, &Budget::default())`. In real modes an op
    /// is here once its agent's report reached the controller (a moment
    /// after the record). Fails ([`Error::Budget`]) if the history broke a
    /// bound: more than [`crate::history::MAX_HISTORY_OPS`] ops (or the
    /// cluster's own limit), an op over [`crate::history::MAX_OP_BYTES`].
    fn history(&self) -> Result<History>;

    fn add_machine(&mut self) -> Result<MachineId>;
    fn machines(&self) -> Vec<MachineId>;
    /// Start a node on a machine. It starts again from this spec whenever
    /// its machine restarts.
    fn spawn(&mut self, machine: MachineId, spec: NodeSpec) -> Result<NodeId>;
    /// The id the next node spawned on `machine` will get (a machine
    /// numbers its nodes 0, 1, … in spawn order; a failed spawn takes no
    /// number), so that configs can name nodes not spawned yet (see
    /// `spawn_group`). `Error::NoSuchMachine` for an unknown machine.
    fn next_node_id(&self, machine: MachineId) -> Result<NodeId>;

    /// Send encoded bytes to a node from a fresh client address; no reply expected.
    fn send_bytes(&mut self, to: NodeId, bytes: Vec<u8>) -> Result<()>;
    /// Send encoded bytes from a fresh client address and wait for the first
    /// message back to that address. `Error::Timeout` if none comes in time.
    fn call_bytes(&mut self, to: NodeId, bytes: Vec<u8>, timeout: Duration) -> Result<Vec<u8>>;
    /// Let the cluster run (virtual time in simulation, real time elsewhere).
    fn run_for(&mut self, duration: Duration) -> Result<()>;

    /// Drop everything from `from` to `to` (one way), including what is
    /// already in flight on that link (even if healed before it would have
    /// arrived). In real modes the receiver also drops real packets where
    /// the host allows packet filters (iptables in the receiver's network
    /// namespace). `from == to` is refused: a machine has no link to
    /// itself. See [`crate::net`] for the whole delivery contract.
    fn cut(&mut self, from: MachineId, to: MachineId) -> Result<()>;
    /// Undo `cut` and `hold` of one direction; what the hold queued is
    /// dropped (as a cut would have).
    fn heal(&mut self, from: MachineId, to: MachineId) -> Result<()>;
    /// Undo every cut and hold (dropping what holds queued).
    fn heal_all(&mut self) -> Result<()>;
    /// Queue the messages `from` sends to `to` from now on, until `release`
    /// (bounded: past [`crate::net::MAX_QUEUED_PER_PAIR`] they are lost).
    fn hold(&mut self, from: MachineId, to: MachineId) -> Result<()>;
    /// End a hold: what it queued is sent on in order (its latency starts
    /// now), ahead of anything sent later.
    fn release(&mut self, from: MachineId, to: MachineId) -> Result<()>;
    /// Latency and loss of the one-way link `from` -> `to` (messages
    /// already in flight keep their time; FIFO per pair holds regardless).
    fn set_link(&mut self, from: MachineId, to: MachineId, link: Link) -> Result<()>;

    /// Kill the machine: its nodes lose their memory; its disk keeps what
    /// was synced (unsynced changes go as its [`crate::disk::CrashLoss`]
    /// says: by default all of them). Crashing a machine that is down does
    /// nothing.
    fn crash(&mut self, machine: MachineId) -> Result<()>;
    /// Start a crashed machine again; its nodes start from their specs.
    /// Restarting a machine that runs does nothing (it is logged).
    fn restart(&mut self, machine: MachineId) -> Result<()>;
    /// Freeze the machine: nothing runs, messages wait at its door, timers
    /// fire on resume. Pausing a paused or crashed machine does nothing.
    fn pause(&mut self, machine: MachineId) -> Result<()>;
    fn resume(&mut self, machine: MachineId) -> Result<()>;

    /// A storage fault on the machine's disk ([`crate::disk::DiskFault`]);
    /// a fault whose numbers are out of bounds is an error naming the bound.
    fn disk_fault(&mut self, machine: MachineId, fault: DiskFault) -> Result<()>;
    /// A clock fault on the machine ([`crate::clock::ClockFault`]): skew,
    /// drift, step; out of bounds is an error naming the bound.
    fn clock_fault(&mut self, machine: MachineId, fault: ClockFault) -> Result<()>;

    /// Stop everything and release what the run holds (also done on drop).
    fn shutdown(&mut self) -> Result<()>;

    /// The nemesis state of this cluster (see [`crate::nemesis`]). Tests use
    /// `start_nemesis`, `wait_nemesis` and `stop_nemesis`; the cluster's
    /// waits (`run_for`, `call_bytes`) fire what comes due.
    fn nemesis_driver(&mut self) -> &mut NemesisDriver;
}

/// A request whose reply has a type of its own: `c.request(node, &req,
/// timeout)` returns a `Reply`, so the test cannot ask for the wrong one.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// struct Get { key: String }
/// #[derive(Serialize, Deserialize)]
/// struct Value(Option<String>);
/// impl distzero_core::Request for Get { type Reply = Value; }
/// ```
pub trait Request: Serialize {
    type Reply: DeserializeOwned;
}

/// How often `run_until` checks its condition.
pub const POLL: Duration = Duration::from_millis(10);

impl<'a> dyn Cluster + 'a {
    /// Add `N` machines at once: `let [a, b, c] = c.add_machines()?;`.
    pub fn add_machines<const N: usize>(&mut self) -> Result<[MachineId; N]> {
        let mut out = [MachineId(0); N];
        for slot in out.iter_mut() {
            *slot = self.add_machine()?;
        }
        Ok(out)
    }

    /// Spawn a node of a registered kind with its config: with a
    /// [`Kind<C>`](crate::Kind) the config must be a `C` (checked at compile
    /// time); with a `&str`, any serializable config.
    pub fn spawn_node<C: Serialize>(
        &mut self,
        machine: MachineId,
        kind: impl KindOf<C>,
        config: C,
    ) -> Result<NodeId> {
        let spec = NodeSpec::new(kind.kind_name(), config)?;
        self.spawn(machine, spec)
    }

    /// Spawn one node of `kind` on each of `machines`, in order, where the
    /// config of the `i`-th is `config(i, ids)` and `ids` are the ids of the
    /// whole group, known before any of them is spawned: each replica of a
    /// replicated system can name its peers.
    ///
    /// ```
    /// # use distzero_core::{Cluster, Kind, MachineId, NodeId, Result};
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize)]
    /// pub struct KvConfig { pub me: usize, pub peers: Vec<NodeId> }
    /// pub const KV: Kind<KvConfig> = Kind::new("kv");
    ///
    /// fn replicas(c: &mut dyn Cluster, machines: &[MachineId]) -> Result<Vec<NodeId>> {
    ///     c.spawn_group(machines, KV, |i, ids| KvConfig { me: i, peers: ids.to_vec() })
    /// }
    /// ```
    ///
    /// A machine may appear more than once (its nodes of the group take
    /// consecutive ids after those it already has). Every config is built
    /// before the first spawn; an unknown machine or a bad config spawns
    /// nothing, while a spawn that fails midway leaves the nodes before it
    /// spawned.
    pub fn spawn_group<C: Serialize>(
        &mut self,
        machines: &[MachineId],
        kind: impl KindOf<C>,
        mut config: impl FnMut(usize, &[NodeId]) -> C,
    ) -> Result<Vec<NodeId>> {
        let mut ids: Vec<NodeId> = Vec::with_capacity(machines.len());
        for &m in machines {
            let earlier = ids.iter().filter(|id| id.machine == m).count() as u32;
            let next = self.next_node_id(m)?;
            ids.push(NodeId::new(m, next.local + earlier));
        }
        let specs = (0..machines.len())
            .map(|i| NodeSpec::new(kind.kind_name(), config(i, &ids)))
            .collect::<Result<Vec<_>>>()?;
        for ((&m, spec), &want) in machines.iter().zip(specs).zip(&ids) {
            let got = self.spawn(m, spec)?;
            if got != want {
                return Err(Error::Unsupported(format!(
                    "spawn_group: the {} cluster said the next node of {m} would be {want} but spawned {got}",
                    self.mode().name()
                )));
            }
        }
        Ok(ids)
    }

    /// Send a typed request and wait for its typed reply (the reply type is
    /// the request's [`Request::Reply`]).
    pub fn request<R: Request>(
        &mut self,
        to: NodeId,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Reply> {
        self.call(to, req, timeout)
    }

    /// Send a typed message to a node, no reply expected.
    pub fn send<M: Serialize>(&mut self, to: NodeId, msg: &M) -> Result<()> {
        self.send_bytes(to, encode(msg)?)
    }

    /// Send a typed request and wait for the typed reply.
    pub fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        to: NodeId,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp> {
        let bytes = self.call_bytes(to, encode(req)?, timeout)?;
        decode(&bytes)
    }

    /// Run until `cond` holds, checking it every [`POLL`]; an error after `timeout`.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut cond: impl FnMut(&mut dyn Cluster) -> Result<bool>,
    ) -> Result<()> {
        let start = self.now();
        loop {
            if cond(self)? {
                return Ok(());
            }
            if self.now().saturating_sub(start) >= timeout {
                return Err(Error::ConditionTimeout(timeout));
            }
            self.run_for(POLL)?;
        }
    }

    /// Start a nemesis (see [`crate::nemesis`]): its faults fire on the
    /// cluster's clock while the test calls and waits, and at the end of its
    /// window everything is healed. A nemesis still active is ended (and
    /// healed) first.
    pub fn start_nemesis(&mut self, n: Nemesis) -> Result<()> {
        let now = self.now();
        if let Some(previous) = self.nemesis_driver().begin(&n, now)? {
            let base = self.nemesis_driver().base();
            nemesis::recover(self, &previous, base)?;
        }
        // Steps at time zero fire now.
        nemesis::fire_due(self)
    }

    /// Let the active nemesis run to the end of its window (faults firing),
    /// which heals everything; nothing to do if none is active.
    pub fn wait_nemesis(&mut self) -> Result<()> {
        if let Some(end) = self.nemesis_driver().end() {
            let now = self.now();
            self.run_for(end.saturating_sub(now))?;
            // A wait that ended just short of the end (real time): heal now.
            self.stop_nemesis()?;
        }
        Ok(())
    }

    /// End the active nemesis now: heal every link, resume and restart its
    /// machines, links back to the run's default.
    pub fn stop_nemesis(&mut self) -> Result<()> {
        let now = self.now();
        match self.nemesis_driver().stop(now) {
            Some(machines) => {
                let base = self.nemesis_driver().base();
                nemesis::recover(self, &machines, base)
            }
            None => Ok(()),
        }
    }

    /// The schedule each `start_nemesis` of this run ran, in order.
    pub fn nemesis_schedules(&mut self) -> Vec<Schedule> {
        self.nemesis_driver().schedules().to_vec()
    }

    /// A liveness requirement: `cond` must hold within `within` (checked
    /// every [`POLL`]), else the test fails with [`Error::Liveness`] naming
    /// `what` (e.g. "a leader is elected", "every request is answered").
    /// Typically after `wait_nemesis`: once every fault is healed, the
    /// system must recover in bounded time.
    pub fn eventually(
        &mut self,
        within: Duration,
        what: &str,
        cond: impl FnMut(&mut dyn Cluster) -> Result<bool>,
    ) -> Result<()> {
        let healed = self.nemesis_driver().healed_at();
        match self.run_until(within, cond) {
            Err(Error::ConditionTimeout(_)) => Err(Error::Liveness {
                what: what.to_string(),
                within,
                after: match healed {
                    Some(t) => format!(" after the nemesis healed everything at {t:?}"),
                    None => String::new(),
                },
            }),
            other => other,
        }
    }

    /// Cut every link between machines of different groups, both ways.
    pub fn partition(&mut self, groups: &[&[MachineId]]) -> Result<()> {
        for (i, g) in groups.iter().enumerate() {
            for h in groups.iter().skip(i + 1) {
                for &a in g.iter() {
                    for &b in h.iter() {
                        self.cut(a, b)?;
                        self.cut(b, a)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Cut `m` off from every other machine, both ways.
    pub fn isolate(&mut self, m: MachineId) -> Result<()> {
        for other in self.machines() {
            if other != m {
                self.cut(m, other)?;
                self.cut(other, m)?;
            }
        }
        Ok(())
    }

    /// Set the same link on every ordered pair of machines.
    pub fn set_all_links(&mut self, link: Link) -> Result<()> {
        let ms = self.machines();
        for &a in &ms {
            for &b in &ms {
                if a != b {
                    self.set_link(a, b, link)?;
                }
            }
        }
        Ok(())
    }
}

/// Shorthand for durations in workflow tests.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
