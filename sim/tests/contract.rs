//! The delivery contract and the fault model of the simulator, checked with a
//! small probe node defined here.

use distzero::{
    Cluster, Context, Error, Latency, Link, MachineId, Node, NodeId, Registry, TimerId,
};
use distzero_sim::{SimCluster, SimConfig};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Msg {
    /// From the test: send `count` numbered Data messages to `to`.
    Fire {
        to: NodeId,
        count: u64,
    },
    Data {
        seq: u64,
    },
    /// From the test: set a timer.
    Arm {
        after_ms: u64,
    },
    Query,
    Report {
        got: Vec<(NodeId, u64)>,
        fired_at: Vec<u64>,
        started_at: u64,
        disk: Option<u64>,
        got_at: Vec<u64>,
    },
    Ok,
}

#[derive(Default)]
struct Probe {
    got: Vec<(NodeId, u64)>,
    /// When each of `got` arrived (virtual ns).
    got_at: Vec<u64>,
    fired_at: Vec<u64>,
    started_at: u64,
}

impl Node for Probe {
    type Msg = Msg;
    fn on_start(&mut self, ctx: &mut Context<'_, Msg>) {
        self.started_at = ctx.now().as_nanos() as u64;
        let boots: u64 = ctx.disk().get("boots").unwrap().unwrap_or(0);
        ctx.disk().put_synced("boots", &(boots + 1)).unwrap();
    }
    fn on_message(&mut self, ctx: &mut Context<'_, Msg>, from: NodeId, msg: Msg) {
        match msg {
            Msg::Fire { to, count } => {
                for seq in 0..count {
                    ctx.send(to, Msg::Data { seq });
                }
                ctx.send(from, Msg::Ok);
            }
            Msg::Data { seq } => {
                self.got.push((from, seq));
                self.got_at.push(ctx.now().as_nanos() as u64);
            }
            Msg::Arm { after_ms } => {
                ctx.set_timer(Duration::from_millis(after_ms), after_ms);
                ctx.send(from, Msg::Ok);
            }
            Msg::Query => {
                let disk = ctx.disk().get("boots").unwrap();
                let r = Msg::Report {
                    got: self.got.clone(),
                    fired_at: self.fired_at.clone(),
                    started_at: self.started_at,
                    disk,
                    got_at: self.got_at.clone(),
                };
                ctx.send(from, r);
            }
            Msg::Report { .. } | Msg::Ok => {}
        }
    }
    fn on_timer(&mut self, ctx: &mut Context<'_, Msg>, _t: TimerId, _tag: u64) {
        self.fired_at.push(ctx.now().as_nanos() as u64);
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("probe", |_: serde_json::Value| Probe::default());
    r
}

fn cluster(seed: u64) -> SimCluster {
    SimCluster::new(SimConfig::new(seed, registry())).unwrap()
}

const T: Duration = Duration::from_secs(1);

fn setup(c: &mut dyn Cluster, n: usize) -> Vec<NodeId> {
    (0..n)
        .map(|_| {
            let m = c.add_machine().unwrap();
            c.spawn_node(m, "probe", serde_json::json!({})).unwrap()
        })
        .collect()
}

fn fire(c: &mut dyn Cluster, from: NodeId, to: NodeId, count: u64) {
    let r: Msg = c.call(from, &Msg::Fire { to, count }, T).unwrap();
    assert_eq!(r, Msg::Ok);
}

/// What a probe saw: messages (sender, seq), timer fire times, start time,
/// boots on disk, arrival time of each message.
type Seen = (Vec<(NodeId, u64)>, Vec<u64>, u64, Option<u64>, Vec<u64>);

fn report(c: &mut dyn Cluster, n: NodeId) -> Seen {
    match c.call(n, &Msg::Query, T).unwrap() {
        Msg::Report {
            got,
            fired_at,
            started_at,
            disk,
            got_at,
        } => (got, fired_at, started_at, disk, got_at),
        other => panic!("unexpected {other:?}"),
    }
}

fn seqs(got: &[(NodeId, u64)]) -> Vec<u64> {
    got.iter().map(|g| g.1).collect()
}

#[test]
fn in_order_per_pair_under_random_latency() {
    let mut sim = cluster(1);
    let c: &mut dyn Cluster = &mut sim;
    let n = setup(c, 2);
    c.set_all_links(Link {
        latency: Latency::Uniform {
            min: Duration::from_micros(10),
            max: Duration::from_millis(30),
        },
        loss: 0.0,
    })
    .unwrap();
    fire(c, n[0], n[1], 500);
    c.run_for(Duration::from_secs(1)).unwrap();
    let (got, ..) = report(c, n[1]);
    assert_eq!(
        seqs(&got),
        (0..500).collect::<Vec<_>>(),
        "every message, in order, exactly once"
    );
}

#[test]
fn loss_drops_some_and_never_duplicates_or_reorders() {
    let mut sim = cluster(2);
    let c: &mut dyn Cluster = &mut sim;
    let n = setup(c, 2);
    c.set_link(MachineId(0), MachineId(1), Link::default().with_loss(0.3))
        .unwrap();
    fire(c, n[0], n[1], 1000);
    c.run_for(Duration::from_secs(1)).unwrap();
    let s = seqs(&report(c, n[1]).0);
    assert!(
        s.len() > 500 && s.len() < 900,
        "about 30% lost, got {}",
        s.len()
    );
    assert!(s.windows(2).all(|w| w[0] < w[1]), "at most once, in order");
}

#[test]
fn one_way_cut_heal_and_partition() {
    let mut sim = cluster(3);
    let c: &mut dyn Cluster = &mut sim;
    let n = setup(c, 3);
    c.cut(MachineId(0), MachineId(1)).unwrap();
    fire(c, n[0], n[1], 10);
    fire(c, n[1], n[0], 10);
    c.run_for(Duration::from_millis(100)).unwrap();
    assert!(
        report(c, n[1]).0.is_empty(),
        "cut direction delivers nothing"
    );
    assert_eq!(
        report(c, n[0]).0.len(),
        10,
        "the other direction still works"
    );
    c.heal(MachineId(0), MachineId(1)).unwrap();
    fire(c, n[0], n[1], 10);
    c.run_for(Duration::from_millis(100)).unwrap();
    assert_eq!(report(c, n[1]).0.len(), 10);

    c.partition(&[&[MachineId(0)], &[MachineId(1), MachineId(2)]])
        .unwrap();
    fire(c, n[2], n[0], 5);
    fire(c, n[2], n[1], 5);
    c.run_for(Duration::from_millis(100)).unwrap();
    assert_eq!(report(c, n[0]).0.len(), 10, "m0 is on the other side");
    assert_eq!(report(c, n[1]).0.len(), 15, "m1 shares m2's side");
    c.heal_all().unwrap();
    fire(c, n[2], n[0], 5);
    c.run_for(Duration::from_millis(100)).unwrap();
    assert_eq!(report(c, n[0]).0.len(), 15);
}

#[test]
fn hold_queues_until_release_and_loses_nothing() {
    let mut sim = cluster(4);
    let c: &mut dyn Cluster = &mut sim;
    let n = setup(c, 2);
    c.hold(MachineId(0), MachineId(1)).unwrap();
    fire(c, n[0], n[1], 20);
    c.run_for(Duration::from_secs(2)).unwrap();
    assert!(report(c, n[1]).0.is_empty());
    c.release(MachineId(0), MachineId(1)).unwrap();
    c.run_for(Duration::from_millis(100)).unwrap();
    assert_eq!(seqs(&report(c, n[1]).0), (0..20).collect::<Vec<_>>());
}

#[test]
fn crash_loses_memory_keeps_disk_and_restart_starts_from_spec() {
    let mut sim = cluster(5);
    let c: &mut dyn Cluster = &mut sim;
    let n = setup(c, 2);
    fire(c, n[0], n[1], 5);
    c.run_for(Duration::from_millis(100)).unwrap();
    assert_eq!(report(c, n[1]).0.len(), 5);
    c.crash(MachineId(1)).unwrap();
    let e = c.call::<_, Msg>(n[1], &Msg::Query, T).unwrap_err();
    assert!(
        matches!(e, Error::Timeout { .. }),
        "a crashed machine does not answer: {e}"
    );
    fire(c, n[0], n[1], 5);
    c.run_for(Duration::from_millis(100)).unwrap();
    let before = c.now();
    c.restart(MachineId(1)).unwrap();
    let (got, _, started_at, boots, _) = report(c, n[1]);
    assert!(
        got.is_empty(),
        "memory is lost, and messages sent while down are lost"
    );
    assert!(
        started_at >= before.as_nanos() as u64,
        "on_start ran again after restart"
    );
    assert_eq!(boots, Some(2), "the disk survives the crash");
}

#[test]
fn pause_delays_messages_and_timers_until_resume() {
    let mut sim = cluster(6);
    let c: &mut dyn Cluster = &mut sim;
    let n = setup(c, 2);
    let _: Msg = c.call(n[1], &Msg::Arm { after_ms: 100 }, T).unwrap();
    c.pause(MachineId(1)).unwrap();
    fire(c, n[0], n[1], 3);
    c.run_for(Duration::from_millis(500)).unwrap();
    let resumed = c.now().as_nanos() as u64;
    c.resume(MachineId(1)).unwrap();
    let (got, fired, _, _, got_at) = report(c, n[1]);
    assert_eq!(
        seqs(&got),
        vec![0, 1, 2],
        "parked messages delivered after resume"
    );
    assert!(
        got_at.iter().all(|&t| t >= resumed),
        "no message was handled while paused (resumed at {resumed}): {got_at:?}"
    );
    assert_eq!(fired.len(), 1);
    assert!(fired[0] >= resumed, "the timer fired only after resume");
}

#[test]
fn timers_fire_at_the_exact_simulated_time() {
    let mut sim = cluster(7);
    let c: &mut dyn Cluster = &mut sim;
    let n = setup(c, 1);
    c.set_all_links(Link::fixed(Duration::from_millis(1)))
        .unwrap();
    let _: Msg = c.call(n[0], &Msg::Arm { after_ms: 250 }, T).unwrap();
    c.run_for(Duration::from_secs(1)).unwrap();
    let (_, fired, ..) = report(c, n[0]);
    // The Arm message reached the node 0.5..1.5 ms after t=0 (controller link).
    assert_eq!(fired.len(), 1);
    let at = Duration::from_nanos(fired[0]);
    assert!(
        at >= Duration::from_micros(250_500) && at <= Duration::from_micros(251_500),
        "fired at {at:?}"
    );
}

#[test]
fn opt_in_reorder_and_duplicate_are_hostile() {
    let mut cfg = SimConfig::new(8, registry());
    cfg.reorder = true;
    cfg.duplicate = 0.2;
    cfg.default_link = Link {
        latency: Latency::Uniform {
            min: Duration::from_micros(10),
            max: Duration::from_millis(30),
        },
        loss: 0.0,
    };
    let mut sim = SimCluster::new(cfg).unwrap();
    let c: &mut dyn Cluster = &mut sim;
    let n = setup(c, 2);
    fire(c, n[0], n[1], 200);
    c.run_for(Duration::from_secs(1)).unwrap();
    let s = seqs(&report(c, n[1]).0);
    assert!(s.windows(2).any(|w| w[0] > w[1]), "some reordering");
    assert!(s.len() > 200, "some duplicates: {}", s.len());
}

#[test]
fn bad_requests_get_clear_errors() {
    let mut sim = cluster(9);
    let c: &mut dyn Cluster = &mut sim;
    let m = c.add_machine().unwrap();
    let e = c
        .spawn_node(m, "nope", serde_json::json!({}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope") && e.contains("probe"), "{e}");
    let e = c
        .call::<_, Msg>(NodeId::new(m, 4), &Msg::Query, T)
        .unwrap_err();
    assert!(matches!(e, Error::NoSuchNode(_)), "{e}");
    let e = c.crash(MachineId(9)).unwrap_err();
    assert!(matches!(e, Error::NoSuchMachine(_)), "{e}");
    let e = c
        .set_link(m, m, Link::default().with_loss(1.5))
        .unwrap_err()
        .to_string();
    assert!(e.contains("loss"), "{e}");
}

#[test]
fn run_until_gives_up_with_an_error() {
    let mut sim = cluster(10);
    let c: &mut dyn Cluster = &mut sim;
    let e = c
        .run_until(Duration::from_secs(2), |_| Ok(false))
        .unwrap_err();
    assert!(
        matches!(e, Error::ConditionTimeout(d) if d == Duration::from_secs(2)),
        "{e}"
    );
    assert!(c.now() >= Duration::from_secs(2));
}

/// A liveness requirement that never holds fails as liveness, naming what
/// and when the nemesis had healed everything; one that holds passes.
#[test]
fn eventually_fails_as_liveness_naming_what_and_since_when() {
    use distzero::nemesis::{Nemesis, Schedule};
    let mut sim = cluster(10);
    let c: &mut dyn Cluster = &mut sim;
    let m = c.add_machine().unwrap();
    c.start_nemesis(
        Nemesis::on(&[m])
            .window(Duration::from_millis(300))
            .schedule(Schedule::default()),
    )
    .unwrap();
    c.wait_nemesis().unwrap();
    let e = c
        .eventually(Duration::from_secs(1), "a leader is elected", |_| Ok(false))
        .unwrap_err();
    assert!(matches!(e, Error::Liveness { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "liveness: a leader is elected did not hold within 1s after the nemesis healed everything at 300ms"
    );
    let start = c.now();
    c.eventually(Duration::from_secs(1), "time passes", |c| {
        Ok(c.now() >= start + Duration::from_millis(100))
    })
    .unwrap();
}

/// `buggify()` is sometimes true in simulation, at the configured rate, and
/// the same seed gives the same answers.
#[test]
fn buggify_is_seeded_and_sometimes_true() {
    struct Flaky(Vec<bool>);
    impl Node for Flaky {
        type Msg = Vec<bool>;
        fn on_message(&mut self, ctx: &mut Context<'_, Vec<bool>>, from: NodeId, _m: Vec<bool>) {
            self.0 = (0..1000).map(|_| ctx.buggify()).collect();
            let v = self.0.clone();
            ctx.send(from, v);
        }
    }
    let run = |seed: u64, p: f64| -> Vec<bool> {
        let mut r = Registry::new();
        r.register("flaky", |_: serde_json::Value| Flaky(Vec::new()));
        let mut cfg = SimConfig::new(seed, r);
        cfg.buggify = p;
        let mut sim = SimCluster::new(cfg).unwrap();
        let c: &mut dyn Cluster = &mut sim;
        let m = c.add_machine().unwrap();
        let n = c.spawn_node(m, "flaky", serde_json::json!({})).unwrap();
        c.call(n, &Vec::<bool>::new(), T).unwrap()
    };
    let a = run(1, 0.05);
    let hits = a.iter().filter(|b| **b).count();
    assert!((20..=90).contains(&hits), "about 5% true, got {hits}/1000");
    let half = run(1, 0.5).iter().filter(|b| **b).count();
    assert!(
        (400..=600).contains(&half),
        "about 50% true, got {half}/1000"
    );
    assert_eq!(a, run(1, 0.05), "same seed, same faults");
    assert_ne!(a, run(2, 0.05), "another seed, other faults");
    assert!(
        run(1, 0.0).iter().all(|b| !b),
        "off when its probability is 0"
    );
}
