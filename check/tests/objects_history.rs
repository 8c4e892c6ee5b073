//! The objects' models on histories recorded with core's op kinds (as
//! `ctx.record` makes them, and as a run's logs hold them): each accepts a
//! correct history and rejects a wrong one.

use distzero_check::history::{History, Value, F};
use distzero_check::objects::{check_history, check_history_sequential};
use distzero_check::{Budget, Options};
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// (process, f, key, invoke value, ok value), one op after another.
fn history(ops: &[(u64, F, Option<&str>, Value, Value)]) -> History {
    let mut h = History::new();
    for (i, (p, f, k, v, r)) in ops.iter().enumerate() {
        let t = 2 * i as u64;
        h.invoke(*p, *f, *k, v.clone(), ms(t)).unwrap();
        h.ok(*p, r.clone(), ms(t + 1)).unwrap();
    }
    // Through the log format and back, as a run's logs would give it.
    History::from_jsonl("h", &h.to_jsonl()).unwrap()
}

fn verdicts(model: &str, h: &History) -> (bool, bool) {
    let lin = check_history(model, h, &Budget::default(), &Options { witness: true })
        .unwrap_or_else(|e| panic!("{e}"));
    let seq = if model == "append" {
        None
    } else {
        Some(check_history_sequential(model, h, &Budget::default()).unwrap())
    };
    (
        lin.verdict.is_linearizable(),
        seq.is_none_or(|s| s.is_consistent()),
    )
}

#[test]
fn counters() {
    let ok = history(&[
        (1, F::Add, None, 2.into(), 2.into()),
        (2, F::Read, None, Value::Nil, 2.into()),
        (1, F::Add, None, 3.into(), 3.into()),
        (2, F::Read, None, Value::Nil, 5.into()),
    ]);
    assert_eq!(verdicts("counter", &ok), (true, true));
    let bad = history(&[
        (1, F::Add, None, 2.into(), 2.into()),
        (2, F::Read, None, Value::Nil, 4.into()),
    ]);
    assert_eq!(verdicts("counter", &bad), (false, false));
}

#[test]
fn sets() {
    let ok = history(&[
        (1, F::Add, None, 1.into(), 1.into()),
        (2, F::Read, None, Value::Nil, Value::List(vec![1.into()])),
    ]);
    assert_eq!(verdicts("set", &ok), (true, true));
    let stale = history(&[
        (1, F::Add, None, 1.into(), 1.into()),
        (2, F::Read, None, Value::Nil, Value::List(vec![])),
    ]);
    // Stale: not linearizable, but sequentially consistent.
    assert_eq!(verdicts("set", &stale), (false, true));
}

#[test]
fn queues() {
    let ok = history(&[
        (1, F::Enqueue, None, 1.into(), 1.into()),
        (1, F::Enqueue, None, 2.into(), 2.into()),
        (2, F::Dequeue, None, Value::Nil, 1.into()),
        (2, F::Dequeue, None, Value::Nil, 2.into()),
        (2, F::Dequeue, None, Value::Nil, Value::Nil),
    ]);
    assert_eq!(verdicts("queue", &ok), (true, true));
    let bad = history(&[
        (1, F::Enqueue, None, 1.into(), 1.into()),
        (1, F::Enqueue, None, 2.into(), 2.into()),
        (2, F::Dequeue, None, Value::Nil, 2.into()),
    ]);
    assert_eq!(verdicts("queue", &bad), (false, false));
}

#[test]
fn mutexes() {
    let ok = history(&[
        (1, F::Acquire, None, Value::Nil, Value::Nil),
        (1, F::Release, None, Value::Nil, Value::Nil),
        (2, F::Acquire, None, Value::Nil, Value::Nil),
    ]);
    assert_eq!(verdicts("mutex", &ok), (true, true));
    let bad = history(&[
        (1, F::Acquire, None, Value::Nil, Value::Nil),
        (2, F::Acquire, None, Value::Nil, Value::Nil),
    ]);
    assert_eq!(verdicts("mutex", &bad), (false, false));
}

#[test]
fn key_value_with_append() {
    let ok = history(&[
        (1, F::Write, Some("a"), "x".into(), "x".into()),
        (1, F::Append, Some("a"), "y".into(), "y".into()),
        (2, F::Read, Some("a"), Value::Nil, "xy".into()),
        (2, F::Read, Some("b"), Value::Nil, "".into()),
    ]);
    assert_eq!(verdicts("append", &ok), (true, true));
    let bad = history(&[
        (1, F::Append, Some("a"), "x".into(), "x".into()),
        (2, F::Read, Some("a"), Value::Nil, "".into()),
    ]);
    let r = check_history("append", &bad, &Budget::default(), &Options::default()).unwrap();
    let f = r
        .verdict
        .failure()
        .unwrap_or_else(|| panic!("{}", r.verdict));
    // Failures name the history's calls.
    assert_eq!(f.ops[0].f, F::Append);
    assert_eq!(f.ops[1].index, 2);
}

#[test]
fn ops_a_model_cannot_take_are_errors_naming_the_op() {
    let h = history(&[(1, F::Cas, None, Value::cas(1, 2), Value::cas(1, 2))]);
    let e = check_history("counter", &h, &Budget::default(), &Options::default())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("op #0 (p1"), "{e}");
    assert!(e.contains(":f :cas is not an op here"), "{e}");
    let e = check_history_sequential("append", &h, &Budget::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no model called \"append\" for sequential"),
        "{e}"
    );
}
