//! The context: a node's only window on the world.

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
    /// Time since the cluster started: virtual in simulation, real elsewhere.
    fn now(&self) -> Duration;
    /// Hand bytes to the network. Delivery: at most once, in order per pair.
    fn send(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>);
    /// [`Env::send`] for bytes the caller keeps (a message encoded on the
    /// stack). A runtime that copies small messages, as the simulator does,
    /// overrides it to send without allocating; by default it allocates.
    fn send_slice(&mut self, from: NodeId, to: NodeId, bytes: &[u8]) {
        self.send(from, to, bytes.to_vec())
    }
    fn set_timer(&mut self, node: NodeId, after: Duration, tag: u64) -> TimerId;
    fn cancel_timer(&mut self, node: NodeId, timer: TimerId);
    /// Seeded randomness. In simulation, the cluster's one rng.
    fn rng(&mut self) -> &mut ChaCha8Rng;
    /// The durable disk of a machine: kept across crashes and restarts.
    fn disk(&mut self, machine: MachineId) -> &mut dyn DiskStore;
    /// A fault point: sometimes true in simulation, never in real modes.
    fn buggify(&mut self, node: NodeId) -> bool;
    /// Append `op`, recorded by `node`, to the run's history, kept outside
    /// every machine (a crash of `node`'s machine loses nothing already
    /// recorded), and log it ([`crate::history::log_op`]). Bounded: see
    /// [`crate::history::RunHistory`].
    fn record(&mut self, node: NodeId, op: Op);
}

/// A machine's durable key-value disk.
pub trait DiskStore {
    fn read(&self, key: &str) -> Option<Vec<u8>>;
    fn write(&mut self, key: &str, value: &[u8]) -> std::io::Result<()>;
    fn remove(&mut self, key: &str) -> std::io::Result<()>;
    /// Keys that start with `prefix`, sorted.
    fn keys(&self, prefix: &str) -> Vec<String>;
}

/// An in-memory disk: the simulator's, and a fallback for tests.
#[derive(Default, Debug, Clone)]
pub struct MemDisk {
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
}

impl DiskStore for MemDisk {
    fn read(&self, key: &str) -> Option<Vec<u8>> {
        self.files.get(key).cloned()
    }
    fn write(&mut self, key: &str, value: &[u8]) -> std::io::Result<()> {
        self.files.insert(key.to_string(), value.to_vec());
        Ok(())
    }
    fn remove(&mut self, key: &str) -> std::io::Result<()> {
        self.files.remove(key);
        Ok(())
    }
    fn keys(&self, prefix: &str) -> Vec<String> {
        self.files
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
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

    /// Time since the cluster started (virtual in simulation).
    pub fn now(&self) -> Duration {
        self.env.now()
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

    /// Fire [`crate::Node::on_timer`] with `tag` after `after`.
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
        self.env.rng()
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

    /// This node's view of its machine's durable disk.
    pub fn disk(&mut self) -> Disk<'_> {
        let prefix = format!("n{}/", self.me.local);
        Disk {
            store: self.env.disk(self.me.machine),
            prefix,
        }
    }
}

/// One node's part of its machine's disk, with typed access.
pub struct Disk<'a> {
    store: &'a mut dyn DiskStore,
    prefix: String,
}

impl Disk<'_> {
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.store.read(&format!("{}{}", self.prefix, key)) {
            None => Ok(None),
            Some(bytes) => Ok(Some(crate::message::decode(&bytes)?)),
        }
    }

    pub fn put<T: Serialize>(&mut self, key: &str, value: &T) -> Result<()> {
        let bytes = encode(value)?;
        self.store
            .write(&format!("{}{}", self.prefix, key), &bytes)
            .map_err(|e| Error::io(format!("writing `{key}` to disk"), e))
    }

    pub fn remove(&mut self, key: &str) -> Result<()> {
        self.store
            .remove(&format!("{}{}", self.prefix, key))
            .map_err(|e| Error::io(format!("removing `{key}` from disk"), e))
    }

    /// Keys of this node, sorted, without the node's prefix.
    pub fn keys(&self) -> Vec<String> {
        self.store
            .keys(&self.prefix)
            .into_iter()
            .map(|k| k[self.prefix.len()..].to_string())
            .collect()
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
