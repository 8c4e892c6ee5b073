//! A Raft-style replicated key-value log (Ongaro and Ousterhout, "In Search
//! of an Understandable Consensus Algorithm", 2014), with planted bugs.
//!
//! # The protocol
//!
//! A fixed group of replicas (`replicas`, the same list on every one). Time
//! is cut into *terms*; each term has at most one leader.
//!
//! - **Election.** A follower that hears nothing from a leader for an
//!   election timeout (drawn uniformly from `election_min_ms ..=
//!   election_max_ms`, redrawn every time it is armed, by the replica's own
//!   rng, seeded from `ctx.rng()` when it starts: its draws do not depend on
//!   other nodes' events, so a shrunk fault schedule changes less)
//!   becomes a candidate: it increments its term, votes for itself and asks
//!   every peer with `RequestVote` (repeated every heartbeat to peers that
//!   have not answered). A replica grants at most one vote per term, and only
//!   to a candidate whose log is at least as up to date as its own (last
//!   term, then last index). A candidate with the votes of a majority is the
//!   leader of its term; with none by its next timeout it tries a new term.
//!   Any message with a higher term turns its receiver into a follower of
//!   that term.
//! - **Replication.** The leader appends each client command to its log (an
//!   entry carries the term it was created in), and sends `AppendEntries`
//!   to every follower: the entries from the follower's `next` index (at most
//!   [`MAX_BATCH`]), with the index and term of the entry before them, and
//!   its commit index. It sends them at once, and every `heartbeat_ms` (an
//!   empty one is a heartbeat). A follower accepts them only if its log holds
//!   that previous entry with that term, deletes any entries that conflict
//!   with the new ones (never a committed one: asserted), appends what it
//!   lacks, and answers with the index up to which its log now matches the
//!   leader's; on a mismatch it answers with the first index of the
//!   conflicting term (or its log's end), where the leader tries again.
//! - **Commit.** An entry is committed once a majority holds it *and* it is
//!   of the leader's current term; the entries before it are committed with
//!   it (Raft's Figure 8: an older term's entry on a majority may still be
//!   overwritten, so it is never counted directly). A new leader appends a
//!   no-op entry of its term at once, so what earlier leaders committed is
//!   committed again (and applied) without waiting for a client.
//! - **State machine.** Committed entries are applied in order to a map of
//!   keys to integers: `Write`, `Cas` (fails, changing nothing, unless the
//!   key holds the expected value) and `Read`. Reads go through the log, so
//!   a read is answered only by a leader that a majority still follows: a
//!   deposed leader's read entry never commits. The leader answers a client
//!   once the command is applied.
//! - **Clients** name each command `(client, seq)`; the state machine keeps
//!   each client's last `seq` and its outcome (at most [`MAX_SESSIONS`]
//!   clients, the least recently applied forgotten first), so a retried or
//!   duplicated command is applied once and answered with its first outcome.
//!   A client may therefore retry a command at any replica after a timeout
//!   or a `NotLeader` answer (which names the leader if known).
//!
//! # Persistence and crashes
//!
//! The current term and vote (`hard`) and every log entry (the disk log
//! `log`, entry `i` as record `i - 1`) are on the machine's disk
//! (`ctx.disk()`), written and *synced* before the replica answers anything
//! that depends on them (a vote, an append's ack) or counts its own copy
//! (a crash loses what was not synced: `distzero::disk`). On start, and so
//! after every restart, a replica reads them back and starts as a
//! follower; the commit index and the state machine are volatile and
//! rebuilt from the log as the leader's commit index comes in.
//!
//! Damaged data (a flipped bit: every value and record is checksummed, a
//! read that fails is tried again, [`READ_TRIES`] times in all):
//! - Term and vote are one value, replaced whole by the disk, kept in two
//!   copies (`hard`, `hard.copy`) written and synced together: a damaged
//!   copy gives way to the other. Both damaged, the replica cannot know
//!   what it voted, and never votes or stands again.
//! - Every sync also writes `durable`, the last index and term it made
//!   durable. A damaged record past it is a torn unsynced tail (never
//!   acknowledged): the log ends before it. Within it, a synced entry is
//!   lost, perhaps a committed one this replica counted towards: the log
//!   is cut before it, and until the leader has filled it back to that
//!   index, the replica stands for no election and votes only for a
//!   candidate at least as up to date as the log it lost (a lighter
//!   protocol-aware recovery, after Alagappan et al., FAST 2018). A leader
//!   told by a follower's refusal that it lost acknowledged entries sends
//!   them again (its commit point never moves back).
//!
//! Not here: snapshots, membership changes, pre-vote, check-quorum (a
//! leader cut off from the majority believes in itself until it hears a
//! later term; harmless, since its reads go through the log and never
//! commit).
//!
//! # Observing it
//!
//! `Status` answers a [`RaftStatus`] (role, term, leader, commit and
//! applied index; `leading`: a leader whose commit index reached an entry
//! of its term). `Digest { index }` answers the digest (FNV-1a, chained) of
//! the entries the replica applied up to `index`: two replicas that applied
//! the same log agree on it, so a test checks state machine safety without
//! reading the logs.
//!
//! # Bounds
//!
//! The log holds at most `max_log` entries (a leader with a full log refuses
//! new commands with `Unavailable`; there are no snapshots: the bound is per
//! test), a leader at most `max_pending` client requests waiting for their
//! entry to apply (more: `Unavailable`), an `AppendEntries` at most
//! [`MAX_BATCH`] entries, the session table at most [`MAX_SESSIONS`]
//! clients, a group at most [`MAX_REPLICAS`] replicas. The invariants the
//! code relies on (`applied <= commit <= log length <= max_log`, no
//! committed entry deleted, one leader per term as far as one replica can
//! see) are asserted in the correct protocol; a planted bug may break them,
//! and then the first break is logged as an error and the workflow's checks
//! find the damage.
//!
//! # Planted bugs (config `bug`)
//!
//! - `vote-not-persisted`: the vote handler moves to the candidate's term
//!   and grants its vote in memory only, without writing term and vote to
//!   disk first (every other path persists them). Nothing changes while the
//!   replica runs. If it crashes during that term and restarts, it is back
//!   in the term before, with no vote in the term it voted in; if it then
//!   hears nothing from that term's leader before its timeout, it stands in
//!   that same term and can win it with a replica that has no vote there
//!   (one that never voted in it, or forgot too): two leaders in one term.
//!   The first leader's entries that never committed and the second's sit
//!   at the same index with the same term, so the Log Matching check takes
//!   one for the other: the replicas apply different logs (sometimes also a
//!   history that is not linearizable). It takes a crash and restart, in
//!   practice two or three crashes lined up, never a partition or a pause
//!   alone.
//! - `commit-without-majority`: the leader's quorum for commit is `n / 2`
//!   replicas counting itself (an off-by-one), so with three replicas it
//!   commits, applies and acknowledges alone. A leader cut off from the
//!   others acknowledges writes that the next leader never had.
//! - `stale-read`: the leader answers a read from its own state at once, not
//!   through the log. A deposed leader that does not know it yet (cut off
//!   from the majority, which elected another; or paused) serves old values,
//!   and so does a new leader that has not yet applied everything its
//!   predecessors committed.
//! - `no-reelection`: a replica that learns of a higher term from a
//!   candidate or a reply (not from a leader) cancels its election timer
//!   "until that term's leader calls". When a candidate that cannot win (its
//!   log is behind, say after a partition) drags everyone into its higher
//!   term, nobody else ever stands again: no leader, forever. A liveness
//!   bug: nothing unsafe happens, nothing happens at all.
//! - `vote-ignores-log`: a replica grants its vote without the up-to-date
//!   check, so a candidate missing committed entries can win and overwrite
//!   them on the others.
//! - `ack-before-sync`: a follower acknowledges the entries it appended
//!   without syncing its disk first. Nothing shows while machines run, nor
//!   after a process crash that keeps the page cache; a crash that loses
//!   unsynced writes (the simulator's default, an agent's too) takes the
//!   acknowledged entries with it, and the leader counted them: a committed
//!   entry can vanish from a majority and be overwritten by the next leader.
//! - `lease-on-wall-clock` (with `lease_ms`): the leader measures its read
//!   lease on the wall clock instead of the monotonic one. A wall clock
//!   stepped back (an NTP step) stretches the lease by the step: a leader
//!   cut off from the others goes on answering reads from its own state
//!   after the majority elected another leader and wrote new values.
//! - `corrupt-as-torn`: recovery takes every damaged log record for a torn
//!   unsynced tail, as if a flipped bit could only hit what was never
//!   synced: the log is cut there and the replica votes as if it had lost
//!   nothing. Its vote can then elect a candidate missing entries that
//!   were committed with this replica's lost copy, and they are
//!   overwritten.

