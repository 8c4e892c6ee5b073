//! The list-append checker on Elle's published histories (check/data/elle,
//! EPL-2.0, see its README) and on generated ones: serializable executions
//! must pass, executions with planted anomalies must not.

use distzero_check::elle::{check, read_edn, CycleKind, Mop, Rel, Txn};
use distzero_check::history::{OpKind, Value};
use distzero_check::Budget;

fn read(name: &str, text: &str) -> Vec<Txn> {
    read_edn(name, text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_papers_g_single() {
    let txns = read(
        "paper-example.edn",
        include_str!("../data/elle/paper-example.edn"),
    );
    let r = check(&txns, &Budget::default());
    assert_eq!(r.anomaly_names(), ["G-single-item"], "{r}");
    let c = r.cycles().next().unwrap();
    assert!(c.minimal);
    // The paper's T1, T2, T3 are T3, T1, T2 here: T2 -wr-> T3 (on 255),
    // T3 -ww-> T1 (on 256), T1 -rw-> T2 (on 255), in the paper's names.
    let steps: Vec<(usize, Rel, Value)> = c
        .steps
        .iter()
        .map(|s| (s.from, s.rel, s.why.key.clone()))
        .collect();
    assert_eq!(
        steps,
        [
            (1, Rel::WR, Value::Int(255)),
            (2, Rel::WW, Value::Int(256)),
            (3, Rel::RW, Value::Int(255))
        ],
        "{r}"
    );
    let text = r.to_string();
    assert!(
        text.contains("T3 read 255 ending in 5, and T1 appended 8 just after it"),
        "{text}"
    );
}

#[test]
fn si_without_g_single_is_g2_item_only() {
    let txns = read(
        "si-without-g-single.edn",
        include_str!("../data/elle/si-without-g-single.edn"),
    );
    let r = check(&txns, &Budget::default());
    assert_eq!(r.anomaly_names(), ["G2-item"], "{r}");
    assert_eq!(r.cycles().next().unwrap().kind, CycleKind::G2);
}

/// A tiny deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `n` transactions of 1 to 4 micro-ops on `keys` keys, executed one after
/// another on a correct store; with `stale = Some((every, lag))`, every
/// `every`-th transaction reads the store as it was `lag` transactions
/// earlier (what a lagging replica would answer), plus its own appends.
fn generate(seed: u64, n: usize, keys: u64, stale: Option<(usize, usize)>) -> Vec<Txn> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut store: Vec<Vec<Vec<Value>>> = vec![vec![Vec::new(); keys as usize]];
    let mut next = vec![0i64; keys as usize];
    let mut txns = Vec::new();
    for i in 0..n {
        let before = store.last().cloned().unwrap_or_default();
        let mut now = before.clone();
        let view = match stale {
            Some((every, lag)) if i % every == every - 1 => {
                store[store.len().saturating_sub(1 + lag)].clone()
            }
            _ => before.clone(),
        };
        let mut mops = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let k = rng.below(keys) as usize;
            let key = Value::Str(format!("k{k}"));
            if rng.below(2) == 0 {
                next[k] += 1;
                now[k].push(Value::Int(next[k]));
                mops.push(Mop::Append {
                    key,
                    element: Value::Int(next[k]),
                });
            } else {
                let own = now[k][before[k].len()..].to_vec();
                let mut l = view[k].clone();
                l.extend(own);
                mops.push(Mop::Read { key, list: Some(l) });
            }
        }
        store.push(now);
        txns.push(Txn {
            process: (i % 8) as u64,
            outcome: OpKind::Ok,
            mops,
            source: format!("generated #{i}"),
        });
    }
    txns
}

#[test]
fn serial_executions_pass_and_stale_reads_do_not() {
    for seed in 1..20 {
        let ok = generate(seed, 300, 5, None);
        let r = check(&ok, &Budget::default());
        assert!(r.is_valid(), "seed {seed}: {r}");
        let bad = generate(seed, 300, 5, Some((10, 3)));
        let r = check(&bad, &Budget::default());
        assert!(r.is_invalid(), "seed {seed}: stale reads were not caught");
        assert!(r.cycles().count() > 0, "seed {seed}: {r}");
        assert!(r.cycles().all(|c| c.minimal), "seed {seed}: {r}");
    }
}

/// Elle's `unfindable-g-single` construction (list_append_test.clj): one
/// G-single ring of `n` transactions awash in G2-item noise.
fn unfindable_g_single(n: i64, noise: i64) -> Vec<Txn> {
    let k = |s: &str| Value::Str(s.into());
    let ok = |mops: Vec<Mop>| Txn {
        process: 0,
        outcome: OpKind::Ok,
        mops,
        source: String::new(),
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

#[test]
fn elles_unfindable_g_single_is_found() {
    let txns = unfindable_g_single(100, 10);
    let r = check(&txns, &Budget::default());
    assert!(r.is_invalid(), "{r}");
    let g = r
        .cycles()
        .find(|c| c.kind == CycleKind::GSingle)
        .unwrap_or_else(|| panic!("no G-single: {r}"));
    assert!(g.minimal, "{r}");
}
