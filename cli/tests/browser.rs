//! `distzero view` in a real browser: the README's main failure (a kv
//! store whose primary acknowledges writes before replicating them, the
//! primary cut off from its backups, then a stale read) is run in
//! simulation, drawn, and opened in headless Chromium. The page's
//! self-check (`#selftest`) reports what it drew and what a click showed;
//! the test checks what a person would see.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it). Without it the test
//! says so and passes: only when the program is absent.

use distzero::nemesis::schedules_from_json;
use distzero::sim::sweep::run_once;
use distzero::sim::SimSettings;
use distzero_cli::browser::{chromium, dump_dom, pre_json};
use distzero_cli::run::{read_run, MAX_LINES};
use distzero_cli::view;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The primary (m0) cut off from both backups 13 ms in, for good.
const PARTITION: &str = r#"[[{"at_ms":13,"fault":{"Partition":[[0],[1,2]]}}]]"#;

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("distzero-view-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A failing run of `kv-ack-before-replicate` under the partition, with
/// message events in its logs (a replay of a failing seed writes them).
/// The page of `model` written under `root`, opened in `browser` with
/// `#selftest`: what its self-test reports.
fn selftest(browser: &str, root: &Path, model: &Value, limit: Duration) -> Value {
    let page = root.join("view.html");
    std::fs::write(&page, view::html(model)).unwrap();
    let dom = dump_dom(
        browser,
        &format!("file://{}#selftest", page.display()),
        limit,
    );
    pre_json(&dom, "selftest")
}

fn failing_run(root: &Path) -> PathBuf {
    let w = distzero_examples::scenarios::all()
        .into_iter()
        .find(|w| w.name == "kv-ack-before-replicate")
        .expect("the kv-ack-before-replicate workflow");
    let schedules = schedules_from_json(PARTITION, "the test's schedule").unwrap();
    let sim = SimSettings::default();
    for seed in 1..40 {
        let dir = root.join(format!("simulated-{seed}-schedule"));
        if run_once(&w, seed, Some(&schedules), Some(&dir), &sim).is_err() {
            return dir;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    panic!("kv-ack-before-replicate under {PARTITION} passed seeds 1..40: the planted bug no longer shows");
}

#[test]
fn the_page_draws_the_partition_the_acknowledged_writes_and_the_stale_read() {
    let root = temp("run");
    let dir = failing_run(&root);
    let run = read_run(&dir, MAX_LINES).unwrap();
    assert!(run.exact, "a simulated run has one seq counter");
    let model = view::model(&run, "kv-ack-before-replicate");

    // What the model holds, before any browser: the partition, the writes
    // the isolated primary acknowledged, the stale read.
    let lanes: Vec<&str> = model["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let lane = |name: &str| {
        lanes
            .iter()
            .position(|l| *l == name)
            .unwrap_or_else(|| panic!("no lane {name} in {lanes:?}"))
    };
    let faults = model["faults"].as_array().unwrap();
    let m0_cut = faults
        .iter()
        .find(|f| f["kind"] == "cut" && f["machine"] == "m0")
        .unwrap_or_else(|| panic!("the partition of m0 is not drawn: {faults:?}"));
    assert!(
        m0_cut["label"].as_str().unwrap().contains("m1,m2"),
        "{m0_cut}"
    );
    let (cut_from, cut_to) = (
        m0_cut["t0"].as_f64().unwrap(),
        m0_cut["t1"].as_f64().unwrap(),
    );
    let ops = model["ops"].as_array().unwrap();
    let bad: Vec<&Value> = ops.iter().filter(|o| o["hl"] == true).collect();
    assert!(bad.len() >= 2, "the counterexample is highlighted: {bad:?}");
    let read = bad
        .iter()
        .find(|o| o["fields"]["invoke"]["f"] == "read")
        .expect("a stale read in the counterexample");
    let write = bad
        .iter()
        .find(|o| o["fields"]["invoke"]["f"] == "write")
        .expect("a write in the counterexample");
    assert!(
        read["t0"].as_f64() > write["t1"].as_f64(),
        "the read follows the write"
    );
    // The write's reply came from the primary while it was cut off.
    let m = &model["m"];
    let n = m["id"].as_array().unwrap().len();
    let (w0, w1) = (write["t0"].as_f64().unwrap(), write["t1"].as_f64().unwrap());
    let acked_by_primary = (0..n).any(|i| {
        let t1 = m["t1"][i].as_f64().unwrap();
        m["from"][i] == lane("m0.n0")
            && m["to"][i] == write["lane"]
            && m["st"][i] == 0
            && t1 >= w0
            && t1 <= w1 + 1e-9
            && t1 >= cut_from
            && t1 <= cut_to
    });
    assert!(
        acked_by_primary,
        "no reply from m0.n0 to the writer during the partition"
    );

    let Some(browser) = chromium() else {
        println!("SKIPPED the browser part: no chromium on PATH (Debian: apt-get install -y chromium; .ci/run installs it)");
        let _ = std::fs::remove_dir_all(&root);
        return;
    };
    let s = selftest(browser, &root, &model, Duration::from_secs(90));
    assert_eq!(s["errors"], serde_json::json!([]), "console errors: {s}");
    let fit = &s["fitStats"];
    assert_eq!(fit["lanes"].as_u64(), Some(lanes.len() as u64), "{s}");
    assert!(
        lanes.len() >= 5,
        "three replicas and two clients: {lanes:?}"
    );
    assert_eq!(
        fit["arrows"].as_u64(),
        Some(n as u64),
        "every arrow drawn at full view: {s}"
    );
    assert!(
        n > 100,
        "a run of the kv store sends hundreds of messages: {n}"
    );
    assert!(
        fit["dropped"].as_u64() > Some(0),
        "messages lost to the cut are drawn: {s}"
    );
    assert!(
        fit["faults"].as_u64() >= Some(3),
        "the partition shades m0, m1, m2: {s}"
    );
    assert!(fit["highlighted"].as_u64() >= Some(2), "{s}");
    assert!(
        s["ink"]["ink"].as_u64() > Some(20_000),
        "the canvas is drawn on: {s}"
    );
    assert!(
        s["ink"]["red"].as_u64() > Some(0),
        "dropped arrows are red: {s}"
    );
    assert!(
        s["arrowInk"].as_i64() > Some(5_000),
        "the arrows are on the canvas: {s}"
    );
    assert!(
        s["droppedInk"].as_i64() > Some(0),
        "the dropped arrows are on the canvas: {s}"
    );
    assert!(
        s["zoomedArrows"].as_u64() < Some(n as u64 / 4),
        "culling: {s}"
    );
    // A click on an arrow shows that message's fields.
    let details: Value =
        serde_json::from_str(s["messageDetails"].as_str().expect("a click on an arrow")).unwrap();
    assert_eq!(details["event"], "message", "{details}");
    assert_eq!(details["msg"], s["clickedMessage"], "{details}");
    assert_eq!(details["status"], "delivered");
    assert!(
        details["type"].as_str().is_some_and(|t| t != "?"),
        "{details}"
    );
    // A click on the highlighted write shows the op.
    let op: Value =
        serde_json::from_str(s["opDetails"].as_str().expect("a click on an op")).unwrap();
    assert_eq!(op["counterexample"], true, "{op}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_page_without_messages_says_so_in_the_selftest() {
    // The self-check can fail: a folder with no message events draws no
    // arrow, and the page reports zero of them.
    let root = temp("empty");
    std::fs::write(
        root.join("m0.jsonl"),
        "{\"time\":0.5,\"seq\":0,\"level\":\"INFO\",\"machine\":\"m0\",\"node\":\"m0.n0\",\"message\":\"node started\"}\n",
    )
    .unwrap();
    let run = read_run(&root, MAX_LINES).unwrap();
    let model = view::model(&run, "empty");
    let Some(browser) = chromium() else {
        println!("SKIPPED: no chromium on PATH (Debian: apt-get install -y chromium)");
        return;
    };
    let s = selftest(browser, &root, &model, Duration::from_secs(60));
    assert_eq!(s["fitStats"]["arrows"], 0, "{s}");
    assert_eq!(s["arrowInk"], 0, "no arrow, no arrow pixels: {s}");
    assert!(s.get("messageDetails").is_none(), "{s}");
    assert_eq!(s["errors"], serde_json::json!([]), "{s}");
    let _ = std::fs::remove_dir_all(&root);
}
