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
//! | `raft` | Raft-style replicated log (3 replicas, 3 clients; the default nemesis, then a crash storm) | a leader is elected once healed (liveness), the history is linearizable, every replica applied the same log |
//! | `raft-vote-not-persisted` | the same, votes not written to disk | same (found only with crashes) |
//! | `raft-vote-not-persisted-no-crash` | the same bug, no crashes (a storm of pauses instead) | same: passes, the bug needs a crash |
//! | `raft-commit-without-majority` | the same, a commit quorum of `n / 2` | same |
//! | `raft-stale-read` | the same, the leader answering reads from its own state | same |
//! | `raft-no-reelection` | the same, followers dropping their election timer on a newer term | same (fails the liveness check) |
//! | `raft-vote-ignores-log` | the same, votes granted without the up-to-date check | same |
//! | `raft-disk` | the same under storage faults (power loss, I/O errors, a full disk, slow syncs, flipped reads) | same |
//! | `raft-ack-before-sync` | the same, followers acknowledging before they sync | same |
//! | `raft-corrupt` | the same, then one replica's stored blocks damaged | same |
//! | `raft-corrupt-as-torn` | the same, a damaged synced entry taken for a torn tail | same |
//! | `raft-lease` | the same with leader leases, under clock steps and drift | same |
//! | `raft-lease-on-wall-clock` | the same, leases measured on the wall clock | same |

use crate::kv;
use crate::kv_client::{self, KvClientConfig};
use crate::raft::{self, RaftMsg};
use crate::raft_client::{self, RaftClientConfig};
use crate::wordcount::{self, CounterConfig, SourceConfig, SplitterConfig, WcMsg, WcStatus};
use distzero::check::{check_kv, Budget};
use distzero::nemesis::{FaultKind, Nemesis};
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
        w("raft", raft),
        w("raft-vote-not-persisted", raft_vote_not_persisted),
        w(
            "raft-vote-not-persisted-no-crash",
            raft_vote_not_persisted_no_crash,
        ),
        w("raft-commit-without-majority", raft_commit_without_majority),
        w("raft-stale-read", raft_stale_read),
        w("raft-no-reelection", raft_no_reelection),
        w("raft-vote-ignores-log", raft_vote_ignores_log),
        w("raft-disk", raft_disk),
        w("raft-ack-before-sync", raft_ack_before_sync),
        w("raft-corrupt", raft_corrupt),
        w("raft-corrupt-as-torn", raft_corrupt_as_torn),
        w("raft-lease", raft_lease),
        w("raft-lease-on-wall-clock", raft_lease_on_wall_clock),
    ]
}

/// Whether the workflow of that name must fail a sweep (a planted bug its
/// nemesis can reach), rather than pass (a correct system, or a bug its
/// nemesis cannot reach: `raft-vote-not-persisted-no-crash`).
pub fn planted_bug(name: &str) -> bool {
    !matches!(
        name,
        "kv" | "wordcount" | "raft" | "raft-disk" | "raft-corrupt" | "raft-lease"
    ) && !name.ends_with("-no-crash")
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
    check_linearizable(c)
}

