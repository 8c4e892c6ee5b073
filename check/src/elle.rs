//! Transactions, Elle-style: a list-append checker.
//!
//! Each transaction is a list of micro-ops on lists: append an element to
//! the list at a key, or read the list at a key. Every element is appended
//! at most once per key, so a read of `[1 2 3]` tells which transaction's
//! append came after which ([Kingsbury and Alvaro, "Elle: Inferring
//! Isolation Anomalies from Experimental Observations"][elle]). From the
//! reads the checker infers, per key, the order of the appends, and from it
//! three dependencies between transactions (Adya's):
//!
//! - `ww`: T1 appended the element just before T2's append to the same key;
//! - `wr`: T2 read a list whose last element T1 appended;
//! - `rw`: T1 read a list that T2's append extended (T1 did not see it).
//!
//! A cycle of dependencies is an anomaly: the transactions cannot be put in
//! any serial order. Per strongly connected component of the graph it looks
//! for, in this order, and reports the *shortest* cycle of each kind:
//!
//! | anomaly | cycle |
//! |---|---|
//! | `G0` | `ww` edges only (write cycle) |
//! | `G1c` | `ww` and `wr` edges, at least one `wr` (skipped if a `G0` was found) |
//! | `G-single-item` | exactly one `rw` edge, the others `ww`/`wr` |
//! | `G2-item` | two or more `rw` edges (skipped if a `G-single-item` was found) |
//!
//! (Elle's names; Elle skips the same implied kinds.) Besides cycles it
//! finds, as Elle does: `G1a` (aborted read: an ok transaction read an
//! element that a failed one appended), `G1b` (intermediate read: it read a
//! list whose last element another transaction appended, but that
//! transaction appended again to that key afterwards), `internal` (a
//! transaction's read disagrees with its own earlier reads and appends),
//! `incompatible-order` (two reads of a key of which neither is a prefix of
//! the other) and `duplicate-elements` (a read with an element twice).
//!
//! Which transactions count: `ok` ones, and `info` ones (they may have
//! happened: their appends place them, their reads are unknown); `fail`
//! ones only for `G1a`. [`check`] uses the dependencies above only: it
//! checks serializability. [`check_with`] can also take real-time order
//! ([`Isolation::StrictSerializable`]: a transaction that completed before
//! another was invoked precedes it; edges transitively reduced, as Elle
//! does) or each process's order ([`Isolation::StrongSessionSerializable`]);
//! a cycle that needs such an edge is reported under Elle's `-realtime` /
//! `-process` name (`G-single-item-realtime`, ...), for the kinds not found
//! without one. Real-time cycles are shortened after the search wherever
//! one transaction of the cycle completed before another was invoked.
//!
//! Not found (Elle finds them): `G-nonadjacent` (reported as `G2-item`),
//! `dirty-update`, `lost-update`, `future-read`, predicate anomalies, and
//! other datatypes than lists (registers, sets, counters).
//!
//! Elle's precondition: each element is appended at most once per key
//! (the order of appends is read off the elements). A history that breaks
//! it gets `Unknown`, naming the element, the key and both transactions.
//!
//! Bounds: [`Budget::max_memory`] bounds the graph (an estimate of its
//! bytes; past it the verdict is `Unknown`, naming the bound), and
//! [`Budget::max_steps`] / [`Budget::max_time`] the search for shortest
//! cycles. When that search runs out, a component still gets a cycle, found
//! by one breadth-first search and called not minimal: a component with a
//! cycle is an anomaly whatever its kind, so the verdict stays `Invalid`.
//!
//! Histories come from a [`History`] of [`F::Txn`] ops ([`txns_from_history`])
//! or from Elle / Jepsen EDN ([`read_edn`]):
//!
//! ```text
//! {:process 0, :type :invoke, :f :txn, :value [[:append :x 1] [:r :y nil]]}
//! {:process 0, :type :ok,     :f :txn, :value [[:append :x 1] [:r :y [1 2]]]}
//! ```
//!
//! [elle]: https://github.com/jepsen-io/elle
//!
//! ```
//! use distzero_check::elle::{check, read_edn};
//! use distzero_check::Budget;
//!
//! // Elle's G-single example: T2 appends to x after T1, but missed T1's
//! // append to y.
//! let text = "{:process 0, :type :ok, :f :txn, :value [[:append :x 1] [:append :y 1]]}
//!             {:process 1, :type :ok, :f :txn, :value [[:append :x 2] [:r :y nil]]}
//!             {:process 2, :type :ok, :f :txn, :value [[:r :x [1 2]]]}";
//! let txns = read_edn("example.edn", text).unwrap();
//! let report = check(&txns, &Budget::default());
//! assert!(report.is_invalid());
//! assert_eq!(report.anomaly_names(), ["G-single-item"]);
//! println!("{report}");
//! ```

use crate::edn::{parse, Edn};
use crate::history::{History, HistoryError, OpKind, Value, F};
use crate::linearizability::Budget;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

/// One micro-op of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mop {
    /// Append `element` to the list at `key`.
    Append { key: Value, element: Value },
    /// Read the list at `key`: `None` if unknown (an invocation, an
    /// `info`); in an `ok` transaction, `None` read the empty list (Elle's
    /// reading of `[:r k nil]`).
    Read {
        key: Value,
        list: Option<Vec<Value>>,
    },
}

impl Mop {
    pub fn key(&self) -> &Value {
        match self {
            Mop::Append { key, .. } | Mop::Read { key, .. } => key,
        }
    }
}

impl fmt::Display for Mop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mop::Append { key, element } => write!(f, "append {} {element}", Key(key)),
            Mop::Read { key, list: None } => write!(f, "r {} nil", Key(key)),
            Mop::Read { key, list: Some(l) } => {
                write!(f, "r {} {}", Key(key), Value::List(l.clone()))
            }
        }
    }
}

/// A key for humans: a string without its quotes (`x`, `:x`).
struct Key<'a>(&'a Value);

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::Str(s) => f.write_str(s),
            other => write!(f, "{other}"),
        }
    }
}

/// The process of a transaction read from EDN without `:process`.
pub const NO_PROCESS: u64 = u64::MAX;

/// A transaction: an invocation with its completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    pub process: u64,
    /// `Ok`, `Fail` or `Info` (also for one never completed).
    pub outcome: OpKind,
    /// The completion's micro-ops for `Ok` (reads filled in), else the
    /// invocation's.
    pub mops: Vec<Mop>,
    /// Where it is in its source, for humans: `lines 3..4`, `ops #2..#5`.
    pub source: String,
    /// When it was invoked and completed, for real-time order (only their
    /// order matters); `None` if unknown (no invocation recorded; no
    /// completion: `info`).
    pub invoked: Option<Duration>,
    pub completed: Option<Duration>,
}

impl fmt::Display for Txn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.process == NO_PROCESS {
            write!(f, "p? {} [", self.outcome)?;
        } else {
            write!(f, "p{} {} [", self.process, self.outcome)?;
        }
        for (i, m) in self.mops.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{m}")?;
        }
        write!(f, "] ({})", self.source)
    }
}

/// What is wrong with a list-append history (not an anomaly: the checker
/// cannot read it, or its preconditions do not hold).
#[derive(Debug, thiserror::Error)]
pub enum ElleError {
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// A dependency between two transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rel {
    /// Write-write: `from` appended the element just before `to`'s append.
    WW,
    /// Write-read: `to` read a list whose last element `from` appended.
    WR,
    /// Read-write: `from` read a list that `to`'s append extended.
    RW,
    /// Real time: `from` completed before `to` was invoked.
    Realtime,
    /// Process order: `from` is the previous transaction of `to`'s process
    /// (and completed).
    Process,
}

impl Rel {
    fn bit(self) -> u8 {
        match self {
            Rel::WW => 1,
            Rel::WR => 2,
            Rel::RW => 4,
            Rel::Realtime => 8,
            Rel::Process => 16,
        }
    }
}

impl fmt::Display for Rel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rel::WW => "ww",
            Rel::WR => "wr",
            Rel::RW => "rw",
            Rel::Realtime => "rt",
            Rel::Process => "process",
        })
    }
}

/// Why one dependency holds: the key and the elements involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Why {
    pub key: Value,
    /// `ww`: the earlier element; `wr`: the last element read; `rw`: the
    /// last element the reader saw (`None`: it read the empty list).
    pub element: Option<Value>,
    /// `ww`, `rw`: the element appended next.
    pub next: Option<Value>,
}

/// One edge of a cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub from: usize,
    pub to: usize,
    pub rel: Rel,
    pub why: Why,
}

/// The kinds of cycle, in the order they are searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CycleKind {
    G0,
    G1c,
    GSingle,
    G2,
}

impl CycleKind {
    /// Elle's name.
    pub fn name(self) -> &'static str {
        match self {
            CycleKind::G0 => "G0",
            CycleKind::G1c => "G1c",
            CycleKind::GSingle => "G-single-item",
            CycleKind::G2 => "G2-item",
        }
    }

    /// The kind of a cycle by its relations.
    fn of(steps: &[Step]) -> CycleKind {
        let rw = steps.iter().filter(|s| s.rel == Rel::RW).count();
        let wr = steps.iter().any(|s| s.rel == Rel::WR);
        match rw {
            0 if wr => CycleKind::G1c,
            0 => CycleKind::G0,
            1 => CycleKind::GSingle,
            _ => CycleKind::G2,
        }
    }
}

/// The order besides dependencies that a cycle uses, if any (Elle's
/// `-realtime` and `-process` variants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Order {
    Realtime,
    Process,
}

/// What the checker takes as given besides the dependencies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// ww, wr, rw dependencies only.
    #[default]
    Serializable,
    /// Plus each process's order (Elle's strong session serializable).
    StrongSessionSerializable,
    /// Plus real-time order: a transaction that completed before another
    /// was invoked comes first.
    StrictSerializable,
}

/// A dependency cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle {
    pub kind: CycleKind,
    /// `Some` if it needs a real-time or process edge (then at least one).
    pub order: Option<Order>,
    /// Each step's `to` is the next one's `from`; the last returns to the first.
    pub steps: Vec<Step>,
    /// Whether it is a shortest cycle of its kind in its component (false
    /// when the search ran out of budget and a fallback cycle is shown).
    /// With real-time edges: shortest in the graph whose real-time edges
    /// are transitively reduced (as Elle's), then shortened wherever one
    /// transaction completed before another of the cycle was invoked; a
    /// shorter one may exist unless it has 2 transactions.
    pub minimal: bool,
    /// How many transactions its strongly connected component has.
    pub component: usize,
}

