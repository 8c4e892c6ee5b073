//! Logging: tracing events written as JSON lines, one file per machine and one
//! for the controller, each with a human-readable twin.
//!
//! Runtimes set a thread-local [`Scope`] (machine, node, time) around every
//! callback; the [`RunLog`] layer stamps each event with it. In simulation the
//! time is virtual, so one seed gives byte-identical files.

use crate::ids::{MachineId, NodeId};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, Layer};

/// Where an event happens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub machine: Option<MachineId>,
    pub node: Option<NodeId>,
    pub time: Duration,
}

thread_local! {
    static SCOPE: Cell<Scope> = const { Cell::new(Scope { machine: None, node: None, time: Duration::ZERO }) };
}

/// Set the scope of this thread; returns the previous one.
pub fn set_scope(scope: Scope) -> Scope {
    SCOPE.with(|s| s.replace(scope))
}

pub fn scope() -> Scope {
    SCOPE.with(|s| s.get())
}

/// Set only the time of this thread's scope (the simulator's clock).
pub fn set_time(time: Duration) {
    SCOPE.with(|s| {
        let mut v = s.get();
        v.time = time;
        s.set(v)
    })
}

/// Where the time of an event comes from.
#[derive(Clone)]
pub enum Clock {
    /// The thread-local scope's time (the simulator sets it).
    Scope,
    /// Real time since a start instant (agents, remote controllers).
    Real(Arc<dyn Fn() -> Duration + Send + Sync>),
}

struct Files {
    json: Box<dyn Write + Send>,
    human: Box<dyn Write + Send>,
}

/// The open files of a log and the sequence number of its next line.
#[derive(Default)]
struct LogFiles {
    by_name: BTreeMap<String, Files>,
    /// One counter over every file of this log: in simulation one log
    /// serves the whole run, so `seq` orders the merged files exactly; an
    /// agent's log counts its own lines (merge those by time, machine, seq).
    next_seq: u64,
}

/// A tracing layer writing one JSON-lines file and one human twin per
/// machine (`m0.jsonl`, `m0.log`) and for the controller (`controller.*`).
#[derive(Clone)]
pub struct RunLog {
    dir: PathBuf,
    clock: Clock,
    max_level: Option<Level>,
    files: Arc<Mutex<LogFiles>>,
    /// When set, every event goes to this one file name (an agent's own machine).
    fixed_name: Option<String>,
}

impl RunLog {
    /// Log into `dir` (created). `max_level` None = logging off.
    pub fn new(dir: &Path, clock: Clock, max_level: Option<Level>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(RunLog {
            dir: dir.to_path_buf(),
            clock,
            max_level,
            files: Arc::new(Mutex::new(LogFiles::default())),
            fixed_name: None,
        })
    }

