//! Checkers for operation histories ([`crate::history`]).
//!
//! ```
//! use distzero_check::{check_register, Budget};
//! use distzero_check::history::{History, Value, F};
//! use std::time::Duration;
//!
//! let ms = Duration::from_millis;
//! let mut h = History::new();
//! h.invoke(1, F::Write, None, 1, ms(0)).unwrap();
//! h.ok(1, 1, ms(1)).unwrap();
//! h.invoke(2, F::Read, None, Value::Nil, ms(2)).unwrap();
//! h.ok(2, Value::Nil, ms(3)).unwrap(); // reads nil after the write completed
//! let verdict = check_register(&h, &Budget::default()).unwrap();
//! assert!(verdict.is_not_linearizable());
//! println!("{verdict}");
//! ```
//!
//! [`check_register`] and [`check_kv`] take a [`History`]; [`check`] takes
//! any [`Model`] and [`Operation`]s. Which calls the history checkers use:
//! `ok` ones; `info` (and never completed) writes and cas, which may take
//! effect any time after their invocation or never; not `fail` ones (they did
//! not happen) nor `info` reads (they constrain nothing).
//!
//! The `_with` forms ([`check_register_with`], [`check_kv_with`],
//! [`check_with`]) take the model (initial values: [`RegisterModel`],
//! [`KvModel`]) and [`Options`], and return a [`Report`]: the verdict, a
//! witness linearization when asked for, and what the check cost
//! ([`Stats`]):
//!
//! ```
//! use distzero_check::{check_kv_with, Budget, KvModel, Options};
//! use distzero_check::history::{History, Value, F};
//! use std::time::Duration;
//!
//! let ms = Duration::from_millis;
//! let mut h = History::new();
//! h.invoke(1, F::Cas, Some("x"), Value::cas(0, 1), ms(0)).unwrap();
//! h.ok(1, Value::cas(0, 1), ms(1)).unwrap();
//! let model = KvModel::with_initial(0); // every key starts at 0
//! let budget = Budget::time(Duration::from_secs(5)).with_memory(256 << 20);
//! let report = check_kv_with(&h, &model, &budget, &Options { witness: true }).unwrap();
//! assert!(report.verdict.is_linearizable());
//! assert_eq!(report.witness.unwrap().len(), 1);
//! ```
//!
//! Histories from Jepsen, Knossos and Porcupine: [`edn`]. Other objects
//! (counter, set, queue, mutex, key-value with append): [`objects`]. How the
//! search goes, what bounds it and what it reports: [`linearizability`].

pub mod edn;
pub mod elle;
pub mod generate;
pub mod history;
pub mod linearizability;
pub mod models;
pub mod objects;
pub mod sequential;

pub use linearizability::{
    check, check_with, Budget, Failure, Model, Operation, Options, Partition, Report, Stats,
    Verdict, DEFAULT_MAX_MEMORY,
};
pub use models::{KvModel, KvOp, RegisterModel, RegisterOp, RegisterOutput};

use crate::history::{Call, History, HistoryError, OpKind, Value, F};

/// The register operation of a call.
pub fn register_op(call: &Call) -> Result<RegisterOp, HistoryError> {
    Ok(match call.f {
        F::Read => RegisterOp::Read,
        F::Write => RegisterOp::Write(call.value.clone()),
        F::Cas => match &call.value {
            Value::List(pair) if pair.len() == 2 => {
                RegisterOp::Cas(pair[0].clone(), pair[1].clone())
            }
            other => {
                return Err(HistoryError::BadValue {
                    index: call.index,
                    op: call.to_string(),
                    reason: format!("a cas takes [expected, new], not {other}"),
                })
            }
        },
        F::Txn => {
            return Err(HistoryError::BadValue {
                index: call.index,
                op: call.to_string(),
                reason: "a transaction is no register op (check it with distzero_check::elle)"
                    .into(),
            })
        }
        F::Append | F::Add | F::Enqueue | F::Dequeue | F::Acquire | F::Release => {
            return Err(HistoryError::BadValue {
                index: call.index,
                op: call.to_string(),
                reason: format!(
                    "{} is no register op (check it with distzero_check::objects::check_history)",
                    call.f
                ),
            })
        }
    })
}

