//! A linearizability checker: the Wing–Gong search with Lowe's just-in-time
//! linearization and a memo of (linearized set, model state), as in
//! Porcupine, on any [`Model`].
//!
//! # How it works
//!
//! Every operation has a call entry and a return entry; entries are sorted
//! by time (calls before returns at equal times, so ties count as concurrent:
//! the checker never rejects on an ordering it cannot see). The search walks
//! the list of entries: at a call it tries to linearize the operation now
//! (the model must accept its input and output in the current state); at a
//! return of an operation not yet linearized it backtracks. A memo of every
//! (set of linearized operations, state) reached prunes repeated work.
//!
//! Operations with no return ([`Operation::ret`] = `None`, Jepsen's `info`)
//! get a return entry after everything else: they may be linearized at any
//! point after their call, or never: the search succeeds as soon as every
//! operation that did return is linearized.
//!
//! Pruning beyond Porcupine's memo, each checked against a brute-force
//! enumeration of orders in the tests:
//!
//! - read-only operations ([`Model::read_only`]) are linearized as soon as
//!   they can be, without trying later positions; open ones are never tried;
//! - a configuration's closed candidates are tried before its open ones, and
//!   (S, s) covers (S plus open operations, s): an open op may also never
//!   happen; the memo is probed for the set without all its open ops and
//!   without each one;
//! - of several identical open ops only the earliest unlinearized is tried,
//!   and an open op right after another open op is skipped when the first
//!   changes nothing (a blind write after a write);
//! - an open op that [`Model::removable`] says may go (a write whose value no
//!   operation observes) is dropped before the search.
//!
//! # Partitions, interleaved
//!
//! [`Model::partition`] splits a history into independent parts
//! (P-compositionality: a map is linearizable iff each key is). The parts
//! are searched *interleaved*, smallest first: in round `r` every part not
//! yet decided runs until it has spent `4096 · 2^r` steps in all, then the
//! next part gets its turn. So a part refuted in a thousand steps is found
//! after a few thousand steps of each other part, however hard they are,
//! and the check stops at the first refuted part. A linearizable verdict
//! needs every part decided. The schedule counts steps, not time, so a
//! history gets the same verdict and message on any machine, unless the
//! wall-time budget itself cuts in.
//!
//! # Bounds
//!
//! A [`Budget`] bounds the steps, the wall time and the memory of the
//! search. The clock is read every 0.1 to 1 ms of search (every 4,096
//! steps at most, more often when steps are slow), between parts, and
//! before the memo grows (growing a big memo takes time: the checker
//! predicts it from the last growth and stops first if it would overrun),
//! so the search stops within a few milliseconds of [`Budget::max_time`]. Memory is accounted, not
//! measured: the memo (16 bytes per slot, at most 3/4 full, both tables
//! while it grows), the table of distinct model states
//! ([`Model::state_heap_bytes`]), and the entries and stacks of each
//! search; a part whose search would go over [`Budget::max_memory`] (with
//! the other live parts) is given up, the largest live search first, and
//! the others go on: a violation elsewhere is still found, and otherwise
//! the verdict is [`Verdict::Unknown`], naming the part and the bound.
//!
//! Cost: linearizable histories check in roughly linear time. Refuting one
//! (proving no order exists) explores every reachable configuration; with
//! many concurrent operations, or many open ones (each open op used to
//! explain a read forks the configurations for the rest of the history),
//! that number grows exponentially, and a large non-linearizable part may
//! end in [`Verdict::Unknown`] at the budget.
//!
//! # Counterexamples
//!
//! When a part fails, the checker shrinks it to a small set of operations
//! that still cannot be ordered: first it drops every operation called after
//! the furthest entry the search ever reached (the search on the rest fails
//! identically), then it tries keeping only the read the search was blocked
//! on among the reads, then runs Zeller's ddmin (keep one chunk, remove one
//! chunk, down to single operations) while the rest stays non-linearizable,
//! but only with deletions that [`Model::removable`] allows: those after
//! which a linearizable history stays linearizable. So the counterexample is
//! a witness (a stale read keeps a write it could have read from, instead of
//! shrinking to "a read of a value never written"). Last, when the result
//! has at most 16 operations, smaller subsets of it are tried, fewest
//! operations first, so the report is the smallest witness found there. It
//! is 1-minimal under that rule when [`Failure::minimal`] says so; if the
//! shrinking budget ([`Budget::minimize_time`]) ran out first, the report
//! says "not minimized".
//!
//! Determinism: the search order depends only on the input; the memo is a
//! hash table whose iteration order is never observed. It keeps each
//! configuration as a 128-bit fingerprint (a false match has odds of 2^-128
//! per pair). Only the time budget can change a verdict, and only to
//! [`Verdict::Unknown`].

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::{Duration, Instant};

/// One operation as the checker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    pub input: I,
    pub output: O,
    /// When it was invoked.
    pub call: Duration,
    /// When it completed; `None`: unknown outcome, it may take effect at any
    /// time after `call`, or never.
    pub ret: Option<Duration>,
}

/// A part of a history, checked on its own: indices into the operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// What the part is, for reports (a key, for maps).
    pub label: Option<String>,
    pub ops: Vec<usize>,
}

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash;
    /// Equal inputs (with equal outputs) are interchangeable: the search
    /// uses that to try only one of several identical open operations.
    type Input: PartialEq;
    type Output: PartialEq;

    fn init(&self) -> Self::State;

    /// The state after `input` returned `output` in `state`, or `None` if
    /// that cannot happen. An unknown outcome is an output too: step must
    /// then accept it when the operation could have taken effect.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;

    /// Independent parts. Default: one part with everything.
    fn partition(&self, ops: &[Operation<Self::Input, Self::Output>]) -> Vec<Partition> {
        vec![Partition {
            label: None,
            ops: (0..ops.len()).collect(),
        }]
    }

    /// Whether `input` with `output` never changes the state, in any state
    /// (a read). The search then linearizes it as soon as it can, without
    /// trying the orders where it comes later (they add nothing), and never
    /// linearizes one with no return (it constrains nothing). Default: no.
    fn read_only(&self, input: &Self::Input, output: &Self::Output) -> bool {
        let _ = (input, output);
        false
    }

    /// Whether removing `removed` from a history, leaving `kept`, keeps it
    /// linearizable whenever it was. Shrinking a counterexample removes
    /// operations only when this holds, so what it reports is a witness: it
    /// cannot be linearized, and if the history could, so could it.
    /// Removing an operation that changes nothing (a read) is always safe;
    /// removing a write is safe when no kept operation observes what it
    /// wrote. Default: never (only the always-safe cut of operations called
    /// after the point where the search failed applies).
    fn removable(
        &self,
        removed: &[&Operation<Self::Input, Self::Output>],
        kept: &[&Operation<Self::Input, Self::Output>],
    ) -> bool {
        let _ = (removed, kept);
        false
    }

    /// Heap bytes a state owns beyond `size_of::<State>()`, for the memory
    /// budget: an estimate, better too high than too low. Default: none.
    fn state_heap_bytes(&self, state: &Self::State) -> usize {
        let _ = state;
        0
    }
}

/// The memory bound of [`Budget::default`]: 1 GiB.
pub const DEFAULT_MAX_MEMORY: usize = 1 << 30;

/// How long and how big the checker may search before it answers
/// [`Verdict::Unknown`].
///
/// The search (over all parts) stops at the first of `max_steps`,
/// `max_time` and `max_memory`; shrinking a counterexample then gets
/// `minimize_time` more (and the same memory bound). So a check returns
/// within `max_time` (to a few milliseconds: the clock is read about every
/// millisecond of search and before the memo grows), plus `minimize_time`
/// when it found a violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Search steps over all parts (one step: one entry visited). Also the
    /// bound of each search while shrinking.
    pub max_steps: Option<u64>,
    /// Wall time of the search over all parts.
    pub max_time: Option<Duration>,
    /// Bytes the searches may hold at once, as the checker accounts them
    /// (memo, distinct model states, entries and stacks; see the module
    /// docs): a part that would go over is given up (the largest live one
    /// first) and, unless another part is refuted, the verdict is
    /// `Unknown`, naming it. The process's own peak is higher by the
    /// history itself and allocator slack. Default: [`DEFAULT_MAX_MEMORY`].
    pub max_memory: Option<usize>,
    /// Extra wall time for shrinking a counterexample; when it runs out, the
    /// counterexample is reported as is, with `minimal: false`.
    pub minimize_time: Duration,
}

