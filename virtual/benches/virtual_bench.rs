//! Virtual-mode figures, printed (harness = false; needs a Docker engine):
//!
//! - bring-up of a 5-machine cluster (provider: connect, sweep, image; then
//!   five containers started and dialed);
//! - call round trip controller -> container (median, p99);
//! - round trip between containers, measured by a ping-pong node (median, p99);
//! - messages per second between two agents (ping-pong nodes flooding).
//!
//! Run: `cargo bench -p distzero-virtual` (DISTZERO_AGENT_BIN to skip the
//! static agent build). Every loop is bounded in count and time.

use distzero::remote::{new_run_id, run_log_dir, RemoteCluster};
use distzero::{Cluster, Mode, NodeId, Result, Settings};
use distzero_examples::pingpong::{PingConfig, PingMsg, PingStats, KIND};
use distzero_virtual::DockerProvider;
use std::time::{Duration, Instant};

/// One part of the bench: a name to select it by, and its body.
type Part = (&'static str, fn(&Settings) -> Result<()>);

fn cluster(settings: &Settings, name: &str) -> Result<(RemoteCluster, Duration)> {
    let run = new_run_id();
    let dir = run_log_dir(settings, name, Mode::Virtual, &run);
    let t = Instant::now();
    let provider = DockerProvider::for_run(settings, &run)?;
    let setup = t.elapsed();
    Ok((
        RemoteCluster::with_run(Box::new(provider), name, &run, &dir, settings)?,
        setup,
    ))
}

fn stats(c: &mut dyn Cluster, n: NodeId) -> Result<PingStats> {
    match c.call(n, &PingMsg::Stats, Duration::from_secs(5))? {
        PingMsg::StatsReply(s) => Ok(s),
        other => Err(distzero::Error::Codec(format!(
            "unexpected reply {other:?}"
        ))),
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.0} us", d.as_secs_f64() * 1e6)
}

fn bring_up(settings: &Settings) -> Result<()> {
    let mut totals = Vec::new();
    for i in 0..3 {
        let t = Instant::now();
        let (mut cl, setup) = cluster(settings, "virtual_bench_bring_up")?;
        let c: &mut dyn Cluster = &mut cl;
        let t_machines = Instant::now();
        c.add_machines::<5>()?;
        let machines = t_machines.elapsed();
        let total = t.elapsed();
        let t_down = Instant::now();
        cl.shutdown()?;
        println!(
            "bring-up of 5 machines, run {i}: total {:.2} s (provider setup {:.2} s, 5 containers up and dialed {:.2} s); shutdown {:.2} s",
            total.as_secs_f64(),
            setup.as_secs_f64(),
            machines.as_secs_f64(),
            t_down.elapsed().as_secs_f64()
        );
        totals.push(total);
    }
    totals.sort();
    println!(
        "bring-up of 5 machines: median {:.2} s",
        pct(&totals, 0.5).as_secs_f64()
    );
    Ok(())
}

fn round_trips(settings: &Settings) -> Result<()> {
    let (mut cl, _) = cluster(settings, "virtual_bench_round_trips")?;
    let res = (|| {
        let c: &mut dyn Cluster = &mut cl;
        let [a, b] = c.add_machines::<2>()?;
        let pb = c.spawn_node(b, KIND, PingConfig::default())?;
        // Controller -> container: a call and its reply.
        const CALLS: u64 = 1000;
        let mut rtts = Vec::with_capacity(CALLS as usize);
        for i in 0..CALLS {
            let t = Instant::now();
            let r: PingMsg = c.call(pb, &PingMsg::Ping(i), Duration::from_secs(2))?;
            rtts.push(t.elapsed());
            assert_eq!(r, PingMsg::Pong(i));
        }
        rtts.sort();
        println!(
            "call round trip controller -> container ({CALLS} calls): median {}, p99 {}, max {}",
            us(pct(&rtts, 0.5)),
            us(pct(&rtts, 0.99)),
            us(pct(&rtts, 1.0))
        );
        // Container -> container: node a pings b every 2 ms and records rtts.
        let pa = c.spawn_node(
            a,
            KIND,
            PingConfig {
                peers: vec![pb],
                every_ms: 2,
                rounds: 1000,
            },
        )?;
        c.run_until(Duration::from_secs(20), |c| Ok(stats(c, pa)?.pongs >= 1000))?;
        let mut rtts = stats(c, pa)?.rtts;
        rtts.sort();
        println!(
            "round trip container -> container ({} pings, 1 every 2 ms): median {}, p99 {}, max {}",
            rtts.len(),
            us(pct(&rtts, 0.5)),
            us(pct(&rtts, 0.99)),
            us(pct(&rtts, 1.0))
        );
        Ok(())
    })();
    let shut = cl.shutdown();
    res.and(shut)
}

fn throughput(settings: &Settings) -> Result<()> {
    for responders in [50usize, 200, 1000] {
        let (mut cl, _) = cluster(settings, "virtual_bench_throughput")?;
        let res = (|| {
            let c: &mut dyn Cluster = &mut cl;
            let [a, b] = c.add_machines::<2>()?;
            let mut peers = Vec::new();
            for _ in 0..responders {
                peers.push(c.spawn_node(b, KIND, PingConfig::default())?);
            }
            let pa = c.spawn_node(
                a,
                KIND,
                PingConfig {
                    peers: peers.clone(),
                    every_ms: 1,
                    rounds: 0,
                },
            )?;
            c.run_for(Duration::from_secs(1))?; // warm up
            let received = |c: &mut dyn Cluster| -> Result<u64> {
                let mut n = 0;
                for &p in &peers {
                    n += stats(c, p)?.pings_received;
                }
                Ok(n)
            };
            let (s0, r0) = (stats(c, pa)?, received(c)?);
            let t = Instant::now();
            c.run_for(Duration::from_secs(3))?;
            let (s1, r1) = (stats(c, pa)?, received(c)?);
            let secs = t.elapsed().as_secs_f64();
            let sent = (s1.pings_sent - s0.pings_sent) as f64 / secs;
            let delivered = (r1 - r0) as f64 / secs;
            let pongs = (s1.pongs - s0.pongs) as f64 / secs;
            println!(
                "messages between two agents ({responders} ping targets, 1 ms ticks, offered {} pings/s): \
                 {sent:.0} pings/s sent, {delivered:.0} pings/s delivered, {pongs:.0} pongs/s matched: \
                 {:.0} messages/s delivered",
                responders * 1000,
                delivered + pongs
            );
            Ok(())
        })();
        let shut = cl.shutdown();
        res.and(shut)?;
    }
    Ok(())
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects parts.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |part: &str| filter.is_empty() || filter.iter().any(|f| part.contains(f.as_str()));
    let mut settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("virtual_bench: {e}");
            std::process::exit(2);
        }
    };
    // Per-message logging would be measured instead of the transport.
    if let Err(e) = settings.set("DISTZERO_LOG_LEVEL", "warn") {
        eprintln!("virtual_bench: {e}");
        std::process::exit(2);
    }
    let parts: [Part; 3] = [
        ("bring_up", bring_up),
        ("round_trips", round_trips),
        ("throughput", throughput),
    ];
    let mut failed = false;
    for (name, f) in parts {
        if want(name) {
            if let Err(e) = f(&settings) {
                eprintln!("virtual_bench {name}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
