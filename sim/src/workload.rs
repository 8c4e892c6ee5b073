//! The ping-pong benchmark workload, shared by `benches/pingpong.rs` and the
//! peers comparison in `bench/peers`.
//!
//! N machines, one node each. For R rounds every node sends a 16-byte
//! message to each of its peers and waits for the messages of that round
//! from the nodes that send to it before it starts the next round. Links
//! have a fixed 1 ms latency and no loss. Two shapes: a full mesh, and a
//! sparse k-regular graph (each node sends to k peers and hears from k)
//! drawn from a seeded rng.

use crate::{SimCluster, SimConfig};
use distzero_core::{Cluster, Context, Link, MachineId, Node, NodeId, NodeSpec, Registry};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One message: 16 bytes on the wire (postcard writes a byte array as is).
/// The first four bytes carry the round, little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping(pub [u8; 16]);

impl Ping {
    pub fn new(round: u32) -> Self {
        let mut b = [0xa5u8; 16];
        b[..4].copy_from_slice(&round.to_le_bytes());
        Ping(b)
    }

    pub fn round(&self) -> u32 {
        u32::from_le_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }
}

/// Who talks to whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Every node sends to every other node.
    Full,
    /// Every node sends to `k` peers and receives from `k` peers.
    Sparse { k: u32 },
}

impl Shape {
    pub fn name(&self) -> String {
        match self {
            Shape::Full => "full".into(),
            Shape::Sparse { k } => format!("sparse-k{k}"),
        }
    }

    pub fn parse(s: &str) -> Option<Shape> {
        if s == "full" {
            return Some(Shape::Full);
        }
        let k = s.strip_prefix("sparse-k")?.parse().ok()?;
        Some(Shape::Sparse { k })
    }
}

/// The communication graph of one run, as machine indices.
#[derive(Clone, Debug)]
pub struct Topology {
    pub n: u32,
    pub shape: Shape,
    /// Sparse: `order[pos[i] + d]` for d in 1..=k are the peers of i.
    order: Vec<u32>,
    pos: Vec<u32>,
}

impl Topology {
    /// The sparse graph: a random cyclic order of the machines (seeded); each
    /// node sends to the next `k` in that order, so it also hears from `k`.
    pub fn new(n: u32, shape: Shape, seed: u64) -> Topology {
        assert!(n >= 2, "ping-pong needs at least two machines");
        let (order, pos) = match shape {
            Shape::Full => (Vec::new(), Vec::new()),
            Shape::Sparse { k } => {
                assert!(k >= 1 && k < n, "sparse ping-pong needs 1 <= k < n");
                let mut order: Vec<u32> = (0..n).collect();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
                let mut pos = vec![0u32; n as usize];
                for (p, &m) in order.iter().enumerate() {
                    pos[m as usize] = p as u32;
                }
                (order, pos)
            }
        };
        Topology {
            n,
            shape,
            order,
            pos,
        }
    }

    /// Messages each node sends (and receives) per round.
    pub fn degree(&self) -> u32 {
        match self.shape {
            Shape::Full => self.n - 1,
            Shape::Sparse { k } => k,
        }
    }

    /// Deliveries of a run of `rounds` rounds.
    pub fn deliveries(&self, rounds: u32) -> u64 {
        rounds as u64 * self.n as u64 * self.degree() as u64
    }

    /// Call `f` with each peer that machine `i` sends to.
    #[inline]
    pub fn for_each_peer(&self, i: u32, mut f: impl FnMut(u32)) {
        match self.shape {
            Shape::Full => (0..self.n).filter(|&j| j != i).for_each(f),
            Shape::Sparse { k } => {
                let p = self.pos[i as usize];
                for d in 1..=k {
                    f(self.order[((p + d) % self.n) as usize]);
                }
            }
        }
    }
}

/// The ping-pong node.
pub struct PingNode {
    topo: Arc<Topology>,
    me: u32,
    rounds: u32,
    /// The round this node waits on.
    round: u32,
    /// Messages received for `round`, `round + 1`, ...
    counts: VecDeque<u32>,
    /// Rounds completed.
    pub done: u32,
}

impl PingNode {
    pub fn new(topo: Arc<Topology>, me: u32, rounds: u32) -> Self {
        PingNode {
            topo,
            me,
            rounds,
            round: 0,
            counts: VecDeque::new(),
            done: 0,
        }
    }

    fn send_round(&self, ctx: &mut Context<'_, Ping>) {
        let msg = Ping::new(self.round);
        self.topo
            .for_each_peer(self.me, |j| ctx.send(NodeId::new(MachineId(j), 0), msg));
    }
}

impl Node for PingNode {
    type Msg = Ping;

    fn on_start(&mut self, ctx: &mut Context<'_, Ping>) {
        if self.rounds > 0 {
            self.send_round(ctx);
        }
    }

