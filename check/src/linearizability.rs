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
//! Cost: linearizable histories check in roughly linear time. Refuting one
//! (proving no order exists) explores every reachable configuration; with
//! many open operations that number grows fast (each open op used to explain
//! a read forks the configurations for the rest of the history), so a large
//! non-linearizable register history with dozens of `info` writes may end in
//! [`Verdict::Unknown`] at the budget. Keys of a map are checked separately,
//! so the same history on a map is cheap.
//!
//! [`Model::partition`] splits a history into independent parts checked one
//! by one (P-compositionality: a map is linearizable iff each key is).
//!
//! When a part fails, the checker shrinks it to a small set of operations
//! that still cannot be ordered: first it drops every operation called after
//! the furthest entry the search ever reached (the search on the rest fails
//! identically), then it tries keeping only the read the search was blocked
//! on among the reads, then runs Zeller's ddmin (keep one chunk, remove one
//! chunk, down to single operations) while the rest stays non-linearizable,
//! but only with deletions that [`Model::removable`] allows: those after
//! which a linearizable history stays linearizable. So the counterexample is
//! a witness (a stale read keeps the write it read from, instead of
//! shrinking to "a read of a value never written"), and it is 1-minimal
//! under that rule when [`Failure::minimal`] says so.
//!
//! Determinism: the search order depends only on the input; the memo is a
//! hash map whose iteration order is never observed. It keeps each linearized
//! set as a 128-bit fingerprint (a false match has odds of 2^-128 per pair).
//! Only the time budget can change a verdict, and only to
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
}

/// How long the checker may search before it answers [`Verdict::Unknown`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Search steps over all parts (one step: one entry visited).
    pub max_steps: Option<u64>,
    /// Wall time of the search over all parts.
    pub max_time: Option<Duration>,
    /// Extra wall time for shrinking a counterexample; when it runs out, the
    /// counterexample is reported as is, with `minimal: false`.
    pub minimize_time: Duration,
}

impl Default for Budget {
    /// One minute of search, ten seconds of shrinking.
    fn default() -> Self {
        Budget {
            max_steps: None,
            max_time: Some(Duration::from_secs(60)),
            minimize_time: Duration::from_secs(10),
        }
    }
}

impl Budget {
    /// No limit on the search (shrinking still gets ten seconds).
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
}

/// The answer of a check, with operations described as `T`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict<T> {
    Linearizable,
    NotLinearizable(Failure<T>),
    /// The budget ran out first; the reason says where.
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
    /// Whether no single op can be removed from `ops` (as
    /// [`Model::removable`] allows) with the rest still non-linearizable; false if shrinking ran out of
    /// time or budget.
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
                "not shrunk to minimal"
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
    let start = Instant::now();
    let mut deadline = Deadline::new(budget.max_steps, budget.max_time.map(|d| start + d));
    for part in model.partition(ops) {
        let Some(all) = part
            .ops
            .iter()
            .map(|&i| ops.get(i))
            .collect::<Option<Vec<_>>>()
        else {
            return Verdict::Unknown(format!(
                "the model's partition {:?} names an operation out of range",
                part.label
            ));
        };
        // An open op whose removal keeps a linearizable history
        // linearizable (a write nobody reads) changes nothing: drop it.
        let mut local: Vec<usize> = Vec::with_capacity(all.len());
        for (k, op) in all.iter().enumerate() {
            if op.ret.is_none() {
                let others: Vec<_> = (0..all.len()).filter(|&j| j != k).map(|j| all[j]).collect();
                if model.removable(&[op], &others) {
                    continue;
                }
            }
            local.push(k);
        }
        let refs: Vec<_> = local.iter().map(|&k| all[k]).collect();
        match search(model, &refs, &mut deadline) {
            Search::Linearizable => {}
            Search::OutOfBudget => {
                let place = match &part.label {
                    Some(l) => format!(" on key {l:?}"),
                    None => String::new(),
                };
                let open = refs.iter().filter(|o| o.ret.is_none()).count();
                return Verdict::Unknown(format!(
                    "budget exhausted after {} steps and {:.3}s{place} ({} operations there, \
                     {open} of them with unknown outcome: each may take effect at any later \
                     time, which is what makes proving a violation expensive)",
                    deadline.steps,
                    start.elapsed().as_secs_f64(),
                    all.len()
                ));
            }
            Search::NotLinearizable { reached, blocked } => {
                let shrink_until = Instant::now() + budget.minimize_time;
                let (kept, minimal) = minimize(
                    model,
                    &refs,
                    reached,
                    blocked,
                    budget.max_steps,
                    shrink_until,
                );
                let mut idx: Vec<usize> = kept.into_iter().map(|i| part.ops[local[i]]).collect();
                idx.sort_by_key(|&i| (ops[i].call, i));
                return Verdict::NotLinearizable(Failure {
                    partition: part.label,
                    partition_size: all.len(),
                    ops: idx,
                    minimal,
                });
            }
        }
    }
    Verdict::Linearizable
}