    /// Every event into `<name>.jsonl` / `<name>.log`, whatever its scope.
    pub fn with_fixed_name(mut self, name: &str) -> Self {
        self.fixed_name = Some(name.to_string());
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Flush every file.
    pub fn flush(&self) {
        if let Ok(mut files) = self.files.lock() {
            for f in files.by_name.values_mut() {
                let _ = f.json.flush();
                let _ = f.human.flush();
            }
        }
    }

    fn enabled_level(&self, level: &Level) -> bool {
        match self.max_level {
            None => false,
            Some(max) => *level <= max,
        }
    }

    /// Install as this thread's default subscriber until the guard drops.
    pub fn set_default(&self) -> tracing::subscriber::DefaultGuard {
        use tracing_subscriber::prelude::*;
        let sub = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::set_default(sub)
    }

    fn write_event(&self, scope: Scope, time: Duration, level: &Level, v: &JsonVisitor) {
        let name = match (&self.fixed_name, scope.machine) {
            (Some(n), _) => n.clone(),
            (None, Some(m)) if !m.is_controller() => m.to_string(),
            _ => "controller".to_string(),
        };
        let machine = scope
            .machine
            .map(|m| m.to_string())
            .unwrap_or_else(|| "controller".into());
        let node = scope.node.map(|n| n.to_string());
        let secs = time.as_secs_f64();

        // Lines are numbered under the lock, so the order of `seq` is the
        // order lines were written, whatever thread wrote them.
        let Ok(mut files) = self.files.lock() else {
            return;
        };
        let seq = files.next_seq;
        files.next_seq += 1;

        let mut json = String::with_capacity(128);
        json.push_str("{\"time\":");
        let _ = write!(json, "{}.{:09}", time.as_secs(), time.subsec_nanos());
        let _ = write!(json, ",\"seq\":{seq}");
        json.push_str(",\"level\":\"");
        json.push_str(level.as_str());
        json.push_str("\",\"machine\":");
        push_json_str(&mut json, &machine);
        json.push_str(",\"node\":");
        match &node {
            Some(n) => push_json_str(&mut json, n),
            None => json.push_str("null"),
        }
        json.push_str(",\"message\":");
        push_json_str(&mut json, &v.message);
        for (k, val) in &v.fields {
            json.push(',');
            if BASE_FIELDS.contains(k) {
                json.push_str("\"event_");
                json.push_str(k);
                json.push('"');
            } else {
                push_json_str(&mut json, k);
            }
            json.push(':');
            json.push_str(val);
        }
        json.push_str("}\n");

        let mut human = String::with_capacity(96);
        let _ = write!(
            human,
            "{secs:>12.6} {:<5} {:<12} {}",
            level.as_str(),
            node.as_deref().unwrap_or(&machine),
            v.message
        );
        for (k, val) in &v.fields {
            let _ = write!(human, " {k}={val}");
        }
        human.push('\n');

        if !files.by_name.contains_key(&name) {
            match open_pair(&self.dir, &name) {
                Ok(f) => {
                    files.by_name.insert(name.clone(), f);
                }
                Err(e) => {
                    eprintln!(
                        "distzero: cannot open log files in {}: {e}",
                        self.dir.display()
                    );
                    return;
                }
            }
        }
        let f = files.by_name.get_mut(&name).expect("just inserted");
        let _ = f.json.write_all(json.as_bytes());
        let _ = f.human.write_all(human.as_bytes());
    }
}

impl Drop for RunLog {
    fn drop(&mut self) {
        if Arc::strong_count(&self.files) == 1 {
            self.flush();
        }
    }
}

/// Fields every line has; an event field of the same name is written as
/// `event_<name>` so no JSON object has a key twice.
const BASE_FIELDS: &[&str] = &["time", "seq", "level", "machine", "node", "message"];

thread_local! {
    static SINK: std::cell::RefCell<Option<RunLog>> = const { std::cell::RefCell::new(None) };
    /// The installed log's most verbose level as a rank (0 = none), so a
    /// disabled event costs one thread-local read.
    static SINK_RANK: Cell<u8> = const { Cell::new(0) };
}

fn rank(level: Option<Level>) -> u8 {
    match level {
        None => 0,
        Some(Level::ERROR) => 1,
        Some(Level::WARN) => 2,
        Some(Level::INFO) => 3,
        Some(Level::DEBUG) => 4,
        Some(Level::TRACE) => 5,
    }
}

fn set_sink(log: Option<RunLog>) -> Option<RunLog> {
    SINK_RANK.with(|r| r.set(rank(log.as_ref().and_then(|l| l.max_level))));
    SINK.with(|s| std::mem::replace(&mut *s.borrow_mut(), log))
}

/// The one process-wide subscriber layer: it forwards each event to the
/// [`RunLog`] installed on the current thread, if any.
///
/// Why not one scoped subscriber per thread: tracing caches callsite
/// interest and the max level globally, and with scoped dispatchers created
/// and dropped on many threads (parallel tests, sweeps) that cache races and
/// events are silently lost, which broke byte-identical logs. One global
/// dispatcher whose interest is always "sometimes" has no such race.
struct ThreadSink;

impl<S: Subscriber> Layer<S> for ThreadSink {
    fn register_callsite(
        &self,
        _m: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: LayerContext<'_, S>) -> bool {
        rank(Some(*metadata.level())) <= SINK_RANK.with(|r| r.get())
    }
    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        SINK.with(|s| {
            if let Some(l) = s.borrow().as_ref() {
                <RunLog as Layer<S>>::on_event(l, event, ctx)
            }
        })
    }
}