impl Cycle {
    /// Elle's name: its kind, with `-realtime` or `-process` when it needs
    /// that order.
    pub fn name(&self) -> &'static str {
        use CycleKind::*;
        match (self.kind, self.order) {
            (k, None) => k.name(),
            (G0, Some(Order::Realtime)) => "G0-realtime",
            (G1c, Some(Order::Realtime)) => "G1c-realtime",
            (GSingle, Some(Order::Realtime)) => "G-single-item-realtime",
            (G2, Some(Order::Realtime)) => "G2-item-realtime",
            (G0, Some(Order::Process)) => "G0-process",
            (G1c, Some(Order::Process)) => "G1c-process",
            (GSingle, Some(Order::Process)) => "G-single-item-process",
            (G2, Some(Order::Process)) => "G2-item-process",
        }
    }
}

impl Cycle {
    /// Re-check every step against the transactions it names (`txns` as
    /// the report holds them): each claim of its [`Why`] holds, and the
    /// steps close a cycle. A cycle the checker reports always passes;
    /// this is for tests, and for anyone who would rather not trust it.
    pub fn verify(&self, txns: &[Txn]) -> Result<(), String> {
        let all: BTreeMap<usize, Txn> = self
            .steps
            .iter()
            .flat_map(|s| [s.from, s.to])
            .filter(|&i| i < txns.len())
            .map(|i| (i, txns[i].clone()))
            .collect();
        self.verify_in(&all)
    }

    /// [`Cycle::verify`] against the transactions a report keeps
    /// ([`ElleReport::txns`]).
    pub fn verify_in(&self, txns: &BTreeMap<usize, Txn>) -> Result<(), String> {
        let none = Txn {
            process: u64::MAX,
            outcome: OpKind::Fail,
            mops: Vec::new(),
            source: String::new(),
            invoked: None,
            completed: None,
        };
        let txn = |i: usize| txns.get(&i).unwrap_or(&none);
        let appends = |t: usize, k: &Value, e: &Option<Value>| {
            txn(t).mops.iter().any(|m| {
                matches!(m, Mop::Append { key, element } if key == k && Some(element) == e.as_ref())
            })
        };
        let reads_last = |t: usize, k: &Value, e: &Option<Value>| {
            txn(t).mops.iter().any(|m| match m {
                Mop::Read { key, list } if key == k => {
                    list.as_deref().unwrap_or(&[]).last() == e.as_ref()
                }
                _ => false,
            })
        };
        for (i, s) in self.steps.iter().enumerate() {
            let next = &self.steps[(i + 1) % self.steps.len()];
            if s.to != next.from
                || !txns.contains_key(&s.from)
                || !txns.contains_key(&s.to)
                || s.from == s.to
            {
                return Err(format!("step {i} does not lead to step {}", i + 1));
            }
            let w = &s.why;
            let holds = match s.rel {
                Rel::WW => appends(s.from, &w.key, &w.element) && appends(s.to, &w.key, &w.next),
                Rel::WR => {
                    appends(s.from, &w.key, &w.element) && reads_last(s.to, &w.key, &w.element)
                }
                Rel::RW => reads_last(s.from, &w.key, &w.element) && appends(s.to, &w.key, &w.next),
                Rel::Realtime => matches!(
                    (txn(s.from).completed, txn(s.to).invoked),
                    (Some(c), Some(i)) if c < i
                ),
                Rel::Process => txn(s.from).process == txn(s.to).process && s.from < s.to,
            };
            if !holds {
                return Err(format!(
                    "step {i} ({}: T{} -> T{}) does not hold",
                    s.rel, s.from, s.to
                ));
            }
        }
        Ok(())
    }
}

/// An anomaly found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    Cycle(Cycle),
    /// `reader` (ok) read `element` of `key`, appended by `writer`, which failed.
    G1a {
        reader: usize,
        writer: usize,
        key: Value,
        element: Value,
    },
    /// `reader` read a list of `key` ending in `element`, which `writer`
    /// appended but then appended to `key` again.
    G1b {
        reader: usize,
        writer: usize,
        key: Value,
        element: Value,
    },
    /// Micro-op `mop` of `txn` read `key` inconsistently with the
    /// transaction's own earlier micro-ops; `expected` describes the list
    /// they imply (`[... 3]`: ends with 3).
    Internal {
        txn: usize,
        mop: usize,
        expected: String,
    },
    /// Two reads of `key` of which neither is a prefix of the other.
    IncompatibleOrder {
        key: Value,
        a: (usize, Vec<Value>),
        b: (usize, Vec<Value>),
    },
    /// A read of `key` holding an element more than once.
    DuplicateElements {
        txn: usize,
        key: Value,
        list: Vec<Value>,
    },
}

impl Anomaly {
    /// Elle's name of its kind.
    pub fn name(&self) -> &'static str {
        match self {
            Anomaly::Cycle(c) => c.name(),
            Anomaly::G1a { .. } => "G1a",
            Anomaly::G1b { .. } => "G1b",
            Anomaly::Internal { .. } => "internal",
            Anomaly::IncompatibleOrder { .. } => "incompatible-order",
            Anomaly::DuplicateElements { .. } => "duplicate-elements",
        }
    }
}

/// The verdict of a list-append check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validity {
    /// No anomaly: the dependency graph has no cycle and nothing else is wrong.
    Valid,
    Invalid,
    /// The graph could not be built within the budget; the reason names the bound.
    Unknown(String),
}

/// What a list-append check found and cost.
#[derive(Clone, Debug)]
pub struct ElleReport {
    pub validity: Validity,
    /// Most [`MAX_EXAMPLES`] per kind; cycles shortest first.
    pub anomalies: Vec<Anomaly>,
    /// How many anomalies of each kind were found (beyond those kept).
    pub counts: BTreeMap<&'static str, usize>,
    /// The transactions the anomalies name, by their index in the
    /// transactions checked (the report keeps no copy of the others).
    pub txns: BTreeMap<usize, Txn>,
    /// How many transactions were checked.
    pub checked: usize,
    /// Dependency edges (pairs of transactions) and nontrivial components.
    pub edges: usize,
    pub components: usize,
    /// Cycle search steps (edges relaxed) and wall time.
    pub steps: u64,
    pub elapsed: Duration,
    /// Why some cycle was not searched to the end (a bound ran out).
    pub incomplete: Option<String>,
}

/// Most anomalies of one kind kept in a report (all are counted).
pub const MAX_EXAMPLES: usize = 16;

impl ElleReport {
    pub fn is_valid(&self) -> bool {
        self.validity == Validity::Valid
    }

    pub fn is_invalid(&self) -> bool {
        self.validity == Validity::Invalid
    }

    /// The kinds of anomaly found, sorted, each once.
    pub fn anomaly_names(&self) -> Vec<&'static str> {
        self.counts.keys().copied().collect()
    }

    /// The cycles kept, shortest first.
    pub fn cycles(&self) -> impl Iterator<Item = &Cycle> {
        self.anomalies.iter().filter_map(|a| match a {
            Anomaly::Cycle(c) => Some(c),
            _ => None,
        })
    }

    fn txn(&self, i: usize) -> String {
        match self.txns.get(&i) {
            Some(t) => format!("T{i} {t}"),
            None => format!("T{i}"),
        }
    }

    fn describe_step(&self, s: &Step) -> String {
        let w = &s.why;
        let el = |e: &Option<Value>| e.as_ref().map_or("nil".into(), |v| v.to_string());
        match s.rel {
            Rel::WW => format!(
                "T{} appended {} to {} just before T{} appended {}",
                s.from,
                el(&w.element),
                Key(&w.key),
                s.to,
                el(&w.next)
            ),
            Rel::WR => format!(
                "T{} read {} ending in {}, which T{} appended",
                s.to,
                Key(&w.key),
                el(&w.element),
                s.from
            ),
            Rel::Realtime => format!("T{} completed before T{} was invoked", s.from, s.to),
            Rel::Process => format!(
                "T{} came before T{} on process {}",
                s.from,
                s.to,
                self.txns.get(&s.to).map_or(0, |t| t.process)
            ),
            Rel::RW => match &w.element {
                None => format!(
                    "T{} read {} empty, and T{} appended {} to it",
                    s.from,
                    Key(&w.key),
                    s.to,
                    el(&w.next)
                ),
                Some(e) => format!(
                    "T{} read {} ending in {e}, and T{} appended {} just after it",
                    s.from,
                    Key(&w.key),
                    s.to,
                    el(&w.next)
                ),
            },
        }
    }
}