/// The calls a checker uses, and their operations.
type Prepared<I> = (Vec<Call>, Vec<Operation<I, RegisterOutput>>);

/// The calls a checker uses (see the module docs), with their operations.
fn operations<I>(
    history: &History,
    mut input: impl FnMut(&Call) -> Result<I, HistoryError>,
) -> Result<Prepared<I>, HistoryError> {
    let all = history.calls()?;
    let mut calls = Vec::with_capacity(all.len());
    let mut ops = Vec::with_capacity(all.len());
    for call in all {
        let output = match call.outcome {
            OpKind::Fail => continue,
            OpKind::Info if call.f == F::Read => continue,
            OpKind::Ok => Some(call.result.clone()),
            _ => None,
        };
        ops.push(Operation {
            input: input(&call)?,
            output,
            call: call.invoked,
            ret: call.completed,
        });
        calls.push(call);
    }
    Ok((calls, ops))
}

/// Check a history of one register (ops without key) against
/// [`RegisterModel`] with initial value `Nil`.
pub fn check_register(history: &History, budget: &Budget) -> Result<Verdict<Call>, HistoryError> {
    Ok(check_register_with(
        history,
        &RegisterModel::default(),
        budget,
        &Options::default(),
    )?
    .verdict)
}

/// [`check_register`] against `model` (its initial value), with options
/// (a witness order) and what the check cost.
pub fn check_register_with(
    history: &History,
    model: &RegisterModel,
    budget: &Budget,
    options: &Options,
) -> Result<Report<Call>, HistoryError> {
    let (calls, ops) = operations(history, |call| {
        if call.key.is_some() {
            return Err(HistoryError::BadValue {
                index: call.index,
                op: call.to_string(),
                reason: "an op with a key in a register history; check it with check_kv".into(),
            });
        }
        register_op(call)
    })?;
    Ok(check_with(model, &ops, budget, options).map(|i| calls[i].clone()))
}

/// Check a history of a key-value map (every op has a key; every key starts
/// `Nil`) against [`KvModel`], its keys interleaved (see
/// [`linearizability`]'s docs: a violation on a cheap key is found however
/// hard the others are).
pub fn check_kv(history: &History, budget: &Budget) -> Result<Verdict<Call>, HistoryError> {
    Ok(check_kv_with(history, &KvModel::default(), budget, &Options::default())?.verdict)
}

/// [`check_kv`] against `model` (its initial values), with options (a
/// witness order) and what the check cost.
pub fn check_kv_with(
    history: &History,
    model: &KvModel,
    budget: &Budget,
    options: &Options,
) -> Result<Report<Call>, HistoryError> {
    let (calls, ops) = operations(history, |call| {
        let Some(key) = &call.key else {
            return Err(HistoryError::BadValue {
                index: call.index,
                op: call.to_string(),
                reason: "an op without a key in a key-value history".into(),
            });
        };
        Ok(KvOp {
            key: key.clone(),
            op: register_op(call)?,
        })
    })?;
    Ok(check_with(model, &ops, budget, options).map(|i| calls[i].clone()))
}

#[cfg(test)]
mod tests {
    use super::generate::{self, generate, sequential, Workload};
    use super::*;
    use crate::history::Op;
    use proptest::prelude::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Build a history from (process, f, key, value, outcome, result, invoke ms, complete ms).
    #[allow(clippy::type_complexity)]
    fn hist(calls: &[(u64, F, Option<&str>, Value, OpKind, Value, u64, Option<u64>)]) -> History {
        let mut ops: Vec<(Duration, usize, Op)> = Vec::new();
        for (i, (p, f, k, v, outcome, result, inv, comp)) in calls.iter().cloned().enumerate() {
            let invoke = Op::invoke(p, f, k, v, ms(inv));
            if let Some(c) = comp {
                ops.push((ms(c), 2 * i + 1, invoke.completion(outcome, result, ms(c))));
            }
            ops.push((ms(inv), 2 * i, invoke));
        }
        ops.sort_by_key(|(t, i, _)| (*t, *i));
        History::from_ops(ops.into_iter().map(|(_, _, op)| op).collect())
    }

