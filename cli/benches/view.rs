//! How `distzero view` holds up at 100,000 messages: a synthetic run
//! (10 nodes, 100k messages, 3% of them lost, a partition, a crash, 2,000
//! operations) is written as JSON lines, read and drawn; then headless
//! Chromium opens the page with `#bench` and the page times its own load,
//! full redraws, zoomed redraws, pan frames and click picking.
//!
//!     cargo bench -p distzero-cli --bench view            (MESSAGES=N to change the size)

use distzero_cli::browser::{chromium, dump_dom, pre_json};
use distzero_cli::run::{read_run, MAX_LINES};
use distzero_cli::view;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

const NODES: u64 = 10;
const TYPES: [&str; 6] = ["Append", "AppendOk", "Vote", "VoteOk", "Put", "PutOk"];

/// A small deterministic generator (no dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn line(
    out: &mut Vec<(f64, String, String)>,
    t: f64,
    machine: &str,
    node: Option<&str>,
    rest: &str,
) {
    let node = node.map_or("null".to_string(), |n| format!("\"{n}\""));
    out.push((
        t,
        machine.to_string(),
        format!("\"level\":\"INFO\",\"machine\":\"{machine}\",\"node\":{node},{rest}"),
    ));
}

fn write_run(dir: &Path, messages: u64) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Lcg(42);
    let mut ev = Vec::new();
    let span = 3.0;
    for k in 0..messages {
        let t = k as f64 * span / messages as f64;
        let from = rng.below(NODES);
        let to = (from + 1 + rng.below(NODES - 1)) % NODES;
        let ty = TYPES[rng.below(TYPES.len() as u64) as usize];
        let (fm, tm) = (format!("m{from}"), format!("m{to}"));
        let (fnode, tnode) = (format!("m{from}.n0"), format!("m{to}.n0"));
        line(&mut ev, t, &fm, Some(&fnode), &format!("\"message\":\"send\",\"msg\":{k},\"from\":\"{fnode}\",\"to\":\"{tnode}\",\"msg_type\":\"{ty}\",\"size\":{}", 8 + rng.below(64)));
        if rng.below(100) < 3 {
            line(&mut ev, t, &fm, Some(&fnode), &format!("\"message\":\"drop\",\"msg\":{k},\"from\":\"{fnode}\",\"to\":\"{tnode}\",\"size\":20,\"reason\":\"loss\""));
        } else {
            let lat = 0.0005 + rng.below(1000) as f64 * 1e-6;
            line(&mut ev, t + lat, &tm, Some(&tnode), &format!("\"message\":\"deliver\",\"msg\":{k},\"from\":\"{fnode}\",\"to\":\"{tnode}\",\"size\":20"));
        }
    }
    for (t, what, rest) in [
        (
            1.0,
            "nemesis",
            "\"fault\":\"Partition([[2], [0, 1, 3, 4, 5, 6, 7, 8, 9]])\"",
        ),
        (1.0, "cut", "\"from\":\"m2\",\"to\":\"m0\""),
        (1.3, "heal all", "\"x\":0"),
        (2.0, "crash", "\"event_machine\":\"m5\""),
        (2.2, "restart", "\"event_machine\":\"m5\""),
    ] {
        line(
            &mut ev,
            t,
            "controller",
            None,
            &format!("\"message\":\"{what}\",{rest}"),
        );
    }
    for p in 0..2u64 {
        let node = format!("m{}.n0", 8 + p);
        let machine = format!("m{}", 8 + p);
        for i in 0..1000u64 {
            let t0 = i as f64 * 0.003 + p as f64 * 0.001;
            let t1 = t0 + 0.002;
            for (t, kind) in [(t0, "invoke"), (t1, "ok")] {
                let op = format!("{{\\\"process\\\":{p},\\\"kind\\\":\\\"{kind}\\\",\\\"f\\\":\\\"write\\\",\\\"key\\\":\\\"k1\\\",\\\"value\\\":{i},\\\"time_ns\\\":{}}}", (t * 1e9) as u64);
                line(
                    &mut ev,
                    t,
                    &machine,
                    Some(&node),
                    &format!("\"message\":\"history\",\"op\":\"{op}\""),
                );
            }
        }
    }
    ev.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut files: std::collections::BTreeMap<String, String> = Default::default();
    for (seq, (t, machine, rest)) in ev.iter().enumerate() {
        let f = files.entry(machine.clone()).or_default();
        let _ = writeln!(f, "{{\"time\":{t:.9},\"seq\":{seq},{rest}}}");
    }
    for (m, text) in files {
        std::fs::write(dir.join(format!("{m}.jsonl")), text).unwrap();
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs it small.
    let quick = !std::env::args().any(|a| a == "--bench");
    let messages: u64 = if quick {
        2_000
    } else {
        std::env::var("MESSAGES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000)
    };
    let dir = std::env::temp_dir().join(format!("distzero-view-bench-{}", std::process::id()));
    write_run(&dir, messages);
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let t = Instant::now();
    let run = read_run(&dir, MAX_LINES).unwrap();
    let read = t.elapsed();
    let t = Instant::now();
    let model = view::model(&run, "bench");
    let modelled = t.elapsed();
    let page = view::html(&model);
    let total = read + modelled;
    let path = dir.join("view.html");
    std::fs::write(&path, &page).unwrap();
    println!(
        "distzero view at {messages} messages ({} log lines, {:.1} MB of JSON lines)",
        run.lines.len(),
        bytes as f64 / 1e6
    );
    println!(
        "  distzero view: read+merge {:.0} ms, model {:.0} ms, total {:.0} ms; page {:.1} MB",
        read.as_secs_f64() * 1e3,
        modelled.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
        page.len() as f64 / 1e6
    );
    let Some(browser) = chromium() else {
        println!("  browser: SKIPPED (no chromium on PATH; Debian: apt-get install -y chromium)");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    let t = Instant::now();
    let dom = dump_dom(
        browser,
        &format!("file://{}#bench", path.display()),
        Duration::from_secs(180),
    );
    let wall = t.elapsed();
    let b = pre_json(&dom, "bench");
    let ms = |k: &str| b[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "  browser (headless Chromium, {:.1} s for the whole browser run):",
        wall.as_secs_f64()
    );
    println!("    load (navigation start to first frame drawn): {:.0} ms (JSON.parse {:.0} ms, prepare {:.0} ms, first draw {:.0} ms)", ms("loadMs"), ms("parseMs"), ms("prepareMs"), ms("firstDrawMs"));
    println!(
        "    redraw, whole run ({} arrows): {:.1} ms",
        b["arrowsAll"],
        ms("drawAllMs")
    );
    println!(
        "    redraw, zoomed to 1% of the run ({} arrows): {:.1} ms",
        b["arrowsZoom1pct"],
        ms("drawZoom1pctMs")
    );
    println!("    pan frame, 10% window: {:.1} ms", ms("panFrame10pctMs"));
    println!(
        "    click (pick the nearest event, whole run): {:.2} ms",
        ms("clickAllMs")
    );
    if b["errors"] != serde_json::json!([]) {
        println!("    console errors: {}", b["errors"]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
