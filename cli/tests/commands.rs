//! The `distzero` binary as a person runs it: `logs` merges and filters,
//! `view` writes the page, bad input is an error naming what is wrong.

use std::path::PathBuf;
use std::process::Command;

fn folder(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let d = std::env::temp_dir().join(format!("distzero-cli-cmd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for (f, text) in files {
        std::fs::write(d.join(f), text).unwrap();
    }
    d
}

fn distzero(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_distzero"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

const M0: &str = r#"{"time":0.001,"seq":1,"level":"INFO","machine":"m0","node":"m0.n0","message":"send","msg":0,"from":"m0.n0","to":"m1.n0","msg_type":"Ping","size":3}
{"time":0.004,"seq":4,"level":"DEBUG","machine":"m0","node":"m0.n0","message":"tick"}
"#;
const M1: &str = r#"{"time":0.002,"seq":2,"level":"INFO","machine":"m1","node":"m1.n0","message":"deliver","msg":0,"from":"m0.n0","to":"m1.n0","size":3}
{"time":0.002,"seq":3,"level":"INFO","machine":"m1","node":"m1.n0","message":"send","msg":1,"from":"m1.n0","to":"m0.n0","msg_type":"Pong","size":3}
"#;

#[test]
fn logs_merges_in_seq_order_and_filters() {
    let d = folder("logs", &[("m0.jsonl", M0), ("m1.jsonl", M1)]);
    let dir = d.to_str().unwrap();
    let (ok, out, err) = distzero(&["logs", dir]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].contains("send    #0 Ping m0.n0 -> m1.n0 (3 B)"),
        "{out}"
    );
    assert!(
        lines[1].contains("deliver #0 Ping m0.n0 -> m1.n0"),
        "the delivery names the type: {out}"
    );
    assert!(lines[3].ends_with("tick"), "{out}");
    let (_, out, _) = distzero(&["logs", dir, "--type", "Ping"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let (_, out, _) = distzero(&["logs", dir, "--level", "info", "--from", "2ms"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let (_, out, _) = distzero(&["logs", dir, "--json", "--node", "m0.n0", "--to", "0.003"]);
    for l in out.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["seq"].as_u64().unwrap() <= 3, "{l}");
    }
    assert_eq!(
        out.lines().count(),
        3,
        "a message to or from m0.n0 is its: {out}"
    );
    let (ok, _, err) = distzero(&["logs", dir, "--from", "soon"]);
    assert!(!ok && err.contains("`soon` is not a time"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn view_writes_one_page_and_bad_lines_name_their_place() {
    let d = folder("view", &[("m0.jsonl", M0), ("m1.jsonl", M1)]);
    let dir = d.to_str().unwrap();
    let page = d.join("page.html");
    let (ok, out, err) = distzero(&["view", dir, "-o", page.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("2 messages, 0 faults, 0 operations on 2 lanes"),
        "{out}"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<canvas id=\"canvas\">") && !html.contains("/*DATA*/"));
    assert!(
        !html.contains("src=\"http"),
        "self-contained: nothing fetched"
    );
    std::fs::write(d.join("m1.jsonl"), "{\"time\":0.1,\"seq\":9}\n{\"time\":\n").unwrap();
    let (ok, _, err) = distzero(&["view", dir]);
    assert!(!ok);
    assert!(
        err.starts_with("distzero: m1.jsonl:2: not a JSON log line"),
        "{err}"
    );
    let (ok, _, err) = distzero(&["logs", "/nonexistent/run"]);
    assert!(
        !ok && err.contains("cannot read the log folder /nonexistent/run"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