    fn w(
        p: u64,
        v: i64,
        inv: u64,
        comp: u64,
    ) -> (
        u64,
        F,
        Option<&'static str>,
        Value,
        OpKind,
        Value,
        u64,
        Option<u64>,
    ) {
        (
            p,
            F::Write,
            None,
            Value::Int(v),
            OpKind::Ok,
            Value::Int(v),
            inv,
            Some(comp),
        )
    }

    fn r(
        p: u64,
        v: Option<i64>,
        inv: u64,
        comp: u64,
    ) -> (
        u64,
        F,
        Option<&'static str>,
        Value,
        OpKind,
        Value,
        u64,
        Option<u64>,
    ) {
        (
            p,
            F::Read,
            None,
            Value::Nil,
            OpKind::Ok,
            v.into(),
            inv,
            Some(comp),
        )
    }

    fn values_of(f: &Failure<Call>) -> Vec<(u64, F, Value, Value)> {
        f.ops
            .iter()
            .map(|c| (c.process, c.f, c.value.clone(), c.result.clone()))
            .collect()
    }

    #[test]
    fn stale_read_after_a_completed_write_is_rejected_with_the_writes_it_needs() {
        let h = hist(&[w(1, 1, 0, 10), w(2, 2, 20, 30), r(3, Some(1), 40, 50)]);
        let v = check_register(&h, &Budget::default()).unwrap();
        let f = v
            .failure()
            .unwrap_or_else(|| panic!("accepted a stale read: {v}"));
        assert!(f.minimal);
        assert_eq!(f.partition, None);
        assert_eq!(f.partition_size, 3);
        // Not just "a read of 1" (1 was written): the write of 1, the later write, the read.
        assert_eq!(
            values_of(f),
            vec![
                (1, F::Write, Value::Int(1), Value::Int(1)),
                (2, F::Write, Value::Int(2), Value::Int(2)),
                (3, F::Read, Value::Nil, Value::Int(1)),
            ]
        );
        let text = v.to_string();
        assert!(
            text.contains("these 3 of its 3 operations cannot be ordered (minimal)"),
            "{text}"
        );
        assert!(
            text.contains("p3   read  nil -> ok 1  [0.040000s .. 0.050000s]"),
            "{text}"
        );
        // The same read while the second write is in flight is fine.
        let h = hist(&[w(1, 1, 0, 10), w(2, 2, 20, 45), r(3, Some(1), 40, 50)]);
        assert!(check_register(&h, &Budget::default())
            .unwrap()
            .is_linearizable());
    }

    #[test]
    fn concurrent_writes_observed_in_both_orders_are_rejected() {
        let h = hist(&[
            w(1, 1, 0, 10),
            w(2, 2, 0, 10),
            r(3, Some(1), 11, 12),
            r(3, Some(2), 13, 14),
            r(4, Some(1), 15, 16),
            r(5, Some(2), 17, 18),
        ]);
        let v = check_register(&h, &Budget::default()).unwrap();
        let f = v.failure().unwrap_or_else(|| panic!("{v}"));
        assert!(f.minimal);
        assert_eq!(f.ops.len(), 4, "{v}");
        // Both orders observed by concurrent reads, while the writes are in flight: fine.
        let h = hist(&[
            w(1, 1, 0, 100),
            w(2, 2, 0, 100),
            r(3, Some(1), 11, 12),
            r(4, Some(2), 13, 14),
            r(5, Some(2), 150, 160),
        ]);
        assert!(check_register(&h, &Budget::default())
            .unwrap()
            .is_linearizable());
        // But not back again after both completed.
        let h = hist(&[
            w(1, 1, 0, 100),
            w(2, 2, 0, 100),
            r(3, Some(1), 11, 12),
            r(4, Some(2), 13, 14),
            r(5, Some(1), 150, 160),
        ]);
        assert!(check_register(&h, &Budget::default())
            .unwrap()
            .is_not_linearizable());
    }

