//! Models for the linearizability checker: a register (read, write, cas) and
//! a key-value map of such registers, partitioned by key.

use super::linearizability::{Model, Operation, Partition};
use crate::history::Value;
use std::collections::{BTreeMap, BTreeSet};

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

/// Removing ops is safe when no kept op observes a value a removed op
/// produces. Proof sketch: take a linearization of the whole; after each
/// removed producer, until the next kept producer, the register holds a
/// value the removed ops produced, so no kept op sits there but plain
/// writes (which end the stretch); dropping the removed ops leaves a valid
/// linearization of the kept ones.
fn removable_by_values<'a, T: Ord + 'a>(
    removed: impl Iterator<Item = Option<T>>,
    kept: impl Iterator<Item = Option<T>>,
) -> bool {
    let produced: BTreeSet<T> = removed.flatten().collect();
    produced.is_empty() || kept.flatten().all(|v| !produced.contains(&v))
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

    /// When no kept op observes a value the removed ops write.
    fn removable(
        &self,
        removed: &[&Operation<RegisterOp, RegisterOutput>],
        kept: &[&Operation<RegisterOp, RegisterOutput>],
    ) -> bool {
        removable_by_values(
            removed.iter().map(|o| produced(&o.input)),
            kept.iter().map(|o| observed(&o.input, &o.output)),
        )
    }
}

/// An operation on one key of a map.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvOp {
    pub key: String,
    pub op: RegisterOp,
}

/// A map from keys to registers, all initially `Nil`. Partitioned by key:
/// a map is linearizable iff each key is, so each key is checked on its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvModel;

impl Model for KvModel {
    /// Keys whose value is not `Nil`.
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
        let current = state.get(&input.key).unwrap_or(&Value::Nil);
        let new = register_step(current, &input.op, output)?;
        if new == *current {
            return Some(state.clone());
        }
        let mut state = state.clone();
        if new == Value::Nil {
            state.remove(&input.key);
        } else {
            state.insert(input.key.clone(), new);
        }
        Some(state)
    }

    fn partition(&self, ops: &[Operation<KvOp, RegisterOutput>]) -> Vec<Partition> {
        let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, o) in ops.iter().enumerate() {
            by_key.entry(o.input.key.as_str()).or_default().push(i);
        }
        by_key
            .into_iter()
            .map(|(k, ops)| Partition {
                label: Some(k.to_string()),
                ops,
            })
            .collect()
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
        removable_by_values(
            removed
                .iter()
                .map(|o| produced(&o.input.op).map(|v| (&o.input.key, v))),
            kept.iter()
                .map(|o| observed(&o.input.op, &o.output).map(|v| (&o.input.key, v))),
        )
    }
}
