//! A conformance suite of the delivery contract (README, "Delivery
//! contract"), written once over `&mut dyn Cluster` so that every mode runs
//! the same probes: `tests/conformance.rs` instantiates each of [`probes`]
//! with `workflow_tests!`.
//!
//! The probe node ([`KIND`], in [`registry`]) sends numbered messages to
//! another probe node when the test tells it to ([`ProbeMsg::Fire`]), all
//! at once or in bursts on a timer, and records what it receives: sender,
//! sequence number, the sender's life (its boot count, kept on disk), and
//! every message it handled before its own `on_start` of the current life
//! (a violation in itself). A [`ProbeMsg::Report`] call returns what it saw
//! in its current life. It keeps at most [`MAX_RECORDS`] received messages
//! and [`MAX_EARLY`] early ones; what goes past is only counted, and a probe
//! that sees a count fails rather than judge a truncated record.
//!
//! Each probe fails with [`Error::Check`] naming the clause it saw broken.
//! Time margins suit real machines (latencies of a few hundred ms, faults
//! within ~50 ms of a send, generous waits afterwards); a probe that could
//! not act in time says "inconclusive" instead of blaming the contract.

use crate::cluster::{millis, Cluster};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::ids::{MachineId, NodeId, TimerId};
use crate::link::{Latency, Link};
use crate::node::Node;
use crate::registry::Registry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

/// The kind name of the probe node.
pub const KIND: &str = "dz-probe";
/// Received messages a probe keeps per life; more are only counted.
pub const MAX_RECORDS: usize = 100_000;
/// Messages handled before `on_start` a probe keeps per life; more are only counted.
pub const MAX_EARLY: usize = 100;

/// What probe nodes and the test say to each other.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum ProbeMsg {
    /// From the test: send `count` numbered [`ProbeMsg::Data`] to `to`
    /// (numbers go on from the last sent to `to` in this life). With
    /// `every_ms` 0, all at once before answering `Ok`; else `burst` of them
    /// every `every_ms` on a timer (replacing a previous timed plan).
    Fire {
        to: NodeId,
        count: u64,
        burst: u64,
        every_ms: u64,
    },
    /// A numbered message; `life` is the sender's life.
    Data {
        seq: u64,
        life: u64,
    },
    /// From the test: answered with `Seen`.
    Report,
    Seen(Seen),
    Ok,
}

/// One received [`ProbeMsg::Data`].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Got {
    pub from: NodeId,
    pub seq: u64,
    /// The sender's life when it sent it.
    pub life: u64,
}

/// What a probe node saw in its current life.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Seen {
    /// 1 in the first life, +1 at every start (a boot count on disk).
    pub life: u64,
    /// Data received in this life, in arrival order (at most [`MAX_RECORDS`]).
    pub got: Vec<Got>,
    /// Messages handled before `on_start` of this life (at most [`MAX_EARLY`]).
    pub early: Vec<String>,
    /// Records not kept because of the caps.
    pub overflow: u64,
    /// Data sent in this life.
    pub sent: u64,
    /// Data still to send on the timer.
    pub to_send: u64,
}

struct Plan {
    to: NodeId,
    left: u64,
    burst: u64,
    every: Duration,
    tag: u64,
}

/// The probe node. See the module documentation.
#[derive(Default)]
pub struct Probe {
    started: bool,
    seen: Seen,
    next_seq: BTreeMap<NodeId, u64>,
    plan: Option<Plan>,
    plans: u64,
}

impl Probe {
    fn send_data(&mut self, ctx: &mut Context<'_, ProbeMsg>, to: NodeId, n: u64) {
        for _ in 0..n {
            let seq = self.next_seq.entry(to).or_insert(0);
            let msg = ProbeMsg::Data {
                seq: *seq,
                life: self.seen.life,
            };
            *seq += 1;
            self.seen.sent += 1;
            ctx.send(to, msg);
        }
    }
}

impl Node for Probe {
    type Msg = ProbeMsg;

