//! Running a workflow test in simulation, and the failure report.

use crate::cluster::Spent;
use crate::sweep::{self, Workflow};
use crate::{SimCluster, SimConfig, SweepOptions, SweepReport};
use distzero_core::nemesis::{schedules_to_json, Profile, Schedule};
use distzero_core::settings::{LogMessages, SeedChoice, Settings};
use distzero_core::{Cluster, Error, Link, Registry, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// What a simulated run takes from the [`Settings`]: the one place that
/// turns settings into a [`SimConfig`]. Workflow tests, sweeps and the
/// replays a sweep prints all go through it, so a replay reads exactly what
/// the sweep read.
#[derive(Clone, Debug, PartialEq)]
pub struct SimSettings {
    /// Probability that `ctx.buggify()` is true (`DISTZERO_BUGGIFY`).
    pub buggify: f64,
    /// Reorder messages per pair, beyond the contract (`DISTZERO_REORDER`).
    pub reorder: bool,
    /// Probability of delivering a message twice (`DISTZERO_DUPLICATE`).
    pub duplicate: f64,
    /// Link of every pair a test does not set (`DISTZERO_LATENCY`,
    /// `DISTZERO_LOSS`); a nemesis's recovery restores it.
    pub default_link: Link,
    /// Least level written when a run writes logs (`DISTZERO_LOG_LEVEL`).
    pub log_level: Option<tracing::Level>,
    /// When a run that writes logs logs message events (`DISTZERO_LOG_MESSAGES`).
    pub log_messages: LogMessages,
    /// Most events of one run, one seed (`DISTZERO_MAX_EVENTS`).
    pub max_events: u64,
    /// Most events at one virtual instant (the simulator's default).
    pub max_events_per_instant: u64,
    /// Wall time one seed of a sweep (or its replay) may take
    /// (`DISTZERO_SWEEP_SEED_TIMEOUT`); a watchdog outside the run enforces it.
    pub seed_timeout: Duration,
    /// Schedules replacing the ones the test's nemeses draw
    /// (`DISTZERO_SCHEDULE`); None = drawn from each seed.
    pub schedules: Option<Vec<Schedule>>,
    /// Swarm testing for nemeses that do not say (`DISTZERO_SWARM`).
    pub swarm: bool,
}

impl SimSettings {
    /// Read from `settings`; a bad value is an error naming its variable.
    pub fn from_settings(settings: &Settings) -> Result<SimSettings> {
        Ok(SimSettings {
            buggify: settings.buggify()?,
            reorder: settings.reorder()?,
            duplicate: settings.duplicate()?,
            default_link: settings.default_link()?,
            log_level: settings.log_level()?,
            log_messages: settings.log_messages()?,
            max_events: settings.max_events()?,
            max_events_per_instant: crate::cluster::MAX_EVENTS_PER_INSTANT,
            seed_timeout: settings.sweep_seed_timeout()?,
            schedules: settings.schedules()?,
            swarm: settings.swarm()?,
        })
    }

    /// These settings for the run again of a failing seed: message events
    /// on unless they are off (`DISTZERO_LOG_MESSAGES=failing` turns them
    /// on here).
    pub fn for_failure(&self) -> SimSettings {
        let mut s = self.clone();
        if s.log_messages == LogMessages::Failing {
            s.log_messages = LogMessages::On;
        }
        s
    }

    /// The config of one run: logs in `log_dir` (None = no logs at all).
    pub fn config(&self, seed: u64, registry: Registry, log_dir: Option<&Path>) -> SimConfig {
        let mut config = SimConfig::new(seed, registry);
        config.log_dir = log_dir.map(Path::to_path_buf);
        config.log_level = if log_dir.is_some() {
            self.log_level
        } else {
            None
        };
        config.log_messages = log_dir.is_some() && self.log_messages == LogMessages::On;
        config.buggify = self.buggify;
        config.reorder = self.reorder;
        config.duplicate = self.duplicate;
        config.default_link = self.default_link;
        config.max_events = self.max_events;
        config.max_events_per_instant = self.max_events_per_instant;
        config.schedules = self.schedules.clone();
        config.swarm = self.swarm;
        config
    }
}

/// The settings that change what one simulated run does or writes: a
/// replay command repeats those not at their default, so it reads what the
/// sweep or the test read.
pub const RUN_SETTINGS: &[&str] = &[
    "DISTZERO_BUGGIFY",
    "DISTZERO_REORDER",
    "DISTZERO_DUPLICATE",
    "DISTZERO_LATENCY",
    "DISTZERO_LOSS",
    "DISTZERO_LOG_LEVEL",
    "DISTZERO_LOG_MESSAGES",
    "DISTZERO_LOG_DIR",
    "DISTZERO_MAX_EVENTS",
    "DISTZERO_SWEEP_SEED_TIMEOUT",
    "DISTZERO_SCHEDULE",
    "DISTZERO_SWARM",
];

/// The [`RUN_SETTINGS`] of `settings` not at their default, as shell words
/// `VAR=value ` (each followed by a space), to put before a replay command.
pub fn replay_env(settings: &Settings) -> String {
    replay_env_with(settings, None)
}

/// [`replay_env`] with `DISTZERO_SCHEDULE` set to `schedules` (a shrunk
/// schedule) when given.
pub fn replay_env_with(settings: &Settings, schedules: Option<&[Schedule]>) -> String {
    let defaults = Settings::defaults();
    let mut out = String::new();
    for var in RUN_SETTINGS {
        let v = match (*var, schedules) {
            ("DISTZERO_SCHEDULE", Some(s)) => schedules_to_json(s),
            _ => settings.raw(var).to_string(),
        };
        if v != defaults.raw(var) {
            out.push_str(&format!("{var}={} ", shell_word(&v)));
        }
    }
    out
}

/// `v` as one shell word: as is if plain, else single-quoted.
pub fn shell_word(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:,+=@".contains(c))
    {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

impl Default for SimSettings {
    /// The defaults of [`Settings`].
    fn default() -> Self {
        SimSettings::from_settings(&Settings::defaults()).expect("default settings are valid")
    }
}

/// The budget a failed run went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetSpent {
    /// Events of the run ([`SimSettings::max_events`]).
    Events(u64),
    /// Events at one virtual instant: time stopped moving on (a livelock).
    EventsPerInstant(u64),
    /// Events waiting at once (a message storm).
    Pending(usize),
    /// Wall time of the seed ([`SimSettings::seed_timeout`]).
    WallTime(Duration),
}

impl std::fmt::Display for BudgetSpent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BudgetSpent::Events(n) => write!(
                f,
                "event budget of {n} events (DISTZERO_MAX_EVENTS, --max-events)"
            ),
            BudgetSpent::EventsPerInstant(n) => write!(
                f,
                "budget of {n} events at one virtual instant (time stopped moving on: a livelock)"
            ),
            BudgetSpent::Pending(n) => write!(f, "budget of {n} pending events (a message storm)"),
            BudgetSpent::WallTime(d) => write!(
                f,
                "wall-time budget of {d:?} (DISTZERO_SWEEP_SEED_TIMEOUT, --seed-timeout)"
            ),
        }
    }
}

