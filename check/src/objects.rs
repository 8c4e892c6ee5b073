//! Models of other objects than registers: a counter, a set, a FIFO queue,
//! a mutex, and a key-value map with append (Porcupine's). Their histories
//! come from EDN ([`crate::edn::read_calls`]); [`check_edn`] reads and
//! checks one by model name, [`check_calls`] checks calls against any
//! [`EdnModel`].
//!
//! Jepsen's semantics, as for registers: a `:fail` op did not happen; an
//! `:info` op may have happened at any time after its invocation, or not
//! (an unknown read constrains nothing and is left out).
//!
//! | name | `:f` (value) | state, initially | notes |
//! |---|---|---|---|
//! | `counter` | `:add` n (or `:inc`, n = 1 if nil); `:read` → n | an integer, 0 | |
//! | `set` | `:add` x; `:read` → the set | a set, empty | a read's set is a vector, list or `#{}` |
//! | `queue` | `:enqueue` x; `:dequeue` → x | a FIFO queue, empty | an `:ok` dequeue of `nil` saw the queue empty |
//! | `mutex` | `:acquire`, `:release` | free | no owners: Knossos's mutex |
//! | `append` | `:get` (`:read`) → s, `:put` (`:write`) s, `:append` s, each with a `:key` | strings, `""` | Porcupine's key-value model, one part per key |

use crate::edn::{read_calls, Edn, EdnCall};
use crate::history::{Call, History, HistoryError, OpKind, Value};
use crate::linearizability::{check_with, Budget, Model, Operation, Options, Partition, Report};
use crate::models::{removable_by_values, value_heap_bytes, Role};
use crate::sequential::{check_sequential, ProcessOp, SeqVerdict};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// An operation's input and output under model `M`.
pub type InputOutput<M> = (<M as Model>::Input, <M as Model>::Output);

/// A model whose operations are read from EDN calls.
pub trait EdnModel: Model {
    /// The model's name in [`check_edn`].
    const NAME: &'static str;

    /// The input and output of `call`, `Ok(None)` if it constrains nothing
    /// (a failed op, an unknown read), or why it is no op of this model.
    fn input_output(&self, call: &EdnCall) -> Result<Option<InputOutput<Self>>, String>;
}

/// Check `calls` against `model`; failures and witnesses name calls. Errors
/// name the line of a call that is no op of the model (`name`: the source).
pub fn check_calls<M: EdnModel>(
    model: &M,
    name: &str,
    calls: &[EdnCall],
    budget: &Budget,
    options: &Options,
) -> Result<Report<EdnCall>, HistoryError> {
    let (kept, ops) = model_ops(model, name, calls)?;
    let ops: Vec<_> = ops.into_iter().map(|(_, op)| op).collect();
    Ok(check_with(model, &ops, budget, options).map(|i| kept[i].clone()))
}

/// The calls the model takes (others say nothing and are left out) and
/// their operations, each with its process; an error names the line of a
/// call that is no op of the model.
#[allow(clippy::type_complexity)]
fn model_ops<'c, M: EdnModel>(
    model: &M,
    name: &str,
    calls: &'c [EdnCall],
) -> Result<(Vec<&'c EdnCall>, Vec<(u64, Operation<M::Input, M::Output>)>), HistoryError> {
    let mut kept = Vec::new();
    let mut ops = Vec::new();
    for call in calls {
        let io = model
            .input_output(call)
            .map_err(|reason| HistoryError::BadLine {
                file: name.to_string(),
                line: call.invoke_line,
                reason: format!("{reason} (model {})", M::NAME),
            })?;
        let Some((input, output)) = io else { continue };
        ops.push((
            call.process,
            Operation {
                input,
                output,
                call: call.invoked,
                ret: call.completed,
            },
        ));
        kept.push(call);
    }
    Ok((kept, ops))
}

/// [`check_calls`] for sequential consistency instead of linearizability
/// (see [`crate::sequential`]): one order of all calls that keeps each
/// process's order, real time aside.
pub fn check_calls_sequential<M: EdnModel>(
    model: &M,
    name: &str,
    calls: &[EdnCall],
    budget: &Budget,
) -> Result<SeqVerdict<EdnCall>, HistoryError>
where
    M::Input: Clone,
    M::Output: Clone,
{
    let (kept, ops) = model_ops(model, name, calls)?;
    let ops: Vec<_> = ops
        .into_iter()
        .map(|(process, op)| ProcessOp { process, op })
        .collect();
    Ok(check_sequential(model, &ops, budget).map(|i| kept[i].clone()))
}

