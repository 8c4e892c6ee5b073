//! Histories that survive the nemesis: what a node records with
//! `ctx.record` is kept outside its machine, so a crash of the client's
//! machine loses nothing already recorded, and `c.history()` reads it in
//! simulation (logs off and on) and through real agents on 127.0.0.1; and
//! the history is bounded, failing with a message that names the limit.

use distzero::check::history::read_history_dir;
use distzero::history::{History, Op, OpKind, Value, F, MAX_OP_BYTES};
use distzero::loopback::LoopbackProvider;
use distzero::remote::{new_run_id, run_log_dir, RemoteCluster};
use distzero::sim::{SimCluster, SimConfig};
use distzero::{
    millis, secs, Cluster, Context, Error, Mode, Node, NodeId, Registry, Result, Settings, TimerId,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Records a completed write every `every_ms` (invoke and ok at one
/// instant), as process `process`, from its start on; its count is in
/// memory (a crash resets it). Told `Big`, it records one op larger than
/// [`MAX_OP_BYTES`].
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RecorderConfig {
    process: u64,
    every_ms: u64,
}

#[derive(Serialize, Deserialize, Debug)]
enum Msg {
    Big,
}

struct Recorder {
    cfg: RecorderConfig,
    n: i64,
}

impl Node for Recorder {
    type Msg = Msg;

    fn on_start(&mut self, ctx: &mut Context<'_, Msg>) {
        ctx.set_timer(millis(self.cfg.every_ms), 0);
    }

    fn on_message(&mut self, ctx: &mut Context<'_, Msg>, _from: NodeId, msg: Msg) {
        match msg {
            Msg::Big => {
                let value = "x".repeat(MAX_OP_BYTES);
                ctx.record(Op::invoke(
                    self.cfg.process,
                    F::Write,
                    Some("k"),
                    value,
                    ctx.now(),
                ));
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, Msg>, _t: TimerId, _tag: u64) {
        self.n += 1;
        let invoke = Op::invoke(self.cfg.process, F::Write, Some("k"), self.n, ctx.now());
        ctx.record(invoke.clone());
        ctx.record(invoke.completion(OpKind::Ok, self.n, ctx.now()));
        ctx.set_timer(millis(self.cfg.every_ms), 0);
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("recorder", |cfg: RecorderConfig| Recorder { cfg, n: 0 });
    r
}

/// A recorder machine (process 1, every 10 ms) and a bystander machine.
fn recorder(c: &mut dyn Cluster) -> Result<NodeId> {
    let [m, _other] = c.add_machines()?;
    c.spawn_node(
        m,
        "recorder",
        RecorderConfig {
            process: 1,
            every_ms: 10,
        },
    )
}

fn writes(h: &History) -> Vec<Value> {
    h.ops()
        .iter()
        .filter(|o| o.kind == OpKind::Ok)
        .map(|o| o.value.clone())
        .collect()
}

// ------------------------------------------------------------- simulation

fn sim(seed: u64, log_dir: Option<PathBuf>, max_history_ops: Option<usize>) -> SimCluster {
    let mut cfg = SimConfig::new(seed, registry());
    cfg.log_level = log_dir.as_ref().map(|_| tracing::Level::INFO);
    cfg.log_dir = log_dir;
    if let Some(limit) = max_history_ops {
        cfg.max_history_ops = limit;
    }
    SimCluster::new(cfg).unwrap()
}

/// Ticks at 10, 20, …, 100 ms, then the crash at 105 ms: exactly those ten
/// writes (twenty ops), none after, and the new life's after the restart.
fn crash_body(c: &mut dyn Cluster) -> Result<()> {
    let n = recorder(c)?;
    assert!(c.history()?.is_empty());
    c.run_for(millis(105))?;
    c.crash(n.machine)?;
    let before = c.history()?;
    assert_eq!(before.len(), 20, "{:?}", before.ops());
    assert_eq!(
        writes(&before),
        (1..=10).map(Value::Int).collect::<Vec<_>>()
    );
    assert!(before.ops().iter().all(|o| o.time <= millis(100)));
    assert!(before.ops().iter().all(|o| o.process == 1));
    assert_eq!(before.calls()?.len(), 10);

    c.run_for(millis(100))?;
    assert_eq!(
        c.history()?,
        before,
        "nothing recorded while down, nothing lost"
    );

    c.restart(n.machine)?;
    c.run_for(millis(35))?;
    let after = c.history()?;
    assert_eq!(&after.ops()[..20], before.ops(), "the history only grows");
    // The new life counts from 1 again, from its start at 205 ms.
    assert_eq!(writes(&after)[10..], [1, 2, 3].map(Value::Int));
    assert_eq!(after.ops()[20].time, millis(215));
    Ok(())
}

#[test]
fn simulated_history_survives_a_client_crash_with_logs_off() {
    let mut c = sim(1, None, None);
    crash_body(&mut c).unwrap();
}

#[test]
fn simulated_history_survives_a_client_crash_with_logs_on() {
    let dir = std::env::temp_dir().join(format!("distzero-histories-{}", std::process::id()));
    let mut c = sim(1, Some(dir.clone()), None);
    crash_body(&mut c).unwrap();
    let kept = c.history().unwrap();
    c.shutdown().unwrap();
    drop(c);
    // Every op is also logged, where its node runs, as before.
    let logged = read_history_dir(&dir).unwrap();
    assert_eq!(logged, kept);
    assert_eq!(
        distzero::check::history::read_history_file(&dir.join("m0.jsonl"))
            .unwrap()
            .len(),
        kept.len()
    );
    // Same seed, same bytes.
    let again = dir.with_extension("again");
    let mut c = sim(1, Some(again.clone()), None);
    crash_body(&mut c).unwrap();
    c.shutdown().unwrap();
    drop(c);
    assert!(distzero::sim::sweep::same_tree(&dir, &again));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&again);
}

#[test]
fn simulated_history_past_its_limit_fails_naming_it() {
    let mut c = sim(2, None, Some(15));
    recorder(&mut c).unwrap();
    c.run_for(millis(75)).unwrap(); // 14 ops
    assert_eq!(c.history().unwrap().len(), 14);
    c.run_for(millis(30)).unwrap(); // 6 more: one fits
    let e = c.history().unwrap_err();
    assert!(matches!(e, Error::Budget(_)), "{e:?}");
    let e = e.to_string();
    assert!(
        e.starts_with("the run's history went over its limit of 15 ops: m0.n0 recorded op #16"),
        "{e}"
    );
    assert!(e.ends_with("(5 ops refused in all)"), "{e}");
}

#[test]
fn simulated_op_over_the_size_limit_fails_the_history() {
    let mut sim = sim(3, None, None);
    let c: &mut dyn Cluster = &mut sim;
    let n = recorder(c).unwrap();
    c.send(n, &Msg::Big).unwrap();
    c.run_for(millis(50)).unwrap();
    let e = c.history().unwrap_err().to_string();
    assert!(
        e.starts_with("m0.n0 recorded an op of ")
            && e.contains("over the limit of 65536 bytes per op (distzero::history::MAX_OP_BYTES)"),
        "{e}"
    );
}

// ------------------------------------------------------------- loopback

const COOKIE: &str = "histories-test-cookie-0123456789abcdef";

fn loopback(test: &str, log_level: &str) -> (RemoteCluster, PathBuf) {
    let mut s = Settings::load().expect("settings");
    s.set("DISTZERO_COOKIE", COOKIE).unwrap();
    s.set("DISTZERO_AGENT_ORPHAN_SECS", "5").unwrap();
    s.set("DISTZERO_LOG_LEVEL", log_level).unwrap();
    let run_id = new_run_id();
    let dir = run_log_dir(&s, test, Mode::Loopback, &run_id);
    let p = LoopbackProvider::new(registry(), &dir, &s).unwrap();
    let c = RemoteCluster::with_run(Box::new(p), test, &run_id, &dir, &s).unwrap();
    (c, dir)
}

/// The same through real agents: records reach the controller over the
/// control connection; a crash of the recorder's agent loses none of them.
fn loopback_crash_body(c: &mut dyn Cluster) -> Result<()> {
    let n = recorder(c)?;
    c.run_until(secs(10), |c| Ok(c.history()?.len() >= 10))?;
    c.crash(n.machine)?;
    let before = c.history()?;
    assert!(before.len() >= 10);
    // Every write of the first life, in order, each invoked and completed.
    let w = writes(&before);
    assert_eq!(w, (1..=w.len() as i64).map(Value::Int).collect::<Vec<_>>());
    assert!(before.calls()?.len() >= 5);

    c.run_for(millis(300))?;
    assert_eq!(
        c.history()?,
        before,
        "nothing recorded while down, nothing lost"
    );

    c.restart(n.machine)?;
    c.run_until(secs(10), |c| Ok(c.history()?.len() >= before.len() + 4))?;
    let after = c.history()?;
    assert_eq!(
        &after.ops()[..before.len()],
        before.ops(),
        "the history only grows"
    );
    assert_eq!(
        writes(&after)[w.len()],
        Value::Int(1),
        "the new life counts anew"
    );
    Ok(())
}

#[test]
fn loopback_history_survives_a_client_crash_with_logs_off() {
    let (mut c, _dir) = loopback("loopback_history_survives_a_client_crash_logs_off", "off");
    loopback_crash_body(&mut c).unwrap();
    c.shutdown().unwrap();
}

#[test]
fn loopback_history_survives_a_client_crash_with_logs_on() {
    let (mut c, dir) = loopback("loopback_history_survives_a_client_crash_logs_on", "info");
    loopback_crash_body(&mut c).unwrap();
    let kept = c.history().unwrap();
    c.shutdown().unwrap();
    // The agents logged every op (both lives of m0: `m0.boot1.jsonl` and
    // `m0.jsonl`); the controller logged none of them again.
    // The log holds more: what the new life recorded after the last look,
    // and maybe an op logged by the dying agent whose report the crash cut.
    let logged = read_history_dir(&dir).unwrap();
    let mut rest = logged.ops().iter();
    for op in kept.ops() {
        assert!(
            rest.any(|l| l == op),
            "{op} is in the history but not in the logs (in this order)"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn loopback_history_bounds_fail_naming_the_limit() {
    let (mut cluster, dir) = loopback("loopback_history_bounds_fail_naming_the_limit", "off");
    cluster.set_max_history_ops(6);
    let c: &mut dyn Cluster = &mut cluster;
    recorder(c).unwrap();
    c.run_until(secs(10), |c| Ok(c.history().is_err())).unwrap();
    let e = c.history().unwrap_err();
    assert!(matches!(e, Error::Budget(_)), "{e:?}");
    let e = e.to_string();
    assert!(
        e.starts_with("the run's history went over its limit of 6 ops: m0.n0 recorded op #7"),
        "{e}"
    );
    c.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    // An op too large for the history fails it at the agent, before the wire.
    let (mut cluster, dir) = loopback("loopback_history_bounds_fail_naming_the_limit", "off");
    let c: &mut dyn Cluster = &mut cluster;
    let m = c.add_machine().unwrap();
    let big = c
        .spawn_node(
            m,
            "recorder",
            RecorderConfig {
                process: 2,
                every_ms: 1_000_000,
            },
        )
        .unwrap();
    c.send(big, &Msg::Big).unwrap();
    c.run_until(secs(10), |c| Ok(c.history().is_err())).unwrap();
    let e = c.history().unwrap_err().to_string();
    assert!(
        e.starts_with("m0.n0 recorded an op of ")
            && e.contains("over the limit of 65536 bytes per op (distzero::history::MAX_OP_BYTES)"),
        "{e}"
    );
    c.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
