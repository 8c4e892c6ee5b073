//! Operation histories: what clients record, and what the checkers of
//! `distzero-check` take.
//!
//! A history is a sequence of [`Op`]s. A client records an [`OpKind::Invoke`]
//! when it starts an operation and one completion when it learns the outcome,
//! with the semantics of Jepsen and Knossos:
//!
//! - [`OpKind::Ok`]: the operation happened, and its value is the result (the
//!   value read, for a read);
//! - [`OpKind::Fail`]: the operation definitely did not happen (a cas whose
//!   expected value did not match, a request the server rejected before
//!   acting);
//! - [`OpKind::Info`]: the outcome is unknown (a timeout, a crash): the
//!   operation may or may not have happened; if it did, its effect may appear
//!   at any time after its invocation. It never completes. An invocation with
//!   no completion at the end of a history counts as `Info`.
//!
//! Each process (client) has at most one operation in flight. After an
//! `Info` the process may invoke again (Jepsen would move on to a new
//! process id; both are accepted here). A client that crashes with an op in
//! flight must come back as a new process: its old invocation stays open
//! (`Info`), and a second invocation of the same process would be an error.
//!
//! # Recording: kept outside every machine
//!
//! A node records an op with [`crate::Context::record`]. The runtime keeps
//! it outside the machines, so a crash of the client's machine loses nothing
//! already recorded, and a test reads the run's history with
//! [`crate::Cluster::history`] in every mode, with logs on or off:
//!
//! - in simulation the cluster appends it to its [`RunHistory`] at once;
//! - in real modes the agent sends it at once to the controller over the
//!   control connection (a record reaches the controller a moment after
//!   `ctx.record`: a crash in that moment loses it, as a real client that
//!   dies before its write), whose [`RunHistory`] keeps it.
//!
//! Either way the op is also logged (see below), where the node runs.
//! Everything is bounded: a run's history holds at most
//! [`MAX_HISTORY_OPS`] ops and each op at most [`MAX_OP_BYTES`] bytes of
//! JSON (so it fits a wire frame); past either, `history()` fails naming the
//! limit, and the ops are never silently dropped.
//!
//! # Logging and reading back
//!
//! [`log_op`] emits one tracing event with target `distzero::history`,
//! message `history` and one field `op` holding the op as a JSON string, so a
//! run's `*.jsonl` files carry lines like
//!
//! ```text
//! {"time":1.5,...,"message":"history","op":"{\"process\":3,\"kind\":\"ok\",\"f\":\"read\",\"key\":null,\"value\":2,\"time_ns\":1500000000}"}
//! ```
//!
//! [`History::from_jsonl`] (and `read_history_dir` / `read_history_file` of
//! `distzero_check::history`, over a run's log folder) collect exactly the
//! lines whose `message` is `history`: every other line is ignored, a
//! `history` line without a valid `op` is an error naming the file and line,
//! and so is a line that is not JSON (except a torn last line without a
//! trailing newline, as a killed process leaves, which is skipped). The op's
//! own `time_ns` (the client's clock) orders ops read from logs, not the log
//! line's `time`: for real-time order to mean anything, clients whose
//! operations are compared should read one clock (in simulation they do).

use crate::error::Error;
use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The tracing target of [`log_op`] events.
pub const LOG_TARGET: &str = "distzero::history";
/// The message of [`log_op`] events; readers of logs select lines by it.
pub const LOG_MESSAGE: &str = "history";

/// What kind of record an [`Op`] is.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// The operation starts.
    Invoke,
    /// It happened; the value is its result.
    Ok,
    /// It definitely did not happen.
    Fail,
    /// Unknown: it may have happened at any time after its invocation, or not.
    Info,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpKind::Invoke => "invoke",
            OpKind::Ok => "ok",
            OpKind::Fail => "fail",
            OpKind::Info => "info",
        })
    }
}

