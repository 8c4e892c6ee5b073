//! The list-append checker on Elle's published histories (check/data/elle,
//! EPL-2.0, see its README) and on generated ones: serializable executions
//! must pass, executions with planted anomalies must not.

use distzero_check::elle::{check, check_with, read_edn, CycleKind, Isolation, Rel, Txn};
use distzero_check::generate::{list_append, unfindable_g_single};
use distzero_check::history::Value;
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

#[test]
fn serial_executions_pass_and_stale_reads_do_not() {
    for seed in 1..20 {
        let ok = list_append(seed, 300, 5, None);
        let r = check(&ok, &Budget::default());
        assert!(r.is_valid(), "seed {seed}: {r}");
        // One after another: strictly serializable too.
        let r = check_with(&ok, &Budget::default(), Isolation::StrictSerializable);
        assert!(r.is_valid(), "seed {seed}: {r}");
        let bad = list_append(seed, 300, 5, Some((10, 3)));
        let r = check(&bad, &Budget::default());
        assert!(r.is_invalid(), "seed {seed}: stale reads were not caught");
        assert!(r.cycles().count() > 0, "seed {seed}: {r}");
        assert!(r.cycles().all(|c| c.minimal), "seed {seed}: {r}");
        for c in r.cycles() {
            c.verify(&bad)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
    }
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
    g.verify(&txns).unwrap();
}
