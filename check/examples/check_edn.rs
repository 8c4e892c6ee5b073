//! Check a Jepsen / Knossos EDN history from the command line.
//!
//!     cargo run --release -p distzero-check --example check_edn -- [options] FILE.edn
//!
//! Options: `--tuple-keys` (Jepsen independent `[k v]` values),
//! `--nil-reads-unknown` (Knossos's reading of `:ok` nil reads),
//! `--initial N` (initial value of the register, or of every key),
//! `--time SECS`, `--memory MIB`, `--witness` (print a linearization),
//! `--model NAME` for the models of `distzero_check::objects` (counter,
//! set, queue, mutex, append); `--sequential` checks sequential
//! consistency instead (a register, or `--model` counter, set, queue,
//! mutex; see `distzero_check::sequential`).

use distzero_check::edn::{read_history_file, EdnOptions};
use distzero_check::history::Value;
use distzero_check::{check_kv_with, check_register_with, Budget, KvModel, Options, RegisterModel};
use std::time::{Duration, Instant};

fn main() {
    let mut edn = EdnOptions::default();
    let mut budget = Budget::default();
    let mut options = Options::default();
    let mut initial = Value::Nil;
    let mut model: Option<String> = None;
    let mut file = None;
    let mut sequential = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--tuple-keys" => edn.tuple_keys = true,
            "--nil-reads-unknown" => edn.nil_reads_unknown = true,
            "--witness" => options.witness = true,
            "--initial" => {
                let v = value();
                initial = v.parse::<i64>().map(Value::Int).unwrap_or(Value::Str(v));
            }
            "--time" => {
                let s: f64 = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--time takes seconds"));
                budget.max_time = Some(Duration::from_secs_f64(s));
            }
            "--memory" => {
                let m: usize = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--memory takes MiB"));
                budget.max_memory = Some(m << 20);
            }
            "--model" => model = Some(value()),
            "--sequential" => sequential = true,
            f if !f.starts_with("--") && file.is_none() => file = Some(f.to_string()),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let Some(file) = file else { usage("no file") };
    let start = Instant::now();
    if sequential {
        let verdict = if let Some(name) = &model {
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| fail(&e.to_string()));
            distzero_check::objects::check_edn_sequential(name, &file, &text, &budget)
                .unwrap_or_else(|e| fail(&e.to_string()))
                .to_string()
        } else {
            let h = read_history_file(file.as_ref(), &edn).unwrap_or_else(|e| fail(&e.to_string()));
            let m = RegisterModel { initial };
            distzero_check::sequential::check_register_sequential_with(&h.history, &m, &budget)
                .unwrap_or_else(|e| fail(&e.to_string()))
                .to_string()
        };
        println!("{verdict}\n{:.3} s", start.elapsed().as_secs_f64());
        return;
    }
    let report = if let Some(name) = model {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| fail(&e.to_string()));
        distzero_check::objects::check_edn(&name, &file, &text, &budget, &options)
            .unwrap_or_else(|e| fail(&e.to_string()))
            .map(|c| c.to_string())
    } else {
        let h = read_history_file(file.as_ref(), &edn).unwrap_or_else(|e| fail(&e.to_string()));
        let r = if h.has_keys() {
            let m = KvModel::with_initial(initial);
            check_kv_with(&h.history, &m, &budget, &options)
        } else {
            let m = RegisterModel { initial };
            check_register_with(&h.history, &m, &budget, &options)
        };
        let r = r.unwrap_or_else(|e| fail(&e.to_string()));
        r.map(|c| format!("{c}  (line {})", h.lines[c.index]))
    };
    println!("{}", report.verdict);
    if let Some(w) = &report.witness {
        println!("witness ({} ops):", w.len());
        for c in w {
            println!("  {c}");
        }
    }
    let s = &report.stats;
    println!(
        "{:.3} s, {} steps, {} of {} parts linearizable, {:.1} MiB accounted at peak",
        start.elapsed().as_secs_f64(),
        s.steps,
        s.linearizable_partitions,
        s.partitions,
        s.peak_memory as f64 / (1 << 20) as f64
    );
}

fn usage(why: &str) -> ! {
    eprintln!("{why}\nusage: check_edn [--tuple-keys] [--nil-reads-unknown] [--initial N] [--time SECS] [--memory MIB] [--witness] [--sequential] [--model counter|set|queue|mutex|append] FILE.edn");
    std::process::exit(2)
}

fn fail(why: &str) -> ! {
    eprintln!("{why}");
    std::process::exit(1)
}
