//! The nemesis a workflow test declares: which machines may be faulted,
//! which kinds of fault, how many, within what window and for how long.
//! Faults then fire on the cluster's own clock while the body calls and
//! waits (`c.call`, `c.run_for`, `c.run_until`), in every mode: in
//! simulation as events at virtual times, in real modes as real faults at
//! real times, driven by the controller (as Jepsen's nemesis is).
//!
//! ```
//! use distzero_core::nemesis::{FaultKind, Nemesis};
//! use distzero_core::{Cluster, Result};
//! use std::time::Duration;
//!
//! fn body(c: &mut dyn Cluster) -> Result<()> {
//!     let ms: [_; 3] = c.add_machines()?;
//!     // ... spawn the system and its clients ...
//!     c.start_nemesis(
//!         Nemesis::on(&ms)
//!             .kinds(&[FaultKind::Partition, FaultKind::Crash])
//!             .window(Duration::from_secs(3))
//!             .max_faults(6)
//!             .lasting(Duration::from_millis(100), Duration::from_millis(800)),
//!     )?;
//!     c.wait_nemesis()?; // the window ends; everything is healed
//!     // ... check what the system guarantees ...
//!     Ok(())
//! }
//! ```
//!
//! # The schedule
//!
//! A declaration becomes a [`Schedule`]: faults at times after the
//! declaration, drawn from the run's seed and the declaration's place in the
//! run (the first, second, … `start_nemesis` of the body) by an rng of its
//! own, so the system's randomness does not depend on the schedule and a
//! schedule can be replaced (shrunk, pasted) without changing anything else.
//! Each drawn fault comes with its undo (heal, restart, resume, links back)
//! after a drawn duration; at the end of the window everything is healed,
//! resumed and restarted, and links are set back to the run's default.
//!
//! A schedule given with [`Nemesis::schedule`] (as a sweep prints it after
//! shrinking) replaces the drawn one; so does `DISTZERO_SCHEDULE` (the JSON
//! a sweep prints, one schedule per declaration), which a replay command
//! carries.

/// The storage and clock faults a schedule names (so the Rust a report
/// prints needs only `use distzero::nemesis::*`).
pub use crate::clock::ClockFault;
use crate::clock::MAX_DRIFT_PPM;
pub use crate::disk::{CrashLoss, DiskFault};
use crate::error::{Error, Result};
use crate::ids::MachineId;
use crate::link::{Latency, Link};
use crate::Cluster;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::time::Duration;

/// Most faults one declaration may ask for (each comes with its undo).
pub const MAX_FAULTS: usize = 10_000;
/// Most declarations in one run.
pub const MAX_DECLARATIONS: usize = 1_000;

/// One fault or its undo. Machines are named by their index in the
/// declaration's machine list ([`Nemesis::on`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// Cut every link between the groups, both ways.
    Partition(Vec<Vec<u32>>),
    /// Heal every link between the groups, both ways (undoes `Partition`).
    Heal(Vec<Vec<u32>>),
    /// Cut one direction only.
    Cut {
        from: u32,
        to: u32,
    },
    /// Heal one direction (undoes `Cut`).
    HealCut {
        from: u32,
        to: u32,
    },
    /// Heal every cut and hold of the cluster.
    HealAll,
    Crash(u32),
    Restart(u32),
    Pause(u32),
    Resume(u32),
    /// Uniform latency on every link, in milliseconds (the loss stays the
    /// run's default).
    Latency {
        min_ms: u64,
        max_ms: u64,
    },
    /// Every link back to the run's default (undoes `Latency`).
    ResetLinks,
    /// Cut each pair, both ways (bridges, rings: shapes that groups cannot say).
    CutPairs(Vec<[u32; 2]>),
    /// Heal each pair, both ways (undoes `CutPairs`).
    HealPairs(Vec<[u32; 2]>),
    /// Queue what `from` sends to `to` until `Release`.
    Hold {
        from: u32,
        to: u32,
    },
    /// Send on what the hold queued, in order (undoes `Hold`).
    Release {
        from: u32,
        to: u32,
    },
    /// One direction of one link: a latency spike (`latency_ms`: uniform
    /// min..max; None keeps the run's default latency) and/or a loss burst
    /// (`loss_pct`, 0 to 100).
    Link {
        from: u32,
        to: u32,
        latency_ms: Option<(u64, u64)>,
        loss_pct: u8,
    },
    /// That link back to the run's default (undoes `Link`).
    ResetLink {
        from: u32,
        to: u32,
    },
    /// A storage fault on one machine's disk (`DiskFault::Reset` undoes).
    Disk {
        machine: u32,
        fault: DiskFault,
    },
    /// A clock fault on one machine (`ClockFault::Reset` undoes).
    Clock {
        machine: u32,
        fault: ClockFault,
    },
}

impl Fault {
    /// The machine indexes this fault names.
    fn indexes(&self) -> Vec<u32> {
        match self {
            Fault::Partition(g) | Fault::Heal(g) => g.concat(),
            Fault::Cut { from, to }
            | Fault::HealCut { from, to }
            | Fault::Hold { from, to }
            | Fault::Release { from, to }
            | Fault::Link { from, to, .. }
            | Fault::ResetLink { from, to } => vec![*from, *to],
            Fault::CutPairs(p) | Fault::HealPairs(p) => p.concat(),
            Fault::Crash(i) | Fault::Restart(i) | Fault::Pause(i) | Fault::Resume(i) => vec![*i],
            Fault::HealAll | Fault::Latency { .. } | Fault::ResetLinks => vec![],
            Fault::Disk { machine, .. } | Fault::Clock { machine, .. } => vec![*machine],
        }
    }

    /// Whether this step is a fault rather than the undo of one.
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            Fault::Partition(_)
                | Fault::Cut { .. }
                | Fault::Crash(_)
                | Fault::Pause(_)
                | Fault::Latency { .. }
                | Fault::CutPairs(_)
                | Fault::Hold { .. }
                | Fault::Link { .. }
        ) || matches!(self, Fault::Disk { fault, .. } if *fault != DiskFault::Reset)
            || matches!(self, Fault::Clock { fault, .. } if *fault != ClockFault::Reset)
    }

    fn to_rust(&self) -> String {
        let groups = |g: &Vec<Vec<u32>>| {
            g.iter()
                .map(|g| format!("vec!{g:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Fault::Partition(g) => format!("Fault::Partition(vec![{}])", groups(g)),
            Fault::Heal(g) => format!("Fault::Heal(vec![{}])", groups(g)),
            Fault::Disk { machine, fault } => {
                let fault = match fault {
                    DiskFault::OnCrash(loss) => format!("DiskFault::OnCrash(CrashLoss::{loss:?})"),
                    other => format!("DiskFault::{other:?}"),
                };
                format!("Fault::Disk {{ machine: {machine}, fault: {fault} }}")
            }
            Fault::Clock { machine, fault } => {
                format!("Fault::Clock {{ machine: {machine}, fault: ClockFault::{fault:?} }}")
            }
            other => format!("Fault::{other:?}"),
        }
    }
}

/// A fault at a time after the declaration (milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub at_ms: u64,
    pub fault: Fault,
}

