//! The settings of the environment, as `cargo test` sees them: a simulated
//! workflow test sweeps under `DISTZERO_SEEDS` and prints a replay command
//! whose environment replays the failing seed byte for byte; a bad
//! `DISTZERO_LATENCY` fails in one line; real modes refuse simulation-only
//! settings. One test, as it sets the process's environment.

use distzero::sim::sweep::same_tree;
use distzero::{millis, Cluster, Result};
use distzero_examples::pingpong::{PingConfig, PingMsg, KIND as PINGPONG};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Fails on the seeds with `seed % 7 == 3` only, after some traffic.
fn planted(c: &mut dyn Cluster) -> Result<()> {
    let [a, b] = c.add_machines()?;
    let server = c.spawn_node(b, PINGPONG, PingConfig::default())?;
    let _ = c.spawn_node(a, PINGPONG, PingConfig::default())?;
    for n in 0..5 {
        let _: PingMsg = c.call(server, &PingMsg::Ping(n), millis(500))?;
    }
    c.run_for(millis(20))?;
    assert!(c.seed() % 7 != 3, "planted failure on seed {}", c.seed());
    Ok(())
}

/// Run `f`; the message it panicked with (None if it did not).
fn panic_of(f: impl FnOnce()) -> Option<String> {
    let p = catch_unwind(AssertUnwindSafe(f)).err()?;
    Some(match p.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    })
}

fn clear_env() {
    for (k, _) in std::env::vars() {
        if k.starts_with("DISTZERO_") {
            std::env::remove_var(k);
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn seeds_and_hostility_from_the_environment() {
    let root = std::env::temp_dir().join(format!("distzero-seeds-env-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // Away from any `.env` of the workspace: the environment alone counts.
    std::fs::create_dir_all(&root).unwrap();
    std::env::set_current_dir(&root).unwrap();
    let registry = distzero_examples::registry;
    let name = "planted_in_env";

    // A sweep from the environment finds the failing seed.
    clear_env();
    std::env::set_var("DISTZERO_SEEDS", "20..40");
    std::env::set_var("DISTZERO_LOG_DIR", &root);
    std::env::set_var("DISTZERO_LOSS", "0.01");
    std::env::set_var("DISTZERO_SWEEP_JOBS", "2");
    let text = panic_of(|| distzero::modes::simulated(name, registry(), planted))
        .expect("the sweep must find seed 24");
    assert!(
        text.contains("FAILED seed 24") && text.contains("planted failure on seed 24"),
        "{text}"
    );
    let replay = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("replay:"))
        .unwrap_or_else(|| panic!("no replay line in {text}"))
        .trim()
        .to_string();
    let at = replay.find("cargo test ").expect("a cargo command");
    assert_eq!(&replay[at..], format!("cargo test simulated::{name}"));
    let logs = root.join(name).join("simulated-24");
    let kept = root.join("kept");
    copy_dir(&logs, &kept);

    // The replay, as the command says: its environment and nothing else.
    clear_env();
    for kv in replay[..at].split_whitespace() {
        let (k, v) = kv.split_once('=').expect("VAR=value");
        std::env::set_var(k, v);
    }
    assert_eq!(std::env::var("DISTZERO_SEED").as_deref(), Ok("24"));
    assert_eq!(std::env::var("DISTZERO_LOSS").as_deref(), Ok("0.01"));
    let again = panic_of(|| distzero::modes::simulated(name, registry(), planted))
        .expect("the replay must fail too");
    assert!(
        again.contains("failed with seed 24") && again.contains(&replay),
        "{again}"
    );
    assert!(same_tree(&kept, &logs), "the replay's logs differ");

    // A bad latency: one line naming the variable and what it accepts.
    clear_env();
    std::env::set_var("DISTZERO_LATENCY", "fast");
    let bad = panic_of(|| distzero::modes::simulated(name, registry(), planted)).unwrap();
    let bad = bad.trim();
    assert!(
        bad.starts_with("distzero settings: DISTZERO_LATENCY=\"fast\" is not valid: DISTZERO_LATENCY accepts a duration")
            && !bad.contains('\n'),
        "{bad}"
    );

    // A real mode refuses a simulation-only setting before starting anything.
    clear_env();
    std::env::set_var("DISTZERO_REORDER", "1");
    let refused = panic_of(|| distzero::modes::loopback(name, registry(), planted)).unwrap();
    assert_eq!(
        refused,
        format!("workflow test `{name}` (loopback mode) cannot start: DISTZERO_REORDER=\"1\" is simulation-only and loopback mode cannot honour it: unset it, or run only the simulated tests (cargo test simulated)")
    );
    clear_env();
    let _ = std::fs::remove_dir_all(root);
}