/// Step and time limits shared by the searches of one check.
struct Deadline {
    max_steps: Option<u64>,
    until: Option<Instant>,
    steps: u64,
}

impl Deadline {
    fn new(max_steps: Option<u64>, until: Option<Instant>) -> Self {
        Deadline {
            max_steps,
            until,
            steps: 0,
        }
    }

    /// Count a step; false once the budget is spent.
    #[inline]
    fn tick(&mut self) -> bool {
        self.steps += 1;
        if self.max_steps.is_some_and(|m| self.steps > m) {
            return false;
        }
        // Reading the clock is cheap, but not that cheap.
        if self.steps & 1023 == 0 {
            if let Some(until) = self.until {
                return Instant::now() < until;
            }
        }
        true
    }
}

enum Search {
    Linearizable,
    /// `reached`: the operations (local indices) called no later than the
    /// furthest entry the search visited; they alone are not linearizable.
    /// `blocked`: the op of the furthest return entry visited, the one
    /// that could not be linearized in time.
    NotLinearizable {
        reached: Vec<usize>,
        blocked: Option<usize>,
    },
    OutOfBudget,
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

struct Entry {
    op: usize,
    is_call: bool,
    /// For a call: its return entry.
    ret: usize,
    /// A return that never happened (placed after every real return).
    open: bool,
}

/// The search on one part. `ops` are local: failures index into them.
fn search<M: Model>(
    model: &M,
    ops: &[&Operation<M::Input, M::Output>],
    deadline: &mut Deadline,
) -> Search {
    let n = ops.len();
    if n == 0 {
        return Search::Linearizable;
    }

    // Entries in time order: (time, call before return, op). Open returns
    // sort after everything.
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
    let len = entries.len();
    let mut next: Vec<usize> = (1..=len).map(|i| if i == len { NIL } else { i }).collect();
    let mut prev: Vec<usize> = (0..len).map(|i| i.wrapping_sub(1)).collect();
    prev[HEAD] = NIL;

    let mut linearized = Bitset::new(n);
    let mut memo: Memo<M::State> = Memo::default();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    memo.insert(Fp::default(), hash_of(&state), state.clone());
    let mut entry = next[HEAD];
    let mut furthest = 0;
    let mut furthest_ret = NIL;
    // Open ops (no return) linearized so far, and their fingerprint.
    let mut open_on: Vec<usize> = Vec::new();
    let mut open_fp = Fp::default();

    let read_only: Vec<bool> = ops
        .iter()
        .map(|o| model.read_only(&o.input, &o.output))
        .collect();
    // Identical open ops are interchangeable: only the earliest called one
    // not yet linearized is tried. `twin[i]`: the previous identical open op.
    let mut twin = vec![NIL; n];
    let mut open_by_call: Vec<usize> = (0..n).filter(|&i| ops[i].ret.is_none()).collect();
    open_by_call.sort_by_key(|&i| call_pos[i]);
    for (k, &i) in open_by_call.iter().enumerate() {
        let same = |&&j: &&usize| ops[j].input == ops[i].input && ops[j].output == ops[i].output;
        if let Some(&j) = open_by_call[..k].iter().rev().find(same) {
            twin[i] = j;
        }
    }

    // Each configuration's candidates are tried in two passes: closed ops
    // first, then open ones, so configurations without open ops are reached
    // (and memoised) before those they dominate.
    let mut open_pass = false;

    loop {
        if entry == NIL {
            return Search::Linearizable;
        }
        if !deadline.tick() {
            return Search::OutOfBudget;
        }
        furthest = furthest.max(entry);
        let e = &entries[entry];
        let mut backtrack = false;
        if e.is_call {
            let op = ops[e.op];
            let open = op.ret.is_none();
            let skip = open != open_pass
                || (open
                    && (read_only[e.op] || (twin[e.op] != NIL && !linearized.get(twin[e.op]))));
            if skip {
                entry = next[entry];
                continue;
            }
            if let Some(new_state) = model.step(&state, &op.input, &op.output) {
                linearized.flip(e.op);
                if open {
                    open_on.push(e.op);
                    open_fp.flip(e.op);
                }
                let fp = linearized.fp;
                let state_hash = hash_of(&new_state);
                // An open op right after another open op, that would leave
                // the same state without it (a blind write after a write):
                // the configuration without the first one covers this, and
                // it is or will be tried from the same parent.
                let seen = memo.contains(fp, state_hash, &new_state);
                let mut covered = seen
                    || open
                        && stack.last().is_some_and(|(top, before)| {
                            ops[entries[*top].op].ret.is_none()
                                && model.step(before, &op.input, &op.output).as_ref()
                                    == Some(&new_state)
                        });
                // Dominance: (S, s) covers (S + some open ops, s), since an
                // open op may also never happen. Check "without any open op"
                // and "without one open op".
                if !covered && !open_on.is_empty() {
                    covered = memo.contains(fp.xor(open_fp), state_hash, &new_state);
                    for &o in open_on.iter().rev() {
                        if covered {
                            break;
                        }
                        covered = memo.contains(fp.xor(Fp::of(o)), state_hash, &new_state);
                    }
                }
                if covered && !seen {
                    // Remember it as covered, so its supersets are found
                    // one removal away.
                    memo.insert(fp, state_hash, new_state.clone());
                }
                if !covered {
                    memo.insert(fp, state_hash, new_state.clone());
                    let old = std::mem::replace(&mut state, new_state);
                    stack.push((entry, old));
                    lift(&mut next, &mut prev, entry, e.ret);
                    entry = next[HEAD];
                    open_pass = false;
                    continue;
                }
                linearized.flip(e.op);
                if open {
                    open_on.pop();
                    open_fp.flip(e.op);
                }
                // A read that can go now goes now: if that is a dead end
                // (covered configurations are fully explored ones), so is
                // this configuration.
                backtrack = read_only[e.op];
            }
            if !backtrack {
                entry = next[entry];
                continue;
            }
        } else if e.open {
            // Every op that returned is linearized; the rest may never happen.
            return Search::Linearizable;
        } else if !open_pass {
            if furthest_ret == NIL || entry > furthest_ret {
                furthest_ret = entry;
            }
            open_pass = true;
            entry = next[HEAD];
            continue;
        }
        // Backtrack: undo the last linearized op and try the next entry
        // after it; undo reads further (see above).
        loop {
            let Some((call, old)) = stack.pop() else {
                let reached = (0..n).filter(|&i| call_pos[i] <= furthest).collect();
                let blocked = (furthest_ret != NIL).then(|| entries[furthest_ret].op);
                return Search::NotLinearizable { reached, blocked };
            };
            state = old;
            let c = &entries[call];
            linearized.flip(c.op);
            if ops[c.op].ret.is_none() {
                open_on.pop();
                open_fp.flip(c.op);
            }
            unlift(&mut next, &mut prev, call, c.ret);
            if !read_only[c.op] {
                entry = next[call];
                open_pass = ops[c.op].ret.is_none();
                break;
            }
        }
    }
}

/// Configurations (linearized set, state) already reached. A set is kept
/// as its 128-bit Zobrist fingerprint, not its bits: 16 bytes instead of
/// n/8 per configuration, and sets one op apart are found by xor. Two sets
/// collide with probability 2^-128 per pair. Iteration order is never
/// observed.
struct Memo<S> {
    map: HashMap<u64, Slot<S>, BuildHasherDefault<IdHasher>>,
}

/// Configurations whose 64-bit keys collide (rarely more than one): (the
/// second half of the fingerprint, the state).
enum Slot<S> {
    One(u64, S),
    Many(Vec<(u64, S)>),
}

impl<S> Default for Memo<S> {
    fn default() -> Self {
        Memo {
            map: HashMap::default(),
        }
    }
}

impl<S: Eq> Memo<S> {
    fn contains(&self, fp: Fp, state_hash: u64, state: &S) -> bool {
        match self.map.get(&(fp.0 ^ state_hash)) {
            None => false,
            Some(Slot::One(k, s)) => *k == fp.1 && s == state,
            Some(Slot::Many(v)) => v.iter().any(|(k, s)| *k == fp.1 && s == state),
        }
    }

