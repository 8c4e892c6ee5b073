//! The context: a node's only window on the world.

use crate::disk::DiskModel;
use crate::error::{Error, Result};
use crate::history::Op;
use crate::ids::{MachineId, NodeId, TimerId};
use crate::message::{encode, encode_with, Message};
use rand_chacha::ChaCha8Rng;
use serde::{de::DeserializeOwned, Serialize};
use std::marker::PhantomData;
use std::time::Duration;

/// What a runtime (the simulator, an agent) gives its nodes. Object safe; one
/// implementation per mode. Nodes use it through [`Context`].
pub trait Env {
    /// The monotonic clock of `machine` (see [`crate::clock`]): time since
    /// the cluster started as that machine's clock measures it; never goes
    /// back. Virtual in simulation, real elsewhere.
    fn now(&self, machine: MachineId) -> Duration;
    /// The wall clock of `machine`, as time since the Unix epoch: it may
    /// be skewed, drift and step backwards ([`crate::clock`]).
    fn wall_clock(&self, machine: MachineId) -> Duration;
    /// Hand bytes to the network. Delivery: at most once, in order per pair.
    fn send(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>);
    /// [`Env::send`] for bytes the caller keeps (a message encoded on the
    /// stack). A runtime that copies small messages, as the simulator does,
    /// overrides it to send without allocating; by default it allocates.
    fn send_slice(&mut self, from: NodeId, to: NodeId, bytes: &[u8]) {
        self.send(from, to, bytes.to_vec())
    }
    /// Fire a timer after `after` on the node's machine's monotonic clock.
    fn set_timer(&mut self, node: NodeId, after: Duration, tag: u64) -> TimerId;
    fn cancel_timer(&mut self, node: NodeId, timer: TimerId);
    /// Seeded randomness for `node`. In simulation, one stream per
    /// machine, seeded from the run's seed and the machine: what one
    /// machine draws never moves another's draws (nor do the network's or
    /// the nemesis's), so a fault removed while shrinking changes only what
    /// it touched.
    fn rng(&mut self, node: NodeId) -> &mut ChaCha8Rng;
    /// The disk of a machine ([`crate::disk`]): what was synced is kept
    /// across crashes and restarts.
    fn disk(&mut self, machine: MachineId) -> &mut dyn DiskStore;
    /// Make every change to `machine`'s disk durable. A slow disk stalls
    /// the machine meanwhile; a failing one returns the error and keeps the
    /// changes unsynced.
    fn sync_disk(&mut self, machine: MachineId) -> std::io::Result<()>;
    /// A fault point: sometimes true in simulation, never in real modes.
    fn buggify(&mut self, node: NodeId) -> bool;
    /// Append `op`, recorded by `node`, to the run's history, kept outside
    /// every machine (a crash of `node`'s machine loses nothing already
    /// recorded), and log it ([`crate::history::log_op`]). The runtime
    /// stamps the op with real time (never a machine's clock), so the
    /// checker compares times of different machines. Bounded: see
    /// [`crate::history::RunHistory`].
    fn record(&mut self, node: NodeId, op: Op);
}

/// A machine's disk as a runtime stores it (raw bytes; [`Disk`] is the
/// typed, checksummed face nodes use). Implemented by [`DiskModel`] (the
/// simulator's) and the agent's file-backed disk, which keeps a
/// [`DiskModel`] in front of its files.
pub trait DiskStore {
    fn read(&mut self, key: &str) -> Option<Vec<u8>>;
    fn write(&mut self, key: &str, value: &[u8]) -> std::io::Result<()>;
    fn remove(&mut self, key: &str) -> std::io::Result<()>;
    /// Keys that start with `prefix`, sorted.
    fn keys(&self, prefix: &str) -> Vec<String>;
    fn append(&mut self, log: &str, record: &[u8]) -> std::io::Result<u64>;
    fn log_len(&self, log: &str) -> u64;
    fn read_record(&mut self, log: &str, index: u64) -> Option<Vec<u8>>;
    fn truncate(&mut self, log: &str, len: u64) -> std::io::Result<()>;
}