    #[test]
    fn concurrency_fail_and_info_follow_jepsen_semantics() {
        let cas = |p, from: i64, to: i64, outcome, inv, comp| {
            (
                p,
                F::Cas,
                None,
                Value::cas(from, to),
                outcome,
                Value::Nil,
                inv,
                comp,
            )
        };
        // A read concurrent with a write may see either value.
        let h = hist(&[
            w(1, 1, 0, 10),
            w(2, 2, 20, 40),
            r(3, Some(1), 25, 35),
            r(4, Some(2), 30, 50),
        ]);
        assert!(check_register(&h, &Budget::default())
            .unwrap()
            .is_linearizable());
        // A read of nil before any write, concurrent with it.
        let h = hist(&[r(1, None, 0, 10), w(2, 1, 5, 15)]);
        assert!(check_register(&h, &Budget::default())
            .unwrap()
            .is_linearizable());

        // A failed write did not happen.
        let failed = (
            2,
            F::Write,
            None,
            Value::Int(2),
            OpKind::Fail,
            Value::Nil,
            20,
            Some(30),
        );
        let h = hist(&[w(1, 1, 0, 10), failed.clone(), r(3, Some(1), 40, 50)]);
        assert!(check_register(&h, &Budget::default())
            .unwrap()
            .is_linearizable());
        let h = hist(&[w(1, 1, 0, 10), failed, r(3, Some(2), 40, 50)]);
        assert!(check_register(&h, &Budget::default())
            .unwrap()
            .is_not_linearizable());

        // An info write may have happened, at any time after its invocation, or not.
        let info = (
            2,
            F::Write,
            None,
            Value::Int(2),
            OpKind::Info,
            Value::Nil,
            20,
            Some(30),
        );
        let open = (
            2,
            F::Write,
            None,
            Value::Int(2),
            OpKind::Info,
            Value::Nil,
            20,
            None,
        );
        for unknown in [info, open] {
            let h = hist(&[w(1, 1, 0, 10), unknown.clone(), r(3, Some(1), 40, 50)]);
            assert!(check_register(&h, &Budget::default())
                .unwrap()
                .is_linearizable());
            let h = hist(&[
                w(1, 1, 0, 10),
                unknown.clone(),
                r(3, Some(1), 40, 50),
                r(3, Some(2), 1000, 1010),
            ]);
            assert!(check_register(&h, &Budget::default())
                .unwrap()
                .is_linearizable());
            // It happens once: no going back.
            let h = hist(&[
                w(1, 1, 0, 10),
                unknown.clone(),
                r(3, Some(2), 40, 50),
                r(3, Some(1), 60, 70),
            ]);
            assert!(check_register(&h, &Budget::default())
                .unwrap()
                .is_not_linearizable());
            // Not before its invocation.
            let h = hist(&[w(1, 1, 0, 10), r(3, Some(2), 12, 15), unknown]);
            assert!(check_register(&h, &Budget::default())
                .unwrap()
                .is_not_linearizable());
        }

        // Cas: ok means it matched; fail means it did not happen; info maybe, if it matched.
        let h = hist(&[
            w(1, 1, 0, 10),
            cas(2, 1, 3, OpKind::Ok, 20, Some(30)),
            r(3, Some(3), 40, 50),
        ]);
        assert!(check_register(&h, &Budget::default())
            .unwrap()
            .is_linearizable());
        let h = hist(&[w(1, 1, 0, 10), cas(2, 2, 3, OpKind::Ok, 20, Some(30))]);
        assert!(check_register(&h, &Budget::default())
            .unwrap()
            .is_not_linearizable());
        let h = hist(&[
            w(1, 1, 0, 10),
            cas(2, 1, 3, OpKind::Fail, 20, Some(30)),
            r(3, Some(3), 40, 50),
        ]);
        assert!(check_register(&h, &Budget::default())
            .unwrap()
            .is_not_linearizable());
        let h = hist(&[
            w(1, 1, 0, 10),
            cas(2, 1, 3, OpKind::Info, 20, None),
            r(3, Some(3), 40, 50),
        ]);
        assert!(check_register(&h, &Budget::default())
            .unwrap()
            .is_linearizable());
        let h = hist(&[
            w(1, 1, 0, 10),
            cas(2, 2, 3, OpKind::Info, 20, None),
            r(3, Some(3), 40, 50),
        ]);
        assert!(check_register(&h, &Budget::default())
            .unwrap()
            .is_not_linearizable());
    }