/// [`check_edn`] for sequential consistency: models `counter`, `set`,
/// `queue` and `mutex` (not `append`: a map is not checked key by key for
/// sequential consistency, which is not compositional).
pub fn check_edn_sequential(
    model: &str,
    name: &str,
    text: &str,
    budget: &Budget,
) -> Result<SeqVerdict<EdnCall>, HistoryError> {
    let calls = read_calls(name, text)?;
    check_named_sequential(model, name, &calls, budget)
}

fn check_named_sequential(
    model: &str,
    name: &str,
    calls: &[EdnCall],
    budget: &Budget,
) -> Result<SeqVerdict<EdnCall>, HistoryError> {
    match model {
        CounterModel::NAME => check_calls_sequential(&CounterModel::default(), name, calls, budget),
        SetModel::NAME => check_calls_sequential(&SetModel, name, calls, budget),
        QueueModel::NAME => check_calls_sequential(&QueueModel, name, calls, budget),
        MutexModel::NAME => check_calls_sequential(&MutexModel, name, calls, budget),
        other => Err(HistoryError::BadLine {
            file: name.to_string(),
            line: 0,
            reason: format!(
                "no model called {other:?} for sequential consistency (counter, set, queue, mutex; \
                 a register: sequential::check_register_sequential)"
            ),
        }),
    }
}

/// Read an EDN history (`name` names it in errors) and check it against
/// the model called `model`: `counter`, `set`, `queue`, `mutex` or
/// `append` (see the module docs).
pub fn check_edn(
    model: &str,
    name: &str,
    text: &str,
    budget: &Budget,
    options: &Options,
) -> Result<Report<EdnCall>, HistoryError> {
    let calls = read_calls(name, text)?;
    check_named(model, name, &calls, budget, options)
}

/// [`check_calls`] with the model called `model`.
fn check_named(
    model: &str,
    name: &str,
    calls: &[EdnCall],
    budget: &Budget,
    options: &Options,
) -> Result<Report<EdnCall>, HistoryError> {
    match model {
        CounterModel::NAME => check_calls(&CounterModel::default(), name, calls, budget, options),
        SetModel::NAME => check_calls(&SetModel, name, calls, budget, options),
        QueueModel::NAME => check_calls(&QueueModel, name, calls, budget, options),
        MutexModel::NAME => check_calls(&MutexModel, name, calls, budget, options),
        AppendModel::NAME => check_calls(&AppendModel, name, calls, budget, options),
        other => Err(HistoryError::BadLine {
            file: name.to_string(),
            line: 0,
            reason: format!(
                "no model called {other:?} (counter, set, queue, mutex, append; registers and \
                 key-value maps: edn::read_history)"
            ),
        }),
    }
}

/// A history value as EDN (a list as a vector).
fn edn_of(v: &Value) -> Edn {
    match v {
        Value::Nil => Edn::Nil,
        Value::Int(i) => Edn::Int(*i),
        Value::Str(s) => Edn::Str(s.clone()),
        Value::List(l) => Edn::Vector(l.iter().map(edn_of).collect()),
    }
}

/// A history's calls, and each as the EDN call the models read (its
/// `invoke_line` is the call's op index).
fn history_calls(history: &History) -> Result<(Vec<Call>, Vec<EdnCall>), HistoryError> {
    let calls = history.calls()?;
    let edn = calls
        .iter()
        .map(|c| EdnCall {
            process: c.process,
            f: c.f.to_string(),
            key: c.key.clone().map(Edn::Str),
            value: edn_of(&c.value),
            outcome: c.outcome,
            result: edn_of(&c.result),
            invoke_line: c.index,
            complete_line: None,
            invoked: c.invoked,
            completed: c.completed,
        })
        .collect();
    Ok((calls, edn))
}

/// An error about op `index` of a history, for an error the models report
/// on EDN (naming a "line": here the op index).
fn history_error(calls: &[Call], e: HistoryError) -> HistoryError {
    match e {
        HistoryError::BadLine { line, reason, .. } => {
            match calls.iter().find(|c| c.index == line) {
                Some(c) => HistoryError::BadValue {
                    index: c.index,
                    op: c.to_string(),
                    reason,
                },
                None => HistoryError::BadValue {
                    index: line,
                    op: String::new(),
                    reason,
                },
            }
        }
        other => other,
    }
}

