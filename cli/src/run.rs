//! A run's log folder read back: every `*.jsonl` file, merged in order.
//!
//! Every line carries `seq`. In simulation one counter numbers every line
//! of the run, so `seq` alone orders the merged files exactly (the order
//! the simulator wrote them). In real modes (loopback, virtual, cloud) each
//! agent and the controller count their own lines; there the merge is by
//! `time` (real time since the cluster started, read by each process from
//! its own clock), then machine, then `seq`: exact within one file, and
//! across machines only as good as their clocks agree. [`Run::exact`] says
//! which: seqs unique across the folder mean one counter.

use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// An error naming what is wrong (a file, a line, a limit).
#[derive(Debug)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

pub type Result<T> = std::result::Result<T, CliError>;

/// Most lines read from one folder, by default: past it, an error naming
/// the limit (and `--max-lines`), never an exhausted memory.
pub const MAX_LINES: usize = 5_000_000;
/// Longest line read (a larger one is an error naming its file and line).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Severity as a rank: 1 = ERROR … 5 = TRACE.
pub fn level_rank(level: &str) -> Option<u8> {
    match level.to_ascii_uppercase().as_str() {
        "ERROR" => Some(1),
        "WARN" => Some(2),
        "INFO" => Some(3),
        "DEBUG" => Some(4),
        "TRACE" => Some(5),
        _ => None,
    }
}

/// One log line.
#[derive(Clone, Debug)]
pub struct Line {
    /// File name (`m0.jsonl`) and 1-based line number: where it came from.
    pub file: String,
    pub line: usize,
    pub time: f64,
    pub seq: u64,
    pub level: String,
    pub machine: String,
    pub node: Option<String>,
    pub message: String,
    /// The event's own fields (every key but the base ones).
    pub fields: Map<String, Value>,
}

impl Line {
    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    pub fn u64_field(&self, key: &str) -> Option<u64> {
        self.fields.get(key).and_then(Value::as_u64)
    }

    /// Whether this is a message event (`send`, `deliver`, `drop` with a `msg` id).
    pub fn is_message_event(&self) -> bool {
        matches!(self.message.as_str(), "send" | "deliver" | "drop")
            && self.fields.contains_key("msg")
    }

    /// The line as one JSON object, base fields first.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("time".into(), Value::from(self.time));
        m.insert("seq".into(), Value::from(self.seq));
        m.insert("level".into(), Value::from(self.level.clone()));
        m.insert("machine".into(), Value::from(self.machine.clone()));
        m.insert(
            "node".into(),
            self.node.clone().map(Value::from).unwrap_or(Value::Null),
        );
        m.insert("message".into(), Value::from(self.message.clone()));
        for (k, v) in &self.fields {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// A run's lines, merged.
pub struct Run {
    pub dir: PathBuf,
    pub lines: Vec<Line>,
    /// One sequence counter over the folder (simulation): the order is exact.
    pub exact: bool,
    /// The files read, in name order.
    pub files: Vec<String>,
}

/// Parse one line of `file` (`line` is 1-based, for errors).
pub fn parse_line(file: &str, line: usize, text: &str) -> Result<Line> {
    let at = || format!("{file}:{line}");
    let v: Value = serde_json::from_str(text)
        .map_err(|e| CliError(format!("{}: not a JSON log line: {e}", at())))?;
    let Value::Object(mut obj) = v else {
        return Err(CliError(format!(
            "{}: not a JSON object (a log line is {{\"time\":…,\"seq\":…,\"level\":…}})",
            at()
        )));
    };
    let time = obj
        .remove("time")
        .and_then(|t| t.as_f64())
        .filter(|t| t.is_finite() && *t >= 0.0)
        .ok_or_else(|| {
            CliError(format!(
                "{}: no `time` (seconds since the cluster started, a number)",
                at()
            ))
        })?;
    let seq = match obj.remove("seq") {
        None => None,
        Some(s) => Some(
            s.as_u64()
                .ok_or_else(|| CliError(format!("{}: `seq` is not a whole number: {s}", at())))?,
        ),
    };
    let mut text_field = |key: &str| -> Result<Option<String>> {
        match obj.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(CliError(format!(
                "{}: `{key}` is not a string: {other}",
                at()
            ))),
        }
    };
    let level = text_field("level")?.unwrap_or_else(|| "INFO".into());
    let machine = text_field("machine")?.unwrap_or_else(|| "controller".into());
    let node = text_field("node")?;
    let message = text_field("message")?.unwrap_or_default();
    Ok(Line {
        file: file.to_string(),
        line,
        time,
        // A line without one (an older log) gets its place in the file;
        // the folder then merges by time.
        seq: seq.unwrap_or(u64::MAX),
        level,
        machine,
        node,
        message,
        fields: obj,
    })
}

/// Read every `*.jsonl` of `dir` and merge them (see the module docs).
/// At most `max_lines` lines in all.
pub fn read_run(dir: &Path, max_lines: usize) -> Result<Run> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        CliError(format!(
            "cannot read the log folder {}: {e} (a run's folder is .tmp/<test>/<mode>-<seed or run id>/)",
            dir.display()
        ))
    })?;
    let mut names: Vec<String> = Vec::new();
    for e in entries {
        let e = e.map_err(|e| CliError(format!("reading {}: {e}", dir.display())))?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".jsonl") && e.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    if names.is_empty() {
        return Err(CliError(format!(
            "no *.jsonl log files in {}: is it a run's log folder (.tmp/<test>/<mode>-<seed or run id>/)?",
            dir.display()
        )));
    }
    let mut lines = Vec::new();
    let mut all_have_seq = true;
    for name in &names {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CliError(format!("cannot read {}: {e}", path.display())))?;
        for (i, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            if raw.len() > MAX_LINE_BYTES {
                return Err(CliError(format!(
                    "{name}:{}: a line of {} bytes, more than the {MAX_LINE_BYTES} read",
                    i + 1,
                    raw.len()
                )));
            }
            if lines.len() >= max_lines {
                return Err(CliError(format!(
                    "{} holds more than {max_lines} log lines (the limit; raise it with --max-lines)",
                    dir.display()
                )));
            }
            let mut l = parse_line(name, i + 1, raw)?;
            if l.seq == u64::MAX {
                all_have_seq = false;
                l.seq = i as u64;
            }
            lines.push(l);
        }
    }
    let exact = all_have_seq && {
        let mut seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
        seqs.sort_unstable();
        seqs.windows(2).all(|w| w[0] != w[1])
    };
    if exact {
        lines.sort_by_key(|l| l.seq);
    } else {
        lines.sort_by(|a, b| {
            a.time
                .total_cmp(&b.time)
                .then_with(|| machine_order(&a.machine).cmp(&machine_order(&b.machine)))
                .then_with(|| a.seq.cmp(&b.seq))
                .then_with(|| a.file.cmp(&b.file))
                .then_with(|| a.line.cmp(&b.line))
        });
    }
    Ok(Run {
        dir: dir.to_path_buf(),
        lines,
        exact,
        files: names,
    })
}

