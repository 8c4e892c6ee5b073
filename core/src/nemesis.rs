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
}

impl Fault {
    /// The machine indexes this fault names.
    fn indexes(&self) -> Vec<u32> {
        match self {
            Fault::Partition(g) | Fault::Heal(g) => g.concat(),
            Fault::Cut { from, to } | Fault::HealCut { from, to } => vec![*from, *to],
            Fault::Crash(i) | Fault::Restart(i) | Fault::Pause(i) | Fault::Resume(i) => vec![*i],
            Fault::HealAll | Fault::Latency { .. } | Fault::ResetLinks => vec![],
        }
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
        self.steps
            .iter()
            .filter(|s| {
                matches!(
                    s.fault,
                    Fault::Partition(_)
                        | Fault::Cut { .. }
                        | Fault::Crash(_)
                        | Fault::Pause(_)
                        | Fault::Latency { .. }
                )
            })
            .count()
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FaultKind {
    /// The machines split in two groups (both ways), healed after a while.
    Partition,
    /// One direction between two machines cut, healed after a while.
    Cut,
    /// A machine crashes (its nodes lose their memory) and restarts after a while.
    Crash,
    /// A machine freezes and resumes after a while.
    Pause,
    /// Latency on every link rises for a while.
    Latency,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Partition,
        FaultKind::Cut,
        FaultKind::Crash,
        FaultKind::Pause,
        FaultKind::Latency,
    ];

    /// Relative weight when drawing.
    fn weight(self) -> u32 {
        match self {
            FaultKind::Partition => 3,
            FaultKind::Crash => 2,
            FaultKind::Cut | FaultKind::Pause | FaultKind::Latency => 1,
        }
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
        }
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
    /// declaration: the fixed one, or one drawn.
    pub fn draw(&self, seed: u64, ordinal: usize) -> Schedule {
        if let Some(s) = &self.fixed {
            return s.clone();
        }
        // An rng of its own: the system's draws do not depend on the
        // schedule, so a replaced schedule changes nothing else.
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&(ordinal as u64).to_le_bytes());
        key[16..24].copy_from_slice(b"nemesis!");
        let mut rng = ChaCha8Rng::from_seed(key);
        let n = self.machines.len() as u32;
        let kinds: Vec<FaultKind> = self
            .kinds
            .iter()
            .copied()
            .filter(|k| n >= 2 || !matches!(k, FaultKind::Partition | FaultKind::Cut))
            .collect();
        let total: u32 = kinds.iter().map(|k| k.weight()).sum();
        let window_ms = (self.window.as_millis() as u64).max(1);
        let (lo, hi) = (
            self.lasting.0.as_millis() as u64,
            (self.lasting.1.as_millis() as u64).max(1),
        );
        let count = if total == 0 {
            0
        } else {
            rng.gen_range(0..=self.max_faults)
        };
        let mut steps = Vec::with_capacity(count * 2);
        for _ in 0..count {
            let at_ms = rng.gen_range(0..window_ms);
            let mut pick = rng.gen_range(0..total);
            let kind = *kinds
                .iter()
                .find(|k| {
                    let hit = pick < k.weight();
                    pick = pick.saturating_sub(k.weight());
                    hit
                })
                .unwrap_or(&kinds[0]);
            let lasts = rng.gen_range(lo.max(1)..=hi.max(lo.max(1)));
            let (fault, undo) = match kind {
                FaultKind::Partition => {
                    // A non-empty proper subset on one side.
                    let mut side: Vec<u32> = (0..n).filter(|_| rng.gen_bool(0.5)).collect();
                    if side.is_empty() || side.len() == n as usize {
                        side = vec![rng.gen_range(0..n)];
                    }
                    let rest: Vec<u32> = (0..n).filter(|i| !side.contains(i)).collect();
                    let groups = vec![side, rest];
                    (Fault::Partition(groups.clone()), Fault::Heal(groups))
                }
                FaultKind::Cut => {
                    let from = rng.gen_range(0..n);
                    let to = (from + rng.gen_range(1..n)) % n;
                    (Fault::Cut { from, to }, Fault::HealCut { from, to })
                }
                FaultKind::Crash => {
                    let i = rng.gen_range(0..n);
                    (Fault::Crash(i), Fault::Restart(i))
                }
                FaultKind::Pause => {
                    let i = rng.gen_range(0..n);
                    (Fault::Pause(i), Fault::Resume(i))
                }
                FaultKind::Latency => {
                    let min_ms = rng.gen_range(0..5);
                    let max_ms = min_ms + rng.gen_range(0..50);
                    (Fault::Latency { min_ms, max_ms }, Fault::ResetLinks)
                }
            };
            steps.push(Step { at_ms, fault });
            if at_ms + lasts < window_ms {
                steps.push(Step {
                    at_ms: at_ms + lasts,
                    fault: undo,
                });
            }
        }
        Schedule::new(steps)
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
    }
}

/// Heal every link, resume and restart `machines`, links back to `base`.
pub fn recover(c: &mut dyn Cluster, machines: &[MachineId], base: Link) -> Result<()> {
    tracing::info!("nemesis: heal, resume and restart everything");
    c.heal_all()?;
    for &m in machines {
        c.resume(m)?;
        c.restart(m)?;
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
    ran: Vec<Schedule>,
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
        let schedule = match self.replace.as_ref() {
            Some(r) => r.get(ordinal).cloned().unwrap_or_default(),
            None => n.draw(self.seed, ordinal),
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
        self.ran.push(schedule.clone());
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
            let s = n.draw(seed, 0);
            assert_eq!(s, n.draw(seed, 0), "same seed, same schedule");
            assert!(s.steps.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
            assert!(s.steps.iter().all(|st| st.at_ms < 1000), "{s:?}");
            assert!(s.faults() <= 8, "{s:?}");
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
        // Five faults and their five undos.
        assert_eq!(kinds.len(), 10, "every kind of fault and undo is drawn");
        assert_ne!(n.draw(1, 0), n.draw(1, 1), "each declaration draws its own");
    }

    #[test]
    fn kinds_limit_what_is_drawn_and_one_machine_gets_no_partition() {
        let n = Nemesis::on(&ms(1)).kinds(&[FaultKind::Partition, FaultKind::Crash]);
        for seed in 0..50 {
            for st in n.draw(seed, 0).steps {
                assert!(
                    matches!(st.fault, Fault::Crash(0) | Fault::Restart(0)),
                    "{st:?}"
                );
            }
        }
        let only_cuts = Nemesis::on(&ms(1)).kinds(&[FaultKind::Cut]);
        assert!((0..20).all(|s| only_cuts.draw(s, 0).is_empty()));
    }

    #[test]
    fn every_undo_follows_its_fault_within_the_window() {
        let n = Nemesis::on(&ms(4))
            .window(Duration::from_millis(500))
            .lasting(Duration::from_millis(10), Duration::from_millis(20));
        for seed in 0..100 {
            let s = n.draw(seed, 0);
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
        assert_eq!(drawn.schedules(), &[n.draw(3, 0)]);
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
}
