//! The one interface a workflow test sees, in every mode.

use crate::error::{Error, Result};
use crate::history::History;
use crate::ids::{MachineId, NodeId};
use crate::link::Link;
use crate::message::{decode, encode};
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

    /// Kill the machine: its nodes lose their memory; its disk is kept.
    /// Crashing a machine that is down does nothing.
    fn crash(&mut self, machine: MachineId) -> Result<()>;
    /// Start a crashed machine again; its nodes start from their specs.
    /// Restarting a machine that runs does nothing (it is logged).
    fn restart(&mut self, machine: MachineId) -> Result<()>;
    /// Freeze the machine: nothing runs, messages wait at its door, timers
    /// fire on resume. Pausing a paused or crashed machine does nothing.
    fn pause(&mut self, machine: MachineId) -> Result<()>;
    fn resume(&mut self, machine: MachineId) -> Result<()>;

    /// Stop everything and release what the run holds (also done on drop).
    fn shutdown(&mut self) -> Result<()>;
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
