//! Determinism, proven: one seed gives byte-identical logs; another seed a
//! different interleaving. Also: a failure prints its seed and replay command.

use distzero::{Cluster, Context, Latency, Link, Node, NodeId, Registry};
use distzero_sim::try_workflow;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
enum Gossip {
    Peers(Vec<NodeId>),
    Rumor(u64),
}

#[derive(Default)]
struct Gossiper {
    peers: Vec<NodeId>,
    seen: u64,
}

impl Node for Gossiper {
    type Msg = Gossip;
    fn on_start(&mut self, ctx: &mut Context<'_, Gossip>) {
        ctx.set_timer(Duration::from_millis(5), 0);
    }
    fn on_message(&mut self, _ctx: &mut Context<'_, Gossip>, from: NodeId, msg: Gossip) {
        match msg {
            Gossip::Peers(p) => self.peers = p,
            Gossip::Rumor(n) => {
                self.seen += 1;
                tracing::info!(%from, rumor = n, seen = self.seen, "rumor");
            }
        }
    }
    fn on_timer(&mut self, ctx: &mut Context<'_, Gossip>, _t: distzero::TimerId, _tag: u64) {
        if !self.peers.is_empty() {
            let i = ctx.rng().gen_range(0..self.peers.len());
            let v = ctx.rng().gen::<u32>() as u64;
            ctx.send(self.peers[i], Gossip::Rumor(v));
        }
        let jitter = ctx.rng().gen_range(1..10);
        ctx.set_timer(Duration::from_millis(jitter), 0);
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("gossiper", |_: serde_json::Value| Gossiper::default());
    r
}

fn workload(c: &mut dyn Cluster) -> distzero::Result<()> {
    let ms: [_; 5] = c.add_machines()?;
    let nodes: Vec<NodeId> = ms
        .iter()
        .map(|&m| c.spawn_node(m, "gossiper", serde_json::json!({})))
        .collect::<Result<_, _>>()?;
    c.set_all_links(Link {
        latency: Latency::Exponential {
            min: Duration::from_micros(200),
            mean: Duration::from_millis(2),
        },
        loss: 0.05,
    })?;
    for &n in &nodes {
        c.send(n, &Gossip::Peers(nodes.clone()))?;
    }
    c.run_for(Duration::from_millis(300))?;
    c.crash(ms[2])?;
    c.run_for(Duration::from_millis(100))?;
    c.restart(ms[2])?;
    c.send(nodes[2], &Gossip::Peers(nodes.clone()))?;
    c.run_for(Duration::from_millis(300))?;
    Ok(())
}

fn run(seed: u64, dir: &Path) {
    let settings = distzero::Settings::defaults();
    try_workflow(
        "determinism",
        seed,
        Some(dir),
        &settings,
        registry(),
        &workload,
    )
    .unwrap();
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("distzero-det-{}-{name}", std::process::id()))
}

#[test]
fn same_seed_gives_byte_identical_logs_and_another_seed_differs() {
    let (a, b, other) = (tmp("a"), tmp("b"), tmp("other"));
    run(42, &a);
    run(42, &b);
    run(43, &other);
    let fa = files(&a);
    assert!(
        fa.iter().any(|(n, _)| n == "m0.jsonl") && fa.iter().any(|(n, _)| n == "controller.jsonl")
    );
    assert!(
        fa.iter().map(|(_, b)| b.len()).sum::<usize>() > 10_000,
        "the run logged plenty"
    );
    assert_eq!(fa, files(&b), "same seed, same bytes");
    // The machines' own logs, not only the controller's line naming the seed.
    let machines = |f: &[(String, Vec<u8>)]| -> Vec<(String, Vec<u8>)> {
        f.iter()
            .filter(|(n, _)| n.starts_with('m') && n.ends_with(".jsonl"))
            .cloned()
            .collect()
    };
    assert_eq!(machines(&fa).len(), 5, "m0..m4: {fa:?}");
    assert_ne!(
        machines(&fa),
        machines(&files(&other)),
        "another seed, another interleaving"
    );
    // Every line is JSON with the agreed fields.
    for (name, bytes) in fa.iter().filter(|(n, _)| n.ends_with(".jsonl")) {
        for line in String::from_utf8_lossy(bytes).lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}: {line}"));
            for field in ["time", "level", "machine", "node", "message"] {
                assert!(v.get(field).is_some(), "{name}: no `{field}` in {line}");
            }
        }
    }
    for d in [a, b, other] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_failure_reports_seed_log_folder_and_replay_command() {
    let dir = tmp("fail");
    let settings = distzero::Settings::defaults();
    let f = try_workflow(
        "fails_on_purpose",
        7,
        Some(&dir),
        &settings,
        registry(),
        &|c| {
            c.add_machine()?;
            c.run_for(Duration::from_millis(10))?;
            assert_eq!(1 + 1, 3, "the invariant broke");
            Ok(())
        },
    )
    .unwrap_err();
    let text = f.to_string();
    assert!(text.contains("seed 7"), "{text}");
    assert!(text.contains("the invariant broke"), "{text}");
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert!(
        text.contains("DISTZERO_SEED=7 cargo test simulated::fails_on_purpose"),
        "{text}"
    );
    let controller = std::fs::read_to_string(dir.join("controller.jsonl")).unwrap();
    assert!(controller.contains("workflow failed"));
    let _ = std::fs::remove_dir_all(dir);
}