/// Check a [`History`] (ops recorded with `ctx.record`, or read from a
/// run's logs) against the model called `model`: `counter` (`F::Add`,
/// `F::Read`), `set` (`F::Add`, `F::Read` → a list), `queue`
/// (`F::Enqueue`, `F::Dequeue`), `mutex` (`F::Acquire`, `F::Release`) or
/// `append` (`F::Read`, `F::Write`, `F::Append` on keys), as for EDN (see
/// the module docs). Failures and witnesses name the history's calls.
pub fn check_history(
    model: &str,
    history: &History,
    budget: &Budget,
    options: &Options,
) -> Result<Report<Call>, HistoryError> {
    let (calls, edn) = history_calls(history)?;
    let report = check_named(model, "history", &edn, budget, options)
        .map_err(|e| history_error(&calls, e))?;
    let by_index: HashMap<usize, &Call> = calls.iter().map(|c| (c.index, c)).collect();
    Ok(report.map(|e| by_index[&e.invoke_line].clone()))
}

/// [`check_history`] for sequential consistency (models `counter`, `set`,
/// `queue`, `mutex`; see [`crate::sequential`]).
pub fn check_history_sequential(
    model: &str,
    history: &History,
    budget: &Budget,
) -> Result<SeqVerdict<Call>, HistoryError> {
    let (calls, edn) = history_calls(history)?;
    let verdict = check_named_sequential(model, "history", &edn, budget)
        .map_err(|e| history_error(&calls, e))?;
    let by_index: HashMap<usize, &Call> = calls.iter().map(|c| (c.index, c)).collect();
    Ok(verdict.map(|e| by_index[&e.invoke_line].clone()))
}

/// The output of a call whose result matters: `Some(result)` if ok,
/// `None` if unknown; the call is left out (`Err(())`) if it failed.
fn outcome(call: &EdnCall) -> Result<Option<Value>, ()> {
    match call.outcome {
        OpKind::Ok => Ok(Some(call.result.to_value())),
        OpKind::Fail => Err(()),
        _ => Ok(None),
    }
}

fn unknown_f(call: &EdnCall, expected: &str) -> String {
    format!(":f :{} is not an op here (expected {expected})", call.f)
}

/// Removing reads is always safe; nothing else is removed.
fn only_reads<M: Model>(model: &M, removed: &[&Operation<M::Input, M::Output>]) -> bool {
    removed.iter().all(|o| model.read_only(&o.input, &o.output))
}

/// An operation on a counter.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CounterOp {
    Add(i64),
    Read,
}

/// A counter, initially `initial`: adds add, a read returns the sum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterModel {
    pub initial: i64,
}

impl Model for CounterModel {
    type State = i64;
    type Input = CounterOp;
    /// A read's value; `None` for unknown.
    type Output = Option<i64>;

    fn init(&self) -> i64 {
        self.initial
    }

    fn step(&self, s: &i64, input: &CounterOp, output: &Option<i64>) -> Option<i64> {
        match input {
            CounterOp::Add(n) => s.checked_add(*n),
            CounterOp::Read => output.is_none_or(|v| v == *s).then_some(*s),
        }
    }

    fn read_only(&self, input: &CounterOp, _: &Option<i64>) -> bool {
        *input == CounterOp::Read
    }

    fn removable(
        &self,
        removed: &[&Operation<CounterOp, Option<i64>>],
        _: &[&Operation<CounterOp, Option<i64>>],
    ) -> bool {
        only_reads(self, removed)
    }
}

impl EdnModel for CounterModel {
    const NAME: &'static str = "counter";

    fn input_output(&self, call: &EdnCall) -> Result<Option<(CounterOp, Option<i64>)>, String> {
        let int = |v: &crate::edn::Edn| match v {
            crate::edn::Edn::Int(i) => Ok(*i),
            other => Err(format!("not an integer: {other}")),
        };
        let input = match call.f.as_str() {
            "add" | "inc" => CounterOp::Add(match &call.value {
                crate::edn::Edn::Nil if call.f == "inc" => 1,
                v => int(v)?,
            }),
            "read" => CounterOp::Read,
            _ => return Err(unknown_f(call, ":add, :inc, :read")),
        };
        let Ok(out) = outcome(call) else {
            return Ok(None);
        };
        Ok(match (&input, out) {
            (CounterOp::Read, None) => None,
            (CounterOp::Read, Some(_)) => Some((input, Some(int(&call.result)?))),
            (CounterOp::Add(_), _) => Some((input, None)),
        })
    }
}

/// An operation on a set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SetOp {
    Add(Value),
    Read,
}

/// A grow-only set, initially empty: a read returns every element added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetModel;

