//! Seed sweeps: one scenario over many seeds on all cores, with a progress
//! bar, shrinking of the failing fault schedule, and a determinism check.

use crate::nemesis::Schedule;
use crate::runner::{run_watched, BudgetSpent, RunFailure, SimSettings};
use distzero_core::{Cluster, MachineId, Registry, Result, Settings};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A workload plus a nemesis: what a sweep runs once per seed.
pub trait Scenario: Sync {
    /// Short name: the log folder and the CLI use it.
    fn name(&self) -> &str;
    /// What it is, in reports and in the log line of a failure
    /// ("`scenario` failed").
    fn label(&self) -> &str {
        "scenario"
    }
    fn registry(&self) -> Registry;
    /// Machines the nemesis may hit (the scenario adds them in `setup`).
    fn machines(&self) -> u32;
    /// Window in which faults happen.
    fn fault_window(&self) -> Duration {
        Duration::from_secs(2)
    }
    /// Most faults in one schedule.
    fn max_faults(&self) -> usize {
        8
    }
    /// Build the cluster's machines and nodes; return the machines.
    fn setup(&self, c: &mut dyn Cluster) -> Result<Vec<MachineId>>;
    /// Start the workload (client nodes, …): runs before the faults.
    fn start(&self, c: &mut dyn Cluster, machines: &[MachineId]) -> Result<()>;
    /// After the faults and the recovery: check what the system guarantees.
    /// An `Err` or a panic is a failure.
    fn check(&self, c: &mut dyn Cluster, machines: &[MachineId]) -> Result<()>;
}

/// A workflow test as a scenario: no nemesis of its own (the body injects
/// its faults), swept over seeds like any scenario; what `cargo test
/// simulated` runs under `DISTZERO_SEEDS`. One seed of it is the same run,
/// byte for byte, as [`crate::try_workflow`] of that seed (so a failing seed
/// replays with `DISTZERO_SEED=<seed> cargo test simulated::<name>`).
pub struct Workflow {
    pub name: String,
    pub registry: Registry,
    pub body: fn(&mut dyn Cluster) -> Result<()>,
}

impl Scenario for Workflow {
    fn name(&self) -> &str {
        &self.name
    }
    fn label(&self) -> &str {
        "workflow"
    }
    fn registry(&self) -> Registry {
        self.registry.clone()
    }
    fn machines(&self) -> u32 {
        0
    }
    fn fault_window(&self) -> Duration {
        Duration::ZERO
    }
    fn max_faults(&self) -> usize {
        0
    }
    fn setup(&self, _c: &mut dyn Cluster) -> Result<Vec<MachineId>> {
        Ok(Vec::new())
    }
    fn start(&self, _c: &mut dyn Cluster, _machines: &[MachineId]) -> Result<()> {
        Ok(())
    }
    fn check(&self, c: &mut dyn Cluster, _machines: &[MachineId]) -> Result<()> {
        (self.body)(c)
    }
}

/// The schedule a seed generates (deterministic in the seed).
pub fn schedule_for(scenario: &dyn Scenario, seed: u64) -> Schedule {
    let strat = strategy(scenario);
    let mut runner = runner_for(seed);
    strat
        .new_tree(&mut runner)
        .map(|t| t.current())
        .unwrap_or_default()
}

fn strategy(s: &dyn Scenario) -> impl Strategy<Value = Schedule> {
    Schedule::strategy(
        s.machines(),
        s.fault_window().as_millis() as u64,
        s.max_faults(),
    )
}

fn runner_for(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&0x6469_7374_7a65_726f_u64.to_le_bytes());
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

/// Run one seed with one schedule, as a sweep does and as its printed
/// replay does: `sim` read from the settings, a watchdog holding the seed to
/// its wall-time budget. `log_dir` None = no logs (fast). A failure over a
/// budget names the seed and the budget.
pub fn run_once(
    scenario: &dyn Scenario,
    seed: u64,
    schedule: &Schedule,
    log_dir: Option<&Path>,
    sim: &SimSettings,
) -> std::result::Result<(), String> {
    let watchdog = Watchdog::start();
    run_seed(scenario, seed, schedule, log_dir, sim, &watchdog).map_err(|f| f.message)
}

