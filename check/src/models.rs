//! Models for the linearizability checker: a register (read, write, cas) and
//! a key-value map of such registers, partitioned by key.

use super::linearizability::{Model, Operation, Partition};
use crate::history::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// An operation on a register.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    Read,
    Write(Value),
    /// Compare-and-set: `(expected, new)`.
    Cas(Value, Value),
}

/// The outcome of a register operation: `Some(value read)` (the value is
/// ignored for writes and cas), or `None` for unknown (`info`).
pub type RegisterOutput = Option<Value>;

/// A single register, initially `initial` (`Nil` by default). A read must
/// return the current value; a write sets it; a cas that completed `ok`
/// matched and set; an unknown write or cas may take effect (a cas only if
/// it matches), and an unknown read constrains nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegisterModel {
    pub initial: Value,
}

fn register_step(state: &Value, input: &RegisterOp, output: &RegisterOutput) -> Option<Value> {
    match input {
        RegisterOp::Read => match output {
            Some(v) if v != state => None,
            _ => Some(state.clone()),
        },
        RegisterOp::Write(v) => Some(v.clone()),
        RegisterOp::Cas(expected, new) => (expected == state).then(|| new.clone()),
    }
}

/// The value an op observes: a completed read's result; a cas's expected
/// value (also when its outcome is unknown: if it happened, it matched).
fn observed<'a>(input: &'a RegisterOp, output: &'a RegisterOutput) -> Option<&'a Value> {
    match (input, output) {
        (RegisterOp::Read, Some(v)) => Some(v),
        (RegisterOp::Cas(expected, _), _) => Some(expected),
        _ => None,
    }
}

/// The value an op may leave in the register.
fn produced(input: &RegisterOp) -> Option<&Value> {
    match input {
        RegisterOp::Read => None,
        RegisterOp::Write(v) | RegisterOp::Cas(_, v) => Some(v),
    }
}

/// What an op does to a register, for [`removable_by_values`].
#[derive(Clone)]
pub(crate) struct Role<'a, K> {
    pub(crate) key: K,
    /// The value it observes: a completed read's result, a cas's expected
    /// value (also when its outcome is unknown: if it happened, it matched).
    pub(crate) observed: Option<&'a Value>,
    /// The value it may leave.
    pub(crate) produced: Option<&'a Value>,
    pub(crate) call: Duration,
    pub(crate) ret: Option<Duration>,
}

impl<'a> Role<'a, ()> {
    fn of(o: &'a Operation<RegisterOp, RegisterOutput>) -> Self {
        Role::keyed((), &o.input, o)
    }
}

impl<'a, K> Role<'a, K> {
    fn keyed<I>(key: K, op: &'a RegisterOp, o: &'a Operation<I, RegisterOutput>) -> Self {
        Role {
            key,
            observed: observed(op, &o.output),
            produced: produced(op),
            call: o.call,
            ret: o.ret,
        }
    }
}