impl Model for SetModel {
    type State = BTreeSet<Value>;
    type Input = SetOp;
    /// A read's elements; `None` for unknown.
    type Output = Option<BTreeSet<Value>>;

    fn init(&self) -> Self::State {
        BTreeSet::new()
    }

    fn step(&self, s: &Self::State, input: &SetOp, output: &Self::Output) -> Option<Self::State> {
        match input {
            SetOp::Add(x) => {
                let mut s = s.clone();
                s.insert(x.clone());
                Some(s)
            }
            SetOp::Read => output.as_ref().is_none_or(|v| v == s).then(|| s.clone()),
        }
    }

    fn read_only(&self, input: &SetOp, _: &Self::Output) -> bool {
        *input == SetOp::Read
    }

    /// Removing adds is safe when no kept read saw what they added: a read
    /// without `x` came before every add of `x`, and keeps its state.
    fn removable(
        &self,
        removed: &[&Operation<SetOp, Self::Output>],
        kept: &[&Operation<SetOp, Self::Output>],
    ) -> bool {
        removed.iter().all(|o| match &o.input {
            SetOp::Read => true,
            SetOp::Add(x) => kept
                .iter()
                .all(|r| r.output.as_ref().is_none_or(|seen| !seen.contains(x))),
        })
    }

    fn state_heap_bytes(&self, s: &Self::State) -> usize {
        s.iter()
            .map(|v| 2 * std::mem::size_of::<Value>() + value_heap_bytes(v))
            .sum()
    }
}

impl EdnModel for SetModel {
    const NAME: &'static str = "set";

    fn input_output(&self, call: &EdnCall) -> Result<Option<(SetOp, Self::Output)>, String> {
        let input = match call.f.as_str() {
            "add" => SetOp::Add(call.value.to_value()),
            "read" => SetOp::Read,
            _ => return Err(unknown_f(call, ":add, :read")),
        };
        let Ok(out) = outcome(call) else {
            return Ok(None);
        };
        Ok(match (&input, out) {
            (SetOp::Read, None) => None,
            (SetOp::Read, Some(_)) => {
                let items = match &call.result {
                    crate::edn::Edn::Set(v) => v,
                    other => other
                        .items()
                        .ok_or_else(|| format!("a read of a set that is no collection: {other}"))?,
                };
                Some((input, Some(items.iter().map(|e| e.to_value()).collect())))
            }
            (SetOp::Add(_), _) => Some((input, None)),
        })
    }
}

/// An operation on a queue.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum QueueOp {
    Enqueue(Value),
    Dequeue,
}

/// A FIFO queue, initially empty. A dequeue returns the head (`Nil`: the
/// queue was empty); one of unknown outcome, if it happened, removed the
/// head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueModel;

impl Model for QueueModel {
    type State = VecDeque<Value>;
    type Input = QueueOp;
    /// A dequeue's value; `None` for unknown.
    type Output = Option<Value>;

    fn init(&self) -> Self::State {
        VecDeque::new()
    }

    fn step(
        &self,
        s: &Self::State,
        input: &QueueOp,
        output: &Option<Value>,
    ) -> Option<Self::State> {
        let mut s = s.clone();
        match (input, output) {
            (QueueOp::Enqueue(x), _) => s.push_back(x.clone()),
            (QueueOp::Dequeue, Some(Value::Nil)) => {
                if !s.is_empty() {
                    return None;
                }
            }
            (QueueOp::Dequeue, Some(v)) => {
                if s.front() != Some(v) {
                    return None;
                }
                s.pop_front();
            }
            (QueueOp::Dequeue, None) => {
                s.pop_front();
            }
        }
        Some(s)
    }

    fn state_heap_bytes(&self, s: &Self::State) -> usize {
        s.capacity() * std::mem::size_of::<Value>() + s.iter().map(value_heap_bytes).sum::<usize>()
    }
}

impl EdnModel for QueueModel {
    const NAME: &'static str = "queue";

    fn input_output(&self, call: &EdnCall) -> Result<Option<(QueueOp, Option<Value>)>, String> {
        let input = match call.f.as_str() {
            "enqueue" => QueueOp::Enqueue(call.value.to_value()),
            "dequeue" => QueueOp::Dequeue,
            _ => return Err(unknown_f(call, ":enqueue, :dequeue")),
        };
        let Ok(out) = outcome(call) else {
            return Ok(None);
        };
        Ok(Some(match input {
            QueueOp::Enqueue(_) => (input, out.map(|_| Value::Nil)),
            QueueOp::Dequeue => (input, out),
        }))
    }
}

