//! Sweep workflows: workflow tests of the example systems that declare a
//! nemesis (`c.start_nemesis`) and check what the system guarantees once
//! it is healed. The correct systems pass a default sweep; each planted
//! bug is found by one.
//!
//! | workflow | system | checks |
//! |---|---|---|
//! | `kv` | replicated key-value store | the history of two clients is linearizable |
//! | `kv-ack-before-replicate` | the same, acknowledging writes before replicating them | same |
//! | `kv-stale-read` | the same, backups answering reads from their own state | same |
//! | `wordcount` | word count stream | totals exact |
//! | `wordcount-count-retries-twice` | counters that count retried batches again | same |

use crate::kv;
use crate::kv_client::{self, KvClientConfig};
use crate::wordcount::{self, CounterConfig, SourceConfig, SplitterConfig, WcMsg, WcStatus};
use distzero::check::{check_kv, Budget};
use distzero::nemesis::Nemesis;
use distzero::sim::Workflow;
use distzero::{Cluster, Error, MachineId, NodeId, Result};
use std::collections::BTreeMap;
use std::time::Duration;

/// Every sweep workflow by name.
pub fn all() -> Vec<Workflow> {
    let w = |name: &str, body| Workflow::new(name, crate::registry(), body);
    vec![
        w("kv", kv),
        w("kv-ack-before-replicate", kv_ack_before_replicate),
        w("kv-stale-read", kv_stale_read),
        w("wordcount", wordcount),
        w(
            "wordcount-count-retries-twice",
            wordcount_count_retries_twice,
        ),
    ]
}

/// Whether the workflow of that name runs a system with a planted bug (it
/// must fail a sweep), rather than a correct one (it must pass).
pub fn planted_bug(name: &str) -> bool {
    !matches!(name, "kv" | "wordcount" | "raft")
}

/// The workflow of that name, or an error listing the known ones.
pub fn by_name(name: &str) -> Result<Workflow> {
    let all = all();
    let known: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    all.into_iter().find(|s| s.name == name).ok_or_else(|| {
        Error::Unsupported(format!(
            "no workflow `{name}`; known workflows: {}",
            known.join(", ")
        ))
    })
}

/// The replicated key-value store under a nemesis: its history is linearizable.
pub fn kv(c: &mut dyn Cluster) -> Result<()> {
    kv_under_nemesis(c, None)
}

/// The same, acknowledging writes before replicating them (a planted bug).
pub fn kv_ack_before_replicate(c: &mut dyn Cluster) -> Result<()> {
    kv_under_nemesis(c, Some("ack-before-replicate"))
}

/// The same, backups answering reads from their own state (a planted bug).
pub fn kv_stale_read(c: &mut dyn Cluster) -> Result<()> {
    kv_under_nemesis(c, Some("stale-read"))
}

const CLIENTS: u64 = 2;
/// Operations of each client.
const CLIENT_OPS: u64 = 60;

/// Three replicas (the nemesis hits them) and two clients on machines of
/// their own (outside the nemesis: their histories must survive).
fn kv_under_nemesis(c: &mut dyn Cluster, bug: Option<&str>) -> Result<()> {
    let machines: [MachineId; 3] = c.add_machines()?;
    let replicas = kv::spawn_group(c, &machines, bug)?;
    for p in 0..CLIENTS {
        let m = c.add_machine()?;
        let mut cfg = KvClientConfig::new(replicas.clone(), p + 1);
        cfg.ops = CLIENT_OPS;
        cfg.keys = 2;
        cfg.think_ms = 40;
        c.spawn_node(m, kv_client::KIND, cfg)?;
    }
    c.start_nemesis(Nemesis::on(&machines).window(Duration::from_secs(3)))?;
    c.wait_nemesis()?;
    // Let the clients finish their operations after the recovery.
    c.run_until(Duration::from_secs(60), |c| {
        let h = c.history()?;
        Ok((1..=CLIENTS).all(|p| kv_client::completed(&h, p) >= CLIENT_OPS))
    })?;
    let history = c.history()?;
    let verdict = check_kv(&history, &Budget::default())?;
    tracing::info!(ops = history.len(), verdict = %verdict, "linearizability check");
    if verdict.is_not_linearizable() {
        return Err(Error::Check(format!(
            "history of {} ops is not linearizable: {verdict}",
            history.len()
        )));
    }
    if verdict.is_unknown() {
        return Err(Error::Check(format!(
            "the checker could not decide on {} ops: {verdict}",
            history.len()
        )));
    }
    Ok(())
}

