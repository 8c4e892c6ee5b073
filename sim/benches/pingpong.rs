//! Ping-pong: simulation speed and how it scales with the cluster.
//!
//!     cargo bench -p distzero-sim --bench pingpong
//!
//! Every case runs in a child process (this binary with `--case`), so each
//! peak memory figure (VmHWM) is that case's own. Environment:
//! `PINGPONG_DELIVERIES` (default 20,000,000) sets the deliveries per case,
//! so one case takes one to a few seconds; `PINGPONG_IDLE` (default 100,000)
//! the idle machines of the memory case.

use distzero_sim::workload::{self, Shape};
use std::process::Command;

const SEED: u64 = 7;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Rounds so that a case makes about `budget` deliveries (at least 3 rounds).
fn rounds_for(n: u32, shape: Shape, budget: u64) -> u32 {
    let per_round = workload::Topology::new(n, shape, SEED).deliveries(1);
    (budget / per_round).clamp(3, 10_000_000) as u32
}

fn child(args: &[String]) {
    match args[0].as_str() {
        "idle" => {
            let count: u32 = args[1].parse().expect("count");
            let bytes = workload::idle_machine_bytes(count).expect("idle run");
            println!("idle {count} {bytes:.1}");
        }
        shape => {
            let shape = Shape::parse(shape).expect("shape");
            let n: u32 = args[1].parse().expect("n");
            let rounds: u32 = args[2].parse().expect("rounds");
            let o = workload::run(n, shape, rounds, SEED).expect("run");
            println!(
                "case {} {} {} {} {} {} {} {}",
                shape.name(),
                o.n,
                o.rounds,
                o.deliveries,
                o.wall.as_nanos(),
                o.simulated.as_nanos(),
                workload::peak_rss_bytes().unwrap_or(0),
                o.cpu.as_nanos()
            );
        }
    }
}

fn run_child(args: &[String]) -> Vec<String> {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .arg("--case")
        .args(args)
        .output()
        .expect("run a case");
    if !out.status.success() {
        eprintln!(
            "case {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    line.split_whitespace().map(str::to_string).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--case") {
        return child(&args[i + 1..]);
    }
    // `cargo bench` passes `--bench`; a name filter selects shapes.
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let budget = env_u64("PINGPONG_DELIVERIES", 20_000_000);
    let idle = env_u64("PINGPONG_IDLE", 100_000) as u32;

    let cases: Vec<(Shape, u32)> = [10, 100, 1_000]
        .iter()
        .map(|&n| (Shape::Full, n))
        .chain(
            [10, 100, 1_000, 10_000]
                .iter()
                .map(|&n| (Shape::Sparse { k: 4 }, n)),
        )
        .filter(|(s, _)| filter.is_empty() || filter.iter().any(|f| s.name().contains(f.as_str())))
        .collect();

    println!(
        "distzero ping-pong: 16-byte messages, fixed 1 ms links, one node per machine, release"
    );
    println!(
        "{:<10} {:>6} {:>7} {:>11} {:>7} {:>10} {:>9} {:>9} {:>10} {:>9} {:>9}",
        "shape",
        "N",
        "rounds",
        "deliveries",
        "wall s",
        "deliv/s",
        "ns/deliv",
        "cpu ns/d",
        "sim s/s",
        "peak MiB",
        "vs N=10"
    );
    let mut base: Option<(String, f64)> = None;
    for (shape, n) in cases {
        let rounds = rounds_for(n, shape, budget);
        let f = run_child(&[shape.name(), n.to_string(), rounds.to_string()]);
        let num = |i: usize| f[i].parse::<f64>().expect("a number");
        let (deliveries, wall_ns, sim_ns, peak, cpu_ns) = (num(4), num(5), num(6), num(7), num(8));
        // Cost per delivery in CPU time: the machine may be shared.
        let cpu_per = if cpu_ns > 0.0 { cpu_ns } else { wall_ns } / deliveries;
        if base.as_ref().is_none_or(|(s, _)| s != &shape.name()) {
            base = Some((shape.name(), cpu_per));
        }
        let rel = cpu_per / base.as_ref().expect("set").1;
        println!(
            "{:<10} {:>6} {:>7} {:>11} {:>7.2} {:>8.2} M {:>9.1} {:>9.1} {:>10.1} {:>9.1} {:>8.2}x",
            shape.name(),
            n,
            rounds,
            deliveries,
            wall_ns / 1e9,
            deliveries / (wall_ns / 1e9) / 1e6,
            wall_ns / deliveries,
            cpu_per,
            sim_ns / wall_ns,
            peak / (1024.0 * 1024.0),
            rel
        );
    }
    println!("(deliv/s and ns/deliv: wall clock; cpu ns/d: on-CPU time of the run; vs N=10: cpu ns/d over the N=10 case of the shape)");
    if filter.is_empty() || filter.iter().any(|f| f.contains("idle")) {
        let f = run_child(&["idle".to_string(), idle.to_string()]);
        println!(
            "memory per idle simulated machine (one idle node; RSS growth over {} machines): {} bytes",
            f[1],
            f[2].parse::<f64>().unwrap().round()
        );
    }
}
