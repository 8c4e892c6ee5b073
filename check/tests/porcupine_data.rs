//! Porcupine's test data (check/data/porcupine, MIT, see its README): the
//! verdicts Porcupine's own tests expect, both ways.

use distzero_check::edn::read_jepsen_log;
use distzero_check::objects::check_edn;
use distzero_check::{check_register, Budget, Options, Verdict};

fn kv(name: &str, text: &str) -> Verdict<distzero_check::edn::EdnCall> {
    check_edn(
        "append",
        name,
        text,
        &Budget::default(),
        &Options::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .verdict
}

#[test]
fn porcupine_kv_histories() {
    for (name, text, linearizable) in [
        (
            "c01-ok",
            include_str!("../data/porcupine/kv/c01-ok.txt"),
            true,
        ),
        (
            "c01-bad",
            include_str!("../data/porcupine/kv/c01-bad.txt"),
            false,
        ),
    ] {
        let v = kv(name, text);
        if linearizable {
            assert!(v.is_linearizable(), "{name}: {v}");
        } else {
            assert!(v.is_not_linearizable(), "{name}: {v}");
        }
    }
}

#[test]
fn porcupine_etcd_histories() {
    for (name, text, linearizable) in [
        (
            "etcd_000",
            include_str!("../data/porcupine/jepsen/etcd_000.log"),
            false,
        ),
        (
            "etcd_001",
            include_str!("../data/porcupine/jepsen/etcd_001.log"),
            false,
        ),
        (
            "etcd_003",
            include_str!("../data/porcupine/jepsen/etcd_003.log"),
            false,
        ),
        (
            "etcd_004",
            include_str!("../data/porcupine/jepsen/etcd_004.log"),
            false,
        ),
        (
            "etcd_002",
            include_str!("../data/porcupine/jepsen/etcd_002.log"),
            true,
        ),
        (
            "etcd_005",
            include_str!("../data/porcupine/jepsen/etcd_005.log"),
            true,
        ),
        (
            "etcd_007",
            include_str!("../data/porcupine/jepsen/etcd_007.log"),
            true,
        ),
        (
            "etcd_018",
            include_str!("../data/porcupine/jepsen/etcd_018.log"),
            true,
        ),
    ] {
        let h = read_jepsen_log(name, text).unwrap_or_else(|e| panic!("{e}"));
        let v = check_register(&h.history, &Budget::default()).unwrap_or_else(|e| panic!("{e}"));
        if linearizable {
            assert!(v.is_linearizable(), "{name}: {v}");
        } else {
            assert!(v.is_not_linearizable(), "{name}: {v}");
        }
    }
}

#[test]
fn malformed_jepsen_logs_are_errors() {
    for (text, says) in [
        (
            "INFO  jepsen.util - 3\t:invoke\n",
            "l:1: a jepsen.util line without",
        ),
        ("x\nINFO  jepsen.util - 3\t:invoke\t:cas\t[1\n", "l:2:"),
        (
            "INFO  jepsen.util - 3\t:ok\t:read\t1\n",
            "l:1: process 3 completes",
        ),
    ] {
        let e = read_jepsen_log("l", text).unwrap_err().to_string();
        assert!(e.starts_with(says), "{text:?}: {e}");
    }
    let h = read_jepsen_log(
        "l",
        "noise\nINFO  jepsen.util - 3\t:invoke\t:read\tnil\nINFO  jepsen.util - 3\t:fail\t:read\t:timed-out\n",
    )
    .unwrap();
    assert_eq!(h.lines, [2, 3]);
    assert_eq!(
        h.history.calls().unwrap()[0].outcome,
        distzero_check::history::OpKind::Info
    );
}