use crate::hash::fnv1a;
use distzero::{Cluster, Context, MachineId, Node, NodeId, TimerId, TimerTag};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const KIND: distzero::Kind<RaftConfig> = distzero::Kind::new("raft");

/// At most this many entries go in one `AppendEntries`.
pub const MAX_BATCH: usize = 64;
/// At most this many replicas in a group.
pub const MAX_REPLICAS: usize = 9;
/// The state machine remembers the last command of at most this many clients.
pub const MAX_SESSIONS: usize = 1024;
/// Client 0 is reserved for the leader's no-op entries.
pub const NOOP_CLIENT: u64 = 0;

fn default_heartbeat_ms() -> u64 {
    50
}
fn default_election_min_ms() -> u64 {
    150
}
fn default_election_max_ms() -> u64 {
    300
}
fn default_max_log() -> u64 {
    4096
}
fn default_max_pending() -> usize {
    64
}

/// Config of one replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RaftConfig {
    /// The whole group, the same list on every replica.
    pub replicas: Vec<NodeId>,
    /// My index in `replicas`.
    pub me: usize,
    /// The leader's heartbeat (and a candidate's vote-request resend) period.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Election timeouts are drawn from `election_min_ms ..= election_max_ms`.
    #[serde(default = "default_election_min_ms")]
    pub election_min_ms: u64,
    #[serde(default = "default_election_max_ms")]
    pub election_max_ms: u64,
    /// At most this many log entries (no snapshots: a bound per test).
    #[serde(default = "default_max_log")]
    pub max_log: u64,
    /// At most this many client requests waiting at the leader.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// Leader leases: a leader answers reads at once, without the log,
    /// while a majority acknowledged its heartbeats within the last
    /// `lease_ms` on its monotonic clock (0: off, reads go through the log).
    /// At most 9/10 of `election_min_ms`, the margin covering clock drift
    /// (`distzero::clock::MAX_DRIFT_PPM` is far below it); a follower that
    /// heard from its leader within `election_min_ms` refuses to vote for
    /// anyone else, so no new leader rises while a lease may hold.
    #[serde(default)]
    pub lease_ms: u64,
    /// A planted bug (see the module docs and [`RaftBug`]).
    #[serde(default)]
    pub bug: Option<String>,
}

impl RaftConfig {
    pub fn new(replicas: Vec<NodeId>, me: usize) -> Self {
        RaftConfig {
            replicas,
            me,
            heartbeat_ms: default_heartbeat_ms(),
            election_min_ms: default_election_min_ms(),
            election_max_ms: default_election_max_ms(),
            max_log: default_max_log(),
            max_pending: default_max_pending(),
            lease_ms: 0,
            bug: None,
        }
    }

    /// What is wrong with this config, if anything.
    pub fn validate(&self) -> Result<Option<RaftBug>, String> {
        let n = self.replicas.len();
        if n == 0 || n > MAX_REPLICAS {
            return Err(format!("{n} replicas; a group has 1 to {MAX_REPLICAS}"));
        }
        if self.me >= n {
            return Err(format!("me = {} but only {n} replicas", self.me));
        }
        let distinct: BTreeSet<NodeId> = self.replicas.iter().copied().collect();
        if distinct.len() != n {
            return Err(format!("a replica is named twice in {:?}", self.replicas));
        }
        if self.heartbeat_ms == 0 {
            return Err("heartbeat_ms = 0; it must be at least 1".into());
        }
        if self.election_min_ms < 2 * self.heartbeat_ms
            || self.election_max_ms < self.election_min_ms
        {
            return Err(format!(
                "election timeouts {}..={} ms must satisfy 2 * heartbeat ({} ms) <= min <= max",
                self.election_min_ms, self.election_max_ms, self.heartbeat_ms
            ));
        }
        if self.lease_ms * 10 > self.election_min_ms * 9 {
            return Err(format!(
                "lease_ms = {} is over 9/10 of election_min_ms ({}): a lease must end before another leader can rise, with a margin for clock drift",
                self.lease_ms, self.election_min_ms
            ));
        }
        if self.max_log == 0 || self.max_pending == 0 {
            return Err("max_log and max_pending must be at least 1".into());
        }
        match self.bug.as_deref() {
            None => Ok(None),
            Some(s) => RaftBug::parse(s).map(Some).ok_or_else(|| {
                format!(
                    "unknown bug `{s}` (known: {})",
                    RaftBug::ALL.map(RaftBug::name).join(", ")
                )
            }),
        }
    }
}

/// The planted bugs (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaftBug {
    VoteNotPersisted,
    CommitWithoutMajority,
    StaleRead,
    NoReelection,
    VoteIgnoresLog,
    AckBeforeSync,
    LeaseOnWallClock,
    CorruptAsTorn,
}

impl RaftBug {
    pub const ALL: [RaftBug; 8] = [
        RaftBug::VoteNotPersisted,
        RaftBug::CommitWithoutMajority,
        RaftBug::StaleRead,
        RaftBug::NoReelection,
        RaftBug::VoteIgnoresLog,
        RaftBug::AckBeforeSync,
        RaftBug::LeaseOnWallClock,
        RaftBug::CorruptAsTorn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RaftBug::VoteNotPersisted => "vote-not-persisted",
            RaftBug::CommitWithoutMajority => "commit-without-majority",
            RaftBug::StaleRead => "stale-read",
            RaftBug::NoReelection => "no-reelection",
            RaftBug::VoteIgnoresLog => "vote-ignores-log",
            RaftBug::AckBeforeSync => "ack-before-sync",
            RaftBug::LeaseOnWallClock => "lease-on-wall-clock",
            RaftBug::CorruptAsTorn => "corrupt-as-torn",
        }
    }

    pub fn parse(s: &str) -> Option<RaftBug> {
        RaftBug::ALL.into_iter().find(|b| b.name() == s)
    }
}

/// A client's command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmd {
    /// A new leader's first entry; changes nothing.
    Noop,
    Read {
        key: String,
    },
    Write {
        key: String,
        value: i64,
    },
    /// Set `key` to `new` if it holds `expected` (`None`: unset).
    Cas {
        key: String,
        expected: Option<i64>,
        new: i64,
    },
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The term of the leader that created it.
    pub term: u64,
    /// The command's client and its number there ([`NOOP_CLIENT`] for a no-op).
    pub client: u64,
    pub seq: u64,
    pub cmd: Cmd,
}

