//! Histories of a correct system, for testing checkers and benchmarking
//! them: concurrent clients call one real atomic register (or map) through a
//! simulated network, each op taking effect at a random instant between its
//! invocation and its completion. Seeded, so one seed gives one history.

use crate::elle::{Mop, Txn};
use crate::history::{History, OpKind, Value, F};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::Duration;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub seed: u64,
    /// Concurrent clients (processes), each with one op in flight at most.
    pub clients: u64,
    /// Operations invoked in all.
    pub ops: usize,
    /// 0: one register, ops without key. Otherwise a map of keys
    /// `k0`..`k{keys-1}`.
    pub keys: usize,
    /// Values written are drawn from `0..values` (few values: more ambiguity).
    pub values: i64,
    /// Per mille of ops whose client crashes: recorded `info`, or never
    /// completed; the op takes effect (possibly later) or not, at random.
    pub info_per_mille: u32,
    /// Longest delay between invocation and effect, and effect and completion.
    pub latency: Duration,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            seed: 0,
            clients: 8,
            ops: 1000,
            keys: 0,
            values: 5,
            info_per_mille: 10,
            latency: Duration::from_millis(10),
        }
    }
}

enum Event {
    Invoke(u64),
    /// An op takes effect: (client, op number).
    Apply(u64, usize),
    Complete(u64, usize),
}

struct InFlight {
    process: u64,
    f: F,
    key: Option<String>,
    value: Value,
    crashed: bool,
    /// Set when applied: the outcome.
    outcome: Option<(OpKind, Value)>,
}

/// A linearizable history of `w`.
pub fn generate(w: &Workload) -> History {
    let mut rng = ChaCha8Rng::seed_from_u64(w.seed);
    let latency = u64::try_from(w.latency.as_nanos())
        .unwrap_or(u64::MAX)
        .max(1);
    let values = w.values.max(1);
    let mut history = History::new();
    let mut store: BTreeMap<Option<String>, Value> = BTreeMap::new();
    let mut queue: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut events: Vec<Event> = Vec::new();
    let mut ops: Vec<InFlight> = Vec::new();
    // A client whose op never completes goes on as a new process (Jepsen's
    // way); one whose op ends `info` keeps its process id.
    let mut process: Vec<u64> = (0..w.clients).collect();
    let mut seq = 0u64;
    let mut schedule = |queue: &mut BinaryHeap<_>, events: &mut Vec<Event>, at: u64, e: Event| {
        seq += 1;
        queue.push(Reverse((at, seq, events.len())));
        events.push(e);
    };
    for c in 0..w.clients {
        let at = rng.gen_range(0..latency);
        schedule(&mut queue, &mut events, at, Event::Invoke(c));
    }
    while let Some(Reverse((now, _, e))) = queue.pop() {
        let t = Duration::from_nanos(now);
        match events[e] {
            Event::Invoke(c) => {
                if ops.len() >= w.ops {
                    continue;
                }
                let p = process[c as usize];
                let key = (w.keys > 0).then(|| format!("k{}", rng.gen_range(0..w.keys)));
                let (f, value) = match rng.gen_range(0..10) {
                    0..=4 => (F::Read, Value::Nil),
                    5..=7 => (F::Write, Value::Int(rng.gen_range(0..values))),
                    _ => (
                        F::Cas,
                        Value::cas(rng.gen_range(0..values), rng.gen_range(0..values)),
                    ),
                };
                // Invocations are serialized per client: this cannot fail.
                let _ = history.invoke(p, f, key.as_deref(), value.clone(), t);
                let crashed = rng.gen_range(0..1000) < w.info_per_mille;
                let n = ops.len();
                ops.push(InFlight {
                    process: p,
                    f,
                    key,
                    value,
                    crashed,
                    outcome: None,
                });
                if crashed {
                    // Maybe it takes effect, maybe long after; the client
                    // hears nothing, says info (or nothing) and moves on.
                    if rng.gen_bool(0.5) {
                        let at = now + rng.gen_range(0..4 * latency);
                        schedule(&mut queue, &mut events, at, Event::Apply(c, n));
                    }
                    let at = now + rng.gen_range(latency..2 * latency);
                    schedule(&mut queue, &mut events, at, Event::Complete(c, n));
                } else {
                    let at = now + rng.gen_range(0..latency);
                    schedule(&mut queue, &mut events, at, Event::Apply(c, n));
                }
            }
            Event::Apply(c, n) => {
                let op = &mut ops[n];
                let current = store.entry(op.key.clone()).or_default();
                let outcome = match (&op.f, &op.value) {
                    (F::Read, _) => (OpKind::Ok, current.clone()),
                    (F::Write, v) => {
                        *current = v.clone();
                        (OpKind::Ok, v.clone())
                    }
                    (F::Cas, Value::List(pair)) if pair.len() == 2 && pair[0] == *current => {
                        *current = pair[1].clone();
                        (OpKind::Ok, op.value.clone())
                    }
                    // This generator makes no transactions.
                    _ => (OpKind::Fail, Value::Nil),
                };
                op.outcome = Some(outcome);
                if !op.crashed {
                    let at = now + rng.gen_range(0..latency);
                    schedule(&mut queue, &mut events, at, Event::Complete(c, n));
                }
            }
            Event::Complete(c, n) => {
                let op = &ops[n];
                if op.crashed {
                    if rng.gen_bool(0.5) {
                        let _ = history.info(op.process, t);
                    } else {
                        // Never completed: the history ends with it open.
                        process[c as usize] += w.clients;
                    }
                } else if let Some((kind, value)) = op.outcome.clone() {
                    let _ = history.complete(op.process, kind, value, t);
                }
                let at = now + rng.gen_range(0..latency);
                schedule(&mut queue, &mut events, at, Event::Invoke(c));
            }
        }
    }
    history
}