impl Default for Budget {
    /// One minute of search, 1 GiB, ten seconds of shrinking.
    fn default() -> Self {
        Budget {
            max_steps: None,
            max_time: Some(Duration::from_secs(60)),
            max_memory: Some(DEFAULT_MAX_MEMORY),
            minimize_time: Duration::from_secs(10),
        }
    }
}

impl Budget {
    /// No limit on the search's steps or time (shrinking still gets ten
    /// seconds, and memory stays bounded by [`DEFAULT_MAX_MEMORY`]: lift it
    /// with `with_memory(None)`).
    pub fn unlimited() -> Self {
        Budget {
            max_steps: None,
            max_time: None,
            ..Budget::default()
        }
    }

    /// At most `n` search steps, no time limit.
    pub fn steps(n: u64) -> Self {
        Budget {
            max_steps: Some(n),
            max_time: None,
            ..Budget::default()
        }
    }

    /// At most `d` of wall time.
    pub fn time(d: Duration) -> Self {
        Budget {
            max_steps: None,
            max_time: Some(d),
            ..Budget::default()
        }
    }

    /// This budget with `max_memory` set (bytes; `None`: unbounded).
    pub fn with_memory(self, bytes: impl Into<Option<usize>>) -> Self {
        Budget {
            max_memory: bytes.into(),
            ..self
        }
    }

    /// This budget with `minimize_time` set.
    pub fn with_minimize_time(self, d: Duration) -> Self {
        Budget {
            minimize_time: d,
            ..self
        }
    }
}

/// What a check returns besides its verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Also find a linearization order when the verdict is linearizable
    /// ([`Report::witness`]).
    pub witness: bool,
}

/// A check's verdict, with a witness order if asked for, and what it cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report<T> {
    pub verdict: Verdict<T>,
    /// With [`Options::witness`], for a linearizable verdict: the operations
    /// that took effect, in an order that is a valid linearization (the
    /// model accepts them in this order from its initial state, and no
    /// operation comes before one that returned before it was called).
    /// Operations of unknown outcome that need not have happened are left
    /// out, and so are those dropped before the search (see the module
    /// docs).
    pub witness: Option<Vec<T>>,
    pub stats: Stats,
}

/// What a check cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Search steps over all parts (shrinking not counted).
    pub steps: u64,
    /// Wall time, shrinking included.
    pub elapsed: Duration,
    /// The most bytes accounted at once (see [`Budget::max_memory`]).
    pub peak_memory: usize,
    /// Parts of the history (keys, for maps).
    pub partitions: usize,
    /// Parts found linearizable.
    pub linearizable_partitions: usize,
}

impl<T> Report<T> {
    /// Describe operations differently.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> Report<U> {
        Report {
            verdict: self.verdict.map(&mut f),
            witness: self.witness.map(|w| w.into_iter().map(&mut f).collect()),
            stats: self.stats,
        }
    }
}

impl<T: fmt::Display> fmt::Display for Report<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.verdict)
    }
}

/// The answer of a check, with operations described as `T`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict<T> {
    Linearizable,
    NotLinearizable(Failure<T>),
    /// The budget ran out first; the reason says which bound, where, and
    /// what made that part expensive.
    Unknown(String),
}

/// A part that cannot be linearized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure<T> {
    /// The failing part's label (its key, for maps).
    pub partition: Option<String>,
    /// How many operations the failing part has.
    pub partition_size: usize,
    /// Operations that cannot be ordered, in call order.
    pub ops: Vec<T>,
    /// Whether shrinking finished: no single op can be removed from `ops`
    /// (as [`Model::removable`] allows) with the rest still
    /// non-linearizable. False if shrinking ran out of time or budget: the
    /// ops still cannot be ordered, but fewer might show it.
    pub minimal: bool,
}

impl<T> Verdict<T> {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    pub fn is_not_linearizable(&self) -> bool {
        matches!(self, Verdict::NotLinearizable(_))
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Verdict::Unknown(_))
    }

    /// The failure, if not linearizable.
    pub fn failure(&self) -> Option<&Failure<T>> {
        match self {
            Verdict::NotLinearizable(f) => Some(f),
            _ => None,
        }
    }

    /// Describe operations differently.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Verdict<U> {
        match self {
            Verdict::Linearizable => Verdict::Linearizable,
            Verdict::Unknown(r) => Verdict::Unknown(r),
            Verdict::NotLinearizable(fail) => Verdict::NotLinearizable(Failure {
                partition: fail.partition,
                partition_size: fail.partition_size,
                ops: fail.ops.into_iter().map(f).collect(),
                minimal: fail.minimal,
            }),
        }
    }
}

impl<T: fmt::Display> fmt::Display for Verdict<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::Unknown(reason) => write!(f, "unknown: {reason}"),
            Verdict::NotLinearizable(fail) => write!(f, "{fail}"),
        }
    }
}

impl<T: fmt::Display> fmt::Display for Failure<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not linearizable")?;
        if let Some(p) = &self.partition {
            write!(f, " on key {p:?}")?;
        }
        let these = if self.ops.len() == 1 { "this" } else { "these" };
        write!(
            f,
            ": {these} {} of its {} operations cannot be ordered ({}):",
            self.ops.len(),
            self.partition_size,
            if self.minimal {
                "minimal"
            } else {
                "not minimized: the shrinking budget ran out"
            }
        )?;
        for op in &self.ops {
            write!(f, "\n  {op}")?;
        }
        Ok(())
    }
}

/// Check `ops` against `model`. Failures name operations by their index in
/// `ops`.
pub fn check<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    budget: &Budget,
) -> Verdict<usize> {
    check_with(model, ops, budget, &Options::default()).verdict
}

/// Steps of the first round of the schedule (see the module docs).
const FIRST_SLICE: u64 = 4096;

/// Where a part is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Pending,
    Running,
    Linearizable,
    /// Given up at this many bytes accounted.
    OutOfMemory(usize),
}

/// A part and what its search did.
struct Part {
    label: Option<String>,
    /// Its operations, as indices into the check's `ops`.
    all: Vec<usize>,
    /// Those searched (positions in `all`): without the open ops dropped.
    local: Vec<usize>,
    status: Status,
    steps: u64,
    configs: usize,
    peak_bytes: usize,
}

/// Why a search stopped before deciding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Its share of this round is spent.
    Slice,
    Time,
    Memory,
}