/// Machines in number order (`m2` before `m10`), the controller first.
pub fn machine_order(m: &str) -> (u8, u64, String) {
    if m == "controller" {
        return (0, 0, String::new());
    }
    match m.strip_prefix('m').and_then(|n| n.parse::<u64>().ok()) {
        Some(n) => (1, n, String::new()),
        None => (2, 0, m.to_string()),
    }
}

/// Parse a time: seconds (`2.5`, `2.5s`) or with a unit (`300ms`, `20us`, `5ns`).
pub fn parse_secs(s: &str) -> std::result::Result<f64, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix("ns") {
        (n, 1e-9)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v * scale),
        _ => Err(format!(
            "`{s}` is not a time: give seconds (2.5) or a number with a unit (2.5s, 300ms, 20us)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("distzero-cli-run-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn one_counter_merges_by_seq_else_by_time_machine_seq() {
        let d = dir("merge");
        std::fs::write(
            d.join("m0.jsonl"),
            "{\"time\":1.0,\"seq\":2,\"level\":\"INFO\",\"machine\":\"m0\",\"node\":null,\"message\":\"b\"}\n\
             {\"time\":1.0,\"seq\":0,\"level\":\"INFO\",\"machine\":\"m0\",\"node\":null,\"message\":\"a\"}\n",
        )
        .unwrap();
        std::fs::write(
            d.join("m1.jsonl"),
            "{\"time\":1.0,\"seq\":1,\"level\":\"INFO\",\"machine\":\"m1\",\"node\":null,\"message\":\"between\"}\n",
        )
        .unwrap();
        let r = read_run(&d, 100).unwrap();
        assert!(r.exact);
        let order: Vec<&str> = r.lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(order, ["a", "between", "b"]);
        // Per-file counters (a real run): time, then machine, then seq.
        std::fs::write(
            d.join("m1.jsonl"),
            "{\"time\":0.5,\"seq\":0,\"level\":\"INFO\",\"machine\":\"m1\",\"node\":null,\"message\":\"first\"}\n",
        )
        .unwrap();
        let r = read_run(&d, 100).unwrap();
        assert!(!r.exact);
        let order: Vec<&str> = r.lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(order, ["first", "a", "b"]);
        let e = read_run(&d, 2).err().unwrap().to_string();
        assert!(e.contains("more than 2 log lines"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_malformed_line_names_its_file_and_line() {
        let d = dir("bad");
        std::fs::write(
            d.join("m3.jsonl"),
            "{\"time\":1.0,\"seq\":0,\"message\":\"ok\"}\n{\"time\":oops}\n",
        )
        .unwrap();
        let e = read_run(&d, 100).err().unwrap().to_string();
        assert!(e.starts_with("m3.jsonl:2: not a JSON log line"), "{e}");
        std::fs::write(d.join("m3.jsonl"), "[1,2]\n").unwrap();
        let e = read_run(&d, 100).err().unwrap().to_string();
        assert!(e.starts_with("m3.jsonl:1: not a JSON object"), "{e}");
        std::fs::write(d.join("m3.jsonl"), "{\"seq\":1}\n").unwrap();
        let e = read_run(&d, 100).err().unwrap().to_string();
        assert!(e.starts_with("m3.jsonl:1: no `time`"), "{e}");
        let empty = dir("empty");
        let e = read_run(&empty, 100).err().unwrap().to_string();
        assert!(e.starts_with("no *.jsonl log files in"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&empty);
    }

    #[test]
    fn times_parse_with_units() {
        assert_eq!(parse_secs("2.5").unwrap(), 2.5);
        assert_eq!(parse_secs("300ms").unwrap(), 0.3);
        assert!((parse_secs("20us").unwrap() - 2e-5).abs() < 1e-12);
        assert!(parse_secs("soon")
            .unwrap_err()
            .contains("`soon` is not a time"));
    }
}