/// The faults of one declaration, in time order. In JSON: the list of steps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Schedule {
    pub steps: Vec<Step>,
}

impl Schedule {
    /// The steps in time order (stable: steps at one time keep their order).
    pub fn new(mut steps: Vec<Step>) -> Self {
        steps.sort_by_key(|s| s.at_ms);
        Schedule { steps }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// How many steps are faults rather than undos (heal, restart, resume,
    /// links back).
    pub fn faults(&self) -> usize {
        self.steps.iter().filter(|s| s.fault.is_fault()).count()
    }

    /// Rust that rebuilds this schedule, to paste into a test:
    /// `Nemesis::on(&machines).schedule(<this>)`.
    pub fn to_rust(&self) -> String {
        let mut s = String::from("Schedule::new(vec![\n");
        for st in &self.steps {
            let _ = writeln!(
                s,
                "    Step {{ at_ms: {}, fault: {} }},",
                st.at_ms,
                st.fault.to_rust()
            );
        }
        s.push_str("])");
        s
    }

    /// One line per step, for reports.
    pub fn describe(&self) -> String {
        if self.steps.is_empty() {
            return "  (no faults)\n".into();
        }
        let mut s = String::new();
        for st in &self.steps {
            let _ = writeln!(s, "  at {:>6} ms  {:?}", st.at_ms, st.fault);
        }
        s
    }
}

/// The schedules of a run, one per declaration, as JSON (what
/// `DISTZERO_SCHEDULE` takes and a sweep prints).
pub fn schedules_to_json(schedules: &[Schedule]) -> String {
    // Plain structs of numbers and enums: serializing cannot fail.
    serde_json::to_string(schedules).unwrap_or_default()
}

/// Read [`schedules_to_json`]'s form; `what` names the source in the error.
pub fn schedules_from_json(json: &str, what: &str) -> Result<Vec<Schedule>> {
    serde_json::from_str(json).map_err(|e| {
        Error::Setting(format!(
            "{what} is not a list of fault schedules as a sweep prints them (one per nemesis of the test, e.g. [[{{\"at_ms\":10,\"fault\":{{\"Crash\":0}}}}]]): {e}"
        ))
    })
}

/// The kinds of fault a declaration may draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FaultKind {
    /// The machines split in two groups at random (both ways), healed after a while.
    Partition,
    /// A minority (fewer than half) cut off from the majority: whoever
    /// leads may be on either side.
    MajorityMinority,
    /// One machine cut off from all the others.
    Isolate,
    /// Two groups that only one machine, the bridge, still joins (3+ machines).
    Bridge,
    /// Every machine sees only its two neighbours on a random ring (4+ machines).
    Ring,
    /// One direction between two machines cut, healed after a while.
    Cut,
    /// One direction between two machines held (queued), released after a while.
    Hold,
    /// A machine crashes (its nodes lose their memory) and restarts after a while.
    Crash,
    /// A machine crashes and is back within 50 ms.
    Bounce,
    /// A machine crashes, restarts, and crashes again within 20 ms of
    /// restarting (while it recovers), then restarts.
    KillDuringRecovery,
    /// A machine freezes and resumes after a while.
    Pause,
    /// Two or more machines freeze at once and resume after a while.
    PauseMany,
    /// Latency on every link rises for a while.
    Latency,
    /// One direction of one link gets 20 to 300 ms of latency for a while.
    LinkSpike,
    /// One direction of one link loses 20 to 80 % of its messages for a while.
    LossBurst,
    /// A machine loses power: of its unsynced disk changes a random prefix
    /// survives, the last one (a log append) possibly torn; it restarts
    /// after a while.
    PowerLoss,
    /// A machine's disk fails 10 to 100 % of its writes and syncs for a while.
    DiskErrors,
    /// A machine's disk is full for a while.
    DiskFull,
    /// One bit of one block stored on a machine's disk flips (for good).
    Corrupt,
    /// A machine's disk flips a bit in 1 to 20 % of its reads for a while.
    CorruptReads,
    /// A machine's syncs take 1 to 200 ms for a while (the machine stalls).
    SlowDisk,
    /// A machine's wall clock steps 10 ms to 10 s, forwards or backwards,
    /// and is set right after a while (another step).
    ClockStep,
    /// A machine's clocks run 100 to 1,000 ppm fast or slow for a while.
    ClockDrift,
}

impl FaultKind {
    /// The network and process kinds: a declaration's default.
    pub const ALL: [FaultKind; 15] = [
        FaultKind::Partition,
        FaultKind::MajorityMinority,
        FaultKind::Isolate,
        FaultKind::Bridge,
        FaultKind::Ring,
        FaultKind::Cut,
        FaultKind::Hold,
        FaultKind::Crash,
        FaultKind::Bounce,
        FaultKind::KillDuringRecovery,
        FaultKind::Pause,
        FaultKind::PauseMany,
        FaultKind::Latency,
        FaultKind::LinkSpike,
        FaultKind::LossBurst,
    ];

    /// The storage kinds (opt in: `kinds(&FaultKind::DISK)`, or with
    /// [`FaultKind::EVERY`]): the system must sync what it acknowledges
    /// and check what it reads.
    pub const DISK: [FaultKind; 6] = [
        FaultKind::PowerLoss,
        FaultKind::DiskErrors,
        FaultKind::DiskFull,
        FaultKind::Corrupt,
        FaultKind::CorruptReads,
        FaultKind::SlowDisk,
    ];

    /// The clock kinds (opt in, as [`FaultKind::DISK`]).
    pub const CLOCK: [FaultKind; 2] = [FaultKind::ClockStep, FaultKind::ClockDrift];

    /// Every kind: [`FaultKind::ALL`], [`FaultKind::DISK`] and [`FaultKind::CLOCK`].
    pub fn every() -> Vec<FaultKind> {
        FaultKind::ALL
            .into_iter()
            .chain(FaultKind::DISK)
            .chain(FaultKind::CLOCK)
            .collect()
    }

    /// Relative weight when drawing without swarm testing.
    fn weight(self) -> u32 {
        match self {
            FaultKind::Partition | FaultKind::Crash => 3,
            FaultKind::MajorityMinority | FaultKind::Isolate | FaultKind::Bounce => 2,
            _ => 1,
        }
    }

    /// Fewest machines this kind needs.
    fn machines_needed(self) -> u32 {
        match self {
            FaultKind::Crash
            | FaultKind::Bounce
            | FaultKind::KillDuringRecovery
            | FaultKind::Pause
            | FaultKind::Latency
            | FaultKind::PowerLoss
            | FaultKind::DiskErrors
            | FaultKind::DiskFull
            | FaultKind::Corrupt
            | FaultKind::CorruptReads
            | FaultKind::SlowDisk
            | FaultKind::ClockStep
            | FaultKind::ClockDrift => 1,
            FaultKind::Partition
            | FaultKind::Isolate
            | FaultKind::Cut
            | FaultKind::Hold
            | FaultKind::PauseMany
            | FaultKind::LinkSpike
            | FaultKind::LossBurst => 2,
            FaultKind::MajorityMinority | FaultKind::Bridge => 3,
            FaultKind::Ring => 4,
        }
    }
}

