//! `raft-client`: a workload for the [`crate::raft`] log that records a
//! history for the linearizability checker ([`distzero::check::check_kv`]).
//!
//! One client is one process of the history, with one operation in flight
//! at a time: a read, a write or (if `cas`) a compare-and-set of a random
//! key. A write's value is unique (`process * 1_000_000 + n`); a cas
//! expects the value this client last saw under that key. Each operation is
//! one command `(process, n)` of the log, sent to the replica the client
//! believes leads (or, one time in five, to a random one, so that a deposed
//! leader that still believes in itself is asked too):
//!
//! - `NotLeader` (with the leader if known) or `Unavailable`: send it again,
//!   to that leader or another replica, after [`RETRY_PAUSE`];
//! - no answer within `attempt_ms`: send it again to another replica. A
//!   command retried under the same number is applied once (the log's
//!   session table), so a retry never doubles a write;
//! - no outcome within `op_timeout_ms` of its invocation: the operation
//!   completes `info` (it may have happened, or may still) and the client
//!   moves on to its next command number (the log then never applies the
//!   old one after the new one).
//!
//! An answer completes it `ok` (a cas that found another value: `fail`).
//! Records go to the run's history with `ctx.record`, kept outside the
//! machines. A restarted client continues as a new process,
//! `process + life * LIFE_STRIDE`, as [`crate::kv_client`] does
//! ([`crate::kv_client::completed`] counts its operations).
//!
//! Every choice (think time, operation, key, replica) comes from the
//! client's own rng, seeded from `ctx.rng()` when it starts: its sequence of
//! operations does not depend on the timing of other nodes' events, so a
//! fault schedule shrunk by a sweep changes as little else as it can.

use crate::raft::{Cmd, Outcome, RaftMsg};
use distzero::history::{Op, OpKind, Value, F};
use distzero::{Context, Node, NodeId, TimerId, TimerTag};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

pub const KIND: distzero::Kind<RaftClientConfig> = distzero::Kind::new("raft-client");

/// Pause before resending after a `NotLeader` or `Unavailable` answer.
pub const RETRY_PAUSE: Duration = Duration::from_millis(10);

fn default_keys() -> u64 {
    3
}
fn default_ops() -> u64 {
    50
}
fn default_think_ms() -> u64 {
    20
}
fn default_attempt_ms() -> u64 {
    150
}
fn default_op_timeout_ms() -> u64 {
    1000
}
fn default_cas() -> bool {
    true
}

/// Config of a `raft-client`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RaftClientConfig {
    /// The log's replicas.
    pub replicas: Vec<NodeId>,
    /// This client's process number in the history (from 1, below
    /// [`LIFE_STRIDE`]); also its client id in the log.
    pub process: u64,
    /// Keys `k0 .. k{keys-1}`.
    #[serde(default = "default_keys")]
    pub keys: u64,
    /// Operations to perform, then stop.
    #[serde(default = "default_ops")]
    pub ops: u64,
    /// Up to this long (uniform) between two operations.
    #[serde(default = "default_think_ms")]
    pub think_ms: u64,
    /// Resend to another replica after this long without an answer.
    #[serde(default = "default_attempt_ms")]
    pub attempt_ms: u64,
    /// An operation without an outcome after this long completes `info`.
    #[serde(default = "default_op_timeout_ms")]
    pub op_timeout_ms: u64,
    /// Also compare-and-set (else reads and writes only).
    #[serde(default = "default_cas")]
    pub cas: bool,
}

impl RaftClientConfig {
    pub fn new(replicas: Vec<NodeId>, process: u64) -> Self {
        RaftClientConfig {
            replicas,
            process,
            keys: default_keys(),
            ops: default_ops(),
            think_ms: default_think_ms(),
            attempt_ms: default_attempt_ms(),
            op_timeout_ms: default_op_timeout_ms(),
            cas: default_cas(),
        }
    }
}

distzero::timer_tags! {
    /// Think time, an attempt's timeout, the pause before a resend, the op's deadline.
    enum ClientTimer { Next, Attempt, Resend, Deadline }
}

struct InFlight {
    seq: u64,
    cmd: Cmd,
    invoke: Op,
    /// Where the current attempt went.
    to: usize,
    attempt: Option<TimerId>,
    deadline: TimerId,
}