/// The function of an operation, on a register or on one key of a map.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum F {
    /// Invoke value: `Nil`; ok value: the value read (`Nil` if unset).
    Read,
    /// Value: the value written.
    Write,
    /// Compare-and-set; value `[expected, new]`. `Ok` means it matched and
    /// wrote; a mismatch is recorded as `Fail`.
    Cas,
    /// A transaction of micro-ops on lists (Elle's list-append), with no
    /// key of its own; value: a list of micro-ops, each `["append", k, v]`
    /// or `["r", k, list]` ([`Value::append`], [`Value::read_list`]). The
    /// invocation's reads are `["r", k, null]`; the `ok` completion carries
    /// the same micro-ops with each read's list filled in (`[]` for an
    /// empty one). Checked by `distzero_check::elle`.
    Txn,
    /// Append the value to the key's string (Porcupine's key-value model).
    Append,
    /// Add the value: to a counter (a number) or a set (an element).
    Add,
    /// Put the value at the back of a FIFO queue.
    Enqueue,
    /// Take the front of a FIFO queue; ok value: what was taken (`Nil`: the
    /// queue was empty).
    Dequeue,
    /// Acquire a mutex.
    Acquire,
    /// Release a mutex.
    Release,
}

impl fmt::Display for F {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            F::Read => "read",
            F::Write => "write",
            F::Cas => "cas",
            F::Txn => "txn",
            F::Append => "append",
            F::Add => "add",
            F::Enqueue => "enqueue",
            F::Dequeue => "dequeue",
            F::Acquire => "acquire",
            F::Release => "release",
        })
    }
}

/// A value read or written. In JSON: `null`, a number, a string, an array.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// Nothing: an unset register, the input of a read.
    #[default]
    Nil,
    Int(i64),
    Str(String),
    /// A tuple, e.g. a cas's `[expected, new]`.
    List(Vec<Value>),
}

impl Value {
    /// A cas value `[expected, new]`.
    pub fn cas(expected: impl Into<Value>, new: impl Into<Value>) -> Value {
        Value::List(vec![expected.into(), new.into()])
    }
}

/// The micro-ops of a transaction ([`F::Txn`]).
impl Value {
    /// The micro-op "append `v` to the list at key `k`": `["append", k, v]`.
    pub fn append(key: &str, v: impl Into<Value>) -> Value {
        Value::List(vec!["append".into(), key.into(), v.into()])
    }

    /// The micro-op "read the list at key `k`": `["r", k, list]`, with
    /// `None` (`null`) in an invocation and the list read in a completion.
    pub fn read_list(key: &str, list: Option<Vec<Value>>) -> Value {
        Value::List(vec![
            "r".into(),
            key.into(),
            list.map_or(Value::Nil, Value::List),
        ])
    }

    /// A transaction's value: its micro-ops in order.
    pub fn txn(micro_ops: impl IntoIterator<Item = Value>) -> Value {
        Value::List(micro_ops.into_iter().collect())
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Nil, Into::into)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("nil"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::List(vs) => {
                f.write_str("[")?;
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// One record of a history: an invocation or a completion.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Op {
    /// The client that performs it; at most one op in flight per process.
    pub process: u64,
    pub kind: OpKind,
    pub f: F,
    /// The key, for maps; `None` for a single register.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Value,
    /// When it was recorded, on the client's (virtual) clock.
    #[serde(rename = "time_ns", with = "duration_nanos")]
    pub time: Duration,
}

impl Op {
    pub fn new(
        process: u64,
        kind: OpKind,
        f: F,
        key: Option<&str>,
        value: impl Into<Value>,
        time: Duration,
    ) -> Op {
        Op {
            process,
            kind,
            f,
            key: key.map(str::to_string),
            value: value.into(),
            time,
        }
    }

    /// An invocation.
    pub fn invoke(
        process: u64,
        f: F,
        key: Option<&str>,
        value: impl Into<Value>,
        time: Duration,
    ) -> Op {
        Op::new(process, OpKind::Invoke, f, key, value, time)
    }

    /// The completion of this invocation, with the same process, f and key.
    pub fn completion(&self, kind: OpKind, value: impl Into<Value>, time: Duration) -> Op {
        Op {
            kind,
            value: value.into(),
            time,
            ..self.clone()
        }
    }

    /// One JSON object, as [`log_op`] writes it in the `op` field.
    pub fn to_json(&self) -> String {
        // Serializing a plain struct of strings, numbers and enums cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<Op, serde_json::Error> {
        serde_json::from_str(s)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{} {} {}", self.process, self.kind, self.f)?;
        if let Some(k) = &self.key {
            write!(f, " {k:?}")?;
        }
        write!(f, " {} @{}", self.value, secs(self.time))
    }
}

mod duration_nanos {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_nanos(u64::deserialize(d)?))
    }
}

