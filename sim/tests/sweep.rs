//! Seed sweeps find a planted bug, pass the correct version, shrink the
//! failing schedule, shard, and check determinism.

use distzero::{Cluster, Context, MachineId, Node, NodeId, Registry, Result, TimerId};
use distzero_sim::nemesis::Fault;
use distzero_sim::sweep::{run_once, schedule_for, sweep, Scenario, SweepOptions};
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
                    let _ = ctx.disk().put("v", &self.value);
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

struct Durability {
    lazy: bool,
}

impl Scenario for Durability {
    fn name(&self) -> &str {
        if self.lazy {
            "counter-lazy-fsync"
        } else {
            "counter"
        }
    }
    fn registry(&self) -> Registry {
        let mut r = Registry::new();
        let lazy = self.lazy;
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
    fn machines(&self) -> u32 {
        3
    }
    fn fault_window(&self) -> Duration {
        Duration::from_millis(600)
    }
    fn setup(&self, c: &mut dyn Cluster) -> Result<Vec<MachineId>> {
        let ms: [MachineId; 3] = c.add_machines()?;
        Ok(ms.to_vec())
    }
    fn start(&self, c: &mut dyn Cluster, machines: &[MachineId]) -> Result<()> {
        let counters: Vec<NodeId> = machines
            .iter()
            .map(|&m| c.spawn_node(m, "counter", ()))
            .collect::<Result<_>>()?;
        let client_machine = c.add_machine()?;
        c.spawn_node(client_machine, "client", &counters)?;
        Ok(())
    }
    fn check(&self, c: &mut dyn Cluster, machines: &[MachineId]) -> Result<()> {
        c.run_for(Duration::from_millis(50))?;
        // The client is the only node of the machine added after the counters.
        let client = NodeId::new(MachineId(machines.len() as u32), 0);
        let Msg::Acks(acked, regression) = c.call(client, &Msg::Get, Duration::from_secs(1))?
        else {
            panic!("client reply")
        };
        if let Some((i, before, after)) = regression {
            panic!("counter {i} acknowledged {before}, then acknowledged {after} again: an acknowledged increment was lost");
        }
        for (i, &m) in machines.iter().enumerate() {
            let counter = NodeId::new(m, 0);
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

#[test]
fn a_sweep_finds_the_planted_bug_and_shrinks_its_schedule() {
    let report = sweep(&Durability { lazy: true }, &opts("found", 0..200), &|s| {
        format!("replay {s}")
    });
    eprintln!("{report}");
    assert_eq!(report.failures.len(), 1, "{report}");
    let f = &report.failures[0];
    assert!(f.message.contains("acknowledged"), "{}", f.message);
    assert!(
        f.log_dir.join("m0.jsonl").exists(),
        "full logs of the failing seed"
    );
    let (shrunk, msg) = f.shrunk.clone().expect("shrunk");
    assert!(!msg.is_empty());
    assert!(shrunk.steps.len() <= f.schedule.steps.len());
    assert!(
        shrunk
            .steps
            .iter()
            .any(|s| matches!(s.fault, Fault::Crash(_))),
        "a crash is needed: {shrunk:?}"
    );
    // The shrunk schedule replays: same seed, same failure.
    assert!(run_once(&Durability { lazy: true }, f.seed, &shrunk, None).is_err());
    let text = report.to_string();
    assert!(
        text.contains(&format!("FAILED seed {}", f.seed)) && text.contains("Schedule::new(vec!["),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(opts("found", 0..1).log_root);
}

#[test]
fn the_correct_version_survives_the_same_sweep() {
    let report = sweep(
        &Durability { lazy: false },
        &opts("correct", 0..200),
        &|s| format!("replay {s}"),
    );
    assert!(report.passed(), "{report}");
    assert_eq!(report.ran, 200);
}

#[test]
fn shards_split_seeds_and_determinism_is_checked() {
    let mut o = opts("shards", 0..10);
    o.shard = Some((1, 3));
    o.check_determinism = true;
    o.stop_at_first = false;
    let report = sweep(&Durability { lazy: false }, &o, &|s| format!("replay {s}"));
    assert_eq!(report.ran, 3, "seeds 1, 4, 7");
    assert!(report.nondeterministic.is_empty(), "{report}");
    assert_eq!(
        schedule_for(&Durability { lazy: false }, 4),
        schedule_for(&Durability { lazy: false }, 4)
    );
    let _ = std::fs::remove_dir_all(o.log_root);
}