    #[test]
    fn kv_histories_are_checked_per_key_and_name_the_failing_key() {
        let kw = |p, k, v: i64, inv, comp| {
            (
                p,
                F::Write,
                Some(k),
                Value::Int(v),
                OpKind::Ok,
                Value::Int(v),
                inv,
                Some(comp),
            )
        };
        let kr = |p, k, v: i64, inv, comp| {
            (
                p,
                F::Read,
                Some(k),
                Value::Nil,
                OpKind::Ok,
                Value::Int(v),
                inv,
                Some(comp),
            )
        };
        let h = hist(&[
            kw(1, "a", 1, 0, 10),
            kw(2, "b", 2, 0, 10),
            kr(3, "a", 1, 20, 30),
            kr(3, "b", 2, 40, 50),
        ]);
        assert!(check_kv(&h, &Budget::default()).unwrap().is_linearizable());
        let h = hist(&[
            kw(1, "a", 1, 0, 10),
            kw(2, "b", 1, 0, 10),
            kw(2, "b", 2, 20, 30),
            kr(3, "a", 1, 40, 50),
            kr(3, "b", 1, 60, 70),
        ]);
        let v = check_kv(&h, &Budget::default()).unwrap();
        let f = v.failure().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(f.partition.as_deref(), Some("b"));
        assert_eq!(f.partition_size, 3);
        assert_eq!(f.ops.len(), 3);
        assert!(v.to_string().contains("on key \"b\""), "{v}");
        // A register history must not have keys, a kv one must.
        let e = check_register(&h, &Budget::default()).unwrap_err();
        assert!(
            matches!(&e, HistoryError::BadValue { index: 0, .. })
                && e.to_string()
                    .contains("an op with a key in a register history; check it with check_kv"),
            "{e}"
        );
        let h = hist(&[w(1, 1, 0, 10)]);
        let e = check_kv(&h, &Budget::default()).unwrap_err();
        assert!(
            matches!(&e, HistoryError::BadValue { index: 0, .. })
                && e.to_string()
                    .contains("an op without a key in a key-value history"),
            "{e}"
        );
        let bad_cas = hist(&[(
            1,
            F::Cas,
            None,
            Value::Int(1),
            OpKind::Ok,
            Value::Nil,
            0,
            Some(1),
        )]);
        let e = check_register(&bad_cas, &Budget::default()).unwrap_err();
        assert!(
            e.to_string().contains("a cas takes [expected, new], not 1"),
            "{e}"
        );
    }

    #[test]
    fn generated_concurrent_histories_are_linearizable() {
        // Many unknown outcomes (10%) too: a search that forks on them would
        // run out of budget (a minute) and fail here instead of hanging.
        let budget = Budget::time(Duration::from_secs(60));
        for (keys, seed, info_per_mille) in [
            (0, 1, 10),
            (0, 2, 10),
            (0, 7, 100),
            (4, 3, 10),
            (50, 4, 100),
        ] {
            let h = generate(&Workload {
                seed,
                keys,
                ops: 3000,
                info_per_mille,
                ..Workload::default()
            });
            let calls = h.calls().unwrap();
            assert_eq!(calls.len(), 3000);
            assert!(
                calls.iter().any(|c| c.outcome == OpKind::Info),
                "the workload has crashes"
            );
            assert!(
                calls.iter().any(|c| c.outcome == OpKind::Fail),
                "the workload has failed cas"
            );
            let v = if keys == 0 {
                check_register(&h, &budget).unwrap()
            } else {
                check_kv(&h, &budget).unwrap()
            };
            assert!(v.is_linearizable(), "keys {keys} seed {seed}: {v}");
        }
    }

    #[test]
    fn a_never_written_value_in_a_big_history_shrinks_to_that_read() {
        let mut h = generate(&Workload {
            seed: 9,
            ops: 2000,
            ..Workload::default()
        });
        let mut ops = h.ops().to_vec();
        let i = ops
            .iter()
            .rposition(|o| o.kind == OpKind::Ok && o.f == F::Read)
            .unwrap();
        ops[i].value = Value::Int(1_000_000);
        h = History::from_ops(ops);
        let v = check_register(&h, &Budget::default()).unwrap();
        let f = v.failure().unwrap_or_else(|| panic!("{v}"));
        assert!(f.minimal, "{v}");
        assert_eq!(f.ops.len(), 1, "{v}");
        assert_eq!(f.ops[0].result, Value::Int(1_000_000));
    }

