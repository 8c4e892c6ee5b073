//! Sweep scenarios: a workload plus a nemesis over the example systems, each
//! with the check of what the system guarantees. The correct systems pass a
//! default sweep; each planted bug is found by one.
//!
//! | scenario | system | checks |
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
use distzero::sim::Scenario;
use distzero::{Cluster, Error, MachineId, NodeId, Registry, Result};
use std::collections::BTreeMap;
use std::time::Duration;

/// Every scenario by name.
pub fn all() -> Vec<Box<dyn Scenario>> {
    vec![
        Box::new(KvScenario { bug: None }),
        Box::new(KvScenario {
            bug: Some("ack-before-replicate"),
        }),
        Box::new(KvScenario {
            bug: Some("stale-read"),
        }),
        Box::new(WordCountScenario { bug: None }),
        Box::new(WordCountScenario {
            bug: Some("count-retries-twice"),
        }),
    ]
}

/// The scenario of that name, or an error listing the known ones.
pub fn by_name(name: &str) -> Result<Box<dyn Scenario>> {
    let all = all();
    let known: Vec<String> = all.iter().map(|s| s.name().to_string()).collect();
    all.into_iter().find(|s| s.name() == name).ok_or_else(|| {
        Error::Unsupported(format!(
            "no scenario `{name}`; known scenarios: {}",
            known.join(", ")
        ))
    })
}

/// Three replicas (the nemesis hits them) and two clients on machines of
/// their own, outside the nemesis (their histories would survive it: they
/// are kept outside the machines; but a crashed client starts its workload
/// again, and the check waits for every client's).
pub struct KvScenario {
    pub bug: Option<&'static str>,
}

const CLIENTS: u64 = 2;
/// Operations per client.
const CLIENT_OPS: u64 = 60;

impl Scenario for KvScenario {
    fn name(&self) -> &str {
        match self.bug {
            None => "kv",
            Some("ack-before-replicate") => "kv-ack-before-replicate",
            Some(_) => "kv-stale-read",
        }
    }
    fn registry(&self) -> Registry {
        crate::registry()
    }
    fn machines(&self) -> u32 {
        3
    }
    fn fault_window(&self) -> Duration {
        Duration::from_secs(3)
    }
    fn setup(&self, c: &mut dyn Cluster) -> Result<Vec<MachineId>> {
        let ms: [MachineId; 3] = c.add_machines()?;
        Ok(ms.to_vec())
    }
    fn start(&self, c: &mut dyn Cluster, machines: &[MachineId]) -> Result<()> {
        let replicas = kv::spawn_group(c, machines, self.bug)?;
        for p in 0..CLIENTS {
            let m = c.add_machine()?;
            let mut cfg = KvClientConfig::new(replicas.clone(), p + 1);
            cfg.ops = CLIENT_OPS;
            cfg.keys = 2;
            cfg.think_ms = 40;
            c.spawn_node(m, kv_client::KIND, cfg.clone())?;
        }
        Ok(())
    }
    fn check(&self, c: &mut dyn Cluster, _machines: &[MachineId]) -> Result<()> {
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
}

/// A source, two splitters and two counters, one per machine (all under the
/// nemesis); totals must come out exact once everything is healed.
pub struct WordCountScenario {
    pub bug: Option<&'static str>,
}

const TEXT: &str = "the quick brown fox jumps over the lazy dog\n\
    a stitch in time saves nine\n\
    the early bird catches the worm\n\
    all that glitters is not gold\n\
    to be or not to be that is the question\n\
    the fox and the dog are friends in time";

impl WordCountScenario {
    fn lines() -> Vec<String> {
        (0..300)
            .map(|i| TEXT.lines().nth(i % 6).unwrap_or("").trim().to_string())
            .collect()
    }
}

impl Scenario for WordCountScenario {
    fn name(&self) -> &str {
        match self.bug {
            None => "wordcount",
            Some(_) => "wordcount-count-retries-twice",
        }
    }
    fn registry(&self) -> Registry {
        crate::registry()
    }
    fn machines(&self) -> u32 {
        5
    }
    fn fault_window(&self) -> Duration {
        Duration::from_secs(2)
    }
    fn setup(&self, c: &mut dyn Cluster) -> Result<Vec<MachineId>> {
        let ms: [MachineId; 5] = c.add_machines()?;
        Ok(ms.to_vec())
    }
    fn start(&self, c: &mut dyn Cluster, m: &[MachineId]) -> Result<()> {
        let counters: Vec<NodeId> = m[3..5]
            .iter()
            .map(|&mm| {
                c.spawn_node(
                    mm,
                    wordcount::COUNTER,
                    CounterConfig {
                        bug: self.bug.map(str::to_string),
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
        cfg.lines = Self::lines();
        // Few lines in flight, so the stream runs through the fault window.
        cfg.window = 2;
        c.spawn_node(m[0], wordcount::SOURCE, cfg.clone())?;
        Ok(())
    }
    fn check(&self, c: &mut dyn Cluster, m: &[MachineId]) -> Result<()> {
        let source = NodeId::new(m[0], 0);
        let total = Self::lines().len() as u64;
        c.run_until(Duration::from_secs(60), |c| {
            Ok(matches!(
                c.call::<_, WcMsg>(source, &WcMsg::Status, Duration::from_secs(1))?,
                WcMsg::StatusReply(WcStatus { done, .. }) if done == total
            ))
        })?;
        // The last acks may still be on their way to counters' peers: settle.
        c.run_for(Duration::from_millis(500))?;
        let mut got: BTreeMap<String, u64> = BTreeMap::new();
        for &mm in &m[3..5] {
            if let WcMsg::Counts(counts) =
                c.call(NodeId::new(mm, 0), &WcMsg::Query, Duration::from_secs(1))?
            {
                for (w, n) in counts {
                    *got.entry(w).or_default() += n;
                }
            }
        }
        let want = wordcount::count_words(&Self::lines());
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
}