/// Restores the thread's previous log (and scoped dispatcher, if one was
/// needed) when dropped.
pub struct LogGuard {
    previous: Option<RunLog>,
    _scoped: Option<tracing::subscriber::DefaultGuard>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        set_sink(self.previous.take());
    }
}

impl RunLog {
    /// Route this thread's events into this log until the guard drops. Uses
    /// one process-wide subscriber (installed on first use); if the program
    /// already set another global subscriber, falls back to a scoped one.
    pub fn install(&self) -> LogGuard {
        use std::sync::OnceLock;
        use tracing_subscriber::prelude::*;
        static GLOBAL: OnceLock<bool> = OnceLock::new();
        let global = *GLOBAL.get_or_init(|| {
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(ThreadSink))
                .is_ok()
        });
        let previous = set_sink(Some(self.clone()));
        let scoped = (!global).then(|| self.set_default());
        LogGuard {
            previous,
            _scoped: scoped,
        }
    }
}

fn open_pair(dir: &Path, name: &str) -> std::io::Result<Files> {
    let json = File::create(dir.join(format!("{name}.jsonl")))?;
    let human = File::create(dir.join(format!("{name}.log")))?;
    Ok(Files {
        json: Box::new(BufWriter::with_capacity(64 * 1024, json)),
        human: Box::new(BufWriter::with_capacity(64 * 1024, human)),
    })
}

fn push_json_str(out: &mut String, s: &str) {
    // serde_json's escaping, without building a Value.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

#[derive(Default)]
struct JsonVisitor {
    message: String,
    fields: Vec<(&'static str, String)>,
}

impl Visit for JsonVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let s = format!("{value:?}");
        if field.name() == "message" {
            self.message = s;
        } else {
            let mut j = String::new();
            push_json_str(&mut j, &s);
            self.fields.push((field.name(), j));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            let mut j = String::new();
            push_json_str(&mut j, value);
            self.fields.push((field.name(), j));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.push((field.name(), value.to_string()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.push((field.name(), value.to_string()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.push((field.name(), value.to_string()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = if value.is_finite() {
            value.to_string()
        } else {
            format!("\"{value}\"")
        };
        self.fields.push((field.name(), v));
    }
}

impl<S: Subscriber> Layer<S> for RunLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: LayerContext<'_, S>) -> bool {
        self.enabled_level(metadata.level())
    }

    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let level = event.metadata().level();
        if !self.enabled_level(level) {
            return;
        }
        let scope = scope();
        let time = match &self.clock {
            Clock::Scope => scope.time,
            Clock::Real(f) => f(),
        };
        let mut v = JsonVisitor::default();
        event.record(&mut v);
        self.write_event(scope, time, level, &v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_land_in_the_machine_file_with_all_fields() {
        let dir = std::env::temp_dir().join(format!("distzero-log-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = RunLog::new(&dir, Clock::Scope, Some(Level::INFO)).unwrap();
        {
            let _g = log.set_default();
            set_scope(Scope {
                machine: Some(MachineId(1)),
                node: Some(NodeId::new(MachineId(1), 0)),
                time: Duration::from_millis(1500),
            });
            tracing::info!(key = "x", n = 3u64, "stored \"it\"");
            tracing::debug!("not written");
            set_scope(Scope::default());
            tracing::warn!("from the test");
        }
        log.flush();
        let m1 = std::fs::read_to_string(dir.join("m1.jsonl")).unwrap();
        let v: serde_json::Value = serde_json::from_str(m1.trim()).unwrap();
        assert_eq!(v["time"], 1.5);
        assert_eq!(v["seq"], 0);
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["machine"], "m1");
        assert_eq!(v["node"], "m1.n0");
        assert_eq!(v["message"], "stored \"it\"");
        assert_eq!(v["key"], "x");
        assert_eq!(v["n"], 3);
        assert_eq!(m1.lines().count(), 1);
        let c = std::fs::read_to_string(dir.join("controller.jsonl")).unwrap();
        assert!(c.contains("from the test"));
        // One counter over the log's files: the controller's line is the second.
        let c: serde_json::Value = serde_json::from_str(c.trim()).unwrap();
        assert_eq!(c["seq"], 1);
        assert!(std::fs::read_to_string(dir.join("m1.log"))
            .unwrap()
            .contains("m1.n0"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