/// A history of one client at a time (no concurrency) on a correct
/// register or map: each op completes before the next is invoked.
pub fn sequential(seed: u64, ops: usize, keys: usize, values: i64) -> History {
    generate(&Workload {
        seed,
        clients: 1,
        ops,
        keys,
        values,
        info_per_mille: 0,
        latency: Duration::from_millis(1),
    })
}

/// A history that is hard to refute: `width` processes (from `first_process`)
/// write distinct values to `key` (`None`: a register), all at once, every
/// write concurrent with every other; after they all returned, a read
/// returns a value none of them wrote. Proving that no order explains the
/// read means trying every order of the writes, about `width · 2^(width-1)`
/// configurations (25 writes: some 400 million, more than a gibibyte of
/// memo). Times start at `at`, one microsecond apart.
pub fn concurrent_writes_then_bad_read(
    key: Option<&str>,
    width: u64,
    first_process: u64,
    at: Duration,
) -> History {
    let us = Duration::from_micros;
    let mut h = History::new();
    for i in 0..width {
        let _ = h.invoke(first_process + i, F::Write, key, i as i64, at + us(i));
    }
    for i in 0..width {
        let _ = h.ok(first_process + i, i as i64, at + us(width + i));
    }
    let reader = first_process + width;
    let _ = h.invoke(reader, F::Read, key, Value::Nil, at + us(2 * width));
    let _ = h.ok(reader, -1, at + us(2 * width + 1));
    h
}

/// Like Porcupine's `c50-bad` as the checker sees it, on a key-value map
/// with no operation of unknown outcome: key `"0"`, first in key order, is
/// hard ([`concurrent_writes_then_bad_read`] with `width` writers); keys
/// `"1"` to `"{violations}"` each carry `traffic` ordinary sequential
/// operations and then a plain stale read (a write of 1, a write of 2, a
/// read of 1, one after the other). A checker that finishes key `"0"`
/// before looking at the others never gets to them.
pub fn hard_and_plain(width: u64, violations: usize, traffic: usize) -> History {
    let mut ops: Vec<(Duration, usize, crate::history::Op)> = Vec::new();
    let mut push = |h: History| {
        for op in h.ops() {
            ops.push((op.time, ops.len(), op.clone()));
        }
    };
    push(concurrent_writes_then_bad_read(
        Some("0"),
        width,
        0,
        Duration::ZERO,
    ));
    for k in 1..=violations {
        let key = k.to_string();
        let p = 1000 * k as u64;
        let mut h = History::new();
        let mut t = Duration::from_micros(k as u64);
        let mut tick = || {
            t += Duration::from_micros(7);
            t
        };
        let mut value = Value::Nil;
        for i in 0..traffic {
            if i % 2 == 0 {
                let _ = h.invoke(p, F::Write, Some(&key), i as i64, tick());
                let _ = h.ok(p, i as i64, tick());
                value = Value::Int(i as i64);
            } else {
                let _ = h.invoke(p, F::Read, Some(&key), Value::Nil, tick());
                let _ = h.ok(p, value.clone(), tick());
            }
        }
        for (f, v, result) in [
            (F::Write, Value::Int(-1), Value::Int(-1)),
            (F::Write, Value::Int(-2), Value::Int(-2)),
            (F::Read, Value::Nil, Value::Int(-1)),
        ] {
            let _ = h.invoke(p + 1, f, Some(&key), v, tick());
            let _ = h.ok(p + 1, result, tick());
        }
        push(h);
    }
    // Stable: ties keep the order of the parts.
    ops.sort_by_key(|(t, i, _)| (*t, *i));
    History::from_ops(ops.into_iter().map(|(_, _, op)| op).collect())
}