/// Seconds with microseconds, for humans.
pub(crate) fn secs(d: Duration) -> String {
    format!("{}.{:06}s", d.as_secs(), d.subsec_micros())
}

/// Log one op as a tracing event: target [`LOG_TARGET`], message
/// [`LOG_MESSAGE`], field `op` = the op as a JSON string. Runtimes do it for
/// every op recorded with [`crate::Context::record`]; a node need not.
pub fn log_op(op: &Op) {
    log_op_json(&op.to_json());
}

/// [`log_op`] of an op already turned into JSON ([`Op::to_json`]).
pub fn log_op_json(json: &str) {
    tracing::info!(target: "distzero::history", op = %json, "history");
}

/// What is wrong with a history or a log of one.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("op #{index} ({op}): process {process} completes an op it never invoked")]
    NotInvoked {
        index: usize,
        op: String,
        process: u64,
    },
    #[error(
        "op #{index} ({op}): process {process} invokes while its op #{pending} is still in flight"
    )]
    AlreadyInFlight {
        index: usize,
        op: String,
        process: u64,
        pending: usize,
    },
    #[error("op #{index} ({op}) completes op #{invoke} but its f or key differ")]
    Mismatch {
        index: usize,
        op: String,
        invoke: usize,
    },
    #[error("op #{index} ({op}) completes before it was invoked (op #{invoke})")]
    CompletesBeforeInvoke {
        index: usize,
        op: String,
        invoke: usize,
    },
    #[error("op #{index} ({op}): {reason}")]
    BadValue {
        index: usize,
        op: String,
        reason: String,
    },
    #[error("{file}:{line}: {reason}")]
    BadLine {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("cannot read history from {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An operation with its invocation and completion paired: what checkers
/// take, and what their counterexamples print.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Call {
    /// Position of the invocation in the [`History`].
    pub index: usize,
    pub process: u64,
    pub f: F,
    pub key: Option<String>,
    /// The invocation's value.
    pub value: Value,
    /// `Ok`, `Fail` or `Info` (also for an invocation never completed).
    pub outcome: OpKind,
    /// The completion's value (for `Ok`), else `Nil`.
    pub result: Value,
    pub invoked: Duration,
    /// `None` for `Info`: it never completes.
    pub completed: Option<Duration>,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{:<3} {:<5}", self.process, self.f.to_string())?;
        if let Some(k) = &self.key {
            write!(f, " {k:?}")?;
        }
        write!(f, " {}", self.value)?;
        match (self.outcome, self.f) {
            (OpKind::Ok, F::Read | F::Txn | F::Dequeue) => write!(f, " -> ok {}", self.result)?,
            (outcome, _) => write!(f, " -> {outcome}")?,
        }
        match self.completed {
            Some(c) => write!(f, "  [{} .. {}]", secs(self.invoked), secs(c)),
            None => write!(f, "  [{} .. never]", secs(self.invoked)),
        }
    }
}

/// A history: ops in the order they were recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Op>,
    /// Process -> index of its invocation in flight.
    pending: BTreeMap<u64, usize>,
}

impl History {
    pub fn new() -> Self {
        History::default()
    }

    /// A history of these ops, in this order (nothing is validated before
    /// [`History::calls`]).
    pub fn from_ops(ops: Vec<Op>) -> Self {
        let mut h = History::new();
        for op in ops {
            h.push(op);
        }
        h
    }

    /// Append a record as is.
    pub fn push(&mut self, op: Op) {
        match op.kind {
            OpKind::Invoke => {
                self.pending.insert(op.process, self.ops.len());
            }
            _ => {
                self.pending.remove(&op.process);
            }
        }
        self.ops.push(op);
    }