/// An operation on a mutex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MutexOp {
    Acquire,
    Release,
}

/// A mutex, initially free: an acquire needs it free, a release held (no
/// owners, as Knossos's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MutexModel;

impl Model for MutexModel {
    /// Held.
    type State = bool;
    type Input = MutexOp;
    type Output = ();

    fn init(&self) -> bool {
        false
    }

    fn step(&self, held: &bool, input: &MutexOp, _: &()) -> Option<bool> {
        match input {
            MutexOp::Acquire => (!held).then_some(true),
            MutexOp::Release => held.then_some(false),
        }
    }

    /// A mutex is a register of free / held, an acquire a cas from free to
    /// held, a release from held to free: the register's rule applies.
    fn removable(
        &self,
        removed: &[&Operation<MutexOp, ()>],
        kept: &[&Operation<MutexOp, ()>],
    ) -> bool {
        const FREE: Value = Value::Int(0);
        const HELD: Value = Value::Int(1);
        fn roles<'a>(ops: &[&'a Operation<MutexOp, ()>]) -> Vec<Role<'a, ()>> {
            ops.iter()
                .map(|o| {
                    let (observed, produced) = match o.input {
                        MutexOp::Acquire => (&FREE, &HELD),
                        MutexOp::Release => (&HELD, &FREE),
                    };
                    Role {
                        key: (),
                        observed: Some(observed),
                        produced: Some(produced),
                        call: o.call,
                        ret: o.ret,
                    }
                })
                .collect()
        }
        removable_by_values(&roles(removed), roles(kept).into_iter(), |()| &FREE)
    }
}

impl EdnModel for MutexModel {
    const NAME: &'static str = "mutex";

    fn input_output(&self, call: &EdnCall) -> Result<Option<(MutexOp, ())>, String> {
        let input = match call.f.as_str() {
            "acquire" => MutexOp::Acquire,
            "release" => MutexOp::Release,
            _ => return Err(unknown_f(call, ":acquire, :release")),
        };
        Ok(outcome(call).ok().map(|_| (input, ())))
    }
}

/// An operation on one key of a map of strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AppendOp {
    pub key: String,
    pub f: AppendF,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AppendF {
    Get,
    Put(String),
    Append(String),
}

/// Porcupine's key-value model: a map of strings, each `""` at first; a get
/// returns the value, a put sets it, an append appends to it. One part per
/// key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendModel;

impl Model for AppendModel {
    /// Keys whose value is not `""`.
    type State = BTreeMap<String, String>;
    type Input = AppendOp;
    /// A get's value; `None` for unknown.
    type Output = Option<String>;

    fn init(&self) -> Self::State {
        BTreeMap::new()
    }

    fn step(
        &self,
        s: &Self::State,
        input: &AppendOp,
        output: &Option<String>,
    ) -> Option<Self::State> {
        let current = s.get(&input.key).map_or("", String::as_str);
        let new = match &input.f {
            AppendF::Get => {
                return output
                    .as_ref()
                    .is_none_or(|v| v == current)
                    .then(|| s.clone())
            }
            AppendF::Put(v) => v.clone(),
            AppendF::Append(v) => format!("{current}{v}"),
        };
        let mut s = s.clone();
        if new.is_empty() {
            s.remove(&input.key);
        } else {
            s.insert(input.key.clone(), new);
        }
        Some(s)
    }

    fn partition(&self, ops: &[Operation<AppendOp, Option<String>>]) -> Vec<Partition> {
        crate::models::partition_by_key(ops, |op| &op.key)
    }

    fn read_only(&self, input: &AppendOp, _: &Option<String>) -> bool {
        input.f == AppendF::Get
    }