/// A seed's own fault profile (swarm testing, Groce et al. 2012): which
/// of the declared kinds are enabled at all and how often each is drawn,
/// how many faults at most, the part of the window they fall in, and quiet
/// periods without any. Drawn from the seed, so a replay is exact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Enabled kinds with their weights.
    pub kinds: Vec<(FaultKind, u32)>,
    pub max_faults: usize,
    /// Faults start within `from_ms..to_ms` of the declaration …
    pub from_ms: u64,
    pub to_ms: u64,
    /// … but in none of these periods.
    pub quiet: Vec<(u64, u64)>,
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .map(|(k, w)| format!("{k:?}×{w}"))
            .collect();
        write!(
            f,
            "kinds {}; up to {} faults from {} to {} ms",
            kinds.join(" "),
            self.max_faults,
            self.from_ms,
            self.to_ms
        )?;
        for (a, b) in &self.quiet {
            write!(f, "; quiet {a}..{b} ms")?;
        }
        Ok(())
    }
}

/// What a test declares. Built with [`Nemesis::on`] and its setters, started
/// with `c.start_nemesis(…)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Nemesis {
    machines: Vec<MachineId>,
    kinds: Vec<FaultKind>,
    window: Duration,
    max_faults: usize,
    lasting: (Duration, Duration),
    fixed: Option<Schedule>,
    swarm: Option<bool>,
}

impl Nemesis {
    /// A nemesis over these machines: every [`FaultKind`], up to 8 faults
    /// within 2 s of the start, each lasting 50 ms to 1 s.
    pub fn on(machines: &[MachineId]) -> Nemesis {
        Nemesis {
            machines: machines.to_vec(),
            kinds: FaultKind::ALL.to_vec(),
            window: Duration::from_secs(2),
            max_faults: 8,
            lasting: (Duration::from_millis(50), Duration::from_secs(1)),
            fixed: None,
            swarm: None,
        }
    }

    /// Swarm testing on (`true`) or off for this declaration, whatever
    /// `DISTZERO_SWARM` says: each seed draws its own [`Profile`] (a
    /// subset of the kinds, their weights, a part of the window, quiet
    /// periods) and then its schedule from it.
    pub fn swarm(mut self, on: bool) -> Nemesis {
        self.swarm = Some(on);
        self
    }

    /// Only these kinds of fault.
    pub fn kinds(mut self, kinds: &[FaultKind]) -> Nemesis {
        let mut k = kinds.to_vec();
        k.sort();
        k.dedup();
        self.kinds = k;
        self
    }

    /// Faults start within this long after `start_nemesis`; at its end
    /// everything is healed.
    pub fn window(mut self, window: Duration) -> Nemesis {
        self.window = window;
        self
    }

    /// At most this many faults (the number is drawn from 0 to it).
    pub fn max_faults(mut self, n: usize) -> Nemesis {
        self.max_faults = n;
        self
    }

    /// Each fault lasts between `min` and `max` before it is undone (or
    /// until the window ends).
    pub fn lasting(mut self, min: Duration, max: Duration) -> Nemesis {
        self.lasting = (min, max);
        self
    }

    /// Run exactly this schedule instead of drawing one (a shrunk schedule
    /// pasted from a sweep's report).
    pub fn schedule(mut self, schedule: Schedule) -> Nemesis {
        self.fixed = Some(schedule);
        self
    }

    pub fn machines(&self) -> &[MachineId] {
        &self.machines
    }

    pub fn window_length(&self) -> Duration {
        self.window
    }

    /// A clear error for a declaration that cannot run.
    fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::Unsupported(format!("nemesis: {why}")));
        if self.machines.is_empty() {
            return bad("no machines to fault: give Nemesis::on the machines it may hit".into());
        }
        let mut ms = self.machines.clone();
        ms.sort();
        ms.dedup();
        if ms.len() != self.machines.len() {
            return bad(format!("a machine is listed twice in {:?}", self.machines));
        }
        if self.window.is_zero() {
            return bad("the window is zero: faults need time to happen".into());
        }
        if self.max_faults > MAX_FAULTS {
            return bad(format!(
                "max_faults {} is above the limit of {MAX_FAULTS}",
                self.max_faults
            ));
        }
        if self.lasting.0 > self.lasting.1 || self.lasting.1.is_zero() {
            return bad(format!(
                "lasting({:?}, {:?}) needs 0 < max and min <= max",
                self.lasting.0, self.lasting.1
            ));
        }
        if self.kinds.is_empty() && self.fixed.is_none() {
            return bad("no kinds of fault enabled".into());
        }
        Ok(())
    }

    /// The schedule this declaration runs with `seed` as its `ordinal`-th
    /// declaration: the fixed one, or one drawn (from a swarm [`Profile`]
    /// drawn first when `swarm`, unless the declaration says otherwise).
    pub fn draw(&self, seed: u64, ordinal: usize, swarm: bool) -> (Schedule, Option<Profile>) {
        if let Some(s) = &self.fixed {
            return (s.clone(), None);
        }
        // An rng of its own: the system's draws do not depend on the
        // schedule, so a replaced schedule changes nothing else.
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&(ordinal as u64).to_le_bytes());
        key[16..24].copy_from_slice(b"nemesis!");
        let mut rng = ChaCha8Rng::from_seed(key);
        let n = self.machines.len() as u32;
        let fitting: Vec<FaultKind> = self
            .kinds
            .iter()
            .copied()
            .filter(|k| n >= k.machines_needed())
            .collect();
        let window_ms = (self.window.as_millis() as u64).max(1);
        let profile = if self.swarm.unwrap_or(swarm) && !fitting.is_empty() {
            // How many kinds first (uniform), then which: small profiles,
            // one kind alone, are as likely as large ones.
            let take = rng.gen_range(1..=fitting.len());
            let mut order: Vec<FaultKind> = fitting.clone();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.gen_range(0..=i));
            }
            let mut kinds: Vec<(FaultKind, u32)> = order[..take].iter().map(|&k| (k, 0)).collect();
            kinds.sort();
            for k in kinds.iter_mut() {
                k.1 = rng.gen_range(1..=8);
            }
            let max_faults = rng.gen_range(1..=self.max_faults.max(1));
            let a = rng.gen_range(0..window_ms);
            let b = rng.gen_range(a + 1..=window_ms);
            let quiet = (0..rng.gen_range(0..=2))
                .map(|_| {
                    let start = rng.gen_range(a..b);
                    let len = rng.gen_range(1..=((b - a) / 4).max(1));
                    (start, (start + len).min(b))
                })
                .collect();
            Profile {
                kinds,
                max_faults,
                from_ms: a,
                to_ms: b,
                quiet,
            }
        } else {
            Profile {
                kinds: fitting.iter().map(|&k| (k, k.weight())).collect(),
                max_faults: self.max_faults,
                from_ms: 0,
                to_ms: window_ms,
                quiet: Vec::new(),
            }
        };
        let swarmed = self.swarm.unwrap_or(swarm) && !fitting.is_empty();
        let schedule = self.draw_from(&profile, &mut rng, window_ms);
        (schedule, swarmed.then_some(profile))
    }

    fn draw_from(&self, p: &Profile, rng: &mut ChaCha8Rng, window_ms: u64) -> Schedule {
        let n = self.machines.len() as u32;
        let total: u32 = p.kinds.iter().map(|(_, w)| *w).sum();
        if total == 0 {
            return Schedule::default();
        }
        let (lo, hi) = (
            (self.lasting.0.as_millis() as u64).max(1),
            (self.lasting.1.as_millis() as u64).max(1),
        );
        let count = rng.gen_range(0..=p.max_faults);
        let mut steps = Vec::with_capacity(count * 4);
        for _ in 0..count {
            // A time outside the quiet periods (bounded tries; else no fault).
            let quiet = |t: u64| p.quiet.iter().any(|&(a, b)| (a..b).contains(&t));
            let Some(at) = (0..8)
                .map(|_| rng.gen_range(p.from_ms..p.to_ms))
                .find(|&t| !quiet(t))
            else {
                continue;
            };
            let mut pick = rng.gen_range(0..total);
            let kind = p
                .kinds
                .iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .map_or(p.kinds[0].0, |(k, _)| *k);
            let lasts = rng.gen_range(lo..=hi.max(lo));
            for (after, fault) in fault_steps(kind, n, lasts, rng) {
                let at_ms = at + after;
                // Undos past the window are left to the recovery at its end.
                if after == 0 || at_ms < window_ms {
                    steps.push(Step { at_ms, fault });
                }
            }
        }
        Schedule::new(steps)
    }
}

