//! Seed sweeps find a planted bug, pass the correct version, shrink the
//! failing schedule, shard, and check determinism.

use distzero::nemesis::{Fault, Nemesis, Schedule, Step};
use distzero::{Cluster, Context, MachineId, Node, NodeId, Registry, Result, Settings, TimerId};
use distzero_sim::sweep::{
    run_once, same_tree, schedules_for, shrink, sweep, SweepFailure, SweepOptions, SweepReport,
    Workflow,
};
use distzero_sim::{BudgetSpent, SimSettings};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize, Debug)]
enum Msg {
    Inc,
    Acked(u64),
    Get,
    Value(u64),
    Acks(Vec<u64>, Option<(usize, u64, u64)>),
}

/// A durable counter. The planted bug: it persists only every other value.
struct Counter {
    value: u64,
    lazy: bool,
}

impl Node for Counter {
    type Msg = Msg;
    fn on_start(&mut self, ctx: &mut Context<'_, Msg>) {
        self.value = ctx.disk().get("v").ok().flatten().unwrap_or(0);
    }
    fn on_message(&mut self, ctx: &mut Context<'_, Msg>, from: NodeId, msg: Msg) {
        match msg {
            Msg::Inc => {
                self.value += 1;
                if !self.lazy || self.value.is_multiple_of(2) {
                    let _ = ctx.disk().put_synced("v", &self.value);
                }
                ctx.send(from, Msg::Acked(self.value));
            }
            Msg::Get => ctx.send(from, Msg::Value(self.value)),
            _ => {}
        }
    }
}

/// Increments the counters on a timer and remembers the highest ack of each.
struct Client {
    counters: Vec<NodeId>,
    acked: Vec<u64>,
    regression: Option<(usize, u64, u64)>,
}

impl Node for Client {
    type Msg = Msg;
    fn on_start(&mut self, ctx: &mut Context<'_, Msg>) {
        ctx.set_timer(Duration::from_millis(3), 0);
    }
    fn on_message(&mut self, ctx: &mut Context<'_, Msg>, from: NodeId, msg: Msg) {
        match msg {
            Msg::Acked(v) => {
                if let Some(i) = self.counters.iter().position(|c| *c == from) {
                    // Acks of one counter must strictly increase: a repeat means
                    // an acknowledged increment was lost.
                    if v <= self.acked[i] && self.regression.is_none() {
                        self.regression = Some((i, self.acked[i], v));
                    }
                    self.acked[i] = self.acked[i].max(v);
                }
            }
            Msg::Get => ctx.send(from, Msg::Acks(self.acked.clone(), self.regression)),
            _ => {}
        }
    }
    fn on_timer(&mut self, ctx: &mut Context<'_, Msg>, _t: TimerId, _tag: u64) {
        let i = ctx.rng().gen_range(0..self.counters.len());
        ctx.send(self.counters[i], Msg::Inc);
        ctx.set_timer(Duration::from_millis(3), 0);
    }
}

fn durability_registry(lazy: bool) -> Registry {
    let mut r = Registry::new();
    r.register("counter", move |_: serde_json::Value| Counter {
        value: 0,
        lazy,
    });
    r.register("client", |counters: Vec<NodeId>| Client {
        acked: vec![0; counters.len()],
        counters,
        regression: None,
    });
    r
}