impl DiskStore for DiskModel {
    fn read(&mut self, key: &str) -> Option<Vec<u8>> {
        DiskModel::read(self, key)
    }
    fn write(&mut self, key: &str, value: &[u8]) -> std::io::Result<()> {
        DiskModel::write(self, key, value)
    }
    fn remove(&mut self, key: &str) -> std::io::Result<()> {
        DiskModel::remove(self, key)
    }
    fn keys(&self, prefix: &str) -> Vec<String> {
        DiskModel::keys(self, prefix)
    }
    fn append(&mut self, log: &str, record: &[u8]) -> std::io::Result<u64> {
        DiskModel::append(self, log, record)
    }
    fn log_len(&self, log: &str) -> u64 {
        DiskModel::log_len(self, log)
    }
    fn read_record(&mut self, log: &str, index: u64) -> Option<Vec<u8>> {
        DiskModel::read_record(self, log, index)
    }
    fn truncate(&mut self, log: &str, len: u64) -> std::io::Result<()> {
        DiskModel::truncate(self, log, len)
    }
}

/// Given to every callback of a node. `M` is the node's message type.
pub struct Context<'a, M> {
    env: &'a mut dyn Env,
    me: NodeId,
    _msg: PhantomData<fn(M)>,
}

impl<'a, M: Message> Context<'a, M> {
    pub fn new(env: &'a mut dyn Env, me: NodeId) -> Self {
        Context {
            env,
            me,
            _msg: PhantomData,
        }
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// This node's machine.
    pub fn machine(&self) -> MachineId {
        self.me.machine
    }

    /// This machine's monotonic clock: time since the cluster started, as
    /// this machine measures it (virtual in simulation). Never goes back;
    /// may run fast or slow under a clock fault ([`crate::clock`]).
    pub fn now(&self) -> Duration {
        self.env.now(self.me.machine)
    }

    /// This machine's wall clock, as time since the Unix epoch. Unlike
    /// [`Context::now`] it may be skewed and may step backwards
    /// ([`crate::clock`]): do not measure leases or timeouts with it.
    pub fn wall_clock(&self) -> Duration {
        self.env.wall_clock(self.me.machine)
    }

    /// Send a message of this node's type.
    pub fn send(&mut self, to: NodeId, msg: M) {
        self.send_any(to, &msg)
    }

    /// Send a message of any type, for nodes that talk to other kinds.
    pub fn send_any<T: Serialize>(&mut self, to: NodeId, msg: &T) {
        let (env, me) = (&mut *self.env, self.me);
        // Message events name the message (only while they are on).
        let label = crate::msglog::enabled().then(|| crate::msglog::label_of(msg));
        if let Err(e) = encode_with(msg, |bytes| {
            if let Some(l) = label {
                crate::msglog::set_label(l);
            }
            env.send_slice(me, to, bytes)
        }) {
            tracing::error!(%to, error = %e, "message does not encode; not sent");
        }
    }

    /// Fire [`crate::Node::on_timer`] with `tag` after `after` on this
    /// machine's monotonic clock.
    pub fn set_timer(&mut self, after: Duration, tag: u64) -> TimerId {
        self.env.set_timer(self.me, after, tag)
    }

    /// [`Context::set_timer`] with a typed tag: `on_timer` gets it back
    /// with [`TimerTag::from_tag`].
    pub fn schedule<T: TimerTag>(&mut self, after: Duration, tag: T) -> TimerId {
        self.env.set_timer(self.me, after, tag.to_tag())
    }

    pub fn cancel_timer(&mut self, timer: TimerId) {
        self.env.cancel_timer(self.me, timer)
    }

    /// Seeded randomness: use it with `rand::Rng`.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        self.env.rng(self.me)
    }

    /// A fault point: sometimes true in simulation (seeded), never elsewhere.
    /// Guard rare paths with it (`if ctx.buggify() { return }`) to test them.
    pub fn buggify(&mut self) -> bool {
        self.env.buggify(self.me)
    }