fn run_seed(
    scenario: &dyn Scenario,
    seed: u64,
    schedule: &Schedule,
    log_dir: Option<&Path>,
    sim: &SimSettings,
    watchdog: &Watchdog,
) -> std::result::Result<(), RunFailure> {
    let cfg = sim.config(seed, scenario.registry(), log_dir);
    run_watched(cfg, sim, true, scenario.label(), watchdog, &mut |c| {
        let machines = scenario.setup(c)?;
        scenario.start(c, &machines)?;
        schedule.run_on(c, &machines, scenario.fault_window(), sim.default_link)?;
        scenario.check(c, &machines)
    })
}

/// Whether `r` is a failure that replays: any failure but one stopped by
/// the wall clock (how far a run gets in a given wall time varies).
fn fails_exactly(r: &std::result::Result<(), RunFailure>) -> Option<&RunFailure> {
    r.as_ref()
        .err()
        .filter(|f| !matches!(f.budget, Some(BudgetSpent::WallTime(_))))
}

/// Shrink a failing schedule: proptest's simplify/complicate walk, keeping
/// the seed, then [`prune`] of the steps left; at most `opts.shrink_budget`
/// runs in all. Returns the smallest failing schedule and its failure.
pub fn shrink(scenario: &dyn Scenario, seed: u64, opts: &SweepOptions) -> (Schedule, String) {
    let watchdog = Watchdog::start();
    shrink_with(scenario, seed, opts, &watchdog)
}

fn shrink_with(
    scenario: &dyn Scenario,
    seed: u64,
    opts: &SweepOptions,
    watchdog: &Watchdog,
) -> (Schedule, String) {
    let run = |s: &Schedule| run_seed(scenario, seed, s, None, &opts.sim, watchdog);
    let strat = strategy(scenario);
    let mut runner = runner_for(seed);
    let Ok(mut tree) = strat.new_tree(&mut runner) else {
        return (Schedule::default(), String::new());
    };
    let mut best = tree.current();
    let mut best_msg = match fails_exactly(&run(&best)) {
        Some(f) => f.message.clone(),
        None => return (best, String::new()),
    };
    let mut runs = 0;
    if tree.simplify() {
        while runs < opts.shrink_budget {
            runs += 1;
            let cur = tree.current();
            match fails_exactly(&run(&cur)) {
                Some(f) => {
                    best = cur;
                    best_msg = f.message.clone();
                    if !tree.simplify() {
                        break;
                    }
                }
                None => {
                    if !tree.complicate() {
                        break;
                    }
                }
            }
        }
    }
    let mut left = opts.shrink_budget.saturating_sub(runs);
    prune_with(
        scenario, seed, best, best_msg, &opts.sim, watchdog, &mut left,
    )
}

/// The last pass of shrinking: try the schedule without each of its steps
/// in turn, and keep a removal when the run still fails. What the
/// simplify/complicate walk leaves can hold steps that do nothing (a step
/// simplified into a restart of a running machine, a heal with nothing cut,
/// a resume of a machine not paused …); this drops them. At most `budget`
/// runs. Returns the schedule and its failure (`message` if none dropped).
pub fn prune(
    scenario: &dyn Scenario,
    seed: u64,
    schedule: Schedule,
    message: String,
    sim: &SimSettings,
    budget: usize,
) -> (Schedule, String) {
    let watchdog = Watchdog::start();
    let mut left = budget;
    prune_with(scenario, seed, schedule, message, sim, &watchdog, &mut left)
}