impl fmt::Display for ElleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.validity {
            Validity::Valid => write!(
                f,
                "valid (serializable as far as list-append can tell): {} transactions, {} dependencies, no cycle",
                self.checked,
                self.edges
            )?,
            Validity::Unknown(why) => write!(f, "unknown: {why}")?,
            Validity::Invalid => {
                let kinds: Vec<String> = self
                    .counts
                    .iter()
                    .map(|(k, n)| format!("{k} ×{n}"))
                    .collect();
                write!(f, "invalid: {}", kinds.join(", "))?;
            }
        }
        if let Some(why) = &self.incomplete {
            write!(f, "\n(cycle search incomplete: {why})")?;
        }
        for a in &self.anomalies {
            match a {
                Anomaly::Cycle(c) => {
                    write!(
                        f,
                        "\n{} ({} transactions, {}; component of {}):",
                        c.name(),
                        c.steps.len(),
                        if c.minimal && (c.order != Some(Order::Realtime) || c.steps.len() == 2) {
                            "a shortest one"
                        } else if c.minimal {
                            "short: shortest over reduced real-time edges, then shortened"
                        } else {
                            "not minimal: the search ran out"
                        },
                        c.component
                    )?;
                    let mut path = String::new();
                    for s in &c.steps {
                        path.push_str(&format!("T{} -{}-> ", s.from, s.rel));
                    }
                    if let Some(s) = c.steps.first() {
                        path.push_str(&format!("T{}", s.from));
                    }
                    write!(f, "\n  {path}")?;
                    for s in &c.steps {
                        write!(f, "\n  {}", self.txn(s.from))?;
                    }
                    for s in &c.steps {
                        write!(f, "\n  {}: {}", s.rel, self.describe_step(s))?;
                    }
                }
                Anomaly::G1a {
                    reader,
                    writer,
                    key,
                    element,
                } => write!(
                    f,
                    "\nG1a (aborted read): T{reader} read {element} in {}, appended by T{writer}, which failed\n  {}\n  {}",
                    Key(key),
                    self.txn(*reader),
                    self.txn(*writer)
                )?,
                Anomaly::G1b {
                    reader,
                    writer,
                    key,
                    element,
                } => {
                    let k = Key(key);
                    write!(
                        f,
                        "\nG1b (intermediate read): T{reader} read {k} ending in {element}, but T{writer} appended to {k} again after {element}\n  {}\n  {}",
                        self.txn(*reader),
                        self.txn(*writer)
                    )?
                }
                Anomaly::Internal { txn, mop, expected } => write!(
                    f,
                    "\ninternal: micro-op {mop} of T{txn} disagrees with its own earlier micro-ops (expected {expected})\n  {}",
                    self.txn(*txn)
                )?,
                Anomaly::IncompatibleOrder { key, a, b } => write!(
                    f,
                    "\nincompatible-order on {}: T{} read {} and T{} read {}, neither a prefix of the other",
                    Key(key),
                    a.0,
                    Value::List(a.1.clone()),
                    b.0,
                    Value::List(b.1.clone())
                )?,
                Anomaly::DuplicateElements { txn, key, list } => write!(
                    f,
                    "\nduplicate-elements: T{txn} read {} = {}\n  {}",
                    Key(key),
                    Value::List(list.clone()),
                    self.txn(*txn)
                )?,
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- reading

/// Micro-ops out of a history value (`["append", k, v]`, `["r", k, list]`).
fn mops_of_value(v: &Value) -> Result<Vec<Mop>, String> {
    let Value::List(items) = v else {
        return Err(format!(
            "a transaction's value is a list of micro-ops, not {v}"
        ));
    };
    items
        .iter()
        .map(|m| match m {
            Value::List(parts) if parts.len() == 3 => match &parts[0] {
                Value::Str(f) if f == "append" => Ok(Mop::Append {
                    key: parts[1].clone(),
                    element: parts[2].clone(),
                }),
                Value::Str(f) if f == "r" => Ok(Mop::Read {
                    key: parts[1].clone(),
                    list: match &parts[2] {
                        Value::Nil => None,
                        Value::List(l) => Some(l.clone()),
                        other => {
                            return Err(format!("a read's list is a list or null, not {other}"))
                        }
                    },
                }),
                other => Err(format!("a micro-op is \"append\" or \"r\", not {other}")),
            },
            other => Err(format!("a micro-op is [f, key, value], not {other}")),
        })
        .collect()
}

/// The transactions of a history of [`F::Txn`] ops (any other op is an
/// error). An `ok` transaction takes its completion's micro-ops, which
/// must match its invocation's but for the reads' lists.
pub fn txns_from_history(history: &History) -> Result<Vec<Txn>, ElleError> {
    let calls = history.calls()?;
    let ops = history.ops();
    // The next op of the same process after each op: its completion, if
    // that is not another invocation.
    let mut next_of = vec![usize::MAX; ops.len()];
    let mut last_seen: HashMap<u64, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate().rev() {
        if let Some(&n) = last_seen.get(&op.process) {
            next_of[i] = n;
        }
        last_seen.insert(op.process, i);
    }
    let mut txns = Vec::with_capacity(calls.len());
    for call in calls {
        let bad = |reason: String| {
            ElleError::History(HistoryError::BadValue {
                index: call.index,
                op: ops[call.index].to_string(),
                reason,
            })
        };
        if call.f != F::Txn {
            return Err(bad(format!(
                "a {} op in a list-append history (only txn ops are checked)",
                call.f
            )));
        }
        let invoked = mops_of_value(&call.value).map_err(&bad)?;
        let mops = if call.outcome == OpKind::Ok {
            let done = mops_of_value(&call.result).map_err(&bad)?;
            same_shape(&invoked, &done).map_err(&bad)?;
            done
        } else {
            invoked
        };
        let end = match next_of[call.index] {
            n if n < ops.len() && ops[n].kind != OpKind::Invoke => format!("..#{n}"),
            _ => String::new(),
        };
        txns.push(Txn {
            process: call.process,
            outcome: call.outcome,
            mops,
            source: format!("op #{}{end}", call.index),
            invoked: Some(call.invoked),
            completed: call.completed,
        });
    }
    Ok(txns)
}

/// A completion's micro-ops must be the invocation's, reads filled in.
fn same_shape(invoked: &[Mop], done: &[Mop]) -> Result<(), String> {
    let same = invoked.len() == done.len()
        && invoked.iter().zip(done).all(|(a, b)| match (a, b) {
            (Mop::Append { .. }, Mop::Append { .. }) => a == b,
            (Mop::Read { key: k1, .. }, Mop::Read { key: k2, .. }) => k1 == k2,
            _ => false,
        });
    if same {
        Ok(())
    } else {
        Err("the completion's micro-ops are not the invocation's (reads aside)".into())
    }
}

/// An EDN micro-op `[:append k v]` or `[:r k list]`.
fn mop_of_edn(e: &Edn) -> Result<Mop, String> {
    let Some(parts) = e.items().filter(|p| p.len() == 3) else {
        return Err(format!("a micro-op is [f k v], not {e}"));
    };
    let key = parts[1].to_value();
    match &parts[0] {
        Edn::Keyword(f) if f == "append" => Ok(Mop::Append {
            key,
            element: parts[2].to_value(),
        }),
        Edn::Keyword(f) if f == "r" => Ok(Mop::Read {
            key,
            list: match &parts[2] {
                Edn::Nil => None,
                Edn::Vector(l) | Edn::List(l) => Some(l.iter().map(Edn::to_value).collect()),
                other => return Err(format!("a read's list is a vector or nil, not {other}")),
            },
        }),
        other => Err(format!("a micro-op is :append or :r, not {other}")),
    }
}

/// Read an Elle / Jepsen list-append history in EDN (`name` names it in
/// errors): maps with `:type` and a `:value` of micro-ops `[:append k v]`
/// / `[:r k list]`, one per line or in a vector, as [`crate::edn`] reads
/// them. `:f` is `:txn` if there; records of non-integer processes (the
/// nemesis) are skipped. Pairing follows Jepsen (one op in flight per
/// process; a missing `:process` is one process of its own). A completion
/// with no invocation in flight is a transaction whose invocation was not
/// recorded, as in Elle's tests. Errors name the line.
pub fn read_edn(name: &str, text: &str) -> Result<Vec<Txn>, ElleError> {
    // Process -> (txn index, invocation's micro-ops).
    let mut in_flight: HashMap<u64, usize> = HashMap::new();
    let mut txns: Vec<Txn> = Vec::new();
    let mut invoked: Vec<(usize, Vec<Mop>)> = Vec::new(); // txn -> (line, invocation mops)
    for (position, (line, form)) in parse(name, text)?.into_iter().enumerate() {
        // Record order is time order (as Knossos and Elle read it).
        let at = Some(Duration::from_micros(position as u64));
        let bad = |reason: String| {
            ElleError::History(HistoryError::BadLine {
                file: name.to_string(),
                line,
                reason,
            })
        };
        if !matches!(form, Edn::Map(_)) {
            return Err(bad(format!("not an operation (a map): {form}")));
        }
        let process = match form.get("process") {
            None => NO_PROCESS,
            Some(Edn::Int(p)) if *p >= 0 => *p as u64,
            Some(Edn::Keyword(_) | Edn::Symbol(_) | Edn::Str(_)) => continue,
            Some(other) => {
                return Err(bad(format!(
                    "a :process that is not a non-negative integer: {other}"
                )))
            }
        };
        match form.get("f") {
            None => {}
            Some(Edn::Keyword(f)) if f == "txn" => {}
            Some(other) => {
                return Err(bad(format!(
                    ":f {other} (a list-append history has :f :txn)"
                )))
            }
        }
        let kind = crate::edn::op_kind(&form).map_err(bad)?;
        let value = form.get("value").unwrap_or(&Edn::Nil);
        let Some(items) = value.items() else {
            return Err(bad(format!(
                "a :value that is not a vector of micro-ops: {value}"
            )));
        };
        let mops = items
            .iter()
            .map(mop_of_edn)
            .collect::<Result<Vec<_>, _>>()
            .map_err(&bad)?;
        if kind == OpKind::Invoke {
            if let Some(&t) = in_flight.get(&process) {
                return Err(bad(format!(
                    "process {process} invokes while its transaction of line {} is in flight",
                    invoked[t].0
                )));
            }
            in_flight.insert(process, txns.len());
            invoked.push((line, mops.clone()));
            txns.push(Txn {
                process,
                outcome: OpKind::Info,
                mops,
                source: format!("line {line}..never"),
                invoked: at,
                completed: None,
            });
            continue;
        }
        match in_flight.remove(&process) {
            Some(t) => {
                let (start, inv) = &invoked[t];
                if kind == OpKind::Ok {
                    same_shape(inv, &mops).map_err(&bad)?;
                    txns[t].mops = mops;
                }
                txns[t].outcome = kind;
                txns[t].source = format!("lines {start}..{line}");
                if kind != OpKind::Info {
                    txns[t].completed = at;
                }
            }
            None => {
                invoked.push((line, mops.clone()));
                txns.push(Txn {
                    process,
                    outcome: kind,
                    mops,
                    source: format!("line {line}"),
                    invoked: None,
                    completed: if kind == OpKind::Info { None } else { at },
                });
            }
        }
    }
    Ok(txns)
}

// ---------------------------------------------------------------- checking

/// What the previous element of a key was: none (the empty list) or one.
type Prev<'t> = Option<&'t Value>;

struct Graph<'t> {
    /// The transactions (for real-time shortcuts).
    txns: &'t [Txn],
    /// Edge list per node: (target, relation bits, index into `whys`).
    adj: Vec<Vec<(u32, u8)>>,
    /// (from, to) -> position in adj[from].
    index: HashMap<(u32, u32), u32>,
    /// (from, to, rel) -> why (the first reason found).
    whys: HashMap<(u32, u32, Rel), WhyRef<'t>>,
    edges: usize,
}

/// Bytes an edge costs, roughly: its adjacency entry, its index entry and
/// one reason, borrowed from the transactions (hash maps at about twice
/// their payload).
const EDGE_BYTES: usize = 8 + 2 * 16 + 2 * 40;

fn txns_of<'t>(g: &Graph<'t>) -> &'t [Txn] {
    g.txns
}

/// A [`Why`] borrowing from the transactions (nothing to free per edge).
#[derive(Clone, Copy)]
struct WhyRef<'t> {
    key: &'t Value,
    element: Option<&'t Value>,
    next: Option<&'t Value>,
}

impl WhyRef<'_> {
    fn owned(&self) -> Why {
        Why {
            key: self.key.clone(),
            element: self.element.cloned(),
            next: self.next.cloned(),
        }
    }
}

static NIL: Value = Value::Nil;

fn no_why_ref<'t>() -> WhyRef<'t> {
    WhyRef {
        key: &NIL,
        element: None,
        next: None,
    }
}

impl<'t> Graph<'t> {
    fn add(&mut self, from: usize, to: usize, rel: Rel, why: impl FnOnce() -> WhyRef<'t>) {
        if from == to {
            return;
        }
        let (a, b) = (from as u32, to as u32);
        match self.index.get(&(a, b)) {
            Some(&i) => self.adj[from][i as usize].1 |= rel.bit(),
            None => {
                self.index.insert((a, b), self.adj[from].len() as u32);
                self.adj[from].push((b, rel.bit()));
                self.edges += 1;
            }
        }
        self.whys.entry((a, b, rel)).or_insert_with(why);
    }
}

struct Kept {
    anomalies: Vec<Anomaly>,
    counts: BTreeMap<&'static str, usize>,
}