    fn on_start(&mut self, ctx: &mut Context<'_, ProbeMsg>) {
        let before: u64 = match ctx.disk().get("life") {
            Ok(l) => l.unwrap_or(0),
            Err(e) => {
                tracing::error!(error = %e, "probe: unreadable life on disk");
                0
            }
        };
        self.seen.life = before + 1;
        if let Err(e) = ctx.disk().put_synced("life", &self.seen.life) {
            tracing::error!(error = %e, "probe: cannot write its life to disk");
        }
        self.started = true;
    }

    fn on_message(&mut self, ctx: &mut Context<'_, ProbeMsg>, from: NodeId, msg: ProbeMsg) {
        if !self.started {
            let what = format!("{msg:?} from {from}");
            tracing::error!(%from, ?msg, "probe: a message before on_start");
            if self.seen.early.len() < MAX_EARLY {
                self.seen.early.push(what);
            } else {
                self.seen.overflow += 1;
            }
        }
        match msg {
            ProbeMsg::Fire {
                to,
                count,
                burst,
                every_ms,
            } => {
                if every_ms == 0 {
                    self.send_data(ctx, to, count);
                } else {
                    self.plans += 1;
                    let every = Duration::from_millis(every_ms);
                    self.plan = Some(Plan {
                        to,
                        left: count,
                        burst: burst.max(1),
                        every,
                        tag: self.plans,
                    });
                    self.seen.to_send = count;
                    ctx.set_timer(every, self.plans);
                }
                ctx.send(from, ProbeMsg::Ok);
            }
            ProbeMsg::Data { seq, life } => {
                if self.seen.got.len() < MAX_RECORDS {
                    self.seen.got.push(Got { from, seq, life });
                } else {
                    self.seen.overflow += 1;
                }
            }
            ProbeMsg::Report => {
                let seen = self.seen.clone();
                ctx.send(from, ProbeMsg::Seen(seen));
            }
            ProbeMsg::Seen(_) | ProbeMsg::Ok => {}
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, ProbeMsg>, _timer: TimerId, tag: u64) {
        let Some(plan) = self.plan.as_mut() else {
            return;
        };
        if plan.tag != tag {
            return;
        }
        let n = plan.burst.min(plan.left);
        plan.left -= n;
        let (to, left, every) = (plan.to, plan.left, plan.every);
        self.seen.to_send = left;
        if left == 0 {
            self.plan = None;
        } else {
            ctx.set_timer(every, tag);
        }
        self.send_data(ctx, to, n);
    }
}

/// The conformance kinds: [`KIND`].
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(KIND, |_: serde_json::Value| Probe::default());
    r
}

/// A probe of the contract: fails naming the clause it saw broken.
pub type ProbeFn = fn(&mut dyn Cluster) -> Result<()>;

/// Every probe, by name.
pub fn probes() -> &'static [(&'static str, ProbeFn)] {
    &[
        (
            "fifo_when_latency_drops_mid_flight",
            fifo_when_latency_drops_mid_flight,
        ),
        ("fifo_under_uniform_latency", fifo_under_uniform_latency),
        (
            "cut_loses_in_flight_even_if_healed",
            cut_loses_in_flight_even_if_healed,
        ),
        (
            "receiver_crash_loses_in_flight",
            receiver_crash_loses_in_flight,
        ),
        (
            "mail_sent_while_down_never_reaches_next_life",
            mail_sent_while_down_never_reaches_next_life,
        ),
        ("sender_crash_loses_in_flight", sender_crash_loses_in_flight),
        (
            "no_message_before_on_start_after_restart",
            no_message_before_on_start_after_restart,
        ),
        (
            "release_delivers_in_order_before_later_mail",
            release_delivers_in_order_before_later_mail,
        ),
        (
            "heal_drops_what_a_hold_queued",
            heal_drops_what_a_hold_queued,
        ),
        (
            "pause_then_resume_delivers_in_order",
            pause_then_resume_delivers_in_order,
        ),
        (
            "same_machine_in_order_and_not_cut",
            same_machine_in_order_and_not_cut,
        ),
        ("self_link_faults_refused", self_link_faults_refused),
    ]
}

// ------------------------------------------------------------ clauses

