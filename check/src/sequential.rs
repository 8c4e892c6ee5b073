//! Sequential consistency (Lamport): is there one order of all operations
//! that the model accepts and that keeps each process's operations in the
//! order the process issued them? Unlike linearizability, real time across
//! processes does not count: a read may return a value older than a write
//! that completed before it started, so long as every process sees one
//! history in its own order.
//!
//! Operations of unknown outcome (`info`, never completed) may take effect
//! at any point after the operations their process issued before them, or
//! never; they do not hold back their process's later operations (the
//! client could not know when, or whether, they took effect). Failed ones
//! and unknown reads are left out, as for linearizability.
//!
//! A history the linearizability checker finds linearizable (given half the
//! budget) is sequentially consistent, its linearization the witness. Else
//! the search is a depth-first walk over (how far each process has got,
//! which unknown operations took effect, model state), earliest invoked
//! first and a read the state accepts taken at once, with a memo of every
//! configuration reached, bounded by a [`Budget`] (steps, time, and the
//! accounted memory of the memo and the stack; past any bound the verdict is
//! `Unknown`, naming it). Sequential consistency is not compositional: a map
//! whose every key is sequentially consistent may not be, so models are
//! checked whole ([`Model::partition`] is not used) and only single-object
//! models ([`crate::RegisterModel`], [`crate::objects`]) make sense here.
//!
//! A counterexample is shrunk greedily (drop one operation at a time while
//! the rest still fails, as [`Model::removable`] allows) within
//! [`Budget::minimize_time`], and called minimal only when no single
//! operation can go.
//!
//! ```
//! use distzero_check::sequential::{check_register_sequential, SeqVerdict};
//! use distzero_check::Budget;
//! use distzero_check::history::{History, Value, F};
//! use std::time::Duration;
//!
//! let ms = Duration::from_millis;
//! let mut h = History::new();
//! h.invoke(1, F::Write, None, 1, ms(0)).unwrap();
//! h.ok(1, 1, ms(1)).unwrap();
//! h.invoke(2, F::Read, None, Value::Nil, ms(2)).unwrap();
//! h.ok(2, Value::Nil, ms(3)).unwrap(); // stale, but p2 may come first
//! let v = check_register_sequential(&h, &Budget::default()).unwrap();
//! assert!(v.is_consistent());
//! ```

use crate::history::Value;
use crate::history::{Call, History, HistoryError, OpKind, F};
use crate::linearizability::{check_with, Budget, Model, Operation, Options};
use crate::models::{RegisterModel, RegisterOp, RegisterOutput};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::time::Instant;

/// One operation and the process that issued it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessOp<I, O> {
    pub process: u64,
    /// `ret: None` for an unknown outcome; `call` orders a process's operations.
    pub op: Operation<I, O>,
}

/// The answer of a sequential-consistency check, operations named as `T`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeqVerdict<T> {
    /// A witness: the operations that took effect, in an order the model
    /// accepts that keeps every process's order.
    Consistent(Vec<T>),
    /// No order exists even for these operations (each process's in its
    /// order); `minimal`: no single one can be dropped with the rest still
    /// inconsistent.
    Inconsistent { ops: Vec<T>, minimal: bool },
    /// A bound ran out first; the reason names it.
    Unknown(String),
}

impl<T> SeqVerdict<T> {
    pub fn is_consistent(&self) -> bool {
        matches!(self, SeqVerdict::Consistent(_))
    }

    pub fn is_inconsistent(&self) -> bool {
        matches!(self, SeqVerdict::Inconsistent { .. })
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> SeqVerdict<U> {
        match self {
            SeqVerdict::Consistent(w) => SeqVerdict::Consistent(w.into_iter().map(f).collect()),
            SeqVerdict::Inconsistent { ops, minimal } => SeqVerdict::Inconsistent {
                ops: ops.into_iter().map(f).collect(),
                minimal,
            },
            SeqVerdict::Unknown(why) => SeqVerdict::Unknown(why),
        }
    }
}

impl<T: fmt::Display> fmt::Display for SeqVerdict<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeqVerdict::Consistent(w) => {
                write!(
                    f,
                    "sequentially consistent ({} operations took effect)",
                    w.len()
                )
            }
            SeqVerdict::Unknown(why) => write!(f, "unknown: {why}"),
            SeqVerdict::Inconsistent { ops, minimal } => {
                write!(
                    f,
                    "not sequentially consistent: {} have no order that keeps each process's order{}:",
                    if ops.len() == 1 {
                        "this operation alone".to_string()
                    } else {
                        format!("these {} operations", ops.len())
                    },
                    if *minimal { " (minimal)" } else { " (not minimized)" }
                )?;
                for o in ops {
                    write!(f, "\n  {o}")?;
                }
                Ok(())
            }
        }
    }
}