    fn insert(&mut self, fp: Fp, state_hash: u64, state: S) {
        use std::collections::hash_map::Entry;
        match self.map.entry(fp.0 ^ state_hash) {
            Entry::Vacant(e) => {
                e.insert(Slot::One(fp.1, state));
            }
            Entry::Occupied(mut e) => {
                let slot = e.get_mut();
                let first = std::mem::replace(slot, Slot::Many(Vec::with_capacity(2)));
                if let Slot::Many(v) = slot {
                    match first {
                        Slot::One(k, s) => v.push((k, s)),
                        Slot::Many(old) => *v = old,
                    }
                    v.push((fp.1, state));
                }
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

    #[inline]
    fn flip(&mut self, i: usize) {
        *self = self.xor(Fp::of(i));
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
/// Searches on big candidates are what costs, so it goes in three phases:
/// keep only the blocked op among the reads (one search, usually enough);
/// else shrink the reads alone; then shrink everything.
fn minimize<M: Model>(
    model: &M,
    all: &[&Operation<M::Input, M::Output>],
    failing: Vec<usize>,
    blocked: Option<usize>,
    max_steps: Option<u64>,
    until: Instant,
) -> (Vec<usize>, bool) {
    let mut shrink = Shrink {
        model,
        all,
        max_steps,
        until,
        conclusive: true,
    };
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
    match shrink.ddmin(current.clone(), Vec::new()) {
        Some((kept, _)) => (kept, shrink.conclusive),
        None => (current, false),
    }
}

struct Shrink<'a, M: Model> {
    model: &'a M,
    all: &'a [&'a Operation<M::Input, M::Output>],
    max_steps: Option<u64>,
    until: Instant,
    /// False once a search ran out of budget.
    conclusive: bool,
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
        let mut deadline = Deadline::new(self.max_steps, Some(self.until));
        match search(self.model, &kept, &mut deadline) {
            Search::Linearizable => None,
            Search::OutOfBudget => {
                self.conclusive = false;
                None
            }
            Search::NotLinearizable { reached, .. } => {
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

    #[inline]
    fn flip(&mut self, i: usize) {
        self.words[i / 64] ^= 1 << (i % 64);
        self.fp.flip(i);
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

/// The memo's keys are already hashes.
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
mod tests {
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
    fn brute_force<M: Model>(model: &M, ops: &[&Operation<M::Input, M::Output>]) -> bool {
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
                let expected = brute_force(&KvModel, &refs);
                let v = check(&KvModel, &ops, &Budget::unlimited());
                prop_assert_eq!(v.is_linearizable(), expected, "{:?}\n{:#?}", v, ops);
            }
        }
    }
}