/// How a simulated run failed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RunFailure {
    /// The first violated assertion or error; for a budget, naming the seed
    /// and the budget.
    pub message: String,
    pub budget: Option<BudgetSpent>,
}

/// A failed simulated run: what to print and how to replay it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub test: String,
    pub seed: u64,
    pub message: String,
    pub log_dir: PathBuf,
    /// The run's settings not at their default, as `VAR=value ` words
    /// ([`replay_env`]): the replay command repeats them.
    pub env: String,
}

impl Failure {
    pub fn replay_command(&self) -> String {
        replay_command(&self.test, self.seed, &self.env)
    }
}

/// `DISTZERO_SEED=<seed> <env>cargo test simulated::<test>`: the one
/// command that replays a seed of a workflow test exactly.
pub fn replay_command(test: &str, seed: u64, env: &str) -> String {
    format!("DISTZERO_SEED={seed} {env}cargo test simulated::{test}")
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "simulated test `{}` failed with seed {}\n  error:  {}\n  logs:   {}\n  view:   {}\n  replay: {}",
            self.test,
            self.seed,
            self.message,
            self.log_dir.display(),
            view_command(&self.log_dir),
            self.replay_command()
        )
    }
}

/// `distzero view <dir>`: the command that draws a run's logs as a
/// space-time diagram (the `distzero` command line, `cargo install --path cli`).
pub fn view_command(log_dir: &Path) -> String {
    format!(
        "distzero view {}",
        shell_word(&log_dir.display().to_string())
    )
}