pub struct RaftClient {
    cfg: RaftClientConfig,
    /// The process of this life (see the module docs).
    process: u64,
    started: u64,
    current: Option<InFlight>,
    /// The replica believed to lead.
    leader: Option<usize>,
    /// The value this client last saw under each key (a cas expects it).
    seen: BTreeMap<String, Option<i64>>,
    /// This client's own randomness, seeded from `ctx.rng()` when it starts
    /// (see the module docs).
    rng: ChaCha8Rng,
}

fn history_value(v: Option<i64>) -> Value {
    v.map_or(Value::Nil, Value::Int)
}

impl RaftClient {
    pub fn new(cfg: RaftClientConfig) -> Self {
        RaftClient {
            process: cfg.process,
            cfg,
            started: 0,
            current: None,
            leader: None,
            seen: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(0),
        }
    }

    fn schedule_next(&mut self, ctx: &mut Context<'_, RaftMsg>) {
        if self.started >= self.cfg.ops {
            tracing::info!(process = self.process, ops = self.started, "workload done");
            return;
        }
        let think = self.rng.gen_range(0..=self.cfg.think_ms);
        ctx.schedule(Duration::from_millis(think), ClientTimer::Next);
    }

    fn start_op(&mut self, ctx: &mut Context<'_, RaftMsg>) {
        if self.current.is_some() || self.started >= self.cfg.ops {
            return;
        }
        self.started += 1;
        let n = self.started;
        let p = self.process;
        let key = format!("k{}", self.rng.gen_range(0..self.cfg.keys.max(1)));
        let value = (p as i64) * 1_000_000 + n as i64;
        let roll = self.rng.gen_range(0..10);
        let now = ctx.now();
        let (invoke, cmd) = if roll < 4 {
            (
                Op::invoke(p, F::Read, Some(&key), Value::Nil, now),
                Cmd::Read { key },
            )
        } else if roll < 8 || !self.cfg.cas {
            (
                Op::invoke(p, F::Write, Some(&key), value, now),
                Cmd::Write { key, value },
            )
        } else {
            let expected = self.seen.get(&key).copied().flatten();
            (
                Op::invoke(
                    p,
                    F::Cas,
                    Some(&key),
                    Value::cas(history_value(expected), value),
                    now,
                ),
                Cmd::Cas {
                    key,
                    expected,
                    new: value,
                },
            )
        };
        ctx.record(invoke.clone());
        let deadline = ctx.schedule(
            Duration::from_millis(self.cfg.op_timeout_ms.max(1)),
            ClientTimer::Deadline,
        );
        // Mostly the believed leader; sometimes anyone (so a deposed leader
        // that still believes in itself is asked too).
        let to = match self.leader {
            Some(l) if self.rng.gen_bool(0.8) => l,
            _ => self.rng.gen_range(0..self.cfg.replicas.len()),
        };
        self.current = Some(InFlight {
            seq: n,
            cmd,
            invoke,
            to,
            attempt: None,
            deadline,
        });
        self.send_attempt(ctx, to);
    }

    fn send_attempt(&mut self, ctx: &mut Context<'_, RaftMsg>, to: usize) {
        let attempt = ctx.schedule(
            Duration::from_millis(self.cfg.attempt_ms.max(1)),
            ClientTimer::Attempt,
        );
        let process = self.process;
        let replicas = &self.cfg.replicas;
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        if let Some(t) = cur.attempt.replace(attempt) {
            ctx.cancel_timer(t);
        }
        cur.to = to;
        ctx.send(
            replicas[to],
            RaftMsg::Request {
                client: process,
                seq: cur.seq,
                cmd: cur.cmd.clone(),
            },
        );
    }

    /// Another replica than `not` (at random).
    fn other(&mut self, not: usize) -> usize {
        let n = self.cfg.replicas.len();
        if n < 2 {
            return 0;
        }
        (not + self.rng.gen_range(1..n)) % n
    }

    /// Complete the operation in flight.
    fn complete(&mut self, ctx: &mut Context<'_, RaftMsg>, kind: OpKind, value: Value) {
        let Some(cur) = self.current.take() else {
            return;
        };
        if let Some(t) = cur.attempt {
            ctx.cancel_timer(t);
        }
        if kind != OpKind::Info {
            ctx.cancel_timer(cur.deadline);
        }
        ctx.record(cur.invoke.completion(kind, value, ctx.now()));
        self.schedule_next(ctx);
    }