    /// Record an invocation; returns its index.
    pub fn invoke(
        &mut self,
        process: u64,
        f: F,
        key: Option<&str>,
        value: impl Into<Value>,
        time: Duration,
    ) -> Result<usize, HistoryError> {
        let op = Op::invoke(process, f, key, value, time);
        if let Some(&pending) = self.pending.get(&process) {
            return Err(HistoryError::AlreadyInFlight {
                index: self.ops.len(),
                op: op.to_string(),
                process,
                pending,
            });
        }
        self.push(op);
        Ok(self.ops.len() - 1)
    }

    /// Record the completion of `process`'s op in flight (copying its f and
    /// key); returns the completion.
    pub fn complete(
        &mut self,
        process: u64,
        kind: OpKind,
        value: impl Into<Value>,
        time: Duration,
    ) -> Result<&Op, HistoryError> {
        let value = value.into();
        let Some(&inv) = self.pending.get(&process) else {
            return Err(HistoryError::NotInvoked {
                index: self.ops.len(),
                op: format!("p{process} {kind} {value}"),
                process,
            });
        };
        if kind == OpKind::Invoke {
            return Err(HistoryError::AlreadyInFlight {
                index: self.ops.len(),
                op: format!("p{process} {kind} {value}"),
                process,
                pending: inv,
            });
        }
        let op = self.ops[inv].completion(kind, value, time);
        self.push(op);
        Ok(&self.ops[self.ops.len() - 1])
    }

    /// [`History::complete`] with `Ok` and the result.
    pub fn ok(
        &mut self,
        process: u64,
        value: impl Into<Value>,
        time: Duration,
    ) -> Result<&Op, HistoryError> {
        self.complete(process, OpKind::Ok, value, time)
    }

    /// [`History::complete`] with `Fail`: it did not happen.
    pub fn fail(&mut self, process: u64, time: Duration) -> Result<&Op, HistoryError> {
        self.complete(process, OpKind::Fail, Value::Nil, time)
    }

    /// [`History::complete`] with `Info`: unknown.
    pub fn info(&mut self, process: u64, time: Duration) -> Result<&Op, HistoryError> {
        self.complete(process, OpKind::Info, Value::Nil, time)
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Pair invocations with completions, in invocation order. Errors on a
    /// completion without an invocation, a second invocation while one is in
    /// flight (unless the first ended `Info`), a completion whose f or key
    /// differ from its invocation's, or one earlier than its invocation.
    pub fn calls(&self) -> Result<Vec<Call>, HistoryError> {
        let mut calls: Vec<Call> = Vec::new();
        let mut in_flight: BTreeMap<u64, usize> = BTreeMap::new(); // process -> calls index
        for (index, op) in self.ops.iter().enumerate() {
            match op.kind {
                OpKind::Invoke => {
                    if let Some(&c) = in_flight.get(&op.process) {
                        return Err(HistoryError::AlreadyInFlight {
                            index,
                            op: op.to_string(),
                            process: op.process,
                            pending: calls[c].index,
                        });
                    }
                    in_flight.insert(op.process, calls.len());
                    calls.push(Call {
                        index,
                        process: op.process,
                        f: op.f,
                        key: op.key.clone(),
                        value: op.value.clone(),
                        outcome: OpKind::Info,
                        result: Value::Nil,
                        invoked: op.time,
                        completed: None,
                    });
                }
                kind => {
                    let Some(c) = in_flight.remove(&op.process) else {
                        return Err(HistoryError::NotInvoked {
                            index,
                            op: op.to_string(),
                            process: op.process,
                        });
                    };
                    let call = &mut calls[c];
                    if call.f != op.f || call.key != op.key {
                        return Err(HistoryError::Mismatch {
                            index,
                            op: op.to_string(),
                            invoke: call.index,
                        });
                    }
                    if op.time < call.invoked {
                        return Err(HistoryError::CompletesBeforeInvoke {
                            index,
                            op: op.to_string(),
                            invoke: call.index,
                        });
                    }
                    call.outcome = kind;
                    if kind == OpKind::Ok {
                        call.result = op.value.clone();
                    }
                    if kind != OpKind::Info {
                        call.completed = Some(op.time);
                    }
                }
            }
        }
        Ok(calls)
    }

    /// One JSON op per line.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for op in &self.ops {
            out.push_str(&op.to_json());
            out.push('\n');
        }
        out
    }

    /// Parse JSON lines: either bare ops (as [`History::to_jsonl`] writes)
    /// or log lines (as [`log_op`] makes; other log lines are ignored).
    /// `name` names the source in errors. Ops keep their line order.
    pub fn from_jsonl(name: &str, text: &str) -> Result<History, HistoryError> {
        let mut ops = Vec::new();
        parse_lines(name, text, &mut ops)?;
        Ok(History::from_ops(
            ops.into_iter().map(|(op, _)| op).collect(),
        ))
    }
}

