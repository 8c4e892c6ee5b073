//! Word count: a small stream whose totals come out exact under message loss.
//!
//! A `wordcount-source` holds lines of text and sends each, numbered, to a
//! splitter. A `wordcount-splitter` splits a line into words and sends each
//! word to the counter chosen by a deterministic hash of the word (one batch
//! per counter and line). A `wordcount-counter` keeps the totals on disk.
//!
//! Exactly once, end to end, over an at-most-once network:
//! - a counter acknowledges a batch after it has counted and persisted it,
//!   and counts a batch only once: it remembers which (source, line) it has
//!   counted, whichever splitter sent it (a retry, or a second splitter);
//! - a splitter acknowledges a line to the source only once every counter
//!   acknowledged its batch, and resends unacknowledged batches on a timer;
//! - the source resends unacknowledged lines on a timer, each retry to the
//!   next splitter, so a dead splitter only slows it down.
//!
//! So a line acknowledged at the source is counted, exactly once, on disk;
//! when the source has nothing pending, the totals are final. A crashed
//! splitter loses only work in flight, which the source resends; a crashed
//! counter restarts from its disk.
//!
//! Planted bug (counter config `bug`): `count-retries-twice` counts every
//! batch that arrives, retries included.

use crate::hash::bucket;
use distzero::{Cluster, Context, MachineId, Node, NodeId, TimerId};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const SOURCE: distzero::Kind<SourceConfig> = distzero::Kind::new("wordcount-source");
pub const SPLITTER: distzero::Kind<SplitterConfig> = distzero::Kind::new("wordcount-splitter");
pub const COUNTER: distzero::Kind<CounterConfig> = distzero::Kind::new("wordcount-counter");

fn default_retry_ms() -> u64 {
    100
}

fn default_window() -> usize {
    32
}

/// Config of a `wordcount-source`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceConfig {
    /// The lines to count.
    #[serde(default)]
    pub lines: Vec<String>,
    /// More text, split into lines after `lines`.
    #[serde(default)]
    pub text: String,
    pub splitters: Vec<NodeId>,
    /// Resend a line not acknowledged after this long (plus jitter).
    #[serde(default = "default_retry_ms")]
    pub retry_ms: u64,
    /// At most this many lines in flight.
    #[serde(default = "default_window")]
    pub window: usize,
}

/// Config of a `wordcount-splitter`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitterConfig {
    pub counters: Vec<NodeId>,
    #[serde(default = "default_retry_ms")]
    pub retry_ms: u64,
}

/// Config of a `wordcount-counter`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterConfig {
    /// A planted bug: `count-retries-twice`.
    #[serde(default)]
    pub bug: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WcMsg {
    /// Source -> splitter.
    Line {
        seq: u64,
        text: String,
    },
    /// Splitter -> source: line `seq` is counted.
    LineAck {
        seq: u64,
    },
    /// Splitter -> counter: the words of line `line` of `source` that fall to this counter.
    Words {
        source: NodeId,
        line: u64,
        words: Vec<String>,
    },
    /// Counter -> splitter.
    WordsAck {
        source: NodeId,
        line: u64,
    },
    /// To a counter: answered `Counts`.
    Query,
    Counts(BTreeMap<String, u64>),
    /// To any of the three: answered `StatusReply`.
    Status,
    StatusReply(WcStatus),
}

/// Progress of one node. Source: lines `done` of `total`, `pending` in
/// flight. Splitter: lines `done`, `pending` waiting for counters. Counter:
/// batches `done`, words counted in `total`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WcStatus {
    pub pending: u64,
    pub done: u64,
    pub total: u64,
}

/// The words of a line: maximal alphanumeric runs, lowercased.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
}

/// The expected totals of `lines`, computed in one place (for tests).
pub fn count_words<S: AsRef<str>>(lines: &[S]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for l in lines {
        for w in words(l.as_ref()) {
            *out.entry(w).or_insert(0) += 1;
        }
    }
    out
}

