//! Runs the ping-pong workload on each simulator, one child process per
//! case (so peak memory is the case's own), and prints the side-by-side
//! table with the ratios distzero / peer. Run by `bench/run.sh`.
//!
//! Environment: `PEER_DISTZERO`, `PEER_TURMOIL`, `PEER_MADSIM` (paths of
//! the peer binaries; a missing one is skipped), `CASES` (default
//! `full:10,full:100,sparse-k4:10,sparse-k4:100,sparse-k4:1000,sparse-k4:10000`;
//! a simulator that timed out is not run on a larger N of the same shape),
//! `DZ_DELIVERIES` (at most this many deliveries per distzero case, default
//! 20,000,000), `PEER_DELIVERIES` (per turmoil / madsim case, default
//! 2,000,000), `TARGET_S` (a case is sized from a short probe run to take
//! about this long, default 2), `TIMEOUT_S` (per run, default 120).

use distzero_peers::{Shape, Topology};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
struct Fig {
    rounds: u32,
    deliveries: u64,
    wall_s: f64,
    sim_s: f64,
    peak: f64,
    cpu_s: f64,
}

impl Fig {
    fn rate(&self) -> f64 {
        self.deliveries as f64 / self.wall_s
    }
    fn speed(&self) -> f64 {
        self.sim_s / self.wall_s
    }
    /// Deliveries per second of CPU time (robust on a shared machine).
    fn cpu_rate(&self) -> f64 {
        self.deliveries as f64 / self.cpu_s
    }
}