const AT_MOST_ONCE: &str = "at most once";
const FIFO: &str = "in order per (sender machine, receiver machine) pair, whatever the link does";
const CUT_IN_FLIGHT: &str =
    "a message is lost when its link is cut at any moment while it is in flight (even if healed before it would arrive)";
const RECEIVER_CRASH: &str =
    "a message is lost when the receiver's machine crashes while it is in flight; a restarted machine never receives mail sent to its previous life";
const SENT_WHILE_DOWN: &str = "a restarted machine never receives mail sent while it was down";
const SENDER_CRASH: &str =
    "a message is lost when the sender's machine crashes while it is in flight";
const ON_START: &str = "no node sees a message before its own on_start of the current life";
const RELEASE: &str =
    "release delivers what a hold queued, in order, before anything sent after the release";
const HOLD: &str = "hold queues messages until release (nothing arrives while held)";
const HEAL_HOLD: &str = "heal ends a hold and drops what the hold queued";
const PAUSE: &str = "messages to a paused machine wait and arrive in order on resume";
const PAUSED: &str = "a paused machine handles nothing until it is resumed";
const SAME_MACHINE: &str =
    "messages between nodes of the same machine use no link: in order, never lost or cut, lost if the machine crashes";
const SELF_LINK: &str =
    "cut, hold, set_link, heal and release from a machine to itself are refused with Error::Unsupported saying a machine has no link to itself";
const CONTROLLER: &str = "the test's own calls stand outside the network: cuts never apply to them";

// ------------------------------------------------------------ helpers

const CALL: Duration = Duration::from_secs(2);
/// A slow link (the FIFO probe's first burst).
const SLOW: Duration = Duration::from_millis(400);
/// The link of the probes that act on messages in flight (cut, crash):
/// long enough for a loaded machine to act before they arrive (a crash and
/// restart of a Docker machine took 533 ms on 2 busy cores; a cut over SSH
/// 333 ms), so the probe decides instead of being inconclusive.
const IN_FLIGHT: Duration = Duration::from_millis(1500);
/// How long the test may take to act after a send and still be "in flight".
const ACT: Duration = Duration::from_millis(1200);
/// Long enough after a burst on the in-flight link for all of it to arrive.
const SETTLE: Duration = Duration::from_millis(2300);

fn broken(clause: &str, detail: impl std::fmt::Display) -> Error {
    Error::Check(format!("delivery contract broken: {clause}: {detail}"))
}

fn ensure(ok: bool, clause: &str, detail: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(broken(clause, detail()))
    }
}

/// One probe node on each machine.
fn probes_on(c: &mut dyn Cluster, machines: &[MachineId]) -> Result<Vec<NodeId>> {
    machines
        .iter()
        .map(|&m| c.spawn_node(m, KIND, serde_json::json!({})))
        .collect()
}

/// `from` sends `count` Data to `to` at once; returns when it has sent them.
fn fire(c: &mut dyn Cluster, from: NodeId, to: NodeId, count: u64) -> Result<()> {
    hammer(c, from, to, count, count, 0)
}

/// `from` sends `count` Data to `to`, `burst` every `every_ms` (0: at once).
/// Fire `count` from `from` to `to`, let `wait` pass, and return what `to` saw.
fn fire_and_report(
    c: &mut dyn Cluster,
    from: NodeId,
    to: NodeId,
    count: u64,
    wait: Duration,
) -> Result<Seen> {
    fire(c, from, to, count)?;
    c.run_for(wait)?;
    seen(c, to)
}

fn hammer(
    c: &mut dyn Cluster,
    from: NodeId,
    to: NodeId,
    count: u64,
    burst: u64,
    every_ms: u64,
) -> Result<()> {
    let msg = ProbeMsg::Fire {
        to,
        count,
        burst,
        every_ms,
    };
    match c.call::<ProbeMsg, ProbeMsg>(from, &msg, CALL)? {
        ProbeMsg::Ok => Ok(()),
        other => Err(Error::Check(format!(
            "probe {from} answered {other:?} to Fire"
        ))),
    }
}

