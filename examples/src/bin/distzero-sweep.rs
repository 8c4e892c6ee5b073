//! `distzero-sweep`: run a workflow of the examples over many seeds in
//! simulation, find failing seeds, shrink their fault schedule, print how
//! to replay them. (A workflow test of your own sweeps from `cargo test`:
//! `DISTZERO_SEEDS=500 cargo test simulated`.)
//!
//!     cargo run --release -p distzero-examples --bin distzero-sweep -- kv-ack-before-replicate
//!     cargo run --release -p distzero-examples --bin distzero-sweep -- kv-ack-before-replicate --replay 17

use clap::Parser;
use distzero::nemesis::{schedules_from_json, schedules_to_json, Schedule};
use distzero::sim::sweep::{run_once, schedules_for, sweep, SweepOptions};
use distzero::Settings;
use distzero_examples::scenarios;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "distzero-sweep",
    about = "Sweep a workflow of the examples over many seeds in simulation"
)]
struct Args {
    /// Workflow to run (see --list).
    workflow: Option<String>,
    /// List the workflows and exit.
    #[arg(long)]
    list: bool,
    /// Number of seeds, starting at --first (default: from DISTZERO_SEEDS,
    /// N or A..B; else 200).
    #[arg(long)]
    seeds: Option<u64>,
    /// First seed of the sweep (default: from DISTZERO_SEEDS; else 0).
    #[arg(long)]
    first: Option<u64>,
    /// Keep going after the first failure (also DISTZERO_KEEP_GOING=1).
    #[arg(long)]
    keep_going: bool,
    /// Run only shard i of n (`i/n`, seeds with seed % n == i) (default:
    /// DISTZERO_SHARD, or JOB_COMPLETION_INDEX of DISTZERO_SHARDS in a
    /// Kubernetes Indexed Job).
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(u64, u64)>,
    /// Run every seed twice with full logs and compare them byte for byte
    /// (also DISTZERO_CHECK_DETERMINISM=1).
    #[arg(long)]
    check_determinism: bool,
    /// Threads (default: DISTZERO_SWEEP_JOBS, 0 = one per core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Do not shrink the failing schedule (DISTZERO_SHRINK sets the runs
    /// shrinking may take, 300 by default; 0 = none).
    #[arg(long)]
    no_shrink: bool,
    /// Re-run one seed with full logs (byte for byte the same run).
    #[arg(long)]
    replay: Option<u64>,
    /// With --replay: run these schedules (JSON, as printed: one per
    /// nemesis of the workflow) instead of the seed's own.
    #[arg(long)]
    schedule: Option<String>,
    /// Event budget of one seed (default: DISTZERO_MAX_EVENTS); more fails the seed.
    #[arg(long)]
    max_events: Option<u64>,
    /// Wall-time budget of one seed in seconds (default: DISTZERO_SWEEP_SEED_TIMEOUT, 60);
    /// more fails the seed.
    #[arg(long, value_parser = parse_secs)]
    seed_timeout: Option<Duration>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|x| Duration::try_from_secs_f64(x).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!(
                "--seed-timeout takes a positive number of seconds, such as 60 or 0.5; got `{s}`"
            )
        })
}

fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let err = || format!("--shard takes i/n with 0 <= i < n, such as 0/4; got `{s}`");
    let (i, n) = s.split_once('/').ok_or_else(err)?;
    let (i, n) = (
        i.parse::<u64>().map_err(|_| err())?,
        n.parse::<u64>().map_err(|_| err())?,
    );
    if n == 0 || i >= n {
        return Err(err());
    }
    Ok((i, n))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match Settings::load().and_then(|s| s.writable_log_dir().map(|_| s)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.list || args.workflow.is_none() {
        println!("workflows:");
        for w in scenarios::all() {
            println!("  {}", w.name);
        }
        return if args.list {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        };
    }
    let name = args.workflow.clone().unwrap_or_default();
    let workflow = match scenarios::by_name(&name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // The one place the sweep and its replay get what a run reads.
    let mut opts = match SweepOptions::from_settings(&settings) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut budget_args = String::new();
    if let Some(n) = args.max_events {
        opts.sim.max_events = n;
        budget_args.push_str(&format!(" --max-events {n}"));
    }
    if let Some(d) = args.seed_timeout {
        opts.sim.seed_timeout = d;
        budget_args.push_str(&format!(" --seed-timeout {}", d.as_secs_f64()));
    }
    let log_root = opts.log_root.clone();
    // The settings a run reads that are not at their default (buggify,
    // reorder, duplicate, latency, loss, logs, budgets): the replay line
    // repeats them, so it re-runs what the sweep ran wherever it is pasted.
    let prefix = distzero::sim::replay_env(&settings);
    let command = |seed: u64, schedules: Option<&[Schedule]>| {
        let schedule = match schedules {
            Some(s) => format!(" --schedule '{}'", schedules_to_json(s)),
            None => String::new(),
        };
        format!("{prefix}cargo run --release -p distzero-examples --bin distzero-sweep -- {name} --replay {seed}{budget_args}{schedule}")
    };

    if let Some(seed) = args.replay {
        let schedules = match &args.schedule {
            Some(json) => match schedules_from_json(json, "--schedule") {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            },
            None => None,
        };
        let suffix = if args.schedule.is_some() {
            "-schedule"
        } else {
            ""
        };
        let dir: PathBuf = log_root
            .join(&workflow.name)
            .join(format!("simulated-{seed}{suffix}"));
        let shown = match &schedules {
            Some(s) => s.clone(),
            None => schedules_for(&workflow, seed, &opts.sim),
        };
        println!("replaying {name} with seed {seed}; schedule:");
        for s in &shown {
            println!("{}", s.describe().trim_end());
        }
        let result = run_once(&workflow, seed, schedules.as_deref(), Some(&dir), &opts.sim);
        println!("logs: {}", dir.display());
        println!("view: {}", distzero::sim::view_command(&dir));
        return match result {
            Ok(()) => {
                println!("PASSED");
                ExitCode::SUCCESS
            }
            Err(m) => {
                println!("FAILED: {m}");
                ExitCode::FAILURE
            }
        };
    }

    // The flags win over the settings (DISTZERO_SEEDS, DISTZERO_SHARD, …).
    let first = args.first.unwrap_or(opts.seeds.start);
    let seeds = args.seeds.unwrap_or(opts.seeds.end - opts.seeds.start);
    opts.seeds = first..first.saturating_add(seeds);
    opts.jobs = args.jobs.unwrap_or(opts.jobs);
    opts.stop_at_first &= !args.keep_going;
    opts.shard = args.shard.or(opts.shard);
    opts.check_determinism |= args.check_determinism;
    opts.progress = !args.quiet;
    if args.no_shrink {
        opts.shrink_budget = 0;
    }
    let report = sweep(&workflow, &opts, &command);
    print!("{report}");
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