/// Which sequence numbers were seen: all below `below`, and those in `above`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SeqWindow {
    pub below: u64,
    pub above: BTreeSet<u64>,
}

impl SeqWindow {
    pub fn contains(&self, seq: u64) -> bool {
        seq < self.below || self.above.contains(&seq)
    }

    /// Record `seq`; false if it was already seen.
    pub fn insert(&mut self, seq: u64) -> bool {
        if self.contains(seq) {
            return false;
        }
        self.above.insert(seq);
        while self.above.remove(&self.below) {
            self.below += 1;
        }
        true
    }
}

const RETRY: u64 = 1;

fn jittered(ctx: &mut Context<'_, WcMsg>, retry_ms: u64) -> Duration {
    let base = retry_ms.max(1);
    Duration::from_millis(base + ctx.rng().gen_range(0..=base / 4))
}

// ------------------------------------------------------------------- source

struct InFlight {
    sent: Duration,
    attempts: u64,
}

pub struct Source {
    cfg: SourceConfig,
    lines: Vec<String>,
    next: u64,
    in_flight: BTreeMap<u64, InFlight>,
    done: u64,
    timer: Option<TimerId>,
}

impl Source {
    pub fn new(cfg: SourceConfig) -> Self {
        let mut lines = cfg.lines.clone();
        lines.extend(cfg.text.lines().map(str::to_string));
        Source {
            cfg,
            lines,
            next: 0,
            in_flight: BTreeMap::new(),
            done: 0,
            timer: None,
        }
    }

    fn send_line(&self, ctx: &mut Context<'_, WcMsg>, seq: u64, attempt: u64) {
        let n = self.cfg.splitters.len() as u64;
        let to = self.cfg.splitters[((seq + attempt) % n) as usize];
        ctx.send(
            to,
            WcMsg::Line {
                seq,
                text: self.lines[seq as usize].clone(),
            },
        );
    }

    fn fill(&mut self, ctx: &mut Context<'_, WcMsg>) {
        while self.in_flight.len() < self.cfg.window.max(1)
            && (self.next as usize) < self.lines.len()
        {
            let seq = self.next;
            self.next += 1;
            self.send_line(ctx, seq, 0);
            self.in_flight.insert(
                seq,
                InFlight {
                    sent: ctx.now(),
                    attempts: 0,
                },
            );
        }
        if self.timer.is_none() && !self.in_flight.is_empty() {
            let after = jittered(ctx, self.cfg.retry_ms);
            self.timer = Some(ctx.set_timer(after, RETRY));
        }
    }
}

impl Node for Source {
    type Msg = WcMsg;

    fn on_start(&mut self, ctx: &mut Context<'_, WcMsg>) {
        if self.cfg.splitters.is_empty() {
            tracing::error!("wordcount source has no splitters; it sends nothing");
            return;
        }
        tracing::info!(
            lines = self.lines.len(),
            splitters = self.cfg.splitters.len(),
            "source started"
        );
        self.fill(ctx);
    }