/// [`check`], with options and what it cost.
pub fn check_with<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    budget: &Budget,
    options: &Options,
) -> Report<usize> {
    let start = Instant::now();
    let until = budget.max_time.map(|d| start + d);
    let mut stats = Stats::default();
    let mut parts: Vec<Part> = Vec::new();
    for p in model.partition(ops) {
        if p.ops.iter().any(|&i| i >= ops.len()) {
            stats.elapsed = start.elapsed();
            return Report {
                verdict: Verdict::Unknown(format!(
                    "the model's partition {:?} names an operation out of range",
                    p.label
                )),
                witness: None,
                stats,
            };
        }
        parts.push(Part {
            label: p.label,
            all: p.ops,
            local: Vec::new(),
            status: Status::Pending,
            steps: 0,
            configs: 0,
            peak_bytes: 0,
        });
    }
    stats.partitions = parts.len();
    // Cheap parts first: by size, then as the model listed them.
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&p| (parts[p].all.len(), p));

    let mut searchers: Vec<Option<Searcher<'_, M>>> = (0..parts.len()).map(|_| None).collect();
    let mut witness: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut live_bytes = 0usize;
    let mut cap = FIRST_SLICE;
    let stopped: Option<Stop> = 'rounds: loop {
        let mut any_left = false;
        for &p in &order {
            if !matches!(parts[p].status, Status::Pending | Status::Running) {
                continue;
            }
            // Between parts too: many small parts may each take fewer steps
            // than a search takes between readings.
            if until.is_some_and(|u| Instant::now() >= u) {
                break 'rounds Some(Stop::Time);
            }
            if parts[p].status == Status::Pending {
                let Some(local) = droppable_filter(model, ops, &parts[p].all, until) else {
                    break 'rounds Some(Stop::Time);
                };
                let refs: Vec<_> = local.iter().map(|&k| &ops[parts[p].all[k]]).collect();
                parts[p].local = local;
                let s = Searcher::new(model, refs);
                live_bytes += s.bytes();
                searchers[p] = Some(s);
                parts[p].status = Status::Running;
            }
            while let Some(s) = searchers[p].as_mut() {
                let before = (s.steps, s.bytes());
                let mut end = cap.max(s.steps);
                if let Some(max) = budget.max_steps {
                    end = end.min(s.steps + max.saturating_sub(stats.steps));
                }
                let allowance = budget
                    .max_memory
                    .map(|m| m.saturating_sub(live_bytes - before.1));
                let result = s.run(&Limits {
                    end,
                    until,
                    memory: allowance,
                });
                stats.steps += s.steps - before.0;
                live_bytes = live_bytes - before.1 + s.bytes();
                stats.peak_memory = stats
                    .peak_memory
                    .max(live_bytes - s.bytes() + s.peak.max(s.bytes()));
                let part = &mut parts[p];
                part.steps = s.steps;
                part.configs = s.memo.len;
                part.peak_bytes = part.peak_bytes.max(s.bytes());
                match result {
                    Ok(Done::Linearizable(order)) => {
                        if options.witness {
                            witness.push((p, order));
                        }
                        part.status = Status::Linearizable;
                        stats.linearizable_partitions += 1;
                        live_bytes -= s.bytes();
                        searchers[p] = None;
                    }
                    Ok(Done::NotLinearizable { reached, blocked }) => {
                        // Free every search before shrinking.
                        let local: Vec<&Operation<_, _>> = s.ops.clone();
                        searchers.clear();
                        let verdict = refuted(
                            model,
                            ops,
                            &parts[p],
                            &local,
                            (reached, blocked),
                            budget,
                            &mut stats,
                        );
                        stats.elapsed = start.elapsed();
                        return Report {
                            verdict,
                            witness: None,
                            stats,
                        };
                    }
                    Err(Stop::Slice) => {
                        if budget.max_steps.is_some_and(|m| stats.steps >= m) {
                            break 'rounds Some(Stop::Slice);
                        }
                        any_left = true;
                    }
                    Err(Stop::Time) => break 'rounds Some(Stop::Time),
                    Err(Stop::Memory) => {
                        // Give up the largest live search (ties: the
                        // first part the model listed), then go on.
                        let victim = order
                            .iter()
                            .copied()
                            .filter(|&q| searchers[q].is_some())
                            .max_by_key(|&q| {
                                (
                                    searchers[q].as_ref().map_or(0, |s| s.bytes()),
                                    std::cmp::Reverse(q),
                                )
                            })
                            .unwrap_or(p);
                        let bytes = searchers[victim].as_ref().map_or(0, |s| s.bytes());
                        parts[victim].status = Status::OutOfMemory(bytes);
                        live_bytes -= bytes;
                        searchers[victim] = None;
                        if victim != p {
                            continue;
                        }
                    }
                }
                break;
            }
        }
        if !any_left {
            break None;
        }
        cap = cap.saturating_mul(2);
    };
    drop(searchers);
    let verdict = match stopped {
        None if parts.iter().all(|p| p.status == Status::Linearizable) => Verdict::Linearizable,
        stop => Verdict::Unknown(unknown_reason(ops, &parts, stop, budget, &stats, start)),
    };
    let witness =
        (options.witness && verdict.is_linearizable()).then(|| merge_witness(ops, &parts, witness));
    stats.elapsed = start.elapsed();
    Report {
        verdict,
        witness,
        stats,
    }
}

/// The positions in `all` to search: without open ops that
/// [`Model::removable`] lets go (a write nobody reads: whether it happened
/// changes nothing). `None` if the time ran out meanwhile.
fn droppable_filter<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    all: &[usize],
    until: Option<Instant>,
) -> Option<Vec<usize>> {
    let mut local: Vec<usize> = Vec::with_capacity(all.len());
    let mut others: Vec<&Operation<M::Input, M::Output>> = Vec::with_capacity(all.len());
    for (k, &i) in all.iter().enumerate() {
        let op = &ops[i];
        if op.ret.is_none() {
            if k % 16 == 0 && until.is_some_and(|u| Instant::now() >= u) {
                return None;
            }
            others.clear();
            others.extend(
                all.iter()
                    .enumerate()
                    .filter(|&(j, _)| j != k)
                    .map(|(_, &j)| &ops[j]),
            );
            if model.removable(&[op], &others) {
                continue;
            }
        }
        local.push(k);
    }
    Some(local)
}

/// The verdict on part `part`, refuted: shrink its counterexample.
fn refuted<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    part: &Part,
    local: &[&Operation<M::Input, M::Output>],
    (reached, blocked): (Vec<usize>, Option<usize>),
    budget: &Budget,
    stats: &mut Stats,
) -> Verdict<usize> {
    let mut shrink = Shrink {
        model,
        all: local,
        max_steps: budget.max_steps,
        until: Instant::now() + budget.minimize_time,
        memory: budget.max_memory,
        conclusive: true,
        peak: 0,
    };
    let (kept, minimal) = minimize(&mut shrink, reached, blocked);
    stats.peak_memory = stats.peak_memory.max(shrink.peak);
    let mut idx: Vec<usize> = kept.into_iter().map(|i| part.all[part.local[i]]).collect();
    idx.sort_by_key(|&i| (ops[i].call, i));
    Verdict::NotLinearizable(Failure {
        partition: part.label.clone(),
        partition_size: part.all.len(),
        ops: idx,
        minimal,
    })
}

/// Why the check is `Unknown`: the bound, where, and what made it hard.
fn unknown_reason<I, O>(
    ops: &[Operation<I, O>],
    parts: &[Part],
    stop: Option<Stop>,
    budget: &Budget,
    stats: &Stats,
    start: Instant,
) -> String {
    let name = |p: &Part| match &p.label {
        Some(l) => format!("key {l:?}"),
        None if parts.len() == 1 => "the history".to_string(),
        None => "a part".to_string(),
    };
    let mut out = format!(
        "budget exhausted after {} steps and {:.3}s: ",
        stats.steps,
        start.elapsed().as_secs_f64()
    );
    let undecided: Vec<&Part> = {
        let mut v: Vec<&Part> = parts
            .iter()
            .filter(|p| matches!(p.status, Status::Pending | Status::Running))
            .collect();
        v.sort_by_key(|p| std::cmp::Reverse(p.steps));
        v
    };
    let gave_up: Vec<&Part> = parts
        .iter()
        .filter(|p| matches!(p.status, Status::OutOfMemory(_)))
        .collect();
    match stop {
        Some(Stop::Time) => out.push_str(&format!(
            "the time budget ({:.3}s, Budget::max_time) ran out",
            budget.max_time.unwrap_or_default().as_secs_f64()
        )),
        Some(_) => out.push_str(&format!(
            "the step budget ({} steps, Budget::max_steps) ran out",
            budget.max_steps.unwrap_or_default()
        )),
        None => {}
    }
    // The hardest parts: those given up on memory, then the undecided ones
    // that took the most steps.
    let mut named = 0;
    for p in &gave_up {
        if named > 0 || stop.is_some() {
            out.push_str("; ");
        }
        let Status::OutOfMemory(bytes) = p.status else {
            continue;
        };
        out.push_str(&format!(
            "the memory budget ({}, Budget::max_memory) stopped the search on {} at {}, \
             when it needed more ({} configurations memoized, {} steps)",
            bytes_text(budget.max_memory.unwrap_or_default()),
            name(p),
            bytes_text(bytes),
            p.configs,
            p.steps,
        ));
        out.push_str(&format!(": {}", hardness(ops, p)));
        named += 1;
    }
    if let Some(p) = undecided.first() {
        out.push_str(&format!(
            "; the hardest part undecided: {} after {} steps ({} configurations memoized, {}): {}",
            name(p),
            p.steps,
            p.configs,
            bytes_text(p.peak_bytes),
            hardness(ops, p)
        ));
        if undecided.len() > 1 {
            let more: Vec<String> = undecided[1..].iter().take(5).map(|p| name(p)).collect();
            out.push_str(&format!(
                "; also undecided: {}{}",
                more.join(", "),
                if undecided.len() > 6 {
                    format!(" and {} more", undecided.len() - 6)
                } else {
                    String::new()
                }
            ));
        }
    }
    if parts.len() > 1 {
        out.push_str(&format!(
            "; {} of {} parts linearizable, none refuted",
            stats.linearizable_partitions,
            parts.len()
        ));
    }
    out
}

