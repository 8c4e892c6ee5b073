//! A replicated key-value store: DistZero's map server grown up.
//!
//! A fixed group of replicas; `replicas[0]` is the primary. Every write gets
//! the next index of one log. The primary persists it, sends it to every
//! backup, and acknowledges the client only once a majority of the group
//! (itself included) holds it on disk: then it is *committed* and applied.
//! Reads are answered by the primary from the committed state, so a value
//! that was read is on a majority and is never lost. Backups forward client
//! requests to the primary and relay the answer.
//!
//! Faults:
//! - lost messages: the primary resends what a backup has not acknowledged on
//!   every tick; backups acknowledge with what they hold, so a gap is found
//!   and filled; client requests carry an id, and a retried `Put` is applied
//!   once (the log remembers which ids it holds).
//! - crash and restart: every replica persists each log entry and the commit
//!   index before it acknowledges; on start it replays its disk, and a backup
//!   says `Hello` to the primary, which resends what it misses.
//! - partitions: a cut-off backup catches up when healed; a primary cut off
//!   from every backup acknowledges nothing (writes time out, never lie).
//!
//! The primary is fixed: while it is down, the store is unavailable (it is an
//! example: no election). The log lives in memory and on disk, unbounded.
//!
//! Planted bugs (config `bug`), each changing one behaviour:
//! - `ack-before-replicate`: the primary acknowledges a write as soon as it is
//!   on its own disk.
//! - `stale-read`: a backup answers `Get` from its own state instead of
//!   asking the primary.

use distzero::{Cluster, Context, MachineId, Node, NodeId, TimerId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

pub const KIND: distzero::Kind<KvConfig> = distzero::Kind::new("kv");

/// At most this many entries go in one `Append`.
pub const MAX_BATCH: usize = 64;
/// A forwarded request whose answer has not come back after this long is
/// answered `Unavailable`.
pub const FORWARD_TIMEOUT: Duration = Duration::from_millis(1000);

fn default_tick_ms() -> u64 {
    50
}

/// Config of one replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvConfig {
    /// The whole group, the same list on every replica; `replicas[0]` is the primary.
    pub replicas: Vec<NodeId>,
    /// My index in `replicas`.
    pub me: usize,
    /// Period of the resend / heartbeat timer.
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// A planted bug: `ack-before-replicate` or `stale-read`.
    #[serde(default)]
    pub bug: Option<String>,
}