/// The run's history is linearizable (and the checker could decide).
fn check_linearizable(c: &mut dyn Cluster) -> Result<()> {
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

/// The Raft-style log under two nemeses on its three replicas (2 s of
/// every kind of fault, then a 2 s storm of crashes): once healed, a
/// leader is elected, the clients' history is linearizable and every
/// replica applied the same log.
pub fn raft(c: &mut dyn Cluster) -> Result<()> {
    raft_under_nemesis(c, None, &FaultKind::ALL)
}

/// The same, votes granted without being written to disk (a planted bug).
pub fn raft_vote_not_persisted(c: &mut dyn Cluster) -> Result<()> {
    raft_under_nemesis(c, Some("vote-not-persisted"), &FaultKind::ALL)
}

/// The faults of [`raft()`] but crashes: partitions, cuts, pauses, latency
/// (and its storm is one of pauses).
pub const NO_CRASH: [FaultKind; 4] = [
    FaultKind::Partition,
    FaultKind::Cut,
    FaultKind::Pause,
    FaultKind::Latency,
];

/// `vote-not-persisted` under a nemesis that never crashes a replica: the
/// bug needs a restart to forget the vote, so this passes a sweep.
pub fn raft_vote_not_persisted_no_crash(c: &mut dyn Cluster) -> Result<()> {
    raft_under_nemesis(c, Some("vote-not-persisted"), &NO_CRASH)
}

/// The same, a commit quorum of `n / 2` replicas (a planted bug).
pub fn raft_commit_without_majority(c: &mut dyn Cluster) -> Result<()> {
    raft_under_nemesis(c, Some("commit-without-majority"), &FaultKind::ALL)
}

/// The same, the leader answering reads from its own state (a planted bug).
pub fn raft_stale_read(c: &mut dyn Cluster) -> Result<()> {
    raft_under_nemesis(c, Some("stale-read"), &FaultKind::ALL)
}

/// The same, followers that drop their election timer on hearing a newer
/// term from a candidate (a planted liveness bug).
pub fn raft_no_reelection(c: &mut dyn Cluster) -> Result<()> {
    raft_under_nemesis(c, Some("no-reelection"), &FaultKind::ALL)
}

/// The same, votes granted without the up-to-date check (a planted bug).
pub fn raft_vote_ignores_log(c: &mut dyn Cluster) -> Result<()> {
    raft_under_nemesis(c, Some("vote-ignores-log"), &FaultKind::ALL)
}

/// Storage faults a Raft log must survive, beside partitions and crashes:
/// power loss (a prefix of unsynced writes kept, the last one torn), I/O
/// errors, a full disk, slow syncs, reads that flip bits (read again).
/// Blocks damaged for good are [`raft_corrupt`]'s.
pub const RAFT_DISK: [FaultKind; 8] = [
    FaultKind::PowerLoss,
    FaultKind::Crash,
    FaultKind::Partition,
    FaultKind::Isolate,
    FaultKind::DiskErrors,
    FaultKind::DiskFull,
    FaultKind::SlowDisk,
    FaultKind::CorruptReads,
];

/// What one replica's disk suffers in [`raft_corrupt`]: flipped bits in
/// stored blocks, and the crashes that make it read them back.
pub const RAFT_CORRUPT: [FaultKind; 4] = [
    FaultKind::Corrupt,
    FaultKind::CorruptReads,
    FaultKind::PowerLoss,
    FaultKind::Crash,
];

/// The Raft-style log when one replica's synced data is damaged (a bit
/// flipped in a stored block, found when it restarts): first the
/// [`RAFT_DISK`] faults on every replica, then [`RAFT_CORRUPT`] on one
/// (drawn from the seed) while another is cut off from both, then the
/// storm. A damaged copy of term and vote
/// gives way to the other; a damaged synced entry cuts the log and the
/// replica repairs it from the leader before it votes again. Damage on a
/// majority could lose a committed entry for good: no protocol recovers
/// that, so the faults stay on one replica, as Raft's one failure of three.
pub fn raft_corrupt(c: &mut dyn Cluster) -> Result<()> {
    raft_corrupt_with(c, None)
}

/// The same, a damaged synced entry taken for a torn unsynced tail: the
/// log is cut and the replica votes as if nothing was lost (a planted bug).
pub fn raft_corrupt_as_torn(c: &mut dyn Cluster) -> Result<()> {
    raft_corrupt_with(c, Some("corrupt-as-torn"))
}

/// [`raft_corrupt`] with a fixed schedule in its middle phase: two blocks
/// of the first replica's disk damaged, then a crash and a restart, so the
/// replica always reads damaged data back (in every mode).
pub fn raft_corrupt_fixed(c: &mut dyn Cluster) -> Result<()> {
    use distzero::nemesis::{DiskFault, Fault, Schedule, Step};
    raft_phases(c, None, 0, &RAFT_DISK, &|c, machines| {
        let at = |at_ms, fault| Step { at_ms, fault };
        let corrupt = Fault::Disk {
            machine: 0,
            fault: DiskFault::Corrupt,
        };
        c.start_nemesis(Nemesis::on(&machines[..1]).schedule(Schedule::new(vec![
            at(100, corrupt.clone()),
            at(200, corrupt),
            at(300, Fault::Crash(0)),
            at(500, Fault::Restart(0)),
        ])))?;
        c.wait_nemesis()
    })
}

fn raft_corrupt_with(c: &mut dyn Cluster, bug: Option<&str>) -> Result<()> {
    raft_phases(c, bug, 0, &RAFT_DISK, &|c, machines| {
        // From the seed: the replica whose disk is damaged, and another
        // that is cut off meanwhile (it falls behind, and comes back to
        // stand for election once healed).
        let seed = c.seed();
        let victim = machines[(seed % 3) as usize];
        let laggard = machines[((seed % 3 + 1 + (seed / 3) % 2) % 3) as usize];
        let others: Vec<MachineId> = machines.iter().copied().filter(|&m| m != laggard).collect();
        c.partition(&[&[laggard], &others])?;
        c.start_nemesis(
            Nemesis::on(&[victim])
                .kinds(&RAFT_CORRUPT)
                .max_faults(8)
                .window(Duration::from_secs(2)),
        )?;
        c.wait_nemesis()?;
        c.heal_all()
    })
}

/// The Raft-style log under [`RAFT_DISK`] faults (its storm: power losses).
pub fn raft_disk(c: &mut dyn Cluster) -> Result<()> {
    raft_under_nemesis(c, None, &RAFT_DISK)
}

/// The same, followers acknowledging entries before syncing them (a
/// planted bug that only a crash losing unsynced writes shows).
pub fn raft_ack_before_sync(c: &mut dyn Cluster) -> Result<()> {
    raft_under_nemesis(c, Some("ack-before-sync"), &RAFT_DISK)
}

/// Clock faults beside partitions and pauses: what leader leases must survive.
pub const RAFT_CLOCK: [FaultKind; 6] = [
    FaultKind::ClockStep,
    FaultKind::ClockDrift,
    FaultKind::Partition,
    FaultKind::Isolate,
    FaultKind::MajorityMinority,
    FaultKind::Pause,
];

/// Leader leases of this length in the lease workflows (election timeouts
/// start at 150 ms).
const LEASE_MS: u64 = 120;

/// The Raft-style log with leader leases (reads answered at once by a
/// leader under lease) under [`RAFT_CLOCK`] faults.
pub fn raft_lease(c: &mut dyn Cluster) -> Result<()> {
    raft_workflow(c, None, LEASE_MS, &RAFT_CLOCK)
}

/// The same, leases measured on the wall clock (a planted bug that only a
/// clock stepped back shows).
pub fn raft_lease_on_wall_clock(c: &mut dyn Cluster) -> Result<()> {
    raft_workflow(c, Some("lease-on-wall-clock"), LEASE_MS, &RAFT_CLOCK)
}

const RAFT_CLIENTS: u64 = 3;
/// Operations of each raft client.
const RAFT_OPS: u64 = 80;
/// A status call to one replica.
const STATUS_CALL: Duration = Duration::from_millis(500);
/// Faults of the crash storm, the second nemesis of the raft workflows.
const STORM_FAULTS: usize = 32;

/// Three replicas, three clients on machines of their own. Two nemeses on
/// the replicas, one after the other: 2 s of the faults `kinds` (the
/// default mix: up to 8), then a 2 s storm of up to [`STORM_FAULTS`]
/// crashes and restarts (of pauses, if `kinds` has no crash), which is
/// what it takes to line up the two or three crashes a lost vote needs.
/// Once healed: a leader is elected (liveness), every client completes its
/// operations, their history is linearizable, and every replica applied
/// the same log (state machine safety).
fn raft_under_nemesis(c: &mut dyn Cluster, bug: Option<&str>, kinds: &[FaultKind]) -> Result<()> {
    raft_workflow(c, bug, 0, kinds)
}

/// [`raft_under_nemesis`] with leader leases of `lease_ms` (0: none).
fn raft_workflow(
    c: &mut dyn Cluster,
    bug: Option<&str>,
    lease_ms: u64,
    kinds: &[FaultKind],
) -> Result<()> {
    raft_phases(c, bug, lease_ms, kinds, &|_, _| Ok(()))
}

/// What a workflow does between its first nemesis and the storm, given
/// the replicas' machines.
type Between<'a> = &'a dyn Fn(&mut dyn Cluster, &[MachineId]) -> Result<()>;

/// [`raft_workflow`] with a phase `between` the first nemesis and the storm.
fn raft_phases(
    c: &mut dyn Cluster,
    bug: Option<&str>,
    lease_ms: u64,
    kinds: &[FaultKind],
    between: Between<'_>,
) -> Result<()> {
    let machines: [MachineId; 3] = c.add_machines()?;
    let replicas = raft::spawn_group_with(c, &machines, |cfg| {
        cfg.bug = bug.map(str::to_string);
        cfg.lease_ms = lease_ms;
    })?;
    for p in 1..=RAFT_CLIENTS {
        let m = c.add_machine()?;
        let mut cfg = RaftClientConfig::new(replicas.clone(), p);
        cfg.ops = RAFT_OPS;
        cfg.keys = 2;
        cfg.think_ms = 40;
        c.spawn_node(m, raft_client::KIND, cfg)?;
    }
    c.start_nemesis(
        Nemesis::on(&machines)
            .kinds(kinds)
            .window(Duration::from_secs(2)),
    )?;
    c.wait_nemesis()?;
    between(c, &machines)?;
    let storm = if kinds.contains(&FaultKind::PowerLoss) {
        FaultKind::PowerLoss
    } else if kinds.contains(&FaultKind::Crash) {
        FaultKind::Crash
    } else {
        FaultKind::Pause
    };
    c.start_nemesis(
        Nemesis::on(&machines)
            .kinds(&[storm])
            .max_faults(STORM_FAULTS)
            .window(Duration::from_secs(2)),
    )?;
    c.wait_nemesis()?;
    c.eventually(
        Duration::from_secs(5),
        "a leader is elected (a majority follows it)",
        |c| Ok(raft_leader(c, &replicas)?.is_some()),
    )?;
    c.eventually(
        Duration::from_secs(30),
        "every client completes its operations",
        |c| {
            let h = c.history()?;
            Ok((1..=RAFT_CLIENTS).all(|p| kv_client::completed(&h, p) >= RAFT_OPS))
        },
    )?;
    check_linearizable(c)?;
    check_same_applied_log(c, &replicas)
}

/// The replica that leads now: it committed an entry of its term (a
/// majority followed it), and no replica that answers is in a later term.
fn raft_leader(c: &mut dyn Cluster, replicas: &[NodeId]) -> Result<Option<raft::RaftStatus>> {
    let mut statuses = Vec::with_capacity(replicas.len());
    for &r in replicas {
        if let Some(s) = raft::status(c, r, STATUS_CALL)? {
            statuses.push(s);
        }
    }
    let latest = statuses.iter().map(|s| s.term).max().unwrap_or(0);
    Ok(statuses.into_iter().find(|s| s.leading && s.term == latest))
}

/// State machine safety: every replica applied the same entries up to the
/// leader's commit index (compared by the digest of the applied log).
fn check_same_applied_log(c: &mut dyn Cluster, replicas: &[NodeId]) -> Result<()> {
    let mut target = 0;
    c.eventually(
        Duration::from_secs(5),
        "a leader is elected (a majority follows it)",
        |c| {
            Ok(match raft_leader(c, replicas)? {
                Some(s) => {
                    target = s.commit;
                    true
                }
                None => false,
            })
        },
    )?;
    let mut digests: Vec<Option<u64>> = vec![None; replicas.len()];
    c.eventually(
        Duration::from_secs(5),
        "every replica applies the leader's committed log",
        |c| {
            for (i, &r) in replicas.iter().enumerate() {
                if digests[i].is_some() {
                    continue;
                }
                if let Ok(RaftMsg::DigestReply { digest, .. }) =
                    c.call::<_, RaftMsg>(r, &RaftMsg::Digest { index: target }, STATUS_CALL)
                {
                    digests[i] = digest;
                }
            }
            Ok(digests.iter().all(Option::is_some))
        },
    )?;
    let first = digests[0];
    if digests.iter().any(|d| *d != first) {
        let shown: Vec<String> = replicas
            .iter()
            .zip(&digests)
            .map(|(r, d)| format!("{r}: {:016x}", d.unwrap_or(0)))
            .collect();
        return Err(Error::Check(format!(
            "replicas applied different logs up to index {target}: {}",
            shown.join(", ")
        )));
    }
    tracing::info!(index = target, "every replica applied the same log");
    Ok(())
}