/// What makes a part expensive to search: its size, concurrency and open
/// operations (only mentioned when there are some).
fn hardness<I, O>(ops: &[Operation<I, O>], p: &Part) -> String {
    let part: Vec<&Operation<I, O>> = p.all.iter().map(|&i| &ops[i]).collect();
    let open = part.iter().filter(|o| o.ret.is_none()).count();
    let mut s = format!(
        "{} operations, up to {} concurrent",
        part.len(),
        concurrency(&part)
    );
    if open > 0 {
        s.push_str(&format!(
            ", {open} of unknown outcome (each may take effect at any later time, or never: \
             that multiplies the orders to try)"
        ));
    } else {
        s.push_str(" (every interleaving of concurrent operations is an order to try)");
    }
    s
}

/// The most operations in flight at once (an open one stays in flight).
fn concurrency<I, O>(ops: &[&Operation<I, O>]) -> usize {
    let mut events: Vec<(Duration, u8)> = Vec::with_capacity(2 * ops.len());
    for o in ops {
        events.push((o.call, 0));
        events.push((o.ret.unwrap_or(Duration::MAX).max(o.call), 1));
    }
    // Calls before returns at equal times: ties are concurrent.
    events.sort_unstable();
    let (mut now, mut most) = (0usize, 0usize);
    for (_, kind) in events {
        if kind == 0 {
            now += 1;
            most = most.max(now);
        } else {
            now -= 1;
        }
    }
    most
}

/// Bytes for humans.
fn bytes_text(b: usize) -> String {
    const KIB: f64 = 1024.0;
    let f = b as f64;
    if f >= KIB * KIB * KIB {
        format!("{:.2} GiB", f / (KIB * KIB * KIB))
    } else if f >= KIB * KIB {
        format!("{:.1} MiB", f / (KIB * KIB))
    } else if f >= KIB {
        format!("{:.1} KiB", f / KIB)
    } else {
        format!("{b} bytes")
    }
}

/// One order of all parts' linearizations: each op gets the earliest point
/// its part's order allows (no earlier than its call, nor than the point of
/// the op before it); sorting by point keeps every part's order and real
/// time across parts (an op that returned before another's call has a
/// smaller point), the argument of Herlihy and Wing's locality theorem.
fn merge_witness<I, O>(
    ops: &[Operation<I, O>],
    parts: &[Part],
    orders: Vec<(usize, Vec<usize>)>,
) -> Vec<usize> {
    let mut all: Vec<(Duration, usize, usize, usize)> = Vec::new();
    for (p, order) in orders {
        let part = &parts[p];
        let mut point = Duration::ZERO;
        for (pos, local) in order.into_iter().enumerate() {
            let i = part.all[part.local[local]];
            point = point.max(ops[i].call);
            all.push((point, p, pos, i));
        }
    }
    all.sort_unstable();
    all.into_iter().map(|(_, _, _, i)| i).collect()
}

/// Limits of one run of a search.
struct Limits {
    /// Stop when the search has taken this many steps in all.
    end: u64,
    until: Option<Instant>,
    /// Bytes the search may account.
    memory: Option<usize>,
}

/// How a search ended.
enum Done {
    /// The linearization found: local op indices in order.
    Linearizable(Vec<usize>),
    /// `reached`: the operations (local indices) called no later than the
    /// furthest entry the search visited; they alone are not linearizable.
    /// `blocked`: the op of the furthest return entry visited, the one
    /// that could not be linearized in time.
    NotLinearizable {
        reached: Vec<usize>,
        blocked: Option<usize>,
    },
}

/// Run a search to its end, within limits (for shrinking).
fn search<M: Model>(
    model: &M,
    ops: &[&Operation<M::Input, M::Output>],
    max_steps: Option<u64>,
    until: Option<Instant>,
    memory: Option<usize>,
    peak: &mut usize,
) -> Option<Done> {
    let mut s = Searcher::new(model, ops.to_vec());
    let r = s.run(&Limits {
        end: max_steps.unwrap_or(u64::MAX),
        until,
        memory,
    });
    *peak = (*peak).max(s.peak.max(s.bytes()));
    r.ok()
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    /// For a call: its return entry.
    ret: usize,
    /// A return that never happened (placed after every real return).
    open: bool,
}

/// The search on one part, resumable: [`Searcher::run`] goes on from where
/// it stopped. `ops` are local: results index into them.
struct Searcher<'a, M: Model> {
    model: &'a M,
    ops: Vec<&'a Operation<M::Input, M::Output>>,
    entries: Vec<Entry>,
    next: Vec<usize>,
    prev: Vec<usize>,
    call_pos: Vec<usize>,
    read_only: Vec<bool>,
    /// Identical open ops are interchangeable: only the earliest called one
    /// not yet linearized is tried. `twin[i]`: the previous identical open op.
    twin: Vec<usize>,
    linearized: Bitset,
    /// Each op's 128-bit code ([`Fp::of`]).
    codes: Vec<Fp>,
    memo: Memo,
    states: States<M::State>,
    /// Linearized calls (entries), with the state before each.
    stack: Vec<(usize, u32)>,
    state: u32,
    entry: usize,
    furthest: usize,
    furthest_ret: usize,
    /// Open ops (no return) linearized so far, and their fingerprint.
    open_on: Vec<usize>,
    open_fp: Fp,
    /// Each configuration's candidates are tried in two passes: closed ops
    /// first, then open ones, so configurations without open ops are
    /// reached (and memoised) before those they dominate.
    open_pass: bool,
    steps: u64,
    /// Bytes of the entries, links, stacks: fixed for the search.
    fixed_bytes: usize,
    /// The most bytes it held at once (both tables while the memo grew).
    peak: usize,
    /// When to read the clock next (a step count), how many steps apart,
    /// and when it was last read (see [`Searcher::read_clock`]).
    next_clock: u64,
    clock_gap: u64,
    last_clock: Option<Instant>,
}