impl KvConfig {
    pub fn new(replicas: Vec<NodeId>, me: usize) -> Self {
        KvConfig {
            replicas,
            me,
            tick_ms: default_tick_ms(),
            bug: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvBug {
    AckBeforeReplicate,
    StaleRead,
}

impl KvBug {
    pub fn parse(s: &str) -> Option<KvBug> {
        match s {
            "ack-before-replicate" => Some(KvBug::AckBeforeReplicate),
            "stale-read" => Some(KvBug::StaleRead),
            _ => None,
        }
    }
}

/// One write, as it is logged, replicated and persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub index: u64,
    /// The client's request id.
    pub id: u64,
    pub key: String,
    pub value: String,
}

/// What a replica reports about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvStatus {
    pub me: usize,
    pub primary: bool,
    /// The last log index this replica holds on disk.
    pub index: u64,
    /// The last index it knows to be committed (and has applied).
    pub commit: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KvMsg {
    // ---- client requests (to any replica) ----
    /// Write `value` under `key`. `id` names the request: a retry with the
    /// same id is applied once. Answered `PutOk` once committed.
    Put {
        id: u64,
        key: String,
        value: String,
    },
    /// Read the committed value (through the primary). Answered `Value`.
    Get {
        key: String,
    },
    /// `Get` with a request id, answered `ReadOk` with the same id: for
    /// clients that must tell a late answer from the one they wait for.
    Read {
        id: u64,
        key: String,
    },
    /// Read this replica's own applied value, without the primary: to inspect
    /// a replica in tests. Answered `Value`.
    ReadLocal {
        key: String,
    },
    /// Answered `StatusReply`.
    Status,

    // ---- replies ----
    PutOk {
        id: u64,
        index: u64,
    },
    Value {
        key: String,
        value: Option<String>,
    },
    ReadOk {
        id: u64,
        key: String,
        value: Option<String>,
    },
    StatusReply(KvStatus),
    /// The request cannot be served now (no primary reachable, bad config).
    Unavailable {
        reason: String,
    },

    // ---- between replicas ----
    /// A backup passes a client request to the primary.
    Forward {
        fwd: u64,
        req: Box<KvMsg>,
    },
    /// The primary's answer to a forwarded request.
    Relay {
        fwd: u64,
        reply: Box<KvMsg>,
    },
    /// Primary -> backup: entries `prev+1 ..`, and the commit index.
    Append {
        prev: u64,
        entries: Vec<Entry>,
        commit: u64,
    },
    /// Backup -> primary: I hold every entry up to `index`.
    Ack {
        index: u64,
    },
    /// Backup -> primary, on start: I hold every entry up to `index`.
    Hello {
        index: u64,
    },
}

/// Where the answer to a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Direct(NodeId),
    Relayed { via: NodeId, fwd: u64 },
}

const TICK: u64 = 1;

pub struct Kv {
    cfg: KvConfig,
    bug: Option<KvBug>,
    /// Why this replica refuses to work (bad config), if it does.
    broken: Option<String>,
    /// Entries 1..=len; `log[i - 1].index == i`.
    log: Vec<Entry>,
    commit: u64,
    /// The state at `commit`.
    data: BTreeMap<String, String>,
    /// Request id -> log index.
    ids: BTreeMap<u64, u64>,
    // primary only
    /// Backup -> the last index it acknowledged.
    matched: BTreeMap<NodeId, u64>,
    /// Log index -> requests to answer once it commits.
    waiting: BTreeMap<u64, Vec<(Origin, u64)>>,
    // backups only
    /// Forwarded requests: fwd -> (client, since).
    forwarded: BTreeMap<u64, (NodeId, Duration)>,
    next_fwd: u64,
}

impl Kv {
    pub fn new(cfg: KvConfig) -> Self {
        let mut broken = None;
        let bug = match cfg.bug.as_deref() {
            None => None,
            Some(s) => {
                let b = KvBug::parse(s);
                if b.is_none() {
                    broken = Some(format!(
                        "unknown bug `{s}` (known: ack-before-replicate, stale-read)"
                    ));
                }
                b
            }
        };
        if cfg.me >= cfg.replicas.len() {
            broken = Some(format!(
                "me = {} but only {} replicas",
                cfg.me,
                cfg.replicas.len()
            ));
        }
        Kv {
            cfg,
            bug,
            broken,
            log: Vec::new(),
            commit: 0,
            data: BTreeMap::new(),
            ids: BTreeMap::new(),
            matched: BTreeMap::new(),
            waiting: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            next_fwd: 0,
        }
    }

    fn is_primary(&self) -> bool {
        self.cfg.me == 0
    }

    fn primary(&self) -> NodeId {
        self.cfg.replicas[0]
    }

    fn last(&self) -> u64 {
        self.log.len() as u64
    }

    fn majority(&self) -> usize {
        self.cfg.replicas.len() / 2 + 1
    }

    fn backups(&self) -> Vec<NodeId> {
        self.cfg.replicas.iter().skip(1).copied().collect()
    }

    fn tick_period(&self) -> Duration {
        Duration::from_millis(self.cfg.tick_ms.max(1))
    }

