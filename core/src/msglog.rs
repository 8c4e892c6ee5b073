//! Message events: one log line per send, delivery and drop of a message,
//! so a run's files tell who sent what to whom and what was lost.
//!
//! Off unless the runtime turns them on for the thread that runs the nodes
//! ([`set_enabled`]; `DISTZERO_LOG_MESSAGES`): off, a send costs one
//! thread-local read. On, [`crate::Context`] names each message as it is
//! encoded ([`label_of`]: the enum variant or struct name, from serde) and
//! the runtime writes the events with [`sent`], [`delivered`] and
//! [`dropped`], at INFO, in the log scope of the node or controller where
//! it happens. Every event carries the message id the sender assigned
//! (`msg`), `from` and `to` (node ids), `size` (bytes) and for a send the
//! message's type name (`msg_type`), for a drop its `reason` ([`Reason`]).

use crate::ids::NodeId;
use serde::ser::{self, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    /// Names of messages sent and not yet logged, in send order (an agent
    /// routes its sends after the callback that made them).
    static LABELS: RefCell<VecDeque<&'static str>> = const { RefCell::new(VecDeque::new()) };
}

/// Most names waiting for their send to be logged (a runtime that turned
/// events on and never logs a send cannot grow it past this).
const MAX_LABELS: usize = 1 << 16;

/// Turn message events on or off for this thread; returns the previous state.
pub fn set_enabled(on: bool) -> bool {
    ON.with(|c| c.replace(on))
}

/// Whether this thread writes message events.
#[inline(always)]
pub fn enabled() -> bool {
    ON.with(|c| c.get())
}

/// Name the next message this thread sends (what [`sent`] writes as
/// `msg_type`): names queue up in send order.
pub fn set_label(label: &'static str) {
    LABELS.with(|q| {
        let mut q = q.borrow_mut();
        if q.len() >= MAX_LABELS {
            q.pop_front();
        }
        q.push_back(label);
    })
}

/// The oldest name given by [`set_label`] and not yet taken ("" if none).
pub fn take_label() -> &'static str {
    LABELS.with(|q| q.borrow_mut().pop_front().unwrap_or(""))
}

/// Why a message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The link's loss probability.
    Loss,
    /// The link was cut when it was sent.
    Cut,
    /// The receiver's machine was down when it arrived, or crashed while
    /// the message waited at its paused machine.
    Crash,
    /// A bounded queue of the pair (a hold, a link) was full.
    Full,
    /// An end crashed or the pair was cut while it was in flight.
    Stale,
    /// It waited in a hold that a heal ended (a heal drops what the hold
    /// queued, as a cut would have).
    Healed,
    /// No such node on the receiving machine.
    NoNode,
    /// The receiving machine's address is unknown (real modes).
    NoAddress,
    /// The reply to a client found no one waiting (its call timed out, or
    /// no controller is connected).
    ClientGone,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Loss => "loss",
            Reason::Cut => "cut",
            Reason::Crash => "crash",
            Reason::Full => "queue-full",
            Reason::Stale => "cut-or-crash-in-flight",
            Reason::Healed => "held-then-healed",
            Reason::NoNode => "no-node",
            Reason::NoAddress => "no-address",
            Reason::ClientGone => "client-gone",
        }
    }

    /// The reason of a loss decided by the network model.
    pub fn of(loss: crate::net::Loss) -> Reason {
        match loss {
            crate::net::Loss::Dropped => Reason::Loss,
            crate::net::Loss::Cut => Reason::Cut,
            crate::net::Loss::Full => Reason::Full,
            crate::net::Loss::Stale => Reason::Stale,
        }
    }
}

/// Log the send of message `id` (named by the last [`set_label`]).
#[cold]
#[inline(never)]
pub fn sent(id: u64, from: NodeId, to: NodeId, size: usize) {
    let ty = take_label();
    tracing::info!(msg = id, %from, %to, msg_type = ty, size = size as u64, "send");
}

/// Log the delivery of message `id` to its node.
#[cold]
#[inline(never)]
pub fn delivered(id: u64, from: NodeId, to: NodeId, size: usize) {
    tracing::info!(msg = id, %from, %to, size = size as u64, "deliver");
}