/// Check `ops` for sequential consistency against `model`; operations are
/// named by their index in `ops`.
pub fn check_sequential<M: Model>(
    model: &M,
    ops: &[ProcessOp<M::Input, M::Output>],
    budget: &Budget,
) -> SeqVerdict<usize>
where
    M::Input: Clone,
    M::Output: Clone,
{
    let start = Instant::now();
    let all: Vec<usize> = (0..ops.len()).collect();
    let deadline = budget.max_time.map(|d| start + d);
    // A linearizable history is sequentially consistent, and its
    // linearization is a witness: the linearizability checker, with its
    // pruning, decides correct histories fast. Half the budget for it.
    let plain: Vec<Operation<M::Input, M::Output>> = ops.iter().map(|o| o.op.clone()).collect();
    let first = Budget {
        max_steps: budget.max_steps.map(|s| s / 2),
        max_time: budget.max_time.map(|t| t / 2),
        max_memory: budget.max_memory,
        minimize_time: std::time::Duration::ZERO,
    };
    let lin = check_with(model, &plain, &first, &Options { witness: true });
    if let (true, Some(order)) = (lin.verdict.is_linearizable(), lin.witness) {
        return SeqVerdict::Consistent(order);
    }
    let mut steps = lin.stats.steps;
    match search(model, ops, &all, budget, deadline, &mut steps) {
        Outcome::Found(order) => SeqVerdict::Consistent(order),
        Outcome::Stopped(why) => SeqVerdict::Unknown(why),
        Outcome::None => {
            let (kept, minimal) = shrink(model, ops, all, budget);
            SeqVerdict::Inconsistent { ops: kept, minimal }
        }
    }
}

/// Greedy shrinking: drop one operation at a time while the rest still has
/// no order (and the model allows the removal), within `minimize_time`.
fn shrink<M: Model>(
    model: &M,
    ops: &[ProcessOp<M::Input, M::Output>],
    mut kept: Vec<usize>,
    budget: &Budget,
) -> (Vec<usize>, bool) {
    let deadline = Instant::now() + budget.minimize_time;
    let sub = Budget {
        max_time: None,
        ..budget.clone()
    };
    let mut i = kept.len();
    while i > 0 {
        i -= 1;
        if Instant::now() >= deadline {
            return (kept, false);
        }
        let mut cand = kept.clone();
        let gone = cand.remove(i);
        let removed = [&ops[gone].op];
        let rest: Vec<&Operation<M::Input, M::Output>> = cand.iter().map(|&j| &ops[j].op).collect();
        if !model.removable(&removed, &rest) {
            continue;
        }
        let mut steps = 0;
        match search(model, ops, &cand, &sub, Some(deadline), &mut steps) {
            Outcome::None => kept = cand,
            Outcome::Found(_) => {}
            Outcome::Stopped(_) => return (kept, false),
        }
    }
    (kept, true)
}

/// A search frame: (state, moves to try, the next of them, the move that
/// led here).
type Frame<S> = (S, Vec<usize>, usize, Option<usize>);

enum Outcome {
    Found(Vec<usize>),
    None,
    Stopped(String),
}

/// Bytes a memo entry costs, roughly (a 16-byte key in a hash set at most
/// 7/8 full, doubled while it grows).
const MEMO_ENTRY_BYTES: usize = 40;

