//! `kv-client`: a workload generator for the [`crate::kv`] store that records
//! a history for the linearizability checker ([`distzero::check::check_kv`]).
//!
//! One client is one process of the history: one operation in flight at a
//! time, a random read or write of a random key through a random replica,
//! all drawn from `ctx.rng()`. A write's value is unique
//! (`process * 1_000_000 + n`) and its request id too. An answer completes
//! the operation `ok`; no answer within `timeout_ms` completes it `info` (it
//! may have happened, or may still happen). Every record goes to the run's
//! history with `ctx.record` (kept outside the machines, and logged as a
//! `history` event), so a test reads it with `c.history()` in every mode,
//! also after the client's machine crashed.
//!
//! A crash ends a client's process with its op in flight (never completed:
//! `info`). When its machine restarts, the client starts a new life as a new
//! process, `process + life * LIFE_STRIDE` (the life is counted on its
//! disk), and runs its workload again: a process never invokes twice with an
//! op in flight.

use crate::kv::KvMsg;
use distzero::history::{History, Op, OpKind, Value, F};
use distzero::{Context, Node, NodeId, TimerId, TimerTag};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const KIND: distzero::Kind<KvClientConfig> = distzero::Kind::new("kv-client");

/// A client's process in its `n`-th life (from 0) is `process + n * LIFE_STRIDE`.
pub const LIFE_STRIDE: u64 = 1000;

/// The process number of a client whose first life is `process`: each
/// life (counted on the machine's disk) is a process of its own,
/// `process + life * LIFE_STRIDE`, so a restarted client never has two ops
/// in flight under one process.
pub fn process_of_this_life<M: distzero::Message>(ctx: &mut Context<'_, M>, process: u64) -> u64 {
    let life: u64 = match ctx.disk().get("life") {
        Ok(l) => l.unwrap_or(0),
        Err(e) => {
            tracing::error!(error = %e, "unreadable life counter; counting from 0");
            0
        }
    };
    if let Err(e) = ctx.disk().put_synced("life", &(life + 1)) {
        tracing::error!(error = %e, "cannot count this life on disk");
    }
    process + life * LIFE_STRIDE
}

/// How many operations `process` completed (ok, fail or info) in `history`.
pub fn completed(history: &History, process: u64) -> u64 {
    history
        .ops()
        .iter()
        .filter(|o| o.process == process && o.kind != OpKind::Invoke)
        .count() as u64
}

fn default_keys() -> u64 {
    3
}
fn default_ops() -> u64 {
    50
}
fn default_timeout_ms() -> u64 {
    500
}
fn default_think_ms() -> u64 {
    20
}

/// Config of a `kv-client`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvClientConfig {
    /// The store's replicas; each operation goes to one of them at random.
    pub replicas: Vec<NodeId>,
    /// This client's process number in the history (unique per client,
    /// below [`LIFE_STRIDE`]; each restart adds `LIFE_STRIDE`).
    pub process: u64,
    /// Keys `k0 .. k{keys-1}`.
    #[serde(default = "default_keys")]
    pub keys: u64,
    /// Operations to perform, then stop.
    #[serde(default = "default_ops")]
    pub ops: u64,
    /// An operation without an answer after this long completes `info`.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Up to this long (uniform) between two operations.
    #[serde(default = "default_think_ms")]
    pub think_ms: u64,
}

impl KvClientConfig {
    pub fn new(replicas: Vec<NodeId>, process: u64) -> Self {
        KvClientConfig {
            replicas,
            process,
            keys: default_keys(),
            ops: default_ops(),
            timeout_ms: default_timeout_ms(),
            think_ms: default_think_ms(),
        }
    }
}

distzero::timer_tags! {
    /// The client's timers: think time before the next op, and the op's timeout.
    enum ClientTimer { Next, Timeout }
}

struct InFlight {
    /// The request id the answer must carry.
    id: u64,
    invoke: Op,
    timer: TimerId,
}

pub struct KvClient {
    cfg: KvClientConfig,
    /// The process of this life (see the module docs).
    process: u64,
    started: u64,
    current: Option<InFlight>,
}

/// A stored value as a history value: the integer it holds, or the string.
fn history_value(v: Option<String>) -> Value {
    match v {
        None => Value::Nil,
        Some(s) => match s.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Str(s),
        },
    }
}

impl KvClient {
    pub fn new(cfg: KvClientConfig) -> Self {
        KvClient {
            process: cfg.process,
            cfg,
            started: 0,
            current: None,
        }
    }