impl<'a, M: Model> Searcher<'a, M> {
    fn new(model: &'a M, ops: Vec<&'a Operation<M::Input, M::Output>>) -> Self {
        let n = ops.len();
        // Entries in time order: (time, call before return, op). Open
        // returns sort after everything.
        let mut order: Vec<(Duration, bool, u8, usize)> = Vec::with_capacity(2 * n);
        for (i, op) in ops.iter().enumerate() {
            order.push((op.call, false, 0, i));
            match op.ret {
                Some(r) => order.push((r.max(op.call), false, 1, i)),
                None => order.push((Duration::MAX, true, 1, i)),
            }
        }
        order.sort_unstable();
        // Position 0 is the head; entries are 1..=2n, in order.
        let mut entries: Vec<Entry> = Vec::with_capacity(2 * n + 1);
        entries.push(Entry {
            op: NIL,
            is_call: false,
            ret: NIL,
            open: false,
        });
        let mut call_pos = vec![NIL; n];
        for &(_, open, kind, op) in &order {
            let pos = entries.len();
            if kind == 0 {
                call_pos[op] = pos;
                entries.push(Entry {
                    op,
                    is_call: true,
                    ret: NIL,
                    open: false,
                });
            } else {
                entries[call_pos[op]].ret = pos;
                entries.push(Entry {
                    op,
                    is_call: false,
                    ret: NIL,
                    open,
                });
            }
        }
        drop(order);
        let len = entries.len();
        let next: Vec<usize> = (1..=len).map(|i| if i == len { NIL } else { i }).collect();
        let mut prev: Vec<usize> = (0..len).map(|i| i.wrapping_sub(1)).collect();
        prev[HEAD] = NIL;
        let read_only: Vec<bool> = ops
            .iter()
            .map(|o| model.read_only(&o.input, &o.output))
            .collect();
        let mut twin = vec![NIL; n];
        let mut open_by_call: Vec<usize> = (0..n).filter(|&i| ops[i].ret.is_none()).collect();
        open_by_call.sort_by_key(|&i| call_pos[i]);
        for (k, &i) in open_by_call.iter().enumerate() {
            let same =
                |&&j: &&usize| ops[j].input == ops[i].input && ops[j].output == ops[i].output;
            if let Some(&j) = open_by_call[..k].iter().rev().find(same) {
                twin[i] = j;
            }
        }
        let mut states = States::default();
        let init = model.init();
        let extra = model.state_heap_bytes(&init);
        let state = states.intern(init, extra);
        let mut memo = Memo::for_ops(n);
        memo.insert(Fp::state(state).key());
        let word = std::mem::size_of::<usize>();
        let fixed_bytes = len * (std::mem::size_of::<Entry>() + 2 * word)
            + n * (2 * word // ops, call_pos
                + 1 // read_only
                + word // twin
                + std::mem::size_of::<(usize, u32)>() // stack
                + word // open_on
                + std::mem::size_of::<Fp>()) // codes
            + n.div_ceil(8);
        Searcher {
            model,
            ops,
            entries,
            next,
            prev,
            call_pos,
            read_only,
            twin,
            linearized: Bitset::new(n),
            codes: (0..n).map(Fp::of).collect(),
            memo,
            states,
            stack: Vec::with_capacity(n),
            state,
            entry: if len > 1 { 1 } else { NIL },
            furthest: 0,
            furthest_ret: NIL,
            open_on: Vec::with_capacity(n),
            open_fp: Fp::default(),
            open_pass: false,
            steps: 0,
            fixed_bytes,
            peak: 0,
            next_clock: 1,
            clock_gap: 1,
            last_clock: None,
        }
    }

    /// Bytes accounted to this search now.
    fn bytes(&self) -> usize {
        self.fixed_bytes + self.memo.bytes() + self.states.bytes
    }

    /// Search until decided, or until a limit stops it (then it may be run
    /// again, from where it stopped, with new limits).
    fn run(&mut self, lim: &Limits) -> Result<Done, Stop> {
        loop {
            if self.entry == NIL {
                return Ok(self.found());
            }
            if self.steps >= lim.end {
                return Err(Stop::Slice);
            }
            if self.memo.full() {
                self.grow_memo(lim)?;
            }
            if lim.memory.is_some_and(|m| self.bytes() > m) {
                return Err(Stop::Memory);
            }
            self.steps += 1;
            if self.steps >= self.next_clock {
                if let Some(until) = lim.until {
                    if self.read_clock() >= until {
                        return Err(Stop::Time);
                    }
                }
            }
            if let Some(done) = self.step() {
                return Ok(done);
            }
        }
    }

    /// Read the clock, and set when to read it next: reading it is cheap,
    /// but not that cheap, and steps may be slow (big model states), so
    /// the gap adapts to keep reads about 0.1 to 1 ms apart (at most 4,096
    /// steps).
    #[cold]
    fn read_clock(&mut self) -> Instant {
        let now = Instant::now();
        if let Some(last) = self.last_clock {
            let gap = now - last;
            if gap < Duration::from_micros(100) {
                self.clock_gap = (self.clock_gap * 2).min(4096);
            } else if gap > Duration::from_millis(1) {
                self.clock_gap = (self.clock_gap / 2).max(1);
            }
        }
        self.last_clock = Some(now);
        self.next_clock = self.steps + self.clock_gap;
        now
    }

    /// Double the memo, unless the memory or time limit forbids.
    #[cold]
    fn grow_memo(&mut self, lim: &Limits) -> Result<(), Stop> {
        let old = self.memo.bytes();
        let new = 2 * old;
        // Both tables live while it grows.
        if lim.memory.is_some_and(|m| self.bytes() + new > m) {
            return Err(Stop::Memory);
        }
        let now = Instant::now();
        if let Some(until) = lim.until {
            let expected = Duration::from_nanos(
                (self.memo.ns_per_slot * 2.0 * self.memo.slots.len() as f64) as u64,
            );
            if now + expected >= until {
                return Err(Stop::Time);
            }
        }
        self.memo.grow();
        self.peak = self.peak.max(self.bytes() + old);
        let took = now.elapsed().as_nanos() as f64 / self.memo.slots.len() as f64;
        // Keep the worst rate seen, with a margin: a bigger table is
        // slower per slot (caches, page faults).
        self.memo.ns_per_slot = self.memo.ns_per_slot.max(1.5 * took);
        Ok(())
    }

    /// The linearization found.
    fn found(&self) -> Done {
        Done::Linearizable(
            self.stack
                .iter()
                .map(|&(call, _)| self.entries[call].op)
                .collect(),
        )
    }

    /// One step of the search: visit the current entry. `Some` when decided.
    #[inline]
    fn step(&mut self) -> Option<Done> {
        let entry = self.entry;
        self.furthest = self.furthest.max(entry);
        let e = self.entries[entry];
        let mut backtrack = false;
        if e.is_call {
            let op = self.ops[e.op];
            let open = op.ret.is_none();
            let skip = open != self.open_pass
                || (open
                    && (self.read_only[e.op]
                        || (self.twin[e.op] != NIL && !self.linearized.get(self.twin[e.op]))));
            if skip {
                self.entry = self.next[entry];
                return None;
            }
            let before = self.states.get(self.state);
            if let Some(new_state) = self.model.step(before, &op.input, &op.output) {
                self.linearized.flip(e.op, self.codes[e.op]);
                if open {
                    self.open_on.push(e.op);
                    self.open_fp = self.open_fp.xor(self.codes[e.op]);
                }
                let fp = self.linearized.fp;
                let extra = self.model.state_heap_bytes(&new_state);
                let new = self.states.intern(new_state, extra);
                let code = Fp::state(new);
                let key = fp.xor(code).key();
                // An open op right after another open op, that would leave
                // the same state without it (a blind write after a write):
                // the configuration without the first one covers this, and
                // it is or will be tried from the same parent.
                let seen = self.memo.contains(key);
                let mut covered = seen
                    || open
                        && self.stack.last().is_some_and(|&(top, before)| {
                            self.ops[self.entries[top].op].ret.is_none()
                                && self
                                    .model
                                    .step(self.states.get(before), &op.input, &op.output)
                                    .as_ref()
                                    == Some(self.states.get(new))
                        });
                // Dominance: (S, s) covers (S + some open ops, s), since an
                // open op may also never happen. Check "without any open
                // op" and "without one open op".
                if !covered && !self.open_on.is_empty() {
                    covered = self.memo.contains(fp.xor(self.open_fp).xor(code).key());
                    for &o in self.open_on.iter().rev() {
                        if covered {
                            break;
                        }
                        covered = self.memo.contains(fp.xor(self.codes[o]).xor(code).key());
                    }
                }
                if !seen {
                    // Covered ones are remembered too, so their supersets
                    // are found one removal away.
                    self.memo.insert(key);
                }
                if !covered {
                    self.stack.push((entry, self.state));
                    self.state = new;
                    lift(&mut self.next, &mut self.prev, entry, e.ret);
                    self.entry = self.next[HEAD];
                    self.open_pass = false;
                    return None;
                }
                self.linearized.flip(e.op, self.codes[e.op]);
                if open {
                    self.open_on.pop();
                    self.open_fp = self.open_fp.xor(self.codes[e.op]);
                }
                // A read that can go now goes now: if that is a dead end
                // (covered configurations are fully explored ones), so is
                // this configuration.
                backtrack = self.read_only[e.op];
            }
            if !backtrack {
                self.entry = self.next[entry];
                return None;
            }
        } else if e.open {
            // Every op that returned is linearized; the rest may never happen.
            return Some(self.found());
        } else if !self.open_pass {
            if self.furthest_ret == NIL || entry > self.furthest_ret {
                self.furthest_ret = entry;
            }
            self.open_pass = true;
            self.entry = self.next[HEAD];
            return None;
        }
        // Backtrack: undo the last linearized op and try the next entry
        // after it; undo reads further (see above).
        loop {
            let Some((call, old)) = self.stack.pop() else {
                let n = self.ops.len();
                let reached = (0..n)
                    .filter(|&i| self.call_pos[i] <= self.furthest)
                    .collect();
                let blocked =
                    (self.furthest_ret != NIL).then(|| self.entries[self.furthest_ret].op);
                return Some(Done::NotLinearizable { reached, blocked });
            };
            self.state = old;
            let c = self.entries[call];
            self.linearized.flip(c.op, self.codes[c.op]);
            if self.ops[c.op].ret.is_none() {
                self.open_on.pop();
                self.open_fp = self.open_fp.xor(self.codes[c.op]);
            }
            unlift(&mut self.next, &mut self.prev, call, c.ret);
            if !self.read_only[c.op] {
                self.entry = self.next[call];
                self.open_pass = self.ops[c.op].ret.is_none();
                return None;
            }
        }
    }
}

