//! Message events of the simulator (`DISTZERO_LOG_MESSAGES`), out of the
//! event loop's way: the loop calls these only when the run logs them, and
//! each sets the log scope of where the event happens, then restores it.

use distzero_core::log::{self, Scope};
use distzero_core::msglog::{self, Reason};
use distzero_core::NodeId;
use std::time::Duration;

/// The log scope of `node` at `now` (the controller's for a client).
fn scope_of(node: NodeId, now: u64) -> Scope {
    let controller = node.machine.is_controller();
    Scope {
        machine: (!controller).then_some(node.machine),
        node: (!controller).then_some(node),
        time: Duration::from_nanos(now),
    }
}

#[cold]
#[inline(never)]
pub(crate) fn sent(now: u64, id: u32, from: NodeId, to: NodeId, size: usize) {
    let prev = log::set_scope(scope_of(from, now));
    msglog::sent(id as u64, from, to, size);
    log::set_scope(prev);
}

#[cold]
#[inline(never)]
pub(crate) fn delivered(now: u64, id: u32, from: NodeId, to: NodeId, size: usize) {
    let prev = log::set_scope(scope_of(to, now));
    msglog::delivered(id as u64, from, to, size);
    log::set_scope(prev);
}

/// A drop, logged where the message died: `at` (the sender for a loss at
/// send, the receiver for one on arrival, a client for the controller).
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn dropped(
    now: u64,
    at: NodeId,
    id: u32,
    from: NodeId,
    to: NodeId,
    size: usize,
    reason: Reason,
) {
    let prev = log::set_scope(scope_of(at, now));
    msglog::dropped(id as u64, from, to, size, reason);
    log::set_scope(prev);
}