impl Kept {
    fn push(&mut self, a: Anomaly) {
        let n = self.counts.entry(a.name()).or_default();
        *n += 1;
        if *n <= MAX_EXAMPLES {
            self.anomalies.push(a);
        }
    }
}

fn is_prefix(a: &[Value], b: &[Value]) -> bool {
    a.len() <= b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Check list-append transactions for the anomalies of the module docs.
pub fn check(txns: &[Txn], budget: &Budget) -> ElleReport {
    check_with(txns, budget, Isolation::Serializable)
}

/// [`check`], also taking each process's order or real-time order as
/// given ([`Isolation`]): cycles that need such an edge are reported with
/// Elle's `-process` / `-realtime` names.
pub fn check_with(txns: &[Txn], budget: &Budget, isolation: Isolation) -> ElleReport {
    let start = Instant::now();
    // 3% of the budget is kept for what follows the search (freeing the
    // graph and indexes takes milliseconds), so the answer comes within it.
    let deadline = budget.max_time.map(|d| start + d.mul_f64(0.97));
    // Whether the time budget has run out, read every 256 transactions.
    let late = |i: usize| i.is_multiple_of(256) && deadline.is_some_and(|d| Instant::now() >= d);
    let late_why = |phase: &str, i: usize| {
        format!(
            "the time budget of {:?} ran out {phase} (after {i} of {} transactions)",
            budget.max_time.unwrap_or_default(),
            txns.len()
        )
    };
    let mut kept = Kept {
        anomalies: Vec::new(),
        counts: BTreeMap::new(),
    };
    let possible = |t: &Txn| t.outcome != OpKind::Fail;
    let unknown = |why: String, kept: Kept, edges: usize| ElleReport {
        validity: Validity::Unknown(why),
        txns: referenced(txns, &kept.anomalies),
        checked: txns.len(),
        anomalies: kept.anomalies,
        counts: kept.counts,
        edges,
        components: 0,
        steps: 0,
        elapsed: start.elapsed(),
        incomplete: None,
    };

    // Indexes: who appended what (possible and failed), intermediate
    // appends, and reads by key.
    let mut writer: HashMap<(&Value, &Value), usize> = HashMap::new();
    let mut failed_writer: HashMap<(&Value, &Value), usize> = HashMap::new();
    let mut intermediate: HashMap<(&Value, &Value), usize> = HashMap::new();
    let mut appends_per_key: HashMap<&Value, Vec<&Value>> = HashMap::new();
    for (i, t) in txns.iter().enumerate() {
        if late(i) {
            return unknown(late_why("indexing appends", i), kept, 0);
        }
        let mut last: HashMap<&Value, &Value> = HashMap::new();
        for m in &t.mops {
            if let Mop::Append { key, element } = m {
                if let Some(prev) = last.insert(key, element) {
                    intermediate.insert((key, prev), i);
                }
                let earlier = if possible(t) {
                    appends_per_key.entry(key).or_default().push(element);
                    writer.insert((key, element), i)
                } else {
                    failed_writer.insert((key, element), i)
                }
                .or_else(|| {
                    let other = if possible(t) { &failed_writer } else { &writer };
                    other.get(&(key, element)).copied()
                });
                if let Some(j) = earlier {
                    // Elle's precondition: the version order is read off
                    // the elements, so each may be appended once per key.
                    let why = format!(
                        "element {element} was appended to key {} twice (T{} and T{i}): list-append needs each element appended at most once per key",
                        Key(key),
                        j
                    );
                    return unknown(why, kept, 0);
                }
            }
        }
    }

    // Internal consistency and duplicates, per ok transaction.
    for (i, t) in txns.iter().enumerate() {
        if late(i) {
            return unknown(late_why("checking single transactions", i), kept, 0);
        }
        if t.outcome == OpKind::Ok {
            if let Some((mop, expected)) = internal_case(t) {
                kept.push(Anomaly::Internal {
                    txn: i,
                    mop,
                    expected,
                });
            }
        }
        if !possible(t) {
            continue;
        }
        for m in &t.mops {
            if let Mop::Read { key, list: Some(l) } = m {
                let mut seen = HashSet::new();
                if !l.iter().all(|e| seen.insert(e)) {
                    kept.push(Anomaly::DuplicateElements {
                        txn: i,
                        key: key.clone(),
                        list: l.clone(),
                    });
                }
            }
        }
    }

    // G1a and G1b: what ok transactions read.
    for (i, t) in txns.iter().enumerate() {
        if late(i) {
            return unknown(late_why("looking for G1a and G1b", i), kept, 0);
        }
        if t.outcome != OpKind::Ok {
            continue;
        }
        for m in &t.mops {
            let Mop::Read { key, list: Some(l) } = m else {
                continue;
            };
            for e in l {
                if let Some(&w) = failed_writer.get(&(key, e)) {
                    kept.push(Anomaly::G1a {
                        reader: i,
                        writer: w,
                        key: key.clone(),
                        element: e.clone(),
                    });
                }
            }
            if let Some(e) = l.last() {
                if let Some(&w) = intermediate.get(&(key, e)) {
                    if w != i {
                        kept.push(Anomaly::G1b {
                            reader: i,
                            writer: w,
                            key: key.clone(),
                            element: e.clone(),
                        });
                    }
                }
            }
        }
    }

    // The version order per key: the longest read, every other a prefix of
    // it; a key appended once and never read has that one version.
    let mut longest: HashMap<&Value, (usize, &Vec<Value>)> = HashMap::new();
    let mut reads: Vec<(usize, &Value, &Vec<Value>)> = Vec::new();
    for (i, t) in txns.iter().enumerate().filter(|(_, t)| possible(t)) {
        if late(i) {
            return unknown(late_why("ordering appends", i), kept, 0);
        }
        for m in &t.mops {
            if let Mop::Read { key, list: Some(l) } = m {
                if l.is_empty() {
                    continue;
                }
                reads.push((i, key, l));
                let e = longest.entry(key).or_insert((i, l));
                if l.len() > e.1.len() {
                    *e = (i, l);
                }
            }
        }
    }
    let mut bad_keys: HashSet<&Value> = HashSet::new();
    for &(i, key, l) in &reads {
        let (j, long) = longest[key];
        if !is_prefix(l, long) && bad_keys.insert(key) {
            kept.push(Anomaly::IncompatibleOrder {
                key: key.clone(),
                a: (i, l.clone()),
                b: (j, long.clone()),
            });
        }
    }
    // key -> (element -> position), and the elements in order.
    let mut order: HashMap<&Value, (HashMap<&Value, usize>, Vec<&Value>)> = HashMap::new();
    for (key, (_, long)) in &longest {
        let mut pos = HashMap::new();
        let mut vs = Vec::new();
        for e in long.iter() {
            if !pos.contains_key(e) {
                pos.insert(e, vs.len());
                vs.push(e);
            }
        }
        order.insert(key, (pos, vs));
    }
    for (key, appends) in &appends_per_key {
        if appends.len() == 1 && !order.contains_key(key) {
            order.insert(key, (HashMap::from([(appends[0], 0)]), vec![appends[0]]));
        }
    }

    // Readers by (key, last element read); an empty read is `None`.
    let mut readers: HashMap<(&Value, Option<&Value>), Vec<usize>> = HashMap::new();
    for (i, t) in txns.iter().enumerate().filter(|(_, t)| possible(t)) {
        if late(i) {
            return unknown(late_why("indexing reads", i), kept, 0);
        }
        for m in &t.mops {
            // An ok read of nil read the empty list (Elle's reading).
            let last = match m {
                Mop::Read { key, list: Some(l) } => Some((key, l.last())),
                Mop::Read { key, list: None } if t.outcome == OpKind::Ok => Some((key, None)),
                _ => None,
            };
            if let Some(at) = last {
                let r = readers.entry(at).or_default();
                if r.last() != Some(&i) {
                    r.push(i);
                }
            }
        }
    }

    // The graph.
    let max_edges = budget.max_memory.map_or(usize::MAX, |m| m / EDGE_BYTES);
    let mut g = Graph {
        txns,
        adj: vec![Vec::new(); txns.len()],
        index: HashMap::new(),
        whys: HashMap::new(),
        edges: 0,
    };
    for (i, t) in txns.iter().enumerate().filter(|(_, t)| possible(t)) {
        if g.edges > max_edges {
            let why = format!(
                "the dependency graph went over the memory budget of {} bytes ({} edges of about {EDGE_BYTES} bytes, after {i} of {} transactions)",
                budget.max_memory.unwrap_or(0),
                g.edges,
                txns.len()
            );
            return unknown(why, kept, g.edges);
        }
        if late(i) {
            return unknown(late_why("building the dependency graph", i), kept, g.edges);
        }
        for m in &t.mops {
            match m {
                Mop::Append { key, element } => {
                    let prev: Prev = match order.get(key) {
                        None => None,
                        Some((pos, vs)) => match pos.get(element) {
                            Some(&0) => None,
                            Some(&p) => Some(vs[p - 1]),
                            // Never read: after everything read.
                            None => vs.last().copied(),
                        },
                    };
                    let why = || WhyRef {
                        key,
                        element: prev,
                        next: Some(element),
                    };
                    if let Some(p) = prev {
                        if let Some(&w) = writer.get(&(key, p)) {
                            g.add(w, i, Rel::WW, why);
                        }
                    }
                    if let Some(rs) = readers.get(&(key, prev)) {
                        for &r in rs {
                            g.add(r, i, Rel::RW, why);
                        }
                    }
                }
                Mop::Read { key, list: Some(l) } => {
                    if let Some(e) = l.last() {
                        if let Some(&w) = writer.get(&(key, e)) {
                            g.add(w, i, Rel::WR, || WhyRef {
                                key,
                                element: Some(e),
                                next: None,
                            });
                        }
                    }
                }
                Mop::Read { list: None, .. } => {}
            }
        }
    }

    let order = match isolation {
        Isolation::Serializable => None,
        Isolation::StrictSerializable => {
            realtime_edges(txns, &mut g, max_edges);
            Some(Order::Realtime)
        }
        Isolation::StrongSessionSerializable => {
            process_edges(txns, &mut g);
            Some(Order::Process)
        }
    };
    if g.edges > max_edges {
        let why = format!(
            "the dependency graph went over the memory budget of {} bytes ({} edges of about {EDGE_BYTES} bytes, with the {} edges)",
            budget.max_memory.unwrap_or(0),
            g.edges,
            if order == Some(Order::Realtime) { "real-time" } else { "process" }
        );
        return unknown(why, kept, g.edges);
    }

    // Cycles, component by component, smallest components first.
    let mut sccs = tarjan(&g.adj);
    sccs.retain(|c| c.len() > 1);
    sccs.sort_by_key(|c| (c.len(), c[0]));
    let mut search = Search {
        steps: 0,
        max_steps: budget.max_steps,
        max_memory: budget.max_memory,
        deadline,
        out: None,
    };
    let mut cycles = Vec::new();
    for scc in &sccs {
        cycles.extend(cycles_in(&g, scc, &mut search, order));
    }
    cycles.sort_by_key(|c| (c.steps.len(), c.kind));
    for c in cycles {
        kept.push(Anomaly::Cycle(c));
    }
    // Smallest human-readable first: cycles by length, then the rest.
    kept.anomalies.sort_by_key(|a| match a {
        Anomaly::Cycle(c) => (0, c.steps.len()),
        _ => (1, 0),
    });

    let edges = g.edges;
    drop(g);
    ElleReport {
        validity: if kept.counts.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        },
        txns: referenced(txns, &kept.anomalies),
        checked: txns.len(),
        anomalies: kept.anomalies,
        counts: kept.counts,
        edges,
        components: sccs.len(),
        steps: search.steps,
        elapsed: start.elapsed(),
        incomplete: search.out,
    }
}

