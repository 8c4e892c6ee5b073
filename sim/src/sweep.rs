//! Seed sweeps: one workflow test over many seeds on all cores, with a
//! progress bar, shrinking of the failing fault schedules (what the test's
//! nemesis declarations drew), and a determinism check.

use crate::runner::{run_watched, BudgetSpent, RunFailure, SimRun, SimSettings, SCHEDULE_SUFFIX};
use distzero_core::nemesis::{schedules_to_json, Profile, Schedule};
use distzero_core::{Cluster, Registry, Result, Settings};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What a sweep runs once per seed: a workflow test, whose body declares
/// its nemesis (`c.start_nemesis`, see [`distzero_core::nemesis`]). One
/// seed of it is the same run, byte for byte, as [`crate::try_workflow`]
/// of that seed (so a failing seed replays with
/// `DISTZERO_SEED=<seed> cargo test simulated::<name>`).
#[derive(Clone)]
pub struct Workflow {
    pub name: String,
    pub registry: Registry,
    pub body: fn(&mut dyn Cluster) -> Result<()>,
}

impl Workflow {
    pub fn new(
        name: impl Into<String>,
        registry: Registry,
        body: fn(&mut dyn Cluster) -> Result<()>,
    ) -> Workflow {
        Workflow {
            name: name.into(),
            registry,
            body,
        }
    }
}

/// Run one seed, as a sweep does and as its printed replay does: `sim`
/// read from the settings, a watchdog holding the seed to its wall-time
/// budget; `schedules` replace what the nemesis declarations would draw
/// (None: `sim.schedules`, else drawn from the seed). `log_dir` None = no
/// logs (fast). A failure over a budget names the seed and the budget.
pub fn run_once(
    w: &Workflow,
    seed: u64,
    schedules: Option<&[Schedule]>,
    log_dir: Option<&Path>,
    sim: &SimSettings,
) -> std::result::Result<(), String> {
    let watchdog = Watchdog::start();
    // A replay writes the logs the sweep wrote for the failing seed,
    // message events included.
    let sim = &sim.for_failure();
    run_seed(w, seed, schedules, log_dir, sim, &watchdog)
        .result
        .map_err(|f| f.message)
}

/// The schedule each nemesis declaration of `w` runs with `seed` (drawn
/// from the seed: a run of it, without logs, tells).
pub fn schedules_for(w: &Workflow, seed: u64, sim: &SimSettings) -> Vec<Schedule> {
    let watchdog = Watchdog::start();
    run_seed(w, seed, None, None, sim, &watchdog).schedules
}

fn run_seed(
    w: &Workflow,
    seed: u64,
    schedules: Option<&[Schedule]>,
    log_dir: Option<&Path>,
    sim: &SimSettings,
    watchdog: &Watchdog,
) -> SimRun {
    let mut cfg = sim.config(seed, w.registry.clone(), log_dir);
    if let Some(s) = schedules {
        cfg.schedules = Some(s.to_vec());
    }
    run_watched(cfg, sim, true, "workflow", watchdog, &mut |c| (w.body)(c))
}

/// Whether `r` is a failure that replays: any failure but one stopped by
/// the wall clock (how far a run gets in a given wall time varies).
fn fails_exactly(r: &std::result::Result<(), RunFailure>) -> Option<&RunFailure> {
    r.as_ref()
        .err()
        .filter(|f| !matches!(f.budget, Some(BudgetSpent::WallTime(_))))
}

/// Shrink the failing `schedules` of `seed` (one per nemesis declaration,
/// as the run that failed with `message` ran them), delta-debugging style:
/// try the schedules without a chunk of steps (halves, then quarters, …,
/// then single steps, last first) and keep a removal when the run still
/// fails, in passes until no single step can go or `budget` runs are
/// spent. Same seed throughout: the system's own draws do not depend on
/// the schedule. Removing chunks finds small schedules that single
/// removals miss (a fault's absence shifts the timing of what follows);
/// when no single step can go, pairs of steps are tried too.
/// Returns the smallest failing schedules and their failure.
pub fn shrink(
    w: &Workflow,
    seed: u64,
    schedules: Vec<Schedule>,
    message: String,
    sim: &SimSettings,
    budget: usize,
) -> (Vec<Schedule>, String) {
    let watchdog = Watchdog::start();
    shrink_with(w, seed, schedules, message, sim, budget, &watchdog)
}