fn prune_with(
    scenario: &dyn Scenario,
    seed: u64,
    mut schedule: Schedule,
    mut message: String,
    sim: &SimSettings,
    watchdog: &Watchdog,
    left: &mut usize,
) -> (Schedule, String) {
    // From the last step back: a later step is more often the useless one
    // (healing what an earlier one cut, …), and indices stay valid.
    let mut i = schedule.steps.len();
    while i > 0 && *left > 0 {
        i -= 1;
        *left -= 1;
        let mut without = schedule.clone();
        without.steps.remove(i);
        if let Some(f) = fails_exactly(&run_seed(scenario, seed, &without, None, sim, watchdog)) {
            message = f.message.clone();
            schedule = without;
        }
    }
    (schedule, message)
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

/// How to sweep.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// Seeds to run (before sharding).
    pub seeds: std::ops::Range<u64>,
    /// Threads; 0 = one per core.
    pub jobs: usize,
    pub stop_at_first: bool,
    /// `(i, n)`: run only seeds with `seed % n == i`.
    pub shard: Option<(u64, u64)>,
    /// Run each seed twice with full logs and compare them byte for byte.
    pub check_determinism: bool,
    pub progress: bool,
    /// Shrink the first failure's schedule (runs of the scenario allowed).
    pub shrink_budget: usize,
    /// Root of the logs (`<root>/<scenario>/simulated-<seed>/`).
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
    pub schedule: Schedule,
    /// The smallest schedule that still fails with this seed, and its message.
    pub shrunk: Option<(Schedule, String)>,
    pub replay: String,
}

/// What a sweep found.
#[derive(Clone, Debug, Default)]
pub struct SweepReport {
    pub scenario: String,
    /// The scenario's [`Scenario::label`]: "scenario", "workflow".
    pub label: String,
    /// Whether the scenario has a nemesis (machines to fault and room for
    /// faults): without one there is no schedule to shrink.
    pub nemesis: bool,
    pub ran: u64,
    /// The shard `(i, n)` that ran (seeds with `seed % n == i`), if any.
    pub shard: Option<(u64, u64)>,
    pub failures: Vec<SweepFailure>,
    /// Seeds whose two runs gave different logs.
    pub nondeterministic: Vec<u64>,
    /// Wall time of the whole sweep (running, re-running with logs, shrinking).
    pub elapsed: Duration,
    /// Wall time from the start until a seed first failed.
    pub to_first_failure: Option<Duration>,
    /// Wall time spent shrinking (zero if nothing was shrunk).
    pub shrinking: Duration,
}

impl SweepReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.nondeterministic.is_empty()
    }
}

impl std::fmt::Display for SweepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = self.ran as f64 / self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "{} {}: {} seeds in {:.1} s ({rate:.0} seeds/s), {} failing, {} nondeterministic",
            if self.label.is_empty() {
                "scenario"
            } else {
                &self.label
            },
            self.scenario,
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
            if self.nemesis || !fl.schedule.is_empty() {
                writeln!(f, "  schedule:\n{}", fl.schedule.describe().trim_end())?;
            } else {
                writeln!(
                    f,
                    "  schedule: none: a {} has no nemesis yet (its faults come from its own code), so there is no fault schedule to shrink",
                    if self.label.is_empty() { "scenario" } else { &self.label }
                )?;
            }
            if let Some((s, m)) = &fl.shrunk {
                writeln!(f, "  shrunk to {} fault(s):", s.steps.len())?;
                writeln!(f, "{}", s.describe().trim_end())?;
                writeln!(f, "  which still fails: {m}")?;
                writeln!(f, "  as Rust:\n{}", s.to_rust())?;
            } else if matches!(fl.budget, Some(BudgetSpent::WallTime(_))) {
                writeln!(
                    f,
                    "  not shrunk: how far a run gets in a given wall time varies"
                )?;
            }
            writeln!(f, "  replay:   {}", fl.replay)?;
        }
        Ok(())
    }
}