/// The distinct model states a search reached, each kept once and named by
/// a number, so the memo holds numbers, not states.
struct States<S> {
    all: Vec<S>,
    /// State hash -> the first state with it.
    by_hash: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    /// States whose hash another state had first (rare).
    more: Vec<(u64, u32)>,
    /// Bytes accounted: each state, its heap, its place in the index.
    bytes: usize,
}

impl<S> Default for States<S> {
    fn default() -> Self {
        States {
            all: Vec::new(),
            by_hash: HashMap::default(),
            more: Vec::new(),
            bytes: 0,
        }
    }
}

impl<S: Eq + Hash> States<S> {
    #[inline]
    fn get(&self, id: u32) -> &S {
        &self.all[id as usize]
    }

    /// The number of `s` (whose heap is `heap` bytes), adding it if new.
    #[inline]
    fn intern(&mut self, s: S, heap: usize) -> u32 {
        let h = hash_of(&s);
        match self.by_hash.get(&h) {
            None => {
                let id = self.push(s, heap);
                self.by_hash.insert(h, id);
                id
            }
            Some(&id) if self.all[id as usize] == s => id,
            Some(_) => {
                if let Some(&(_, id)) = self
                    .more
                    .iter()
                    .find(|&&(k, id)| k == h && self.all[id as usize] == s)
                {
                    return id;
                }
                let id = self.push(s, heap);
                self.more.push((h, id));
                id
            }
        }
    }

    fn push(&mut self, s: S, heap: usize) -> u32 {
        let id = self.all.len() as u32;
        self.all.push(s);
        // Vec slot (up to twice, as it doubles) and index entry (~32 bytes).
        self.bytes += 2 * std::mem::size_of::<S>() + heap + 32;
        id
    }
}

/// The linearized set, with its fingerprint.
struct Bitset {
    words: Box<[u64]>,
    fp: Fp,
}

impl Bitset {
    fn new(n: usize) -> Self {
        Bitset {
            words: vec![0; n.div_ceil(64)].into_boxed_slice(),
            fp: Fp::default(),
        }
    }

    #[inline]
    fn get(&self, i: usize) -> bool {
        self.words[i / 64] & (1 << (i % 64)) != 0
    }

    /// Flip op `i`, whose code is `code`.
    #[inline]
    fn flip(&mut self, i: usize, code: Fp) {
        self.words[i / 64] ^= 1 << (i % 64);
        self.fp = self.fp.xor(code);
    }
}

/// Configurations (linearized set, state) already reached, each as 128
/// bits: the set's Zobrist fingerprint xor a code of the state's number.
/// So 16 bytes per configuration, and sets one op apart are found by xor.
/// Two configurations collide with probability 2^-128 per pair. An open
/// addressing table with linear probing, at most 3/4 full; its iteration
/// order is never observed.
struct Memo {
    slots: Vec<u128>,
    len: usize,
    /// Nanoseconds per slot the last growth took (with a margin).
    ns_per_slot: f64,
}

impl Memo {
    /// Room for about `n` configurations without growing (a linearizable
    /// history of `n` ops visits about that many), within 1,024 to 65,536
    /// slots.
    fn for_ops(n: usize) -> Self {
        Memo {
            slots: vec![0; (2 * n).next_power_of_two().clamp(1024, 1 << 16)],
            len: 0,
            ns_per_slot: 2.0,
        }
    }

    /// 0 marks an empty slot; a key of 0 (odds 2^-128) stands for 1.
    #[inline]
    fn slot_key(k: u128) -> u128 {
        if k == 0 {
            1
        } else {
            k
        }
    }