/// What `node` saw in its current life. Fails if it saw a message before
/// its `on_start`, or recorded more than it keeps.
fn seen(c: &mut dyn Cluster, node: NodeId) -> Result<Seen> {
    let s = match c.call::<ProbeMsg, ProbeMsg>(node, &ProbeMsg::Report, CALL)? {
        ProbeMsg::Seen(s) => s,
        other => {
            return Err(Error::Check(format!(
                "probe {node} answered {other:?} to Report"
            )))
        }
    };
    ensure(s.early.is_empty(), ON_START, || {
        let n = s.early.len() as u64 + s.overflow;
        let first: Vec<&str> = s.early.iter().take(3).map(String::as_str).collect();
        format!(
            "{node} (life {}) handled {n} message(s) before its on_start, first: {}",
            s.life,
            first.join("; ")
        )
    })?;
    if s.overflow > 0 {
        return Err(Error::Check(format!(
            "probe {node} recorded more than it keeps ({} over the caps); the probe sends too much",
            s.overflow
        )));
    }
    Ok(s)
}

/// Sequence numbers as runs: `0..=49, 100..=149, 50..=99`.
fn runs(seqs: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            seqs[i].to_string()
        } else {
            format!("{}..={}", seqs[i], seqs[j])
        });
        i = j + 1;
    }
    if out.is_empty() {
        return "nothing".into();
    }
    if out.len() > 12 {
        let n = out.len();
        out.truncate(12);
        out.push(format!("… ({n} runs)"));
    }
    out.join(", ")
}

fn from(s: &Seen, sender: NodeId) -> Vec<Got> {
    s.got.iter().copied().filter(|g| g.from == sender).collect()
}

/// `to` got from `sender` exactly `want`, in order, all sent in `life`.
fn expect_exactly(
    s: &Seen,
    to: NodeId,
    sender: NodeId,
    life: u64,
    want: Range<u64>,
    clause: &str,
    context: &str,
) -> Result<()> {
    let got = from(s, sender);
    let seqs: Vec<u64> = got.iter().map(|g| g.seq).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    ensure(sorted.len() == seqs.len(), AT_MOST_ONCE, || {
        format!("{to} got some message from {sender} twice: {}", runs(&seqs))
    })?;
    if let Some(g) = got.iter().find(|g| g.life != life) {
        return Err(broken(
            clause,
            format!(
                "{to} got seq {} sent by life {} of {sender}; only life {life} sent to it here ({context})",
                g.seq, g.life
            ),
        ));
    }
    let want: Vec<u64> = want.collect();
    if sorted == want && seqs != want {
        return Err(broken(
            FIFO,
            format!(
                "{to} got every message from {sender} but out of order: {} ({context})",
                runs(&seqs)
            ),
        ));
    }
    ensure(seqs == want, clause, || {
        format!(
            "{to} got from {sender}: {}; expected exactly {} ({context})",
            runs(&seqs),
            runs(&want)
        )
    })
}

/// Fail as inconclusive when the test took too long to act since `since`.
fn acted_within(c: &dyn Cluster, since: Duration, limit: Duration, what: &str) -> Result<()> {
    let took = c.now().saturating_sub(since);
    if took >= limit {
        return Err(Error::Check(format!(
            "inconclusive: {what} took {took:?} after the send, not within {limit:?}; \
             the messages were no longer in flight (machine too slow?)"
        )));
    }
    Ok(())
}

/// Run until `node` has sent everything on its timer, then `settle` more.
fn until_sent(c: &mut dyn Cluster, node: NodeId, settle: Duration) -> Result<()> {
    c.run_until(Duration::from_secs(20), |c| Ok(seen(c, node)?.to_send == 0))?;
    c.run_for(settle)
}

// ------------------------------------------------------------ probes

/// 400 ms link, a burst, the link set to 1 ms, a second burst: the second
/// must not overtake the first.
pub fn fifo_when_latency_drops_mid_flight(c: &mut dyn Cluster) -> Result<()> {
    let [a, b] = c.add_machines()?;
    let p = probes_on(c, &[a, b])?;
    c.set_link(a, b, Link::fixed(SLOW))?;
    fire(c, p[0], p[1], 100)?;
    c.set_link(a, b, Link::fixed(millis(1)))?;
    let s = fire_and_report(c, p[0], p[1], 100, millis(1500))?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        0..200,
        FIFO,
        "100 sent at 400 ms latency, then the link set to 1 ms and 100 more",
    )
}

