//! Every planted bug is found by a sweep of the default size; every correct
//! system survives the same sweep; sweeps are deterministic.

use distzero::sim::sweep::{run_once, same_tree, sweep, SweepOptions};
use distzero_examples::scenarios::by_name;

fn opts(name: &str) -> SweepOptions {
    SweepOptions {
        jobs: 0,
        log_root: std::env::temp_dir()
            .join(format!("distzero-scenarios-{}-{name}", std::process::id())),
        shrink_budget: 50,
        // One failing seed is enough here (the report's choice among
        // several is tested in sim/).
        candidates: 1,
        ..SweepOptions::default()
    }
}

fn finds(name: &str, expect: &str) {
    finds_any(name, &[expect]);
}

/// The sweep finds a failure whose message holds one of `expect`.
fn finds_any(name: &str, expect: &[&str]) {
    finds_within(name, expect, SweepOptions::default().seeds);
}

/// As [`finds_any`], sweeping `seeds`.
fn finds_within(name: &str, expect: &[&str], seeds: std::ops::Range<u64>) {
    finds_with(name, expect, seeds, false);
}

/// As [`finds_within`], with swarm testing if `swarm`.
fn finds_with(name: &str, expect: &[&str], seeds: std::ops::Range<u64>, swarm: bool) {
    let s = by_name(name).unwrap();
    let mut o = SweepOptions {
        seeds,
        ..opts(name)
    };
    o.sim.swarm = swarm;
    let report = sweep(&s, &o, &|seed, _| format!("--replay {seed}"));
    assert_eq!(
        report.failures.len(),
        1,
        "the sweep must find the planted bug of {name}:\n{report}"
    );
    let f = &report.failures[0];
    assert!(
        expect.iter().any(|e| f.message.contains(e)),
        "{name}: {}",
        f.message
    );
    // The replay (seed alone, full logs) is byte for byte the run the sweep logged.
    let replay_dir = o.log_root.join("replay");
    let again = run_once(&s, f.seed, None, Some(&replay_dir), &o.sim);
    assert_eq!(again.err().as_deref(), Some(f.message.as_str()));
    assert!(
        same_tree(&f.log_dir, &replay_dir),
        "replay logs differ from the sweep's"
    );
    assert!(
        !f.message.contains("PASSED"),
        "the failing seed must fail again: {}",
        f.message
    );
    let _ = std::fs::remove_dir_all(o.log_root);
}

/// A safety bug of the Raft example shows as a history that is not
/// linearizable or as replicas that applied different logs.
fn finds_raft_safety_bug(name: &str) {
    finds_any(
        name,
        &["not linearizable", "replicas applied different logs"],
    );
}

fn survives(name: &str) {
    let s = by_name(name).unwrap();
    let o = opts(name);
    let report = sweep(&s, &o, &|seed, _| format!("--replay {seed}"));
    assert!(report.passed(), "{report}");
    assert_eq!(report.ran, o.seeds.end - o.seeds.start);
    let _ = std::fs::remove_dir_all(o.log_root);
}

#[test]
fn sweep_finds_kv_ack_before_replicate() {
    finds("kv-ack-before-replicate", "not linearizable");
}

#[test]
fn sweep_finds_kv_stale_read() {
    finds("kv-stale-read", "not linearizable");
}

#[test]
fn sweep_finds_wordcount_counting_retries_twice() {
    finds("wordcount-count-retries-twice", "not exact");
}

#[test]
fn correct_kv_survives_the_sweep() {
    survives("kv");
}

#[test]
fn correct_wordcount_survives_the_sweep() {
    survives("wordcount");
}

#[test]
fn sweep_finds_raft_vote_not_persisted() {
    finds_raft_safety_bug("raft-vote-not-persisted");
}

#[test]
fn sweep_finds_raft_commit_without_majority() {
    finds_raft_safety_bug("raft-commit-without-majority");
}

#[test]
fn sweep_finds_raft_stale_read() {
    finds("raft-stale-read", "not linearizable");
}

#[test]
fn sweep_finds_raft_vote_ignoring_the_log() {
    finds_raft_safety_bug("raft-vote-ignores-log");
}

/// The liveness bug: no leader is ever elected again after some faults.
#[test]
fn sweep_finds_raft_no_reelection_as_a_liveness_failure() {
    finds("raft-no-reelection", "liveness: a leader is elected");
}

#[test]
fn correct_raft_survives_the_sweep() {
    survives("raft");
}

/// The lost vote needs a crash and a restart: the same bug under a
/// nemesis without crashes (partitions, cuts, pauses, latency) survives.
#[test]
fn raft_vote_not_persisted_is_not_found_without_crashes() {
    survives("raft-vote-not-persisted-no-crash");
}

/// Four seeds of `name`, each run twice: same results, same log bytes.
fn deterministic(name: &str) {
    let s = by_name(name).unwrap();
    let mut o = opts(&format!("{name}-determinism"));
    o.seeds = 0..4;
    o.check_determinism = true;
    let report = sweep(&s, &o, &|seed, _| format!("--replay {seed}"));
    assert!(report.passed(), "{report}");
    let _ = std::fs::remove_dir_all(o.log_root);
}

#[test]
fn raft_sweep_is_deterministic() {
    deterministic("raft");
}

#[test]
fn kv_sweep_is_deterministic() {
    deterministic("kv");
}

#[test]
fn unknown_workflow_names_the_known_ones() {
    let e = by_name("nope").err().unwrap().to_string();
    assert!(e.contains("nope") && e.contains("kv-stale-read"), "{e}");
}

/// Followers that acknowledge before syncing: a crash that loses unsynced
/// writes takes acknowledged entries with it (a lost write, diverging logs,
/// or a replica that never catches up because its leader counted them).
#[test]
fn sweep_finds_raft_ack_before_sync() {
    finds_any(
        "raft-ack-before-sync",
        &[
            "not linearizable",
            "replicas applied different logs",
            "every replica applies the leader's committed log",
        ],
    );
}

/// A lease measured on the wall clock: a clock stepped back stretches it,
/// and a deposed leader serves stale reads. It takes a step back at the
/// right moment: the first failing seed is in the hundreds (README).
#[test]
fn sweep_finds_raft_lease_on_the_wall_clock() {
    finds_within("raft-lease-on-wall-clock", &["not linearizable"], 0..1000);
}

/// The Raft log survives power losses, I/O errors, a full disk and slow
/// syncs beside partitions and crashes.
#[test]
fn correct_raft_survives_storage_faults() {
    survives("raft-disk");
}

/// One replica's stored blocks damaged (then read back after a crash):
/// the replica repairs its log from the leader before it votes again.
#[test]
fn correct_raft_survives_a_damaged_replica() {
    survives("raft-corrupt");
}

/// A damaged synced entry taken for a torn tail: the replica votes as if
/// it lost nothing, and elects the replica that was cut off, which
/// overwrites committed entries (swarm testing finds it within a few dozen
/// seeds, the default nemesis within a few hundred).
#[test]
fn sweep_finds_raft_corrupt_as_torn() {
    finds_with(
        "raft-corrupt-as-torn",
        &["not linearizable", "replicas applied different logs"],
        0..1000,
        true,
    );
}

/// Leases on the monotonic clock, with a margin for drift, survive clock
/// steps and drift.
#[test]
fn correct_raft_leases_survive_clock_faults() {
    survives("raft-lease");
}

/// Disk and clock faults keep a run deterministic: same seed, same bytes.
#[test]
fn storage_and_clock_sweeps_are_deterministic() {
    deterministic("raft-disk");
    deterministic("raft-lease");
}