/// Run `scenario` over the seeds of `opts`, on all cores. `replay` makes the
/// replay command for a seed (the CLI knows its own command line).
pub fn sweep(
    scenario: &dyn Scenario,
    opts: &SweepOptions,
    replay: &dyn Fn(u64) -> String,
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
    let run = |seed: u64, schedule: &Schedule, log_dir: Option<&Path>| {
        run_seed(scenario, seed, schedule, log_dir, &opts.sim, &watchdog)
    };
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failing = Mutex::new(Vec::<(u64, RunFailure)>::new());
    let nondet = Mutex::new(Vec::<u64>::new());
    let ran = AtomicU64::new(0);
    let first_failure = OnceLock::<Duration>::new();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&seed) = seeds.get(i) else { return };
                let schedule = schedule_for(scenario, seed);
                let result = if opts.check_determinism {
                    let base = opts.log_root.join(scenario.name()).join("determinism");
                    let (a, b) = (
                        base.join(format!("{seed}-a")),
                        base.join(format!("{seed}-b")),
                    );
                    let r1 = run(seed, &schedule, Some(&a));
                    let r2 = run(seed, &schedule, Some(&b));
                    // A run stopped by the wall clock stops anywhere: no
                    // two such runs need agree.
                    let timed_out = [&r1, &r2]
                        .iter()
                        .any(|r| r.is_err() && fails_exactly(r).is_none());
                    if !timed_out && (r1 != r2 || !same_tree(&a, &b)) {
                        nondet.lock().expect("poisoned").push(seed);
                    } else {
                        let _ = std::fs::remove_dir_all(&a);
                        let _ = std::fs::remove_dir_all(&b);
                    }
                    r1
                } else {
                    run(seed, &schedule, None)
                };
                ran.fetch_add(1, Ordering::Relaxed);
                if let Err(m) = result {
                    first_failure.get_or_init(|| start.elapsed());
                    let mut f = failing.lock().expect("poisoned");
                    f.push((seed, m));
                    bar.set_message(format!("{} failing", f.len()));
                    if opts.stop_at_first {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    let mut failing = failing.into_inner().expect("poisoned");
    failing.sort_by_key(|(seed, _)| *seed);
    if opts.stop_at_first {
        failing.truncate(1);
    }
    let mut failures = Vec::new();
    let mut shrinking = Duration::ZERO;
    for (i, (seed, first)) in failing.into_iter().enumerate() {
        let schedule = schedule_for(scenario, seed);
        let log_dir = opts
            .log_root
            .join(scenario.name())
            .join(format!("simulated-{seed}"));
        // Full logs of the failing run (and a check that it fails again).
        let (message, budget) = match run(seed, &schedule, Some(&log_dir)) {
            Err(f) => (f.message, f.budget),
            Ok(()) => (
                format!(
                    "{} (but the replay with logs PASSED: nondeterminism?)",
                    first.message
                ),
                first.budget,
            ),
        };
        let exact = !matches!(budget, Some(BudgetSpent::WallTime(_)));
        let shrunk =
            (i == 0 && exact && opts.shrink_budget > 0 && !schedule.is_empty()).then(|| {
                let began = Instant::now();
                let (s, m) = shrink_with(scenario, seed, opts, &watchdog);
                shrinking = began.elapsed();
                let dir = opts
                    .log_root
                    .join(scenario.name())
                    .join(format!("simulated-{seed}-shrunk"));
                let _ = run(seed, &s, Some(&dir));
                (s, m)
            });
        failures.push(SweepFailure {
            seed,
            message,
            budget,
            log_dir,
            schedule,
            shrunk,
            replay: replay(seed),
        });
    }
    let mut nondeterministic = nondet.into_inner().expect("poisoned");
    nondeterministic.sort();
    SweepReport {
        scenario: scenario.name().to_string(),
        label: scenario.label().to_string(),
        nemesis: scenario.machines() > 0 && scenario.max_faults() > 0,
        ran: ran.into_inner(),
        shard: opts.shard,
        failures,
        nondeterministic,
        elapsed: start.elapsed(),
        to_first_failure: first_failure.into_inner(),
        shrinking,
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