    fn on_message(&mut self, ctx: &mut Context<'_, WcMsg>, from: NodeId, msg: WcMsg) {
        match msg {
            WcMsg::LineAck { seq } => {
                if let Some(f) = self.in_flight.remove(&seq) {
                    self.done += 1;
                    tracing::debug!(seq, attempts = f.attempts + 1, "line counted");
                    if self.done == self.lines.len() as u64 {
                        tracing::info!(lines = self.done, "every line counted");
                    }
                    if !self.cfg.splitters.is_empty() {
                        self.fill(ctx);
                    }
                }
            }
            WcMsg::Status => {
                let s = WcStatus {
                    pending: self.lines.len() as u64 - self.done,
                    done: self.done,
                    total: self.lines.len() as u64,
                };
                ctx.send(from, WcMsg::StatusReply(s));
            }
            other => {
                tracing::warn!(%from, msg = ?other, "unexpected message at the source; ignored")
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, WcMsg>, _timer: TimerId, _tag: u64) {
        self.timer = None;
        let now = ctx.now();
        let retry = Duration::from_millis(self.cfg.retry_ms.max(1));
        let due: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| now.saturating_sub(f.sent) >= retry)
            .map(|(&s, _)| s)
            .collect();
        for seq in due {
            let attempt = match self.in_flight.get_mut(&seq) {
                Some(f) => {
                    f.attempts += 1;
                    f.sent = now;
                    f.attempts
                }
                None => continue,
            };
            tracing::debug!(seq, attempt, "resending line");
            self.send_line(ctx, seq, attempt);
        }
        self.fill(ctx);
    }
}

// ----------------------------------------------------------------- splitter

struct Job {
    /// Counter index -> its batch, until it acknowledges.
    waiting: BTreeMap<usize, Vec<String>>,
    sent: Duration,
}

pub struct Splitter {
    cfg: SplitterConfig,
    jobs: BTreeMap<(NodeId, u64), Job>,
    done: BTreeMap<NodeId, SeqWindow>,
    done_count: u64,
    timer: Option<TimerId>,
}

impl Splitter {
    pub fn new(cfg: SplitterConfig) -> Self {
        Splitter {
            cfg,
            jobs: BTreeMap::new(),
            done: BTreeMap::new(),
            done_count: 0,
            timer: None,
        }
    }

    fn finish(&mut self, ctx: &mut Context<'_, WcMsg>, source: NodeId, line: u64) {
        if self.done.entry(source).or_default().insert(line) {
            self.done_count += 1;
        }
        if ctx.buggify() {
            // Fault point (simulation only): as if the ack were lost.
            tracing::debug!(%source, line, "buggify: ack not sent");
            return;
        }
        ctx.send(source, WcMsg::LineAck { seq: line });
    }

    fn arm(&mut self, ctx: &mut Context<'_, WcMsg>) {
        if self.timer.is_none() && !self.jobs.is_empty() {
            let after = jittered(ctx, self.cfg.retry_ms);
            self.timer = Some(ctx.set_timer(after, RETRY));
        }
    }
}

impl Node for Splitter {
    type Msg = WcMsg;

    fn on_start(&mut self, _ctx: &mut Context<'_, WcMsg>) {
        if self.cfg.counters.is_empty() {
            tracing::error!("wordcount splitter has no counters; it acknowledges nothing");
        }
        tracing::info!(counters = self.cfg.counters.len(), "splitter started");
    }