/// Whether removing the `removed` ops, keeping `kept`, keeps a linearizable
/// register (or map of them, by key) linearizable.
///
/// Safe: for every kept op R observing a value v and every removed op P
/// that may produce v, P can never be the last producer before R in a
/// linearization: R returned before P was called, or some op X that surely
/// took effect (a completed write or cas, kept or removed) was called after
/// P returned and returned before R was called. Proof sketch: take a
/// linearization of the whole and drop the removed ops; every kept op still
/// sees the value it saw, since the last producer before it is kept (or
/// there is none), except for plain writes, which see nothing.
///
/// Readable: a removed producer of v whose value a kept op observes leaves
/// at least one kept producer of v behind (unless v is the initial value),
/// so a stale read keeps a write it could have read from instead of
/// shrinking to "a read of a value never written". Several writes of one
/// value shrink to one when a later write separates them from the read.
pub(crate) fn removable_by_values<'a, K: Ord + Copy>(
    removed: &[Role<'a, K>],
    kept: impl Iterator<Item = Role<'a, K>> + Clone,
    initial: impl Fn(K) -> &'a Value,
) -> bool {
    type Span = (Duration, Option<Duration>);
    let mut gone: BTreeMap<(K, &Value), Vec<Span>> = BTreeMap::new();
    for r in removed {
        if let Some(v) = r.produced {
            gone.entry((r.key, v)).or_default().push((r.call, r.ret));
        }
    }
    if gone.is_empty() {
        return true;
    }
    // Kept ops that observe what a removed op may have produced: usually
    // none (then all is cheap).
    let watchers: Vec<Role<'a, K>> = kept
        .clone()
        .filter(|r| r.observed.is_some_and(|v| gone.contains_key(&(r.key, v))))
        .collect();
    if watchers.is_empty() {
        return true;
    }
    // Pairs (watcher, removed producer of what it observed) that real
    // time alone does not order; one that never returned may always come
    // last before the watcher.
    let mut unordered: Vec<(K, Duration, Duration)> = Vec::new();
    for r in &watchers {
        let Some(v) = r.observed else { continue };
        for &(p_call, p_ret) in gone.get(&(r.key, v)).into_iter().flatten() {
            if r.ret.is_some_and(|t| t < p_call) {
                continue;
            }
            let Some(p_ret) = p_ret else {
                return false;
            };
            unordered.push((r.key, p_ret, r.call));
        }
    }
    // Readable: an observed value keeps a producer.
    let still_produced: BTreeSet<(K, &Value)> = kept
        .clone()
        .filter_map(|o| o.produced.map(|v| (o.key, v)))
        .filter(|kv| gone.contains_key(kv))
        .collect();
    for r in &watchers {
        let Some(v) = r.observed else { continue };
        if v != initial(r.key) && !still_produced.contains(&(r.key, v)) {
            return false;
        }
    }
    if unordered.is_empty() {
        return true;
    }
    // Ops that surely took effect, on the keys concerned: (call, ret),
    // sorted by call, with the earliest return among those called at or
    // after each.
    let keys: BTreeSet<K> = unordered.iter().map(|&(k, _, _)| k).collect();
    let mut sure: BTreeMap<K, Vec<(Duration, Duration)>> = BTreeMap::new();
    for o in removed.iter().cloned().chain(kept) {
        if let (Some(_), Some(ret), true) = (o.produced, o.ret, keys.contains(&o.key)) {
            sure.entry(o.key).or_default().push((o.call, ret));
        }
    }
    for v in sure.values_mut() {
        v.sort_unstable();
        for i in (0..v.len().saturating_sub(1)).rev() {
            v[i].1 = v[i].1.min(v[i + 1].1);
        }
    }
    // Separated: an op that surely took effect was called after the
    // producer returned and returned before the watcher was called.
    unordered.into_iter().all(|(key, p_ret, r_call)| {
        sure.get(&key).is_some_and(|v| {
            v.get(v.partition_point(|&(c, _)| c <= p_ret))
                .is_some_and(|&(_, x_ret)| x_ret < r_call)
        })
    })
}

/// Heap bytes of a value (estimate).
pub(crate) fn value_heap_bytes(v: &Value) -> usize {
    match v {
        Value::Nil | Value::Int(_) => 0,
        Value::Str(s) => s.capacity(),
        Value::List(vs) => {
            vs.capacity() * std::mem::size_of::<Value>()
                + vs.iter().map(value_heap_bytes).sum::<usize>()
        }
    }
}

impl Model for RegisterModel {
    type State = Value;
    type Input = RegisterOp;
    type Output = RegisterOutput;

    fn init(&self) -> Value {
        self.initial.clone()
    }

    fn step(&self, state: &Value, input: &RegisterOp, output: &RegisterOutput) -> Option<Value> {
        register_step(state, input, output)
    }

    fn read_only(&self, input: &RegisterOp, _: &RegisterOutput) -> bool {
        *input == RegisterOp::Read
    }