/// The transactions the anomalies name, by index.
fn referenced(txns: &[Txn], anomalies: &[Anomaly]) -> BTreeMap<usize, Txn> {
    let mut out = BTreeMap::new();
    let mut add = |i: usize| {
        out.entry(i).or_insert_with(|| txns[i].clone());
    };
    for a in anomalies {
        match a {
            Anomaly::Cycle(c) => c.steps.iter().for_each(|s| {
                add(s.from);
                add(s.to)
            }),
            Anomaly::G1a { reader, writer, .. } | Anomaly::G1b { reader, writer, .. } => {
                add(*reader);
                add(*writer);
            }
            Anomaly::Internal { txn, .. } | Anomaly::DuplicateElements { txn, .. } => add(*txn),
            Anomaly::IncompatibleOrder { a, b, .. } => {
                add(a.0);
                add(b.0);
            }
        }
    }
    out
}

fn no_why() -> Why {
    Why {
        key: Value::Nil,
        element: None,
        next: None,
    }
}

/// Real-time edges, transitively reduced as Elle does: a transaction gets
/// an edge from each one that completed before its invocation and is not
/// already followed by another such one.
fn realtime_edges(txns: &[Txn], g: &mut Graph, max_edges: usize) {
    // (time, 0 = invocation, 1 = completion, txn): at equal times the
    // invocation first, so equal times count as concurrent.
    let mut events: Vec<(Duration, u8, usize)> = Vec::new();
    for (i, t) in txns.iter().enumerate() {
        if t.outcome == OpKind::Fail {
            continue;
        }
        if let Some(at) = t.invoked {
            events.push((at, 0, i));
        }
        if let (OpKind::Ok, Some(at)) = (t.outcome, t.completed) {
            events.push((at, 1, i));
        }
    }
    events.sort_unstable();
    let mut frontier: Vec<usize> = Vec::new();
    let mut before: HashMap<usize, HashSet<usize>> = HashMap::new();
    for (_, kind, t) in events {
        if kind == 0 {
            for &f in &frontier {
                g.add(f, t, Rel::Realtime, no_why_ref);
            }
            if g.edges > max_edges {
                // The caller reports the memory bound.
                return;
            }
            if txns[t].outcome == OpKind::Ok {
                before.insert(t, frontier.iter().copied().collect());
            }
        } else {
            if let Some(b) = before.remove(&t) {
                frontier.retain(|f| !b.contains(f));
            }
            frontier.push(t);
        }
    }
}

/// Process edges: each transaction after the previous one of its process,
/// when that one completed (`ok`).
fn process_edges(txns: &[Txn], g: &mut Graph) {
    let mut last: HashMap<u64, usize> = HashMap::new();
    for (i, t) in txns.iter().enumerate() {
        if t.outcome == OpKind::Fail {
            continue;
        }
        if let Some(&p) = last.get(&t.process) {
            if txns[p].outcome == OpKind::Ok {
                g.add(p, i, Rel::Process, no_why_ref);
            }
        }
        last.insert(t.process, i);
    }
}

/// Elle's `internal` check: the first read of an ok transaction that its
/// own earlier micro-ops contradict, and what they imply.
fn internal_case(t: &Txn) -> Option<(usize, String)> {
    // key -> (known prefix?, the list or its known suffix)
    let mut state: HashMap<&Value, (bool, Vec<Value>)> = HashMap::new();
    for (i, m) in t.mops.iter().enumerate() {
        match m {
            Mop::Append { key, element } => {
                state
                    .entry(key)
                    .or_insert((false, Vec::new()))
                    .1
                    .push(element.clone());
            }
            Mop::Read { key, list } => {
                let l = list.clone().unwrap_or_default();
                if let Some((whole, s)) = state.get(key) {
                    let ok = if *whole {
                        *s == l
                    } else {
                        l.len() >= s.len() && l[l.len() - s.len()..] == s[..]
                    };
                    if !ok {
                        let items: Vec<String> = s.iter().map(Value::to_string).collect();
                        let expected = if *whole {
                            format!("[{}]", items.join(" "))
                        } else {
                            format!("[... {}]", items.join(" "))
                        };
                        return Some((i, expected));
                    }
                }
                state.insert(key, (true, l));
            }
        }
    }
    None
}

/// Strongly connected components (Tarjan's, iterative: no recursion depth
/// to overflow on long chains).
fn tarjan(adj: &[Vec<(u32, u8)>]) -> Vec<Vec<usize>> {
    let n = adj.len();
    const NONE: usize = usize::MAX;
    let mut index = vec![NONE; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut next = 0;
    let mut call: Vec<(usize, usize)> = Vec::new(); // (node, next edge)
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        call.push((root, 0));
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut e)) = call.last_mut() {
            if let Some(&(w, _)) = adj[v].get(*e) {
                *e += 1;
                let w = w as usize;
                if index[w] == NONE {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            call.pop();
            if let Some(&(u, _)) = call.last() {
                low[u] = low[u].min(low[v]);
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                comp.sort_unstable();
                out.push(comp);
            }
        }
    }
    out
}

struct Search {
    steps: u64,
    max_steps: Option<u64>,
    /// Bytes a search's own tables may take (the memory budget).
    max_memory: Option<usize>,
    deadline: Option<Instant>,
    /// Why the search stopped early, once it has.
    out: Option<String>,
}

impl Search {
    /// Count one step; false once a bound has run out.
    fn step(&mut self) -> bool {
        if self.out.is_some() {
            return false;
        }
        self.steps += 1;
        if self.max_steps.is_some_and(|m| self.steps > m) {
            self.out = Some(format!("the budget of {} steps ran out", self.steps - 1));
            return false;
        }
        if self.steps.is_multiple_of(4096) && self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.out = Some("the time budget ran out".into());
            return false;
        }
        true
    }
}

const WW: u8 = 1;
const WR: u8 = 2;
const RW: u8 = 4;
const RT: u8 = 8;
const PR: u8 = 16;
const ALL: u8 = WW | WR | RW | RT | PR;

fn rel_of_bit(bit: u8) -> Rel {
    match bit {
        WW => Rel::WW,
        WR => Rel::WR,
        RW => Rel::RW,
        RT => Rel::Realtime,
        _ => Rel::Process,
    }
}

/// How many rw edges a cycle must have.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RwCount {
    Zero,
    One,
    TwoPlus,
}

/// A breadth-first search's result: per node, (parent, the edge's bits,
/// depth), `None` where it did not reach.
type Parents = Vec<Option<(usize, u8, usize)>>;

/// The component as its own small graph: local ids, edges inside only.
struct Local<'a> {
    g: &'a Graph<'a>,
    nodes: &'a [usize],
    adj: Vec<Vec<(usize, u8)>>,
}

impl Local<'_> {
    /// The relation to use for an edge's step, preferring `prefer`'s bits.
    fn step(&self, a: usize, b: usize, bits: u8, prefer: u8) -> Step {
        let use_bits = if bits & prefer != 0 {
            bits & prefer
        } else {
            bits
        };
        let bit = [WW, WR, RW, RT, PR]
            .into_iter()
            .find(|b| use_bits & b != 0)
            .unwrap_or(PR);
        self.step_of(a, b, rel_of_bit(bit))
    }

    /// The step a -> b as `rel`.
    fn step_of(&self, a: usize, b: usize, rel: Rel) -> Step {
        let (from, to) = (self.nodes[a], self.nodes[b]);
        let why = self.g.whys[&(from as u32, to as u32, rel)].owned();
        Step { from, to, rel, why }
    }

    /// Shortest path lengths from `src` over edges with `allowed` bits, up
    /// to `max_len` edges; `None` if the search ran out. Returns the BFS
    /// parent of each node reached: (parent, bits).
    fn bfs(&self, src: usize, allowed: u8, max_len: usize, search: &mut Search) -> Option<Parents> {
        // parent[v] = (u, bits of u->v, depth of v)
        let mut parent: Parents = vec![None; self.adj.len()];
        parent[src] = Some((src, 0, 0));
        let mut queue = std::collections::VecDeque::from([src]);
        while let Some(u) = queue.pop_front() {
            let d = parent[u].map_or(0, |p| p.2);
            if d >= max_len {
                continue;
            }
            for &(v, bits) in &self.adj[u] {
                if !search.step() {
                    return None;
                }
                if bits & allowed == 0 || parent[v].is_some() {
                    continue;
                }
                parent[v] = Some((u, bits & allowed, d + 1));
                queue.push_back(v);
            }
        }
        Some(parent)
    }
}