/// Log the drop of message `id`.
#[cold]
#[inline(never)]
pub fn dropped(id: u64, from: NodeId, to: NodeId, size: usize, reason: Reason) {
    tracing::info!(msg = id, %from, %to, size = size as u64, reason = reason.as_str(), "drop");
}

/// The name of a message as serde sees it: the variant of an enum
/// (`Write`), else the name of a struct, else the Rust type's last path
/// segment. Never fails; costs one partial serialization.
pub fn label_of<T: Serialize + ?Sized>(msg: &T) -> &'static str {
    match msg.serialize(Namer) {
        Err(Found(Some(name))) => name,
        _ => short_type_name::<T>(),
    }
}

fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// A serializer that stops at the first name it meets.
struct Namer;

#[derive(Debug)]
struct Found(Option<&'static str>);

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
impl std::error::Error for Found {}
impl ser::Error for Found {
    fn custom<E: fmt::Display>(_: E) -> Self {
        Found(None)
    }
}

type R = std::result::Result<ser::Impossible<(), Found>, Found>;

macro_rules! none {
    ($($f:ident: $t:ty),*) => {
        $(fn $f(self, _v: $t) -> std::result::Result<(), Found> { Err(Found(None)) })*
    };
}

impl ser::Serializer for Namer {
    type Ok = ();
    type Error = Found;
    type SerializeSeq = ser::Impossible<(), Found>;
    type SerializeTuple = ser::Impossible<(), Found>;
    type SerializeTupleStruct = ser::Impossible<(), Found>;
    type SerializeTupleVariant = ser::Impossible<(), Found>;
    type SerializeMap = ser::Impossible<(), Found>;
    type SerializeStruct = ser::Impossible<(), Found>;
    type SerializeStructVariant = ser::Impossible<(), Found>;

    none!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_f32: f32, serialize_f64: f64, serialize_char: char,
        serialize_str: &str, serialize_bytes: &[u8]);

    fn serialize_none(self) -> std::result::Result<(), Found> {
        Err(Found(None))
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> std::result::Result<(), Found> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> std::result::Result<(), Found> {
        Err(Found(None))
    }
    fn serialize_unit_struct(self, name: &'static str) -> std::result::Result<(), Found> {
        Err(Found(Some(name)))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> std::result::Result<(), Found> {
        Err(Found(Some(variant)))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        _: &T,
    ) -> std::result::Result<(), Found> {
        Err(Found(Some(name)))
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: &T,
    ) -> std::result::Result<(), Found> {
        Err(Found(Some(variant)))
    }
    fn serialize_seq(self, _: Option<usize>) -> R {
        Err(Found(None))
    }
    fn serialize_tuple(self, _: usize) -> R {
        Err(Found(None))
    }
    fn serialize_tuple_struct(self, name: &'static str, _: usize) -> R {
        Err(Found(Some(name)))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> R {
        Err(Found(Some(variant)))
    }
    fn serialize_map(self, _: Option<usize>) -> R {
        Err(Found(None))
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> R {
        Err(Found(Some(name)))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> R {
        Err(Found(Some(variant)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    enum Msg {
        Ping,
        Write(u64),
        Pair(u8, u8),
        Put { key: String },
    }
    #[derive(Serialize)]
    struct Ack {
        n: u64,
    }

    #[test]
    fn messages_are_named_by_variant_or_struct() {
        assert_eq!(label_of(&Msg::Ping), "Ping");
        assert_eq!(label_of(&Msg::Write(3)), "Write");
        assert_eq!(label_of(&Msg::Pair(1, 2)), "Pair");
        assert_eq!(label_of(&Msg::Put { key: "k".into() }), "Put");
        assert_eq!(label_of(&Ack { n: 1 }), "Ack");
        assert_eq!(label_of(&7u64), "u64");
        assert_eq!(label_of(&vec![1u8]), "Vec");
    }

    #[test]
    fn labels_are_taken_once_in_send_order() {
        set_label("Ping");
        set_label("Pong");
        assert_eq!(take_label(), "Ping");
        assert_eq!(take_label(), "Pong");
        assert_eq!(take_label(), "");
    }
}
