//! The linearizability checker on generated histories of a correct register
//! and key-value map (8 clients, 1% of ops with unknown outcome), and on the
//! same histories with their last read corrupted (so the search must exhaust
//! every ordering before it can say no, then shrink a counterexample), with
//! and without unknown outcomes (they are what makes refuting expensive).
//!
//!     cargo bench --bench checker

use distzero::check::generate::{generate, Workload};
use distzero::check::{check_kv, check_register, Budget, Verdict};
use distzero::history::{Call, History, OpKind, Value, F};
use std::time::{Duration, Instant};

fn main() {
    let budget = Budget::time(Duration::from_secs(30));
    println!(
        "{:<9} {:>6} {:>5} {:>5} {:>10}  verdict",
        "model", "ops", "keys", "info", "wall ms"
    );
    for (name, keys) in [("register", 0usize), ("kv", 100)] {
        for ops in [1_000usize, 5_000, 10_000] {
            let h = generate(&Workload {
                seed: 42,
                ops,
                keys,
                ..Workload::default()
            });
            run(name, ops, keys, &h, &budget, "");
            for info_per_mille in [0, 10] {
                let h = generate(&Workload {
                    seed: 42,
                    ops,
                    keys,
                    info_per_mille,
                    ..Workload::default()
                });
                if let Some(bad) = corrupt_last_read(&h) {
                    run(name, ops, keys, &bad, &budget, " (last read corrupted)");
                }
            }
        }
    }
}

fn run(name: &str, ops: usize, keys: usize, h: &History, budget: &Budget, note: &str) {
    let info = h.ops().iter().filter(|o| o.kind == OpKind::Info).count();
    let start = Instant::now();
    let verdict = if keys == 0 {
        check_register(h, budget)
    } else {
        check_kv(h, budget)
    };
    let wall = start.elapsed();
    let summary = match &verdict {
        Ok(Verdict::Linearizable) => "linearizable".to_string(),
        Ok(Verdict::NotLinearizable(f)) => format!(
            "NOT linearizable: {} op(s) of key {:?} ({})",
            f.ops.len(),
            f.partition.as_deref().unwrap_or("-"),
            if f.minimal { "minimal" } else { "not minimal" }
        ),
        Ok(Verdict::Unknown(r)) => format!("unknown: {r}"),
        Err(e) => format!("bad history: {e}"),
    };
    println!(
        "{name:<9} {ops:>6} {keys:>5} {info:>5} {:>10.1}  {summary}{note}",
        wall.as_secs_f64() * 1e3
    );
    if let Ok(Verdict::NotLinearizable(f)) = &verdict {
        for c in &f.ops {
            println!("{:>39}{}", "", describe(c));
        }
    }
}

fn describe(c: &Call) -> String {
    c.to_string()
}

/// The last ok read of `h`, made to return a value never written.
fn corrupt_last_read(h: &History) -> Option<History> {
    let mut ops = h.ops().to_vec();
    let i = ops
        .iter()
        .rposition(|o| o.kind == OpKind::Ok && o.f == F::Read)?;
    ops[i].value = Value::Int(-1);
    Some(History::from_ops(ops))
}