    /// Record an operation into the run's history (see
    /// [`crate::history`]): kept outside every machine, so a crash of this
    /// node's machine loses nothing already recorded, and read by the test
    /// with [`crate::Cluster::history`] in every mode, with logs on or off.
    /// The op is also logged as a `history` event.
    ///
    /// ```
    /// # use distzero_core::{Context, Node, NodeId};
    /// use distzero_core::history::{Op, OpKind, Value, F};
    /// struct Client;
    /// impl Node for Client {
    ///     type Msg = u64;
    ///     fn on_message(&mut self, ctx: &mut Context<'_, u64>, _from: NodeId, n: u64) {
    ///         let invoke = Op::invoke(1, F::Read, Some("k"), Value::Nil, ctx.now());
    ///         ctx.record(invoke.clone());
    ///         ctx.record(invoke.completion(OpKind::Ok, n as i64, ctx.now()));
    ///     }
    /// }
    /// ```
    pub fn record(&mut self, op: Op) {
        self.env.record(self.me, op)
    }

    /// This node's part of its machine's disk ([`crate::disk`]): changes
    /// are durable once synced.
    pub fn disk(&mut self) -> Disk<'_> {
        let prefix = format!("n{}/", self.me.local);
        Disk {
            env: &mut *self.env,
            machine: self.me.machine,
            prefix,
        }
    }
}

/// Bytes as stored: a CRC-32 of the rest, then the encoded value.
fn seal<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let body = encode(value)?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The value in stored bytes, or [`Error::Corrupt`] when its checksum
/// does not match (a torn write, a flipped bit).
fn open<T: DeserializeOwned>(bytes: &[u8], what: impl FnOnce() -> String) -> Result<T> {
    let corrupt = || {
        Error::Corrupt(format!(
            "{}: checksum mismatch (a torn write or a flipped bit)",
            what()
        ))
    };
    if bytes.len() < 4 {
        return Err(corrupt());
    }
    let (sum, body) = bytes.split_at(4);
    if crc32fast::hash(body).to_le_bytes() != sum {
        return Err(corrupt());
    }
    crate::message::decode(body)
}

/// One node's part of its machine's disk: values by key and append-only
/// logs, each value and record checksummed. Every change is seen at once
/// by later reads and is durable after [`Disk::sync`] (or a `*_synced`
/// call); a crash keeps only what was synced (or less: see
/// [`crate::disk::CrashLoss`]). A read of damaged bytes is
/// [`Error::Corrupt`].
pub struct Disk<'a> {
    env: &'a mut dyn Env,
    machine: MachineId,
    prefix: String,
}

impl<'a> Disk<'a> {
    fn store(&mut self) -> &mut dyn DiskStore {
        self.env.disk(self.machine)
    }

    pub fn get<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>> {
        let full = format!("{}{}", self.prefix, key);
        match self.store().read(&full) {
            None => Ok(None),
            Some(bytes) => open(&bytes, || format!("disk value `{key}`")).map(Some),
        }
    }

    /// Write `value` under `key`: read back at once, durable after a sync.
    pub fn put<T: Serialize>(&mut self, key: &str, value: &T) -> Result<()> {
        let bytes = seal(value)?;
        let full = format!("{}{}", self.prefix, key);
        self.store()
            .write(&full, &bytes)
            .map_err(|e| Error::io(format!("writing `{key}` to disk"), e))
    }

    /// [`Disk::put`], then [`Disk::sync`].
    pub fn put_synced<T: Serialize>(&mut self, key: &str, value: &T) -> Result<()> {
        self.put(key, value)?;
        self.sync()
    }

    pub fn remove(&mut self, key: &str) -> Result<()> {
        let full = format!("{}{}", self.prefix, key);
        self.store()
            .remove(&full)
            .map_err(|e| Error::io(format!("removing `{key}` from disk"), e))
    }

    /// Keys of this node, sorted, without the node's prefix.
    pub fn keys(&mut self) -> Vec<String> {
        let prefix = self.prefix.clone();
        self.store()
            .keys(&prefix)
            .into_iter()
            .map(|k| k[prefix.len()..].to_string())
            .collect()
    }

