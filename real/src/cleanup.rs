//! Clean-up when a test process is interrupted: Ctrl-C (SIGINT), SIGTERM
//! or SIGHUP tear down every run still registered here (containers,
//! networks, agent processes, temporary folders) and then end the process
//! as the signal would have. A provider registers what removes its run when
//! it starts one and deregisters (drops the [`Registration`]) once its own
//! shutdown ran. A panic in a test needs none of this: unwinding drops the
//! cluster, whose shutdown removes the run. SIGKILL cannot be caught: the
//! next run's start sweeps what a killed one left (Docker by labels, agents
//! by their orphan timer).
//!
//! The signal handler is installed with the first registration, so a
//! process that never starts a real run keeps the default behaviour.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

type Action = Box<dyn Fn() + Send + Sync>;

struct Registry {
    next: u64,
    actions: BTreeMap<u64, (String, Action)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    actions: BTreeMap::new(),
});

/// Most time the clean-up of all runs may take before the process ends anyway.
pub const CLEANUP_BUDGET: Duration = Duration::from_secs(20);

/// A registered clean-up; dropping it deregisters it.
#[must_use = "dropping the registration deregisters the clean-up"]
pub struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        lock().actions.remove(&self.0);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `action` (which removes `what`) if this process is interrupted
/// before the registration is dropped.
pub fn register(
    what: impl Into<String>,
    action: impl Fn() + Send + Sync + 'static,
) -> Registration {
    install();
    let mut r = lock();
    r.next += 1;
    let id = r.next;
    r.actions.insert(id, (what.into(), Box::new(action)));
    Registration(id)
}

/// Run every registered clean-up now (what a signal does before the
/// process ends); returns what was cleaned up.
pub fn run_all() -> Vec<String> {
    let actions: Vec<(String, Action)> =
        std::mem::take(&mut lock().actions).into_values().collect();
    let mut done = Vec::new();
    for (what, action) in actions {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(&action)).is_ok() {
            done.push(what);
        }
    }
    done
}

fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let started = std::thread::Builder::new()
            .name("distzero-signals".into())
            .spawn(watch);
        if let Err(e) = started {
            eprintln!("distzero: no clean-up on interrupt ({e})");
        }
    });
}

/// Wait for SIGINT, SIGTERM or SIGHUP; clean up; end the process with the
/// signal's usual status (128 + its number).
fn watch() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let number = rt.block_on(async {
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return None;
        };
        tokio::select! {
            _ = int.recv() => Some(2),
            _ = term.recv() => Some(15),
            _ = hup.recv() => Some(1),
        }
    });
    let Some(number) = number else { return };
    let pending = lock().actions.len();
    eprintln!("distzero: interrupted (signal {number}); removing {pending} run(s)");
    // Bounded: the process ends after the budget, cleaned up or not.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run_all());
    });
    match rx.recv_timeout(CLEANUP_BUDGET) {
        Ok(done) => eprintln!("distzero: removed {}", done.join(", ")),
        Err(_) => eprintln!("distzero: clean-up took over {CLEANUP_BUDGET:?}; ending anyway"),
    }
    std::process::exit(128 + number);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn registered_actions_run_once_and_dropped_ones_never() {
        let ran = Arc::new(AtomicU32::new(0));
        let r1 = ran.clone();
        let kept = register("run a", move || {
            r1.fetch_add(1, Ordering::SeqCst);
        });
        let r2 = ran.clone();
        let dropped = register("run b", move || {
            r2.fetch_add(10, Ordering::SeqCst);
        });
        drop(dropped);
        let done = run_all();
        assert!(done.contains(&"run a".to_string()) && !done.contains(&"run b".to_string()));
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert!(!run_all().contains(&"run a".to_string()), "once only");
        drop(kept); // deregistering after the run is harmless
    }
}