/// `schedules` without the steps at `drop` (indexes into all their steps,
/// declaration by declaration).
fn without(schedules: &[Schedule], drop: std::ops::Range<usize>) -> Vec<Schedule> {
    without_each(schedules, &drop.collect::<Vec<_>>())
}

/// `schedules` without the steps at the indexes `drop` (as [`without`]).
fn without_each(schedules: &[Schedule], drop: &[usize]) -> Vec<Schedule> {
    let mut i = 0;
    schedules
        .iter()
        .map(|s| {
            let steps = s
                .steps
                .iter()
                .filter(|_| {
                    let keep = !drop.contains(&i);
                    i += 1;
                    keep
                })
                .cloned()
                .collect();
            Schedule { steps }
        })
        .collect()
}

fn shrink_with(
    w: &Workflow,
    seed: u64,
    mut best: Vec<Schedule>,
    mut message: String,
    sim: &SimSettings,
    budget: usize,
    watchdog: &Watchdog,
) -> (Vec<Schedule>, String) {
    let mut left = budget;
    let len = |s: &[Schedule]| s.iter().map(|s| s.steps.len()).sum::<usize>();
    let mut chunk = (len(&best) / 2).max(1);
    loop {
        let mut dropped = false;
        // From the end back: later steps more often do nothing, and the
        // indexes of earlier chunks stay valid.
        let mut end = len(&best);
        while end > 0 && left > 0 {
            let start = end.saturating_sub(chunk);
            left -= 1;
            let candidate = without(&best, start..end);
            let run = run_seed(w, seed, Some(&candidate), None, sim, watchdog);
            if let Some(f) = fails_exactly(&run.result) {
                message = f.message.clone();
                best = candidate;
                dropped = true;
            }
            end = start;
        }
        if left == 0 {
            return (best, message);
        }
        if chunk == 1 && !dropped {
            // No single step can go: try pairs (a fault with its undo, two
            // crashes that only matter together), then singles again.
            let n = len(&best);
            let pair = (0..n)
                .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
                .find(|&(i, j)| {
                    if left == 0 {
                        return false;
                    }
                    left -= 1;
                    let candidate = without_each(&best, &[i, j]);
                    let run = run_seed(w, seed, Some(&candidate), None, sim, watchdog);
                    match fails_exactly(&run.result) {
                        Some(f) => {
                            message = f.message.clone();
                            true
                        }
                        None => false,
                    }
                });
            match pair {
                Some((i, j)) => best = without_each(&best, &[i, j]),
                None => return (best, message),
            }
        }
        if !dropped {
            chunk = (chunk / 2).max(1);
        }
        chunk = chunk.min(len(&best).max(1));
    }
}

/// Holds runs to their wall-time budget: one thread that sets a run's
/// cancel flag once its deadline passes (the run then fails at its next
/// check with [`distzero_core::Error::Budget`]). Only the flag crosses into the
/// run: the simulated path reads no clock and starts no thread.
pub struct Watchdog {
    shared: Arc<(Mutex<Watch>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Watch {
    next: u64,
    /// Armed runs: deadline and cancel flag, by arming id.
    runs: BTreeMap<u64, (Instant, Arc<AtomicBool>)>,
    stop: bool,
}

/// An armed run; dropping it disarms the watchdog for that run.
pub struct Armed<'a> {
    dog: &'a Watchdog,
    id: Option<u64>,
}

impl Watchdog {
    pub fn start() -> Watchdog {
        let shared = Arc::new((Mutex::new(Watch::default()), Condvar::new()));
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("distzero-watchdog".into())
            .spawn(move || watch(&s))
            .expect("starting the sweep's watchdog thread");
        Watchdog {
            shared,
            thread: Some(thread),
        }
    }