    fn on_message(&mut self, ctx: &mut Context<'_, Ping>, _from: NodeId, msg: Ping) {
        let ahead = msg.round().wrapping_sub(self.round) as usize;
        if self.round >= self.rounds || ahead >= 1 << 20 {
            return; // after the last round, or a stale round: not ours
        }
        if self.counts.len() <= ahead {
            self.counts.resize(ahead + 1, 0);
        }
        self.counts[ahead] += 1;
        let need = self.topo.degree();
        while self.counts.front() == Some(&need) {
            self.counts.pop_front();
            self.round += 1;
            self.done += 1;
            if self.round >= self.rounds {
                return;
            }
            self.send_round(ctx);
        }
    }
}

/// The outcome of one run.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub n: u32,
    pub rounds: u32,
    pub deliveries: u64,
    pub wall: Duration,
    /// Time this thread spent on a CPU over the same span (the machine may
    /// be shared: this is the figure that does not count waiting for it).
    pub cpu: Duration,
    pub simulated: Duration,
}

impl Outcome {
    pub fn deliveries_per_sec(&self) -> f64 {
        self.deliveries as f64 / self.wall.as_secs_f64()
    }
    pub fn sim_secs_per_sec(&self) -> f64 {
        self.simulated.as_secs_f64() / self.wall.as_secs_f64()
    }
    pub fn ns_per_delivery(&self) -> f64 {
        self.wall.as_nanos() as f64 / self.deliveries as f64
    }
    pub fn cpu_ns_per_delivery(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.deliveries as f64
    }
}

/// The link of the workload: fixed 1 ms, no loss.
pub const LATENCY: Duration = Duration::from_millis(1);

/// Build the cluster, run `rounds` rounds, check every message arrived.
/// The wall time covers spawning and running, not building the graph.
pub fn run(n: u32, shape: Shape, rounds: u32, seed: u64) -> distzero_core::Result<Outcome> {
    let topo = Arc::new(Topology::new(n, shape, seed));
    let mut registry = Registry::new();
    let t = topo.clone();
    registry.register("ping", move |me: u32| PingNode::new(t.clone(), me, rounds));
    let config = SimConfig {
        log_dir: None,
        log_level: None,
        buggify: 0.0,
        default_link: Link::fixed(LATENCY),
        ..SimConfig::new(seed, registry)
    };
    let start = Instant::now();
    let cpu_start = cpu_time();
    let mut cluster = SimCluster::new(config)?;
    {
        let c: &mut dyn Cluster = &mut cluster;
        for i in 0..n {
            let m = c.add_machine()?;
            c.spawn(m, NodeSpec::new("ping", i)?)?;
        }
        // Every round takes exactly one latency; one more to be sure.
        c.run_for(LATENCY * (rounds + 1))?;
    }
    let wall = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_start);
    let stats = cluster.stats();
    let expected = topo.deliveries(rounds);
    if stats.delivered != expected {
        return Err(distzero_core::Error::Unsupported(format!(
            "ping-pong n={n} {}: {} of {expected} messages delivered",
            shape.name(),
            stats.delivered
        )));
    }
    Ok(Outcome {
        n,
        rounds,
        deliveries: expected,
        wall,
        cpu,
        simulated: LATENCY * rounds,
    })
}

/// An idle node: the memory floor of a simulated machine.
pub struct Idle;

impl Node for Idle {
    type Msg = ();
    fn on_message(&mut self, _: &mut Context<'_, ()>, _: NodeId, _: ()) {}
}

/// Bytes of memory per idle simulated machine (one idle node each), as the
/// growth of the resident set while adding `count` of them.
pub fn idle_machine_bytes(count: u32) -> distzero_core::Result<f64> {
    let mut registry = Registry::new();
    registry.register("idle", |_: ()| Idle);
    let config = SimConfig {
        log_dir: None,
        log_level: None,
        ..SimConfig::new(1, registry)
    };
    let mut cluster = SimCluster::new(config)?;
    let c: &mut dyn Cluster = &mut cluster;
    let spec = NodeSpec::new("idle", ())?;
    // Warm up allocator arenas so the delta is the machines' own.
    let warm = c.add_machine()?;
    c.spawn(warm, spec.clone())?;
    c.run_for(Duration::from_millis(1))?;
    let before = rss_bytes().unwrap_or(0);
    for _ in 0..count {
        let m = c.add_machine()?;
        c.spawn(m, spec.clone())?;
    }
    c.run_for(Duration::from_millis(1))?;
    let after = rss_bytes().unwrap_or(0);
    Ok(after.saturating_sub(before) as f64 / count as f64)
}

fn status_field(name: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Time the calling thread has spent on a CPU (Linux: schedstat); zero
/// where that is not known.
pub fn cpu_time() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// Resident set now (VmRSS), in bytes; Linux only.
pub fn rss_bytes() -> Option<u64> {
    status_field("VmRSS:")
}

/// Peak resident set of this process (VmHWM), in bytes; Linux only.
pub fn peak_rss_bytes() -> Option<u64> {
    status_field("VmHWM:")
}