/// Uniform latency 1..250 ms, two senders to one receiver, bursts on timers.
pub fn fifo_under_uniform_latency(c: &mut dyn Cluster) -> Result<()> {
    let [a, b, d] = c.add_machines()?;
    let p = probes_on(c, &[a, b, d])?;
    let uniform = Link {
        latency: Latency::Uniform {
            min: millis(1),
            max: millis(250),
        },
        loss: 0.0,
    };
    c.set_link(a, b, uniform)?;
    c.set_link(d, b, uniform)?;
    hammer(c, p[0], p[1], 400, 10, 5)?;
    hammer(c, p[2], p[1], 400, 20, 10)?;
    until_sent(c, p[0], Duration::ZERO)?;
    until_sent(c, p[2], millis(1000))?;
    let s = seen(c, p[1])?;
    let ctx = "uniform latency 1..250 ms, bursts every 5-10 ms";
    expect_exactly(&s, p[1], p[0], 1, 0..400, FIFO, ctx)?;
    expect_exactly(&s, p[1], p[2], 1, 0..400, FIFO, ctx)
}

/// A 1.5 s link, a burst, cut and healed at once: all of it is lost; later
/// mail arrives. The controller's calls pass the cut.
pub fn cut_loses_in_flight_even_if_healed(c: &mut dyn Cluster) -> Result<()> {
    let [a, b] = c.add_machines()?;
    let p = probes_on(c, &[a, b])?;
    c.set_link(a, b, Link::fixed(IN_FLIGHT))?;
    let t = c.now();
    fire(c, p[0], p[1], 50)?;
    c.cut(a, b)?;
    c.cut(b, a)?;
    acted_within(c, t, ACT, "cutting the link")?;
    // Cuts never apply to the controller.
    match c.call::<ProbeMsg, ProbeMsg>(p[1], &ProbeMsg::Report, CALL) {
        Ok(ProbeMsg::Seen(_)) => {}
        Ok(other) => return Err(broken(CONTROLLER, format!("{} answered {other:?}", p[1]))),
        Err(e) => {
            return Err(broken(
                CONTROLLER,
                format!("a call to {} of a cut-off machine failed: {e}", p[1]),
            ))
        }
    }
    c.heal(a, b)?;
    c.heal(b, a)?;
    c.run_for(SETTLE)?;
    let s = seen(c, p[1])?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        0..0,
        CUT_IN_FLIGHT,
        "50 sent at 1.5 s latency, the link cut and healed right after",
    )?;
    let s = fire_and_report(c, p[0], p[1], 50, SETTLE)?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        50..100,
        CUT_IN_FLIGHT,
        "after the heal, a new burst of 50 must arrive, and only it",
    )
}

/// A 1.5 s link, a burst, the receiver crashed and restarted before it
/// would arrive: its new life gets none of it; later mail arrives.
pub fn receiver_crash_loses_in_flight(c: &mut dyn Cluster) -> Result<()> {
    let [a, b] = c.add_machines()?;
    let p = probes_on(c, &[a, b])?;
    c.set_link(a, b, Link::fixed(IN_FLIGHT))?;
    let t = c.now();
    fire(c, p[0], p[1], 50)?;
    c.crash(b)?;
    c.restart(b)?;
    acted_within(c, t, ACT, "crashing and restarting the receiver")?;
    c.run_for(SETTLE)?;
    let s = seen(c, p[1])?;
    ensure(s.life == 2, RECEIVER_CRASH, || {
        format!("{} reports life {}, expected 2", p[1], s.life)
    })?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        0..0,
        RECEIVER_CRASH,
        "50 sent at 1.5 s latency; the receiver crashed and restarted before they would arrive",
    )?;
    let s = fire_and_report(c, p[0], p[1], 50, SETTLE)?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        50..100,
        RECEIVER_CRASH,
        "a burst sent after the restart must arrive, and only it",
    )
}