/// Parse history ops out of JSON lines (bare ops or log lines, see the
/// module docs) into `out`, each with its line number; `name` names the
/// source in errors. What readers of log folders build on.
pub fn parse_lines(name: &str, text: &str, out: &mut Vec<(Op, usize)>) -> Result<(), HistoryError> {
    let bad = |line: usize, reason: String| HistoryError::BadLine {
        file: name.to_string(),
        line,
        reason,
    };
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let count = text.lines().count();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            // A write cut short by a killed process: nothing to recover.
            Err(_) if torn_tail && line == count => continue,
            Err(e) => return Err(bad(line, format!("not a JSON line: {e}"))),
        };
        let Some(obj) = v.as_object() else {
            return Err(bad(line, "not a JSON object".into()));
        };
        let op = if obj.contains_key("process") && obj.contains_key("kind") {
            // A bare op.
            serde_json::from_value::<Op>(v.clone())
                .map_err(|e| bad(line, format!("not a history op: {e}")))?
        } else if obj.get("message").and_then(|m| m.as_str()) == Some(LOG_MESSAGE) {
            let Some(field) = obj.get("op") else {
                return Err(bad(line, "a `history` line without an `op` field".into()));
            };
            let Some(s) = field.as_str() else {
                return Err(bad(line, "the `op` field is not a JSON string".into()));
            };
            Op::from_json(s)
                .map_err(|e| bad(line, format!("the `op` field is not a history op: {e}")))?
        } else {
            continue;
        };
        out.push((op, line));
    }
    Ok(())
}

impl From<HistoryError> for Error {
    fn from(e: HistoryError) -> Self {
        Error::Check(e.to_string())
    }
}

/// Most ops one run's history keeps ([`RunHistory`]): about 100 MB. Past it,
/// `Cluster::history` fails naming this limit (ops are never dropped
/// silently, and the history never grows without bound).
pub const MAX_HISTORY_OPS: usize = 1_000_000;

/// Largest op a history takes, in bytes of its JSON ([`Op::to_json`]): far
/// below the wire's frame limit, so a recorded op crosses in one frame in
/// every mode. A larger op makes `Cluster::history` fail naming this limit.
pub const MAX_OP_BYTES: usize = 64 * 1024;

/// `Ok` if `json` (the JSON of `op`, recorded by `node`) is within
/// [`MAX_OP_BYTES`]; else the error a [`RunHistory`] keeps. Every runtime
/// checks it where the op is recorded, so the same ops pass in every mode.
pub fn check_op_size(node: NodeId, op: &Op, json: &str) -> Result<(), String> {
    if json.len() <= MAX_OP_BYTES {
        return Ok(());
    }
    Err(format!(
        "{node} recorded an op of {} bytes (p{} {} {}), over the limit of {MAX_OP_BYTES} bytes \
         per op (distzero::history::MAX_OP_BYTES); the op is not in the history",
        json.len(),
        op.process,
        op.kind,
        op.f
    ))
}

/// What a history over `limit` ops says, naming the constant when it is the default.
fn over_limit(limit: usize) -> String {
    if limit == MAX_HISTORY_OPS {
        format!(
            "the run's history went over its limit of {limit} ops \
             (distzero::history::MAX_HISTORY_OPS)"
        )
    } else {
        format!("the run's history went over its limit of {limit} ops")
    }
}