/// FNV-1a: a stable hash of the test name, the default seed.
pub fn seed_for(test: &str, settings: &Settings) -> Result<u64> {
    Ok(match settings.seed()? {
        SeedChoice::Fixed(s) => s,
        SeedChoice::Random => {
            use std::hash::{BuildHasher, Hasher};
            // Drawn once, before the run, outside the simulated path.
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write(test.as_bytes());
            h.finish()
        }
        SeedChoice::FromTestName => {
            let mut h: u64 = 0xcbf29ce484222325;
            for b in test.bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x100000001b3);
            }
            h
        }
    })
}

/// `.tmp/<test>/simulated-<seed>/` (`simulated-<seed>-schedule/` under
/// `DISTZERO_SCHEDULE`).
pub fn log_dir_for(settings: &Settings, test: &str, seed: u64) -> PathBuf {
    // A run with given schedules (a shrunk one) keeps the seed's own logs.
    let given = if settings.raw("DISTZERO_SCHEDULE").is_empty() {
        ""
    } else {
        SCHEDULE_SUFFIX
    };
    settings
        .log_dir()
        .join(test)
        .join(format!("simulated-{seed}{given}"))
}

/// The log folder of a seed run with given schedules (a sweep's shrunk
/// run, a replay under `DISTZERO_SCHEDULE`) is `simulated-<seed>` and this.
pub const SCHEDULE_SUFFIX: &str = "-schedule";

/// Run `body` on a fresh simulated cluster with `seed` and the run
/// settings of `settings` ([`SimSettings`]), held to the wall-time budget of
/// one seed; a panic or error becomes a [`Failure`]. The same run, byte for
/// byte, as one seed of a sweep of the [`Workflow`].
pub fn try_workflow(
    test: &str,
    seed: u64,
    log_dir: Option<&Path>,
    settings: &Settings,
    registry: Registry,
    body: &dyn Fn(&mut dyn Cluster) -> Result<()>,
) -> std::result::Result<(), Failure> {
    let failure = |message: String| Failure {
        test: test.to_string(),
        seed,
        message,
        log_dir: log_dir.map(Path::to_path_buf).unwrap_or_default(),
        env: replay_env(settings),
    };
    let sim = SimSettings::from_settings(settings).map_err(|e| failure(e.to_string()))?;
    let config = sim.config(seed, registry.clone(), log_dir);
    let watchdog = sweep::Watchdog::start();
    let first = run_watched(config, &sim, false, "workflow", &watchdog, &mut |c| body(c)).result;
    match first {
        Err(f)
            if log_dir.is_some()
                && sim.log_messages == LogMessages::Failing
                && !matches!(f.budget, Some(BudgetSpent::WallTime(_))) =>
        {
            // The seed failed: run it again (the same run, deterministic)
            // with its message events in the logs, as a sweep's run again
            // of a failing seed writes them.
            let sim = sim.for_failure();
            let config = sim.config(seed, registry, log_dir);
            let again = run_watched(config, &sim, false, "workflow", &watchdog, &mut |c| body(c));
            Err(failure(again.result.err().map_or(f.message, |g| g.message)))
        }
        r => r.map_err(|f| failure(f.message)),
    }
}

/// One simulated run: how it ended and the schedule each of its nemesis
/// declarations ran (drawn from the seed, or given).
#[derive(Debug)]
pub(crate) struct SimRun {
    pub result: std::result::Result<(), RunFailure>,
    pub schedules: Vec<Schedule>,
    /// The swarm profile each declaration drew its schedule from, if any.
    pub profiles: Vec<Option<Profile>>,
}

/// [`run_sim`] held to `sim`'s wall-time budget by `watchdog`.
pub(crate) fn run_watched(
    mut config: SimConfig,
    sim: &SimSettings,
    quiet: bool,
    what: &str,
    watchdog: &sweep::Watchdog,
    body: &mut dyn FnMut(&mut dyn Cluster) -> Result<()>,
) -> SimRun {
    let cancel = Arc::new(AtomicBool::new(false));
    config.cancel = Some(cancel.clone());
    let _armed = watchdog.arm(sim.seed_timeout, cancel);
    run_sim(config, quiet, what, Some(sim.seed_timeout), body)
}