    #[inline]
    fn contains(&self, k: u128) -> bool {
        let k = Memo::slot_key(k);
        let mask = self.slots.len() - 1;
        let mut i = (k as usize) & mask;
        loop {
            match self.slots[i] {
                0 => return false,
                s if s == k => return true,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Add `k` (room is made beforehand: see [`Memo::full`]).
    #[inline]
    fn insert(&mut self, k: u128) {
        let k = Memo::slot_key(k);
        let mask = self.slots.len() - 1;
        let mut i = (k as usize) & mask;
        loop {
            match self.slots[i] {
                0 => {
                    self.slots[i] = k;
                    self.len += 1;
                    return;
                }
                s if s == k => return,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Whether one more key would take it past 3/4 full.
    #[inline]
    fn full(&self) -> bool {
        4 * (self.len + 1) > 3 * self.slots.len()
    }

    fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<u128>()
    }

    fn grow(&mut self) {
        let size = 2 * self.slots.len();
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        self.len = 0;
        for k in old {
            if k != 0 {
                self.insert(k);
            }
        }
    }
}

/// A set's fingerprint: the xor of its members' 128-bit codes.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Fp(u64, u64);

impl Fp {
    /// The code of op `i`.
    #[inline]
    fn of(i: usize) -> Fp {
        let a = mix(i as u64 + 1);
        Fp(a, mix(a ^ 0x6a09_e667_f3bc_c909))
    }

    #[inline]
    fn xor(self, o: Fp) -> Fp {
        Fp(self.0 ^ o.0, self.1 ^ o.1)
    }

    /// The code of state number `state`: a configuration's memo key is
    /// its set's fingerprint xor its state's code.
    #[inline]
    fn state(state: u32) -> Fp {
        let a = mix(u64::from(state) ^ 0xbb67_ae85_84ca_a73b);
        Fp(a, mix(a ^ 0x3c6e_f372_fe94_f82b))
    }

    #[inline]
    fn key(self) -> u128 {
        u128::from(self.0) | (u128::from(self.1) << 64)
    }
}

/// Take a call entry and its return out of the list.
fn lift(next: &mut [usize], prev: &mut [usize], call: usize, ret: usize) {
    next[prev[call]] = next[call];
    prev[next[call]] = prev[call]; // a call's next is never NIL: its return follows
    next[prev[ret]] = next[ret];
    if next[ret] != NIL {
        prev[next[ret]] = prev[ret];
    }
}

/// Undo [`lift`] (in reverse order).
fn unlift(next: &mut [usize], prev: &mut [usize], call: usize, ret: usize) {
    if next[ret] != NIL {
        prev[next[ret]] = ret;
    }
    next[prev[ret]] = ret;
    prev[next[call]] = call;
    next[prev[call]] = call;
}

/// Shrink a failing set of local op indices. Returns the kept ones and
/// whether the result is 1-minimal.
///
/// Searches on big candidates are what costs, so it goes in phases: keep
/// only the blocked op among the reads (one search, usually enough); else
/// shrink the reads alone; then shrink everything; then, if small, look for
/// a smaller subset of what is left, fewest ops first.
fn minimize<M: Model>(
    shrink: &mut Shrink<'_, M>,
    failing: Vec<usize>,
    blocked: Option<usize>,
) -> (Vec<usize>, bool) {
    let model = shrink.model;
    let all = shrink.all;
    let read_only = |i: &usize| model.read_only(&all[*i].input, &all[*i].output);
    let mut current = failing;
    let reads: Vec<usize> = current.iter().copied().filter(read_only).collect();
    let others: Vec<usize> = current.iter().copied().filter(|i| !read_only(i)).collect();
    let mut one = others.clone();
    one.extend(blocked.filter(|b| reads.contains(b)));
    one.sort_unstable();
    let removed: Vec<usize> = reads
        .iter()
        .copied()
        .filter(|r| Some(*r) != blocked)
        .collect();
    if let Some(smaller) = shrink.still_fails(&one, &removed) {
        current = smaller;
    } else {
        let Some((reads, others)) = shrink.ddmin(reads, others) else {
            return (current, false);
        };
        current = [reads, others].concat();
        current.sort_unstable();
    }
    let Some((kept, _)) = shrink.ddmin(current.clone(), Vec::new()) else {
        return (current, false);
    };
    if !shrink.conclusive {
        return (kept, false);
    }
    // `kept` is 1-minimal; a smaller subset, if found, is checked again
    // (a search that ran out while looking does not undo that).
    match shrink.smallest(&kept) {
        Some(smaller) => {
            shrink.conclusive = true;
            match shrink.ddmin(smaller.clone(), Vec::new()) {
                Some((k, _)) => (k, shrink.conclusive),
                None => (smaller, false),
            }
        }
        None => (kept, true),
    }
}

/// Most searches [`Shrink::smallest`] tries.
const SMALLEST_TRIES: usize = 2000;

struct Shrink<'a, M: Model> {
    model: &'a M,
    all: &'a [&'a Operation<M::Input, M::Output>],
    max_steps: Option<u64>,
    until: Instant,
    memory: Option<usize>,
    /// False once a search ran out of budget.
    conclusive: bool,
    /// The most bytes a search accounted.
    peak: usize,
}

impl<M: Model> Shrink<'_, M> {
    /// Some(what of `cand` still fails) if removing `removed` is allowed and
    /// `cand` is still not linearizable.
    fn still_fails(&mut self, cand: &[usize], removed: &[usize]) -> Option<Vec<usize>> {
        let refs = |ix: &[usize]| -> Vec<&Operation<M::Input, M::Output>> {
            ix.iter().map(|&i| self.all[i]).collect()
        };
        let kept = refs(cand);
        if cand.is_empty() || !self.model.removable(&refs(removed), &kept) {
            return None;
        }
        match search(
            self.model,
            &kept,
            self.max_steps,
            Some(self.until),
            self.memory,
            &mut self.peak,
        ) {
            Some(Done::Linearizable(_)) => None,
            None => {
                self.conclusive = false;
                None
            }
            Some(Done::NotLinearizable { reached, .. }) => {
                Some(reached.iter().map(|&i| cand[i]).collect())
            }
        }
    }

    /// Zeller's ddmin of `items`, with `fixed` always kept: split into n
    /// chunks; keep one chunk alone, or remove one; refine until single
    /// items cannot be removed. Returns (items, fixed) still failing, or
    /// None when time runs out.
    fn ddmin(
        &mut self,
        mut items: Vec<usize>,
        mut fixed: Vec<usize>,
    ) -> Option<(Vec<usize>, Vec<usize>)> {
        let with_fixed = |part: &[usize], fixed: &[usize]| -> Vec<usize> {
            let mut v = [part, fixed].concat();
            v.sort_unstable();
            v
        };
        let mut n = 2usize;
        while items.len() >= 2 {
            let len = items.len();
            n = n.min(len);
            let bounds: Vec<(usize, usize)> =
                (0..n).map(|k| (k * len / n, (k + 1) * len / n)).collect();
            let mut progressed = false;
            // Keep one chunk (tried only when it differs from removing one).
            let tries = if n > 2 { 2 } else { 1 };
            'tries: for complement in (0..tries).map(|t| t == 1) {
                for &(a, b) in &bounds {
                    if Instant::now() >= self.until {
                        return None;
                    }
                    let chunk = &items[a..b];
                    let rest: Vec<usize> = items[..a].iter().chain(&items[b..]).copied().collect();
                    let (keep, remove) = if complement {
                        (&rest[..], chunk)
                    } else {
                        (chunk, &rest[..])
                    };
                    if let Some(smaller) = self.still_fails(&with_fixed(keep, &fixed), remove) {
                        items = keep
                            .iter()
                            .copied()
                            .filter(|i| smaller.contains(i))
                            .collect();
                        fixed.retain(|i| smaller.contains(i));
                        n = if complement { (n - 1).max(2) } else { 2 };
                        progressed = true;
                        break 'tries;
                    }
                }
            }
            if !progressed {
                if n >= len {
                    break;
                }
                n = (2 * n).min(len);
            }
        }
        Some((items, fixed))
    }

    /// A subset of `kept` (1-minimal, at most 16 ops) with fewer ops that
    /// still fails and may be left (fewest first; the first such in
    /// lexicographic order), if one is found within [`SMALLEST_TRIES`].
    fn smallest(&mut self, kept: &[usize]) -> Option<Vec<usize>> {
        let k = kept.len();
        if !(3..=16).contains(&k) {
            return None;
        }
        let mut tries = 0;
        for size in 1..k - 1 {
            let mut pick: Vec<usize> = (0..size).collect();
            loop {
                if tries >= SMALLEST_TRIES || Instant::now() >= self.until {
                    return None;
                }
                let cand: Vec<usize> = pick.iter().map(|&i| kept[i]).collect();
                let removed: Vec<usize> =
                    kept.iter().copied().filter(|i| !cand.contains(i)).collect();
                let refs = |ix: &[usize]| -> Vec<&Operation<M::Input, M::Output>> {
                    ix.iter().map(|&i| self.all[i]).collect()
                };
                if self.model.removable(&refs(&removed), &refs(&cand)) {
                    tries += 1;
                    if let Some(found) = self.still_fails(&cand, &removed) {
                        return Some(found);
                    }
                }
                // The next combination of `size` out of `k`.
                let mut i = size;
                while i > 0 && pick[i - 1] == k - size + i - 1 {
                    i -= 1;
                }
                if i == 0 {
                    break;
                }
                pick[i - 1] += 1;
                for j in i..size {
                    pick[j] = pick[j - 1] + 1;
                }
            }
        }
        None
    }
}

/// splitmix64's finalizer.
#[inline]
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn hash_of<T: Hash>(t: &T) -> u64 {
    let mut h = FxHasher::default();
    t.hash(&mut h);
    mix(h.finish())
}

/// A small, fast, deterministic hasher for model states.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(i.into());
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(i.into());
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

/// The state index's keys are already hashes.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A counter that only increments; reads must see the current count.
    struct Counter;

    #[derive(Debug, PartialEq)]
    enum C {
        Inc,
        Get,
    }

    impl Model for Counter {
        type State = u32;
        type Input = C;
        type Output = u32;
        fn init(&self) -> u32 {
            0
        }
        fn step(&self, s: &u32, i: &C, o: &u32) -> Option<u32> {
            match i {
                C::Inc => Some(s + 1),
                C::Get => (o == s).then_some(*s),
            }
        }
    }

    fn op(input: C, output: u32, call: u64, ret: Option<u64>) -> Operation<C, u32> {
        Operation {
            input,
            output,
            call: Duration::from_millis(call),
            ret: ret.map(Duration::from_millis),
        }
    }

    #[test]
    fn generic_models_work_and_open_ops_may_happen_or_not() {
        let ops = vec![
            op(C::Inc, 0, 0, Some(10)),
            op(C::Inc, 0, 5, Some(15)),
            op(C::Get, 2, 20, Some(30)),
        ];
        assert!(check(&Counter, &ops, &Budget::default()).is_linearizable());
        let ops = vec![op(C::Inc, 0, 0, Some(10)), op(C::Get, 2, 20, Some(30))];
        let v = check(&Counter, &ops, &Budget::default());
        assert_eq!(
            v.failure().map(|f| f.ops.clone()),
            Some(vec![0, 1]),
            "{v:?}"
        );
        // An open increment may have happened, before the read or not at all.
        let ops = vec![
            op(C::Inc, 0, 0, Some(10)),
            op(C::Inc, 0, 5, None),
            op(C::Get, 2, 20, Some(30)),
        ];
        assert!(check(&Counter, &ops, &Budget::default()).is_linearizable());
        let ops = vec![
            op(C::Inc, 0, 0, Some(10)),
            op(C::Inc, 0, 5, None),
            op(C::Get, 1, 20, Some(30)),
        ];
        assert!(check(&Counter, &ops, &Budget::default()).is_linearizable());
        // But not before its call.
        let ops = vec![op(C::Get, 1, 0, Some(4)), op(C::Inc, 0, 5, None)];
        assert!(check(&Counter, &ops, &Budget::default()).is_not_linearizable());
        // Equal times count as concurrent.
        let ops = vec![op(C::Get, 1, 0, Some(5)), op(C::Inc, 0, 5, Some(6))];
        assert!(check(&Counter, &ops, &Budget::default()).is_linearizable());
    }