/// The cycles of one component: the shortest of each kind searched (see
/// the module docs); a fallback cycle if the search runs out before any.
fn cycles_in(g: &Graph, scc: &[usize], search: &mut Search, order: Option<Order>) -> Vec<Cycle> {
    let local: HashMap<usize, usize> = scc.iter().enumerate().map(|(i, &v)| (v, i)).collect();
    let mut adj = vec![Vec::new(); scc.len()];
    for (i, &v) in scc.iter().enumerate() {
        for &(w, bits) in &g.adj[v] {
            if let Some(&j) = local.get(&(w as usize)) {
                adj[i].push((j, bits));
            }
        }
    }
    let l = Local { g, nodes: scc, adj };
    let mut found: Vec<Cycle> = Vec::new();
    // (kind, the closing edge's relation, the path's relations)
    let specs = [
        (CycleKind::G0, WW, WW),
        (CycleKind::G1c, WR, WW | WR),
        (CycleKind::GSingle, RW, WW | WR),
        (CycleKind::G2, RW, WW | WR | RW),
    ];
    for (kind, closing, path) in specs {
        if kind == CycleKind::G1c && found.iter().any(|c| c.kind == CycleKind::G0) {
            continue;
        }
        if kind == CycleKind::G2 && found.iter().any(|c| c.kind == CycleKind::GSingle) {
            continue;
        }
        match shortest(&l, closing, path, search) {
            Some(Some(steps)) => {
                // A G2 search may return a cycle with one rw (none exists if
                // G-single's search finished, but keep the honest kind).
                let k = CycleKind::of(&steps);
                if found.iter().all(|c| c.kind != k) {
                    found.push(Cycle {
                        kind: k,
                        order: None,
                        steps,
                        minimal: k == kind,
                        component: scc.len(),
                    });
                }
            }
            Some(None) => {}
            None => break,
        }
    }
    if let (Some(o), None) = (order, &search.out) {
        // Cycles that need a real-time or process edge, for the kinds not
        // found (nor implied) without one.
        let bit = if o == Order::Realtime { RT } else { PR };
        let variants = [
            (CycleKind::G0, WW, 0, RwCount::Zero),
            (CycleKind::G1c, WW | WR, WR, RwCount::Zero),
            (CycleKind::GSingle, WW | WR, 0, RwCount::One),
            (CycleKind::G2, WW | WR | RW, 0, RwCount::TwoPlus),
        ];
        for (kind, allowed, required, rw) in variants {
            let has = |k: CycleKind| found.iter().any(|c| c.kind == k);
            let implied = has(kind)
                || (kind == CycleKind::G1c && has(CycleKind::G0))
                || (kind == CycleKind::G2 && has(CycleKind::GSingle));
            if implied {
                continue;
            }
            let allowed = allowed | bit | if rw == RwCount::Zero { 0 } else { RW };
            match shortest_constrained(&l, allowed, required | bit, rw, search) {
                Some(Some(mut steps)) => {
                    if o == Order::Realtime {
                        shortcut(&mut steps, kind, txns_of(g));
                    }
                    found.push(Cycle {
                        kind,
                        order: Some(o),
                        steps,
                        minimal: true,
                        component: scc.len(),
                    })
                }
                Some(None) => {}
                None => break,
            }
        }
    }
    if found.is_empty() {
        // The search ran out: any cycle shows the component's anomaly.
        if let Some(steps) = any_cycle(&l) {
            let uses = |r: Rel| steps.iter().any(|s| s.rel == r);
            let order = if uses(Rel::Realtime) {
                Some(Order::Realtime)
            } else if uses(Rel::Process) {
                Some(Order::Process)
            } else {
                None
            };
            found.push(Cycle {
                kind: CycleKind::of(&steps),
                order,
                steps,
                minimal: false,
                component: scc.len(),
            });
        }
    }
    found
}

/// The shortest cycle made of one edge with `closing` bits (b -> a)
/// followed by a path a ~> b over `path` bits: `Some(None)` if there is
/// none, `None` if the search ran out.
fn shortest(
    l: &Local<'_>,
    closing: u8,
    path: u8,
    search: &mut Search,
) -> Option<Option<Vec<Step>>> {
    // Closing edges grouped by their target: one BFS per target.
    let mut by_target: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (u, edges) in l.adj.iter().enumerate() {
        for &(v, bits) in edges {
            if bits & closing != 0 {
                by_target.entry(v).or_default().push(u);
            }
        }
    }
    let mut best: Option<(usize, usize, usize, Parents)> = None; // (len, a, b, parents)
    for (&a, sources) in &by_target {
        // A cycle b -closing-> a ~path~> b: BFS from a.
        let limit = best.as_ref().map_or(usize::MAX, |b| b.0.saturating_sub(2));
        if limit == 0 && best.is_some() {
            break;
        }
        let parents = l.bfs(a, path, limit, search)?;
        for &b in sources {
            if let Some((_, _, d)) = parents[b] {
                let len = d + 1;
                if (b != a || d > 0) && best.as_ref().is_none_or(|x| len < x.0) {
                    best = Some((len, a, b, parents.clone()));
                }
            }
        }
        if best.as_ref().is_some_and(|b| b.0 == 2) {
            break;
        }
    }
    let Some((_, a, b, parents)) = best else {
        return Some(None);
    };
    // Path a ~> b, then the closing edge b -> a.
    let mut rev = Vec::new();
    let mut v = b;
    while v != a {
        let (u, bits, _) = parents[v]?;
        rev.push(l.step(u, v, bits, path));
        v = u;
    }
    rev.reverse();
    let closing_bits = l.adj[b].iter().find(|(w, _)| *w == a).map_or(0, |e| e.1);
    rev.push(l.step(b, a, closing_bits & closing, closing));
    // Start the cycle at its smallest transaction.
    let at = rev
        .iter()
        .enumerate()
        .min_by_key(|(_, s)| s.from)
        .map_or(0, |(i, _)| i);
    rev.rotate_left(at);
    Some(Some(rev))
}

/// Real-time order is transitive, but its edges are transitively reduced:
/// replace each stretch of a cycle from A to B by one real-time step when A
/// completed before B was invoked (longest stretches first), so long as the
/// cycle keeps its kind.
fn shortcut(steps: &mut Vec<Step>, kind: CycleKind, txns: &[Txn]) {
    let before = |a: usize, b: usize| matches!((txns[a].completed, txns[b].invoked), (Some(c), Some(i)) if c < i);
    'again: loop {
        let k = steps.len();
        for len in (2..k).rev() {
            for i in 0..k {
                let (a, b) = (steps[i].from, steps[(i + len - 1) % k].to);
                if !before(a, b) {
                    continue;
                }
                let mut kept: Vec<Step> = (len..k).map(|j| steps[(i + j) % k].clone()).collect();
                kept.insert(
                    0,
                    Step {
                        from: a,
                        to: b,
                        rel: Rel::Realtime,
                        why: no_why(),
                    },
                );
                if CycleKind::of(&kept) == kind {
                    let at = kept
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, s)| s.from)
                        .map_or(0, |(i, _)| i);
                    kept.rotate_left(at);
                    *steps = kept;
                    continue 'again;
                }
            }
        }
        return;
    }
}

/// The shortest cycle over edges with `allowed` bits that uses each bit of
/// `required` at least once and `rw` edges as `rw` says: a breadth-first
/// search from each node over (node, required bits seen, rw edges so far).
/// `Some(None)` if there is none, `None` if the search ran out.
fn shortest_constrained(
    l: &Local<'_>,
    allowed: u8,
    required: u8,
    rw: RwCount,
    search: &mut Search,
) -> Option<Option<Vec<Step>>> {
    let n = l.adj.len();
    let req: Vec<u8> = [WW, WR, RW, RT, PR]
        .into_iter()
        .filter(|b| required & b != 0)
        .collect();
    let masks = 1usize << req.len();
    let full = masks - 1;
    let id = |v: usize, m: usize, c: usize| (v * masks + m) * 3 + c;
    let states = n * masks * 3;
    // seen_in, parent and depth: about 40 bytes a state.
    if search
        .max_memory
        .is_some_and(|m| states.saturating_mul(40) > m)
    {
        search.out = Some(format!(
            "the memory budget would not hold the search table of a component of {n} transactions ({states} states)"
        ));
        return None;
    }
    // Per state: the BFS that reached it, its parent state and the edge's bit.
    let mut seen_in = vec![usize::MAX; states];
    let mut parent = vec![(0usize, 0u8); states];
    let mut depth = vec![0usize; states];
    let mut best: Option<usize> = None; // the shortest length so far
    let mut found_steps: Option<Vec<Step>> = None;
    for s in 0..n {
        let limit = best.map_or(usize::MAX, |b| b - 1);
        if limit < 2 {
            break;
        }
        let start = id(s, 0, 0);
        seen_in[start] = s;
        depth[start] = 0;
        let mut queue = std::collections::VecDeque::from([start]);
        let mut end = None;
        'bfs: while let Some(u) = queue.pop_front() {
            let (v, m, c) = (u / 3 / masks, (u / 3) % masks, u % 3);
            if depth[u] >= limit {
                continue;
            }
            for &(w, bits) in &l.adj[v] {
                if !search.step() {
                    return None;
                }
                for bit in [WW, WR, RW, RT, PR] {
                    if bits & allowed & bit == 0 {
                        continue;
                    }
                    let c2 = if bit == RW { (c + 1).min(2) } else { c };
                    if (rw == RwCount::Zero && c2 > 0) || (rw == RwCount::One && c2 > 1) {
                        continue;
                    }
                    let m2 = m | req.iter().position(|&r| r == bit).map_or(0, |i| 1 << i);
                    let next = id(w, m2, c2);
                    if seen_in[next] == s {
                        continue;
                    }
                    seen_in[next] = s;
                    parent[next] = (u, bit);
                    depth[next] = depth[u] + 1;
                    let closes = w == s
                        && m2 == full
                        && match rw {
                            RwCount::Zero => c2 == 0,
                            RwCount::One => c2 == 1,
                            RwCount::TwoPlus => c2 == 2,
                        };
                    if closes {
                        end = Some(next);
                        break 'bfs;
                    }
                    if w != s {
                        queue.push_back(next);
                    }
                }
            }
        }
        if let Some(e) = end {
            if best.is_none_or(|b| depth[e] < b) {
                // Rebuild now: the arrays are reused by the next searches.
                let mut rev = Vec::new();
                let mut at = e;
                while at != start {
                    let (p, bit) = parent[at];
                    rev.push(l.step_of(p / 3 / masks, at / 3 / masks, rel_of_bit(bit)));
                    at = p;
                }
                rev.reverse();
                best = Some(depth[e]);
                found_steps = Some(rev);
            }
        }
    }
    Some(found_steps)
}