/// Mail sent while the receiver is down (on a slow and on a fast link)
/// never reaches its next life; later mail arrives.
pub fn mail_sent_while_down_never_reaches_next_life(c: &mut dyn Cluster) -> Result<()> {
    let [a, b] = c.add_machines()?;
    let p = probes_on(c, &[a, b])?;
    // Slow link: the restart comes before the mail would arrive.
    c.set_link(a, b, Link::fixed(millis(300)))?;
    c.crash(b)?;
    fire(c, p[0], p[1], 50)?;
    c.run_for(millis(100))?;
    fire(c, p[0], p[1], 50)?;
    c.restart(b)?;
    c.run_for(millis(1200))?;
    let s = seen(c, p[1])?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        0..0,
        SENT_WHILE_DOWN,
        "100 sent at 300 ms latency while the receiver was down; restarted 100 ms later",
    )?;
    // Fast link: the mail reaches a dead machine, or waits to be redialed.
    c.set_link(a, b, Link::fixed(millis(1)))?;
    c.crash(b)?;
    fire(c, p[0], p[1], 50)?;
    c.run_for(millis(300))?;
    fire(c, p[0], p[1], 50)?;
    c.run_for(millis(100))?;
    c.restart(b)?;
    c.run_for(millis(1200))?;
    let s = seen(c, p[1])?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        0..0,
        SENT_WHILE_DOWN,
        "100 more sent at 1 ms latency while the receiver was down (in two bursts 300 ms apart)",
    )?;
    let s = fire_and_report(c, p[0], p[1], 10, millis(500))?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        200..210,
        SENT_WHILE_DOWN,
        "a burst sent after the restart must arrive, and only it",
    )
}

/// A 1.5 s link, a burst, the sender crashed right after: none of it arrives.
pub fn sender_crash_loses_in_flight(c: &mut dyn Cluster) -> Result<()> {
    let [a, b] = c.add_machines()?;
    let p = probes_on(c, &[a, b])?;
    c.set_link(a, b, Link::fixed(IN_FLIGHT))?;
    let t = c.now();
    fire(c, p[0], p[1], 50)?;
    c.crash(a)?;
    acted_within(c, t, ACT, "crashing the sender")?;
    c.run_for(SETTLE)?;
    let s = seen(c, p[1])?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        0..0,
        SENDER_CRASH,
        "50 sent at 1.5 s latency; the sender crashed right after",
    )?;
    c.restart(a)?;
    let s = fire_and_report(c, p[0], p[1], 10, SETTLE)?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        2,
        0..10,
        SENDER_CRASH,
        "the restarted sender's new burst must arrive, and only it",
    )
}

/// A sender hammers a machine that is paused, resumed and crashed at once,
/// then crashed and restarted twice more: no life of the receiver handles
/// a message before its on_start.
pub fn no_message_before_on_start_after_restart(c: &mut dyn Cluster) -> Result<()> {
    let [a, b] = c.add_machines()?;
    let p = probes_on(c, &[a, b])?;
    // 5 every 2 ms: 1.2 s of sending.
    hammer(c, p[0], p[1], 3000, 5, 2)?;
    c.run_for(millis(100))?;
    c.pause(b)?;
    c.run_for(millis(100))?;
    c.resume(b)?;
    c.crash(b)?;
    c.restart(b)?;
    // Anything it handled before its on_start is in its report.
    c.run_for(millis(100))?;
    seen(c, p[1])?;
    c.crash(b)?;
    c.restart(b)?;
    c.run_for(millis(100))?;
    seen(c, p[1])?;
    c.crash(b)?;
    c.run_for(millis(50))?;
    c.restart(b)?;
    until_sent(c, p[0], millis(500))?;
    // On real machines the hammering may be over before the last restart
    // is done; a fresh burst shows the link to the new life works. Real TCP
    // can take seconds to notice the old life is gone (its peer vanished
    // without a reset), hence the patience.
    fire(c, p[0], p[1], 50)?;
    c.run_until(Duration::from_secs(20), |c| {
        Ok(!from(&seen(c, p[1])?, p[0]).is_empty())
    })
    .map_err(|_| {
        broken(
            ON_START,
            format!(
                "{} got nothing from {} within 20 s of its last restart",
                p[1], p[0]
            ),
        )
    })?;
    let s = seen(c, p[1])?;
    let g = from(&s, p[0]);
    let seqs: Vec<u64> = g.iter().map(|g| g.seq).collect();
    ensure(seqs.windows(2).all(|w| w[0] < w[1]), FIFO, || {
        format!("{} got from {}: {}", p[1], p[0], runs(&seqs))
    })
}

