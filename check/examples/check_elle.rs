//! Check an Elle / Jepsen list-append history (EDN) from the command line,
//! printing the report, the wall time and the process's peak resident
//! memory (Linux's VmHWM).
//!
//!     cargo run --release -p distzero-check --example check_elle -- [options] FILE.edn
//!
//! Options: `--time SECS`, `--memory MIB`, `--steps N` (the cycle search's
//! budget, see `distzero_check::elle`); `--strict` (real-time order
//! counts: strict serializability) or `--session` (each process's order
//! counts).

use distzero_check::elle::{check_with, read_edn, Isolation, Validity};
use distzero_check::Budget;
use std::time::{Duration, Instant};

fn main() {
    let mut budget = Budget::default();
    let mut file = None;
    let mut isolation = Isolation::Serializable;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut number = |what: &str| -> f64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{a} takes {what}")))
        };
        match a.as_str() {
            "--time" => budget.max_time = Some(Duration::from_secs_f64(number("seconds"))),
            "--memory" => budget.max_memory = Some((number("MiB") as usize) << 20),
            "--steps" => budget.max_steps = Some(number("a number") as u64),
            "--strict" => isolation = Isolation::StrictSerializable,
            "--session" => isolation = Isolation::StrongSessionSerializable,
            f if !f.starts_with("--") && file.is_none() => file = Some(f.to_string()),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let Some(file) = file else { usage("no file") };
    let start = Instant::now();
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| fail(&format!("{file}: {e}")));
    let txns = read_edn(&file, &text).unwrap_or_else(|e| fail(&e.to_string()));
    let read = start.elapsed();
    let report = check_with(&txns, &budget, isolation);
    println!("{report}");
    for c in report.cycles() {
        if let Err(e) = c.verify(&txns) {
            println!("(a reported {} does not check: {e})", c.name());
        }
    }
    println!(
        "{} transactions, {} dependencies, {} cyclic components, {} search steps; read {:.1} ms, checked {:.1} ms; peak RSS {}",
        report.checked,
        report.edges,
        report.components,
        report.steps,
        read.as_secs_f64() * 1e3,
        report.elapsed.as_secs_f64() * 1e3,
        peak_rss()
    );
    std::process::exit(match report.validity {
        Validity::Valid => 0,
        Validity::Invalid => 1,
        Validity::Unknown(_) => 3,
    });
}

fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn usage(why: &str) -> ! {
    eprintln!("{why}\nusage: check_elle [--strict|--session] [--time SECS] [--memory MIB] [--steps N] FILE.edn");
    std::process::exit(2)
}

fn fail(why: &str) -> ! {
    eprintln!("{why}");
    std::process::exit(2)
}