/// `n` machines shuffled.
fn shuffled(n: u32, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n).collect();
    for i in (1..v.len()).rev() {
        v.swap(i, rng.gen_range(0..=i));
    }
    v
}

/// Two distinct machines.
fn two(n: u32, rng: &mut ChaCha8Rng) -> (u32, u32) {
    let from = rng.gen_range(0..n);
    (from, (from + rng.gen_range(1..n)) % n)
}

/// The steps of one fault of `kind` on `n` machines (enough of them for
/// the kind), as (ms after its start, fault): the fault at 0, its undo
/// after `lasts`.
fn fault_steps(kind: FaultKind, n: u32, lasts: u64, rng: &mut ChaCha8Rng) -> Vec<(u64, Fault)> {
    let split = |groups: Vec<Vec<u32>>| {
        vec![
            (0, Fault::Partition(groups.clone())),
            (lasts, Fault::Heal(groups)),
        ]
    };
    let sorted = |mut v: Vec<u32>| {
        v.sort();
        v
    };
    match kind {
        FaultKind::Partition => {
            // A non-empty proper subset on one side.
            let mut side: Vec<u32> = (0..n).filter(|_| rng.gen_bool(0.5)).collect();
            if side.is_empty() || side.len() == n as usize {
                side = vec![rng.gen_range(0..n)];
            }
            let rest: Vec<u32> = (0..n).filter(|i| !side.contains(i)).collect();
            split(vec![side, rest])
        }
        FaultKind::MajorityMinority => {
            let order = shuffled(n, rng);
            let k = rng.gen_range(1..=((n - 1) / 2).max(1)) as usize;
            split(vec![
                sorted(order[..k].to_vec()),
                sorted(order[k..].to_vec()),
            ])
        }
        FaultKind::Isolate => {
            let i = rng.gen_range(0..n);
            split(vec![vec![i], (0..n).filter(|&j| j != i).collect()])
        }
        FaultKind::Bridge => {
            // order[0] is the bridge; the rest split in two non-empty sides.
            let order = shuffled(n, rng);
            let k = rng.gen_range(2..n) as usize;
            let pairs: Vec<[u32; 2]> = order[1..k]
                .iter()
                .flat_map(|&a| order[k..].iter().map(move |&b| [a.min(b), a.max(b)]))
                .collect();
            vec![
                (0, Fault::CutPairs(pairs.clone())),
                (lasts, Fault::HealPairs(pairs)),
            ]
        }
        FaultKind::Ring => {
            let order = shuffled(n, rng);
            let next = |i: usize| order[(i + 1) % order.len()];
            let adjacent = |a: u32, b: u32| {
                (0..order.len())
                    .any(|i| (order[i] == a && next(i) == b) || (order[i] == b && next(i) == a))
            };
            let pairs: Vec<[u32; 2]> = (0..n)
                .flat_map(|a| (a + 1..n).map(move |b| [a, b]))
                .filter(|&[a, b]| !adjacent(a, b))
                .collect();
            vec![
                (0, Fault::CutPairs(pairs.clone())),
                (lasts, Fault::HealPairs(pairs)),
            ]
        }
        FaultKind::Cut => {
            let (from, to) = two(n, rng);
            vec![
                (0, Fault::Cut { from, to }),
                (lasts, Fault::HealCut { from, to }),
            ]
        }
        FaultKind::Hold => {
            let (from, to) = two(n, rng);
            vec![
                (0, Fault::Hold { from, to }),
                (lasts, Fault::Release { from, to }),
            ]
        }
        FaultKind::Crash => {
            let i = rng.gen_range(0..n);
            vec![(0, Fault::Crash(i)), (lasts, Fault::Restart(i))]
        }
        FaultKind::Bounce => {
            let i = rng.gen_range(0..n);
            vec![
                (0, Fault::Crash(i)),
                (rng.gen_range(1..=50), Fault::Restart(i)),
            ]
        }
        FaultKind::KillDuringRecovery => {
            let i = rng.gen_range(0..n);
            let again = lasts + rng.gen_range(1..=20);
            vec![
                (0, Fault::Crash(i)),
                (lasts, Fault::Restart(i)),
                (again, Fault::Crash(i)),
                (again + lasts, Fault::Restart(i)),
            ]
        }
        FaultKind::Pause => {
            let i = rng.gen_range(0..n);
            vec![(0, Fault::Pause(i)), (lasts, Fault::Resume(i))]
        }
        FaultKind::PauseMany => {
            let order = shuffled(n, rng);
            let k = rng.gen_range(2..=n) as usize;
            let many = sorted(order[..k].to_vec());
            let mut v: Vec<(u64, Fault)> = many.iter().map(|&i| (0, Fault::Pause(i))).collect();
            v.extend(many.iter().map(|&i| (lasts, Fault::Resume(i))));
            v
        }
        FaultKind::Latency => {
            let min_ms = rng.gen_range(0..5);
            let max_ms = min_ms + rng.gen_range(0..50);
            vec![
                (0, Fault::Latency { min_ms, max_ms }),
                (lasts, Fault::ResetLinks),
            ]
        }
        FaultKind::LinkSpike | FaultKind::LossBurst => {
            let (from, to) = two(n, rng);
            let (latency_ms, loss_pct) = if kind == FaultKind::LinkSpike {
                let min = rng.gen_range(20..=100);
                (Some((min, min + rng.gen_range(0..=200))), 0)
            } else {
                (None, rng.gen_range(20..=80))
            };
            vec![
                (
                    0,
                    Fault::Link {
                        from,
                        to,
                        latency_ms,
                        loss_pct,
                    },
                ),
                (lasts, Fault::ResetLink { from, to }),
            ]
        }
        FaultKind::PowerLoss => {
            let machine = rng.gen_range(0..n);
            let loss = if rng.gen_bool(0.5) {
                CrashLoss::KeepPrefix
            } else {
                CrashLoss::TearLast
            };
            vec![
                (
                    0,
                    Fault::Disk {
                        machine,
                        fault: DiskFault::OnCrash(loss),
                    },
                ),
                (0, Fault::Crash(machine)),
                (lasts, Fault::Restart(machine)),
                (
                    lasts,
                    Fault::Disk {
                        machine,
                        fault: DiskFault::Reset,
                    },
                ),
            ]
        }
        FaultKind::DiskErrors
        | FaultKind::DiskFull
        | FaultKind::CorruptReads
        | FaultKind::SlowDisk => {
            let machine = rng.gen_range(0..n);
            let fault = match kind {
                FaultKind::DiskErrors => DiskFault::Errors {
                    pct: rng.gen_range(10..=100),
                },
                FaultKind::DiskFull => DiskFault::Full,
                FaultKind::CorruptReads => DiskFault::CorruptReads {
                    pct: rng.gen_range(1..=20),
                },
                _ => DiskFault::Slow {
                    ms: rng.gen_range(1..=200),
                },
            };
            vec![
                (0, Fault::Disk { machine, fault }),
                (
                    lasts,
                    Fault::Disk {
                        machine,
                        fault: DiskFault::Reset,
                    },
                ),
            ]
        }
        FaultKind::Corrupt => vec![(
            0,
            Fault::Disk {
                machine: rng.gen_range(0..n),
                fault: DiskFault::Corrupt,
            },
        )],
        FaultKind::ClockStep | FaultKind::ClockDrift => {
            let machine = rng.gen_range(0..n);
            let sign = if rng.gen_bool(0.5) { -1 } else { 1 };
            let fault = if kind == FaultKind::ClockStep {
                ClockFault::Step {
                    ms: sign * rng.gen_range(10..=10_000i64),
                }
            } else {
                ClockFault::Drift {
                    ppm: sign as i32 * rng.gen_range(100..=MAX_DRIFT_PPM),
                }
            };
            vec![
                (0, Fault::Clock { machine, fault }),
                (
                    lasts,
                    Fault::Clock {
                        machine,
                        fault: ClockFault::Reset,
                    },
                ),
            ]
        }
    }
}