    /// Removing puts and appends is safe when no kept get can come after
    /// one of them without a put in between: the states they change are
    /// those up to the next put; a get there sees a value that contains
    /// the append's string (starts with the put's), so a kept get whose
    /// value does not, or that returned before the op was called, or that
    /// a surely completed put separates from it, never sat there.
    fn removable(
        &self,
        removed: &[&Operation<AppendOp, Option<String>>],
        kept: &[&Operation<AppendOp, Option<String>>],
    ) -> bool {
        let writes: Vec<&&Operation<AppendOp, Option<String>>> = removed
            .iter()
            .filter(|o| o.input.f != AppendF::Get)
            .collect();
        if writes.is_empty() {
            return true;
        }
        // Puts that surely happened, by key: (call, ret).
        let mut puts: BTreeMap<&str, Vec<(std::time::Duration, std::time::Duration)>> =
            BTreeMap::new();
        for o in removed.iter().chain(kept) {
            if let (AppendF::Put(_), Some(ret)) = (&o.input.f, o.ret) {
                puts.entry(o.input.key.as_str())
                    .or_default()
                    .push((o.call, ret));
            }
        }
        for w in writes {
            for g in kept.iter().filter(|g| g.input.key == w.input.key) {
                let (AppendF::Get, Some(value)) = (&g.input.f, &g.output) else {
                    continue;
                };
                let never_there = match &w.input.f {
                    AppendF::Append(s) => !value.contains(s.as_str()),
                    AppendF::Put(s) => !value.starts_with(s.as_str()),
                    AppendF::Get => true,
                };
                let before = g.ret.is_some_and(|r| r < w.call);
                let separated = w.ret.is_some_and(|w_ret| {
                    puts.get(w.input.key.as_str())
                        .is_some_and(|ps| ps.iter().any(|&(c, r)| c > w_ret && r < g.call))
                });
                if !(never_there || before || separated) {
                    return false;
                }
            }
        }
        true
    }

    fn state_heap_bytes(&self, s: &Self::State) -> usize {
        s.iter()
            .map(|(k, v)| 2 * 2 * std::mem::size_of::<String>() + k.capacity() + v.capacity())
            .sum()
    }
}

impl EdnModel for AppendModel {
    const NAME: &'static str = "append";