    fn on_outcome(&mut self, ctx: &mut Context<'_, RaftMsg>, outcome: Outcome) {
        let Some(cur) = self.current.as_ref() else {
            return;
        };
        let key = match &cur.cmd {
            Cmd::Read { key } | Cmd::Write { key, .. } | Cmd::Cas { key, .. } => key.clone(),
            Cmd::Noop => String::new(),
        };
        let (f, to) = (cur.invoke.f, cur.to);
        let invoked = cur.invoke.value.clone();
        match outcome {
            Outcome::Ok(v) => {
                self.leader = Some(to);
                self.seen.insert(key, v);
                let value = if f == F::Read {
                    history_value(v)
                } else {
                    invoked
                };
                self.complete(ctx, OpKind::Ok, value);
            }
            Outcome::CasFailed(found) => {
                self.leader = Some(to);
                self.seen.insert(key, found);
                self.complete(ctx, OpKind::Fail, invoked);
            }
            Outcome::NotLeader { leader } => {
                self.leader = leader.and_then(|l| self.cfg.replicas.iter().position(|&r| r == l));
                self.pause_then_resend(ctx);
            }
            Outcome::Unavailable { reason } => {
                tracing::debug!(reason = %reason, "unavailable; trying another replica");
                self.leader = None;
                self.pause_then_resend(ctx);
            }
        }
    }

    fn pause_then_resend(&mut self, ctx: &mut Context<'_, RaftMsg>) {
        let resend = ctx.schedule(RETRY_PAUSE, ClientTimer::Resend);
        if let Some(cur) = self.current.as_mut() {
            if let Some(t) = cur.attempt.replace(resend) {
                ctx.cancel_timer(t);
            }
        }
    }
}

impl Node for RaftClient {
    type Msg = RaftMsg;

    fn on_start(&mut self, ctx: &mut Context<'_, RaftMsg>) {
        if self.cfg.replicas.is_empty() || self.cfg.process == crate::raft::NOOP_CLIENT {
            tracing::error!(
                process = self.cfg.process,
                "raft-client without replicas, or with the reserved process 0; it does nothing"
            );
            return;
        }
        self.process = crate::kv_client::process_of_this_life(ctx, self.cfg.process);
        self.rng = ChaCha8Rng::seed_from_u64(ctx.rng().gen());
        tracing::info!(
            process = self.process,
            ops = self.cfg.ops,
            "raft-client started"
        );
        self.schedule_next(ctx);
    }

    fn on_message(&mut self, ctx: &mut Context<'_, RaftMsg>, from: NodeId, msg: RaftMsg) {
        match msg {
            RaftMsg::Reply { seq, outcome }
                if self.current.as_ref().is_some_and(|c| c.seq == seq) =>
            {
                self.on_outcome(ctx, outcome)
            }
            RaftMsg::Reply { .. } => tracing::debug!(%from, "late answer; ignored"),
            other => {
                tracing::warn!(%from, msg = ?other, "unexpected message at a raft-client; ignored")
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, RaftMsg>, timer: TimerId, tag: u64) {
        let Some(tag) = ClientTimer::from_tag(tag) else {
            return;
        };
        if tag == ClientTimer::Next {
            self.start_op(ctx);
            return;
        }
        let Some((to, deadline, attempt)) =
            self.current.as_ref().map(|c| (c.to, c.deadline, c.attempt))
        else {
            return;
        };
        match tag {
            ClientTimer::Deadline if deadline == timer => {
                self.complete(ctx, OpKind::Info, Value::Nil);
            }
            ClientTimer::Attempt if attempt == Some(timer) => {
                // No answer: whoever it went to may be down or cut off.
                let next = self.other(to);
                self.leader = None;
                self.send_attempt(ctx, next);
            }
            ClientTimer::Resend if attempt == Some(timer) => {
                let next = match self.leader {
                    Some(l) => l,
                    None => self.other(to),
                };
                self.send_attempt(ctx, next);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults() {
        let c: RaftClientConfig = serde_json::from_str(r#"{"replicas":[],"process":1}"#).unwrap();
        assert_eq!(
            (
                c.keys,
                c.ops,
                c.think_ms,
                c.attempt_ms,
                c.op_timeout_ms,
                c.cas
            ),
            (3, 50, 20, 150, 1000, true)
        );
    }

    #[test]
    fn values_map_to_history_values() {
        assert_eq!(history_value(None), Value::Nil);
        assert_eq!(history_value(Some(4)), Value::Int(4));
    }
}