    /// Read the log and commit index back from disk.
    fn recover(&mut self, ctx: &mut Context<'_, KvMsg>) {
        let mut disk = ctx.disk();
        for key in disk.keys() {
            if !key.starts_with("log/") {
                continue;
            }
            match disk.get::<Entry>(&key) {
                Ok(Some(e)) if e.index == self.last() + 1 => {
                    self.ids.insert(e.id, e.index);
                    self.log.push(e);
                }
                Ok(_) => {
                    tracing::error!(key = %key, "log entry out of place on disk; recovery stops here");
                    break;
                }
                Err(e) => {
                    tracing::error!(key = %key, error = %e, "unreadable log entry; recovery stops here");
                    break;
                }
            }
        }
        let commit = match disk.get::<u64>("commit") {
            Ok(c) => c.unwrap_or(0),
            Err(e) => {
                tracing::error!(error = %e, "unreadable commit index; starting from 0");
                0
            }
        };
        self.apply_to(commit.min(self.last()));
        tracing::info!(
            index = self.last(),
            commit = self.commit,
            "recovered from disk"
        );
    }

    /// Persist one entry and append it to the log.
    fn append(&mut self, ctx: &mut Context<'_, KvMsg>, e: Entry) -> bool {
        debug_assert_eq!(e.index, self.last() + 1);
        if let Err(err) = ctx.disk().put_synced(&format!("log/{:012}", e.index), &e) {
            tracing::error!(index = e.index, error = %err, "could not persist entry");
            return false;
        }
        self.ids.insert(e.id, e.index);
        self.log.push(e);
        true
    }

    /// Apply entries up to `index` (in memory only).
    fn apply_to(&mut self, index: u64) {
        while self.commit < index {
            let e = &self.log[self.commit as usize];
            self.data.insert(e.key.clone(), e.value.clone());
            self.commit += 1;
        }
    }

    /// Advance the commit index to `index`, durably, and apply.
    fn commit_to(&mut self, ctx: &mut Context<'_, KvMsg>, index: u64) {
        let index = index.min(self.last());
        if index <= self.commit {
            return;
        }
        if let Err(e) = ctx.disk().put_synced("commit", &index) {
            tracing::error!(index, error = %e, "could not persist commit index");
            return;
        }
        self.apply_to(index);
        tracing::info!(commit = index, "committed");
    }

    fn reply(&mut self, ctx: &mut Context<'_, KvMsg>, to: Origin, msg: KvMsg) {
        match to {
            Origin::Direct(n) => ctx.send(n, msg),
            Origin::Relayed { via, fwd } => ctx.send(
                via,
                KvMsg::Relay {
                    fwd,
                    reply: Box::new(msg),
                },
            ),
        }
    }

    // ---------------------------------------------------------------- primary

    fn primary_put(
        &mut self,
        ctx: &mut Context<'_, KvMsg>,
        origin: Origin,
        id: u64,
        key: String,
        value: String,
    ) {
        if let Some(&index) = self.ids.get(&id) {
            tracing::info!(id, index, "retried put");
            if index <= self.commit || self.bug == Some(KvBug::AckBeforeReplicate) {
                self.reply(ctx, origin, KvMsg::PutOk { id, index });
            } else {
                self.waiting.entry(index).or_default().push((origin, id));
            }
            return;
        }
        let index = self.last() + 1;
        let e = Entry {
            index,
            id,
            key,
            value,
        };
        if !self.append(ctx, e.clone()) {
            self.reply(
                ctx,
                origin,
                KvMsg::Unavailable {
                    reason: "primary could not write its disk".into(),
                },
            );
            return;
        }
        tracing::info!(key = %e.key, id, index, "put");
        if self.bug == Some(KvBug::AckBeforeReplicate) {
            tracing::info!(id, index, "acknowledged before replication (planted bug)");
            self.reply(ctx, origin, KvMsg::PutOk { id, index });
        } else {
            self.waiting.entry(index).or_default().push((origin, id));
        }
        for b in self.backups() {
            ctx.send(
                b,
                KvMsg::Append {
                    prev: index - 1,
                    entries: vec![e.clone()],
                    commit: self.commit,
                },
            );
        }
        self.advance_commit(ctx);
    }