    /// Make every change to this machine's disk durable (all its nodes'
    /// changes, as one disk).
    pub fn sync(&mut self) -> Result<()> {
        self.env
            .sync_disk(self.machine)
            .map_err(|e| Error::io("syncing the disk", e))
    }

    /// The append-only log `name` of this node (created by its first
    /// append). Takes the disk: `let mut wal = ctx.disk().log("wal");`.
    pub fn log(self, name: &str) -> Log<'a> {
        Log {
            name: format!("{}{}", self.prefix, name),
            short: self.prefix.len(),
            env: self.env,
            machine: self.machine,
        }
    }
}

/// An append-only log of records (a write-ahead log): append, sync, read
/// back by index, truncate. Records are checksummed: a torn or flipped one
/// reads as [`Error::Corrupt`].
pub struct Log<'a> {
    env: &'a mut dyn Env,
    machine: MachineId,
    name: String,
    /// Where the node's prefix ends in `name`.
    short: usize,
}

impl Log<'_> {
    fn short(&self) -> &str {
        &self.name[self.short..]
    }

    /// Append `record`; its index (0-based). Durable after a sync.
    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<u64> {
        let bytes = seal(record)?;
        self.env
            .disk(self.machine)
            .append(&self.name, &bytes)
            .map_err(|e| {
                Error::io(
                    format!("appending to log `{}`", &self.name[self.short..]),
                    e,
                )
            })
    }

    /// Records in the log.
    pub fn len(&mut self) -> u64 {
        self.env.disk(self.machine).log_len(&self.name)
    }

    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// Record `index`, or `None` past the end.
    pub fn get<T: DeserializeOwned>(&mut self, index: u64) -> Result<Option<T>> {
        match self.env.disk(self.machine).read_record(&self.name, index) {
            None => Ok(None),
            Some(bytes) => open(&bytes, || {
                format!("record {index} of log `{}`", self.short())
            })
            .map(Some),
        }
    }

    /// Keep the first `len` records. Durable after a sync.
    pub fn truncate(&mut self, len: u64) -> Result<()> {
        self.env
            .disk(self.machine)
            .truncate(&self.name, len)
            .map_err(|e| Error::io(format!("truncating log `{}`", &self.name[self.short..]), e))
    }

    /// Make every change to this machine's disk durable ([`Disk::sync`]).
    pub fn sync(&mut self) -> Result<()> {
        self.env
            .sync_disk(self.machine)
            .map_err(|e| Error::io("syncing the disk", e))
    }
}

/// A timer's tag as a type of its own: set with [`Context::schedule`],
/// read back in `on_timer` with `from_tag`. [`crate::timer_tags!`] makes
/// one from a list of names:
///
/// ```
/// distzero_core::timer_tags! {
///     pub enum Tick { Heartbeat, Election }
/// }
/// use distzero_core::TimerTag;
/// assert_eq!(Tick::from_tag(Tick::Election.to_tag()), Some(Tick::Election));
/// assert_eq!(Tick::from_tag(7), None);
/// ```
pub trait TimerTag: Sized {
    fn to_tag(&self) -> u64;
    /// `None` for a tag no value of this type gives.
    fn from_tag(tag: u64) -> Option<Self>;
}

impl TimerTag for u64 {
    fn to_tag(&self) -> u64 {
        *self
    }
    fn from_tag(tag: u64) -> Option<Self> {
        Some(tag)
    }
}

/// Declare a field-less enum of timer tags that implements [`TimerTag`]
/// (and `Clone`, `Copy`, `Debug`, `PartialEq`, `Eq`).
#[macro_export]
macro_rules! timer_tags {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        $vis enum $name { $($variant),+ }

        impl $crate::TimerTag for $name {
            fn to_tag(&self) -> u64 {
                *self as u64
            }
            fn from_tag(tag: u64) -> Option<Self> {
                [$($name::$variant),+].into_iter().find(|v| *v as u64 == tag)
            }
        }
    };
}