    fn input_output(&self, call: &EdnCall) -> Result<Option<(AppendOp, Option<String>)>, String> {
        let Some(key) = &call.key else {
            return Err("an op without :key".into());
        };
        let text = |v: &crate::edn::Edn| match v {
            crate::edn::Edn::Str(s) => Ok(s.clone()),
            crate::edn::Edn::Nil => Ok(String::new()),
            other => Err(format!("not a string: {other}")),
        };
        let f = match call.f.as_str() {
            "get" | "read" => AppendF::Get,
            "put" | "write" => AppendF::Put(text(&call.value)?),
            "append" => AppendF::Append(text(&call.value)?),
            _ => return Err(unknown_f(call, ":get, :put, :append")),
        };
        let Ok(out) = outcome(call) else {
            return Ok(None);
        };
        let input = AppendOp {
            key: key.key_text(),
            f,
        };
        Ok(match (&input.f, out) {
            (AppendF::Get, None) => None,
            (AppendF::Get, Some(_)) => Some((input, Some(text(&call.result)?))),
            (_, _) => Some((input, None)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linearizability::tests::brute_force;
    use proptest::prelude::*;
    use std::time::Duration;

    fn check(model: &str, text: &str) -> Report<EdnCall> {
        check_edn(
            model,
            "t.edn",
            text,
            &Budget::default(),
            &Options { witness: true },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Records from compact lines: `process type f [value]`.
    fn edn(lines: &[&str]) -> String {
        let mut out = String::from("[");
        for l in lines {
            let mut w = l.splitn(4, ' ');
            let (p, t, f) = (w.next().unwrap(), w.next().unwrap(), w.next().unwrap());
            let v = w.next().unwrap_or("nil");
            out.push_str(&format!(
                "{{:process {p}, :type :{t}, :f :{f}, :value {v}}}\n"
            ));
        }
        out.push(']');
        out
    }

    /// The witness replays on the model and respects real time.
    fn assert_witness<M: EdnModel>(model: &M, report: &Report<EdnCall>) {
        let w = report.witness.as_ref().expect("a witness");
        let mut state = model.init();
        for c in w {
            let (i, o) = model.input_output(c).unwrap().expect("an op");
            state = model
                .step(&state, &i, &o)
                .unwrap_or_else(|| panic!("the witness cannot apply {c}"));
        }
        for (i, a) in w.iter().enumerate() {
            for b in &w[i + 1..] {
                assert!(b.completed.is_none_or(|r| r >= a.invoked), "{a} before {b}");
            }
        }
    }

    #[test]
    fn counters_sets_queues_and_mutexes() {
        let good = edn(&[
            "0 invoke add 2",
            "1 invoke add 3",
            "0 ok add 2",
            "2 invoke read",
            "2 ok read 2",
            "1 ok add 3",
            "2 invoke read",
            "2 ok read 5",
            "3 invoke add 1",
            "3 info add 1",
        ]);
        let r = check("counter", &good);
        assert!(r.verdict.is_linearizable(), "{}", r.verdict);
        assert_witness(&CounterModel::default(), &r);
        let bad = good.replace(":value 5}", ":value 4}");
        let r = check("counter", &bad);
        assert!(r.verdict.is_not_linearizable(), "{}", r.verdict);

        let good = edn(&[
            "0 invoke add 1",
            "0 ok add 1",
            "1 invoke add 2",
            "2 invoke read",
            "2 ok read #{1}",
            "1 ok add 2",
            "2 invoke read",
            "2 ok read [2 1]",
        ]);
        let r = check("set", &good);
        assert!(r.verdict.is_linearizable(), "{}", r.verdict);
        assert_witness(&SetModel, &r);
        let r = check("set", &good.replace("[2 1]", "[2]"));
        let f = r
            .verdict
            .failure()
            .unwrap_or_else(|| panic!("{}", r.verdict));
        // 1 was lost; the add of 2 stays, as the read saw it.
        assert_eq!(f.ops.len(), 3, "{}", r.verdict);
        assert!(f.minimal);

        let good = edn(&[
            "0 invoke enqueue 1",
            "0 ok enqueue 1",
            "0 invoke enqueue 2",
            "0 ok enqueue 2",
            "1 invoke dequeue",
            "1 ok dequeue 1",
            "1 invoke dequeue",
            "1 ok dequeue 2",
            "1 invoke dequeue",
            "1 fail dequeue",
            "1 invoke dequeue",
            "1 ok dequeue nil",
        ]);
        let r = check("queue", &good);
        assert!(r.verdict.is_linearizable(), "{}", r.verdict);
        assert_witness(&QueueModel, &r);
        // Out of order, or twice.
        let r = check(
            "queue",
            &good
                .replace(":ok, :f :dequeue, :value 1}", ":ok, :f :dequeue, :value 3}")
                .replace(":ok, :f :dequeue, :value 2}", ":ok, :f :dequeue, :value 1}")
                .replace(":value 3}", ":value 2}"),
        );
        assert!(r.verdict.is_not_linearizable(), "{}", r.verdict);
        let r = check(
            "queue",
            &good.replace(":ok, :f :dequeue, :value 2}", ":ok, :f :dequeue, :value 1}"),
        );
        assert!(r.verdict.is_not_linearizable(), "{}", r.verdict);

        let good = edn(&[
            "0 invoke acquire",
            "0 ok acquire",
            "1 invoke acquire",
            "0 invoke release",
            "0 ok release",
            "1 ok acquire",
            "2 invoke release",
            "2 fail release",
        ]);
        let r = check("mutex", &good);
        assert!(r.verdict.is_linearizable(), "{}", r.verdict);
        assert_witness(&MutexModel, &r);
        let bad = edn(&[
            "0 invoke acquire",
            "0 ok acquire",
            "1 invoke acquire",
            "1 ok acquire",
        ]);
        assert!(check("mutex", &bad).verdict.is_not_linearizable());
    }

    #[test]
    fn porcupine_key_value_with_append() {
        let text = r#"{:process 0, :type :invoke, :f :put, :key "a", :value "x"}
{:process 0, :type :ok, :f :put, :key "a", :value "x"}
{:process 1, :type :invoke, :f :append, :key "a", :value "y"}
{:process 2, :type :invoke, :f :append, :key "a", :value "z"}
{:process 1, :type :ok, :f :append, :key "a", :value "y"}
{:process 2, :type :ok, :f :append, :key "a", :value "z"}
{:process 3, :type :invoke, :f :get, :key "a", :value nil}
{:process 3, :type :ok, :f :get, :key "a", :value "xzy"}
{:process 3, :type :invoke, :f :get, :key "b", :value nil}
{:process 3, :type :ok, :f :get, :key "b", :value ""}
"#;
        let r = check("append", text);
        assert!(r.verdict.is_linearizable(), "{}", r.verdict);
        assert_witness(&AppendModel, &r);
        assert_eq!(r.stats.partitions, 2);
        // A lost append: what the get saw stays, key "b" goes.
        let r = check("append", &text.replace("\"xzy\"", "\"xz\""));
        let f = r
            .verdict
            .failure()
            .unwrap_or_else(|| panic!("{}", r.verdict));
        assert_eq!(f.partition.as_deref(), Some("a"));
        let fs: Vec<&str> = f.ops.iter().map(|c| c.f.as_str()).collect();
        assert_eq!(fs, vec!["put", "append", "append", "get"], "{}", r.verdict);
        assert!(f.minimal);
        // A get that missed an append completed before it: the append, the
        // one it saw (separating nothing), the get.
        let lost = r#"{:process 0, :type :invoke, :f :append, :key "a", :value "x"}
{:process 0, :type :ok, :f :append, :key "a", :value "x"}
{:process 0, :type :invoke, :f :append, :key "a", :value "y"}
{:process 0, :type :ok, :f :append, :key "a", :value "y"}
{:process 3, :type :invoke, :f :get, :key "a", :value nil}
{:process 3, :type :ok, :f :get, :key "a", :value "y"}
"#;
        let r = check("append", lost);
        let f = r
            .verdict
            .failure()
            .unwrap_or_else(|| panic!("{}", r.verdict));
        assert_eq!(f.ops.len(), 3, "{}", r.verdict);
        assert!(f.minimal);
        // An op of another model is an error naming the line and the model.
        let e = check_edn(
            "append",
            "t.edn",
            "{:process 0, :type :invoke, :f :cas, :key \"a\", :value [1 2]}",
            &Budget::default(),
            &Options::default(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "t.edn:1: :f :cas is not an op here (expected :get, :put, :append) (model append)"
        );
        let e = check_edn(
            "stack",
            "t.edn",
            "",
            &Budget::default(),
            &Options::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no model called \"stack\""), "{e}");
    }

    /// Linearizable append histories on one key: each op at a point inside
    /// its interval; gets return the value then.
    fn append_ops() -> impl Strategy<Value = Vec<Operation<AppendOp, Option<String>>>> {
        let f = prop_oneof![
            2 => Just(AppendF::Get),
            1 => (0u8..3).prop_map(|v| AppendF::Put(["", "a", "b"][v as usize].to_string())),
            2 => (0u8..3).prop_map(|v| AppendF::Append(["a", "b", "ab"][v as usize].to_string())),
        ];
        proptest::collection::vec((f, 0u64..20, 0u64..6, 0u64..6, 0u32..5), 0..9).prop_map(
            |mut ops| {
                ops.sort_by_key(|o| o.1);
                let mut state = String::new();
                let mut out = Vec::new();
                for (f, point, left, right, k) in ops {
                    let open = k == 0 && f != AppendF::Get;
                    let effect = !open || k % 2 == 0;
                    let output = match &f {
                        AppendF::Get => Some(state.clone()),
                        AppendF::Put(v) => {
                            if effect {
                                state = v.clone();
                            }
                            None
                        }
                        AppendF::Append(v) => {
                            if effect {
                                state.push_str(v);
                            }
                            None
                        }
                    };
                    out.push(Operation {
                        input: AppendOp { key: "k".into(), f },
                        output,
                        call: Duration::from_millis((point * 2).saturating_sub(left)),
                        ret: (!open).then(|| Duration::from_millis(point * 2 + right)),
                    });
                }
                out
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn removal_allowed_by_the_append_model_keeps_linearizable_histories_linearizable(
            ops in append_ops(),
            mask in any::<u16>(),
        ) {
            let refs: Vec<_> = ops.iter().collect();
            prop_assert!(brute_force(&AppendModel, &refs), "the strategy is wrong: {:#?}", ops);
            let (removed, kept): (Vec<_>, Vec<_>) =
                refs.iter().copied().enumerate().partition(|(i, _)| mask & (1 << i) != 0);
            let removed: Vec<_> = removed.into_iter().map(|(_, o)| o).collect();
            let kept: Vec<_> = kept.into_iter().map(|(_, o)| o).collect();
            if AppendModel.removable(&removed, &kept) {
                prop_assert!(brute_force(&AppendModel, &kept), "removed {:#?}\nkept {:#?}", removed, kept);
            }
        }

        #[test]
        fn append_search_agrees_with_brute_force(ops in append_ops(), flip in any::<u16>()) {
            // Corrupt some gets, so that both verdicts come up.
            let mut ops = ops;
            for (i, o) in ops.iter_mut().enumerate() {
                if flip & (1 << i) != 0 && flip % 3 == 0 {
                    if let Some(v) = &mut o.output {
                        v.push('a');
                    }
                }
            }
            let refs: Vec<_> = ops.iter().collect();
            let expected = brute_force(&AppendModel, &refs);
            let v = crate::linearizability::check(&AppendModel, &ops, &Budget::unlimited());
            prop_assert_eq!(v.is_linearizable(), expected, "{:?}", v);
            if let Some(f) = v.failure() {
                let sub: Vec<_> = f.ops.iter().map(|&i| &ops[i]).collect();
                prop_assert!(!brute_force(&AppendModel, &sub));
            }
        }
    }
}