    /// Set `cancel` once `budget` of wall time has passed, unless disarmed first.
    pub fn arm(&self, budget: Duration, cancel: Arc<AtomicBool>) -> Armed<'_> {
        let Some(deadline) = Instant::now().checked_add(budget) else {
            return Armed {
                dog: self,
                id: None,
            }; // never
        };
        let (m, cv) = &*self.shared;
        let mut w = m.lock().unwrap_or_else(|e| e.into_inner());
        w.next += 1;
        let id = w.next;
        w.runs.insert(id, (deadline, cancel));
        cv.notify_one();
        Armed {
            dog: self,
            id: Some(id),
        }
    }
}

fn watch(shared: &(Mutex<Watch>, Condvar)) {
    let (m, cv) = shared;
    let mut w = m.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if w.stop {
            return;
        }
        let now = Instant::now();
        w.runs.retain(|_, (deadline, cancel)| {
            let due = *deadline <= now;
            if due {
                cancel.store(true, Ordering::Relaxed);
            }
            !due
        });
        let next = w.runs.values().map(|(d, _)| *d).min();
        w = match next {
            Some(d) => {
                cv.wait_timeout(w, d.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => cv.wait(w).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let (m, _) = &*self.dog.shared;
            m.lock().unwrap_or_else(|e| e.into_inner()).runs.remove(&id);
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (m, cv) = &*self.shared;
        m.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cv.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Default of [`SweepOptions::candidates`].
pub const CANDIDATES: usize = 6;

/// Default of [`SweepOptions::shrink_goal`].
pub const SHRINK_GOAL: usize = 3;

/// How to sweep.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// Seeds to run (before sharding).
    pub seeds: std::ops::Range<u64>,
    /// Threads; 0 = one per core.
    pub jobs: usize,
    pub stop_at_first: bool,
    /// With `stop_at_first`: how many failing seeds to gather (sweeping at
    /// most as many seeds again as it took to find the first, at least
    /// 16 more) before shrinking each and reporting the one that shrinks
    /// smallest. A seed's schedule often shrinks poorly (a fault's absence
    /// shifts the timing of everything after it); another seed's may
    /// shrink to one fault. 1 = the first failure only.
    pub candidates: usize,
    /// With `stop_at_first`: while the smallest shrunk schedule has more
    /// faults than this, sweep on for as many candidates again (at most
    /// as many seeds again as ran so far) and shrink them too, up to
    /// [`MAX_CANDIDATES`] in all.
    pub shrink_goal: usize,
    /// `(i, n)`: run only seeds with `seed % n == i`.
    pub shard: Option<(u64, u64)>,
    /// Run each seed twice with full logs and compare them byte for byte.
    pub check_determinism: bool,
    pub progress: bool,
    /// Shrink the first failure's schedule (runs of the workflow allowed).
    pub shrink_budget: usize,
    /// Root of the logs (`<root>/<workflow>/simulated-<seed>/`).
    pub log_root: PathBuf,
    /// What every run reads from the settings: buggify, log level, and the
    /// budgets of one seed (events, wall time). A replay must use the same.
    pub sim: SimSettings,
}

impl SweepOptions {
    /// From the settings: seeds (`DISTZERO_SEEDS`, else as
    /// [`SweepOptions::default`]), jobs, the shard (`DISTZERO_SHARD`, or a
    /// Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` of
    /// `DISTZERO_SHARDS`), `DISTZERO_KEEP_GOING`, `DISTZERO_SHRINK`,
    /// `DISTZERO_PROGRESS`, the determinism check, log folder and
    /// [`SimSettings`]. A bad value names its variable.
    pub fn from_settings(settings: &Settings) -> Result<SweepOptions> {
        Ok(SweepOptions {
            seeds: settings
                .seeds()?
                .unwrap_or_else(|| SweepOptions::default().seeds),
            jobs: settings.sweep_jobs()?,
            stop_at_first: !settings.keep_going()?,
            candidates: CANDIDATES,
            shrink_goal: SHRINK_GOAL,
            shard: settings.shard()?,
            check_determinism: settings.check_determinism()?,
            progress: settings.progress()?,
            shrink_budget: settings.shrink_budget()?,
            log_root: settings.log_dir(),
            sim: SimSettings::from_settings(settings)?,
        })
    }
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            seeds: 0..200,
            jobs: 0,
            stop_at_first: true,
            candidates: CANDIDATES,
            shrink_goal: SHRINK_GOAL,
            shard: None,
            check_determinism: false,
            progress: false,
            shrink_budget: 300,
            log_root: PathBuf::from(".tmp"),
            sim: SimSettings::default(),
        }
    }
}

/// One failing seed.
#[derive(Clone, Debug)]
pub struct SweepFailure {
    pub seed: u64,
    /// The first violated assertion (or error); over a budget, it names the
    /// seed and the budget.
    pub message: String,
    /// The budget the seed went over, if that is how it failed.
    pub budget: Option<BudgetSpent>,
    /// Full logs of the failing run.
    pub log_dir: PathBuf,
    /// The schedule each nemesis declaration of the failing run ran.
    pub schedules: Vec<Schedule>,
    /// The swarm profile each declaration drew it from (`DISTZERO_SWARM`,
    /// `Nemesis::swarm`), if any.
    pub profiles: Vec<Option<Profile>>,
    /// The smallest schedules that still fail with this seed, and the message.
    pub shrunk: Option<(Vec<Schedule>, String)>,
    /// Full logs of the run with the shrunk schedules.
    pub shrunk_log_dir: Option<PathBuf>,
    /// The command that replays the seed.
    pub replay: String,
    /// The command that replays the seed with the shrunk schedules.
    pub replay_shrunk: Option<String>,
}

/// What a sweep found.
#[derive(Clone, Debug, Default)]
pub struct SweepReport {
    pub workflow: String,
    pub ran: u64,
    /// `(i, n)` when only the seeds with `seed % n == i` ran.
    pub shard: Option<(u64, u64)>,
    pub failures: Vec<SweepFailure>,
    /// Seeds whose two runs gave different logs.
    pub nondeterministic: Vec<u64>,
    /// Wall time of the whole sweep (running, re-running with logs, shrinking).
    pub elapsed: Duration,
    /// Wall time from the start until a seed first failed.
    pub to_first_failure: Option<Duration>,
    /// Wall time spent re-running failures with logs, shrinking, and
    /// sweeping on for candidates that shrink smaller (zero if nothing was
    /// shrunk).
    pub shrinking: Duration,
    /// Failing seeds found but not reported in full (stopping at the first
    /// failure, the other candidates; the report shows the one that shrank
    /// smallest).
    pub also_failing: Vec<u64>,
}

impl SweepReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.nondeterministic.is_empty()
    }
}