/// Depth-first search for an order of the operations `subset` of `ops`.
fn search<M: Model>(
    model: &M,
    ops: &[ProcessOp<M::Input, M::Output>],
    subset: &[usize],
    budget: &Budget,
    deadline: Option<Instant>,
    steps: &mut u64,
) -> Outcome {
    // Per process: its completed operations in call order; and the unknown
    // ones, each with how many completed ones of its process precede it.
    let mut by_process: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for &i in subset {
        by_process.entry(ops[i].process).or_default().push(i);
    }
    let mut lanes: Vec<Vec<usize>> = Vec::new();
    let mut open: Vec<(usize, usize, usize)> = Vec::new(); // (op, lane, position)
    for (_, mut list) in by_process {
        list.sort_by_key(|&i| (ops[i].op.call, i));
        let lane = lanes.len();
        let mut done = Vec::new();
        for i in list {
            if ops[i].op.ret.is_some() {
                done.push(i);
            } else {
                open.push((i, lane, done.len()));
            }
        }
        lanes.push(done);
    }
    let mut cursor = vec![0usize; lanes.len()];
    let mut applied = vec![false; open.len()];
    let mut memo: HashSet<u128> = HashSet::new();
    let n_lanes = lanes.len();
    // The operation a move (a lane, or an open operation) would take now.
    let op_of = |m: usize, cursor: &[usize], applied: &[bool]| -> Option<usize> {
        if m < n_lanes {
            lanes[m].get(cursor[m]).copied()
        } else {
            let (i, lane, pos) = open[m - n_lanes];
            (!applied[m - n_lanes] && cursor[lane] >= pos).then_some(i)
        }
    };
    // The moves to try from a state: a read the state accepts alone
    // (taking it now loses nothing: it changes nothing, and its process
    // only gets on sooner); else every move, earliest invoked first (a
    // correct history's real-time order is then found without backtracking).
    let moves = |state: &M::State, cursor: &[usize], applied: &[bool]| -> Vec<usize> {
        let mut ms: Vec<(std::time::Duration, usize, usize)> = Vec::new();
        for m in 0..n_lanes + open.len() {
            let Some(i) = op_of(m, cursor, applied) else {
                continue;
            };
            let op = &ops[i].op;
            if m < n_lanes
                && model.read_only(&op.input, &op.output)
                && model.step(state, &op.input, &op.output).is_some()
            {
                return vec![m];
            }
            ms.push((op.call, i, m));
        }
        ms.sort_unstable();
        ms.into_iter().map(|(_, _, m)| m).collect()
    };
    let goal = |cursor: &[usize]| cursor.iter().zip(&lanes).all(|(c, l)| *c == l.len());
    if goal(&cursor) {
        return Outcome::Found(Vec::new());
    }
    let init = model.init();
    let first = moves(&init, &cursor, &applied);
    let mut stack: Vec<Frame<M::State>> = vec![(init, first, 0, None)];
    let state_bytes = std::mem::size_of::<M::State>() + 64;
    loop {
        let Some(top) = stack.last_mut() else {
            return Outcome::None;
        };
        if top.2 >= top.1.len() {
            // Every move tried: backtrack.
            if let Some((_, _, _, Some(m))) = stack.pop() {
                if m < n_lanes {
                    cursor[m] -= 1;
                } else {
                    applied[m - n_lanes] = false;
                }
            }
            continue;
        }
        let m = top.1[top.2];
        top.2 += 1;
        *steps += 1;
        if budget.max_steps.is_some_and(|b| *steps > b) {
            return Outcome::Stopped(format!(
                "the budget of {} steps (Budget::max_steps) ran out",
                *steps - 1
            ));
        }
        if steps.is_multiple_of(1024) && deadline.is_some_and(|d| Instant::now() >= d) {
            return Outcome::Stopped(format!(
                "the time budget (Budget::max_time) ran out after {} steps, {} configurations memoized",
                *steps,
                memo.len()
            ));
        }
        let Some(i) = op_of(m, &cursor, &applied) else {
            continue;
        };
        let Some(next) = model.step(&top.0, &ops[i].op.input, &ops[i].op.output) else {
            continue;
        };
        if m < n_lanes {
            cursor[m] += 1;
        } else {
            applied[m - n_lanes] = true;
        }
        let key = fingerprint(&cursor, &applied, &next);
        if !memo.insert(key) {
            if m < n_lanes {
                cursor[m] -= 1;
            } else {
                applied[m - n_lanes] = false;
            }
            continue;
        }
        let bytes = memo.len() * MEMO_ENTRY_BYTES
            + stack.len()
                * (state_bytes + 8 * (n_lanes + open.len()) + model.state_heap_bytes(&next));
        if budget.max_memory.is_some_and(|b| bytes > b) {
            return Outcome::Stopped(format!(
                "the memory budget ({} bytes, Budget::max_memory) ran out at {} configurations memoized, {} steps",
                budget.max_memory.unwrap_or(0),
                memo.len(),
                *steps
            ));
        }
        if goal(&cursor) {
            stack.push((next, Vec::new(), 0, Some(m)));
            let order = stack
                .iter()
                .filter_map(|f| f.3)
                .scan(vec![0usize; n_lanes], |seen, m| {
                    Some(if m < n_lanes {
                        seen[m] += 1;
                        lanes[m][seen[m] - 1]
                    } else {
                        open[m - n_lanes].0
                    })
                })
                .collect();
            return Outcome::Found(order);
        }
        let next_moves = moves(&next, &cursor, &applied);
        stack.push((next, next_moves, 0, Some(m)));
    }
}

