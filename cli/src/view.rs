//! `distzero view`: a run's logs as one self-contained HTML page, a
//! space-time diagram drawn on a canvas (`cli/view/`: the page, its script
//! and style, embedded here with `include_str!`).
//!
//! What the page draws comes from the merged lines ([`crate::run`]):
//! one lane per node (clients of the controller share one lane), an arrow
//! per message from its send to its delivery (or to where it was dropped,
//! marked), faults as shaded spans on the machines they hit (crash, pause,
//! cut, hold; the nemesis's own lines as marks on top), history operations
//! as bars from invocation to completion, and the minimal counterexample
//! of a failed linearizability check (the `error` of the run's failure
//! line) highlighted.

use crate::run::{machine_order, Line, Run};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const PAGE: &str = include_str!("../view/view.html");
const SCRIPT: &str = include_str!("../view/view.js");
const STYLE: &str = include_str!("../view/view.css");

/// The lane of the controller's clients.
pub const CLIENTS: &str = "clients";

/// Status of a message arrow.
const DELIVERED: u8 = 0;
const DROPPED: u8 = 1;
const IN_FLIGHT: u8 = 2;

#[derive(Default)]
struct Interner {
    names: Vec<String>,
    index: BTreeMap<String, usize>,
}

impl Interner {
    fn get(&mut self, s: &str) -> usize {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        self.names.push(s.to_string());
        self.index.insert(s.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }
}

/// The lane of a node id as the logs write it (`m0.n1`, `client.7`).
fn lane_name(node: &str) -> String {
    if node.starts_with("client.") {
        CLIENTS.to_string()
    } else {
        node.to_string()
    }
}

fn lane_order(name: &str) -> (u8, u64, u64, String) {
    if name == CLIENTS {
        return (0, 0, 0, String::new());
    }
    let mut parts = name.splitn(2, '.');
    let m = parts.next().unwrap_or("");
    let (_, mnum, _) = machine_order(m);
    let n = parts
        .next()
        .and_then(|n| n.strip_prefix('n'))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    (1, mnum, n, name.to_string())
}

/// The machine of a lane (`m0.n1` → `m0`).
fn lane_machine(lane: &str) -> &str {
    lane.split('.').next().unwrap_or(lane)
}

struct Send {
    lane: String,
    time: f64,
    ty: String,
    size: u64,
    seq: u64,
    used: bool,
}

#[derive(Default)]
struct Msgs {
    id: Vec<u64>,
    from: Vec<String>,
    to: Vec<String>,
    t0: Vec<f64>,
    t1: Vec<f64>,
    st: Vec<u8>,
    ty: Vec<String>,
    size: Vec<u64>,
    reason: Vec<String>,
    seq0: Vec<u64>,
    seq1: Vec<u64>,
}

impl Msgs {
    #[allow(clippy::too_many_arguments)]
    fn push(&mut self, id: u64, s: &Send, to: String, t1: f64, st: u8, reason: &str, seq1: u64) {
        self.id.push(id);
        self.from.push(s.lane.clone());
        self.to.push(to);
        self.t0.push(s.time);
        self.t1.push(t1);
        self.st.push(st);
        self.ty.push(s.ty.clone());
        self.size.push(s.size);
        self.reason.push(reason.to_string());
        self.seq0.push(s.seq);
        self.seq1.push(seq1);
    }
}

/// A fault span being built: machine → (kind, label) → start.
type Open = BTreeMap<(String, String), (f64, String, Value)>;

struct Faults {
    out: Vec<Value>,
    open: Open,
}

impl Faults {
    fn start(&mut self, machine: &str, kind: &str, t: f64, label: String, fields: Value) {
        self.open
            .entry((machine.to_string(), kind.to_string()))
            .or_insert((t, label, fields));
    }

    fn end(&mut self, machine: &str, kind: &str, t: f64) {
        if let Some((t0, label, fields)) =
            self.open.remove(&(machine.to_string(), kind.to_string()))
        {
            self.out.push(json!({"machine": machine, "kind": kind, "t0": t0, "t1": t, "label": label, "fields": fields}));
        }
    }

