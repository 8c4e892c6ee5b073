//! The examples beyond the delivery contract: the simulator reorders messages
//! per pair and duplicates some, on top of loss, over many seeds. Retries,
//! request ids and deduplication must still give exact results.

use crate::kv::{self, KvMsg};
use crate::wordcount::{count_words, Pipeline};
use distzero::sim::{SimCluster, SimConfig};
use distzero::{millis, secs, Cluster, Link, NodeId, Result};

const SEEDS: u64 = 40;

fn hostile(seed: u64) -> SimCluster {
    let mut cfg = SimConfig::new(seed, crate::registry());
    cfg.log_dir = None;
    cfg.reorder = true;
    cfg.duplicate = 0.05;
    cfg.default_link = Link::default().with_loss(0.1);
    match SimCluster::new(cfg) {
        Ok(c) => c,
        Err(e) => panic!("seed {seed}: cannot build the cluster: {e}"),
    }
}

fn put(c: &mut dyn Cluster, node: NodeId, id: u64, key: &str, value: &str) -> Result<u64> {
    let req = KvMsg::Put {
        id,
        key: key.into(),
        value: value.into(),
    };
    for _ in 0..30 {
        match c.call::<KvMsg, KvMsg>(node, &req, secs(1)) {
            Ok(KvMsg::PutOk { id: got, index }) if got == id => return Ok(index),
            Ok(_) => {}
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e),
        }
        c.run_for(millis(100))?;
    }
    panic!("put #{id} never acknowledged");
}

fn get(c: &mut dyn Cluster, node: NodeId, key: &str) -> Result<Option<String>> {
    for _ in 0..30 {
        if let Ok(KvMsg::Value { value, .. }) =
            c.call::<KvMsg, KvMsg>(node, &KvMsg::Get { key: key.into() }, secs(1))
        {
            return Ok(value);
        }
        c.run_for(millis(100))?;
    }
    panic!("get {key} never answered");
}

#[test]
fn kv_applies_each_write_once_under_reorder_and_duplicates() {
    for seed in 0..SEEDS {
        let c: &mut dyn Cluster = &mut hostile(seed);
        let run = |c: &mut dyn Cluster| -> Result<()> {
            let ms: [_; 3] = c.add_machines()?;
            let kvs = kv::spawn_group(c, &ms, None)?;
            for i in 0..15u64 {
                put(
                    c,
                    kvs[(i % 3) as usize],
                    i + 1,
                    &format!("k{}", i % 4),
                    &format!("v{i}"),
                )?;
            }
            for k in 0..4u64 {
                let last = (0..15u64).filter(|i| i % 4 == k).max().unwrap_or(0);
                assert_eq!(
                    get(c, kvs[1], &format!("k{k}"))?,
                    Some(format!("v{last}")),
                    "seed {seed}: k{k}"
                );
            }
            match c.call::<KvMsg, KvMsg>(kvs[0], &KvMsg::Status, secs(1))? {
                KvMsg::StatusReply(s) => {
                    assert_eq!(s.index, 15, "seed {seed}: 15 writes logged once each")
                }
                other => panic!("seed {seed}: {other:?}"),
            }
            Ok(())
        };
        if let Err(e) = run(c) {
            panic!("seed {seed}: {e}");
        }
    }
}

#[test]
fn wordcount_exact_under_reorder_and_duplicates() {
    let lines: Vec<String> = (0..40)
        .map(|i| format!("w{} w{} common words {i}", i % 5, i % 3))
        .collect();
    for seed in 0..SEEDS {
        let c: &mut dyn Cluster = &mut hostile(seed);
        let run = |c: &mut dyn Cluster| -> Result<()> {
            let [src, s1, s2, k1, k2] = c.add_machines()?;
            let wc = Pipeline::spawn(c, src, &[s1, s2], &[k1, k2], &lines, None)?;
            c.run_until(secs(30), |c| Ok(wc.status(c, secs(1))?.pending == 0))?;
            assert_eq!(
                wc.counts(c, secs(1))?,
                count_words(&lines),
                "seed {seed}: counts exact"
            );
            Ok(())
        };
        if let Err(e) = run(c) {
            panic!("seed {seed}: {e}");
        }
    }
}