fn fingerprint<S: Hash>(cursor: &[usize], applied: &[bool], state: &S) -> u128 {
    let half = |seed: u8| {
        let mut h = DefaultHasher::new();
        seed.hash(&mut h);
        cursor.hash(&mut h);
        applied.hash(&mut h);
        state.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// Sequential consistency of a single register's history (ops without
/// keys, as [`crate::check_register`] takes), initially `Nil`.
pub fn check_register_sequential(
    history: &History,
    budget: &Budget,
) -> Result<SeqVerdict<Call>, HistoryError> {
    check_register_sequential_with(history, &RegisterModel::default(), budget)
}

/// [`check_register_sequential`] against `model` (its initial value).
pub fn check_register_sequential_with(
    history: &History,
    model: &RegisterModel,
    budget: &Budget,
) -> Result<SeqVerdict<Call>, HistoryError> {
    let mut calls = Vec::new();
    let mut ops = Vec::new();
    for call in history.calls()? {
        if let Some(k) = &call.key {
            return Err(HistoryError::BadValue {
                index: call.index,
                op: call.to_string(),
                reason: format!(
                    "an op on key {k:?}: sequential consistency is checked for one register (not compositional over keys)"
                ),
            });
        }
        let output: RegisterOutput = match call.outcome {
            OpKind::Fail => continue,
            OpKind::Info if call.f == F::Read => continue,
            OpKind::Ok => Some(call.result.clone()),
            _ => None,
        };
        ops.push(ProcessOp {
            process: call.process,
            op: Operation {
                input: crate::register_op(&call)?,
                output,
                call: call.invoked,
                ret: call.completed,
            },
        });
        calls.push(call);
    }
    // A read of a value nothing writes (nor the initial value) has no
    // order at all: it alone is the counterexample, found at once.
    let mut written: HashSet<&Value> = HashSet::from([&model.initial]);
    for o in &ops {
        match &o.op.input {
            RegisterOp::Write(v) | RegisterOp::Cas(_, v) => {
                written.insert(v);
            }
            RegisterOp::Read => {}
        }
    }
    for (k, o) in ops.iter().enumerate() {
        if let (RegisterOp::Read, Some(v)) = (&o.op.input, &o.op.output) {
            if !written.contains(v) {
                return Ok(SeqVerdict::Inconsistent {
                    ops: vec![calls[k].clone()],
                    minimal: true,
                });
            }
        }
    }
    Ok(check_sequential(model, &ops, budget).map(|i| calls[i].clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Value;
    use crate::models::RegisterOp;
    use crate::objects::check_edn_sequential;
    use proptest::prelude::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn stale_reads_are_sequentially_consistent_but_reordered_ones_are_not() {
        // p1 writes 1 then 2; p2 reads 2 then 1, after both writes ended.
        let mut h = History::new();
        h.invoke(1, F::Write, None, 1, ms(0)).unwrap();
        h.ok(1, 1, ms(1)).unwrap();
        h.invoke(1, F::Write, None, 2, ms(2)).unwrap();
        h.ok(1, 2, ms(3)).unwrap();
        h.invoke(2, F::Read, None, Value::Nil, ms(4)).unwrap();
        h.ok(2, 1, ms(5)).unwrap();
        let v = check_register_sequential(&h, &Budget::default()).unwrap();
        // Reading 1 after 2 was written is stale, not inconsistent...
        assert!(v.is_consistent(), "{v}");
        assert!(crate::check_register(&h, &Budget::default())
            .unwrap()
            .is_not_linearizable());
        // ...but reading 2 and then 1 in one process is.
        let mut bad = h.clone();
        bad.invoke(2, F::Read, None, Value::Nil, ms(6)).unwrap();
        bad.ok(2, 2, ms(7)).unwrap();
        let mut swapped = History::new();
        for (i, op) in bad.ops().iter().enumerate() {
            let mut op = op.clone();
            if op.kind == OpKind::Ok && op.f == F::Read {
                op.value = if i == 5 { 2.into() } else { 1.into() };
            }
            swapped.push(op);
        }
        let v = check_register_sequential(&swapped, &Budget::default()).unwrap();
        match &v {
            SeqVerdict::Inconsistent { ops, minimal } => {
                assert_eq!(ops.len(), 4, "{v}");
                assert!(*minimal);
            }
            other => panic!("{other}"),
        }
        assert!(
            v.to_string().starts_with("not sequentially consistent"),
            "{v}"
        );
    }

    #[test]
    fn unknown_outcomes_may_take_effect_later_or_never() {
        let mut h = History::new();
        h.invoke(1, F::Write, None, 1, ms(0)).unwrap();
        h.info(1, ms(1)).unwrap();
        h.invoke(1, F::Write, None, 2, ms(2)).unwrap();
        h.ok(1, 2, ms(3)).unwrap();
        h.invoke(2, F::Read, None, Value::Nil, ms(4)).unwrap();
        h.ok(2, 2, ms(5)).unwrap();
        h.invoke(2, F::Read, None, Value::Nil, ms(6)).unwrap();
        h.ok(2, 1, ms(7)).unwrap();
        // The unknown write of 1 took effect after the write of 2.
        let v = check_register_sequential(&h, &Budget::default()).unwrap();
        match &v {
            SeqVerdict::Consistent(order) => {
                let fs: Vec<(F, Value)> = order
                    .iter()
                    .map(|c| {
                        (
                            c.f,
                            if c.f == F::Read {
                                c.result.clone()
                            } else {
                                c.value.clone()
                            },
                        )
                    })
                    .collect();
                assert_eq!(
                    fs,
                    [
                        (F::Write, 2.into()),
                        (F::Read, 2.into()),
                        (F::Write, 1.into()),
                        (F::Read, 1.into())
                    ]
                );
            }
            other => panic!("{other}"),
        }
        // Without it, nothing wrote 1.
        let mut no_write = History::new();
        for op in h.ops().iter().skip(2) {
            no_write.push(op.clone());
        }
        assert!(check_register_sequential(&no_write, &Budget::default())
            .unwrap()
            .is_inconsistent());
    }

    fn edn(lines: &[&str]) -> String {
        lines
            .iter()
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let value = w.get(3).copied().unwrap_or("nil");
                format!(
                    "{{:process {}, :type :{}, :f :{}, :value {value}}}\n",
                    w[0], w[1], w[2]
                )
            })
            .collect()
    }

    #[test]
    fn queues_counters_and_sets() {
        // p3's enqueue of 2 ended before p1's of 1 began... or not: real
        // time does not count, only each process's order.
        let q = edn(&[
            "1 invoke enqueue 1",
            "1 ok enqueue 1",
            "3 invoke enqueue 2",
            "3 ok enqueue 2",
            "2 invoke dequeue",
            "2 ok dequeue 2",
        ]);
        let v = check_edn_sequential("queue", "q", &q, &Budget::default()).unwrap();
        assert!(v.is_consistent(), "{v}");
        // One process enqueues 1 then 2: nobody may dequeue 2 first.
        let q = q.replace(":process 3", ":process 1");
        let v = check_edn_sequential("queue", "q", &q, &Budget::default()).unwrap();
        assert!(v.is_inconsistent(), "{v}");

        let c = edn(&[
            "1 invoke add 1",
            "1 ok add 1",
            "2 invoke read",
            "2 ok read 1",
        ]);
        assert!(check_edn_sequential("counter", "c", &c, &Budget::default())
            .unwrap()
            .is_consistent());
        let c = c.replace(":f :read, :value 1", ":f :read, :value 2");
        assert!(check_edn_sequential("counter", "c", &c, &Budget::default())
            .unwrap()
            .is_inconsistent());

        let s = edn(&[
            "1 invoke add 1",
            "1 ok add 1",
            "2 invoke read",
            "2 ok read [3]",
        ]);
        assert!(check_edn_sequential("set", "s", &s, &Budget::default())
            .unwrap()
            .is_inconsistent());
        let e = check_edn_sequential("append", "s", &s, &Budget::default()).unwrap_err();
        assert!(
            e.to_string().contains("not compositional") || e.to_string().contains("no model"),
            "{e}"
        );
    }

    #[test]
    fn a_read_of_a_value_never_written_is_refuted_alone() {
        let mut h = History::new();
        for p in 0..8u64 {
            for k in 0..20u64 {
                let t = ms(100 * k + p);
                h.invoke(p, F::Write, None, (p * 100 + k) as i64, t)
                    .unwrap();
                h.ok(p, (p * 100 + k) as i64, t + ms(1)).unwrap();
            }
        }
        h.invoke(9, F::Read, None, Value::Nil, ms(5000)).unwrap();
        h.ok(9, 999, ms(5001)).unwrap();
        match check_register_sequential(&h, &Budget::steps(10)).unwrap() {
            SeqVerdict::Inconsistent { ops, minimal } => {
                assert_eq!(ops.len(), 1);
                assert_eq!(ops[0].result, Value::Int(999));
                assert!(minimal);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn bounds_give_unknown() {
        let mut h = History::new();
        for p in 0..6u64 {
            h.invoke(p, F::Write, None, p as i64, ms(0)).unwrap();
        }
        for p in 0..6u64 {
            h.ok(p, p as i64, ms(1)).unwrap();
        }
        // p9 reads 1, 0, 1: each value is written once, so no order has
        // 1 back after 0 (only a search over the writers' orders shows it).
        for (k, v) in [1, 0, 1].into_iter().enumerate() {
            let t = ms(2 + 2 * k as u64);
            h.invoke(9, F::Read, None, Value::Nil, t).unwrap();
            h.ok(9, v, t + ms(1)).unwrap();
        }
        let v = check_register_sequential(&h, &Budget::steps(10)).unwrap();
        assert!(
            matches!(&v, SeqVerdict::Unknown(w) if w.contains("steps")),
            "{v}"
        );
        let v = check_register_sequential(&h, &Budget::default().with_memory(200)).unwrap();
        assert!(
            matches!(&v, SeqVerdict::Unknown(w) if w.contains("memory")),
            "{v}"
        );
        assert!(check_register_sequential(&h, &Budget::default())
            .unwrap()
            .is_inconsistent());
        let mut keyed = History::new();
        keyed
            .invoke(1, F::Read, Some("k"), Value::Nil, ms(0))
            .unwrap();
        assert!(check_register_sequential(&keyed, &Budget::default()).is_err());
    }

    /// Every interleaving of the processes' ops that keeps each one's order.
    fn brute_force(lanes: &[Vec<(RegisterOp, RegisterOutput)>]) -> bool {
        fn go(
            lanes: &[Vec<(RegisterOp, RegisterOutput)>],
            at: &mut Vec<usize>,
            state: &Value,
        ) -> bool {
            if at.iter().zip(lanes).all(|(a, l)| *a == l.len()) {
                return true;
            }
            for p in 0..lanes.len() {
                if let Some((i, o)) = lanes[p].get(at[p]) {
                    if let Some(s) = RegisterModel::default().step(state, i, o) {
                        at[p] += 1;
                        let ok = go(lanes, at, &s);
                        at[p] -= 1;
                        if ok {
                            return true;
                        }
                    }
                }
            }
            false
        }
        go(lanes, &mut vec![0; lanes.len()], &Value::Nil)
    }

    proptest! {
        #[test]
        fn the_search_agrees_with_brute_force(
            lanes in prop::collection::vec(
                prop::collection::vec((0u8..2, 0i64..3), 0..4), 1..4)
        ) {
            let lanes: Vec<Vec<(RegisterOp, RegisterOutput)>> = lanes
                .into_iter()
                .map(|l| {
                    l.into_iter()
                        .map(|(f, v)| {
                            let v = if v == 0 { Value::Nil } else { Value::Int(v) };
                            if f == 0 {
                                (RegisterOp::Write(v.clone()), Some(v))
                            } else {
                                (RegisterOp::Read, Some(v))
                            }
                        })
                        .collect()
                })
                .collect();
            let mut ops = Vec::new();
            for (p, l) in lanes.iter().enumerate() {
                for (k, (i, o)) in l.iter().enumerate() {
                    ops.push(ProcessOp {
                        process: p as u64,
                        op: Operation { input: i.clone(), output: o.clone(), call: ms(k as u64), ret: Some(ms(k as u64)) },
                    });
                }
            }
            let v = check_sequential(&RegisterModel::default(), &ops, &Budget::default());
            prop_assert_eq!(v.is_consistent(), brute_force(&lanes), "{:?}", v);
            if let SeqVerdict::Consistent(order) = v {
                let mut s = Value::Nil;
                for i in order {
                    s = RegisterModel::default().step(&s, &ops[i].op.input, &ops[i].op.output).unwrap();
                }
            }
        }
    }
}
