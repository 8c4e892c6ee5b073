//! The checker on Porcupine's test data, kept in `check/data/porcupine`
//! (MIT, see its README): nothing is fetched. For each history: the
//! verdict, whether it is the one Porcupine's tests expect, the wall time
//! of reading and checking, and the peak resident memory of checking it:
//! each history is checked in a child process of its own (this binary,
//! `--one N`), which reports its Linux VmHWM, so no history's peak carries
//! over to the next.
//!
//!     cargo run --release -p distzero-check --example porcupine_bench [-- SECS]
//!
//! SECS is each check's time budget (default 60). Exits 1 if a verdict
//! differs from Porcupine's (an `Unknown` is reported, not counted as one).

use distzero_check::edn::read_jepsen_log;
use distzero_check::objects::check_edn;
use distzero_check::{check_register_with, Budget, Options, RegisterModel};
use std::path::Path;
use std::time::{Duration, Instant};

/// (file under check/data/porcupine, model, Porcupine's verdict).
const HISTORIES: &[(&str, &str, bool)] = &[
    ("kv/c01-ok.txt", "append", true),
    ("kv/c01-bad.txt", "append", false),
    ("jepsen/etcd_000.log", "register", false),
    ("jepsen/etcd_001.log", "register", false),
    ("jepsen/etcd_003.log", "register", false),
    ("jepsen/etcd_004.log", "register", false),
    ("jepsen/etcd_002.log", "register", true),
    ("jepsen/etcd_005.log", "register", true),
    ("jepsen/etcd_007.log", "register", true),
    ("jepsen/etcd_018.log", "register", true),
];

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(60.0);
    if std::env::args().nth(1).as_deref() == Some("--one") {
        let n: usize = std::env::args()
            .nth(2)
            .and_then(|a| a.parse().ok())
            .unwrap_or(usize::MAX);
        let secs: f64 = std::env::args()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .unwrap_or(60.0);
        let Some(&one) = HISTORIES.get(n) else {
            eprintln!("--one N takes a history number below {}", HISTORIES.len());
            std::process::exit(2);
        };
        std::process::exit(if run(one, secs) { 0 } else { 1 });
    }
    println!(
        "{:<20} {:>7} {:<8} {:<18} {:>9} {:>9} {:>11}",
        "history", "records", "model", "verdict", "read ms", "check ms", "peak RSS"
    );
    let me = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let mut wrong = 0;
    for n in 0..HISTORIES.len() {
        let status = std::process::Command::new(&me)
            .args(["--one", &n.to_string(), &secs.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("{}: {e}", me.display()));
        if !status.success() {
            wrong += 1;
        }
    }
    if wrong > 0 {
        eprintln!("{wrong} verdicts differ from Porcupine's");
        std::process::exit(1);
    }
}

/// Check one history and print its row; false if the verdict is wrong.
fn run((file, model, linearizable): (&str, &str, bool), secs: f64) -> bool {
    let budget = Budget::time(Duration::from_secs_f64(secs));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/porcupine");
    {
        let path = dir.join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let start = Instant::now();
        let (ops, verdict, read, checked) = if model == "register" {
            let h = read_jepsen_log(file, &text).unwrap_or_else(|e| panic!("{e}"));
            let read = start.elapsed();
            let r = check_register_with(
                &h.history,
                &RegisterModel::default(),
                &budget,
                &Options::default(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let v = r.verdict;
            let verdict = (v.is_linearizable(), v.is_not_linearizable(), v.to_string());
            (h.history.len(), verdict, read, start.elapsed() - read)
        } else {
            let records = text.lines().filter(|l| !l.trim().is_empty()).count();
            let r = check_edn(model, file, &text, &budget, &Options::default())
                .unwrap_or_else(|e| panic!("{e}"));
            let v = r.verdict;
            let verdict = (v.is_linearizable(), v.is_not_linearizable(), v.to_string());
            // check_edn reads and checks in one call: all of it is "check".
            (records, verdict, Duration::ZERO, start.elapsed())
        };
        let (yes, no, text) = verdict;
        let shown = if yes {
            "linearizable"
        } else if no {
            "not linearizable"
        } else {
            "unknown"
        };
        let agrees = (yes && linearizable) || (no && !linearizable);
        println!(
            "{:<20} {:>7} {:<8} {:<18} {:>9.1} {:>9.1} {:>8} kB{}",
            file,
            ops,
            model,
            shown,
            read.as_secs_f64() * 1e3,
            checked.as_secs_f64() * 1e3,
            peak_kb().map_or("?".into(), |k| k.to_string()),
            if agrees {
                String::new()
            } else {
                format!(
                    "  <- Porcupine: {}; {}",
                    linearizable,
                    text.lines().next().unwrap_or("")
                )
            }
        );
        // An Unknown is reported, not counted as a wrong verdict.
        agrees || !(yes || no)
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