    /// Answer a read from the committed state; with an id, as `ReadOk`.
    fn primary_get(
        &mut self,
        ctx: &mut Context<'_, KvMsg>,
        origin: Origin,
        key: String,
        id: Option<u64>,
    ) {
        let value = self.data.get(&key).cloned();
        tracing::info!(key = %key, found = value.is_some(), "get");
        let reply = match id {
            Some(id) => KvMsg::ReadOk { id, key, value },
            None => KvMsg::Value { key, value },
        };
        self.reply(ctx, origin, reply);
    }

    /// Commit what a majority holds and answer the writers waiting for it.
    fn advance_commit(&mut self, ctx: &mut Context<'_, KvMsg>) {
        let mut held: Vec<u64> = vec![self.last()];
        held.extend(
            self.backups()
                .iter()
                .map(|b| self.matched.get(b).copied().unwrap_or(0)),
        );
        held.sort_unstable_by(|a, b| b.cmp(a));
        let majority_holds = held[self.majority() - 1];
        if majority_holds > self.commit {
            self.commit_to(ctx, majority_holds);
        }
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > self.commit {
                break;
            }
            let (index, waiters) = entry.remove_entry();
            for (origin, id) in waiters {
                self.reply(ctx, origin, KvMsg::PutOk { id, index });
            }
        }
    }

    /// Send backup `b` what it has not acknowledged (or a heartbeat).
    fn send_append(&mut self, ctx: &mut Context<'_, KvMsg>, b: NodeId) {
        let from = self.matched.get(&b).copied().unwrap_or(0).min(self.last());
        let to = (from as usize + MAX_BATCH).min(self.log.len());
        let entries = self.log[from as usize..to].to_vec();
        ctx.send(
            b,
            KvMsg::Append {
                prev: from,
                entries,
                commit: self.commit,
            },
        );
    }

    fn primary_message(&mut self, ctx: &mut Context<'_, KvMsg>, from: NodeId, msg: KvMsg) {
        let is_backup = self.cfg.replicas.iter().skip(1).any(|&b| b == from);
        match msg {
            KvMsg::Put { id, key, value } => {
                self.primary_put(ctx, Origin::Direct(from), id, key, value)
            }
            KvMsg::Get { key } => self.primary_get(ctx, Origin::Direct(from), key, None),
            KvMsg::Read { id, key } => self.primary_get(ctx, Origin::Direct(from), key, Some(id)),
            KvMsg::Forward { fwd, req } if is_backup => {
                let origin = Origin::Relayed { via: from, fwd };
                match *req {
                    KvMsg::Put { id, key, value } => self.primary_put(ctx, origin, id, key, value),
                    KvMsg::Get { key } => self.primary_get(ctx, origin, key, None),
                    KvMsg::Read { id, key } => self.primary_get(ctx, origin, key, Some(id)),
                    other => tracing::warn!(%from, msg = ?other, "cannot forward this; ignored"),
                }
            }
            KvMsg::Ack { index } | KvMsg::Hello { index } if is_backup => {
                let m = self.matched.entry(from).or_insert(0);
                let hello = matches!(msg, KvMsg::Hello { .. });
                *m = (*m).max(index.min(self.log.len() as u64));
                if hello {
                    tracing::info!(%from, index, "backup says hello");
                    self.send_append(ctx, from);
                }
                self.advance_commit(ctx);
            }
            other => {
                tracing::warn!(%from, msg = ?other, "unexpected message at the primary; ignored")
            }
        }
    }

    // ---------------------------------------------------------------- backup