/// How a command ended, or why it was not taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Applied: the value read (a read), the value written (a write, a cas).
    Ok(Option<i64>),
    /// A cas whose expected value did not match: the value it found.
    CasFailed(Option<i64>),
    /// Not taken: I am not the leader; this one may be (retry there).
    NotLeader { leader: Option<NodeId> },
    /// Not taken now (too busy, log full, disk error); retry later.
    Unavailable { reason: String },
}

/// A replica's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Follower,
    Candidate,
    Leader,
}

/// What a replica reports about itself (`Status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RaftStatus {
    pub me: usize,
    pub term: u64,
    pub role: Role,
    /// The leader of `term`, if known.
    pub leader: Option<NodeId>,
    pub last_index: u64,
    pub commit: u64,
    pub applied: u64,
    /// A leader whose commit index reached an entry of its own term: a
    /// majority follows it.
    pub leading: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RaftMsg {
    // ---- clients and tests ----
    /// Run `cmd` for client `client` (its `seq`-th command). Answered `Reply`.
    Request {
        client: u64,
        seq: u64,
        cmd: Cmd,
    },
    Reply {
        seq: u64,
        outcome: Outcome,
    },
    /// Answered `StatusReply`.
    Status,
    StatusReply(RaftStatus),
    /// The digest of the applied log up to `index`: answered `DigestReply`
    /// (`None` until this replica applied that far).
    Digest {
        index: u64,
    },
    DigestReply {
        index: u64,
        digest: Option<u64>,
    },

    // ---- between replicas ----
    RequestVote {
        term: u64,
        last_index: u64,
        last_term: u64,
    },
    Vote {
        term: u64,
        granted: bool,
    },
    AppendEntries {
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
        /// When the leader sent it, on its lease clock (echoed back).
        sent: u64,
    },
    /// `success`: my log matches the leader's up to `index`. Else: try
    /// again from `index`.
    AppendReply {
        term: u64,
        success: bool,
        index: u64,
        /// The `sent` of the `AppendEntries` this answers.
        sent: u64,
    },
}

/// Term and vote, persisted together (one value, kept in two copies:
/// `hard` and `hard.copy`, written and synced together, so one corrupted
/// block spoils one copy at most), and the log this replica must get back
/// before it votes again, if corruption cost it synced entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct HardState {
    term: u64,
    voted_for: Option<usize>,
    /// Set when recovery found a synced entry unreadable: the (index, term)
    /// of the last entry the log held durably before. Until the log is
    /// back to that index, this replica stands for no election and votes
    /// only for a candidate at least as up to date as that lost log (what
    /// it acknowledged may have been committed).
    repair: Option<(u64, u64)>,
}

/// Reads of one value or record tried before it counts as damaged (a read
/// may flip a bit: `DiskFault::CorruptReads`).
const READ_TRIES: usize = 8;

/// `read`, tried up to [`READ_TRIES`] times while it fails.
fn read_tries<T>(
    mut read: impl FnMut() -> distzero::Result<Option<T>>,
) -> distzero::Result<Option<T>> {
    let mut last = read();
    for _ in 1..READ_TRIES {
        if last.is_ok() {
            break;
        }
        last = read();
    }
    last
}

/// Of two readable copies of term and vote, the newer (both are written
/// and synced together; a crash between their writes, never acted on,
/// may leave them apart).
fn newer(a: HardState, b: HardState) -> HardState {
    let rank = |h: &HardState| (h.term, h.voted_for.is_some(), h.repair);
    if rank(&b) > rank(&a) {
        b
    } else {
        a
    }
}

/// How far the log was synced (its last index and that entry's term),
/// written with every sync: recovery tells a torn unsynced tail (past it,
/// never acknowledged, safely dropped) from a corrupted synced entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Durable {
    index: u64,
    term: u64,
}

/// A client's last applied command.
#[derive(Clone, Debug)]
struct Session {
    seq: u64,
    outcome: Outcome,
    /// The log index that applied it (for eviction: least recent first).
    index: u64,
}

/// A client waiting for its command to apply.
#[derive(Clone, Copy, Debug)]
struct Waiter {
    node: NodeId,
    client: u64,
    seq: u64,
}

distzero::timer_tags! {
    /// The election timeout, and the heartbeat tick (every role).
    enum RaftTimer { Election, Tick }
}

pub struct Raft {
    cfg: RaftConfig,
    bug: Option<RaftBug>,
    /// Why this replica refuses to work (bad config), if it does.
    broken: Option<String>,
    // persistent (mirrored on disk)
    hard: HardState,
    /// Both copies of term and vote were damaged: what this replica voted
    /// is unknown, so it never votes or stands again.
    mute: bool,
    /// My log is durable up to this index (a failed sync leaves it behind).
    synced: u64,
    /// Entries 1..=len.
    log: Vec<Entry>,
    // volatile
    role: Role,
    leader: Option<usize>,
    commit: u64,
    applied: u64,
    data: BTreeMap<String, i64>,
    sessions: BTreeMap<u64, Session>,
    /// `digests[i - 1]`: digest of the entries applied up to index `i`.
    digests: Vec<u64>,
    election_timer: Option<TimerId>,
    /// This replica's own randomness (election timeouts), seeded from
    /// `ctx.rng()` when it starts.
    rng: ChaCha8Rng,
    // candidate
    votes: BTreeSet<usize>,
    answered: BTreeSet<usize>,
    // leader
    next: Vec<u64>,
    matched: Vec<u64>,
    /// Per peer, the latest `sent` it acknowledged in my term (leases).
    acked_at: Vec<u64>,
    /// Per peer, where the last `AppendEntries` started (`prev_index + 1`).
    sent_from: Vec<u64>,
    /// When I last heard from my leader, or sent heartbeats as one (leases).
    heard_at: Duration,
    /// Log index -> clients waiting for it to apply.
    pending: BTreeMap<u64, Vec<Waiter>>,
    /// The first index of my term as leader.
    term_start: u64,
}

impl Raft {
    pub fn new(cfg: RaftConfig) -> Self {
        let (bug, broken) = match cfg.validate() {
            Ok(bug) => (bug, None),
            Err(why) => (None, Some(why)),
        };
        let n = cfg.replicas.len();
        Raft {
            cfg,
            bug,
            broken,
            hard: HardState::default(),
            mute: false,
            synced: 0,
            log: Vec::new(),
            role: Role::Follower,
            leader: None,
            commit: 0,
            applied: 0,
            data: BTreeMap::new(),
            sessions: BTreeMap::new(),
            digests: Vec::new(),
            election_timer: None,
            rng: ChaCha8Rng::seed_from_u64(0),
            votes: BTreeSet::new(),
            answered: BTreeSet::new(),
            next: vec![1; n],
            matched: vec![0; n],
            acked_at: vec![0; n],
            sent_from: vec![0; n],
            heard_at: Duration::ZERO,
            pending: BTreeMap::new(),
            term_start: 0,
        }
    }

    // ------------------------------------------------------------ helpers

    fn n(&self) -> usize {
        self.cfg.replicas.len()
    }

    fn majority(&self) -> usize {
        self.n() / 2 + 1
    }

    /// How many replicas (the leader included) must hold an entry to commit it.
    fn commit_quorum(&self) -> usize {
        if self.bug == Some(RaftBug::CommitWithoutMajority) {
            // Planted bug: an off-by-one, `n / 2` instead of `n / 2 + 1`.
            (self.n() / 2).max(1)
        } else {
            self.majority()
        }
    }

    fn last(&self) -> u64 {
        self.log.len() as u64
    }

    fn term_at(&self, index: u64) -> u64 {
        if index == 0 {
            0
        } else {
            self.log[index as usize - 1].term
        }
    }

    fn peers(&self) -> impl Iterator<Item = usize> {
        let me = self.cfg.me;
        (0..self.cfg.replicas.len()).filter(move |&i| i != me)
    }