/// A tiny deterministic generator (xorshift).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A list-append history (see [`crate::elle`]): `n` transactions of 1 to
/// 4 micro-ops on `keys` keys at a time, executed one after another on a
/// correct store; a key that has had 32 appends is replaced by a fresh one
/// (Jepsen's `max-writes-per-key`), so lists stay short. With `stale =
/// Some((every, lag))`, every `every`-th transaction reads the store as it
/// was `lag` transactions earlier (what a lagging replica would answer),
/// plus its own appends.
pub fn list_append(seed: u64, n: usize, keys: u64, stale: Option<(usize, usize)>) -> Vec<Txn> {
    const MAX_WRITES_PER_KEY: usize = 32;
    let keys = keys.max(1);
    let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let lag = stale.map_or(0, |s| s.1);
    // The last lag + 1 states: key -> list.
    let mut states: VecDeque<BTreeMap<u64, Vec<i64>>> = VecDeque::from([BTreeMap::new()]);
    let mut slots: Vec<u64> = (0..keys).collect();
    let mut next_key = keys;
    let mut txns = Vec::with_capacity(n);
    let empty = Vec::new();
    for i in 0..n {
        let before = states.back().cloned().unwrap_or_default();
        let mut now = before.clone();
        let view = match stale {
            Some((every, _)) if every > 0 && i % every == every - 1 => states[0].clone(),
            _ => before.clone(),
        };
        let mut mops = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let slot = rng.below(keys) as usize;
            let k = slots[slot];
            let key = Value::Str(format!("k{k}"));
            if rng.below(2) == 0 {
                let list = now.entry(k).or_default();
                let element = list.len() as i64 + 1;
                list.push(element);
                mops.push(Mop::Append {
                    key,
                    element: Value::Int(element),
                });
                if list.len() >= MAX_WRITES_PER_KEY {
                    slots[slot] = next_key;
                    next_key += 1;
                }
            } else {
                let had = before.get(&k).map_or(0, Vec::len);
                let own = now.get(&k).map_or(&empty, |l| l)[had..].iter();
                let seen = view.get(&k).map_or(&empty, |l| l).iter();
                let list = seen.chain(own).map(|&e| Value::Int(e)).collect();
                mops.push(Mop::Read {
                    key,
                    list: Some(list),
                });
            }
        }
        // Keys no slot names any more are read no more: drop them.
        now.retain(|k, _| slots.contains(k));
        states.push_back(now);
        if states.len() > lag + 1 {
            states.pop_front();
        }
        txns.push(Txn {
            process: (i % 8) as u64,
            outcome: OpKind::Ok,
            mops,
            source: format!("generated #{i}"),
            // One after another.
            invoked: Some(Duration::from_micros(2 * i as u64)),
            completed: Some(Duration::from_micros(2 * i as u64 + 1)),
        });
    }
    txns
}

/// Elle's `unfindable-g-single` construction (list_append_test.clj): one
/// G-single ring of `n` transactions awash in G2-item noise.
pub fn unfindable_g_single(n: i64, noise: i64) -> Vec<Txn> {
    let k = |s: &str| Value::Str(s.into());
    let ok = |mops: Vec<Mop>| Txn {
        process: 0,
        outcome: OpKind::Ok,
        mops,
        source: String::new(),
        invoked: None,
        completed: None,
    };
    let mut txns = Vec::new();
    for i in 0..n {
        let second = if i == 0 {
            Mop::Append {
                key: k("anti"),
                element: k("first"),
            }
        } else if i == n - 1 {
            Mop::Read {
                key: k("anti"),
                list: None,
            }
        } else {
            Mop::Append {
                key: Value::Int(i),
                element: Value::Int(0),
            }
        };
        txns.push(ok(vec![
            Mop::Append {
                key: k("ring"),
                element: Value::Int(i),
            },
            second,
        ]));
    }
    txns.push(ok(vec![Mop::Read {
        key: k("ring"),
        list: Some((0..n).map(Value::Int).collect()),
    }]));
    for i in 1..n - 1 {
        for j in 1..noise {
            let anti = Value::List(vec![k("anti"), Value::Int(i)]);
            txns.push(ok(if j == noise - 2 {
                vec![
                    Mop::Read {
                        key: Value::Int(i),
                        list: Some((0..noise - 2).map(Value::Int).collect()),
                    },
                    Mop::Read {
                        key: anti,
                        list: None,
                    },
                ]
            } else if j == noise - 1 {
                vec![
                    Mop::Append {
                        key: anti,
                        element: Value::Int(0),
                    },
                    Mop::Read {
                        key: k("ring"),
                        list: None,
                    },
                ]
            } else {
                vec![Mop::Append {
                    key: Value::Int(i),
                    element: Value::Int(j),
                }]
            }));
        }
    }
    txns
}