    fn end_kind(&mut self, kind: &str, t: f64) {
        let keys: Vec<(String, String)> =
            self.open.keys().filter(|k| k.1 == kind).cloned().collect();
        for (m, k) in keys {
            self.end(&m, &k, t);
        }
    }
}

/// A machine field: `machine` in an event is written `event_machine`.
fn machine_field(l: &Line) -> Option<&str> {
    l.str_field("event_machine")
        .or_else(|| l.str_field("machine"))
}

/// Ops of the counterexample: (process, invoke time in seconds), from
/// lines like `p1   write "k1" 1000054 -> ok  [2.501918s .. 2.816817s]`.
pub fn counterexample(error: &str) -> Vec<(u64, f64)> {
    let mut out = Vec::new();
    for line in error.lines() {
        let t = line.trim();
        let Some(rest) = t.strip_prefix('p') else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(process) = digits.parse::<u64>() else {
            continue;
        };
        let (Some(open), true) = (t.rfind('['), t.ends_with(']')) else {
            continue;
        };
        let inside = &t[open + 1..t.len() - 1];
        let Some((a, _)) = inside.split_once("..") else {
            continue;
        };
        if let Ok(secs) = a.trim().trim_end_matches('s').parse::<f64>() {
            out.push((process, secs));
        }
    }
    out
}

/// The model the page draws, as JSON.
pub fn model(run: &Run, title: &str) -> Value {
    let mut lanes: BTreeMap<(u8, u64, u64, String), String> = BTreeMap::new();
    fn add(lanes: &mut BTreeMap<(u8, u64, u64, String), String>, name: &str) {
        lanes
            .entry(lane_order(name))
            .or_insert_with(|| name.to_string());
    }
    let mut sends: BTreeMap<u64, Send> = BTreeMap::new();
    let mut msgs = Msgs::default();
    let mut faults = Faults {
        out: Vec::new(),
        open: Open::new(),
    };
    let mut marks = Vec::new();
    let mut ops = Vec::new();
    let mut pending: BTreeMap<u64, (f64, String, Value, u64)> = BTreeMap::new();
    let mut failure: Option<String> = None;
    let mut cut: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut tmax: f64 = 0.0;
    let mut other = 0usize;

    // A machine's cut span: relabelled whenever its set of cut peers changes.
    fn recut(
        faults: &mut Faults,
        cut: &BTreeMap<String, std::collections::BTreeSet<String>>,
        m: &str,
        t: f64,
    ) {
        // Cuts of one partition come at one instant: one span, relabelled.
        let key = (m.to_string(), "cut".to_string());
        if faults.open.get(&key).is_some_and(|(t0, _, _)| *t0 == t) {
            faults.open.remove(&key);
        }
        faults.end(m, "cut", t);
        if let Some(peers) = cut.get(m).filter(|p| !p.is_empty()) {
            let list: Vec<&str> = peers.iter().map(String::as_str).collect();
            faults.start(
                m,
                "cut",
                t,
                format!("cut from {}", list.join(",")),
                json!({"peers": list}),
            );
        }
    }

    for l in &run.lines {
        tmax = tmax.max(l.time);
        if let Some(n) = &l.node {
            add(&mut lanes, &lane_name(n));
        }
        if l.is_message_event() {
            let id = l.u64_field("msg").unwrap_or(0);
            let from = lane_name(l.str_field("from").unwrap_or("?"));
            let to = lane_name(l.str_field("to").unwrap_or("?"));
            add(&mut lanes, &from);
            add(&mut lanes, &to);
            match l.message.as_str() {
                "send" => {
                    sends.insert(
                        id,
                        Send {
                            lane: from,
                            time: l.time,
                            ty: l.str_field("msg_type").unwrap_or("?").to_string(),
                            size: l.u64_field("size").unwrap_or(0),
                            seq: l.seq,
                            used: false,
                        },
                    );
                }
                end => {
                    let fallback;
                    let s = match sends.get_mut(&id) {
                        Some(s) => {
                            s.used = true;
                            &*s
                        }
                        None => {
                            // Its send is not in the logs (written before
                            // message events were on): start it here.
                            fallback = Send {
                                lane: from,
                                time: l.time,
                                ty: "?".into(),
                                size: l.u64_field("size").unwrap_or(0),
                                seq: l.seq,
                                used: true,
                            };
                            &fallback
                        }
                    };
                    let (st, reason) = if end == "deliver" {
                        (DELIVERED, "")
                    } else {
                        (DROPPED, l.str_field("reason").unwrap_or("?"))
                    };
                    msgs.push(id, s, to, l.time, st, reason, l.seq);
                }
            }
            continue;
        }
        match l.message.as_str() {
            "history" => {
                let Some(op) = l
                    .str_field("op")
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
                else {
                    continue;
                };
                let lane = lane_name(l.node.as_deref().unwrap_or(&l.machine));
                add(&mut lanes, &lane);
                let process = op["process"].as_u64().unwrap_or(0);
                let t = op["time_ns"].as_f64().map_or(l.time, |ns| ns / 1e9);
                let kind = op["kind"].as_str().unwrap_or("?").to_string();
                if kind == "invoke" {
                    pending.insert(process, (t, lane, op, l.seq));
                } else if let Some((t0, lane, inv, seq0)) = pending.remove(&process) {
                    ops.push((process, t0, t, lane, kind, inv, op, seq0, l.seq));
                }
            }
            "crash" | "restart" | "pause" | "resume" => {
                let Some(m) = machine_field(l) else { continue };
                let m = m.to_string();
                let fields = Value::Object(l.to_json().as_object().cloned().unwrap_or_default());
                match l.message.as_str() {
                    "crash" => faults.start(&m, "crash", l.time, "crashed".into(), fields),
                    "restart" => faults.end(&m, "crash", l.time),
                    "pause" => faults.start(&m, "pause", l.time, "paused".into(), fields),
                    _ => faults.end(&m, "pause", l.time),
                }
            }
            "cut" | "heal" | "hold" | "release" => {
                let (Some(f), Some(t)) = (l.str_field("from"), l.str_field("to")) else {
                    continue;
                };
                let (f, t) = (f.to_string(), t.to_string());
                match l.message.as_str() {
                    "cut" => {
                        cut.entry(f.clone()).or_default().insert(t.clone());
                        cut.entry(t.clone()).or_default().insert(f.clone());
                    }
                    "heal" => {
                        cut.entry(f.clone()).or_default().remove(&t);
                        cut.entry(t.clone()).or_default().remove(&f);
                    }
                    "hold" => faults.start(
                        &f,
                        &format!("hold→{t}"),
                        l.time,
                        format!("held → {t}"),
                        l.to_json(),
                    ),
                    _ => faults.end(&f, &format!("hold→{t}"), l.time),
                }
                if matches!(l.message.as_str(), "cut" | "heal") {
                    recut(&mut faults, &cut, &f, l.time);
                    recut(&mut faults, &cut, &t, l.time);
                }
            }
            "heal all" => {
                cut.clear();
                faults.end_kind("cut", l.time);
                let held: Vec<(String, String)> = faults
                    .open
                    .keys()
                    .filter(|k| k.1.starts_with("hold"))
                    .cloned()
                    .collect();
                for (m, k) in held {
                    faults.end(&m, &k, l.time);
                }
            }
            m if m == "nemesis" || m.starts_with("nemesis:") => {
                let label = l
                    .str_field("fault")
                    .map_or_else(|| m.to_string(), str::to_string);
                marks.push(
                    json!({"t": l.time, "label": label, "seq": l.seq, "fields": l.to_json()}),
                );
            }
            _ => {
                if l.level == "ERROR" {
                    if let Some(e) = l.str_field("error") {
                        if failure.is_none() {
                            failure = Some(e.to_string());
                        }
                    }
                    marks.push(json!({"t": l.time, "label": l.message, "seq": l.seq, "error": true, "fields": l.to_json()}));
                } else {
                    other += 1;
                }
            }
        }
    }
    let unanswered: Vec<(u64, String)> = sends
        .iter()
        .filter(|(_, s)| !s.used)
        .map(|(id, s)| (*id, s.lane.clone()))
        .collect();
    // Messages never delivered nor dropped: their receiver comes from the send line.
    let mut to_of: BTreeMap<u64, String> = BTreeMap::new();
    if !unanswered.is_empty() {
        for l in &run.lines {
            if l.message == "send" {
                if let (Some(id), Some(to)) = (l.u64_field("msg"), l.str_field("to")) {
                    if sends.get(&id).is_some_and(|s| !s.used) {
                        to_of.insert(id, lane_name(to));
                    }
                }
            }
        }
    }
    for (id, _) in &unanswered {
        let s = &sends[id];
        let to = to_of.get(id).cloned().unwrap_or_else(|| s.lane.clone());
        msgs.push(*id, s, to, tmax, IN_FLIGHT, "", u64::MAX);
    }
    faults.end_kind("crash", tmax);
    faults.end_kind("pause", tmax);
    faults.end_kind("cut", tmax);
    let rest: Vec<(String, String)> = faults.open.keys().cloned().collect();
    for (m, k) in rest {
        faults.end(&m, &k, tmax);
    }
    for (p, t0, _, lane, kind, inv, _, s0, _) in &pending_to_ops(&mut pending, tmax) {
        ops.push((
            *p,
            *t0,
            tmax,
            lane.clone(),
            kind.clone(),
            inv.clone(),
            Value::Null,
            *s0,
            u64::MAX,
        ));
    }
    // A machine that has no node lane still gets one for its faults.
    for f in &faults.out {
        if let Some(m) = f["machine"].as_str() {
            if !lanes.values().any(|l| lane_machine(l) == m) {
                add(&mut lanes, m);
            }
        }
    }
    let lanes: Vec<String> = lanes.into_values().collect();
    let lane_index: BTreeMap<&str, usize> = lanes
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();

    // Messages sorted by send time: the page culls by binary search.
    let mut order: Vec<usize> = (0..msgs.id.len()).collect();
    order.sort_by(|&a, &b| {
        msgs.t0[a]
            .total_cmp(&msgs.t0[b])
            .then(msgs.seq0[a].cmp(&msgs.seq0[b]))
    });
    let mut types = Interner::default();
    let mut reasons = Interner::default();
    reasons.get("");
    let pick = |v: &Vec<u64>| -> Vec<Value> { order.iter().map(|&i| Value::from(v[i])).collect() };
    let times = |v: &Vec<f64>| -> Vec<Value> {
        order
            .iter()
            .map(|&i| json!((v[i] * 1e9).round() / 1e9))
            .collect()
    };
    let m = json!({
        "id": pick(&msgs.id),
        "from": order.iter().map(|&i| lane_index[msgs.from[i].as_str()]).collect::<Vec<_>>(),
        "to": order.iter().map(|&i| lane_index[msgs.to[i].as_str()]).collect::<Vec<_>>(),
        "t0": times(&msgs.t0),
        "t1": times(&msgs.t1),
        "st": order.iter().map(|&i| msgs.st[i]).collect::<Vec<_>>(),
        "ty": order.iter().map(|&i| types.get(&msgs.ty[i])).collect::<Vec<_>>(),
        "size": pick(&msgs.size),
        "reason": order.iter().map(|&i| reasons.get(&msgs.reason[i])).collect::<Vec<_>>(),
        "seq0": pick(&msgs.seq0),
        "seq1": order.iter().map(|&i| if msgs.seq1[i] == u64::MAX { Value::Null } else { Value::from(msgs.seq1[i]) }).collect::<Vec<_>>(),
    });

    let bad = failure.as_deref().map(counterexample).unwrap_or_default();
    let ops_json: Vec<Value> = ops
        .iter()
        .map(|(p, t0, t1, lane, kind, inv, done, s0, s1)| {
            let hl = bad.iter().any(|(bp, bt)| bp == p && (bt - t0).abs() < 2e-6);
            let f = inv["f"].as_str().unwrap_or("?");
            let key = inv["key"].as_str().map(|k| format!(" {k:?}")).unwrap_or_default();
            let value = if done.is_null() { inv["value"].clone() } else { done["value"].clone() };
            let label = format!("p{p} {f}{key} {} → {kind} {}", inv["value"], value);
            json!({
                "lane": lane_index[lane.as_str()], "t0": t0, "t1": t1, "kind": kind, "label": label,
                "hl": hl, "fields": {"invoke": inv, "completion": done, "seq": [s0, if *s1 == u64::MAX { Value::Null } else { Value::from(*s1) }]},
            })
        })
        .collect();
    let faults_json: Vec<Value> = faults
        .out
        .iter()
        .map(|f| {
            let m = f["machine"].as_str().unwrap_or("");
            let on: Vec<usize> = lanes
                .iter()
                .enumerate()
                .filter(|(_, l)| lane_machine(l) == m)
                .map(|(i, _)| i)
                .collect();
            let mut f = f.clone();
            f["lanes"] = json!(on);
            f
        })
        .collect();
    let mut meta = Map::new();
    meta.insert("title".into(), json!(title));
    meta.insert("dir".into(), json!(run.dir.display().to_string()));
    meta.insert("exact".into(), json!(run.exact));
    meta.insert("files".into(), json!(run.files));
    meta.insert("lines".into(), json!(run.lines.len()));
    meta.insert("other_lines".into(), json!(other));
    json!({
        "meta": meta,
        "tmax": tmax,
        "lanes": lanes,
        "types": types.names,
        "reasons": reasons.names,
        "m": m,
        "faults": faults_json,
        "marks": marks,
        "ops": ops_json,
        "failure": failure,
        "counterexample": bad.len(),
    })
}

type OpRow = (u64, f64, f64, String, String, Value, Value, u64, u64);

/// Invocations never completed: shown open to the end, as `pending`.
fn pending_to_ops(pending: &mut BTreeMap<u64, (f64, String, Value, u64)>, tmax: f64) -> Vec<OpRow> {
    std::mem::take(pending)
        .into_iter()
        .map(|(p, (t0, lane, inv, s0))| {
            (
                p,
                t0,
                tmax,
                lane,
                "pending".to_string(),
                inv,
                Value::Null,
                s0,
                u64::MAX,
            )
        })
        .collect()
}

/// The page: the model inlined as JSON (every `<` written `\u003c`, so no
/// string in it can end the script), the script and the style inlined.
/// The template is cut at its placeholders once, so nothing a log line
/// holds can land in the wrong place.
pub fn html(model: &Value) -> String {
    let data = model.to_string().replace('<', "\\u003c");
    let title = model["meta"]["title"].as_str().unwrap_or("distzero run");
    let mut out = String::with_capacity(data.len() + PAGE.len() + SCRIPT.len() + STYLE.len());
    let mut rest = PAGE;
    for (mark, with) in [
        ("TITLE", escape_html(title).as_str()),
        ("/*STYLE*/", STYLE),
        ("/*DATA*/", data.as_str()),
        ("/*SCRIPT*/", SCRIPT),
    ] {
        let (before, after) = rest
            .split_once(mark)
            .expect("the page template has its placeholders in order");
        out.push_str(before);
        out.push_str(with);
        rest = after;
    }
    out.push_str(rest);
    out
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counterexample_is_read_from_the_failure() {
        let e = "history of 240 ops is not linearizable: not linearizable on key \"k1\": these 2 of its 59 operations cannot be ordered (minimal):\n  p1   write \"k1\" 1000003 -> ok  [0.062415s .. 0.064424s]\n  p2   read  \"k1\" nil -> ok nil  [2.653000s .. 2.655648s]";
        assert_eq!(counterexample(e), vec![(1, 0.062415), (2, 2.653)]);
        assert!(counterexample("no ops here\npx [1s .. 2s]").is_empty());
    }

    #[test]
    fn nothing_in_the_logs_can_end_the_script_or_move_a_placeholder() {
        let model = json!({"meta": {"title": "a <b> /*DATA*/"}, "x": "</script><!-- /*SCRIPT*/"});
        let page = html(&model);
        assert!(!page.contains("</script><!--"), "{page}");
        assert_eq!(
            page.matches("</script>").count(),
            2,
            "the data's script and the code's"
        );
        assert!(page.contains("\\u003c/script>"));
        assert!(page.contains("<title>a &lt;b&gt; /*DATA*/"));
        assert!(page.contains("(function () {"), "the script is in");
    }
}