/// Apply one fault now, to `machines` (the declaration's list), on links
/// that are `base` when no fault changed them.
pub fn apply(c: &mut dyn Cluster, machines: &[MachineId], fault: &Fault, base: Link) -> Result<()> {
    let m = |i: &u32| machines[*i as usize % machines.len()];
    tracing::info!(fault = ?fault, "nemesis");
    let groups = |g: &[Vec<u32>]| -> Vec<Vec<MachineId>> {
        g.iter().map(|g| g.iter().map(m).collect()).collect()
    };
    match fault {
        Fault::Partition(g) => {
            let groups = groups(g);
            let refs: Vec<&[MachineId]> = groups.iter().map(Vec::as_slice).collect();
            c.partition(&refs)
        }
        Fault::Heal(g) => {
            let groups = groups(g);
            for (i, a) in groups.iter().enumerate() {
                for b in groups.iter().skip(i + 1) {
                    for &x in a {
                        for &y in b {
                            c.heal(x, y)?;
                            c.heal(y, x)?;
                        }
                    }
                }
            }
            Ok(())
        }
        Fault::Cut { from, to } => c.cut(m(from), m(to)),
        Fault::HealCut { from, to } => c.heal(m(from), m(to)),
        Fault::HealAll => c.heal_all(),
        Fault::Crash(i) => c.crash(m(i)),
        Fault::Restart(i) => c.restart(m(i)),
        Fault::Pause(i) => c.pause(m(i)),
        Fault::Resume(i) => c.resume(m(i)),
        Fault::Latency { min_ms, max_ms } => c.set_all_links(Link {
            latency: Latency::Uniform {
                min: Duration::from_millis(*min_ms),
                max: Duration::from_millis(*max_ms),
            },
            loss: base.loss,
        }),
        Fault::ResetLinks => c.set_all_links(base),
        Fault::CutPairs(pairs) => pairs.iter().try_for_each(|[a, b]| {
            c.cut(m(a), m(b))?;
            c.cut(m(b), m(a))
        }),
        Fault::HealPairs(pairs) => pairs.iter().try_for_each(|[a, b]| {
            c.heal(m(a), m(b))?;
            c.heal(m(b), m(a))
        }),
        Fault::Hold { from, to } => c.hold(m(from), m(to)),
        Fault::Release { from, to } => c.release(m(from), m(to)),
        Fault::Link {
            from,
            to,
            latency_ms,
            loss_pct,
        } => c.set_link(
            m(from),
            m(to),
            Link {
                latency: match latency_ms {
                    Some((min, max)) => Latency::Uniform {
                        min: Duration::from_millis(*min),
                        max: Duration::from_millis(*max),
                    },
                    None => base.latency,
                },
                loss: f64::from(*loss_pct.min(&100)) / 100.0,
            },
        ),
        Fault::ResetLink { from, to } => c.set_link(m(from), m(to), base),
        Fault::Disk { machine, fault } => c.disk_fault(m(machine), fault.clone()),
        Fault::Clock { machine, fault } => c.clock_fault(m(machine), fault.clone()),
    }
}

/// Heal every link, resume and restart `machines`, their disks and clocks
/// healthy again, links back to `base`.
pub fn recover(c: &mut dyn Cluster, machines: &[MachineId], base: Link) -> Result<()> {
    tracing::info!("nemesis: heal, resume and restart everything");
    c.heal_all()?;
    for &m in machines {
        c.resume(m)?;
        c.restart(m)?;
        c.disk_fault(m, DiskFault::Reset)?;
        c.clock_fault(m, ClockFault::Reset)?;
    }
    c.set_all_links(base)
}

/// What comes due: a step, or the recovery at the end of the window.
#[derive(Clone, Debug, PartialEq)]
pub enum Due {
    Fault(Vec<MachineId>, Fault),
    Recover(Vec<MachineId>),
}

impl Due {
    /// Do it to `c`.
    pub fn apply(&self, c: &mut dyn Cluster, base: Link) -> Result<()> {
        match self {
            Due::Fault(ms, f) => apply(c, ms, f, base),
            Due::Recover(ms) => recover(c, ms, base),
        }
    }
}

#[derive(Clone, Debug)]
struct Active {
    machines: Vec<MachineId>,
    start: Duration,
    end: Duration,
    schedule: Schedule,
    next: usize,
}