/// Three durable counters under a nemesis, a client outside it: no
/// acknowledged increment may be lost.
fn durability(c: &mut dyn Cluster) -> Result<()> {
    let machines: [MachineId; 3] = c.add_machines()?;
    let counters: Vec<NodeId> = machines
        .iter()
        .map(|&m| c.spawn_node(m, "counter", ()))
        .collect::<Result<_>>()?;
    let client_machine = c.add_machine()?;
    let client = c.spawn_node(client_machine, "client", &counters)?;
    c.start_nemesis(Nemesis::on(&machines).window(Duration::from_millis(600)))?;
    c.wait_nemesis()?;
    c.run_for(Duration::from_millis(50))?;
    let Msg::Acks(acked, regression) = c.call(client, &Msg::Get, Duration::from_secs(1))? else {
        panic!("client reply")
    };
    if let Some((i, before, after)) = regression {
        panic!("counter {i} acknowledged {before}, then acknowledged {after} again: an acknowledged increment was lost");
    }
    for (i, &counter) in counters.iter().enumerate() {
        let Msg::Value(now) = c.call(counter, &Msg::Get, Duration::from_secs(1))? else {
            panic!("counter reply")
        };
        // An Inc in flight at the crash may be acked after it; allow none lost beyond that.
        assert!(
            now >= acked[i],
            "counter {counter} holds {now} after recovery but acknowledged {}",
            acked[i]
        );
    }
    Ok(())
}

fn counters(lazy: bool) -> Workflow {
    let name = if lazy {
        "counter-lazy-fsync"
    } else {
        "counter"
    };
    Workflow::new(name, durability_registry(lazy), durability)
}

fn opts(test: &str, seeds: std::ops::Range<u64>) -> SweepOptions {
    SweepOptions {
        seeds,
        jobs: 2,
        log_root: std::env::temp_dir()
            .join(format!("distzero-sweep-{}-{test}", std::process::id())),
        ..SweepOptions::default()
    }
}

fn replay(seed: u64, s: Option<&[Schedule]>) -> String {
    match s {
        Some(s) => format!("replay {seed} {}", distzero::nemesis::schedules_to_json(s)),
        None => format!("replay {seed}"),
    }
}

/// No step of `shrunk` can go: without any one of them, the seed passes.
fn assert_minimal(w: &Workflow, seed: u64, shrunk: &[Schedule], sim: &SimSettings) {
    for d in 0..shrunk.len() {
        for i in 0..shrunk[d].steps.len() {
            let mut without = shrunk.to_vec();
            without[d].steps.remove(i);
            assert!(
                run_once(w, seed, Some(&without), None, sim).is_ok(),
                "step {i} of the shrunk schedule does nothing: {shrunk:?}"
            );
        }
    }
}

#[test]
fn a_sweep_finds_the_planted_bug_and_shrinks_its_schedule() {
    let w = counters(true);
    let report = sweep(&w, &opts("found", 0..200), &replay);
    eprintln!("{report}");
    assert_eq!(report.failures.len(), 1, "{report}");
    let f = &report.failures[0];
    assert!(f.message.contains("acknowledged"), "{}", f.message);
    assert!(
        f.log_dir.join("m0.jsonl").exists(),
        "full logs of the failing seed"
    );
    let (shrunk, msg) = f.shrunk.clone().expect("shrunk");
    assert!(msg.contains("an acknowledged increment was lost"), "{msg}");
    // The time to the first failure and the time shrinking, apart.
    let first = report.to_first_failure.expect("time to the first failure");
    assert!(!report.shrinking.is_zero() && first + report.shrinking <= report.elapsed);
    let text = report.to_string();
    assert!(
        text.contains("time: first failure after ") && text.contains(" s shrinking"),
        "{text}"
    );
    assert!(
        text.contains("schedule:\n  at "),
        "a nemesis prints its schedule: {text}"
    );
    assert_eq!(shrunk.len(), 1, "one declaration");
    assert!(shrunk[0].steps.len() <= f.schedules[0].steps.len());
    assert!(
        shrunk[0]
            .steps
            .iter()
            .any(|s| matches!(s.fault, Fault::Crash(_))),
        "a crash is needed: {shrunk:?}"
    );
    // The shrunk schedule replays: same seed, same failure, same message.
    let sim = SimSettings::default();
    assert_eq!(
        run_once(&w, f.seed, Some(&shrunk), None, &sim).err(),
        Some(msg.clone())
    );
    // The report prints it as Rust and JSON, and a replay with it.
    let json = distzero::nemesis::schedules_to_json(&shrunk);
    assert!(
        text.contains(&format!("FAILED seed {}", f.seed))
            && text.contains("Nemesis::on(&machines).schedule(Schedule::new(vec![")
            && text.contains(&format!("as JSON:  {json}"))
            && text.contains(&format!("replay {} {json}", f.seed)),
        "{text}"
    );
    assert_minimal(&w, f.seed, &shrunk, &sim);
    let _ = std::fs::remove_dir_all(opts("found", 0..1).log_root);
}