/// A source, two splitters and two counters, one per machine (all under the
/// nemesis); totals must come out exact once everything is healed.
pub fn wordcount(c: &mut dyn Cluster) -> Result<()> {
    wordcount_under_nemesis(c, None)
}

/// The same with counters that count retried batches again (a planted bug).
pub fn wordcount_count_retries_twice(c: &mut dyn Cluster) -> Result<()> {
    wordcount_under_nemesis(c, Some("count-retries-twice"))
}

const TEXT: &str = "the quick brown fox jumps over the lazy dog\n\
    a stitch in time saves nine\n\
    the early bird catches the worm\n\
    all that glitters is not gold\n\
    to be or not to be that is the question\n\
    the fox and the dog are friends in time";

fn lines() -> Vec<String> {
    (0..300)
        .map(|i| TEXT.lines().nth(i % 6).unwrap_or("").trim().to_string())
        .collect()
}

fn wordcount_under_nemesis(c: &mut dyn Cluster, bug: Option<&str>) -> Result<()> {
    let m: [MachineId; 5] = c.add_machines()?;
    let counters: Vec<NodeId> = m[3..5]
        .iter()
        .map(|&mm| {
            c.spawn_node(
                mm,
                wordcount::COUNTER,
                CounterConfig {
                    bug: bug.map(str::to_string),
                },
            )
        })
        .collect::<Result<_>>()?;
    let splitters: Vec<NodeId> = m[1..3]
        .iter()
        .map(|&mm| {
            c.spawn_node(
                mm,
                wordcount::SPLITTER,
                SplitterConfig {
                    counters: counters.clone(),
                    retry_ms: 100,
                },
            )
        })
        .collect::<Result<_>>()?;
    let mut cfg: SourceConfig =
        serde_json::from_value(serde_json::json!({ "splitters": splitters }))
            .map_err(|e| Error::Unsupported(e.to_string()))?;
    cfg.lines = lines();
    // Few lines in flight, so the stream runs through the fault window.
    cfg.window = 2;
    let source = c.spawn_node(m[0], wordcount::SOURCE, cfg)?;
    c.start_nemesis(Nemesis::on(&m).window(Duration::from_secs(2)))?;
    c.wait_nemesis()?;
    let total = lines().len() as u64;
    c.run_until(Duration::from_secs(60), |c| {
        Ok(matches!(
            c.call::<_, WcMsg>(source, &WcMsg::Status, Duration::from_secs(1))?,
            WcMsg::StatusReply(WcStatus { done, .. }) if done == total
        ))
    })?;
    // The last acks may still be on their way to counters' peers: settle.
    c.run_for(Duration::from_millis(500))?;
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    for &counter in &counters {
        if let WcMsg::Counts(counts) = c.call(counter, &WcMsg::Query, Duration::from_secs(1))? {
            for (w, n) in counts {
                *got.entry(w).or_default() += n;
            }
        }
    }
    let want = wordcount::count_words(&lines());
    if got != want {
        let diff: Vec<String> = want
            .iter()
            .filter(|(w, n)| got.get(*w) != Some(n))
            .map(|(w, n)| format!("{w}: want {n}, got {}", got.get(w).copied().unwrap_or(0)))
            .collect();
        let more = diff.len().saturating_sub(5);
        let shown = diff.into_iter().take(5).collect::<Vec<_>>().join("; ");
        let tail = if more > 0 {
            format!("; and {more} more words")
        } else {
            String::new()
        };
        return Err(Error::Check(format!(
            "word counts are not exact: {shown}{tail}"
        )));
    }
    Ok(())
}