/// A held slow link: nothing arrives while held; release, then the link set
/// to 1 ms and more mail: everything arrives, the held mail first, in order.
pub fn release_delivers_in_order_before_later_mail(c: &mut dyn Cluster) -> Result<()> {
    let [a, b] = c.add_machines()?;
    let p = probes_on(c, &[a, b])?;
    c.set_link(a, b, Link::fixed(millis(300)))?;
    c.hold(a, b)?;
    let s = fire_and_report(c, p[0], p[1], 50, millis(700))?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        0..0,
        HOLD,
        "50 sent on a held link, 700 ms later",
    )?;
    c.release(a, b)?;
    c.set_link(a, b, Link::fixed(millis(1)))?;
    let s = fire_and_report(c, p[0], p[1], 50, millis(1200))?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        0..100,
        RELEASE,
        "50 held on a 300 ms link, released, the link set to 1 ms, 50 more sent",
    )
}

/// Heal ends a hold and drops what it queued: after a long hold, and after
/// one shorter than the link's latency. Later mail arrives.
pub fn heal_drops_what_a_hold_queued(c: &mut dyn Cluster) -> Result<()> {
    let [a, b] = c.add_machines()?;
    let p = probes_on(c, &[a, b])?;
    c.set_link(a, b, Link::fixed(millis(300)))?;
    c.hold(a, b)?;
    fire(c, p[0], p[1], 50)?;
    c.run_for(millis(700))?;
    c.heal(a, b)?;
    c.run_for(millis(1000))?;
    let s = seen(c, p[1])?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        0..0,
        HEAL_HOLD,
        "50 sent on a held 300 ms link, healed 700 ms later",
    )?;
    c.hold(a, b)?;
    let t = c.now();
    fire(c, p[0], p[1], 50)?;
    c.run_for(millis(100))?;
    c.heal(a, b)?;
    acted_within(c, t, millis(300), "healing the hold")?;
    c.run_for(millis(1000))?;
    let s = seen(c, p[1])?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        0..0,
        HEAL_HOLD,
        "50 more sent on a held 300 ms link, healed 100 ms later (before their latency ran out)",
    )?;
    let s = fire_and_report(c, p[0], p[1], 50, millis(1000))?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        100..150,
        HEAL_HOLD,
        "a burst sent after the heal must arrive, and only it",
    )
}

/// Mail to a paused machine waits and arrives in order on resume: on a
/// steady link, and on one whose latency drops from 300 to 1 ms mid-pause.
pub fn pause_then_resume_delivers_in_order(c: &mut dyn Cluster) -> Result<()> {
    let [a, b] = c.add_machines()?;
    let p = probes_on(c, &[a, b])?;
    c.pause(b)?;
    hammer(c, p[0], p[1], 100, 10, 10)?;
    until_sent(c, p[0], millis(300))?;
    // It is paused: it answers nothing (a pause that did nothing would pass
    // the rest of this probe).
    match c.call::<ProbeMsg, ProbeMsg>(p[1], &ProbeMsg::Report, millis(300)) {
        Err(e) if e.is_timeout() => {}
        Ok(reply) => {
            return Err(broken(
                PAUSED,
                format!(
                    "{} answered {} while its machine was paused",
                    p[1],
                    match reply {
                        ProbeMsg::Seen(s) => format!("a report of {} received", s.got.len()),
                        other => format!("{other:?}"),
                    }
                ),
            ))
        }
        Err(e) => return Err(e),
    }
    c.resume(b)?;
    c.run_for(millis(500))?;
    let s = seen(c, p[1])?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        0..100,
        PAUSE,
        "100 sent in bursts while the receiver was paused",
    )?;
    c.pause(b)?;
    c.set_link(a, b, Link::fixed(millis(300)))?;
    fire(c, p[0], p[1], 50)?;
    c.set_link(a, b, Link::fixed(millis(1)))?;
    fire(c, p[0], p[1], 50)?;
    c.run_for(millis(800))?;
    c.resume(b)?;
    let s = fire_and_report(c, p[0], p[1], 50, millis(1000))?;
    expect_exactly(
        &s,
        p[1],
        p[0],
        1,
        0..250,
        PAUSE,
        "while paused: 50 at 300 ms latency, then 50 at 1 ms; after resume 50 more",
    )
}