/// The schedules of a run, for a report: one block per declaration.
fn describe(schedules: &[Schedule]) -> String {
    match schedules {
        [] => "  (no nemesis declared: the body's own faults only)\n".into(),
        [one] => one.describe(),
        many => many
            .iter()
            .enumerate()
            .map(|(i, s)| format!("  nemesis #{}:\n{}", i + 1, s.describe()))
            .collect(),
    }
}

impl std::fmt::Display for SweepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = self.ran as f64 / self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "workflow {}: {} seeds in {:.1} s ({rate:.0} seeds/s), {} failing, {} nondeterministic",
            self.workflow,
            self.ran,
            self.elapsed.as_secs_f64(),
            self.failures.len(),
            self.nondeterministic.len()
        )?;
        if let Some((i, n)) = self.shard {
            writeln!(f, "shard {i}/{n}: seeds ≡ {i} mod {n}")?;
        }
        if let Some(t) = self.to_first_failure {
            let shrinking = if self.shrinking.is_zero() {
                "no shrinking".to_string()
            } else {
                format!("{:.2} s shrinking", self.shrinking.as_secs_f64())
            };
            writeln!(
                f,
                "time: first failure after {:.2} s, {shrinking}",
                t.as_secs_f64()
            )?;
        }
        if !self.also_failing.is_empty() {
            let seeds: Vec<String> = self.also_failing.iter().map(u64::to_string).collect();
            let which = if self.failures.iter().any(|f| f.shrunk.is_some()) {
                "below: the failure whose schedule shrank smallest"
            } else {
                "below: the first"
            };
            writeln!(f, "also failing: seeds {} ({which})", seeds.join(", "))?;
        }
        for s in &self.nondeterministic {
            writeln!(f, "NONDETERMINISTIC seed {s}: two runs gave different logs")?;
        }
        for fl in &self.failures {
            writeln!(f, "\nFAILED seed {}", fl.seed)?;
            match &fl.budget {
                Some(b) => writeln!(f, "  over budget: {b}\n  violated: {}", fl.message)?,
                None => writeln!(f, "  violated: {}", fl.message)?,
            }
            writeln!(f, "  logs:     {}", fl.log_dir.display())?;
            writeln!(f, "  view:     {}", crate::view_command(&fl.log_dir))?;
            for (i, p) in fl.profiles.iter().enumerate() {
                if let Some(p) = p {
                    let which = if fl.profiles.len() > 1 {
                        format!(" (nemesis #{})", i + 1)
                    } else {
                        String::new()
                    };
                    writeln!(f, "  swarm profile{which}: {p}")?;
                }
            }
            writeln!(f, "  schedule:\n{}", describe(&fl.schedules).trim_end())?;
            writeln!(f, "  replay:   {}", fl.replay)?;
            if let Some((s, m)) = &fl.shrunk {
                let faults: usize = s.iter().map(Schedule::faults).sum();
                let steps: usize = s.iter().map(|s| s.steps.len()).sum();
                if steps == 0 {
                    writeln!(
                        f,
                        "  shrunk to no fault at all: the seed fails without its nemesis"
                    )?;
                } else {
                    writeln!(f, "  shrunk to {faults} fault(s) in {steps} step(s):")?;
                    writeln!(f, "{}", describe(s).trim_end())?;
                }
                writeln!(f, "  which still fails: {m}")?;
                if let Some(d) = &fl.shrunk_log_dir {
                    writeln!(f, "  its logs: {}", d.display())?;
                    writeln!(f, "  view it:  {}", crate::view_command(d))?;
                }
                for (i, one) in s.iter().enumerate() {
                    let which = if s.len() > 1 {
                        format!(" (nemesis #{})", i + 1)
                    } else {
                        String::new()
                    };
                    writeln!(
                        f,
                        "  as Rust{which}: Nemesis::on(&machines).schedule({})",
                        one.to_rust()
                    )?;
                }
                writeln!(f, "  as JSON:  {}", schedules_to_json(s))?;
                if let Some(r) = &fl.replay_shrunk {
                    writeln!(f, "  replay the shrunk schedule:\n    {r}")?;
                }
            } else if matches!(fl.budget, Some(BudgetSpent::WallTime(_))) {
                writeln!(
                    f,
                    "  not shrunk: how far a run gets in a given wall time varies"
                )?;
            }
        }
        Ok(())
    }
}