/// Build a simulated cluster from `config`, run `body` on it (panics
/// caught, and silenced if `quiet`), log a failure as "`what` failed" at the
/// virtual time reached, and shut down. The error is the first violated
/// assertion or error; a run over a budget names its seed and the budget
/// (`wall_time`: the budget of the watchdog that may set `config.cancel`).
pub(crate) fn run_sim(
    config: SimConfig,
    quiet: bool,
    what: &str,
    wall_time: Option<Duration>,
    body: &mut dyn FnMut(&mut dyn Cluster) -> Result<()>,
) -> SimRun {
    let seed = config.seed;
    let (max_events, per_instant, max_pending) = (
        config.max_events,
        config.max_events_per_instant,
        config.max_pending,
    );
    let mut cluster = match SimCluster::new(config) {
        Ok(c) => c,
        Err(e) => {
            return SimRun {
                result: Err(RunFailure {
                    message: e.to_string(),
                    budget: None,
                }),
                schedules: Vec::new(),
                profiles: Vec::new(),
            }
        }
    };
    let mut run = || catch_unwind(AssertUnwindSafe(|| body(&mut cluster)));
    let outcome = if quiet { quiet_panics(run) } else { run() };
    let schedules = (&mut cluster as &mut dyn Cluster).nemesis_schedules();
    let profiles = cluster.nemesis_driver().profiles().to_vec();
    let (message, over) = match outcome {
        Ok(Ok(())) => {
            let _ = cluster.shutdown();
            return SimRun {
                result: Ok(()),
                schedules,
                profiles,
            };
        }
        Ok(Err(e)) => {
            let over = matches!(e, Error::Budget(_));
            (e.to_string(), over)
        }
        Err(panic) => (panic_message(&panic), false),
    };
    // Which budget, if any: the cluster knows.
    let budget = match cluster.spent() {
        _ if !over => None,
        Some(Spent::Cancelled) => Some(BudgetSpent::WallTime(wall_time.unwrap_or_default())),
        Some(Spent::Events) => Some(BudgetSpent::Events(max_events)),
        Some(Spent::EventsPerInstant) => Some(BudgetSpent::EventsPerInstant(per_instant)),
        Some(Spent::Pending) => Some(BudgetSpent::Pending(max_pending)),
        None => None,
    };
    let message = match budget {
        Some(b) => format!("seed {seed} went over its {b}: {message}"),
        None => message,
    };
    // Stamped with the virtual time of the failure, so that logs merged by
    // time put this line where it happened.
    distzero_core::log::set_scope(distzero_core::log::Scope {
        time: cluster.now(),
        ..Default::default()
    });
    tracing::error!(error = %message, "{what} failed");
    let _ = cluster.shutdown();
    SimRun {
        result: Err(RunFailure { message, budget }),
        schedules,
        profiles,
    }
}

pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Why a simulated workflow test failed: what it prints.
#[derive(Debug)]
pub enum WorkflowFailure {
    /// A setting has a bad value.
    Settings(Error),
    /// The one seed of the test failed (or, under
    /// `DISTZERO_CHECK_DETERMINISM`, its two runs differ).
    Seed(Box<Failure>),
    /// A sweep over `DISTZERO_SEEDS` found a failing or nondeterministic seed.
    Sweep(Box<SweepReport>),
}

impl std::fmt::Display for WorkflowFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkflowFailure::Settings(e) => write!(f, "distzero settings: {e}"),
            WorkflowFailure::Seed(fl) => write!(f, "{fl}"),
            WorkflowFailure::Sweep(r) => write!(f, "{}", r.to_string().trim_end()),
        }
    }
}

