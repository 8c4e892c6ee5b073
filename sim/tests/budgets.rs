//! Every simulated run is bounded: events per run, events at one virtual
//! instant, events pending at once, and a cancel flag from outside. Going
//! over one is an `Error::Budget` that names it, and the run stays failed.

use distzero::{secs, Cluster, Context, Error, Node, NodeId, Registry, TimerId};
use distzero_sim::{SimCluster, SimConfig, Spent};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// A timer that re-arms itself with no delay.
    ZeroTimer,
    /// Answer every message with two (to `peer`): a storm.
    Storm,
    /// Answer every message with one (to `peer`): a ping-pong.
    Echo,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
struct Config {
    mode: Mode,
    peer: Option<NodeId>,
}

struct Spinner(Config);

impl Node for Spinner {
    type Msg = u8;
    fn on_start(&mut self, ctx: &mut Context<'_, u8>) {
        match (self.0.mode, self.0.peer) {
            (Mode::ZeroTimer, _) => {
                ctx.set_timer(Duration::ZERO, 0);
            }
            (_, Some(p)) => ctx.send(p, 0),
            (_, None) => {}
        }
    }
    fn on_message(&mut self, ctx: &mut Context<'_, u8>, from: NodeId, _m: u8) {
        let to = self.0.peer.unwrap_or(from);
        ctx.send(to, 0);
        if self.0.mode == Mode::Storm {
            ctx.send(to, 0);
        }
    }
    fn on_timer(&mut self, ctx: &mut Context<'_, u8>, _t: TimerId, _tag: u64) {
        ctx.set_timer(Duration::ZERO, 0);
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("spinner", Spinner);
    r
}

fn budget_error(r: distzero::Result<()>) -> String {
    match r {
        Err(Error::Budget(m)) => m,
        other => panic!("expected a budget error, got {other:?}"),
    }
}

#[test]
fn a_zero_delay_timer_loop_is_stopped_at_one_instant() {
    let mut cfg = SimConfig::new(1, registry());
    cfg.max_events_per_instant = 10_000;
    let mut c = SimCluster::new(cfg).unwrap();
    let c: &mut dyn Cluster = &mut c;
    let m = c.add_machine().unwrap();
    c.run_for(secs(1)).unwrap();
    let config = Config {
        mode: Mode::ZeroTimer,
        peer: None,
    };
    c.spawn_node(m, "spinner", config).unwrap();
    let msg = budget_error(c.run_for(secs(3600)));
    assert!(
        msg.contains("more than 10000 events at virtual time 1s"),
        "{msg}"
    );
    assert!(msg.contains("max_events_per_instant"), "{msg}");
    // Time did not run on to the hour asked for, and the run stays failed.
    assert_eq!(c.now(), secs(1));
    assert_eq!(budget_error(c.run_for(secs(1))), msg);
}

#[test]
fn two_nodes_of_one_machine_echoing_forever_are_stopped_too() {
    // Same-machine messages take no link, so no time passes between them.
    let mut cfg = SimConfig::new(2, registry());
    cfg.max_events_per_instant = 5_000;
    let mut sim = SimCluster::new(cfg).unwrap();
    let c: &mut dyn Cluster = &mut sim;
    let m = c.add_machine().unwrap();
    let quiet = Config {
        mode: Mode::Echo,
        peer: None,
    };
    let a = c.spawn_node(m, "spinner", quiet).unwrap();
    let loud = Config {
        mode: Mode::Echo,
        peer: Some(a),
    };
    c.spawn_node(m, "spinner", loud).unwrap();
    let msg = budget_error(c.run_for(secs(1)));
    assert!(msg.contains("without time moving on"), "{msg}");
    assert_eq!(sim.spent(), Some(Spent::EventsPerInstant));
}

#[test]
fn a_message_storm_is_stopped_by_the_pending_bound() {
    let mut cfg = SimConfig::new(3, registry());
    cfg.max_pending = 20_000;
    let mut sim = SimCluster::new(cfg).unwrap();
    let c: &mut dyn Cluster = &mut sim;
    let [a, b] = c.add_machines().unwrap();
    let sink = Config {
        mode: Mode::Storm,
        peer: None,
    };
    let x = c.spawn_node(a, "spinner", sink).unwrap();
    let storm = Config {
        mode: Mode::Storm,
        peer: Some(x),
    };
    c.spawn_node(b, "spinner", storm).unwrap();
    let msg = budget_error(c.run_for(secs(60)));
    assert!(msg.contains("events pending"), "{msg}");
    assert!(msg.contains("max_pending"), "{msg}");
    assert_eq!(sim.spent(), Some(Spent::Pending));
}

#[test]
fn the_event_budget_of_a_run_is_kept() {
    let mut cfg = SimConfig::new(4, registry());
    cfg.max_events = 1_000;
    let mut sim = SimCluster::new(cfg).unwrap();
    let c: &mut dyn Cluster = &mut sim;
    let [a, b] = c.add_machines().unwrap();
    let quiet = Config {
        mode: Mode::Echo,
        peer: None,
    };
    let x = c.spawn_node(a, "spinner", quiet).unwrap();
    let ping = Config {
        mode: Mode::Echo,
        peer: Some(x),
    };
    c.spawn_node(b, "spinner", ping).unwrap();
    let msg = budget_error(c.run_for(secs(60)));
    assert!(msg.contains("1000 events by virtual time"), "{msg}");
    assert_eq!(sim.spent(), Some(Spent::Events));
    assert_eq!(sim.stats().events, 1_000);
    // Well inside the minute asked for (each exchange takes ~1 ms).
    assert!(sim.now() < secs(2), "{:?}", sim.now());
}

#[test]
fn a_cancelled_run_fails_even_with_nothing_to_do() {
    let flag = Arc::new(AtomicBool::new(false));
    let mut cfg = SimConfig::new(5, registry());
    cfg.cancel = Some(flag.clone());
    let mut sim = SimCluster::new(cfg).unwrap();
    let c: &mut dyn Cluster = &mut sim;
    c.add_machine().unwrap();
    c.run_for(secs(1)).unwrap();
    flag.store(true, Ordering::Relaxed);
    let msg = budget_error(c.run_for(secs(1)));
    assert!(msg.contains("cancelled at virtual time 1s"), "{msg}");
    assert_eq!(sim.spent(), Some(Spent::Cancelled));
}