/// Run `w` over the seeds of `opts`, on all cores. `replay` makes the
/// replay command of a seed, with the schedules to replace when given (a
/// shrunk schedule).
pub fn sweep(
    w: &Workflow,
    opts: &SweepOptions,
    replay: &dyn Fn(u64, Option<&[Schedule]>) -> String,
) -> SweepReport {
    let start = Instant::now();
    let seeds: Vec<u64> = opts
        .seeds
        .clone()
        .filter(|s| opts.shard.is_none_or(|(i, n)| n == 0 || s % n == i))
        .collect();
    let jobs = if opts.jobs == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        opts.jobs
    }
    .min(seeds.len().max(1));
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(seeds.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} seeds  {per_sec}  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message("0 failing");
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let watchdog = Watchdog::start();
    let run = |seed: u64, schedules: Option<&[Schedule]>, log_dir: Option<&Path>| {
        run_seed(w, seed, schedules, log_dir, &opts.sim, &watchdog)
    };
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    // Failing seeds, their first failure and the schedules it ran.
    let failing = Mutex::new(Vec::<(u64, RunFailure, Vec<Schedule>)>::new());
    let nondet = Mutex::new(Vec::<u64>::new());
    let ran = AtomicU64::new(0);
    let first_failure = OnceLock::<Duration>::new();
    // At most as many seeds again as ran when a round's first failure
    // came (at least 16 more).
    let limit = |r: u64| r + r.max(16);
    // Sweep on until `target` seeds failed (stopping at the first failure)
    // or the round's limit of seeds ran; whether seeds are left.
    let gather = |target: usize| -> bool {
        stop.store(false, Ordering::Relaxed);
        let failed_before = failing.lock().expect("poisoned").len();
        let limit_at = OnceLock::<u64>::new();
        if failed_before > 0 {
            limit_at.get_or_init(|| limit(ran.load(Ordering::Relaxed)));
        }
        std::thread::scope(|s| {
            for _ in 0..jobs {
                s.spawn(|| loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if let (true, Some(&l)) = (opts.stop_at_first, limit_at.get()) {
                        if ran.load(Ordering::Relaxed) >= l {
                            stop.store(true, Ordering::Relaxed);
                            return;
                        }
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(&seed) = seeds.get(i) else { return };
                    let run = if opts.check_determinism {
                        let base = opts.log_root.join(&w.name).join("determinism");
                        let (a, b) = (
                            base.join(format!("{seed}-a")),
                            base.join(format!("{seed}-b")),
                        );
                        let r1 = run(seed, None, Some(&a));
                        let r2 = run(seed, None, Some(&b));
                        // A run stopped by the wall clock stops anywhere: no
                        // two such runs need agree.
                        let timed_out = [&r1.result, &r2.result]
                            .iter()
                            .any(|r| r.is_err() && fails_exactly(r).is_none());
                        if !timed_out
                            && (r1.result != r2.result
                                || r1.schedules != r2.schedules
                                || !same_tree(&a, &b))
                        {
                            nondet.lock().expect("poisoned").push(seed);
                        } else {
                            let _ = std::fs::remove_dir_all(&a);
                            let _ = std::fs::remove_dir_all(&b);
                        }
                        r1
                    } else {
                        run(seed, None, None)
                    };
                    ran.fetch_add(1, Ordering::Relaxed);
                    if let Err(m) = run.result {
                        first_failure.get_or_init(|| start.elapsed());
                        limit_at.get_or_init(|| limit(ran.load(Ordering::Relaxed)));
                        let mut f = failing.lock().expect("poisoned");
                        f.push((seed, m, run.schedules));
                        bar.set_message(format!("{} failing", f.len()));
                        if opts.stop_at_first && f.len() >= target {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    bar.inc(1);
                });
            }
        });
        (next.load(Ordering::Relaxed) as usize) < seeds.len()
    };
    gather(opts.candidates.max(1));
    let mut failures = Vec::new();
    let began = Instant::now();
    let mut shrunk_any = false;
    if !opts.stop_at_first {
        // Every failure with full logs; the first one shrunk.
        let mut failing = failing.lock().expect("poisoned");
        failing.sort_by_key(|(seed, ..)| *seed);
        for (i, (seed, first, _)) in failing.drain(..).enumerate() {
            let f = examine(w, seed, first, i == 0, opts, replay, &watchdog);
            shrunk_any |= f.shrunk.is_some();
            failures.push(f);
        }
    } else if let Some((seed, first, _, shrunk)) =
        best_candidate(w, opts, &watchdog, &failing, &gather)
    {
        shrunk_any = shrunk.is_some();
        failures.push(report_failure(
            w, seed, first, shrunk, opts, replay, &watchdog,
        ));
    }
    let shrinking = if shrunk_any {
        began.elapsed()
    } else {
        Duration::ZERO
    };
    bar.finish_and_clear();
    let reported: Vec<u64> = failures.iter().map(|f| f.seed).collect();
    let mut also_failing: Vec<u64> = failing
        .into_inner()
        .expect("poisoned")
        .into_iter()
        .map(|(s, ..)| s)
        .filter(|s| !reported.contains(s))
        .collect();
    also_failing.sort_unstable();
    let mut nondeterministic = nondet.into_inner().expect("poisoned");
    nondeterministic.sort();
    SweepReport {
        workflow: w.name.clone(),
        ran: ran.into_inner(),
        shard: opts.shard,
        failures,
        nondeterministic,
        elapsed: start.elapsed(),
        to_first_failure: first_failure.into_inner(),
        shrinking,
        also_failing,
    }
}

/// Most failing seeds one sweep shrinks in search of a small schedule
/// ([`SweepOptions::shrink_goal`]).
pub const MAX_CANDIDATES: usize = 24;

/// Most rounds of sweeping on for candidates in one search: each at most
/// doubles the seeds run.
const MAX_ROUNDS: usize = 12;

/// A failing seed as the seed loop found it, and its shrunk schedules.
type Candidate = (
    u64,
    RunFailure,
    Vec<Schedule>,
    Option<(Vec<Schedule>, String)>,
);

/// Stopping at the first failure: shrink the gathered failing seeds (in
/// seed order, without logs) and keep the one that shrinks smallest
/// (fewest faults, then steps, then the lowest seed). A candidate shrunk
/// to one fault or none cannot be beaten: the rest stay unshrunk. While
/// the best has more faults than [`SweepOptions::shrink_goal`], `gather`
/// sweeps on until as many candidates again failed (at most as many seeds
/// again as ran so far), up to [`MAX_CANDIDATES`] shrunk in all.
fn best_candidate(
    w: &Workflow,
    opts: &SweepOptions,
    watchdog: &Watchdog,
    failing: &Mutex<Vec<(u64, RunFailure, Vec<Schedule>)>>,
    gather: &dyn Fn(usize) -> bool,
) -> Option<Candidate> {
    let size = |s: &[Schedule]| {
        (
            s.iter().map(Schedule::faults).sum::<usize>(),
            s.iter().map(|s| s.steps.len()).sum::<usize>(),
        )
    };
    let per_round = opts.candidates.max(1);
    let mut examined: Vec<u64> = Vec::new();
    let mut best: Option<((usize, usize), Candidate)> = None;
    loop {
        let mut round: Vec<(u64, RunFailure, Vec<Schedule>)> = failing
            .lock()
            .expect("poisoned")
            .iter()
            .filter(|(s, ..)| !examined.contains(s))
            .cloned()
            .collect();
        round.sort_by_key(|(s, ..)| *s);
        round.truncate(per_round.min(MAX_CANDIDATES - examined.len()));
        if round.is_empty() {
            break;
        }
        for (seed, first, schedules) in round {
            examined.push(seed);
            let exact = !matches!(first.budget, Some(BudgetSpent::WallTime(_)));
            let shrink = exact && opts.shrink_budget > 0 && schedules.iter().any(|s| !s.is_empty());
            let shrunk = shrink.then(|| {
                shrink_with(
                    w,
                    seed,
                    schedules.clone(),
                    first.message.clone(),
                    &opts.sim,
                    opts.shrink_budget,
                    watchdog,
                )
            });
            let key = (size(shrunk.as_ref().map_or(&schedules, |(s, _)| s)), seed);
            if best
                .as_ref()
                .is_none_or(|(b, c)| (key.0, key.1) < (*b, c.0))
            {
                best = Some((key.0, (seed, first, schedules, shrunk)));
            }
            // Without shrinking (budget 0 or over wall time) the first is
            // reported, as it is.
            if !shrink || best.as_ref().is_some_and(|(b, _)| b.0 <= 1) {
                return best.map(|(_, c)| c);
            }
        }
        let small = best.as_ref().is_some_and(|(b, _)| b.0 <= opts.shrink_goal);
        if small || examined.len() >= MAX_CANDIDATES {
            break;
        }
        // Sweep on (doubling the seeds run each round) until new
        // candidates failed, or no seed is left.
        for _round in 0..MAX_ROUNDS {
            if failing.lock().expect("poisoned").len() > examined.len()
                || !gather(examined.len() + per_round)
            {
                break;
            }
        }
        if failing.lock().expect("poisoned").len() <= examined.len() {
            break; // no seed left that fails
        }
    }
    best.map(|(_, c)| c)
}

/// The reported failure: its seed run again with full logs (a check that
/// it fails again), and its shrunk schedules with theirs.
#[allow(clippy::too_many_arguments)]
fn report_failure(
    w: &Workflow,
    seed: u64,
    first: RunFailure,
    shrunk: Option<(Vec<Schedule>, String)>,
    opts: &SweepOptions,
    replay: &dyn Fn(u64, Option<&[Schedule]>) -> String,
    watchdog: &Watchdog,
) -> SweepFailure {
    let mut f = examine(w, seed, first, false, opts, replay, watchdog);
    if let Some((s, m)) = shrunk {
        let dir = opts
            .log_root
            .join(&w.name)
            .join(format!("simulated-{seed}{SCHEDULE_SUFFIX}"));
        let sim = opts.sim.for_failure();
        let _ = run_seed(w, seed, Some(&s), Some(&dir), &sim, watchdog);
        f.shrunk_log_dir = Some(dir);
        f.replay_shrunk = Some(replay(seed, Some(&s)));
        f.shrunk = Some((s, m));
    }
    f
}

/// A failing seed run again with full logs (a check that it fails again),
/// and its schedule shrunk if `shrink`.
fn examine(
    w: &Workflow,
    seed: u64,
    first: RunFailure,
    shrink: bool,
    opts: &SweepOptions,
    replay: &dyn Fn(u64, Option<&[Schedule]>) -> String,
    watchdog: &Watchdog,
) -> SweepFailure {
    // Runs again with logs: message events in them (DISTZERO_LOG_MESSAGES).
    let sim = opts.sim.for_failure();
    let run = |schedules: Option<&[Schedule]>, log_dir: Option<&Path>| {
        run_seed(w, seed, schedules, log_dir, &sim, watchdog)
    };
    let log_dir = opts
        .log_root
        .join(&w.name)
        .join(format!("simulated-{seed}"));
    let again = run(None, Some(&log_dir));
    let (message, budget) = match again.result {
        Err(f) => (f.message, f.budget),
        Ok(()) => (
            format!(
                "{} (but the replay with logs PASSED: nondeterminism?)",
                first.message
            ),
            first.budget,
        ),
    };
    let schedules = again.schedules;
    let exact = !matches!(budget, Some(BudgetSpent::WallTime(_)));
    let any_steps = schedules.iter().any(|s| !s.is_empty());
    let mut shrunk_log_dir = None;
    let shrunk = (shrink && exact && opts.shrink_budget > 0 && any_steps).then(|| {
        let (s, m) = shrink_with(
            w,
            seed,
            schedules.clone(),
            message.clone(),
            &opts.sim,
            opts.shrink_budget,
            watchdog,
        );
        let dir = opts
            .log_root
            .join(&w.name)
            .join(format!("simulated-{seed}{SCHEDULE_SUFFIX}"));
        let _ = run(Some(&s), Some(&dir));
        shrunk_log_dir = Some(dir);
        (s, m)
    });
    SweepFailure {
        seed,
        message,
        budget,
        log_dir,
        schedules,
        profiles: again.profiles,
        replay_shrunk: shrunk.as_ref().map(|(s, _)| replay(seed, Some(s))),
        shrunk,
        shrunk_log_dir,
        replay: replay(seed, None),
    }
}

/// Same files with the same bytes in two folders.
pub fn same_tree(a: &Path, b: &Path) -> bool {
    fn list(d: &Path) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().to_string(),
                            std::fs::read(e.path()).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
    let (la, lb) = (list(a), list(b));
    !la.is_empty() && la == lb
}
