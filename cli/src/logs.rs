//! `distzero logs`: a run's lines, merged, filtered, readable.

use crate::run::{level_rank, Line, Run};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Which lines to show. Empty lists match everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Lines written on these machines, and message events from or to them.
    pub machines: Vec<String>,
    /// Lines of these nodes, and message events from or to them.
    pub nodes: Vec<String>,
    /// Message events of these message types only (the sender's name,
    /// also on the delivery and the drop).
    pub types: Vec<String>,
    /// Time range, seconds since the cluster started, both ends included.
    pub from: Option<f64>,
    pub to: Option<f64>,
    /// Least severe level shown (`info` shows ERROR, WARN and INFO).
    pub level: Option<u8>,
}

/// The message type of every message id, from its send event.
pub fn types_by_id(run: &Run) -> BTreeMap<u64, String> {
    let mut m = BTreeMap::new();
    for l in &run.lines {
        if l.message == "send" {
            if let (Some(id), Some(t)) = (l.u64_field("msg"), l.str_field("msg_type")) {
                m.insert(id, t.to_string());
            }
        }
    }
    m
}

fn machine_of(node: &str) -> &str {
    node.split('.').next().unwrap_or(node)
}

impl Filter {
    pub fn matches(&self, l: &Line, types: &BTreeMap<u64, String>) -> bool {
        if self.from.is_some_and(|f| l.time < f) || self.to.is_some_and(|t| l.time > t) {
            return false;
        }
        if let Some(max) = self.level {
            if level_rank(&l.level).unwrap_or(3) > max {
                return false;
            }
        }
        let msg = l.is_message_event();
        let ends = || {
            [l.str_field("from"), l.str_field("to")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
        };
        if !self.machines.is_empty() {
            let on = self.machines.contains(&l.machine)
                || (msg
                    && ends()
                        .iter()
                        .any(|n| self.machines.iter().any(|m| m == machine_of(n))));
            if !on {
                return false;
            }
        }
        if !self.nodes.is_empty() {
            let on = l.node.as_ref().is_some_and(|n| self.nodes.contains(n))
                || (msg && ends().iter().any(|n| self.nodes.iter().any(|m| m == n)));
            if !on {
                return false;
            }
        }
        if !self.types.is_empty() {
            if !msg {
                return false;
            }
            let ty = l
                .str_field("msg_type")
                .map(str::to_string)
                .or_else(|| l.u64_field("msg").and_then(|id| types.get(&id).cloned()));
            if !ty.is_some_and(|t| self.types.contains(&t)) {
                return false;
            }
        }
        true
    }
}

/// One line, readable: time, seq, level, where, what, then its fields.
/// A message event reads `send #12 Write m3.n0 -> m0.n0 (14 B)`.
pub fn format_line(l: &Line, types: &BTreeMap<u64, String>) -> String {
    let mut out = String::with_capacity(120);
    let who = l.node.as_deref().unwrap_or(&l.machine);
    let _ = write!(
        out,
        "{:>12.6} {:>8} {:<5} {:<12} ",
        l.time, l.seq, l.level, who
    );
    if l.is_message_event() {
        let id = l.u64_field("msg").unwrap_or(0);
        let ty = l
            .str_field("msg_type")
            .map(str::to_string)
            .or_else(|| types.get(&id).cloned())
            .unwrap_or_else(|| "?".into());
        let _ = write!(
            out,
            "{:<7} #{id} {ty} {} -> {} ({} B)",
            l.message,
            l.str_field("from").unwrap_or("?"),
            l.str_field("to").unwrap_or("?"),
            l.u64_field("size").unwrap_or(0)
        );
        if let Some(r) = l.str_field("reason") {
            let _ = write!(out, " reason={r}");
        }
        return out;
    }
    out.push_str(&l.message);
    for (k, v) in &l.fields {
        match v {
            serde_json::Value::String(s) => {
                let _ = write!(out, " {k}={s}");
            }
            other => {
                let _ = write!(out, " {k}={other}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::parse_line;

    fn line(text: &str) -> Line {
        parse_line("m0.jsonl", 1, text).unwrap()
    }

    #[test]
    fn filters_pick_machines_nodes_types_times_and_levels() {
        let send = line(
            r#"{"time":1.5,"seq":3,"level":"INFO","machine":"m3","node":"m3.n0","message":"send","msg":7,"from":"m3.n0","to":"m0.n0","msg_type":"Write","size":12}"#,
        );
        let deliver = line(
            r#"{"time":1.6,"seq":4,"level":"INFO","machine":"m0","node":"m0.n0","message":"deliver","msg":7,"from":"m3.n0","to":"m0.n0","size":12}"#,
        );
        let debug = line(
            r#"{"time":2.0,"seq":5,"level":"DEBUG","machine":"m1","node":"m1.n0","message":"stored","key":"k1"}"#,
        );
        let types: BTreeMap<u64, String> = [(7, "Write".to_string())].into();
        let f = |f: Filter, l: &Line| f.matches(l, &types);
        assert!(f(Filter::default(), &debug));
        let on_m0 = Filter {
            machines: vec!["m0".into()],
            ..Filter::default()
        };
        assert!(f(on_m0.clone(), &send), "a message to m0 is m0's");
        assert!(!f(on_m0, &debug));
        let writes = Filter {
            types: vec!["Write".into()],
            ..Filter::default()
        };
        assert!(
            f(writes.clone(), &deliver),
            "the delivery takes the send's type"
        );
        assert!(!f(writes, &debug));
        let late = Filter {
            from: Some(1.55),
            ..Filter::default()
        };
        assert!(!f(late.clone(), &send) && f(late, &deliver));
        let info = Filter {
            level: Some(3),
            ..Filter::default()
        };
        assert!(!f(info, &debug));
        let node = Filter {
            nodes: vec!["m1.n0".into()],
            ..Filter::default()
        };
        assert!(f(node.clone(), &debug) && !f(node, &send));
        assert!(format_line(&deliver, &types).contains("deliver #7 Write m3.n0 -> m0.n0 (12 B)"));
        assert!(format_line(&debug, &types).ends_with("stored key=k1"));
    }
}