    /// See `removable_by_values`: no kept op can have seen what a removed
    /// op wrote, and a value still observed keeps a writer.
    fn removable(
        &self,
        removed: &[&Operation<RegisterOp, RegisterOutput>],
        kept: &[&Operation<RegisterOp, RegisterOutput>],
    ) -> bool {
        let removed: Vec<_> = removed.iter().map(|o| Role::of(o)).collect();
        let kept = kept.iter().map(|o| Role::of(o));
        removable_by_values(&removed, kept, |()| &self.initial)
    }

    fn state_heap_bytes(&self, state: &Value) -> usize {
        value_heap_bytes(state)
    }
}

/// An operation on one key of a map.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvOp {
    pub key: String,
    pub op: RegisterOp,
}

/// A map from keys to registers, each initially `initial_keys[key]` if
/// there, else `initial` (`Nil` by default). Partitioned by key: a map is
/// linearizable iff each key is, so each key is checked on its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvModel {
    /// The initial value of every key not in `initial_keys`.
    pub initial: Value,
    /// Initial values of particular keys.
    pub initial_keys: BTreeMap<String, Value>,
}

impl KvModel {
    /// A map whose keys all start as `initial`.
    pub fn with_initial(initial: impl Into<Value>) -> Self {
        KvModel {
            initial: initial.into(),
            initial_keys: BTreeMap::new(),
        }
    }

    /// The initial value of `key`.
    pub fn initial_of(&self, key: &str) -> &Value {
        self.initial_keys.get(key).unwrap_or(&self.initial)
    }
}

impl Model for KvModel {
    /// Keys whose value differs from their initial value.
    type State = BTreeMap<String, Value>;
    type Input = KvOp;
    type Output = RegisterOutput;

    fn init(&self) -> Self::State {
        BTreeMap::new()
    }

    fn step(
        &self,
        state: &Self::State,
        input: &KvOp,
        output: &RegisterOutput,
    ) -> Option<Self::State> {
        let initial = self.initial_of(&input.key);
        let current = state.get(&input.key).unwrap_or(initial);
        let new = register_step(current, &input.op, output)?;
        if new == *current {
            return Some(state.clone());
        }
        let mut state = state.clone();
        if new == *initial {
            state.remove(&input.key);
        } else {
            state.insert(input.key.clone(), new);
        }
        Some(state)
    }

    fn state_heap_bytes(&self, state: &Self::State) -> usize {
        state
            .iter()
            .map(|(k, v)| {
                // A B-tree node's share per entry, the key's and value's heap.
                2 * (std::mem::size_of::<String>() + std::mem::size_of::<Value>())
                    + k.capacity()
                    + value_heap_bytes(v)
            })
            .sum()
    }

    fn partition(&self, ops: &[Operation<KvOp, RegisterOutput>]) -> Vec<Partition> {
        partition_by_key(ops, |op| &op.key)
    }

    fn read_only(&self, input: &KvOp, _: &RegisterOutput) -> bool {
        input.op == RegisterOp::Read
    }

    /// As [`RegisterModel::removable`], per key.
    fn removable(
        &self,
        removed: &[&Operation<KvOp, RegisterOutput>],
        kept: &[&Operation<KvOp, RegisterOutput>],
    ) -> bool {
        fn role<'a>(o: &&'a Operation<KvOp, RegisterOutput>) -> Role<'a, &'a str> {
            Role::keyed(o.input.key.as_str(), &o.input.op, o)
        }
        let removed: Vec<_> = removed.iter().map(role).collect();
        removable_by_values(&removed, kept.iter().map(role), |k| self.initial_of(k))
    }
}

/// One partition per key (in key order), labelled with it: the operations
/// of a map whose keys are independent.
pub(crate) fn partition_by_key<I, O>(
    ops: &[Operation<I, O>],
    key: impl Fn(&I) -> &String,
) -> Vec<Partition> {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, o) in ops.iter().enumerate() {
        by_key.entry(key(&o.input).as_str()).or_default().push(i);
    }
    by_key
        .into_iter()
        .map(|(k, ops)| Partition {
            label: Some(k.to_string()),
            ops,
        })
        .collect()
}