/// Some cycle through the component's first node (one unbounded BFS; a
/// strongly connected component always has one).
fn any_cycle(l: &Local<'_>) -> Option<Vec<Step>> {
    let mut unbounded = Search {
        steps: 0,
        max_steps: None,
        max_memory: None,
        deadline: None,
        out: None,
    };
    let parents = l.bfs(0, ALL, usize::MAX, &mut unbounded)?;
    let (b, bits) = l
        .adj
        .iter()
        .enumerate()
        .filter(|(u, _)| parents[*u].is_some())
        .find_map(|(u, edges)| edges.iter().find(|(w, _)| *w == 0).map(|e| (u, e.1)))?;
    let mut rev = Vec::new();
    let mut v = b;
    while v != 0 {
        let (u, ebits, _) = parents[v]?;
        rev.push(l.step(u, v, ebits, WW | WR));
        v = u;
    }
    rev.reverse();
    rev.push(l.step(b, 0, bits, WW | WR));
    Some(rev)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Elle's test notation: `ax1ry12` = append 1 to x, read y = [1 2];
    /// a read with no digits read the empty list.
    fn op(s: &str) -> Vec<Mop> {
        let mut mops = Vec::new();
        let cs: Vec<char> = s.chars().collect();
        let mut i = 0;
        while i < cs.len() {
            let f = cs[i];
            let key = Value::Str(cs[i + 1].to_string());
            i += 2;
            let mut digits = Vec::new();
            while i < cs.len() && cs[i].is_ascii_digit() {
                digits.push(Value::Int(cs[i].to_digit(10).unwrap_or(0) as i64));
                i += 1;
            }
            mops.push(match f {
                'a' => Mop::Append {
                    key,
                    element: digits[0].clone(),
                },
                _ => Mop::Read {
                    key,
                    list: Some(digits),
                },
            });
        }
        mops
    }

    fn txn(outcome: OpKind, s: &str) -> Txn {
        Txn {
            process: 0,
            outcome,
            mops: op(s),
            source: s.to_string(),
            invoked: None,
            completed: None,
        }
    }

    fn oks(ss: &[&str]) -> Vec<Txn> {
        ss.iter().map(|s| txn(OpKind::Ok, s)).collect()
    }

    fn kinds(r: &ElleReport) -> Vec<&'static str> {
        for c in r.cycles() {
            c.verify_in(&r.txns).unwrap_or_else(|e| panic!("{e}: {r}"));
        }
        r.anomaly_names()
    }

    fn cycle_path(r: &ElleReport, kind: CycleKind) -> Vec<(usize, Rel)> {
        let c = r
            .cycles()
            .find(|c| c.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} in {r}"));
        c.steps.iter().map(|s| (s.from, s.rel)).collect()
    }

    #[test]
    fn serial_histories_are_valid() {
        let r = check(
            &oks(&["ax1", "rx1ax2ay1", "rx12ry1", "ay2rx12ry12"]),
            &Budget::default(),
        );
        assert!(r.is_valid(), "{r}");
        assert!(r.edges >= 4, "{r}");
        assert!(check(&[], &Budget::default()).is_valid());
    }

    // Elle's checker-test, list_append_test.clj: each history and the
    // cycle Elle reports.
    #[test]
    fn elle_g0() {
        let r = check(&oks(&["ax1ay1", "ax2ay2", "rx12ry21"]), &Budget::default());
        assert_eq!(kinds(&r), ["G0"], "{r}");
        assert_eq!(cycle_path(&r, CycleKind::G0), [(0, Rel::WW), (1, Rel::WW)]);
        let text = r.to_string();
        assert!(text.contains("T0 -ww-> T1 -ww-> T0"), "{text}");
        assert!(text.contains("a shortest one"), "{text}");
    }

    #[test]
    fn elle_g1a() {
        let h = vec![txn(OpKind::Fail, "ax1"), txn(OpKind::Ok, "rx1")];
        let r = check(&h, &Budget::default());
        assert_eq!(kinds(&r), ["G1a"], "{r}");
        assert!(matches!(
            r.anomalies[0],
            Anomaly::G1a {
                reader: 1,
                writer: 0,
                ..
            }
        ));
        // Elle's g1a-cases-test: both readers of the failed 1 are caught.
        let h = vec![
            txn(OpKind::Ok, "rx1ax2"),
            txn(OpKind::Ok, "rx12ry3"),
            txn(OpKind::Fail, "ax1"),
        ];
        let r = check(&h, &Budget::default());
        assert_eq!(r.counts["G1a"], 2, "{r}");
        // Without the failure, the same reads are fine.
        let h = vec![txn(OpKind::Ok, "ax1"), txn(OpKind::Ok, "rx1")];
        assert!(check(&h, &Budget::default()).is_valid());
    }

    #[test]
    fn elle_g1b() {
        let r = check(&oks(&["ax1ax2", "rx1"]), &Budget::default());
        // Elle: G1b, and G-single-item T1 -rw-> T0 -wr-> T1.
        assert_eq!(kinds(&r), ["G-single-item", "G1b"], "{r}");
        assert_eq!(
            cycle_path(&r, CycleKind::GSingle),
            [(0, Rel::WR), (1, Rel::RW)]
        );
        // g1b-cases-test: rx1 is intermediate, rx12 and rx123 are not, nor a
        // transaction's read of its own intermediate append.
        let r = check(
            &oks(&["rx1", "rx12ry3", "ax1ax2", "rx123"]),
            &Budget::default(),
        );
        assert_eq!(r.counts.get("G1b"), Some(&1), "{r}");
        let r = check(&oks(&["ax1rx1ax2"]), &Budget::default());
        assert!(r.is_valid(), "{r}");
    }

    #[test]
    fn elle_g1c() {
        let r = check(&oks(&["ax1ry1", "ax2ay1", "rx12ry1"]), &Budget::default());
        assert_eq!(kinds(&r), ["G1c"], "{r}");
        assert_eq!(cycle_path(&r, CycleKind::G1c), [(0, Rel::WW), (1, Rel::WR)]);
    }

    #[test]
    fn elle_g_single() {
        let r = check(&oks(&["ax1ay1", "ax2ry", "rx12"]), &Budget::default());
        assert_eq!(kinds(&r), ["G-single-item"], "{r}");
        assert_eq!(
            cycle_path(&r, CycleKind::GSingle),
            [(0, Rel::WW), (1, Rel::RW)]
        );
    }

    #[test]
    fn elle_g2() {
        let r = check(&oks(&["ax1ry", "ay1rx"]), &Budget::default());
        assert_eq!(kinds(&r), ["G2-item"], "{r}");
        assert_eq!(cycle_path(&r, CycleKind::G2), [(0, Rel::RW), (1, Rel::RW)]);
    }

    #[test]
    fn elle_g_nonadjacent_is_reported_as_g2_item() {
        // Elle's G-nonadjacent-test: rw wr rw wr, Elle's G-nonadjacent-item;
        // this checker does not tell non-adjacent rw edges apart: G2-item,
        // the same four transactions.
        let r = check(&oks(&["ax1", "rx1ry", "ay1", "ry1rx"]), &Budget::default());
        assert_eq!(kinds(&r), ["G2-item"], "{r}");
        assert_eq!(
            cycle_path(&r, CycleKind::G2),
            [(0, Rel::WR), (1, Rel::RW), (2, Rel::WR), (3, Rel::RW)]
        );
        // Elle's second history there (rw rw wr rw wr, it says) has no
        // cycle at all: valid for Elle, and here.
        let r = check(
            &oks(&["rx5ay1", "ryaz2", "rzat3", "rt3au4", "ruax5"]),
            &Budget::default(),
        );
        assert!(r.is_valid(), "{r}");
        assert_eq!(r.edges, 5, "{r}");
    }

    #[test]
    fn elle_contradictory_read_orders() {
        let r = check(
            &oks(&["ax1ry1", "ax2", "ax3ay1", "rx13", "rx123"]),
            &Budget::default(),
        );
        assert_eq!(kinds(&r), ["G1c", "incompatible-order"], "{r}");
        // Elle: [t3 t1 t2 t3] = T2 -wr-> T0 -ww-> T1 -ww-> T2.
        assert_eq!(
            cycle_path(&r, CycleKind::G1c),
            [(0, Rel::WW), (1, Rel::WW), (2, Rel::WR)]
        );
    }

    #[test]
    fn elle_duplicates_and_internal() {
        // Elle reports G1c and duplicate-elements under read-committed, and
        // notes that x = [1 2 1] also makes it G-single (1 looks appended
        // last): checking for serializability, so do we.
        let r = check(&oks(&["ax1ry1", "ax2ay1", "rx121"]), &Budget::default());
        assert_eq!(
            kinds(&r),
            ["G-single-item", "G1c", "duplicate-elements"],
            "{r}"
        );
        assert_eq!(cycle_path(&r, CycleKind::G1c), [(0, Rel::WW), (1, Rel::WR)]);
        let r = check(&oks(&["ax1ax2ax4", "ax3rx1234"]), &Budget::default());
        assert!(r.counts.contains_key("internal"), "{r}");
        match &r.anomalies.iter().find(|a| a.name() == "internal") {
            Some(Anomaly::Internal { txn, expected, .. }) => {
                assert_eq!((*txn, expected.as_str()), (1, "[... 3]"))
            }
            other => panic!("{other:?}"),
        }
        assert!(check(&oks(&["ax1rx1ax2rx12"]), &Budget::default()).is_valid());
    }

    #[test]
    fn elle_unobserved_writes_come_after_the_longest_read() {
        let r = check(
            &oks(&["ax1ay1", "ax2ay2", "ax3ay3", "rx12", "ry2"]),
            &Budget::default(),
        );
        assert_eq!(kinds(&r), ["G-single-item", "G0"], "{r}");
        // Elle: [ry w1 w2 ry]: T4 -rw-> T0 -ww-> T1 -wr-> T4.
        assert_eq!(
            cycle_path(&r, CycleKind::GSingle),
            [(0, Rel::WW), (1, Rel::WR), (4, Rel::RW)]
        );
    }

    fn four(processes: [u64; 4]) -> String {
        // Elle's "Strong SI violation" / "Strong Session SI violation".
        let v = [
            "[[:append :x 1]]",
            "[[:append :x 2]]",
            "[[:r :x nil]]",
            "[[:r :x nil]]",
        ];
        let done = [
            "[[:append :x 1]]",
            "[[:append :x 2]]",
            "[[:r :x [1]]]",
            "[[:r :x [1 2]]]",
        ];
        (0..4)
            .map(|i| {
                format!(
                    "{{:process {p}, :type :invoke, :f :txn, :value {}}}\n{{:process {p}, :type :ok, :f :txn, :value {}}}\n",
                    v[i],
                    done[i],
                    p = processes[i]
                )
            })
            .collect()
    }

    #[test]
    fn elle_strong_si_violation_needs_real_time() {
        let txns = read_edn("h", &four([0, 1, 2, 3])).unwrap();
        assert!(check(&txns, &Budget::default()).is_valid());
        let r = check_with(&txns, &Budget::default(), Isolation::StrictSerializable);
        assert_eq!(kinds(&r), ["G-single-item-realtime"], "{r}");
        // Elle: [t2' t1' t2']: T2 -rw-> T1 -rt-> T2.
        let c = r.cycles().next().unwrap();
        let steps: Vec<(usize, Rel)> = c.steps.iter().map(|s| (s.from, s.rel)).collect();
        assert_eq!(steps, [(1, Rel::Realtime), (2, Rel::RW)], "{r}");
        assert!(
            r.to_string().contains("T1 completed before T2 was invoked"),
            "{r}"
        );
        // Process order alone says nothing here: four processes.
        let r = check_with(
            &txns,
            &Budget::default(),
            Isolation::StrongSessionSerializable,
        );
        assert!(r.is_valid(), "{r}");
    }

    #[test]
    fn elle_strong_session_si_violation_needs_process_order() {
        let txns = read_edn("h", &four([0, 1, 1, 2])).unwrap();
        assert!(check(&txns, &Budget::default()).is_valid());
        let r = check_with(
            &txns,
            &Budget::default(),
            Isolation::StrongSessionSerializable,
        );
        assert_eq!(kinds(&r), ["G-single-item-process"], "{r}");
        let c = r.cycles().next().unwrap();
        let steps: Vec<(usize, Rel)> = c.steps.iter().map(|s| (s.from, s.rel)).collect();
        assert_eq!(steps, [(1, Rel::Process), (2, Rel::RW)], "{r}");
        assert!(
            r.to_string().contains("T1 came before T2 on process 1"),
            "{r}"
        );
    }

    #[test]
    fn real_time_g0_and_concurrent_transactions() {
        // T0 and T1 write x in one order, T1 completed before T0 began.
        let text = "{:process 1, :type :invoke, :f :txn, :value [[:append :x 2]]}
{:process 1, :type :ok, :f :txn, :value [[:append :x 2]]}
{:process 0, :type :invoke, :f :txn, :value [[:append :x 1]]}
{:process 0, :type :ok, :f :txn, :value [[:append :x 1]]}
{:process 2, :type :invoke, :f :txn, :value [[:r :x nil]]}
{:process 2, :type :ok, :f :txn, :value [[:r :x [1 2]]]}";
        let txns = read_edn("h", text).unwrap();
        let r = check_with(&txns, &Budget::default(), Isolation::StrictSerializable);
        assert_eq!(kinds(&r), ["G0-realtime"], "{r}");
        // Overlapping, the same order is fine.
        let text = "{:process 1, :type :invoke, :f :txn, :value [[:append :x 2]]}
{:process 0, :type :invoke, :f :txn, :value [[:append :x 1]]}
{:process 1, :type :ok, :f :txn, :value [[:append :x 2]]}
{:process 0, :type :ok, :f :txn, :value [[:append :x 1]]}
{:process 2, :type :invoke, :f :txn, :value [[:r :x nil]]}
{:process 2, :type :ok, :f :txn, :value [[:r :x [1 2]]]}";
        let txns = read_edn("h", text).unwrap();
        let r = check_with(&txns, &Budget::default(), Isolation::StrictSerializable);
        assert!(r.is_valid(), "{r}");
    }

    #[test]
    fn real_time_stretches_are_shortened() {
        let text = "{:process 0, :type :invoke, :f :txn, :value [[:append :x 1]]}
{:process 0, :type :ok, :f :txn, :value [[:append :x 1]]}
{:process 1, :type :invoke, :f :txn, :value [[:r :y nil]]}
{:process 1, :type :ok, :f :txn, :value [[:r :y []]]}
{:process 2, :type :invoke, :f :txn, :value [[:r :y nil]]}
{:process 2, :type :ok, :f :txn, :value [[:r :y []]]}
{:process 3, :type :invoke, :f :txn, :value [[:r :x nil]]}
{:process 3, :type :ok, :f :txn, :value [[:r :x []]]}";
        let txns = read_edn("h", text).unwrap();
        let r = check_with(&txns, &Budget::default(), Isolation::StrictSerializable);
        assert_eq!(kinds(&r), ["G-single-item-realtime"], "{r}");
        let c = r.cycles().next().unwrap();
        let steps: Vec<(usize, Rel)> = c.steps.iter().map(|s| (s.from, s.rel)).collect();
        assert_eq!(steps, [(0, Rel::Realtime), (3, Rel::RW)], "{r}");
        assert!(r.to_string().contains("a shortest one"), "{r}");
    }

    #[test]
    fn the_smallest_cycle_is_reported_not_the_first() {
        // A long G0 cycle through T0..T4 on keys a..e, and a 2-cycle T5, T6.
        let mut h = oks(&[
            "aa1ab5", "ab1ac2", "ac1ad3", "ad1ae4", "ae1aa2", "af1ag2", "af2ag1",
        ]);
        h.extend(oks(&[
            "ra12", "rb15", "rc12", "rd13", "re14", "rf12", "rg12",
        ]));
        let r = check(&h, &Budget::default());
        let lens: Vec<usize> = r.cycles().map(|c| c.steps.len()).collect();
        assert_eq!(lens, [2, 5], "{r}");
        assert!(r.cycles().all(|c| c.minimal));
    }

    #[test]
    fn info_transactions_count_and_fail_ones_do_not() {
        // An info append that was read is a writer like any other.
        let h = vec![
            txn(OpKind::Info, "ax1ay1"),
            txn(OpKind::Ok, "ax2ay2"),
            txn(OpKind::Ok, "rx12ry21"),
        ];
        assert_eq!(kinds(&check(&h, &Budget::default())), ["G0"]);
        // The same with the first failed: its appends are not in the graph.
        let h = vec![
            txn(OpKind::Fail, "ax1ay1"),
            txn(OpKind::Ok, "ax2ay2"),
            txn(OpKind::Ok, "rx2ry2"),
        ];
        assert!(check(&h, &Budget::default()).is_valid());
    }

    #[test]
    fn an_element_appended_twice_is_unknown_naming_it() {
        for h in [
            oks(&["ax1", "ax1", "rx1"]),
            vec![txn(OpKind::Fail, "ax1"), txn(OpKind::Ok, "ax1")],
            oks(&["ax1ax1"]),
        ] {
            let r = check(&h, &Budget::default());
            match &r.validity {
                Validity::Unknown(why) => assert!(
                    why.starts_with("element 1 was appended to key x twice (T0 and T"),
                    "{why}"
                ),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_search_out_of_budget_still_reports_a_cycle() {
        let h = oks(&["ax1ay1", "ax2ay2", "rx12ry21"]);
        let r = check(&h, &Budget::steps(1));
        assert!(r.is_invalid(), "{r}");
        assert!(r.incomplete.is_some(), "{r}");
        assert!(r.cycles().all(|c| !c.minimal), "{r}");
        assert!(r.to_string().contains("not minimal"), "{r}");
    }

    #[test]
    fn a_graph_over_the_memory_budget_is_unknown() {
        // 200 appends to x, each read by its own reader: 600 dependencies.
        let x = || Value::Str("x".into());
        let appends = (0..200).map(|i| Txn {
            process: i,
            outcome: OpKind::Ok,
            mops: vec![Mop::Append {
                key: x(),
                element: Value::Int(i as i64),
            }],
            source: String::new(),
            invoked: None,
            completed: None,
        });
        let reads = (0..200).map(|i| Txn {
            process: 1000 + i,
            outcome: OpKind::Ok,
            mops: vec![Mop::Read {
                key: x(),
                list: Some((0..=i as i64).map(Value::Int).collect()),
            }],
            source: String::new(),
            invoked: None,
            completed: None,
        });
        let all: Vec<Txn> = appends.chain(reads).collect();
        let r = check(&all, &Budget::default().with_memory(10 * EDGE_BYTES));
        match &r.validity {
            Validity::Unknown(why) => assert!(why.contains("memory budget of"), "{why}"),
            other => panic!("{other:?}"),
        }
        let r = check(&all, &Budget::default());
        assert!(r.is_valid(), "{r}");
        assert!(r.edges >= 500, "{}", r.edges);
    }

    #[test]
    fn histories_of_txn_ops_read_back() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        let mut h = History::new();
        h.invoke(
            1,
            F::Txn,
            None,
            Value::txn([Value::append("x", 1), Value::append("y", 1)]),
            ms(0),
        )
        .unwrap();
        h.ok(
            1,
            Value::txn([Value::append("x", 1), Value::append("y", 1)]),
            ms(1),
        )
        .unwrap();
        h.invoke(
            2,
            F::Txn,
            None,
            Value::txn([Value::append("x", 2), Value::append("y", 2)]),
            ms(2),
        )
        .unwrap();
        h.ok(
            2,
            Value::txn([Value::append("x", 2), Value::append("y", 2)]),
            ms(3),
        )
        .unwrap();
        h.invoke(
            3,
            F::Txn,
            None,
            Value::txn([Value::read_list("x", None), Value::read_list("y", None)]),
            ms(4),
        )
        .unwrap();
        let read = |l: &[i64]| Some(l.iter().map(|&v| Value::Int(v)).collect());
        h.ok(
            3,
            Value::txn([
                Value::read_list("x", read(&[1, 2])),
                Value::read_list("y", read(&[2, 1])),
            ]),
            ms(5),
        )
        .unwrap();
        let txns = txns_from_history(&h).unwrap();
        assert_eq!(txns.len(), 3);
        assert_eq!(txns[2].source, "op #4..#5");
        assert_eq!(kinds(&check(&txns, &Budget::default())), ["G0"]);
        // Through the log format and back.
        let back = History::from_jsonl("h", &h.to_jsonl()).unwrap();
        assert_eq!(txns_from_history(&back).unwrap(), txns);

        // Malformed: errors, not panics.
        let mut bad = History::new();
        bad.invoke(1, F::Txn, None, Value::txn([Value::Int(3)]), ms(0))
            .unwrap();
        let e = txns_from_history(&bad).unwrap_err().to_string();
        assert!(e.contains("a micro-op is [f, key, value], not 3"), "{e}");
        let mut bad = History::new();
        bad.invoke(1, F::Txn, None, Value::txn([Value::append("x", 1)]), ms(0))
            .unwrap();
        bad.ok(1, Value::txn([Value::append("x", 2)]), ms(1))
            .unwrap();
        let e = txns_from_history(&bad).unwrap_err().to_string();
        assert!(e.contains("not the invocation's"), "{e}");
        let mut bad = History::new();
        bad.invoke(1, F::Read, None, Value::Nil, ms(0)).unwrap();
        let e = txns_from_history(&bad).unwrap_err().to_string();
        assert!(e.contains("a read op in a list-append history"), "{e}");
    }

    #[test]
    fn edn_histories_read_and_bad_ones_are_errors() {
        let text = "[{:process 0, :type :invoke, :f :txn, :value [[:append :x 1] [:r :y nil]]}
 {:process 0, :type :ok, :f :txn, :value [[:append :x 1] [:r :y [1]]]}
 {:process :nemesis, :type :info, :f :start}
 {:type :ok, :value [[:append :y 1]]}]";
        let txns = read_edn("t.edn", text).unwrap();
        assert_eq!(txns.len(), 2);
        assert_eq!(txns[0].source, "lines 1..2");
        assert_eq!(
            txns[0].to_string(),
            "p0 ok [append :x 1, r :y [1]] (lines 1..2)"
        );
        for (bad, says) in [
            ("{:type :ok, :value [[:append :x]]}", "t.edn:1: a micro-op is [f k v]"),
            ("{:type :ok, :value [[:write :x 1]]}", "not :write"),
            ("{:type :ok, :value 3}", "not a vector of micro-ops"),
            ("{:type :ok, :f :read, :value []}", ":f :read"),
            ("{:process 1, :type :invoke, :value []}\n{:process 1, :type :invoke, :value []}", "t.edn:2: process 1 invokes while"),
            ("{:process 1, :type :invoke, :value [[:r :x nil]]}\n{:process 1, :type :ok, :value []}", "not the invocation's"),
            ("{:type :ok, :value [[:r :x 3]]}", "a read's list is a vector or nil"),
            ("[{:type :ok", "never closed"),
            ("{:process -1, :type :ok, :value []}", "non-negative"),
        ] {
            let e = read_edn("t.edn", bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
