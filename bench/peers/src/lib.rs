//! What the three peer binaries share: the workload's shape and graph, the
//! 16-byte message, the result line and the memory probe.
//!
//! The graph is built exactly as `distzero_sim::workload::Topology` builds
//! it (the same ChaCha8 shuffle of the same seed), so every simulator runs
//! the very same messages.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The seed of the sparse graph (the same as `benches/pingpong.rs`).
pub const SEED: u64 = 7;
/// Fixed one-way latency of every link.
pub const LATENCY_MS: u64 = 1;
/// The port every node listens on.
pub const PORT: u16 = 9000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Full,
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

/// Who sends to whom, by node index.
#[derive(Clone, Debug)]
pub struct Topology {
    pub n: u32,
    pub shape: Shape,
    order: Vec<u32>,
    pos: Vec<u32>,
}

impl Topology {
    pub fn new(n: u32, shape: Shape) -> Topology {
        assert!(n >= 2);
        let (order, pos) = match shape {
            Shape::Full => (Vec::new(), Vec::new()),
            Shape::Sparse { k } => {
                assert!(k >= 1 && k < n);
                let mut order: Vec<u32> = (0..n).collect();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(SEED));
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

    /// Messages each node sends, and receives, per round.
    pub fn degree(&self) -> u32 {
        match self.shape {
            Shape::Full => self.n - 1,
            Shape::Sparse { k } => k,
        }
    }

    pub fn deliveries(&self, rounds: u32) -> u64 {
        rounds as u64 * self.n as u64 * self.degree() as u64
    }

    pub fn peers(&self, i: u32) -> Vec<u32> {
        match self.shape {
            Shape::Full => (0..self.n).filter(|&j| j != i).collect(),
            Shape::Sparse { k } => {
                let p = self.pos[i as usize];
                (1..=k)
                    .map(|d| self.order[((p + d) % self.n) as usize])
                    .collect()
            }
        }
    }
}

/// The 16-byte message of round `round`.
pub fn ping(round: u32) -> [u8; 16] {
    let mut b = [0xa5u8; 16];
    b[..4].copy_from_slice(&round.to_le_bytes());
    b
}

pub fn round_of(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Counts the messages of the rounds a node has not finished yet.
#[derive(Default)]
pub struct Rounds {
    pub round: u32,
    counts: std::collections::VecDeque<u32>,
}

impl Rounds {
    /// Count one message of `round`.
    pub fn count(&mut self, round: u32) {
        let ahead = round.wrapping_sub(self.round) as usize;
        assert!(ahead < 1 << 20, "a message of a finished round");
        if self.counts.len() <= ahead {
            self.counts.resize(ahead + 1, 0);
        }
        self.counts[ahead] += 1;
    }

    /// If the current round has all `need` messages, move to the next one.
    pub fn advance(&mut self, need: u32) -> bool {
        if self.counts.front() == Some(&need) {
            self.counts.pop_front();
            self.round += 1;
            true
        } else {
            false
        }
    }
}

/// Arguments of a peer binary: `<shape> <n> <rounds>`.
pub fn args() -> (Shape, u32, u32) {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 3 {
        eprintln!("usage: <full|sparse-k4> <machines> <rounds>");
        std::process::exit(2);
    }
    let shape = Shape::parse(&a[0]).expect("shape: full or sparse-kK");
    (
        shape,
        a[1].parse().expect("machines"),
        a[2].parse().expect("rounds"),
    )
}

/// Wall and CPU time of a run.
pub struct Clock {
    wall: std::time::Instant,
    cpu_ns: u64,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            wall: std::time::Instant::now(),
            cpu_ns: cpu_ns(),
        }
    }
}

/// Nanoseconds on a CPU of all threads of this process (schedstat).
pub fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The line `compare` reads: peer shape n rounds deliveries wall_ns sim_ns
/// peak_bytes cpu_ns.
pub fn report(
    peer: &str,
    shape: Shape,
    n: u32,
    rounds: u32,
    delivered: u64,
    clock: Clock,
    sim_ns: u128,
) {
    let wall_ns = clock.wall.elapsed().as_nanos();
    let cpu = cpu_ns().saturating_sub(clock.cpu_ns);
    let expected = Topology::new(n, shape).deliveries(rounds);
    assert_eq!(
        delivered, expected,
        "{peer}: not every message was delivered"
    );
    println!(
        "result {peer} {} {n} {rounds} {delivered} {wall_ns} {sim_ns} {} {cpu}",
        shape.name(),
        peak_rss_bytes()
    );
}

/// Peak resident set of this process (VmHWM), bytes.
pub fn peak_rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