    fn on_message(&mut self, ctx: &mut Context<'_, WcMsg>, from: NodeId, msg: WcMsg) {
        match msg {
            WcMsg::Line { seq, text } => {
                if self.cfg.counters.is_empty() {
                    return;
                }
                if self.done.get(&from).is_some_and(|w| w.contains(seq)) {
                    ctx.send(from, WcMsg::LineAck { seq });
                    return;
                }
                if self.jobs.contains_key(&(from, seq)) {
                    return; // in progress; acknowledged when done
                }
                let mut waiting: BTreeMap<usize, Vec<String>> = BTreeMap::new();
                for w in words(&text) {
                    waiting
                        .entry(bucket(&w, self.cfg.counters.len()))
                        .or_default()
                        .push(w);
                }
                if waiting.is_empty() {
                    self.finish(ctx, from, seq);
                    return;
                }
                tracing::debug!(source = %from, seq, counters = waiting.len(), "split");
                for (&k, batch) in &waiting {
                    ctx.send(
                        self.cfg.counters[k],
                        WcMsg::Words {
                            source: from,
                            line: seq,
                            words: batch.clone(),
                        },
                    );
                }
                self.jobs.insert(
                    (from, seq),
                    Job {
                        waiting,
                        sent: ctx.now(),
                    },
                );
                self.arm(ctx);
            }
            WcMsg::WordsAck { source, line } => {
                let Some(k) = self.cfg.counters.iter().position(|&c| c == from) else {
                    tracing::warn!(%from, "ack from a node that is not my counter; ignored");
                    return;
                };
                let Some(job) = self.jobs.get_mut(&(source, line)) else {
                    return; // a duplicate ack
                };
                job.waiting.remove(&k);
                if job.waiting.is_empty() {
                    self.jobs.remove(&(source, line));
                    self.finish(ctx, source, line);
                }
            }
            WcMsg::Status => {
                let s = WcStatus {
                    pending: self.jobs.len() as u64,
                    done: self.done_count,
                    total: self.done_count,
                };
                ctx.send(from, WcMsg::StatusReply(s));
            }
            other => {
                tracing::warn!(%from, msg = ?other, "unexpected message at a splitter; ignored")
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, WcMsg>, _timer: TimerId, _tag: u64) {
        self.timer = None;
        let now = ctx.now();
        let retry = Duration::from_millis(self.cfg.retry_ms.max(1));
        for (&(source, line), job) in self.jobs.iter_mut() {
            if now.saturating_sub(job.sent) < retry {
                continue;
            }
            job.sent = now;
            for (&k, batch) in &job.waiting {
                tracing::debug!(%source, line, counter = k, "resending words");
                ctx.send(
                    self.cfg.counters[k],
                    WcMsg::Words {
                        source,
                        line,
                        words: batch.clone(),
                    },
                );
            }
        }
        self.arm(ctx);
    }
}

// ------------------------------------------------------------------ counter

/// What a counter keeps on disk.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct CounterState {
    counts: BTreeMap<String, u64>,
    seen: BTreeMap<NodeId, SeqWindow>,
    batches: u64,
    words: u64,
}

pub struct Counter {
    count_retries: bool,
    state: CounterState,
}

impl Counter {
    pub fn new(cfg: CounterConfig) -> Self {
        let count_retries = match cfg.bug.as_deref() {
            Some("count-retries-twice") => true,
            None => false,
            Some(other) => {
                tracing::error!(bug = %other, "unknown planted bug (known: count-retries-twice); ignored");
                false
            }
        };
        Counter {
            count_retries,
            state: CounterState::default(),
        }
    }
}

impl Node for Counter {
    type Msg = WcMsg;

    fn on_start(&mut self, ctx: &mut Context<'_, WcMsg>) {
        match ctx.disk().get::<CounterState>("state") {
            Ok(Some(s)) => self.state = s,
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "unreadable counter state; starting empty"),
        }
        tracing::info!(
            words = self.state.words,
            batches = self.state.batches,
            "counter started"
        );
    }

    fn on_message(&mut self, ctx: &mut Context<'_, WcMsg>, from: NodeId, msg: WcMsg) {
        match msg {
            WcMsg::Words {
                source,
                line,
                words,
            } => {
                let fresh = !self
                    .state
                    .seen
                    .get(&source)
                    .is_some_and(|w| w.contains(line));
                if fresh || self.count_retries {
                    if !fresh {
                        tracing::info!(%source, line, "counting a retried batch again (planted bug)");
                    }
                    let mut next = self.state.clone();
                    next.seen.entry(source).or_default().insert(line);
                    for w in words {
                        *next.counts.entry(w).or_insert(0) += 1;
                        next.words += 1;
                    }
                    next.batches += 1;
                    if let Err(e) = ctx.disk().put_synced("state", &next) {
                        // Neither counted nor acknowledged: the splitter retries.
                        tracing::error!(error = %e, "could not persist counts");
                        return;
                    }
                    self.state = next;
                    tracing::debug!(%source, line, words = self.state.words, "counted");
                } else {
                    tracing::debug!(%source, line, "duplicate batch; not counted again");
                }
                if ctx.buggify() {
                    // Fault point (simulation only): as if the ack were lost.
                    tracing::debug!(%source, line, "buggify: ack not sent");
                    return;
                }
                ctx.send(from, WcMsg::WordsAck { source, line });
            }
            WcMsg::Query => ctx.send(from, WcMsg::Counts(self.state.counts.clone())),
            WcMsg::Status => {
                let s = WcStatus {
                    pending: 0,
                    done: self.state.batches,
                    total: self.state.words,
                };
                ctx.send(from, WcMsg::StatusReply(s));
            }
            other => {
                tracing::warn!(%from, msg = ?other, "unexpected message at a counter; ignored")
            }
        }
    }
}

// ------------------------------------------------------------ test helpers

/// The nodes of one word count pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    pub source: NodeId,
    pub splitters: Vec<NodeId>,
    pub counters: Vec<NodeId>,
}