    #[test]
    fn the_step_budget_makes_hard_checks_unknown() {
        let h = generate(&Workload {
            seed: 5,
            ops: 2000,
            ..Workload::default()
        });
        let v = check_register(&h, &Budget::steps(100)).unwrap();
        assert!(v.is_unknown(), "{v}");
        assert!(v.to_string().contains("budget exhausted after"), "{v}");
    }

    /// Every op of the witness is accepted by the model in its order, no op
    /// comes before one that returned before it was called, and every
    /// completed op is there.
    fn assert_valid_witness(h: &History, witness: &[Call], model: &KvModel) {
        let mut state = model.init();
        for c in witness {
            let input = KvOp {
                key: c.key.clone().unwrap_or_default(),
                op: register_op(c).unwrap(),
            };
            let output = (c.outcome == OpKind::Ok).then(|| c.result.clone());
            state = model
                .step(&state, &input, &output)
                .unwrap_or_else(|| panic!("the witness cannot apply {c}"));
        }
        for (i, a) in witness.iter().enumerate() {
            for b in &witness[i + 1..] {
                assert!(
                    b.completed.is_none_or(|r| r >= a.invoked),
                    "{b} returned before {a} was called, but comes after it"
                );
            }
        }
        let completed = h
            .calls()
            .unwrap()
            .into_iter()
            .filter(|c| c.outcome == OpKind::Ok)
            .count();
        let in_witness = witness.iter().filter(|c| c.outcome == OpKind::Ok).count();
        assert_eq!(in_witness, completed, "every completed op is linearized");
    }

    #[test]
    fn a_plain_violation_is_found_behind_a_hard_key_in_milliseconds() {
        // Key "0" alone cannot be decided in a few million steps...
        let hard = generate::concurrent_writes_then_bad_read(Some("0"), 25, 0, ms(0));
        let v = check_kv(&hard, &Budget::steps(3_000_000)).unwrap();
        assert!(v.is_unknown(), "{v}");
        // ...but the violations on keys 1 to 8 are found at once, and the
        // same one every time.
        let h = generate::hard_and_plain(25, 8, 200);
        let mut seen = Vec::new();
        for _ in 0..2 {
            let start = std::time::Instant::now();
            let r = check_kv_with(
                &h,
                &KvModel::default(),
                &Budget::default(),
                &Options::default(),
            )
            .unwrap();
            let took = start.elapsed();
            assert!(
                took < Duration::from_millis(500),
                "took {took:?}: {}",
                r.verdict
            );
            let f = r
                .verdict
                .failure()
                .unwrap_or_else(|| panic!("{}", r.verdict));
            assert_eq!(f.partition.as_deref(), Some("1"), "{}", r.verdict);
            assert!(f.minimal);
            assert_eq!(f.ops.len(), 3, "{}", r.verdict);
            assert!(r.stats.steps < 100_000, "{:?}", r.stats);
            seen.push(r.verdict.to_string());
        }
        assert_eq!(seen[0], seen[1]);
        // A memory budget too small for key "0" does not hide them either.
        let v = check_kv(&h, &Budget::default().with_memory(4 << 20)).unwrap();
        assert_eq!(
            v.failure().and_then(|f| f.partition.as_deref()),
            Some("1"),
            "{v}"
        );
    }

    #[test]
    fn a_one_second_budget_returns_within_five_percent() {
        let h = generate::concurrent_writes_then_bad_read(None, 25, 0, ms(0));
        let start = std::time::Instant::now();
        let r = check_register_with(
            &h,
            &RegisterModel::default(),
            &Budget::time(Duration::from_secs(1)),
            &Options::default(),
        )
        .unwrap();
        let took = start.elapsed();
        assert!(took <= Duration::from_millis(1050), "took {took:?}");
        let text = r.verdict.to_string();
        assert!(r.verdict.is_unknown(), "{text}");
        assert!(
            text.contains("the time budget (1.000s, Budget::max_time) ran out"),
            "{text}"
        );
        assert!(
            text.contains("the history after")
                && text.contains("26 operations, up to 25 concurrent"),
            "{text}"
        );
        // No op has an unknown outcome: the message does not blame them.
        assert!(!text.contains("unknown outcome"), "{text}");
        assert!(r.stats.peak_memory <= DEFAULT_MAX_MEMORY, "{:?}", r.stats);
    }