#[test]
fn shrinking_drops_steps_that_do_nothing() {
    let w = counters(true);
    let o = opts("prune", 0..1);
    let mut first = opts("prune-find", 0..400);
    first.shrink_budget = 0;
    let found = sweep(&w, &first, &replay);
    let f = found.failures.first().expect("a failing seed");
    assert!(f.shrunk.is_none(), "no shrinking asked for");
    let seed = f.seed;
    let (shrunk, msg) = shrink(
        &w,
        seed,
        f.schedules.clone(),
        f.message.clone(),
        &o.sim,
        300,
    );
    assert!(
        msg.contains("acknowledged"),
        "seed {seed} fails for the planted bug: {msg}"
    );
    assert_minimal(&w, seed, &shrunk, &o.sim);
    // Plant no-ops first: a restart of a running machine and a resume of a
    // machine not paused, at time 0, before any other step.
    let planted = [
        Step {
            at_ms: 0,
            fault: Fault::Restart(0),
        },
        Step {
            at_ms: 0,
            fault: Fault::Resume(1),
        },
    ];
    let mut steps = planted.to_vec();
    steps.extend(shrunk[0].steps.iter().cloned());
    let padded = vec![Schedule::new(steps)];
    assert_eq!(padded[0].steps.len(), shrunk[0].steps.len() + 2);
    let padded_msg = run_once(&w, seed, Some(&padded), None, &o.sim).expect_err("still fails");
    assert!(
        padded_msg.contains("acknowledged"),
        "the padded schedule fails for the planted bug: {padded_msg}"
    );
    let (pruned, pruned_msg) = shrink(&w, seed, padded, padded_msg, &o.sim, 50);
    assert!(
        pruned[0].steps.iter().all(|s| !planted.contains(s)),
        "planted steps left: {pruned:?}"
    );
    assert_eq!(pruned, shrunk);
    assert_eq!(
        run_once(&w, seed, Some(&pruned), None, &o.sim).err(),
        Some(pruned_msg)
    );
    let _ = std::fs::remove_dir_all(first.log_root);
}

#[test]
fn the_correct_version_survives_the_same_sweep() {
    let report = sweep(&counters(false), &opts("correct", 0..200), &replay);
    assert!(report.passed(), "{report}");
    assert_eq!(report.ran, 200);
}

#[test]
fn shards_split_seeds_and_determinism_is_checked() {
    let mut o = opts("shards", 0..10);
    o.shard = Some((1, 3));
    o.check_determinism = true;
    o.stop_at_first = false;
    let w = counters(false);
    let report = sweep(&w, &o, &replay);
    assert_eq!(report.ran, 3, "seeds 1, 4, 7");
    assert!(report.nondeterministic.is_empty(), "{report}");
    // A seed's schedule is a function of the seed: the same twice, and not
    // the same for every seed.
    let sim = SimSettings::default();
    assert_eq!(schedules_for(&w, 4, &sim), schedules_for(&w, 4, &sim));
    let schedules: Vec<Vec<Schedule>> = (0..10).map(|s| schedules_for(&w, s, &sim)).collect();
    assert!(
        schedules.iter().all(|s| s.len() == 1)
            && schedules.iter().any(|s| !s[0].steps.is_empty())
            && schedules.iter().any(|s| *s != schedules[0]),
        "seeds give different, non-empty schedules: {schedules:?}"
    );
    let _ = std::fs::remove_dir_all(o.log_root);
}

/// A node that logs a number no seed determines: a counter shared by every
/// run in this process.
struct Drifter;