/// The nemesis state a cluster keeps: the active declaration, the
/// schedules every declaration ran, the schedules that replace drawn ones.
/// Each mode's wait loop asks [`NemesisDriver::next_due`] when to stop and
/// applies what [`NemesisDriver::take_due`] gives; the driver itself never
/// reads a clock.
#[derive(Clone, Debug, Default)]
pub struct NemesisDriver {
    seed: u64,
    base: Link,
    replace: Option<Vec<Schedule>>,
    /// Swarm testing for declarations that do not say (`DISTZERO_SWARM`).
    swarm: bool,
    ran: Vec<Schedule>,
    /// The swarm profile each declaration drew its schedule from, if any.
    profiles: Vec<Option<Profile>>,
    active: Option<Active>,
    firing: bool,
    /// When the last nemesis ended with everything healed.
    healed_at: Option<Duration>,
}

impl NemesisDriver {
    /// For a run with `seed` whose links are `base` when no fault changed
    /// them; `replace`: schedules for the declarations, in order, instead of
    /// drawn ones (a shrunk schedule, `DISTZERO_SCHEDULE`).
    pub fn new(seed: u64, base: Link, replace: Option<Vec<Schedule>>) -> NemesisDriver {
        NemesisDriver {
            seed,
            base,
            replace,
            ..Default::default()
        }
    }

    /// Swarm testing for every declaration that does not say
    /// ([`Nemesis::swarm`]); `DISTZERO_SWARM`.
    pub fn with_swarm(mut self, on: bool) -> NemesisDriver {
        self.swarm = on;
        self
    }

    /// The swarm profile of each declaration of the run, in order (None:
    /// drawn without one, fixed, or replaced).
    pub fn profiles(&self) -> &[Option<Profile>] {
        &self.profiles
    }

    /// The run's default link, which recoveries restore.
    pub fn base(&self) -> Link {
        self.base
    }

    /// The schedule every declaration of the run ran, in order.
    pub fn schedules(&self) -> &[Schedule] {
        &self.ran
    }

    /// Start a declaration at `now` (after ending the active one, which
    /// the caller recovers: the machines returned).
    pub fn begin(&mut self, n: &Nemesis, now: Duration) -> Result<Option<Vec<MachineId>>> {
        n.validate()?;
        let ordinal = self.ran.len();
        if ordinal >= MAX_DECLARATIONS {
            return Err(Error::Unsupported(format!(
                "nemesis: more than {MAX_DECLARATIONS} declarations in one run"
            )));
        }
        let (schedule, profile) = match self.replace.as_ref() {
            Some(r) => (r.get(ordinal).cloned().unwrap_or_default(), None),
            None => n.draw(self.seed, ordinal, self.swarm),
        };
        let count = n.machines.len() as u32;
        if let Some(st) = schedule
            .steps
            .iter()
            .find(|s| s.fault.indexes().iter().any(|&i| i >= count))
        {
            return Err(Error::Unsupported(format!(
                "nemesis: step {st:?} names a machine index beyond the {count} machines of its declaration"
            )));
        }
        let last = schedule.steps.last().map_or(0, |s| s.at_ms);
        let end = now + n.window.max(Duration::from_millis(last));
        tracing::info!(
            declaration = ordinal,
            faults = schedule.faults(),
            steps = schedule.steps.len(),
            window_ms = (end - now).as_millis() as u64,
            "nemesis starts"
        );
        if let Some(p) = &profile {
            tracing::info!(declaration = ordinal, profile = %p, "nemesis swarm profile");
        }
        self.ran.push(schedule.clone());
        self.profiles.push(profile);
        let previous = self.active.take().map(|a| a.machines);
        self.healed_at = None;
        self.active = Some(Active {
            machines: n.machines.clone(),
            start: now,
            end,
            schedule,
            next: 0,
        });
        Ok(previous)
    }

    /// When something next comes due (a step, or the end of the window),
    /// in cluster time; None when no nemesis is active or one is firing.
    pub fn next_due(&self) -> Option<Duration> {
        if self.firing {
            return None;
        }
        let a = self.active.as_ref()?;
        Some(match a.schedule.steps.get(a.next) {
            Some(s) => a.start + Duration::from_millis(s.at_ms),
            None => a.end,
        })
    }

    /// The next thing due at `now`, if any; the recovery ends the nemesis.
    /// The caller applies it between [`NemesisDriver::firing`] calls.
    pub fn take_due(&mut self, now: Duration) -> Option<Due> {
        if self.next_due()? > now {
            return None;
        }
        let a = self.active.as_mut()?;
        match a.schedule.steps.get(a.next) {
            Some(s) => {
                a.next += 1;
                Some(Due::Fault(a.machines.clone(), s.fault.clone()))
            }
            None => {
                let ms = a.machines.clone();
                self.active = None;
                self.healed_at = Some(now);
                Some(Due::Recover(ms))
            }
        }
    }

    /// While a due fault is applied, nothing else comes due (applying it
    /// may wait, in real modes, on the agents' acks).
    pub fn set_firing(&mut self, firing: bool) {
        self.firing = firing;
    }

    /// End the active nemesis now (at `now`); the machines to recover.
    pub fn stop(&mut self, now: Duration) -> Option<Vec<MachineId>> {
        let a = self.active.take()?;
        self.healed_at = Some(now);
        Some(a.machines)
    }

    /// When the last nemesis of the run ended, everything healed (None
    /// while one is active or if none ended).
    pub fn healed_at(&self) -> Option<Duration> {
        self.healed_at.filter(|_| self.active.is_none())
    }

    /// When the active nemesis's window ends.
    pub fn end(&self) -> Option<Duration> {
        self.active.as_ref().map(|a| a.end)
    }
}