    #[test]
    fn a_small_memory_budget_gives_unknown_naming_the_key_and_the_bound() {
        let h = generate::concurrent_writes_then_bad_read(Some("0"), 25, 0, ms(0));
        let budget = Budget::unlimited().with_memory(4 << 20);
        let r = check_kv_with(&h, &KvModel::default(), &budget, &Options::default()).unwrap();
        let text = r.verdict.to_string();
        assert!(r.verdict.is_unknown(), "{text}");
        assert!(
            text.contains(
                "the memory budget (4.0 MiB, Budget::max_memory) stopped the search on key \"0\""
            ),
            "{text}"
        );
        assert!(
            text.contains("26 operations, up to 25 concurrent"),
            "{text}"
        );
        assert!(!text.contains("unknown outcome"), "{text}");
        assert!(r.stats.peak_memory <= 4 << 20, "{:?}", r.stats);
    }

    #[test]
    fn unknown_blames_operations_of_unknown_outcome_only_when_there_are_some() {
        for info_per_mille in [0, 50] {
            let h = generate(&Workload {
                seed: 11,
                ops: 2000,
                info_per_mille,
                ..Workload::default()
            });
            let info = h
                .calls()
                .unwrap()
                .iter()
                .filter(|c| c.outcome == OpKind::Info && c.f != F::Read)
                .count();
            let v = check_register(&h, &Budget::steps(1_000)).unwrap();
            let text = v.to_string();
            assert!(v.is_unknown(), "{text}");
            assert!(
                text.contains("the step budget (1000 steps, Budget::max_steps) ran out"),
                "{text}"
            );
            if info_per_mille == 0 {
                assert!(!text.contains("unknown outcome"), "{text}");
            } else {
                assert!(info > 0);
                assert!(
                    text.contains(&format!("{info} of unknown outcome")),
                    "{info}: {text}"
                );
            }
        }
    }

    #[test]
    fn several_writes_of_the_stale_value_shrink_to_one() {
        let h = hist(&[
            w(1, 1, 0, 10),
            w(2, 1, 2, 12),
            w(3, 1, 4, 14),
            w(4, 2, 20, 30),
            r(5, Some(1), 40, 50),
        ]);
        let v = check_register(&h, &Budget::default()).unwrap();
        let f = v.failure().unwrap_or_else(|| panic!("{v}"));
        assert!(f.minimal, "{v}");
        let values: Vec<_> = values_of(f)
            .into_iter()
            .map(|(_, f, v, r)| (f, v, r))
            .collect();
        assert_eq!(values.len(), 3, "{v}");
        assert_eq!(values[0], (F::Write, Value::Int(1), Value::Int(1)), "{v}");
        assert_eq!(values[1], (F::Write, Value::Int(2), Value::Int(2)), "{v}");
        assert_eq!(values[2], (F::Read, Value::Nil, Value::Int(1)), "{v}");
        // A write of 1 that may come after the write of 2 must stay: here
        // it makes the history linearizable.
        let h = hist(&[
            w(1, 1, 0, 10),
            w(2, 1, 2, 25),
            w(4, 2, 20, 30),
            r(5, Some(1), 40, 50),
        ]);
        assert!(check_register(&h, &Budget::default())
            .unwrap()
            .is_linearizable());
    }

