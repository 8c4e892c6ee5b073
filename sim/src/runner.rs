//! Running a workflow test in simulation, and the failure report.

use crate::{SimCluster, SimConfig};
use distzero::settings::{SeedChoice, Settings};
use distzero::{Cluster, Registry, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// A failed simulated run: what to print and how to replay it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub test: String,
    pub seed: u64,
    pub message: String,
    pub log_dir: PathBuf,
}

impl Failure {
    pub fn replay_command(&self) -> String {
        format!(
            "DISTZERO_SEED={} cargo test simulated::{}",
            self.seed, self.test
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "simulated test `{}` failed with seed {}\n  error:  {}\n  logs:   {}\n  replay: {}",
            self.test,
            self.seed,
            self.message,
            self.log_dir.display(),
            self.replay_command()
        )
    }
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

/// `.tmp/<test>/simulated-<seed>/`
pub fn log_dir_for(settings: &Settings, test: &str, seed: u64) -> PathBuf {
    settings
        .log_dir()
        .join(test)
        .join(format!("simulated-{seed}"))
}

/// Run `body` on a fresh simulated cluster; a panic or error becomes a [`Failure`].
pub fn try_workflow(
    test: &str,
    seed: u64,
    log_dir: Option<&Path>,
    settings: &Settings,
    registry: Registry,
    body: &dyn Fn(&mut dyn Cluster) -> Result<()>,
) -> std::result::Result<(), Failure> {
    let mut config = SimConfig::new(seed, registry);
    config.log_dir = log_dir.map(Path::to_path_buf);
    config.log_level = settings.log_level().unwrap_or(Some(tracing::Level::INFO));
    config.buggify = settings.buggify().unwrap_or(0.05);
    run_sim(config, false, "workflow", &mut |c| body(c)).map_err(|message| Failure {
        test: test.to_string(),
        seed,
        message,
        log_dir: log_dir.map(Path::to_path_buf).unwrap_or_default(),
    })
}

/// Build a simulated cluster from `config`, run `body` on it (panics
/// caught, and silenced if `quiet`), log a failure as "`what` failed", and
/// shut down. The error is the first violated assertion or error.
pub(crate) fn run_sim(
    config: SimConfig,
    quiet: bool,
    what: &str,
    body: &mut dyn FnMut(&mut dyn Cluster) -> Result<()>,
) -> std::result::Result<(), String> {
    let mut cluster = SimCluster::new(config).map_err(|e| e.to_string())?;
    let mut run = || catch_unwind(AssertUnwindSafe(|| body(&mut cluster)));
    let outcome = if quiet { quiet_panics(run) } else { run() };
    let result = match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(panic_message(&panic)),
    };
    if let Err(m) = &result {
        distzero::log::set_scope(Default::default());
        tracing::error!(error = %m, "{what} failed");
    }
    let _ = cluster.shutdown();
    result
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

/// What `workflow_tests!` calls for `simulated::<test>`: seed from
/// DISTZERO_SEED (or the test name), logs in `.tmp/<test>/simulated-<seed>/`,
/// and on failure a report with the seed, the log folder and the replay command.
pub fn run_workflow(test: &str, registry: Registry, body: fn(&mut dyn Cluster) -> Result<()>) {
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => panic!("distzero settings: {e}"),
    };
    let seed = match seed_for(test, &settings) {
        Ok(s) => s,
        Err(e) => panic!("distzero settings: {e}"),
    };
    let dir = log_dir_for(&settings, test, seed);
    if let Err(f) = try_workflow(test, seed, Some(&dir), &settings, registry, &body) {
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