impl Pipeline {
    /// Spawn counters, then splitters, then the source (which starts sending).
    pub fn spawn(
        c: &mut dyn Cluster,
        source: MachineId,
        splitters: &[MachineId],
        counters: &[MachineId],
        lines: &[String],
        bug: Option<&str>,
    ) -> distzero::Result<Pipeline> {
        let mut cs = Vec::new();
        for &m in counters {
            cs.push(c.spawn_node(
                m,
                COUNTER,
                CounterConfig {
                    bug: bug.map(str::to_string),
                },
            )?);
        }
        let mut ss = Vec::new();
        for &m in splitters {
            ss.push(c.spawn_node(
                m,
                SPLITTER,
                SplitterConfig {
                    counters: cs.clone(),
                    retry_ms: default_retry_ms(),
                },
            )?);
        }
        let cfg = SourceConfig {
            lines: lines.to_vec(),
            text: String::new(),
            splitters: ss.clone(),
            retry_ms: default_retry_ms(),
            window: default_window(),
        };
        let source = c.spawn_node(source, SOURCE, cfg)?;
        Ok(Pipeline {
            source,
            splitters: ss,
            counters: cs,
        })
    }

    /// The source's progress.
    pub fn status(&self, c: &mut dyn Cluster, timeout: Duration) -> distzero::Result<WcStatus> {
        match c.call::<WcMsg, WcMsg>(self.source, &WcMsg::Status, timeout)? {
            WcMsg::StatusReply(s) => Ok(s),
            other => Err(distzero::Error::Unsupported(format!(
                "source answered {other:?} to Status"
            ))),
        }
    }

    /// The totals of every counter, merged.
    pub fn counts(
        &self,
        c: &mut dyn Cluster,
        timeout: Duration,
    ) -> distzero::Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for &k in &self.counters {
            match c.call::<WcMsg, WcMsg>(k, &WcMsg::Query, timeout)? {
                WcMsg::Counts(m) => {
                    for (w, n) in m {
                        *out.entry(w).or_insert(0) += n;
                    }
                }
                other => {
                    return Err(distzero::Error::Unsupported(format!(
                        "counter {k} answered {other:?} to Query"
                    )))
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercased_alphanumeric_runs() {
        let w: Vec<String> = words("The cat, the HAT -- and 2 cats!").collect();
        assert_eq!(w, ["the", "cat", "the", "hat", "and", "2", "cats"]);
        let c = count_words(&["a b a", "", "B"]);
        assert_eq!(c.get("a"), Some(&2));
        assert_eq!(c.get("b"), Some(&2));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn seq_window_dedups_and_compacts() {
        let mut w = SeqWindow::default();
        assert!(w.insert(1));
        assert!(!w.contains(0));
        assert!(w.insert(0));
        assert!(!w.insert(1));
        assert!(!w.insert(0));
        assert_eq!(w.below, 2);
        assert!(w.above.is_empty());
        assert!(w.insert(5));
        assert!(w.contains(5) && !w.contains(4));
        assert!(!w.insert(5));
    }

    #[test]
    fn configs_have_defaults() {
        let s: SourceConfig = serde_json::from_str(r#"{"splitters":[]}"#).unwrap();
        assert_eq!((s.retry_ms, s.window), (100, 32));
        let c: CounterConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c.bug, None);
    }
}