    fn index_of(&self, node: NodeId) -> Option<usize> {
        self.cfg.replicas.iter().position(|&r| r == node)
    }

    fn leader_id(&self) -> Option<NodeId> {
        self.leader.map(|i| self.cfg.replicas[i])
    }

    /// An invariant the correct protocol keeps: asserted; under a planted
    /// bug (which may break it) logged as an error instead.
    fn invariant(&self, holds: bool, what: &str) {
        if holds {
            return;
        }
        match self.bug {
            None => panic!(
                "raft invariant broken at replica {} (term {}): {what}",
                self.cfg.me, self.hard.term
            ),
            Some(bug) => tracing::error!(
                bug = bug.name(),
                term = self.hard.term,
                "invariant broken (planted bug): {what}"
            ),
        }
    }

    /// The invariants checked after every change of the commit index (only
    /// without a planted bug: once a bug broke one, it stays broken, and
    /// the first break was logged where it happened).
    fn check_invariants(&self) {
        if self.bug.is_some() {
            return;
        }
        self.invariant(self.applied <= self.commit, "applied <= commit");
        self.invariant(self.commit <= self.last(), "commit <= log length");
        self.invariant(self.last() <= self.cfg.max_log, "log length <= max_log");
        self.invariant(
            self.digests.len() as u64 == self.applied,
            "one digest per applied entry",
        );
        let waiting: usize = self.pending.values().map(Vec::len).sum();
        self.invariant(waiting <= self.cfg.max_pending, "waiting <= max_pending");
    }

    // ------------------------------------------------------------ disk