    fn backup_append(
        &mut self,
        ctx: &mut Context<'_, KvMsg>,
        prev: u64,
        entries: Vec<Entry>,
        commit: u64,
    ) {
        let before = self.last();
        if prev <= self.last() {
            for e in entries {
                if e.index <= self.last() {
                    continue;
                }
                if e.index != self.last() + 1 || !self.append(ctx, e) {
                    break;
                }
            }
        }
        if self.last() > before {
            tracing::info!(from = before + 1, to = self.last(), "replicated");
        } else if prev > self.last() {
            tracing::debug!(prev, have = self.last(), "gap; asking for what I miss");
        }
        self.commit_to(ctx, commit);
        if ctx.buggify() {
            // Fault point (simulation only): as if the ack were lost.
            tracing::debug!(index = self.last(), "buggify: ack not sent");
            return;
        }
        ctx.send(self.primary(), KvMsg::Ack { index: self.last() });
    }

    fn forward(&mut self, ctx: &mut Context<'_, KvMsg>, client: NodeId, req: KvMsg) {
        self.next_fwd += 1;
        let fwd = self.next_fwd;
        self.forwarded.insert(fwd, (client, ctx.now()));
        let primary = self.primary();
        ctx.send(
            primary,
            KvMsg::Forward {
                fwd,
                req: Box::new(req),
            },
        );
    }

    fn backup_message(&mut self, ctx: &mut Context<'_, KvMsg>, from: NodeId, msg: KvMsg) {
        let from_primary = from == self.primary();
        match msg {
            KvMsg::Put { .. } => self.forward(ctx, from, msg),
            KvMsg::Get { key } if self.bug == Some(KvBug::StaleRead) => {
                let value = self.data.get(&key).cloned();
                tracing::info!(key = %key, "read served locally (planted bug)");
                ctx.send(from, KvMsg::Value { key, value });
            }
            KvMsg::Read { id, key } if self.bug == Some(KvBug::StaleRead) => {
                let value = self.data.get(&key).cloned();
                tracing::info!(key = %key, "read served locally (planted bug)");
                ctx.send(from, KvMsg::ReadOk { id, key, value });
            }
            KvMsg::Get { .. } | KvMsg::Read { .. } => self.forward(ctx, from, msg),
            KvMsg::Append {
                prev,
                entries,
                commit,
            } if from_primary => self.backup_append(ctx, prev, entries, commit),
            KvMsg::Relay { fwd, reply } if from_primary => match self.forwarded.remove(&fwd) {
                Some((client, _)) => ctx.send(client, *reply),
                None => tracing::debug!(fwd, "answer to a forgotten request; dropped"),
            },
            other => tracing::warn!(%from, msg = ?other, "unexpected message at a backup; ignored"),
        }
    }
}

impl Node for Kv {
    type Msg = KvMsg;

    fn on_start(&mut self, ctx: &mut Context<'_, KvMsg>) {
        if self.broken.is_none() && self.cfg.replicas[self.cfg.me] != ctx.me() {
            self.broken = Some(format!(
                "config says I am replica {} = {}, but I am {}",
                self.cfg.me,
                self.cfg.replicas[self.cfg.me],
                ctx.me()
            ));
        }
        if let Some(why) = &self.broken {
            tracing::error!(reason = %why, "bad kv config; this replica serves nothing");
            return;
        }
        self.recover(ctx);
        tracing::info!(
            me = self.cfg.me,
            primary = self.is_primary(),
            replicas = self.cfg.replicas.len(),
            "kv started"
        );
        if self.is_primary() {
            for b in self.backups() {
                self.send_append(ctx, b);
            }
            self.advance_commit(ctx);
        } else {
            let primary = self.primary();
            ctx.send(primary, KvMsg::Hello { index: self.last() });
        }
        ctx.set_timer(self.tick_period(), TICK);
    }