/// A simulated workflow test under `settings`. With `DISTZERO_SEEDS` (and
/// no `DISTZERO_SEED`), a [`sweep`](crate::sweep::sweep) of the
/// [`Workflow`] over those seeds with the options of
/// [`SweepOptions::from_settings`] (jobs, shard, keep going, progress),
/// stopping at the first failure unless told to keep going; a failing seed
/// is run again with full logs. Else one
/// seed (`DISTZERO_SEED`, or the test name's) with logs in
/// `<DISTZERO_LOG_DIR>/<test>/simulated-<seed>/`. Under
/// `DISTZERO_CHECK_DETERMINISM` every seed runs twice and the logs of the
/// two runs must be the same bytes.
pub fn check_workflow(
    test: &str,
    registry: Registry,
    body: fn(&mut dyn Cluster) -> Result<()>,
    settings: &Settings,
) -> std::result::Result<(), WorkflowFailure> {
    use WorkflowFailure as F;
    settings.writable_log_dir().map_err(F::Settings)?;
    let one_seed = !matches!(
        settings.seed().map_err(F::Settings)?,
        SeedChoice::FromTestName
    );
    let seeds = settings.seeds().map_err(F::Settings)?;
    let shard = settings.shard().map_err(F::Settings)?;
    if let (None, Some((i, n)), false) = (&seeds, shard, one_seed) {
        // A shard splits a sweep: without seeds, every shard would run the
        // same one seed and pass together.
        return Err(F::Settings(Error::Setting(format!(
            "shard {i}/{n} ({}) splits the seeds of a sweep, but DISTZERO_SEEDS is unset: set DISTZERO_SEEDS to N or A..B",
            if settings.raw("DISTZERO_SHARD").is_empty() {
                "JOB_COMPLETION_INDEX of DISTZERO_SHARDS"
            } else {
                "DISTZERO_SHARD"
            }
        ))));
    }
    if let (Some(seeds), false) = (seeds, one_seed) {
        let workflow = Workflow::new(test, registry, body);
        let mut opts = SweepOptions::from_settings(settings).map_err(F::Settings)?;
        opts.seeds = seeds;
        let report = sweep::sweep(&workflow, &opts, &|seed, schedules| {
            replay_command(test, seed, &replay_env_with(settings, schedules))
        });
        return if report.passed() {
            Ok(())
        } else {
            Err(F::Sweep(Box::new(report)))
        };
    }
    let seed = seed_for(test, settings).map_err(F::Settings)?;
    let dir = log_dir_for(settings, test, seed);
    try_workflow(test, seed, Some(&dir), settings, registry.clone(), &body)
        .map_err(|f| F::Seed(Box::new(f)))?;
    if settings.check_determinism().map_err(F::Settings)? {
        let again = dir.with_file_name(format!("simulated-{seed}-again"));
        let second = try_workflow(test, seed, Some(&again), settings, registry, &body);
        if second.is_err() || !sweep::same_tree(&dir, &again) {
            return Err(F::Seed(Box::new(Failure {
                test: test.to_string(),
                seed,
                message: format!(
                    "NONDETERMINISTIC: two runs of seed {seed} gave different logs (DISTZERO_CHECK_DETERMINISM): compare {} with {}",
                    dir.display(),
                    again.display()
                ),
                log_dir: dir,
                env: replay_env(settings),
            })));
        }
        let _ = std::fs::remove_dir_all(&again);
    }
    Ok(())
}

/// What `workflow_tests!` calls for `simulated::<test>`: [`check_workflow`]
/// under the settings of the environment and `.env`; a failure panics with
/// the seed, the log folder and the one command that replays it.
pub fn run_workflow(test: &str, registry: Registry, body: fn(&mut dyn Cluster) -> Result<()>) {
    let failure = match Settings::load() {
        Ok(settings) => check_workflow(test, registry, body, &settings),
        Err(e) => Err(WorkflowFailure::Settings(e)),
    };
    if let Err(f) = failure {
        panic!("\n{f}\n");
    }
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with panic messages of this thread silenced (sweeps catch and
/// report panics themselves; hundreds of backtraces help nobody).
pub fn quiet_panics<R>(f: impl FnOnce() -> R) -> R {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info)
            }
        }));
    });
    let before = QUIET.with(|q| q.replace(true));
    let r = f();
    QUIET.with(|q| q.set(before));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_are_the_simulators_defaults() {
        let d = SimSettings::default();
        let c = SimConfig::new(0, Registry::new());
        assert_eq!(d.max_events, crate::cluster::MAX_EVENTS);
        assert_eq!(d.max_events, c.max_events);
        assert_eq!(d.max_events_per_instant, c.max_events_per_instant);
        assert_eq!(d.buggify, c.buggify);
        assert_eq!(d.log_level, c.log_level);
        assert_eq!(d.seed_timeout, Duration::from_secs(60));
    }
}