static DRIFT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Node for Drifter {
    type Msg = Msg;
    fn on_start(&mut self, _ctx: &mut Context<'_, Msg>) {
        let n = DRIFT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(n, "drift");
    }
    fn on_message(&mut self, _ctx: &mut Context<'_, Msg>, _from: NodeId, _msg: Msg) {}
}

/// The determinism check can fail: a workflow whose logs differ between two
/// runs of one seed is reported nondeterministic, and the sweep does not pass.
#[test]
fn the_determinism_check_flags_a_seed_whose_runs_differ() {
    let mut registry = Registry::new();
    registry.register("drifter", |_: serde_json::Value| Drifter);
    let w = Workflow {
        name: "drift".into(),
        registry,
        body: |c| {
            let m = c.add_machine()?;
            c.spawn_node(m, "drifter", ())?;
            c.run_for(Duration::from_millis(10))
        },
    };
    let mut o = opts("drift", 0..3);
    o.check_determinism = true;
    o.stop_at_first = false;
    let report = sweep(&w, &o, &replay);
    assert_eq!(report.ran, 3, "{report}");
    assert!(report.failures.is_empty(), "{report}");
    assert_eq!(report.nondeterministic, vec![0, 1, 2], "{report}");
    assert!(!report.passed(), "{report}");
    assert!(
        report.to_string().contains("3 nondeterministic"),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(o.log_root);
}

/// A node whose timer re-arms itself with zero delay: virtual time never
/// moves on (a livelock).
struct Spinner;

impl Node for Spinner {
    type Msg = Msg;
    fn on_start(&mut self, ctx: &mut Context<'_, Msg>) {
        ctx.set_timer(Duration::ZERO, 0);
    }
    fn on_message(&mut self, _ctx: &mut Context<'_, Msg>, _from: NodeId, _msg: Msg) {}
    fn on_timer(&mut self, ctx: &mut Context<'_, Msg>, _t: TimerId, _tag: u64) {
        ctx.set_timer(Duration::ZERO, 0);
    }
}

/// A node that ticks every millisecond forever: time moves on, events never end.
struct Ticker;

impl Node for Ticker {
    type Msg = Msg;
    fn on_start(&mut self, ctx: &mut Context<'_, Msg>) {
        ctx.set_timer(Duration::from_millis(1), 0);
    }
    fn on_message(&mut self, _ctx: &mut Context<'_, Msg>, _from: NodeId, _msg: Msg) {}
    fn on_timer(&mut self, ctx: &mut Context<'_, Msg>, _t: TimerId, _tag: u64) {
        ctx.set_timer(Duration::from_millis(1), 0);
    }
}

fn budget_registry() -> Registry {
    let mut r = Registry::new();
    r.register("spinner", |_: serde_json::Value| Spinner);
    r.register("ticker", |_: serde_json::Value| Ticker);
    r
}

fn workflow(name: &str, body: fn(&mut dyn Cluster) -> Result<()>) -> Workflow {
    Workflow {
        name: name.into(),
        registry: budget_registry(),
        body,
    }
}

/// Sweep `w` over seeds 5..7 with `o`; the one failure reported, and the time it took.
fn sweep_budget(w: &Workflow, mut o: SweepOptions) -> (SweepFailure, SweepReport, Duration) {
    o.seeds = 5..7;
    o.jobs = 1;
    let start = std::time::Instant::now();
    let report = sweep(w, &o, &replay);
    let took = start.elapsed();
    assert_eq!(report.failures.len(), 1, "{report}");
    let _ = std::fs::remove_dir_all(&o.log_root);
    (report.failures[0].clone(), report, took)
}

#[test]
fn a_livelocked_seed_is_a_failure_naming_the_seed_and_its_budget() {
    let w = workflow("livelock", |c| {
        let m = c.add_machine()?;
        c.spawn_node(m, "spinner", ())?;
        c.run_for(Duration::from_millis(10))
    });
    let o = opts("livelock", 0..1);
    let (f, report, _) = sweep_budget(&w, o.clone());
    assert_eq!(f.seed, 5);
    assert_eq!(
        f.budget,
        Some(BudgetSpent::EventsPerInstant(o.sim.max_events_per_instant))
    );
    assert!(
        f.message.contains("seed 5 went over its budget of")
            && f.message.contains("events at one virtual instant"),
        "{}",
        f.message
    );
    let text = report.to_string();
    assert!(
        text.contains("FAILED seed 5")
            && text.contains("over budget:")
            && text.contains("replay 5"),
        "{text}"
    );
    // The replay fails the same way, byte for byte the same message.
    let again = run_once(&w, 5, None, None, &o.sim);
    assert_eq!(again.err().as_deref(), Some(f.message.as_str()));
}

#[test]
fn a_seed_over_its_event_budget_is_a_failure_naming_it() {
    let w = workflow("event-budget", |c| {
        let m = c.add_machine()?;
        c.spawn_node(m, "ticker", ())?;
        loop {
            c.run_for(Duration::from_secs(1))?;
        }
    });
    let mut o = opts("event-budget", 0..1);
    o.sim.max_events = 20_000;
    let (f, _, _) = sweep_budget(&w, o.clone());
    assert_eq!(f.budget, Some(BudgetSpent::Events(20_000)));
    assert!(
        f.message
            .contains("seed 5 went over its event budget of 20000 events")
            && f.message.contains("DISTZERO_MAX_EVENTS"),
        "{}",
        f.message
    );
    let again = run_once(&w, 5, None, None, &o.sim);
    assert_eq!(again.err().as_deref(), Some(f.message.as_str()));
}

#[test]
fn a_seed_that_only_lets_time_pass_is_stopped_by_its_wall_time_budget() {
    let w = workflow("wall-time", |c| loop {
        c.run_for(Duration::from_millis(1))?;
    });
    let mut o = opts("wall-time", 0..1);
    o.sim.seed_timeout = Duration::from_millis(200);
    let (f, report, took) = sweep_budget(&w, o.clone());
    // The failing seed ran twice (the sweep, then its logged replay).
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(
        f.budget,
        Some(BudgetSpent::WallTime(Duration::from_millis(200)))
    );
    assert!(
        f.message
            .contains("seed 5 went over its wall-time budget of 200ms")
            && f.message.contains("DISTZERO_SWEEP_SEED_TIMEOUT"),
        "{}",
        f.message
    );
    assert!(report.to_string().contains("not shrunk"), "{report}");
    // The replay is held to the same budget: it fails instead of hanging.
    let again = run_once(&w, 5, None, None, &o.sim).unwrap_err();
    assert!(
        again.contains("seed 5 went over its wall-time budget"),
        "{again}"
    );
}

/// A node that tosses buggify's coin at start and logs the outcomes.
struct Coins;

impl Node for Coins {
    type Msg = Msg;
    fn on_start(&mut self, ctx: &mut Context<'_, Msg>) {
        let tosses: String = (0..64)
            .map(|_| if ctx.buggify() { '1' } else { '0' })
            .collect();
        tracing::info!(%tosses, "buggify");
    }
    fn on_message(&mut self, _ctx: &mut Context<'_, Msg>, _from: NodeId, _msg: Msg) {}
}

fn coins() -> Workflow {
    let mut registry = Registry::new();
    registry.register("coins", |_: serde_json::Value| Coins);
    Workflow {
        name: "coins".into(),
        registry,
        body: |c| {
            let m = c.add_machine()?;
            c.spawn_node(m, "coins", ())?;
            c.run_for(Duration::from_millis(1234))?;
            Err(distzero::Error::Unsupported("planted failure".into()))
        },
    }
}

fn settings_with(pairs: &[(&str, &str)]) -> Settings {
    Settings::from_pairs(pairs).unwrap()
}

#[test]
fn a_replay_reads_the_sweeps_buggify_and_is_byte_identical() {
    let root = opts("buggify", 0..1).log_root;
    let root_s = root.display().to_string();
    let settings = settings_with(&[
        ("DISTZERO_BUGGIFY", "0.3"),
        ("DISTZERO_LOG_DIR", &root_s),
        ("DISTZERO_LOG_LEVEL", "debug"),
    ]);
    let mut o = SweepOptions::from_settings(&settings).unwrap();
    assert_eq!(o.sim.buggify, 0.3);
    assert_eq!(o.log_root, root);
    o.seeds = 3..4;
    let w = coins();
    let report = sweep(&w, &o, &replay);
    assert_eq!(report.failures.len(), 1, "{report}");
    let f = &report.failures[0];
    // The replay as the CLI does it: its options from the same settings.
    let replay = SweepOptions::from_settings(&settings).unwrap();
    let dir = root.join("replay");
    let again = run_once(&w, f.seed, None, Some(&dir), &replay.sim);
    assert_eq!(again.err().as_deref(), Some(f.message.as_str()));
    assert!(same_tree(&f.log_dir, &dir), "the replay's logs differ");
    // Under another buggify the logs differ: the comparison can fail.
    let other = SweepOptions::from_settings(&settings_with(&[
        ("DISTZERO_LOG_DIR", &root_s),
        ("DISTZERO_LOG_LEVEL", "debug"),
    ]))
    .unwrap();
    let dir2 = root.join("replay-default-buggify");
    let _ = run_once(&w, f.seed, None, Some(&dir2), &other.sim);
    assert!(
        !same_tree(&f.log_dir, &dir2),
        "buggify must show in the logs"
    );
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn the_failure_line_carries_the_simulated_time_of_the_failure() {
    let o = opts("failure-time", 0..1);
    let w = coins();
    let dir = o.log_root.join("run");
    let err = run_once(&w, 1, None, Some(&dir), &o.sim).unwrap_err();
    assert!(err.contains("planted failure"), "{err}");
    let text = std::fs::read_to_string(dir.join("controller.jsonl")).unwrap();
    let line = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        // A workflow's failure line, as in `cargo test simulated`.
        .find(|v| v["message"] == "workflow failed")
        .unwrap_or_else(|| panic!("no failure line in:\n{text}"));
    assert_eq!(line["time"].as_f64(), Some(1.234), "{line}");
    let _ = std::fs::remove_dir_all(o.log_root);
}

/// A seed that fails whatever its nemesis does shrinks to no fault at all,
/// and the report says so.
#[test]
fn a_failure_without_faults_shrinks_to_none_and_says_so() {
    let mut registry = Registry::new();
    registry.register("coins", |_: serde_json::Value| Coins);
    let w = Workflow::new("no-faults-needed", registry, |c| {
        let [a, b] = c.add_machines()?;
        c.spawn_node(a, "coins", ())?;
        c.start_nemesis(Nemesis::on(&[a, b]).max_faults(6))?;
        c.wait_nemesis()?;
        Err(distzero::Error::Unsupported("planted failure".into()))
    });
    let o = opts("no-faults-needed", 0..20);
    let report = sweep(&w, &o, &replay);
    let f = &report.failures[0];
    assert!(
        f.schedules[0].faults() > 0,
        "seed {} drew faults: {report}",
        f.seed
    );
    let (shrunk, _) = f.shrunk.clone().expect("shrunk");
    assert_eq!(shrunk, vec![Schedule::default()], "{report}");
    assert!(
        report
            .to_string()
            .contains("shrunk to no fault at all: the seed fails without its nemesis"),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(o.log_root);
}

/// Fails when its nemesis crashed a machine: on seeds below 6 only with
/// two crashes or more (a schedule that shrinks poorly), on the others
/// with one.
fn crash_counting(c: &mut dyn Cluster) -> Result<()> {
    crash_counting_below(c, 6)
}

/// As [`crash_counting`], with two crashes needed on seeds below 20.
fn crash_counting_late(c: &mut dyn Cluster) -> Result<()> {
    crash_counting_below(c, 20)
}

fn crash_counting_below(c: &mut dyn Cluster, below: u64) -> Result<()> {
    use distzero::nemesis::FaultKind;
    let ms: [MachineId; 3] = c.add_machines()?;
    c.start_nemesis(Nemesis::on(&ms).kinds(&[FaultKind::Crash]).max_faults(6))?;
    c.wait_nemesis()?;
    let crashes = c.nemesis_schedules()[0]
        .steps
        .iter()
        .filter(|s| matches!(s.fault, Fault::Crash(_)))
        .count();
    let needed = if c.seed() < below { 2 } else { 1 };
    assert!(crashes < needed, "{crashes} crashes");
    Ok(())
}

/// Stopping at the first failure, a sweep gathers a few candidates and
/// reports the one that shrinks smallest; the others are listed.
#[test]
fn the_reported_failure_is_the_candidate_that_shrinks_smallest() {
    let w = Workflow::new("crash-counting", Registry::new(), crash_counting);
    let mut o = opts("candidates", 0..40);
    o.jobs = 1;
    let report = sweep(&w, &o, &replay);
    let f = &report.failures[0];
    let (shrunk, _) = f.shrunk.clone().expect("shrunk");
    let first = *report.also_failing.iter().min().expect("other candidates");
    assert!(first < 6 && first < f.seed, "{report}");
    assert!(f.seed >= 6, "{report}");
    assert_eq!(shrunk[0].faults(), 1, "{report}");
    assert!(
        report.to_string().contains("also failing: seeds "),
        "{report}"
    );
    // One candidate only: the first failure, shrunk to its two crashes.
    o.candidates = 1;
    let one = sweep(&w, &o, &replay);
    let f1 = &one.failures[0];
    assert_eq!(f1.seed, first, "{one}");
    assert_eq!(
        f1.shrunk.as_ref().expect("shrunk").0[0].faults(),
        2,
        "{one}"
    );
    assert!(one.also_failing.is_empty(), "{one}");
    let _ = std::fs::remove_dir_all(o.log_root);
}

/// While every candidate shrinks to more faults than the goal, the sweep
/// gathers and shrinks more; once one is small enough, it stops.
#[test]
fn a_sweep_looks_further_while_no_candidate_is_small_enough() {
    let w = Workflow::new("crash-counting-late", Registry::new(), crash_counting_late);
    let mut o = opts("goal", 0..400);
    o.jobs = 1;
    o.candidates = 2;
    o.shrink_goal = 1;
    let report = sweep(&w, &o, &replay);
    let f = &report.failures[0];
    assert!(f.seed >= 20, "{report}");
    assert_eq!(
        f.shrunk.as_ref().expect("shrunk").0[0].faults(),
        1,
        "{report}"
    );
    // The seeds below 20 that failed were shrunk first, in vain.
    assert!(report.also_failing.iter().any(|&s| s < 20), "{report}");
    // Two faults are small enough: the first round's best is reported.
    o.shrink_goal = 2;
    let report = sweep(&w, &o, &replay);
    let f = &report.failures[0];
    assert!(f.seed < 20, "{report}");
    assert_eq!(
        f.shrunk.as_ref().expect("shrunk").0[0].faults(),
        2,
        "{report}"
    );
    assert!(report.ran < 60, "{report}");
    let _ = std::fs::remove_dir_all(o.log_root);
}

/// Keeping going, a sweep runs every seed and reports every failure.
#[test]
fn keep_going_runs_every_seed() {
    let w = Workflow::new("crash-counting", Registry::new(), crash_counting);
    let mut o = opts("keep-going", 0..60);
    o.stop_at_first = false;
    let report = sweep(&w, &o, &replay);
    assert_eq!(report.ran, 60, "{report}");
    assert!(report.failures.len() > 6, "{report}");
    let seeds: Vec<u64> = report.failures.iter().map(|f| f.seed).collect();
    let mut sorted = seeds.clone();
    sorted.sort_unstable();
    assert_eq!(seeds, sorted, "{report}");
    assert!(report.failures[0].shrunk.is_some(), "the first is shrunk");
    assert!(report.failures[1..].iter().all(|f| f.shrunk.is_none()));
    let _ = std::fs::remove_dir_all(o.log_root);
}
