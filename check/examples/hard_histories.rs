//! Figures for the README: the checker on synthetic hard histories (see
//! `distzero_check::generate::hard_and_plain`), with the wall time, the
//! memory the checker accounted and the process's peak resident memory
//! (Linux's VmHWM).
//!
//!     cargo run --release -p distzero-check --example hard_histories [width] [secs]
//!
//! `WHAT=bounds` runs only the sequential-consistency and list-append
//! checkers under time and memory budgets.

use distzero_check::generate::{concurrent_writes_then_bad_read, hard_and_plain};
use distzero_check::{check_kv_with, check_register_with, Budget, KvModel, Options, RegisterModel};
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let width: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(25);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let what = std::env::var("WHAT").unwrap_or_else(|_| "all".into());
    let o = Options::default();
    if what == "all" || what == "c50" {
        let h = hard_and_plain(width, 8, 200);
        let start = Instant::now();
        let r = check_kv_with(&h, &KvModel::default(), &Budget::default(), &o).unwrap();
        report(
            &format!("hard_and_plain({width}, 8, 200), default budget"),
            h.len(),
            start,
            &r.verdict.to_string(),
            &r.stats,
        );
    }
    for budget in [
        ("1 s", Budget::time(Duration::from_secs(1))),
        (
            &*format!("{secs} s"),
            Budget::time(Duration::from_secs(secs)),
        ),
        (
            "4 MiB, no time limit",
            Budget::unlimited().with_memory(4 << 20),
        ),
    ] {
        if what != "all" && !budget.0.contains(&what) {
            continue;
        }
        let h = concurrent_writes_then_bad_read(None, width, 0, Duration::ZERO);
        let start = Instant::now();
        let r = check_register_with(&h, &RegisterModel::default(), &budget.1, &o).unwrap();
        report(
            &format!("concurrent_writes_then_bad_read({width}), {}", budget.0),
            h.len(),
            start,
            &r.verdict.to_string(),
            &r.stats,
        );
    }
    if what == "all" || what == "bounds" {
        // The other checkers under a time budget and a memory budget. For
        // sequential consistency: 22 concurrent one-shot writers, and a
        // reader that sees 1, 0, 1 (no order has it: only a search over the
        // writers' orders shows it).
        let mut h = distzero_check::history::History::new();
        let ms = Duration::from_millis;
        for p in 0..22u64 {
            let _ = h.invoke(p, distzero_check::history::F::Write, None, p as i64, ms(0));
        }
        for p in 0..22u64 {
            let _ = h.ok(p, p as i64, ms(1));
        }
        for (k, v) in [1, 0, 1].into_iter().enumerate() {
            let t = ms(2 + 2 * k as u64);
            let read = distzero_check::history::F::Read;
            let _ = h.invoke(99, read, None, distzero_check::history::Value::Nil, t);
            let _ = h.ok(99, v, t + ms(1));
        }
        for (name, budget) in [
            ("1 s", Budget::time(Duration::from_secs(1))),
            ("4 MiB", Budget::unlimited().with_memory(4 << 20)),
        ] {
            let start = Instant::now();
            let v = distzero_check::sequential::check_register_sequential(&h, &budget).unwrap();
            println!(
                "sequential, 22 writers and reads 1 0 1, {name}: {:.3} s, process peak {} — {}",
                start.elapsed().as_secs_f64(),
                vm_hwm(),
                v.to_string().lines().next().unwrap_or("")
            );
        }
        let txns = distzero_check::generate::unfindable_g_single(3000, 60);
        for (name, budget) in [
            ("0.2 s", Budget::time(Duration::from_millis(200))),
            ("4 MiB", Budget::unlimited().with_memory(4 << 20)),
        ] {
            let start = Instant::now();
            let r = distzero_check::elle::check(&txns, &budget);
            println!(
                "elle, unfindable_g_single(3000, 60) ({} txns), {name}: {:.3} s, process peak {} — {}{}",
                txns.len(),
                start.elapsed().as_secs_f64(),
                vm_hwm(),
                r.to_string().lines().next().unwrap_or(""),
                r.incomplete.map(|w| format!(" (search incomplete: {w})")).unwrap_or_default()
            );
        }
    }
}

fn report(name: &str, ops: usize, start: Instant, verdict: &str, stats: &distzero_check::Stats) {
    let wall = start.elapsed();
    println!(
        "{name}: {ops} records, {:.3} s, {} steps, accounted peak {:.1} MiB, process peak {} — {}",
        wall.as_secs_f64(),
        stats.steps,
        stats.peak_memory as f64 / (1 << 20) as f64,
        vm_hwm(),
        verdict.lines().collect::<Vec<_>>().join(" | ")
    );
}

/// The process's peak resident memory so far.
fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}
