//! The list-append checker on generated histories: serial executions of a
//! correct store (valid) and the same with every 10th transaction reading
//! a snapshot 3 transactions stale (invalid), and Elle's `unfindable
//! G-single` construction. Each runs in a child process of its own (this
//! binary, `--one N`), which reports its wall time and peak resident
//! memory (Linux's VmHWM).
//!
//!     cargo run --release -p distzero-check --example elle_bench

use distzero_check::elle::{check, Txn};
use distzero_check::generate::{list_append, unfindable_g_single};
use distzero_check::Budget;
use std::time::Instant;

/// A case: its name, and how to make its history.
type Case = (String, Box<dyn Fn() -> Vec<Txn>>);

fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = Vec::new();
    for n in [10_000usize, 100_000] {
        v.push((
            format!("serial, {n} txns, 20 keys"),
            Box::new(move || list_append(7, n, 20, None)),
        ));
        v.push((
            format!("stale reads, {n} txns, 20 keys"),
            Box::new(move || list_append(7, n, 20, Some((10, 3)))),
        ));
    }
    v.push((
        "Elle's unfindable G-single (1000, 30)".into(),
        Box::new(|| unfindable_g_single(1000, 30)),
    ));
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--one") {
        let n: usize = args
            .get(2)
            .and_then(|a| a.parse().ok())
            .unwrap_or(usize::MAX);
        let cases = cases();
        let Some((name, make)) = cases.get(n) else {
            eprintln!("--one N takes a case number below {}", cases.len());
            std::process::exit(2);
        };
        let txns = make();
        let start = Instant::now();
        let r = check(&txns, &Budget::default());
        let wall = start.elapsed();
        let verdict = r.to_string();
        println!(
            "{:<38} {:>7} {:>8} {:>10} {:>9.1} {:>9} kB  {}",
            name,
            txns.len(),
            r.edges,
            r.steps,
            wall.as_secs_f64() * 1e3,
            peak_kb().map_or("?".into(), |k| k.to_string()),
            verdict.lines().next().unwrap_or("")
        );
        return;
    }
    println!(
        "{:<38} {:>7} {:>8} {:>10} {:>9} {:>12}  verdict",
        "history", "txns", "edges", "steps", "check ms", "peak RSS"
    );
    let me = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    for n in 0..cases().len() {
        let status = std::process::Command::new(&me)
            .args(["--one", &n.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("{}: {e}", me.display()));
        if !status.success() {
            std::process::exit(1);
        }
    }
}

fn peak_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    l["VmHWM:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