    fn on_message(&mut self, ctx: &mut Context<'_, KvMsg>, from: NodeId, msg: KvMsg) {
        if let Some(why) = &self.broken {
            ctx.send(
                from,
                KvMsg::Unavailable {
                    reason: why.clone(),
                },
            );
            return;
        }
        match msg {
            KvMsg::ReadLocal { key } => {
                let value = self.data.get(&key).cloned();
                ctx.send(from, KvMsg::Value { key, value });
            }
            KvMsg::Status => {
                let s = KvStatus {
                    me: self.cfg.me,
                    primary: self.is_primary(),
                    index: self.last(),
                    commit: self.commit,
                };
                ctx.send(from, KvMsg::StatusReply(s));
            }
            msg if self.is_primary() => self.primary_message(ctx, from, msg),
            msg => self.backup_message(ctx, from, msg),
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, KvMsg>, _timer: TimerId, tag: u64) {
        if tag != TICK || self.broken.is_some() {
            return;
        }
        if self.is_primary() {
            for b in self.backups() {
                self.send_append(ctx, b);
            }
        } else {
            let now = ctx.now();
            let expired: Vec<u64> = self
                .forwarded
                .iter()
                .filter(|(_, (_, since))| now.saturating_sub(*since) >= FORWARD_TIMEOUT)
                .map(|(&fwd, _)| fwd)
                .collect();
            for fwd in expired {
                if let Some((client, _)) = self.forwarded.remove(&fwd) {
                    tracing::info!(fwd, %client, "no answer from the primary");
                    ctx.send(
                        client,
                        KvMsg::Unavailable {
                            reason: "the primary did not answer".into(),
                        },
                    );
                }
            }
        }
        ctx.set_timer(self.tick_period(), TICK);
    }
}

/// Spawn one replica per machine, in order (`machines[0]` hosts the
/// primary), and return their ids: every replica's config names the whole
/// group (`spawn_group` on `dyn Cluster`), on fresh machines or not.
pub fn spawn_group(
    c: &mut dyn Cluster,
    machines: &[MachineId],
    bug: Option<&str>,
) -> distzero::Result<Vec<NodeId>> {
    spawn_group_with(c, machines, |cfg| cfg.bug = bug.map(str::to_string))
}

/// [`spawn_group`] with every replica's config adjusted by `tweak`.
pub fn spawn_group_with(
    c: &mut dyn Cluster,
    machines: &[MachineId],
    tweak: impl Fn(&mut KvConfig),
) -> distzero::Result<Vec<NodeId>> {
    c.spawn_group(machines, KIND, |i, ids| {
        let mut cfg = KvConfig::new(ids.to_vec(), i);
        tweak(&mut cfg);
        cfg
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bugs_parse() {
        assert_eq!(KvBug::parse("stale-read"), Some(KvBug::StaleRead));
        assert_eq!(
            KvBug::parse("ack-before-replicate"),
            Some(KvBug::AckBeforeReplicate)
        );
        assert_eq!(KvBug::parse("nope"), None);
    }

    #[test]
    fn bad_configs_are_refused_not_panicked() {
        let kv = Kv::new(KvConfig::new(vec![], 0));
        assert_eq!(kv.broken.as_deref(), Some("me = 0 but only 0 replicas"));
        let mut cfg = KvConfig::new(vec![NodeId::new(MachineId(0), 0)], 0);
        cfg.bug = Some("bogus".into());
        assert_eq!(
            Kv::new(cfg).broken.as_deref(),
            Some("unknown bug `bogus` (known: ack-before-replicate, stale-read)")
        );
        let mut cfg = KvConfig::new(vec![NodeId::new(MachineId(0), 0)], 0);
        cfg.bug = Some("stale-read".into());
        assert_eq!(Kv::new(cfg).broken, None, "a known bug is a valid config");
    }

    #[test]
    fn config_defaults() {
        let cfg: KvConfig = serde_json::from_str(r#"{"replicas":[],"me":0}"#).unwrap();
        assert_eq!(cfg.tick_ms, 50);
        assert_eq!(cfg.bug, None);
    }
}
