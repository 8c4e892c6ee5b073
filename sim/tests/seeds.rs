//! Sweeping a workflow test from its settings (what `cargo test simulated`
//! does under `DISTZERO_SEEDS`), replaying the failing seed from the printed
//! command, and the hostility settings reaching every run.

use distzero::{millis, Cluster, Context, Node, NodeId, Registry, Result, Settings};
use distzero_sim::sweep::same_tree;
use distzero_sim::{check_workflow, try_workflow, WorkflowFailure};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Serialize, Deserialize, Debug)]
enum Msg {
    /// To the sender: send `n` numbered messages to this node.
    Go(NodeId, u32),
    N(u32),
    Get,
    Got(Vec<u32>),
}

/// Sends numbered messages when told to.
struct Sender;

impl Node for Sender {
    type Msg = Msg;
    fn on_message(&mut self, ctx: &mut Context<'_, Msg>, _from: NodeId, msg: Msg) {
        if let Msg::Go(to, n) = msg {
            for i in 0..n {
                ctx.send(to, Msg::N(i));
            }
        }
    }
}

/// Records what arrives, in arrival order, and logs a draw of its rng for
/// each (so the logs show every choice of the run).
#[derive(Default)]
struct Receiver {
    got: Vec<u32>,
}

impl Node for Receiver {
    type Msg = Msg;
    fn on_message(&mut self, ctx: &mut Context<'_, Msg>, from: NodeId, msg: Msg) {
        match msg {
            Msg::N(i) => {
                self.got.push(i);
                let draw: u32 = ctx.rng().gen();
                tracing::info!(i, draw, buggify = ctx.buggify(), "got");
            }
            Msg::Get => ctx.send(from, Msg::Got(self.got.clone())),
            _ => {}
        }
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("sender", |_: serde_json::Value| Sender);
    r.register("receiver", |_: serde_json::Value| Receiver::default());
    r
}

/// 100 messages from a node on m0 to a node on m1; what m1 got, in order.
fn exchange(c: &mut dyn Cluster, wait: std::time::Duration) -> Result<Vec<u32>> {
    let [a, b] = c.add_machines()?;
    let sender = c.spawn_node(a, "sender", ())?;
    let receiver = c.spawn_node(b, "receiver", ())?;
    c.send(sender, &Msg::Go(receiver, 100))?;
    c.run_for(wait)?;
    // The test's own messages take the default link's latency too (never
    // its loss): wait long enough for a slow one.
    match c.call(receiver, &Msg::Get, millis(3000))? {
        Msg::Got(got) => Ok(got),
        other => panic!("receiver answered {other:?}"),
    }
}

/// Fails on the seeds with `seed % 7 == 3` only: a bug that one seed (the
/// test name's) misses and a sweep finds.
fn fails_on_some_seeds(c: &mut dyn Cluster) -> Result<()> {
    exchange(c, millis(50))?;
    assert!(c.seed() % 7 != 3, "planted failure on seed {}", c.seed());
    Ok(())
}

/// Holds only if messages of one pair of machines arrive in order.
fn fifo_per_pair(c: &mut dyn Cluster) -> Result<()> {
    let got = exchange(c, millis(50))?;
    assert_eq!(got, (0..100).collect::<Vec<_>>(), "messages out of order");
    Ok(())
}

static RUNS: AtomicU64 = AtomicU64::new(0);

/// Logs a count kept outside the simulation: no two runs log the same.
fn nondeterministic(c: &mut dyn Cluster) -> Result<()> {
    exchange(c, millis(10))?;
    tracing::info!(run = RUNS.fetch_add(1, Ordering::Relaxed), "leak");
    Ok(())
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("distzero-seeds-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn settings(pairs: &[(&str, &str)]) -> Settings {
    Settings::from_pairs(pairs).unwrap()
}

/// The environment of a printed replay command (`VAR=value … cargo test …`)
/// and what follows it.
fn parse_replay(line: &str) -> (BTreeMap<String, String>, String) {
    let at = line.find("cargo ").expect("a cargo command");
    let env = line[..at]
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("VAR=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    (env, line[at..].trim().to_string())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_swept_workflow_finds_the_failing_seed_and_its_replay_is_byte_identical() {
    let root = temp("planted");
    let root_s = root.display().to_string();
    let name = "fails_on_some_seeds";
    // One seed, the test name's, misses the bug.
    let one = settings(&[("DISTZERO_LOG_DIR", &root_s)]);
    let named = distzero_sim::seed_for(name, &one).unwrap();
    assert_ne!(named % 7, 3, "the test name's seed must miss the bug");
    check_workflow(name, registry(), fails_on_some_seeds, &one).unwrap();
    // A sweep from the settings finds it, with hostile settings on.
    let swept = settings(&[
        ("DISTZERO_SEEDS", "4..40"),
        ("DISTZERO_SWEEP_JOBS", "2"),
        ("DISTZERO_LOG_DIR", &root_s),
        ("DISTZERO_LATENCY", "1ms..5ms"),
        ("DISTZERO_DUPLICATE", "0.1"),
        ("DISTZERO_BUGGIFY", "0.3"),
    ]);
    let report = match check_workflow(name, registry(), fails_on_some_seeds, &swept) {
        Err(WorkflowFailure::Sweep(r)) => *r,
        other => panic!("the sweep must find the planted failure: {other:?}"),
    };
    let text = WorkflowFailure::Sweep(Box::new(report.clone())).to_string();
    eprintln!("{text}");
    assert_eq!(report.failures.len(), 1, "{text}");
    let f = &report.failures[0];
    // The lowest failing seed of 4..40 is 10; none below it fails.
    assert_eq!(f.seed, 10, "{text}");
    assert!(f.message.contains("planted failure on seed 10"), "{text}");
    assert!(report.to_first_failure.is_some(), "{text}");
    assert!(
        text.contains("workflow fails_on_some_seeds: ")
            && text.contains("time: first failure after ")
            && text.contains(", no shrinking")
            && text.contains("schedule:\n  (no nemesis declared: the body's own faults only)")
            && text.contains(&format!("logs:     {}", f.log_dir.display())),
        "{text}"
    );
    assert_eq!(f.log_dir, root.join(name).join("simulated-10"));
    // The one replay command: the seed and every non-default run setting,
    // not the sweep's own (seeds, jobs).
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("replay:"))
        .expect("a replay line");
    let (env, command) = parse_replay(line);
    assert_eq!(command, "cargo test simulated::fails_on_some_seeds");
    let expected: BTreeMap<String, String> = [
        ("DISTZERO_SEED", "10"),
        ("DISTZERO_LOG_DIR", root_s.as_str()),
        ("DISTZERO_LATENCY", "1ms..5ms"),
        ("DISTZERO_DUPLICATE", "0.1"),
        ("DISTZERO_BUGGIFY", "0.3"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(env, expected, "{line}");
    // The replay, with exactly the command's settings: the same failure,
    // and the same log bytes as the sweep's run of that seed.
    let kept = root.join("kept");
    copy_dir(&f.log_dir, &kept);
    let replay = Settings::from_sources(&env, &BTreeMap::new(), None).unwrap();
    match check_workflow(name, registry(), fails_on_some_seeds, &replay) {
        Err(WorkflowFailure::Seed(again)) => {
            assert_eq!((again.seed, &again.message), (10, &f.message));
            assert_eq!(again.log_dir, f.log_dir);
            assert_eq!(again.replay_command(), line.trim());
        }
        other => panic!("the replay must fail the same way: {other:?}"),
    }
    assert!(
        same_tree(&kept, &f.log_dir),
        "the replay's logs differ from the sweep's"
    );
    // Without one of the settings it is another run: the comparison can fail.
    let mut partial = env.clone();
    partial.remove("DISTZERO_DUPLICATE");
    let partial = Settings::from_sources(&partial, &BTreeMap::new(), None).unwrap();
    let _ = check_workflow(name, registry(), fails_on_some_seeds, &partial);
    assert!(
        !same_tree(&kept, &f.log_dir),
        "duplication must show in the logs"
    );
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn reorder_breaks_a_fifo_check_that_holds_without_it() {
    let root = temp("fifo");
    let root_s = root.display().to_string();
    let base = [("DISTZERO_SEEDS", "0..20"), ("DISTZERO_LOG_DIR", &root_s)];
    // In order on every seed, and each seed's two runs log the same bytes.
    let mut calm = base.to_vec();
    calm.push(("DISTZERO_CHECK_DETERMINISM", "1"));
    check_workflow("fifo_per_pair", registry(), fifo_per_pair, &settings(&calm))
        .unwrap_or_else(|f| panic!("{f}"));
    // The same test under DISTZERO_REORDER=1 fails, and its replay says so.
    let mut hostile = base.to_vec();
    hostile.push(("DISTZERO_REORDER", "1"));
    match check_workflow(
        "fifo_per_pair",
        registry(),
        fifo_per_pair,
        &settings(&hostile),
    ) {
        Err(WorkflowFailure::Sweep(r)) => {
            let f = &r.failures[0];
            assert!(f.message.contains("messages out of order"), "{r}");
            assert!(
                f.replay.starts_with(&format!(
                    "DISTZERO_SEED={} DISTZERO_REORDER=1 DISTZERO_LOG_DIR=",
                    f.seed
                )),
                "{r}"
            );
        }
        other => panic!("reordering must break FIFO: {other:?}"),
    }
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn the_determinism_check_catches_a_run_that_leaks_outside_state() {
    let root = temp("leak");
    let root_s = root.display().to_string();
    let base = [("DISTZERO_LOG_DIR", root_s.as_str())];
    // Without the check nothing is compared: it passes.
    check_workflow("leak", registry(), nondeterministic, &settings(&base)).unwrap();
    let mut swept = base.to_vec();
    swept.extend([("DISTZERO_SEEDS", "3"), ("DISTZERO_CHECK_DETERMINISM", "1")]);
    match check_workflow("leak", registry(), nondeterministic, &settings(&swept)) {
        Err(WorkflowFailure::Sweep(r)) => {
            assert_eq!(r.nondeterministic, vec![0, 1, 2], "{r}");
            assert!(r.to_string().contains("NONDETERMINISTIC seed 0"), "{r}");
        }
        other => panic!("the sweep must see two runs differ: {other:?}"),
    }
    // One seed (no DISTZERO_SEEDS) is checked the same way.
    let mut one = base.to_vec();
    one.extend([("DISTZERO_SEED", "5"), ("DISTZERO_CHECK_DETERMINISM", "1")]);
    match check_workflow("leak", registry(), nondeterministic, &settings(&one)) {
        Err(WorkflowFailure::Seed(f)) => {
            assert!(f.message.starts_with("NONDETERMINISTIC"), "{f}");
            assert_eq!(f.seed, 5);
        }
        other => panic!("two runs of one seed must differ: {other:?}"),
    }
    let _ = std::fs::remove_dir_all(root);
}

/// How many of the 100 messages arrived after `wait`, under `pairs`.
fn arrived(pairs: &[(&str, &str)], wait: std::time::Duration) -> usize {
    let n = std::cell::Cell::new(0);
    try_workflow("arrived", 1, None, &settings(pairs), registry(), &|c| {
        n.set(exchange(c, wait)?.len());
        Ok(())
    })
    .unwrap_or_else(|f| panic!("{f}"));
    n.get()
}

#[test]
fn latency_and_loss_settings_reach_the_run() {
    assert_eq!(arrived(&[], millis(10)), 100);
    assert_eq!(arrived(&[("DISTZERO_LATENCY", "1s")], millis(10)), 0);
    assert_eq!(arrived(&[("DISTZERO_LATENCY", "1s")], millis(1100)), 100);
    // Told at 20 ms at the earliest, sent on to arrive at 40 ms at the
    // earliest; asked at 1 ms, so the question arrives by 31 ms.
    assert_eq!(arrived(&[("DISTZERO_LATENCY", "20ms..30ms")], millis(1)), 0);
    let lossy = arrived(&[("DISTZERO_LOSS", "0.5")], millis(100));
    assert!((20..=80).contains(&lossy), "{lossy} of 100 arrived");
    // The sweep's options read the same link.
    let o = distzero_sim::SweepOptions::from_settings(&settings(&[
        ("DISTZERO_LATENCY", "2ms"),
        ("DISTZERO_LOSS", "0.25"),
    ]))
    .unwrap();
    assert_eq!(
        o.sim.default_link,
        distzero::Link::fixed(millis(2)).with_loss(0.25)
    );
}

#[test]
fn a_bad_latency_fails_with_one_line_naming_it() {
    let mut env = BTreeMap::new();
    env.insert("DISTZERO_LATENCY".to_string(), "1 second".to_string());
    let e = Settings::from_sources(&env, &BTreeMap::new(), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("DISTZERO_LATENCY=\"1 second\" is not valid: DISTZERO_LATENCY accepts a duration such as 0, 250us, 1ms or 1.5s, or a uniform range min..max")
            && !e.contains('\n'),
        "{e}"
    );
}

#[test]
fn a_nemesis_recovery_restores_the_runs_default_link() {
    use distzero::nemesis::{Fault, Nemesis, Schedule, Step};
    // After a latency fault, the recovery sets every link back to the
    // run's default (DISTZERO_LATENCY).
    let after_recovery = |latency: &str| {
        let n = std::cell::Cell::new(0);
        let s = settings(&[("DISTZERO_LATENCY", latency)]);
        try_workflow("recovery", 1, None, &s, registry(), &|c| {
            let [a, b] = c.add_machines()?;
            let sender = c.spawn_node(a, "sender", ())?;
            let receiver = c.spawn_node(b, "receiver", ())?;
            let fast = Fault::Latency {
                min_ms: 0,
                max_ms: 0,
            };
            let schedule = Schedule::new(vec![Step {
                at_ms: 0,
                fault: fast,
            }]);
            c.start_nemesis(Nemesis::on(&[a, b]).window(millis(10)).schedule(schedule))?;
            c.wait_nemesis()?;
            c.send(sender, &Msg::Go(receiver, 100))?;
            c.run_for(millis(50))?;
            if let Msg::Got(got) = c.call(receiver, &Msg::Get, millis(3000))? {
                n.set(got.len());
            }
            Ok(())
        })
        .unwrap_or_else(|f| panic!("{f}"));
        n.get()
    };
    assert_eq!(after_recovery("500us..1500us"), 100);
    assert_eq!(after_recovery("1s"), 0, "the slow default link is back");
}

static SWEPT: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

/// Records its seed; passes.
fn records_its_seed(c: &mut dyn Cluster) -> Result<()> {
    c.add_machine()?;
    SWEPT.lock().unwrap().push(c.seed());
    Ok(())
}

/// The seeds `records_its_seed` ran under `pairs`, sorted.
fn swept_seeds(pairs: &[(&str, &str)]) -> Vec<u64> {
    SWEPT.lock().unwrap().clear();
    check_workflow(
        "records_its_seed",
        registry(),
        records_its_seed,
        &settings(pairs),
    )
    .unwrap_or_else(|f| panic!("{f}"));
    let mut seeds = std::mem::take(&mut *SWEPT.lock().unwrap());
    seeds.sort();
    seeds
}

#[test]
fn a_sharded_sweep_runs_only_its_seeds() {
    let root = temp("shard");
    let root_s = root.display().to_string();
    let dir = ("DISTZERO_LOG_DIR", root_s.as_str());
    let seeds = ("DISTZERO_SEEDS", "0..20");
    assert_eq!(swept_seeds(&[dir, seeds]), (0..20).collect::<Vec<_>>());
    assert_eq!(
        swept_seeds(&[dir, seeds, ("DISTZERO_SHARD", "1/4")]),
        vec![1, 5, 9, 13, 17]
    );
    // A pod of a Kubernetes Indexed Job: its index of the manifest's count.
    assert_eq!(
        swept_seeds(&[
            dir,
            seeds,
            ("JOB_COMPLETION_INDEX", "2"),
            ("DISTZERO_SHARDS", "4"),
        ]),
        vec![2, 6, 10, 14, 18]
    );
    // The shards together run every seed once.
    let mut all: Vec<u64> = (0..3)
        .flat_map(|i| {
            let i = i.to_string();
            swept_seeds(&[
                dir,
                ("DISTZERO_SEEDS", "100..110"),
                ("JOB_COMPLETION_INDEX", &i),
                ("DISTZERO_SHARDS", "3"),
            ])
        })
        .collect();
    all.sort();
    assert_eq!(all, (100..110).collect::<Vec<_>>());
    // A shard without seeds to split is refused, not run as one seed in
    // every pod.
    SWEPT.lock().unwrap().clear();
    let e = check_workflow(
        "records_its_seed",
        registry(),
        records_its_seed,
        &settings(&[dir, ("JOB_COMPLETION_INDEX", "2"), ("DISTZERO_SHARDS", "4")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("shard 2/4 (JOB_COMPLETION_INDEX of DISTZERO_SHARDS)")
            && e.contains("DISTZERO_SEEDS is unset"),
        "{e}"
    );
    assert!(SWEPT.lock().unwrap().is_empty(), "nothing ran");
    // DISTZERO_SEED (a replay) still runs its one seed.
    assert_eq!(
        swept_seeds(&[dir, ("DISTZERO_SEED", "7"), ("DISTZERO_SHARD", "1/4")]),
        vec![7]
    );
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_sharded_sweep_reports_its_shard_and_keeps_going_when_told() {
    let root = temp("shard-report");
    let root_s = root.display().to_string();
    let base = [
        ("DISTZERO_LOG_DIR", root_s.as_str()),
        ("DISTZERO_SEEDS", "0..40"),
    ];
    let name = "fails_on_some_seeds";
    let sweep_of = |extra: &[(&str, &str)]| {
        let mut pairs = base.to_vec();
        pairs.extend_from_slice(extra);
        match check_workflow(name, registry(), fails_on_some_seeds, &settings(&pairs)) {
            Err(WorkflowFailure::Sweep(r)) => *r,
            other => panic!("the shard holds failing seeds: {other:?}"),
        }
    };
    // Shard 3 of 7 is exactly the failing seeds: 3, 10, 17, 24, 31, 38.
    let r = sweep_of(&[("DISTZERO_SHARD", "3/7"), ("DISTZERO_KEEP_GOING", "1")]);
    let text = r.to_string();
    assert_eq!(r.shard, Some((3, 7)));
    assert_eq!(r.ran, 6, "{text}");
    let failed: Vec<u64> = r.failures.iter().map(|f| f.seed).collect();
    assert_eq!(failed, vec![3, 10, 17, 24, 31, 38], "{text}");
    assert!(
        text.lines().nth(1) == Some("shard 3/7: seeds ≡ 3 mod 7"),
        "the report says which shard ran:\n{text}"
    );
    assert!(text.contains("FAILED seed 38") && text.contains("replay:   DISTZERO_SEED=38 "));
    // Without DISTZERO_KEEP_GOING it stops at the first.
    let r = sweep_of(&[("DISTZERO_SHARD", "3/7")]);
    assert_eq!(r.failures.len(), 1, "{r}");
    assert_eq!(r.failures[0].seed, 3);
    // Another shard holds none of them.
    let pairs = [base.as_slice(), &[("DISTZERO_SHARD", "4/7")]].concat();
    check_workflow(name, registry(), fails_on_some_seeds, &settings(&pairs))
        .unwrap_or_else(|f| panic!("{f}"));
    // Unsharded, the report has no shard line.
    let r = sweep_of(&[]);
    assert_eq!(r.shard, None);
    assert!(!r.to_string().contains("shard "), "{r}");
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn the_sweep_options_come_from_the_settings() {
    use distzero_sim::SweepOptions;
    let d = SweepOptions::default();
    let o = SweepOptions::from_settings(&settings(&[])).unwrap();
    assert_eq!(
        (
            o.seeds,
            o.jobs,
            o.stop_at_first,
            o.shard,
            o.progress,
            o.shrink_budget
        ),
        (
            d.seeds,
            d.jobs,
            d.stop_at_first,
            d.shard,
            d.progress,
            d.shrink_budget
        ),
        "the settings' defaults are SweepOptions::default()"
    );
    let o = SweepOptions::from_settings(&settings(&[
        ("DISTZERO_SEEDS", "1000..1500"),
        ("DISTZERO_SWEEP_JOBS", "3"),
        ("DISTZERO_SHARD", "2/5"),
        ("DISTZERO_KEEP_GOING", "1"),
        ("DISTZERO_PROGRESS", "1"),
        ("DISTZERO_SHRINK", "0"),
    ]))
    .unwrap();
    assert_eq!(
        (
            o.seeds,
            o.jobs,
            o.stop_at_first,
            o.shard,
            o.progress,
            o.shrink_budget
        ),
        (1000..1500, 3, false, Some((2, 5)), true, 0)
    );
}

/// 100 messages to a receiver that keeps them in memory, under a nemesis
/// that may crash, pause and slow down both machines: a crash of the
/// receiver's machine loses what it got (the planted bug).
fn delivers_all_under_nemesis(c: &mut dyn Cluster) -> Result<()> {
    use distzero::nemesis::{FaultKind, Nemesis};
    let [a, b] = c.add_machines()?;
    let sender = c.spawn_node(a, "sender", ())?;
    let receiver = c.spawn_node(b, "receiver", ())?;
    c.start_nemesis(
        Nemesis::on(&[a, b])
            .kinds(&[FaultKind::Crash, FaultKind::Pause, FaultKind::Latency])
            .window(millis(100))
            .max_faults(4),
    )?;
    c.send(sender, &Msg::Go(receiver, 100))?;
    c.wait_nemesis()?;
    c.run_for(millis(50))?;
    match c.call(receiver, &Msg::Get, millis(3000))? {
        Msg::Got(got) => assert_eq!(got.len(), 100, "the receiver lost messages"),
        other => panic!("receiver answered {other:?}"),
    }
    Ok(())
}

/// `DISTZERO_SEEDS` sweeps a workflow's declared nemesis: the failure
/// prints the shrunk schedule as Rust and JSON and one command that
/// replays it (`DISTZERO_SCHEDULE`), whose logs are the bytes of the
/// sweep's run of the shrunk schedule.
#[test]
fn a_swept_nemesis_is_shrunk_and_its_printed_replay_is_byte_identical() {
    let root = temp("nemesis");
    let root_s = root.display().to_string();
    let name = "delivers_all_under_nemesis";
    let swept = settings(&[
        ("DISTZERO_SEEDS", "0..60"),
        ("DISTZERO_SWEEP_JOBS", "2"),
        ("DISTZERO_LOG_DIR", &root_s),
    ]);
    let report = match check_workflow(name, registry(), delivers_all_under_nemesis, &swept) {
        Err(WorkflowFailure::Sweep(r)) => *r,
        other => panic!("the sweep must find the planted failure: {other:?}"),
    };
    let text = WorkflowFailure::Sweep(Box::new(report.clone())).to_string();
    eprintln!("{text}");
    let f = &report.failures[0];
    let (shrunk, msg) = f.shrunk.clone().expect("shrunk");
    assert!(msg.contains("the receiver lost messages"), "{msg}");
    // One crash of the receiver's machine (index 1) is all it takes.
    assert_eq!(shrunk.len(), 1, "{text}");
    assert_eq!(shrunk[0].faults(), 1, "{text}");
    assert!(
        shrunk[0]
            .steps
            .iter()
            .any(|s| s.fault == distzero::nemesis::Fault::Crash(1)),
        "{text}"
    );
    let json = distzero::nemesis::schedules_to_json(&shrunk);
    assert!(
        text.contains("as Rust: Nemesis::on(&machines).schedule(Schedule::new(vec![")
            && text.contains(&format!("as JSON:  {json}")),
        "{text}"
    );
    // The printed replay of the shrunk schedule, run with exactly its
    // settings: the same failure, the same log bytes.
    let line = text
        .lines()
        .skip_while(|l| !l.contains("replay the shrunk schedule:"))
        .nth(1)
        .expect("a replay line for the shrunk schedule");
    let (mut env, command) = parse_replay(line);
    assert_eq!(command, format!("cargo test simulated::{name}"));
    let given = env.get_mut("DISTZERO_SCHEDULE").expect("the schedule");
    *given = given.trim_matches('\'').to_string();
    assert_eq!(*given, json);
    assert_eq!(env["DISTZERO_SEED"], f.seed.to_string());
    let shrunk_dir = f.shrunk_log_dir.clone().expect("logs of the shrunk run");
    assert_eq!(
        shrunk_dir,
        root.join(name)
            .join(format!("simulated-{}-schedule", f.seed))
    );
    let kept = root.join("kept");
    copy_dir(&shrunk_dir, &kept);
    let replay = Settings::from_sources(&env, &BTreeMap::new(), None).unwrap();
    match check_workflow(name, registry(), delivers_all_under_nemesis, &replay) {
        Err(WorkflowFailure::Seed(again)) => {
            assert_eq!((again.seed, &again.message), (f.seed, &msg));
            assert_eq!(again.log_dir, shrunk_dir);
        }
        other => panic!("the replay must fail the same way: {other:?}"),
    }
    assert!(same_tree(&kept, &shrunk_dir), "the replay's logs differ");
    // The seed's own schedule is another run: the comparison can fail.
    assert!(!same_tree(&kept, &f.log_dir));
    // Without the nemesis's crash, the seed passes.
    let mut no_faults = env.clone();
    no_faults.insert("DISTZERO_SCHEDULE".into(), "[[]]".into());
    let no_faults = Settings::from_sources(&no_faults, &BTreeMap::new(), None).unwrap();
    check_workflow(name, registry(), delivers_all_under_nemesis, &no_faults)
        .unwrap_or_else(|e| panic!("no faults, no failure: {e}"));
    let _ = std::fs::remove_dir_all(root);
}

/// `DISTZERO_SWARM=1`: each seed draws its own fault profile, which the
/// report prints; the replay line carries the setting and fails the same.
#[test]
fn a_swarm_sweep_prints_the_seeds_profile_and_replays_it() {
    let root = temp("swarm");
    let root_s = root.display().to_string();
    let name = "delivers_all_under_nemesis";
    let swept = settings(&[
        ("DISTZERO_SEEDS", "0..200"),
        ("DISTZERO_SWEEP_JOBS", "2"),
        ("DISTZERO_SWARM", "1"),
        ("DISTZERO_LOG_DIR", &root_s),
    ]);
    let report = match check_workflow(name, registry(), delivers_all_under_nemesis, &swept) {
        Err(WorkflowFailure::Sweep(r)) => *r,
        other => panic!("the sweep must find the planted failure: {other:?}"),
    };
    let text = WorkflowFailure::Sweep(Box::new(report.clone())).to_string();
    let f = &report.failures[0];
    let profile = f.profiles[0].clone().expect("a swarm profile");
    assert!(
        profile
            .kinds
            .iter()
            .any(|(k, _)| *k == distzero::nemesis::FaultKind::Crash),
        "the receiver only loses messages to a crash: {profile}"
    );
    assert!(
        text.contains(&format!("swarm profile: {profile}")),
        "{text}"
    );
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("replay:"))
        .expect("a replay line");
    let (env, _) = parse_replay(line);
    assert_eq!(env.get("DISTZERO_SWARM").map(String::as_str), Some("1"));
    let replay = Settings::from_sources(&env, &BTreeMap::new(), None).unwrap();
    match check_workflow(name, registry(), delivers_all_under_nemesis, &replay) {
        Err(WorkflowFailure::Seed(again)) => assert_eq!(again.message, f.message),
        other => panic!("the replay must fail the same way: {other:?}"),
    }
    // Without swarm the same seed draws another schedule.
    let mut plain = env.clone();
    plain.remove("DISTZERO_SWARM");
    let plain = Settings::from_sources(&plain, &BTreeMap::new(), None).unwrap();
    let sim = distzero_sim::SimSettings::from_settings(&plain).unwrap();
    let w = distzero_sim::Workflow::new(name, registry(), delivers_all_under_nemesis);
    assert_ne!(
        distzero_sim::sweep::schedules_for(&w, f.seed, &sim),
        f.schedules
    );
    let _ = std::fs::remove_dir_all(root);
}