/// One simulator's outcome of one case.
type PeerResult = (&'static str, Result<Fig, String>);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn run(bin: &str, shape: Shape, n: u32, rounds: u32, timeout: Duration) -> Result<Fig, String> {
    let mut child = Command::new(bin)
        .args([shape.name(), n.to_string(), rounds.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {bin}: {e}"))?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            if !status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                return Err(format!("failed: {}", err.lines().last().unwrap_or("")));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text
                .lines()
                .find(|l| l.starts_with("result "))
                .ok_or("no result line")?;
            let f: Vec<&str> = line.split_whitespace().collect();
            let num = |i: usize| f[i].parse::<f64>().map_err(|e| e.to_string());
            return Ok(Fig {
                rounds: f[4].parse().map_err(|_| "rounds")?,
                deliveries: f[5].parse().map_err(|_| "deliveries")?,
                wall_s: num(6)? / 1e9,
                sim_s: num(7)? / 1e9,
                peak: num(8)?,
                cpu_s: num(9)? / 1e9,
            });
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {} s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let cases = std::env::var("CASES").unwrap_or_else(|_| {
        "full:10,full:100,sparse-k4:10,sparse-k4:100,sparse-k4:1000,sparse-k4:10000".into()
    });
    let dz_budget = env_u64("DZ_DELIVERIES", 20_000_000);
    let peer_budget = env_u64("PEER_DELIVERIES", 2_000_000);
    let timeout = Duration::from_secs(env_u64("TIMEOUT_S", 120));
    let target_s = env_u64("TARGET_S", 2) as f64;
    let peers: Vec<(&'static str, Option<String>, u64)> = vec![
        ("distzero", std::env::var("PEER_DISTZERO").ok(), dz_budget),
        ("turmoil", std::env::var("PEER_TURMOIL").ok(), peer_budget),
        ("madsim", std::env::var("PEER_MADSIM").ok(), peer_budget),
    ];

    println!("ping-pong: one node per machine, 16-byte messages, fixed 1 ms links, no loss; release build");
    println!("deliv/s: per wall second; cpu deliv/s: per second on a CPU (all threads); sim s/s: simulated seconds per wall second");
    println!(
        "{:<10} {:>6} {:<9} {:>7} {:>11} {:>7} {:>10} {:>12} {:>9} {:>10} {:>9}",
        "shape",
        "N",
        "sim",
        "rounds",
        "deliveries",
        "wall s",
        "deliv/s",
        "cpu deliv/s",
        "cpu ns/d",
        "sim s/s",
        "peak MiB"
    );
    let mut results: BTreeMap<(String, u32), Vec<PeerResult>> = BTreeMap::new();
    let mut order = Vec::new();
    let mut gave_up: BTreeMap<(&str, String), u32> = BTreeMap::new();
    for case in cases.split(',').filter(|c| !c.is_empty()) {
        let (shape, n) = case.split_once(':').expect("CASES: shape:n,...");
        let shape = Shape::parse(shape).expect("shape");
        let n: u32 = n.parse().expect("n");
        let per_round = Topology::new(n, shape).deliveries(1);
        order.push((shape.name(), n));
        for (name, bin, budget) in &peers {
            let Some(bin) = bin else { continue };
            // Probe with a few rounds, then size the run to about TARGET_S
            // (the peers' cost per round grows with N at different rates).
            let most = (budget / per_round).clamp(3, 10_000_000) as u32;
            let probe = 3.min(most);
            if let Some(at) = gave_up.get(&(*name, shape.name())) {
                let r = Err(format!("not run: timed out at N={at}"));
                println!(
                    "{:<10} {:>6} {:<9} not run (timed out at N={at})",
                    shape.name(),
                    n,
                    name
                );
                results
                    .entry((shape.name(), n))
                    .or_default()
                    .push((name, r));
                continue;
            }
            let mut r = run(bin, shape, n, probe, timeout);
            // Setup weighs on short runs: grow the run until it takes at
            // least half of TARGET_S (or makes `most` rounds).
            for _ in 0..3 {
                let Ok(f) = &r else { break };
                if f.wall_s >= target_s / 2.0 || f.rounds >= most {
                    break;
                }
                let rounds = ((f.rounds as f64 * target_s / f.wall_s) as u32)
                    .max(2 * f.rounds)
                    .min(most);
                r = run(bin, shape, n, rounds, timeout);
            }
            match &r {
                Ok(f) => println!(
                    "{:<10} {:>6} {:<9} {:>7} {:>11} {:>7.2} {:>8.2} M {:>10.2} M {:>9.1} {:>10.2} {:>9.1}",
                    shape.name(),
                    n,
                    name,
                    f.rounds,
                    f.deliveries,
                    f.wall_s,
                    f.rate() / 1e6,
                    f.cpu_rate() / 1e6,
                    f.cpu_s * 1e9 / f.deliveries as f64,
                    f.speed(),
                    f.peak / (1024.0 * 1024.0)
                ),
                Err(e) => {
                    println!("{:<10} {:>6} {:<9} {e}", shape.name(), n, name);
                    if e.starts_with("timed out") {
                        gave_up.insert((*name, shape.name()), n);
                    }
                }
            }
            results
                .entry((shape.name(), n))
                .or_default()
                .push((name, r));
        }
    }

    println!();
    println!("ratios distzero / peer: deliveries per wall second, per CPU second, simulated seconds per wall second; peak memory peer / distzero");
    println!(
        "{:<10} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "", "deliv/s", "deliv/s", "cpu", "cpu", "sim s/s", "sim s/s", "memory", "memory"
    );
    println!(
        "{:<10} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "shape",
        "N",
        "turmoil",
        "madsim",
        "turmoil",
        "madsim",
        "turmoil",
        "madsim",
        "turmoil",
        "madsim"
    );
    for key in order {
        let rs = &results[&key];
        let get = |p: &str| {
            rs.iter()
                .find(|(n, _)| *n == p)
                .and_then(|(_, r)| r.as_ref().ok())
        };
        let Some(dz) = get("distzero") else { continue };
        let cell = |p: &str, f: &dyn Fn(&Fig, &Fig) -> f64| match get(p) {
            Some(peer) => format!("{:.1}x", f(dz, peer)),
            None => "-".into(),
        };
        println!(
            "{:<10} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            key.0,
            key.1,
            cell("turmoil", &|d, p| d.rate() / p.rate()),
            cell("madsim", &|d, p| d.rate() / p.rate()),
            cell("turmoil", &|d, p| d.cpu_rate() / p.cpu_rate()),
            cell("madsim", &|d, p| d.cpu_rate() / p.cpu_rate()),
            cell("turmoil", &|d, p| d.speed() / p.speed()),
            cell("madsim", &|d, p| d.speed() / p.speed()),
            cell("turmoil", &|d, p| p.peak / d.peak),
            cell("madsim", &|d, p| p.peak / d.peak),
        );
    }
}
