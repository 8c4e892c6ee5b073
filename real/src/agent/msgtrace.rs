//! Message events of an agent (`DISTZERO_LOG_MESSAGES`): what the host loop
//! calls at each send, delivery and drop. Off, each call is one
//! thread-local read and the id is 0.
//!
//! The sender assigns the id, unique in the run: its machine (high 16
//! bits), its boot (next 16) and a count (low 32). It crosses in the
//! peer frame, so the receiver logs the same id. Times are the agent's
//! real time since the cluster started; a reply handed to the controller
//! is logged as delivered when it is handed over, a message from a test's
//! client gets its id from the receiving agent.

use crate::wire::PeerFrame;
use distzero_core::log::{self, Scope};
use distzero_core::msglog::{self, Reason};
use distzero_core::{MachineId, NodeId};
use std::cell::Cell;

thread_local! {
    static NEXT: Cell<u64> = const { Cell::new(0) };
    static BOOT: Cell<u64> = const { Cell::new(0) };
}

/// This thread hosts the agent of `boot` (its start count): ids count from 0.
pub(crate) fn start(boot: u64) {
    BOOT.with(|b| b.set(boot));
    NEXT.with(|n| n.set(0));
}

fn next_id(me: MachineId) -> u64 {
    let boot = BOOT.with(|b| b.get());
    let n = NEXT.with(|c| {
        let v = c.get();
        c.set(v.wrapping_add(1));
        v
    });
    ((me.0 as u64 & 0xffff) << 48) | ((boot & 0xffff) << 32) | (n & 0xffff_ffff)
}

/// Log in the scope of `node` on this machine (or of the machine).
fn at(me: MachineId, node: Option<NodeId>, f: impl FnOnce()) {
    let prev = log::scope();
    log::set_scope(Scope {
        machine: Some(me),
        node: node.filter(|n| n.machine == me),
        time: prev.time,
    });
    f();
    log::set_scope(prev);
}

/// A send from a node of this machine: its id (0 when events are off).
pub(crate) fn sent(me: MachineId, from: NodeId, to: NodeId, size: usize) -> u64 {
    if !msglog::enabled() {
        return 0;
    }
    let id = next_id(me);
    at(me, Some(from), || msglog::sent(id, from, to, size));
    id
}

/// The id of a message from a test's client (the controller assigns none).
pub(crate) fn from_client(me: MachineId) -> u64 {
    if !msglog::enabled() {
        return 0;
    }
    next_id(me)
}

pub(crate) fn delivered(me: MachineId, id: u64, from: NodeId, to: NodeId, size: usize) {
    if msglog::enabled() {
        at(me, Some(to), || msglog::delivered(id, from, to, size));
    }
}

/// A drop on this machine (the sender's or the receiver's).
pub(crate) fn dropped(
    me: MachineId,
    id: u64,
    from: NodeId,
    to: NodeId,
    size: usize,
    reason: Reason,
) {
    if msglog::enabled() {
        let node = if from.machine == me { from } else { to };
        at(me, Some(node), || {
            msglog::dropped(id, from, to, size, reason)
        });
    }
}

/// A peer frame dropped on this machine.
pub(crate) fn frame_dropped(me: MachineId, frame: &PeerFrame, reason: Reason) {
    let PeerFrame::Msg {
        from,
        to,
        id,
        bytes,
        ..
    } = frame;
    dropped(me, *id, *from, *to, bytes.len(), reason);
}