/// Two nodes of one machine: their mail arrives in order while the machine
/// is cut off from the others; in flight when the machine crashes, it is lost.
pub fn same_machine_in_order_and_not_cut(c: &mut dyn Cluster) -> Result<()> {
    let [m, o] = c.add_machines()?;
    let p = c.spawn_node(m, KIND, serde_json::json!({}))?;
    let q = c.spawn_node(m, KIND, serde_json::json!({}))?;
    let r = c.spawn_node(o, KIND, serde_json::json!({}))?;
    c.set_all_links(Link::fixed(millis(50)))?;
    c.isolate(m)?;
    hammer(c, p, q, 500, 50, 5)?;
    fire(c, p, r, 10)?;
    until_sent(c, p, millis(500))?;
    let s = seen(c, q)?;
    expect_exactly(
        &s,
        q,
        p,
        1,
        0..500,
        SAME_MACHINE,
        "500 sent in bursts between two nodes of one machine cut off from the others",
    )?;
    let s = seen(c, r)?;
    ensure(from(&s, p).is_empty(), "cut drops what crosses it", || {
        format!(
            "{r} got {} from {p} across a cut (the isolation was not in force)",
            runs(&from(&s, p).iter().map(|g| g.seq).collect::<Vec<_>>())
        )
    })?;
    c.heal_all()?;
    // A sender hammering its neighbour; the machine crashes and restarts.
    hammer(c, p, q, 1_000_000, 10, 1)?;
    c.run_for(millis(200))?;
    c.crash(m)?;
    c.restart(m)?;
    c.run_for(millis(500))?;
    let s = seen(c, q)?;
    ensure(s.life == 2, SAME_MACHINE, || {
        format!("{q} reports life {}, expected 2", s.life)
    })?;
    expect_exactly(
        &s,
        q,
        p,
        2,
        0..0,
        SAME_MACHINE,
        "a neighbour hammered it every 1 ms; the machine crashed and restarted (the restarted sender sends nothing)",
    )
}

/// cut, hold, set_link, heal and release from a machine to itself are
/// refused, each with Error::Unsupported saying a machine has no link to
/// itself; messages within the machine still flow afterwards.
pub fn self_link_faults_refused(c: &mut dyn Cluster) -> Result<()> {
    let [m] = c.add_machines()?;
    let p = c.spawn_node(m, KIND, serde_json::json!({}))?;
    let q = c.spawn_node(m, KIND, serde_json::json!({}))?;
    let outcomes = [
        ("cut", c.cut(m, m)),
        ("hold", c.hold(m, m)),
        ("set_link", c.set_link(m, m, Link::fixed(millis(300)))),
        ("heal", c.heal(m, m)),
        ("release", c.release(m, m)),
    ];
    let mut bad = Vec::new();
    for (op, r) in &outcomes {
        match r {
            Err(Error::Unsupported(text)) if text.contains("no link to itself") => {}
            Err(e) => bad.push(format!("{op}({m}, {m}) failed with another error: {e:?}")),
            Ok(()) => bad.push(format!("{op}({m}, {m}) was accepted")),
        }
    }
    c.heal_all()?;
    fire(c, p, q, 20)?;
    c.run_for(millis(500))?;
    let s = seen(c, q)?;
    let got: Vec<u64> = from(&s, p).iter().map(|g| g.seq).collect();
    if got != (0..20).collect::<Vec<_>>() {
        bad.push(format!(
            "after those calls and heal_all, {q} got from {p} on the same machine: {} (expected 0..=19)",
            runs(&got)
        ));
    }
    ensure(bad.is_empty(), SELF_LINK, || bad.join("; "))
}