/// The history of a run as its cluster keeps it, outside every machine:
/// the ops in record order, bounded by a limit ([`MAX_HISTORY_OPS`] unless
/// set). Past the limit, or after a broken record (an op too large, one
/// lost on its way), it keeps the first error and [`RunHistory::history`]
/// fails with it: a partial history would check as something it is not.
#[derive(Debug)]
pub struct RunHistory {
    ops: History,
    limit: usize,
    /// The first error, and how many ops arrived after the limit (not kept).
    error: Option<String>,
    refused: u64,
}

impl Default for RunHistory {
    fn default() -> Self {
        RunHistory::new()
    }
}

impl RunHistory {
    /// An empty history bounded by [`MAX_HISTORY_OPS`].
    pub fn new() -> Self {
        RunHistory::with_limit(MAX_HISTORY_OPS)
    }

    /// An empty history that keeps at most `limit` ops.
    pub fn with_limit(limit: usize) -> Self {
        RunHistory {
            ops: History::new(),
            limit,
            error: None,
            refused: 0,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Change the limit (ops already kept stay; a limit below their count
    /// refuses every later op).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Ops kept.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Whether a record went wrong: [`RunHistory::history`] fails.
    pub fn is_broken(&self) -> bool {
        self.error.is_some()
    }

    /// Keep `op`, recorded by `node`; past the limit, refuse it and keep
    /// an error naming the limit (logged once).
    pub fn record(&mut self, node: NodeId, op: Op) {
        if self.ops.len() < self.limit {
            self.ops.push(op);
            return;
        }
        self.refused += 1;
        if self.refused == 1 {
            self.fail(format!(
                "{}: {node} recorded op #{} ({op}) and the ops after it are not kept",
                over_limit(self.limit),
                self.limit + 1
            ));
        }
    }

    /// An op as JSON, as an agent sends it: parsed, size-checked and kept
    /// (or the reason it cannot be, kept as the error).
    pub fn record_json(&mut self, node: NodeId, json: &str) {
        match Op::from_json(json) {
            Ok(op) => match check_op_size(node, &op, json) {
                Ok(()) => self.record(node, op),
                Err(why) => self.fail(why),
            },
            Err(e) => {
                let head: String = json.chars().take(200).collect();
                self.fail(format!(
                    "{node} recorded an op that is not a history op ({e}): {head}"
                ));
            }
        }
    }

    /// Keep `why` as the reason the history is broken (the first one wins;
    /// each is logged as an error).
    pub fn fail(&mut self, why: String) {
        tracing::error!(error = %why, "the run's history is broken");
        self.error.get_or_insert(why);
    }

    /// The ops recorded so far, in record order; an error
    /// ([`Error::Budget`]) if the history is broken (see the type's docs).
    pub fn history(&self) -> Result<History, Error> {
        match &self.error {
            None => Ok(self.ops.clone()),
            Some(why) if self.refused > 0 => Err(Error::Budget(format!(
                "{why} ({} ops refused in all)",
                self.refused
            ))),
            Some(why) => Err(Error::Budget(why.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ops_round_trip_through_json() {
        let ops = vec![
            Op::invoke(1, F::Read, None, Value::Nil, ms(1)),
            Op::new(1, OpKind::Ok, F::Read, None, 3, ms(2)),
            Op::invoke(2, F::Cas, Some("k"), Value::cas(1, "two"), ms(3)),
            Op::new(2, OpKind::Info, F::Cas, Some("k"), Value::Nil, ms(4)),
        ];
        let h = History::from_ops(ops.clone());
        let text = h.to_jsonl();
        assert!(text.contains(r#""kind":"invoke""#), "{text}");
        assert!(text.contains(r#""value":[1,"two"]"#), "{text}");
        assert!(text.contains(r#""time_ns":3000000"#), "{text}");
        let back = History::from_jsonl("mem", &text).unwrap();
        assert_eq!(back.ops(), &ops[..]);
    }

    #[test]
    fn transactions_round_trip_through_json_and_logs() {
        let invoke = Op::invoke(
            7,
            F::Txn,
            None,
            Value::txn([Value::append("x", 1), Value::read_list("y", None)]),
            ms(1),
        );
        let ok = invoke.completion(
            OpKind::Ok,
            Value::txn([
                Value::append("x", 1),
                Value::read_list("y", Some(vec![2.into(), 3.into()])),
            ]),
            ms(2),
        );
        assert_eq!(
            ok.to_json(),
            r#"{"process":7,"kind":"ok","f":"txn","key":null,"value":[["append","x",1],["r","y",[2,3]]],"time_ns":2000000}"#
        );
        let mut log = String::new();
        for op in [&invoke, &ok] {
            let line = serde_json::json!({"message": LOG_MESSAGE, "op": op.to_json()});
            log.push_str(&line.to_string());
            log.push('\n');
        }
        let back = History::from_jsonl("log", &log).unwrap();
        assert_eq!(back.ops(), &[invoke, ok.clone()][..]);
        let calls = back.calls().unwrap();
        assert_eq!(calls[0].f, F::Txn);
        assert_eq!(calls[0].result, ok.value);
        let shown = calls[0].to_string();
        assert!(shown.contains("txn"), "{shown}");
        assert!(
            shown.contains("-> ok [[\"append\", \"x\", 1], [\"r\", \"y\", [2, 3]]]"),
            "{shown}"
        );
        // The other objects' functions, in the log format.
        for f in [
            F::Append,
            F::Add,
            F::Enqueue,
            F::Dequeue,
            F::Acquire,
            F::Release,
        ] {
            let op = Op::invoke(1, f, Some("k"), 3, ms(1));
            let json = op.to_json();
            assert!(json.contains(&format!("\"f\":\"{f}\"")), "{json}");
            assert_eq!(Op::from_json(&json).unwrap(), op);
        }
    }

    #[test]
    fn helpers_pair_invocations_and_completions() {
        let mut h = History::new();
        h.invoke(1, F::Write, Some("x"), 1, ms(0)).unwrap();
        h.invoke(2, F::Read, Some("x"), Value::Nil, ms(1)).unwrap();
        assert!(matches!(
            h.invoke(1, F::Read, None, Value::Nil, ms(1)),
            Err(HistoryError::AlreadyInFlight {
                process: 1,
                pending: 0,
                ..
            })
        ));
        h.ok(1, 1, ms(2)).unwrap();
        h.info(2, ms(3)).unwrap();
        assert!(matches!(
            h.fail(3, ms(4)),
            Err(HistoryError::NotInvoked { process: 3, .. })
        ));
        h.invoke(2, F::Cas, Some("x"), Value::cas(1, 2), ms(5))
            .unwrap();
        h.fail(2, ms(6)).unwrap();
        h.invoke(3, F::Read, Some("x"), Value::Nil, ms(7)).unwrap();
        let calls = h.calls().unwrap();
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[0].outcome, OpKind::Ok);
        assert_eq!(calls[0].completed, Some(ms(2)));
        assert_eq!(calls[1].outcome, OpKind::Info);
        assert_eq!(calls[1].completed, None);
        assert_eq!(calls[2].outcome, OpKind::Fail);
        assert_eq!(calls[2].key.as_deref(), Some("x"));
        assert_eq!(
            calls[3].outcome,
            OpKind::Info,
            "never completed counts as info"
        );
        assert!(calls[0].to_string().contains("write"), "{}", calls[0]);
    }

    #[test]
    fn malformed_histories_are_errors_not_panics() {
        let bad = History::from_ops(vec![Op::new(1, OpKind::Ok, F::Read, None, 1, ms(1))]);
        assert!(matches!(bad.calls(), Err(HistoryError::NotInvoked { .. })));
        let bad = History::from_ops(vec![
            Op::invoke(1, F::Read, None, Value::Nil, ms(5)),
            Op::new(1, OpKind::Ok, F::Read, None, 1, ms(1)),
        ]);
        assert!(matches!(
            bad.calls(),
            Err(HistoryError::CompletesBeforeInvoke { .. })
        ));
        let bad = History::from_ops(vec![
            Op::invoke(1, F::Read, None, Value::Nil, ms(1)),
            Op::new(1, OpKind::Ok, F::Write, None, 1, ms(2)),
        ]);
        assert!(matches!(bad.calls(), Err(HistoryError::Mismatch { .. })));

        let e = History::from_jsonl("f.jsonl", "{\"message\":\"history\",\"op\":\"{}\"}\n")
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("f.jsonl:1: the `op` field is not a history op"),
            "{e}"
        );
        let e = History::from_jsonl("f.jsonl", "{}\nnot json\n{}\n").unwrap_err();
        assert!(
            e.to_string().starts_with("f.jsonl:2: not a JSON line"),
            "{e}"
        );
        let e = History::from_jsonl("f.jsonl", "{\"message\":\"history\"}\n").unwrap_err();
        assert!(e.to_string().contains("without an `op` field"), "{e}");
        // A torn last line is what a killed writer leaves: skipped.
        let h =
            History::from_jsonl("f.jsonl", "{\"message\":\"other\"}\n{\"message\":\"hi").unwrap();
        assert!(h.is_empty());
    }

    fn node() -> NodeId {
        NodeId::new(crate::ids::MachineId(3), 0)
    }

    #[test]
    fn a_run_history_keeps_ops_in_record_order_up_to_its_limit() {
        let a = Op::invoke(1, F::Write, Some("x"), 1, ms(5));
        let b = Op::invoke(2, F::Read, Some("x"), Value::Nil, ms(1));
        let c = a.completion(OpKind::Ok, 1, ms(6));
        let mut h = RunHistory::with_limit(2);
        assert_eq!(h.limit(), 2);
        h.record(node(), a.clone());
        h.record(node(), b.clone());
        // Record order, not time order.
        assert_eq!(h.history().unwrap().ops(), &[a.clone(), b.clone()][..]);
        assert!(!h.is_broken());
        h.record(node(), c.clone());
        h.record(node(), c);
        assert!(h.is_broken());
        assert_eq!(h.len(), 2, "nothing past the limit is kept");
        let e = h.history().unwrap_err();
        assert!(matches!(e, Error::Budget(_)), "{e:?}");
        let e = e.to_string();
        assert!(
            e.starts_with("the run's history went over its limit of 2 ops: m3.n0 recorded op #3 (p1 ok write \"x\" 1 @0.006000s)"),
            "{e}"
        );
        assert!(e.ends_with("(2 ops refused in all)"), "{e}");
    }

    #[test]
    fn the_default_limit_is_named_in_the_error() {
        assert_eq!(RunHistory::new().limit(), MAX_HISTORY_OPS);
        assert_eq!(
            over_limit(MAX_HISTORY_OPS),
            "the run's history went over its limit of 1000000 ops \
             (distzero::history::MAX_HISTORY_OPS)"
        );
        let mut h = RunHistory::with_limit(0);
        h.record(node(), Op::invoke(1, F::Read, None, Value::Nil, ms(1)));
        let e = h.history().unwrap_err().to_string();
        assert!(e.contains("limit of 0 ops: m3.n0 recorded op #1"), "{e}");
    }

    #[test]
    fn oversized_and_unreadable_ops_break_the_history() {
        let big = Op::invoke(1, F::Write, Some("x"), "y".repeat(MAX_OP_BYTES), ms(1));
        let json = big.to_json();
        let e = check_op_size(node(), &big, &json).unwrap_err();
        assert!(
            e.contains("over the limit of 65536 bytes per op (distzero::history::MAX_OP_BYTES)"),
            "{e}"
        );
        let small = Op::invoke(1, F::Write, Some("x"), 1, ms(1));
        assert!(check_op_size(node(), &small, &small.to_json()).is_ok());

        let mut h = RunHistory::new();
        h.record_json(node(), &small.to_json());
        assert_eq!(h.len(), 1);
        h.record_json(node(), &json);
        let e = h.history().unwrap_err().to_string();
        assert!(e.starts_with("m3.n0 recorded an op of 65"), "{e}");
        let mut h = RunHistory::new();
        h.record_json(node(), "{\"nope\":1}");
        let e = h.history().unwrap_err().to_string();
        assert!(
            e.starts_with("m3.n0 recorded an op that is not a history op"),
            "{e}"
        );
    }
}
