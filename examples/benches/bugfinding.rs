//! Bug-finding power: for every example workflow, how many seeds and how
//! much wall time a sweep needs to find its planted bug, with the default
//! nemesis and with swarm testing, and how small the shrunk schedule is;
//! for the correct systems, that they stay clean over many seeds.
//!
//!     cargo bench -p distzero-examples --bench bugfinding
//!
//! Columns: the first failing seed, seeds up to it, wall seconds to it
//! (2 cores), the shrunk schedule (`Nf/Ms`: N faults in M steps, and the
//! seed of the candidate that shrank smallest, see
//! `SweepOptions::candidates` and `shrink_goal`), wall seconds re-running,
//! shrinking and searching for a candidate that shrinks smaller. Seeds
//! are hunted in chunks of 200; the chunk that fails is swept again with
//! room for that search.
//!
//! Settings: `BUGFINDING_CLEAN_SEEDS` (default 2000) seeds for the correct
//! systems; `BUGFINDING_BUDGET_SECS` (default 60) wall time a bug may take
//! before it counts as not found; `BUGFINDING_ONLY` runs only workflows
//! whose name contains it. Threads: `DISTZERO_SWEEP_JOBS` (0 = every core).
//! A benchmark, not a test: it prints figures and asserts nothing.

use distzero::sim::sweep::{sweep, SweepOptions, SweepReport, Workflow};
use distzero::Settings;
use distzero_examples::scenarios;
use std::time::{Duration, Instant};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn options(swarm: bool, seeds: std::ops::Range<u64>) -> SweepOptions {
    let settings = Settings::load().expect("settings");
    let mut o = SweepOptions::from_settings(&settings).expect("sweep settings");
    o.sim.swarm = swarm;
    o.seeds = seeds;
    o.progress = false;
    o.log_root = std::env::temp_dir().join(format!("distzero-bugfinding-{}", std::process::id()));
    o
}

/// Sweep `w` in chunks of seeds until a failure or the budget: the report
/// of the chunk that failed, seeds run before it, and the wall time to the
/// first failure (or in all, if none).
fn hunt(w: &Workflow, swarm: bool, budget: Duration) -> (Option<SweepReport>, u64, Duration) {
    let start = Instant::now();
    let mut ran = 0;
    let chunk = 200;
    let mut first = 0;
    while start.elapsed() < budget {
        let before = start.elapsed();
        let report = sweep(w, &options(swarm, first..first + chunk), &|_, _| {
            String::new()
        });
        if report.to_first_failure.is_some() {
            // Again from this chunk's start with room to search further
            // for candidates that shrink small (as a user's sweep over
            // many seeds does): it finds the same first failure.
            let report = sweep(w, &options(swarm, first..first + 100 * chunk), &|_, _| {
                String::new()
            });
            let t = report.to_first_failure.unwrap_or_default();
            return (Some(report), ran, before + t);
        }
        ran += report.ran;
        first += chunk;
    }
    (None, ran, start.elapsed())
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the arguments.
    let clean_seeds: u64 = env("BUGFINDING_CLEAN_SEEDS", 2000);
    let budget = Duration::from_secs(env("BUGFINDING_BUDGET_SECS", 60));
    let only: String = env("BUGFINDING_ONLY", String::new());
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("bug-finding power ({jobs} cores; budget {budget:?} a bug; {clean_seeds} seeds a correct system)");
    println!(
        "{:<34} {:<8} {:>10} {:>8} {:>10} {:>10} {:>12}",
        "workflow", "nemesis", "1st seed", "seeds", "wall s", "shrunk", "shrink s"
    );
    for w in scenarios::all() {
        if !w.name.contains(&only) {
            continue;
        }
        let planted = scenarios::planted_bug(&w.name);
        for swarm in [false, true] {
            let nemesis = if swarm { "swarm" } else { "default" };
            if planted {
                let (report, ran_before, wall) = hunt(&w, swarm, budget);
                match report
                    .as_ref()
                    .and_then(|r| r.failures.first().map(|f| (r, f)))
                {
                    Some((r, f)) => {
                        // The first failing seed (the report shows the
                        // candidate that shrank smallest).
                        let first = r.also_failing.iter().copied().chain([f.seed]).min();
                        let first = first.unwrap_or(f.seed);
                        let shrunk = match &f.shrunk {
                            Some((s, _)) => format!(
                                "{}f/{}s",
                                s.iter().map(|s| s.faults()).sum::<usize>(),
                                s.iter().map(|s| s.steps.len()).sum::<usize>()
                            ),
                            None => "-".into(),
                        };
                        let shrink = r.shrinking.as_secs_f64();
                        // Seeds up to the first failing one (chunks run from seed 0).
                        let seeds = first + 1;
                        debug_assert!(seeds >= ran_before);
                        println!(
                            "{:<34} {:<8} {:>10} {:>8} {:>10.2} {:>10} {:>12.2}",
                            w.name,
                            nemesis,
                            first,
                            seeds,
                            wall.as_secs_f64(),
                            format!("{shrunk} #{}", f.seed),
                            shrink
                        );
                    }
                    None => println!(
                        "{:<34} {:<8} {:>10} {:>8} {:>10.2} {:>10} {:>12}",
                        w.name,
                        nemesis,
                        "NOT FOUND",
                        ran_before,
                        wall.as_secs_f64(),
                        "-",
                        "-"
                    ),
                }
            } else {
                let start = Instant::now();
                let mut o = options(swarm, 0..clean_seeds);
                o.stop_at_first = false;
                o.shrink_budget = 0;
                let r = sweep(&w, &o, &|_, _| String::new());
                let verdict = if r.passed() {
                    "clean".to_string()
                } else {
                    format!("{} FAILING", r.failures.len())
                };
                println!(
                    "{:<34} {:<8} {:>10} {:>8} {:>10.2} {:>10} {:>12}",
                    w.name,
                    nemesis,
                    verdict,
                    r.ran,
                    start.elapsed().as_secs_f64(),
                    "-",
                    "-"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(options(false, 0..0).log_root);
}