    #[test]
    fn a_tiny_step_budget_gives_unknown() {
        let ops: Vec<_> = (0..100).map(|i| op(C::Inc, 0, i, Some(i + 1))).collect();
        let v = check(&Counter, &ops, &Budget::steps(10));
        assert!(v.is_unknown(), "{v:?}");
        assert!(check(&Counter, &ops, &Budget::steps(1_000)).is_linearizable());
        assert!(check(&Counter, &[], &Budget::steps(0)).is_linearizable());
    }

    /// Linearizable by exhaustive enumeration of orders: the reference the
    /// search (with all its pruning) must agree with.
    pub(crate) fn brute_force<M: Model>(
        model: &M,
        ops: &[&Operation<M::Input, M::Output>],
    ) -> bool {
        fn go<M: Model>(
            model: &M,
            ops: &[&Operation<M::Input, M::Output>],
            done: &mut Vec<bool>,
            state: &M::State,
        ) -> bool {
            let pending_closed = |i: usize, done: &[bool]| !done[i] && ops[i].ret.is_some();
            if (0..ops.len()).all(|i| !pending_closed(i, done)) {
                return true;
            }
            for x in 0..ops.len() {
                if done[x] {
                    continue;
                }
                // Every op not yet placed that returned before x's call must come first.
                let blocked = (0..ops.len()).any(|y| {
                    y != x && pending_closed(y, done) && ops[y].ret.is_some_and(|r| r < ops[x].call)
                });
                if blocked {
                    continue;
                }
                if let Some(next) = model.step(state, &ops[x].input, &ops[x].output) {
                    done[x] = true;
                    let ok = go(model, ops, done, &next);
                    done[x] = false;
                    if ok {
                        return true;
                    }
                }
            }
            false
        }
        go(model, ops, &mut vec![false; ops.len()], &model.init())
    }

    mod against_brute_force {
        use super::*;
        use crate::history::Value;
        use crate::models::{KvModel, KvOp, RegisterModel, RegisterOp, RegisterOutput};
        use proptest::prelude::*;

        type RegOp = Operation<RegisterOp, RegisterOutput>;

        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![Just(Value::Nil), (0i64..3).prop_map(Value::Int)]
        }

        /// Small random register ops: any values, times, outcomes (a quarter open).
        fn reg_op() -> impl Strategy<Value = RegOp> {
            let input = prop_oneof![
                2 => Just(RegisterOp::Read),
                2 => (0i64..3).prop_map(|v| RegisterOp::Write(Value::Int(v))),
                1 => (value(), 0i64..3).prop_map(|(a, b)| RegisterOp::Cas(a, Value::Int(b))),
            ];
            (input, value(), 0u64..12, 0u64..8, 0u32..4).prop_map(|(input, out, call, len, k)| {
                let open = k == 0 && input != RegisterOp::Read;
                Operation {
                    input,
                    output: if open { None } else { Some(out) },
                    call: Duration::from_millis(call),
                    ret: (!open).then(|| Duration::from_millis(call + len)),
                }
            })
        }

        /// Linearizable register histories of up to 9 ops: each op takes
        /// effect at a point inside its interval (few values, so many writes
        /// of one value); some never return (and took effect, or not).
        fn linearizable_ops() -> impl Strategy<Value = Vec<RegOp>> {
            let input = prop_oneof![
                2 => Just(RegisterOp::Read),
                2 => (0i64..3).prop_map(|v| RegisterOp::Write(Value::Int(v))),
                1 => (value(), 0i64..3).prop_map(|(a, b)| RegisterOp::Cas(a, Value::Int(b))),
            ];
            let op = (input, 0u64..20, 0u64..6, 0u64..6, 0u32..5);
            proptest::collection::vec(op, 0..9).prop_map(|mut ops| {
                ops.sort_by_key(|o| o.1);
                let mut state = Value::Nil;
                let mut out = Vec::new();
                for (input, point, left, right, k) in ops {
                    let open = k == 0 && input != RegisterOp::Read;
                    let effect = !open || k % 2 == 0;
                    let output = match &input {
                        RegisterOp::Read => Some(state.clone()),
                        RegisterOp::Write(v) => {
                            if effect {
                                state = v.clone();
                            }
                            Some(Value::Nil)
                        }
                        RegisterOp::Cas(from, to) => {
                            if *from != state {
                                continue; // failed: not in the history
                            }
                            if effect {
                                state = to.clone();
                            }
                            Some(Value::Nil)
                        }
                    };
                    out.push(Operation {
                        input,
                        output: if open { None } else { output },
                        call: Duration::from_millis((point * 2).saturating_sub(left)),
                        ret: (!open).then(|| Duration::from_millis(point * 2 + right)),
                    });
                }
                out
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

            #[test]
            fn register_search_agrees_with_brute_force(ops in proptest::collection::vec(reg_op(), 0..8)) {
                let model = RegisterModel::default();
                let refs: Vec<&RegOp> = ops.iter().collect();
                let expected = brute_force(&model, &refs);
                let v = check(&model, &ops, &Budget::unlimited());
                prop_assert_eq!(v.is_linearizable(), expected, "{:?}\n{:#?}", v, ops);
                if let Verdict::NotLinearizable(f) = &v {
                    // The counterexample cannot be ordered either...
                    let sub: Vec<&RegOp> = f.ops.iter().map(|&i| &ops[i]).collect();
                    prop_assert!(!brute_force(&model, &sub), "{:?}", f);
                    // ...and removing any one op it may remove orders it.
                    if f.minimal {
                        for k in 0..sub.len() {
                            let mut rest = sub.clone();
                            let gone = rest.remove(k);
                            if model.removable(&[gone], &rest) {
                                prop_assert!(brute_force(&model, &rest), "not minimal: {:?}", f);
                            }
                        }
                    }
                }
            }

            #[test]
            fn removal_allowed_by_the_register_model_keeps_linearizable_histories_linearizable(
                ops in linearizable_ops(),
                mask in any::<u16>(),
            ) {
                let model = RegisterModel::default();
                let refs: Vec<&RegOp> = ops.iter().collect();
                prop_assert!(brute_force(&model, &refs), "the strategy is wrong: {:#?}", ops);
                type Indexed<'a> = Vec<(usize, &'a RegOp)>;
                let (removed, kept): (Indexed<'_>, Indexed<'_>) =
                    refs.iter().copied().enumerate().partition(|(i, _)| mask & (1 << i) != 0);
                let removed: Vec<&RegOp> = removed.into_iter().map(|(_, o)| o).collect();
                let kept: Vec<&RegOp> = kept.into_iter().map(|(_, o)| o).collect();
                if model.removable(&removed, &kept) {
                    prop_assert!(brute_force(&model, &kept), "removed {:#?}\nkept {:#?}", removed, kept);
                }
            }

            #[test]
            fn kv_search_agrees_with_brute_force_per_key(
                ops in proptest::collection::vec((reg_op(), 0u8..2), 0..10),
            ) {
                let ops: Vec<Operation<KvOp, RegisterOutput>> = ops
                    .into_iter()
                    .map(|(o, k)| Operation {
                        input: KvOp { key: format!("k{k}"), op: o.input },
                        output: o.output,
                        call: o.call,
                        ret: o.ret,
                    })
                    .collect();
                let refs: Vec<_> = ops.iter().collect();
                let expected = brute_force(&KvModel::default(), &refs);
                let v = check(&KvModel::default(), &ops, &Budget::unlimited());
                prop_assert_eq!(v.is_linearizable(), expected, "{:?}\n{:#?}", v, ops);
            }
        }
    }
}