    fn schedule_next(&mut self, ctx: &mut Context<'_, KvMsg>) {
        if self.started >= self.cfg.ops {
            tracing::info!(process = self.process, ops = self.started, "workload done");
            return;
        }
        let think = ctx.rng().gen_range(0..=self.cfg.think_ms);
        ctx.schedule(Duration::from_millis(think), ClientTimer::Next);
    }

    fn start_op(&mut self, ctx: &mut Context<'_, KvMsg>) {
        if self.current.is_some() || self.started >= self.cfg.ops || self.cfg.replicas.is_empty() {
            return;
        }
        self.started += 1;
        let n = self.started;
        let p = self.process;
        let id = (p << 32) | n;
        let key = format!("k{}", ctx.rng().gen_range(0..self.cfg.keys.max(1)));
        let to = self.cfg.replicas[ctx.rng().gen_range(0..self.cfg.replicas.len())];
        let write = ctx.rng().gen_bool(0.5);
        let now = ctx.now();
        let (invoke, req) = if write {
            let value = (p as i64) * 1_000_000 + n as i64;
            let req = KvMsg::Put {
                id,
                key: key.clone(),
                value: value.to_string(),
            };
            (Op::invoke(p, F::Write, Some(&key), value, now), req)
        } else {
            (
                Op::invoke(p, F::Read, Some(&key), Value::Nil, now),
                KvMsg::Read { id, key },
            )
        };
        ctx.record(invoke.clone());
        ctx.send(to, req);
        let timer = ctx.schedule(
            Duration::from_millis(self.cfg.timeout_ms.max(1)),
            ClientTimer::Timeout,
        );
        self.current = Some(InFlight { id, invoke, timer });
    }

    /// Complete the operation in flight.
    fn complete(&mut self, ctx: &mut Context<'_, KvMsg>, kind: OpKind, value: Value) {
        let Some(cur) = self.current.take() else {
            return;
        };
        if kind != OpKind::Info {
            ctx.cancel_timer(cur.timer);
        }
        let op = cur.invoke.completion(kind, value, ctx.now());
        ctx.record(op);
        self.schedule_next(ctx);
    }
}

impl Node for KvClient {
    type Msg = KvMsg;

    fn on_start(&mut self, ctx: &mut Context<'_, KvMsg>) {
        if self.cfg.replicas.is_empty() {
            tracing::error!("kv-client without replicas; it does nothing");
            return;
        }
        self.process = process_of_this_life(ctx, self.cfg.process);
        tracing::info!(
            process = self.process,
            ops = self.cfg.ops,
            "kv-client started"
        );
        self.schedule_next(ctx);
    }

    fn on_message(&mut self, ctx: &mut Context<'_, KvMsg>, from: NodeId, msg: KvMsg) {
        let current = self.current.as_ref().map(|c| (c.id, c.invoke.f));
        match msg {
            KvMsg::PutOk { id, .. } if current == Some((id, F::Write)) => {
                let value = self
                    .current
                    .as_ref()
                    .map(|c| c.invoke.value.clone())
                    .unwrap_or_default();
                self.complete(ctx, OpKind::Ok, value);
            }
            KvMsg::ReadOk { id, value, .. } if current == Some((id, F::Read)) => {
                self.complete(ctx, OpKind::Ok, history_value(value));
            }
            KvMsg::PutOk { .. } | KvMsg::ReadOk { .. } | KvMsg::Unavailable { .. } => {
                tracing::debug!(%from, "late or unrelated answer; ignored");
            }
            other => {
                tracing::warn!(%from, msg = ?other, "unexpected message at a kv-client; ignored")
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, KvMsg>, timer: TimerId, tag: u64) {
        match ClientTimer::from_tag(tag) {
            Some(ClientTimer::Next) => self.start_op(ctx),
            Some(ClientTimer::Timeout)
                if self.current.as_ref().is_some_and(|c| c.timer == timer) =>
            {
                self.complete(ctx, OpKind::Info, Value::Nil);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_map_to_history_values() {
        assert_eq!(history_value(None), Value::Nil);
        assert_eq!(history_value(Some("42".into())), Value::Int(42));
        assert_eq!(history_value(Some("x".into())), Value::Str("x".into()));
    }

    #[test]
    fn config_defaults() {
        let c: KvClientConfig = serde_json::from_str(r#"{"replicas":[],"process":1}"#).unwrap();
        assert_eq!((c.keys, c.ops, c.timeout_ms, c.think_ms), (3, 50, 500, 20));
    }
}