/// Apply everything due at the cluster's time to `c`: what a cluster's wait
/// loop calls at the times [`NemesisDriver::next_due`] gave.
pub fn fire_due(c: &mut dyn Cluster) -> Result<()> {
    // Bounded: a schedule holds at most 2 * MAX_FAULTS steps, plus the recovery.
    for _ in 0..=2 * MAX_FAULTS + 1 {
        let now = c.now();
        let Some(due) = c.nemesis_driver().take_due(now) else {
            return Ok(());
        };
        let base = c.nemesis_driver().base();
        c.nemesis_driver().set_firing(true);
        let r = due.apply(c, base);
        c.nemesis_driver().set_firing(false);
        r?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u32) -> Vec<MachineId> {
        (0..n).map(MachineId).collect()
    }

    #[test]
    fn drawn_schedules_are_sorted_in_range_and_vary() {
        let n = Nemesis::on(&ms(3)).window(Duration::from_secs(1));
        let mut lengths = std::collections::BTreeSet::new();
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let s = n.draw(seed, 0, false).0;
            assert_eq!(s, n.draw(seed, 0, false).0, "same seed, same schedule");
            assert!(s.steps.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
            assert!(s.steps.iter().all(|st| st.at_ms < 1000), "{s:?}");
            // PauseMany pauses up to 3 at once; KillDuringRecovery crashes twice.
            assert!(s.faults() <= 8 * 3, "{s:?}");
            for st in &s.steps {
                assert!(st.fault.indexes().iter().all(|&i| i < 3), "{st:?}");
                if let Fault::Partition(g) = &st.fault {
                    let mut all = g.concat();
                    all.sort();
                    assert_eq!(all, vec![0, 1, 2], "a partition splits every machine");
                    assert!(g.iter().all(|g| !g.is_empty()), "{st:?}");
                }
                if let Fault::Cut { from, to } = st.fault {
                    assert_ne!(from, to);
                }
                kinds.insert(format!("{:?}", std::mem::discriminant(&st.fault)));
            }
            lengths.insert(s.faults());
        }
        assert!(lengths.len() >= 6, "counts {lengths:?}");
        // Eight faults and their eight undos (HealAll is only ever pasted).
        assert_eq!(kinds.len(), 16, "every kind of fault and undo is drawn");
        assert_ne!(
            n.draw(1, 0, false).0,
            n.draw(1, 1, false).0,
            "each declaration draws its own"
        );
    }

    #[test]
    fn kinds_limit_what_is_drawn_and_one_machine_gets_no_partition() {
        let n = Nemesis::on(&ms(1)).kinds(&[FaultKind::Partition, FaultKind::Crash]);
        for seed in 0..50 {
            for st in n.draw(seed, 0, false).0.steps {
                assert!(
                    matches!(st.fault, Fault::Crash(0) | Fault::Restart(0)),
                    "{st:?}"
                );
            }
        }
        let only_cuts = Nemesis::on(&ms(1)).kinds(&[FaultKind::Cut]);
        assert!((0..20).all(|s| only_cuts.draw(s, 0, false).0.is_empty()));
    }

    #[test]
    fn every_undo_follows_its_fault_within_the_window() {
        let n = Nemesis::on(&ms(4))
            .kinds(&[FaultKind::Crash, FaultKind::Pause])
            .window(Duration::from_millis(500))
            .lasting(Duration::from_millis(10), Duration::from_millis(20));
        for seed in 0..100 {
            let s = n.draw(seed, 0, false).0;
            for (i, st) in s.steps.iter().enumerate() {
                if let Fault::Restart(m) = st.fault {
                    // One of the crashes of that machine before it is its fault.
                    let paired = s.steps[..i].iter().any(|p| {
                        p.fault == Fault::Crash(m) && (10..=20).contains(&(st.at_ms - p.at_ms))
                    });
                    assert!(paired, "restart {i} pairs with no crash in {s:?}");
                }
            }
        }
    }

    /// Each kind draws the shape it names.
    #[test]
    fn each_kind_draws_its_shape() {
        let of = |kind: FaultKind, n: u32, seed: u64| {
            Nemesis::on(&ms(n))
                .kinds(&[kind])
                .max_faults(1)
                .draw(seed, 0, false)
                .0
        };
        let first = |kind, n, seed| of(kind, n, seed).steps.into_iter().next().map(|s| s.fault);
        for seed in 0..60 {
            match first(FaultKind::Ring, 5, seed) {
                Some(Fault::CutPairs(cut)) => {
                    for m in 0..5u32 {
                        let cut_of_m = cut.iter().filter(|p| p.contains(&m)).count();
                        assert_eq!(cut_of_m, 2, "ring: {m} keeps two neighbours: {cut:?}");
                    }
                }
                None => {}
                other => panic!("ring: {other:?}"),
            }
            match first(FaultKind::Bridge, 5, seed) {
                Some(Fault::CutPairs(cut)) => {
                    let touched: std::collections::BTreeSet<u32> =
                        cut.concat().into_iter().collect();
                    assert_eq!(
                        touched.len(),
                        4,
                        "bridge: one machine keeps every link: {cut:?}"
                    );
                    assert!(!cut.is_empty());
                }
                None => {}
                other => panic!("bridge: {other:?}"),
            }
            match first(FaultKind::MajorityMinority, 5, seed) {
                Some(Fault::Partition(g)) => assert!(g[0].len() <= 2 && g[1].len() >= 3, "{g:?}"),
                None => {}
                other => panic!("majority/minority: {other:?}"),
            }
            match first(FaultKind::Isolate, 4, seed) {
                Some(Fault::Partition(g)) => assert_eq!((g[0].len(), g[1].len()), (1, 3)),
                None => {}
                other => panic!("isolate: {other:?}"),
            }
            let many = of(FaultKind::PauseMany, 4, seed);
            if let Some(s) = many.steps.first() {
                let at_once = many
                    .steps
                    .iter()
                    .filter(|x| x.at_ms == s.at_ms && matches!(x.fault, Fault::Pause(_)))
                    .count();
                assert!(at_once >= 2, "pause many: {many:?}");
            }
            let bounce = of(FaultKind::Bounce, 2, seed);
            if let [crash, restart] = &bounce.steps[..] {
                assert!(matches!(crash.fault, Fault::Crash(_)));
                assert!(
                    (1..=50).contains(&(restart.at_ms - crash.at_ms)),
                    "{bounce:?}"
                );
            }
            let k = of(FaultKind::KillDuringRecovery, 2, seed);
            let crashes = k
                .steps
                .iter()
                .filter(|s| matches!(s.fault, Fault::Crash(_)))
                .count();
            assert!(k.steps.is_empty() || crashes >= 1, "{k:?}");
            if let [_, restart, again, ..] = &k.steps[..] {
                assert!(matches!(again.fault, Fault::Crash(_)), "{k:?}");
                assert!((1..=20).contains(&(again.at_ms - restart.at_ms)), "{k:?}");
            }
        }
        // Too few machines for a shape: nothing drawn.
        assert!((0..20).all(|s| of(FaultKind::Ring, 3, s).is_empty()));
        assert!((0..20).all(|s| of(FaultKind::Bridge, 2, s).is_empty()));
    }

    /// With swarm testing each seed draws a profile first: a subset of the
    /// kinds, a part of the window, quiet periods; its schedule keeps to
    /// it, and the same seed draws the same.
    #[test]
    fn swarm_profiles_vary_by_seed_and_schedules_keep_to_them() {
        // Every kind but the one whose second crash comes late.
        let kinds: Vec<FaultKind> = FaultKind::ALL
            .into_iter()
            .filter(|k| *k != FaultKind::KillDuringRecovery)
            .collect();
        let n = Nemesis::on(&ms(3))
            .kinds(&kinds)
            .window(Duration::from_secs(2))
            .swarm(true);
        let mut subsets = std::collections::BTreeSet::new();
        let mut quiet_seen = false;
        for seed in 0..200 {
            let (s, p) = n.draw(seed, 0, false);
            let p = p.expect("a swarm profile");
            assert_eq!((s.clone(), Some(p.clone())), n.draw(seed, 0, false));
            assert!(!p.kinds.is_empty() && p.kinds.iter().all(|(k, _)| kinds.contains(k)));
            assert!(p
                .kinds
                .iter()
                .all(|(k, w)| *k != FaultKind::Ring && (1..=8).contains(w)));
            assert!(p.from_ms < p.to_ms && p.to_ms <= 2000, "{p}");
            assert!(s.faults() <= p.max_faults * 3, "{p}: {s:?}");
            for st in s.steps.iter().filter(|st| st.fault.is_fault()) {
                let in_quiet = p.quiet.iter().any(|&(a, b)| (a..b).contains(&st.at_ms));
                assert!(
                    (p.from_ms..p.to_ms).contains(&st.at_ms) && !in_quiet,
                    "{p}: {st:?}"
                );
            }
            quiet_seen |= !p.quiet.is_empty();
            subsets.insert(p.kinds.iter().map(|(k, _)| *k).collect::<Vec<_>>());
        }
        assert!(subsets.len() > 100, "profiles vary: {}", subsets.len());
        assert!(subsets.iter().any(|k| k.len() == 1) && subsets.iter().any(|k| k.len() > 5));
        assert!(quiet_seen);
        // Off unless asked: by the declaration, or for the run.
        let plain = Nemesis::on(&ms(3));
        assert_eq!(plain.draw(1, 0, false).1, None);
        assert!(plain.draw(1, 0, true).1.is_some());
        assert_eq!(plain.clone().swarm(false).draw(1, 0, true).1, None);
    }

    #[test]
    fn bad_declarations_are_clear_errors() {
        let err = |n: Nemesis| {
            NemesisDriver::new(0, Link::default(), None)
                .begin(&n, Duration::ZERO)
                .unwrap_err()
                .to_string()
        };
        assert!(err(Nemesis::on(&[])).contains("no machines"));
        assert!(err(Nemesis::on(&[MachineId(1), MachineId(1)])).contains("twice"));
        assert!(err(Nemesis::on(&ms(2)).window(Duration::ZERO)).contains("window"));
        assert!(err(Nemesis::on(&ms(2)).max_faults(MAX_FAULTS + 1)).contains("limit"));
        assert!(err(Nemesis::on(&ms(2)).kinds(&[])).contains("no kinds"));
        let beyond = Schedule::new(vec![Step {
            at_ms: 1,
            fault: Fault::Crash(5),
        }]);
        assert!(err(Nemesis::on(&ms(2)).schedule(beyond)).contains("beyond"));
    }

    #[test]
    fn driver_gives_steps_in_order_then_the_recovery() {
        let s = Schedule::new(vec![
            Step {
                at_ms: 30,
                fault: Fault::Restart(0),
            },
            Step {
                at_ms: 10,
                fault: Fault::Crash(0),
            },
        ]);
        let n = Nemesis::on(&ms(2))
            .window(Duration::from_millis(100))
            .schedule(s.clone());
        let mut d = NemesisDriver::new(7, Link::default(), None);
        let t0 = Duration::from_millis(1000);
        assert_eq!(d.begin(&n, t0).unwrap(), None);
        assert_eq!(d.next_due(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(d.take_due(t0 + Duration::from_millis(9)), None);
        let at = |m| t0 + Duration::from_millis(m);
        assert_eq!(d.take_due(at(10)), Some(Due::Fault(ms(2), Fault::Crash(0))));
        assert_eq!(d.next_due(), Some(at(30)));
        assert_eq!(
            d.take_due(at(50)),
            Some(Due::Fault(ms(2), Fault::Restart(0)))
        );
        assert_eq!(d.next_due(), Some(at(100)), "then the end of the window");
        assert_eq!(d.take_due(at(100)), Some(Due::Recover(ms(2))));
        assert_eq!(d.next_due(), None);
        assert_eq!(d.schedules(), &[s]);
    }

    #[test]
    fn replacements_take_the_place_of_drawn_schedules() {
        let n = Nemesis::on(&ms(3));
        let mut d = NemesisDriver::new(3, Link::default(), Some(vec![Schedule::default()]));
        d.begin(&n, Duration::ZERO).unwrap();
        d.begin(&n, Duration::ZERO).unwrap();
        assert_eq!(d.schedules(), &[Schedule::default(), Schedule::default()]);
        let mut drawn = NemesisDriver::new(3, Link::default(), None);
        drawn.begin(&n, Duration::ZERO).unwrap();
        assert_eq!(drawn.schedules(), &[n.draw(3, 0, false).0]);
    }

    #[test]
    fn json_and_rust_forms() {
        let s = Schedule::new(vec![
            Step {
                at_ms: 50,
                fault: Fault::Crash(1),
            },
            Step {
                at_ms: 10,
                fault: Fault::Partition(vec![vec![0], vec![1, 2]]),
            },
        ]);
        let json = schedules_to_json(std::slice::from_ref(&s));
        assert_eq!(
            json,
            r#"[[{"at_ms":10,"fault":{"Partition":[[0],[1,2]]}},{"at_ms":50,"fault":{"Crash":1}}]]"#
        );
        assert_eq!(schedules_from_json(&json, "x").unwrap(), vec![s.clone()]);
        let e = schedules_from_json("[{", "DISTZERO_SCHEDULE").unwrap_err();
        assert!(e.to_string().contains("DISTZERO_SCHEDULE"), "{e}");
        let r = s.to_rust();
        assert!(
            r.contains("Step { at_ms: 10, fault: Fault::Partition(vec![vec![0], vec![1, 2]]) }"),
            "{r}"
        );
        assert!(r.find("at_ms: 10").unwrap() < r.find("at_ms: 50").unwrap());
    }

    #[test]
    fn disk_and_clock_steps_print_as_rust_and_round_trip_as_json() {
        let s = Schedule::new(vec![
            Step {
                at_ms: 5,
                fault: Fault::Disk {
                    machine: 1,
                    fault: DiskFault::OnCrash(CrashLoss::TearLast),
                },
            },
            Step {
                at_ms: 6,
                fault: Fault::Clock {
                    machine: 0,
                    fault: ClockFault::Step { ms: -250 },
                },
            },
            Step {
                at_ms: 7,
                fault: Fault::Disk {
                    machine: 1,
                    fault: DiskFault::Reset,
                },
            },
        ]);
        let rust = s.to_rust();
        assert!(
            rust.contains(
                "fault: Fault::Disk { machine: 1, fault: DiskFault::OnCrash(CrashLoss::TearLast) }"
            ),
            "{rust}"
        );
        assert!(
            rust.contains(
                "fault: Fault::Clock { machine: 0, fault: ClockFault::Step { ms: -250 } }"
            ),
            "{rust}"
        );
        assert_eq!(s.faults(), 2, "a reset is an undo, not a fault");
        let json = schedules_to_json(std::slice::from_ref(&s));
        assert_eq!(schedules_from_json(&json, "test").unwrap(), vec![s]);
    }

    #[test]
    fn disk_and_clock_kinds_draw_their_faults_with_undos() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for kind in FaultKind::DISK.into_iter().chain(FaultKind::CLOCK) {
            let steps = fault_steps(kind, 3, 100, &mut rng);
            assert!(
                steps.iter().any(|(_, f)| f.is_fault()),
                "{kind:?}: {steps:?}"
            );
            if kind != FaultKind::Corrupt {
                assert!(
                    steps.iter().any(|(at, f)| *at == 100 && !f.is_fault()),
                    "{kind:?} is undone: {steps:?}"
                );
            }
            for (_, f) in &steps {
                match f {
                    Fault::Disk { fault, .. } => fault.validate().unwrap(),
                    Fault::Clock { fault, .. } => fault.validate().unwrap(),
                    _ => {}
                }
            }
        }
    }
}