    #[test]
    fn initial_values_of_registers_and_keys() {
        let h = hist(&[r(1, Some(0), 0, 10), w(2, 1, 20, 30), r(3, Some(1), 40, 50)]);
        let o = Options::default();
        let b = Budget::default();
        assert!(check_register(&h, &b).unwrap().is_not_linearizable());
        let zero = RegisterModel {
            initial: Value::Int(0),
        };
        let r0 = check_register_with(&h, &zero, &b, &o).unwrap();
        assert!(r0.verdict.is_linearizable(), "{}", r0.verdict);
        // A map: every key 0, key "b" 7.
        let mut h = History::new();
        h.invoke(1, F::Read, Some("a"), Value::Nil, ms(0)).unwrap();
        h.ok(1, 0, ms(1)).unwrap();
        h.invoke(1, F::Read, Some("b"), Value::Nil, ms(2)).unwrap();
        h.ok(1, 7, ms(3)).unwrap();
        h.invoke(1, F::Cas, Some("b"), Value::cas(7, 8), ms(4))
            .unwrap();
        h.ok(1, Value::cas(7, 8), ms(5)).unwrap();
        let mut model = KvModel::with_initial(0);
        assert!(check_kv_with(&h, &model, &b, &o)
            .unwrap()
            .verdict
            .is_not_linearizable());
        model.initial_keys.insert("b".into(), Value::Int(7));
        let r = check_kv_with(&h, &model, &b, &Options { witness: true }).unwrap();
        assert!(r.verdict.is_linearizable(), "{}", r.verdict);
        assert_valid_witness(&h, r.witness.as_deref().unwrap(), &model);
    }

    #[test]
    fn witnesses_are_valid_linearizations() {
        for (keys, seed, info_per_mille) in [(0, 1, 0), (0, 2, 50), (3, 3, 0), (20, 4, 50)] {
            let h = generate(&Workload {
                seed,
                keys,
                ops: 1500,
                info_per_mille,
                ..Workload::default()
            });
            let o = Options { witness: true };
            let b = Budget::default();
            let r = if keys == 0 {
                check_register_with(&h, &RegisterModel::default(), &b, &o).unwrap()
            } else {
                check_kv_with(&h, &KvModel::default(), &b, &o).unwrap()
            };
            assert!(r.verdict.is_linearizable(), "{}", r.verdict);
            let witness = r.witness.unwrap();
            assert!(witness.len() >= 1000, "{}", witness.len());
            assert_valid_witness(&h, &witness, &KvModel::default());
            // Not asked for: none.
            let r = check_kv_with(&h, &KvModel::default(), &b, &Options::default());
            if keys > 0 {
                assert_eq!(r.unwrap().witness, None);
            }
        }
    }

    /// Mutate one ok read of `h` to a value never written.
    fn corrupt_a_read(h: &History, pick: usize) -> Option<History> {
        let mut ops = h.ops().to_vec();
        let reads: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].kind == OpKind::Ok && ops[i].f == F::Read)
            .collect();
        let i = *reads.get(pick % reads.len().max(1))?;
        ops[i].value = Value::Int(-1);
        Some(History::from_ops(ops))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn sequential_correct_histories_are_linearizable(seed in any::<u64>(), ops in 1usize..300, keys in 0usize..4, values in 1i64..6) {
            let h = sequential(seed, ops, keys, values);
            let v = if keys == 0 { check_register(&h, &Budget::unlimited()) } else { check_kv(&h, &Budget::unlimited()) };
            let v = v.unwrap();
            prop_assert!(v.is_linearizable(), "{}", v);
        }

        #[test]
        fn concurrent_correct_histories_are_linearizable(seed in any::<u64>(), ops in 1usize..400, keys in 0usize..4, clients in 1u64..10) {
            let h = generate(&Workload { seed, ops, keys, clients, info_per_mille: 50, ..Workload::default() });
            let v = if keys == 0 { check_register(&h, &Budget::unlimited()) } else { check_kv(&h, &Budget::unlimited()) };
            let v = v.unwrap();
            prop_assert!(v.is_linearizable(), "{}", v);
        }

        #[test]
        fn a_read_of_a_never_written_value_is_rejected(seed in any::<u64>(), ops in 2usize..300, keys in 0usize..4, clients in 1u64..10, pick in any::<usize>()) {
            let h = generate(&Workload { seed, ops, keys, clients, ..Workload::default() });
            if let Some(bad) = corrupt_a_read(&h, pick) {
                let v = if keys == 0 { check_register(&bad, &Budget::unlimited()) } else { check_kv(&bad, &Budget::unlimited()) };
                let v = v.unwrap();
                let f = v.failure();
                prop_assert!(f.is_some(), "accepted: {}", v);
                let f = f.unwrap();
                prop_assert_eq!(f.ops.len(), 1);
                prop_assert_eq!(&f.ops[0].result, &Value::Int(-1));
            }
        }
    }
}