    /// Term and vote, durably (a value is replaced whole: a crash leaves
    /// the old or the new one).
    fn persist_hard(&self, ctx: &mut Context<'_, RaftMsg>, hard: HardState) -> bool {
        let mut disk = ctx.disk();
        let written = disk
            .put("hard", &hard)
            .and_then(|()| disk.put("hard.copy", &hard))
            .and_then(|()| disk.sync());
        match written {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "could not persist term and vote");
                false
            }
        }
    }

    /// Write an entry at the end of the log (record `index - 1` of the
    /// disk's log `log`, not yet synced), then append it in memory.
    fn append(&mut self, ctx: &mut Context<'_, RaftMsg>, e: Entry) -> bool {
        if self.last() >= self.cfg.max_log {
            tracing::warn!(max_log = self.cfg.max_log, "log full");
            return false;
        }
        let index = self.last() + 1;
        let mut log = ctx.disk().log("log");
        debug_assert_eq!(log.len(), index - 1, "the disk's log and memory agree");
        if let Err(err) = log.append(&e) {
            tracing::error!(index, error = %err, "could not write entry");
            return false;
        }
        self.log.push(e);
        true
    }

    /// [`Raft::append`], then [`Raft::sync`]. A failed sync leaves the
    /// entry in the log, not durable: the leader counts its own copy only
    /// up to `synced`, and tries again every heartbeat.
    fn append_synced(&mut self, ctx: &mut Context<'_, RaftMsg>, e: Entry) -> bool {
        if !self.append(ctx, e) {
            return false;
        }
        self.sync(ctx);
        true
    }

    /// Sync the disk: on success the whole log is durable (`synced`).
    fn sync(&mut self, ctx: &mut Context<'_, RaftMsg>) -> bool {
        if self.synced == self.last() {
            return true;
        }
        let durable = Durable {
            index: self.last(),
            term: self.term_at(self.last()),
        };
        let mut disk = ctx.disk();
        // Written after the entries: a crash keeps a prefix of the
        // unsynced changes, so a surviving marker vouches for them.
        match disk.put("durable", &durable).and_then(|()| disk.sync()) {
            Ok(()) => {
                self.synced = self.last();
                if self
                    .hard
                    .repair
                    .is_some_and(|(index, _)| self.synced >= index)
                {
                    let hard = HardState {
                        repair: None,
                        ..self.hard
                    };
                    if self.persist_hard(ctx, hard) {
                        tracing::info!(
                            last = self.last(),
                            "log repaired: this replica votes again"
                        );
                        self.hard = hard;
                    }
                }
                true
            }
            Err(e) => {
                tracing::error!(synced = self.synced, last = self.last(), error = %e, "could not sync the log");
                false
            }
        }
    }

    /// Delete entries `from..` on disk and in memory.
    fn truncate(&mut self, ctx: &mut Context<'_, RaftMsg>, from: u64) -> bool {
        self.invariant(from > self.commit, "a committed entry is deleted");
        if let Err(e) = ctx.disk().log("log").truncate(from - 1) {
            tracing::error!(from, error = %e, "could not delete entries");
            return false;
        }
        // The marker after the cut, never before: a crash that kept a
        // lowered marker but not the cut would let a damaged synced entry
        // past it pass for a torn tail. One that kept the cut but not the
        // marker only makes a torn tail pass for damage (repaired, safe).
        if self.synced >= from {
            let durable = Durable {
                index: from - 1,
                term: self.term_at(from - 1),
            };
            if let Err(e) = ctx.disk().put("durable", &durable) {
                tracing::warn!(from, error = %e, "could not lower the durable marker");
            }
        }
        self.log.truncate(from as usize - 1);
        self.synced = self.synced.min(from - 1);
        if self.commit >= from {
            // Only under a planted bug: what was applied stays applied.
            self.commit = from - 1;
        }
        true
    }

    /// Read term, vote and log back from disk. A read that fails
    /// [`READ_TRIES`] times counts as damaged: a damaged copy of term and
    /// vote gives way to the other; both damaged, the replica never votes
    /// or stands again (`mute`). A damaged entry past the durable marker
    /// is a torn unsynced tail (dropped); within it, it is a synced entry
    /// lost: the log is cut before it, and `repair` keeps what the lost
    /// log was (see [`HardState::repair`]).
    fn recover(&mut self, ctx: &mut Context<'_, RaftMsg>) {
        let mut disk = ctx.disk();
        let copies = [
            read_tries(|| disk.get::<HardState>("hard")),
            read_tries(|| disk.get::<HardState>("hard.copy")),
        ];
        self.hard = match copies {
            [Ok(a), Ok(b)] => newer(a.unwrap_or_default(), b.unwrap_or_default()),
            [Ok(h), Err(e)] | [Err(e), Ok(h)] => {
                tracing::warn!(error = %e, "one copy of term and vote is damaged; the other serves");
                h.unwrap_or_default()
            }
            [Err(e), Err(_)] => {
                tracing::error!(error = %e, "both copies of term and vote are damaged: this replica will never vote or stand again");
                self.mute = true;
                HardState::default()
            }
        };
        let durable = match read_tries(|| disk.get::<Durable>("durable")) {
            Ok(d) => Some(d.unwrap_or_default()),
            Err(e) => {
                tracing::warn!(error = %e, "the durable marker is damaged: every damaged entry counts as synced");
                None
            }
        };
        let mut log = disk.log("log");
        let on_disk = log.len();
        let mut lost = None;
        for i in 0..self.cfg.max_log.min(on_disk) {
            match read_tries(|| log.get::<Entry>(i)) {
                Ok(Some(e)) => self.log.push(e),
                Ok(None) => break,
                Err(e) => {
                    let index = i + 1;
                    let synced = durable.is_none_or(|d| index <= d.index)
                        && self.bug != Some(RaftBug::CorruptAsTorn);
                    if synced {
                        tracing::error!(index, error = %e, "a synced log entry is damaged; the log is cut before it and repaired from the leader");
                        lost = Some(match durable {
                            Some(d) => (d.index, d.term),
                            None => (on_disk.max(index), self.hard.term),
                        });
                    } else {
                        // A record torn by a power cut (never synced, so
                        // never acknowledged): the log ends before it.
                        tracing::warn!(index, error = %e, "unreadable unsynced log entry; the log ends before it");
                    }
                    if let Err(e) = log.truncate(i) {
                        tracing::error!(error = %e, "could not cut the unreadable tail");
                    }
                    break;
                }
            }
        }
        self.synced = self.last();
        if durable.is_none_or(|d| d.index != self.last()) {
            // Entries read back are durable now: the marker says so before
            // any of them is acknowledged (or the last synced sync's
            // marker was lost with an unsynced truncation).
            let d = Durable {
                index: self.last(),
                term: self.term_at(self.last()),
            };
            if let Err(e) = ctx.disk().put_synced("durable", &d) {
                tracing::error!(error = %e, "could not write the durable marker");
                self.synced = durable.map_or(0, |d| d.index.min(self.last()));
            }
        }
        if let Some((index, term)) = lost {
            let repair = match self.hard.repair {
                Some((i, t)) => (i.max(index), t.max(term)),
                None => (index, term),
            };
            let hard = HardState {
                repair: Some(repair),
                ..self.hard
            };
            // In memory even if it cannot be written: this life stands for
            // nothing until repaired.
            self.hard = hard;
            if !self.persist_hard(ctx, hard) {
                tracing::error!("could not persist the repair mark");
            }
        }
        tracing::info!(
            term = self.hard.term,
            voted_for = ?self.hard.voted_for,
            last = self.last(),
            repair = ?self.hard.repair,
            mute = self.mute,
            "recovered from disk"
        );
    }

    // ------------------------------------------------------------ timers

    fn reset_election_timer(&mut self, ctx: &mut Context<'_, RaftMsg>) {
        if let Some(t) = self.election_timer.take() {
            ctx.cancel_timer(t);
        }
        let ms = self
            .rng
            .gen_range(self.cfg.election_min_ms..=self.cfg.election_max_ms);
        self.election_timer = Some(ctx.schedule(Duration::from_millis(ms), RaftTimer::Election));
    }

    fn stop_election_timer(&mut self, ctx: &mut Context<'_, RaftMsg>) {
        if let Some(t) = self.election_timer.take() {
            ctx.cancel_timer(t);
        }
    }

    // ------------------------------------------------------------ roles

    /// A message carries `term`: if it is newer, become a follower of it
    /// (term and cleared vote on disk first). `from_leader`: the message is
    /// the new term's leader's own. False if the new term could not be
    /// persisted (then nothing may be answered).
    fn observe_term(
        &mut self,
        ctx: &mut Context<'_, RaftMsg>,
        term: u64,
        from_leader: bool,
    ) -> bool {
        if term <= self.hard.term {
            return true;
        }
        let hard = HardState {
            term,
            voted_for: None,
            ..self.hard
        };
        if !self.persist_hard(ctx, hard) {
            return false;
        }
        tracing::info!(from = self.hard.term, to = term, "newer term; follower");
        self.hard = hard;
        self.become_follower(ctx, None);
        if self.bug == Some(RaftBug::NoReelection) && !from_leader {
            // Planted bug: wait for the new term's leader to call, without
            // a timeout of our own.
            tracing::info!(
                term,
                "waiting for this term's leader (planted bug: no election timer)"
            );
            self.stop_election_timer(ctx);
        }
        true
    }

    fn become_follower(&mut self, ctx: &mut Context<'_, RaftMsg>, leader: Option<usize>) {
        if self.role == Role::Leader {
            self.fail_pending(ctx, leader);
        }
        if self.role != Role::Follower || self.election_timer.is_none() {
            self.reset_election_timer(ctx);
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        self.answered.clear();
    }

    /// Answer every waiting client `NotLeader`: a retry (same seq) is safe,
    /// the session table applies a command once.
    fn fail_pending(&mut self, ctx: &mut Context<'_, RaftMsg>, leader: Option<usize>) {
        let leader = leader.map(|i| self.cfg.replicas[i]);
        for (_, waiters) in std::mem::take(&mut self.pending) {
            for w in waiters {
                ctx.send(
                    w.node,
                    RaftMsg::Reply {
                        seq: w.seq,
                        outcome: Outcome::NotLeader { leader },
                    },
                );
            }
        }
    }

    fn start_election(&mut self, ctx: &mut Context<'_, RaftMsg>) {
        if self.hard.repair.is_some() || self.mute {
            // Corruption cost this replica synced entries (or its vote):
            // it stands for nothing until a leader restores its log.
            self.reset_election_timer(ctx);
            return;
        }
        let hard = HardState {
            term: self.hard.term + 1,
            voted_for: Some(self.cfg.me),
            ..self.hard
        };
        self.reset_election_timer(ctx);
        if !self.persist_hard(ctx, hard) {
            return;
        }
        self.hard = hard;
        self.role = Role::Candidate;
        self.leader = None;
        self.votes = BTreeSet::from([self.cfg.me]);
        self.answered = BTreeSet::from([self.cfg.me]);
        tracing::info!(
            term = hard.term,
            last = self.last(),
            "election timeout; candidate"
        );
        if self.votes.len() >= self.majority() {
            self.become_leader(ctx);
            return;
        }
        self.request_votes(ctx);
    }

    fn request_votes(&mut self, ctx: &mut Context<'_, RaftMsg>) {
        let msg = RaftMsg::RequestVote {
            term: self.hard.term,
            last_index: self.last(),
            last_term: self.term_at(self.last()),
        };
        let ask: Vec<usize> = self
            .peers()
            .filter(|p| !self.answered.contains(p))
            .collect();
        for p in ask {
            ctx.send(self.cfg.replicas[p], msg.clone());
        }
    }

    fn become_leader(&mut self, ctx: &mut Context<'_, RaftMsg>) {
        tracing::info!(term = self.hard.term, votes = ?self.votes, "elected leader");
        self.role = Role::Leader;
        self.leader = Some(self.cfg.me);
        self.stop_election_timer(ctx);
        let next = self.last() + 1;
        self.next = vec![next; self.n()];
        self.matched = vec![0; self.n()];
        self.acked_at = vec![0; self.n()];
        self.sent_from = vec![0; self.n()];
        self.term_start = u64::MAX;
        self.append_noop(ctx);
        self.broadcast_append(ctx);
        self.advance_commit(ctx);
    }

    /// Append the no-op of my term (`term_start` is its index); until it
    /// is in my log (a disk error), `term_start` stays `u64::MAX`, nothing
    /// of earlier terms commits, and every heartbeat tries again.
    fn append_noop(&mut self, ctx: &mut Context<'_, RaftMsg>) {
        let next = self.last() + 1;
        let noop = Entry {
            term: self.hard.term,
            client: NOOP_CLIENT,
            seq: 0,
            cmd: Cmd::Noop,
        };
        if self.append_synced(ctx, noop) {
            self.term_start = next;
        } else {
            tracing::warn!("could not append the no-op of my term; trying again next heartbeat");
        }
    }

    // ------------------------------------------------------------ leader

    fn send_append(&mut self, ctx: &mut Context<'_, RaftMsg>, peer: usize) {
        let next = self.next[peer].clamp(1, self.last() + 1);
        let prev_index = next - 1;
        let to = (prev_index as usize + MAX_BATCH).min(self.log.len());
        let entries = self.log[prev_index as usize..to].to_vec();
        // Pipelining: assume they arrive; a rejection moves `next` back.
        self.sent_from[peer] = next;
        self.next[peer] = to as u64 + 1;
        ctx.send(
            self.cfg.replicas[peer],
            RaftMsg::AppendEntries {
                term: self.hard.term,
                prev_index,
                prev_term: self.term_at(prev_index),
                entries,
                commit: self.commit,
                sent: self.lease_clock(ctx),
            },
        );
    }

    /// The clock leases are measured on: monotonic (wall under a planted bug), ns.
    fn lease_clock(&self, ctx: &Context<'_, RaftMsg>) -> u64 {
        let t = if self.bug == Some(RaftBug::LeaseOnWallClock) {
            ctx.wall_clock()
        } else {
            ctx.now()
        };
        u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether I lead under a lease now: a majority (me included)
    /// acknowledged heartbeats sent within the last `lease_ms`, and I
    /// applied everything committed before my term.
    fn lease_holds(&self, ctx: &Context<'_, RaftMsg>) -> bool {
        if self.cfg.lease_ms == 0
            || self.role != Role::Leader
            || self.commit < self.term_start
            || self.applied < self.commit
        {
            return false;
        }
        let now = self.lease_clock(ctx);
        let mut times: Vec<u64> = self
            .peers()
            .map(|p| self.acked_at[p])
            .chain(std::iter::once(now))
            .collect();
        times.sort_unstable_by(|a, b| b.cmp(a));
        let start = times[self.n() / 2];
        start > 0 && now < start.saturating_add(self.cfg.lease_ms * 1_000_000)
    }

    fn broadcast_append(&mut self, ctx: &mut Context<'_, RaftMsg>) {
        self.heard_at = ctx.now();
        let peers: Vec<usize> = self.peers().collect();
        for p in peers {
            self.send_append(ctx, p);
        }
    }

    /// Commit the highest index a quorum holds, if it is of my term.
    fn advance_commit(&mut self, ctx: &mut Context<'_, RaftMsg>) {
        if self.role != Role::Leader {
            return;
        }
        // My own copy counts once it is durable.
        self.matched[self.cfg.me] = self.synced.min(self.last());
        let mut held = self.matched.clone();
        held.sort_unstable_by(|a, b| b.cmp(a));
        let n = held[self.commit_quorum() - 1];
        if n > self.commit && self.term_at(n) == self.hard.term {
            tracing::debug!(from = self.commit, to = n, "committed");
            self.commit = n;
            self.apply(ctx);
        }
    }

    fn on_request(
        &mut self,
        ctx: &mut Context<'_, RaftMsg>,
        from: NodeId,
        client: u64,
        seq: u64,
        cmd: Cmd,
    ) {
        let reply = |ctx: &mut Context<'_, RaftMsg>, outcome: Outcome| {
            ctx.send(from, RaftMsg::Reply { seq, outcome });
        };
        if self.role != Role::Leader {
            reply(
                ctx,
                Outcome::NotLeader {
                    leader: self.leader_id(),
                },
            );
            return;
        }
        if client == NOOP_CLIENT || cmd == Cmd::Noop {
            let reason = "client 0 and no-op commands are the leader's own".to_string();
            reply(ctx, Outcome::Unavailable { reason });
            return;
        }
        if let Cmd::Read { key } = &cmd {
            if self.lease_holds(ctx) {
                let value = self.data.get(key).copied();
                tracing::debug!(key = %key, "read answered under the lease");
                reply(ctx, Outcome::Ok(value));
                return;
            }
            if self.bug == Some(RaftBug::StaleRead) {
                // Planted bug: no check that a majority still follows me.
                let value = self.data.get(key).copied();
                tracing::debug!(key = %key, "read answered locally (planted bug)");
                reply(ctx, Outcome::Ok(value));
                return;
            }
        }
        if let Some(s) = self.sessions.get(&client) {
            if seq == s.seq {
                // Applied already (committed): its first outcome.
                reply(ctx, s.outcome.clone());
                return;
            }
            if seq < s.seq {
                tracing::debug!(
                    client,
                    seq,
                    "an old command of a client that moved on; ignored"
                );
                return;
            }
        }
        // A retry of a command still waiting: answer this sender instead.
        for waiters in self.pending.values_mut() {
            if let Some(w) = waiters
                .iter_mut()
                .find(|w| w.client == client && w.seq == seq)
            {
                w.node = from;
                return;
            }
        }
        let waiting: usize = self.pending.values().map(Vec::len).sum();
        if waiting >= self.cfg.max_pending {
            let reason = format!("{waiting} requests in flight (max_pending)");
            reply(ctx, Outcome::Unavailable { reason });
            return;
        }
        let entry = Entry {
            term: self.hard.term,
            client,
            seq,
            cmd,
        };
        if !self.append_synced(ctx, entry) {
            let reason = format!(
                "the log is full or the disk failed (max_log {})",
                self.cfg.max_log
            );
            reply(ctx, Outcome::Unavailable { reason });
            return;
        }
        let index = self.last();
        self.pending.entry(index).or_default().push(Waiter {
            node: from,
            client,
            seq,
        });
        self.broadcast_append(ctx);
        self.advance_commit(ctx);
    }

    fn on_append_reply(
        &mut self,
        ctx: &mut Context<'_, RaftMsg>,
        peer: usize,
        success: bool,
        index: u64,
    ) {
        let index = index.min(self.last());
        if success {
            self.matched[peer] = self.matched[peer].max(index);
            self.next[peer] = self.next[peer].max(self.matched[peer] + 1);
            self.advance_commit(ctx);
            if self.next[peer] <= self.last() {
                self.send_append(ctx, peer);
            }
        } else {
            if index <= self.matched[peer] {
                // Replies come in order: the follower has lost entries it
                // acknowledged (a damaged synced entry cut its log, see
                // `HardState::repair`). Send them again; the commit point
                // never moves back.
                tracing::warn!(
                    peer,
                    index,
                    matched = self.matched[peer],
                    "a follower lost acknowledged entries"
                );
                self.matched[peer] = index.saturating_sub(1);
            }
            self.next[peer] = index.max(self.matched[peer] + 1).max(1);
            // Again from where the last request started: the heartbeat
            // retries it (no storm of refusals when a log cannot match).
            if self.next[peer] != self.sent_from[peer] {
                self.send_append(ctx, peer);
            }
        }
    }

    // ------------------------------------------------------------ follower

    fn on_request_vote(
        &mut self,
        ctx: &mut Context<'_, RaftMsg>,
        from: NodeId,
        candidate: usize,
        term: u64,
        last_index: u64,
        last_term: u64,
    ) {
        if self.cfg.lease_ms > 0
            && self.leader.is_some_and(|l| l != candidate)
            && ctx.now().saturating_sub(self.heard_at)
                < Duration::from_millis(self.cfg.election_min_ms)
        {
            // A leader may hold a lease: no vote, not even a newer term,
            // until an election timeout has passed without it.
            return;
        }
        if self.bug == Some(RaftBug::VoteNotPersisted) && term > self.hard.term {
            // Planted bug: this handler moves to the candidate's term in
            // memory only (and below, votes in memory only).
            self.hard = HardState {
                term,
                voted_for: None,
                ..self.hard
            };
            self.become_follower(ctx, None);
        } else if !self.observe_term(ctx, term, false) {
            return;
        }
        let my_last_term = self.term_at(self.last());
        let up_to_date = last_term > my_last_term
            || (last_term == my_last_term && last_index >= self.last())
            || self.bug == Some(RaftBug::VoteIgnoresLog);
        let free = self.hard.voted_for.is_none() || self.hard.voted_for == Some(candidate);
        // A replica repairing its log compares with what it lost too.
        let covers_lost = self
            .hard
            .repair
            .is_none_or(|(index, t)| last_term > t || (last_term == t && last_index >= index));
        let mut granted = term == self.hard.term && free && up_to_date && covers_lost && !self.mute;
        if granted && self.hard.voted_for != Some(candidate) {
            let hard = HardState {
                term,
                voted_for: Some(candidate),
                ..self.hard
            };
            if self.bug == Some(RaftBug::VoteNotPersisted) {
                // Planted bug: the vote lives in memory only.
                self.hard = hard;
            } else if self.persist_hard(ctx, hard) {
                self.hard = hard;
            } else {
                granted = false;
            }
        }
        if granted {
            tracing::info!(term, candidate, "vote granted");
            self.reset_election_timer(ctx);
        }
        ctx.send(
            from,
            RaftMsg::Vote {
                term: self.hard.term,
                granted,
            },
        );
    }

    fn on_vote(&mut self, ctx: &mut Context<'_, RaftMsg>, peer: usize, term: u64, granted: bool) {
        if !self.observe_term(ctx, term, false) {
            return;
        }
        if self.role != Role::Candidate || term != self.hard.term {
            return;
        }
        self.answered.insert(peer);
        if granted {
            self.votes.insert(peer);
            if self.votes.len() >= self.majority() {
                self.become_leader(ctx);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_append_entries(
        &mut self,
        ctx: &mut Context<'_, RaftMsg>,
        from: NodeId,
        leader: usize,
        (term, sent): (u64, u64),
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
    ) {
        let reply = |ctx: &mut Context<'_, RaftMsg>, term: u64, success: bool, index: u64| {
            ctx.send(
                from,
                RaftMsg::AppendReply {
                    term,
                    success,
                    index,
                    sent,
                },
            );
        };
        if term < self.hard.term {
            reply(ctx, self.hard.term, false, 0);
            return;
        }
        if !self.observe_term(ctx, term, true) {
            return;
        }
        self.invariant(
            self.role != Role::Leader,
            "another leader in my term (two leaders in one term)",
        );
        self.become_follower(ctx, Some(leader));
        self.heard_at = ctx.now();
        self.reset_election_timer(ctx);
        if prev_index > self.last() {
            reply(ctx, term, false, self.last() + 1);
            return;
        }
        if self.term_at(prev_index) != prev_term {
            // Back to the first entry of the conflicting term (never a committed one).
            let conflict = self.term_at(prev_index);
            let mut first = prev_index;
            while first > self.commit + 1 && self.term_at(first - 1) == conflict {
                first -= 1;
            }
            reply(ctx, term, false, first.max(1));
            return;
        }
        let mut matched = prev_index;
        for e in entries {
            let index = matched + 1;
            if index <= self.last() {
                if self.term_at(index) == e.term {
                    matched = index;
                    continue;
                }
                if !self.truncate(ctx, index) {
                    break;
                }
            }
            if !self.append(ctx, e) {
                break;
            }
            matched = index;
        }
        // Entries up to `matched` are the leader's: durable before the ack.
        if self.bug == Some(RaftBug::AckBeforeSync) {
            // Planted bug: acknowledged while perhaps in memory only.
        } else if !self.sync(ctx) {
            return; // no ack: the leader sends them again
        }
        let commit = leader_commit.min(matched);
        if commit > self.commit {
            self.commit = commit;
            self.apply(ctx);
        }
        reply(ctx, term, true, matched);
    }

    // ------------------------------------------------------------ state machine

    /// Apply what is committed, and answer the clients waiting for it.
    fn apply(&mut self, ctx: &mut Context<'_, RaftMsg>) {
        while self.applied < self.commit {
            let index = self.applied + 1;
            let e = self.log[index as usize - 1].clone();
            let outcome = self.apply_entry(index, &e);
            let prev = self.digests.last().copied().unwrap_or(0);
            let mut bytes = prev.to_le_bytes().to_vec();
            bytes.extend_from_slice(&serde_json::to_vec(&e).unwrap_or_default());
            self.digests.truncate(self.applied as usize);
            self.digests.push(fnv1a(&bytes));
            self.applied = index;
            if let Some(waiters) = self.pending.remove(&index) {
                for w in waiters {
                    let outcome = if (w.client, w.seq) == (e.client, e.seq) {
                        outcome.clone()
                    } else {
                        Outcome::NotLeader { leader: None }
                    };
                    ctx.send(
                        w.node,
                        RaftMsg::Reply {
                            seq: w.seq,
                            outcome,
                        },
                    );
                }
            }
        }
        self.check_invariants();
    }

    fn apply_entry(&mut self, index: u64, e: &Entry) -> Outcome {
        if e.client == NOOP_CLIENT {
            return Outcome::Ok(None);
        }
        if let Some(s) = self.sessions.get(&e.client) {
            if e.seq == s.seq {
                return s.outcome.clone();
            }
            if e.seq < s.seq {
                return Outcome::Unavailable {
                    reason: "superseded by a later command of this client".into(),
                };
            }
        }
        let outcome = match &e.cmd {
            Cmd::Noop => Outcome::Ok(None),
            Cmd::Read { key } => Outcome::Ok(self.data.get(key).copied()),
            Cmd::Write { key, value } => {
                self.data.insert(key.clone(), *value);
                Outcome::Ok(Some(*value))
            }
            Cmd::Cas { key, expected, new } => {
                let found = self.data.get(key).copied();
                if found == *expected {
                    self.data.insert(key.clone(), *new);
                    Outcome::Ok(Some(*new))
                } else {
                    Outcome::CasFailed(found)
                }
            }
        };
        self.sessions.insert(
            e.client,
            Session {
                seq: e.seq,
                outcome: outcome.clone(),
                index,
            },
        );
        if self.sessions.len() > MAX_SESSIONS {
            // Forget the least recently applied client (the same on every replica).
            if let Some((&oldest, _)) = self.sessions.iter().min_by_key(|(_, s)| s.index) {
                self.sessions.remove(&oldest);
            }
        }
        outcome
    }

    fn status(&self) -> RaftStatus {
        RaftStatus {
            me: self.cfg.me,
            term: self.hard.term,
            role: self.role,
            leader: self.leader_id(),
            last_index: self.last(),
            commit: self.commit,
            applied: self.applied,
            leading: self.role == Role::Leader && self.commit >= self.term_start,
        }
    }
}

impl Node for Raft {
    type Msg = RaftMsg;

    fn on_start(&mut self, ctx: &mut Context<'_, RaftMsg>) {
        if self.broken.is_none() && self.cfg.replicas[self.cfg.me] != ctx.me() {
            self.broken = Some(format!(
                "config says I am replica {} = {}, but I am {}",
                self.cfg.me,
                self.cfg.replicas[self.cfg.me],
                ctx.me()
            ));
        }
        if let Some(why) = &self.broken {
            tracing::error!(reason = %why, "bad raft config; this replica serves nothing");
            return;
        }
        self.rng = ChaCha8Rng::seed_from_u64(ctx.rng().gen());
        self.recover(ctx);
        tracing::info!(
            me = self.cfg.me,
            replicas = self.n(),
            bug = self.bug.map(RaftBug::name),
            "raft started"
        );
        self.reset_election_timer(ctx);
        ctx.schedule(
            Duration::from_millis(self.cfg.heartbeat_ms),
            RaftTimer::Tick,
        );
    }

    fn on_message(&mut self, ctx: &mut Context<'_, RaftMsg>, from: NodeId, msg: RaftMsg) {
        if let Some(why) = &self.broken {
            let outcome = Outcome::Unavailable {
                reason: why.clone(),
            };
            if let RaftMsg::Request { seq, .. } = msg {
                ctx.send(from, RaftMsg::Reply { seq, outcome });
            }
            return;
        }
        let peer = self.index_of(from).filter(|&p| p != self.cfg.me);
        match (msg, peer) {
            (RaftMsg::Request { client, seq, cmd }, _) => {
                self.on_request(ctx, from, client, seq, cmd)
            }
            (RaftMsg::Status, _) => ctx.send(from, RaftMsg::StatusReply(self.status())),
            (RaftMsg::Digest { index }, _) => {
                let digest = (index <= self.applied && index > 0)
                    .then(|| self.digests.get(index as usize - 1).copied())
                    .flatten();
                ctx.send(from, RaftMsg::DigestReply { index, digest });
            }
            (
                RaftMsg::RequestVote {
                    term,
                    last_index,
                    last_term,
                },
                Some(p),
            ) => self.on_request_vote(ctx, from, p, term, last_index, last_term),
            (RaftMsg::Vote { term, granted }, Some(p)) => self.on_vote(ctx, p, term, granted),
            (
                RaftMsg::AppendEntries {
                    term,
                    prev_index,
                    prev_term,
                    entries,
                    commit,
                    sent,
                },
                Some(p),
            ) => self.on_append_entries(
                ctx,
                from,
                p,
                (term, sent),
                prev_index,
                prev_term,
                entries,
                commit,
            ),
            (
                RaftMsg::AppendReply {
                    term,
                    success,
                    index,
                    sent,
                },
                Some(p),
            ) => {
                if !self.observe_term(ctx, term, false) {
                    return;
                }
                if self.role == Role::Leader && term == self.hard.term {
                    self.acked_at[p] = self.acked_at[p].max(sent);
                    self.on_append_reply(ctx, p, success, index);
                }
            }
            (other, _) => tracing::warn!(%from, msg = ?other, "unexpected message; ignored"),
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, RaftMsg>, timer: TimerId, tag: u64) {
        if self.broken.is_some() {
            return;
        }
        match RaftTimer::from_tag(tag) {
            Some(RaftTimer::Election) if self.election_timer == Some(timer) => {
                self.election_timer = None;
                if self.role != Role::Leader {
                    self.start_election(ctx);
                }
            }
            Some(RaftTimer::Tick) => {
                match self.role {
                    Role::Leader => {
                        if self.term_start == u64::MAX {
                            self.append_noop(ctx);
                        }
                        if self.synced < self.last() && self.sync(ctx) {
                            self.advance_commit(ctx);
                        }
                        self.broadcast_append(ctx)
                    }
                    Role::Candidate => self.request_votes(ctx),
                    Role::Follower => {}
                }
                ctx.schedule(
                    Duration::from_millis(self.cfg.heartbeat_ms),
                    RaftTimer::Tick,
                );
            }
            _ => {}
        }
    }
}

/// Spawn one replica per machine, in order, and return their ids (every
/// replica's config names the whole group).
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
    tweak: impl Fn(&mut RaftConfig),
) -> distzero::Result<Vec<NodeId>> {
    c.spawn_group(machines, KIND, |i, ids| {
        let mut cfg = RaftConfig::new(ids.to_vec(), i);
        tweak(&mut cfg);
        cfg
    })
}

/// Ask a replica its status (`None` if it does not answer in time).
pub fn status(
    c: &mut dyn Cluster,
    replica: NodeId,
    timeout: Duration,
) -> distzero::Result<Option<RaftStatus>> {
    match c.call::<RaftMsg, RaftMsg>(replica, &RaftMsg::Status, timeout) {
        Ok(RaftMsg::StatusReply(s)) => Ok(Some(s)),
        Ok(other) => Err(distzero::Error::Check(format!(
            "{replica} answered {other:?} to Status"
        ))),
        Err(e) if e.is_timeout() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u32) -> Vec<NodeId> {
        (0..n).map(|i| NodeId::new(MachineId(i), 0)).collect()
    }

    #[test]
    fn bugs_parse_and_name_themselves() {
        for b in RaftBug::ALL {
            assert_eq!(RaftBug::parse(b.name()), Some(b));
        }
        assert_eq!(
            RaftBug::parse("vote-not-persisted"),
            Some(RaftBug::VoteNotPersisted)
        );
        assert_eq!(RaftBug::parse("nope"), None);
    }

    #[test]
    fn bad_configs_are_refused_not_panicked() {
        let broken = |cfg: RaftConfig| Raft::new(cfg).broken;
        assert_eq!(
            broken(RaftConfig::new(vec![], 0)).as_deref(),
            Some("0 replicas; a group has 1 to 9")
        );
        assert_eq!(
            broken(RaftConfig::new(ids(3), 3)).as_deref(),
            Some("me = 3 but only 3 replicas")
        );
        let mut twice = ids(2);
        twice.push(twice[0]);
        assert!(broken(RaftConfig::new(twice, 0))
            .unwrap()
            .contains("named twice"));
        let mut cfg = RaftConfig::new(ids(3), 0);
        cfg.election_min_ms = 60;
        assert!(broken(cfg).unwrap().contains("election timeouts"));
        let mut cfg = RaftConfig::new(ids(3), 0);
        cfg.bug = Some("bogus".into());
        assert!(broken(cfg)
            .unwrap()
            .starts_with("unknown bug `bogus` (known: vote-not-persisted,"));
        let mut cfg = RaftConfig::new(ids(3), 1);
        cfg.bug = Some("no-reelection".into());
        assert_eq!(cfg.validate(), Ok(Some(RaftBug::NoReelection)));
        assert_eq!(RaftConfig::new(ids(1), 0).validate(), Ok(None));
    }

    #[test]
    fn config_defaults() {
        let cfg: RaftConfig = serde_json::from_str(r#"{"replicas":[],"me":0}"#).unwrap();
        assert_eq!(
            (cfg.heartbeat_ms, cfg.election_min_ms, cfg.election_max_ms),
            (50, 150, 300)
        );
        assert_eq!((cfg.max_log, cfg.max_pending, cfg.bug), (4096, 64, None));
    }

    #[test]
    fn commit_quorum_is_a_majority_unless_planted() {
        let r = Raft::new(RaftConfig::new(ids(3), 0));
        assert_eq!(r.commit_quorum(), 2);
        let mut cfg = RaftConfig::new(ids(3), 0);
        cfg.bug = Some("commit-without-majority".into());
        assert_eq!(Raft::new(cfg).commit_quorum(), 1);
        assert_eq!(Raft::new(RaftConfig::new(ids(5), 0)).commit_quorum(), 3);
    }

    #[test]
    fn state_machine_applies_a_command_once() {
        let mut r = Raft::new(RaftConfig::new(ids(1), 0));
        let e = |seq, cmd| Entry {
            term: 1,
            client: 7,
            seq,
            cmd,
        };
        let w = e(
            1,
            Cmd::Write {
                key: "k".into(),
                value: 5,
            },
        );
        assert_eq!(r.apply_entry(1, &w), Outcome::Ok(Some(5)));
        let cas = e(
            2,
            Cmd::Cas {
                key: "k".into(),
                expected: Some(5),
                new: 6,
            },
        );
        assert_eq!(r.apply_entry(2, &cas), Outcome::Ok(Some(6)));
        // The same cas again (a retry): its first outcome, not a failure.
        assert_eq!(r.apply_entry(3, &cas), Outcome::Ok(Some(6)));
        let stale = e(
            3,
            Cmd::Cas {
                key: "k".into(),
                expected: Some(5),
                new: 7,
            },
        );
        assert_eq!(r.apply_entry(4, &stale), Outcome::CasFailed(Some(6)));
        assert_eq!(
            r.apply_entry(5, &e(4, Cmd::Read { key: "k".into() })),
            Outcome::Ok(Some(6))
        );
        assert_eq!(r.data.get("k"), Some(&6));
    }
}
