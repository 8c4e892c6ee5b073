//! Nodes: state machines that act on the world only through their [`Context`].

use crate::context::{Context, Env};
use crate::ids::{NodeId, TimerId};
use crate::message::{decode, Message};

/// A unit of work placed on a machine. It never touches std::time, threads,
/// sockets, tokio or OS randomness: everything goes through the context, which
/// is what makes it deterministic in simulation and portable to every mode.
pub trait Node: 'static {
    /// What this node receives (and usually sends). Calls from a test send a
    /// `Msg` and expect a `Msg` back at the caller's address.
    type Msg: Message;

    /// Called when the node starts, and again after its machine restarts
    /// (memory is lost; the disk is kept).
    fn on_start(&mut self, ctx: &mut Context<'_, Self::Msg>) {
        let _ = ctx;
    }

    fn on_message(&mut self, ctx: &mut Context<'_, Self::Msg>, from: NodeId, msg: Self::Msg);

    /// A timer set with [`Context::set_timer`] fired.
    fn on_timer(&mut self, ctx: &mut Context<'_, Self::Msg>, timer: TimerId, tag: u64) {
        let _ = (ctx, timer, tag);
    }
}

/// A node with its message type erased, as runtimes hold it.
pub trait AnyNode {
    fn start(&mut self, env: &mut dyn Env, me: NodeId);
    /// Decodes and delivers; a message that does not decode is logged and dropped.
    fn message(&mut self, env: &mut dyn Env, me: NodeId, from: NodeId, bytes: &[u8]);
    fn timer(&mut self, env: &mut dyn Env, me: NodeId, timer: TimerId, tag: u64);
}

impl<N: Node> AnyNode for N {
    fn start(&mut self, env: &mut dyn Env, me: NodeId) {
        self.on_start(&mut Context::new(env, me));
    }

    fn message(&mut self, env: &mut dyn Env, me: NodeId, from: NodeId, bytes: &[u8]) {
        match decode::<N::Msg>(bytes) {
            Ok(msg) => self.on_message(&mut Context::new(env, me), from, msg),
            Err(e) => {
                tracing::warn!(%from, len = bytes.len(), error = %e, "dropped a message that does not decode")
            }
        }
    }

    fn timer(&mut self, env: &mut dyn Env, me: NodeId, timer: TimerId, tag: u64) {
        self.on_timer(&mut Context::new(env, me), timer, tag);
    }
}
