//! Disk and clock semantics, as a node sees them, in every mode: writes are
//! durable once synced and a crash loses the rest; injected storage faults
//! fail writes and syncs until reset and a slow sync stalls the machine;
//! the wall clock steps (backwards too) while the monotonic clock never
//! goes back. Where simulation does more than the agents (a torn last
//! write, exact drift), the test says what each mode must do.

use distzero::clock::ClockFault;
use distzero::disk::{CrashLoss, DiskFault};
use distzero::{millis, secs, Cluster, Context, Error, MachineId, Mode, Node, NodeId, Registry};
use distzero::{Result, TimerId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Msg {
    Put {
        key: String,
        value: u64,
        sync: bool,
    },
    Get {
        key: String,
    },
    Append {
        value: u64,
        sync: bool,
    },
    ReadLog,
    /// Sync, and say how long it took on the machine's monotonic clock.
    TimedSync,
    Clocks,
    /// A timer of `ms`; `Fired` says when it fired (monotonic ns).
    Arm {
        ms: u64,
    },
    Fired,
    Done(std::result::Result<(), String>),
    Value(std::result::Result<Option<u64>, String>),
    Records(std::result::Result<Vec<u64>, String>),
    Took(std::result::Result<u64, String>),
    Times {
        mono_ns: u64,
        wall_ns: u64,
    },
    FiredAt(Option<(u64, u64)>),
}

#[derive(Default)]
struct Store {
    armed: Option<(u64, u64)>,
    fired: Option<(u64, u64)>,
}

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

impl Node for Store {
    type Msg = Msg;
    fn on_message(&mut self, ctx: &mut Context<'_, Msg>, from: NodeId, msg: Msg) {
        let text = |e: Error| e.to_string();
        let reply = match msg {
            Msg::Put { key, value, sync } => {
                let mut disk = ctx.disk();
                let r = if sync {
                    disk.put_synced(&key, &value)
                } else {
                    disk.put(&key, &value)
                };
                Msg::Done(r.map_err(text))
            }
            Msg::Get { key } => Msg::Value(ctx.disk().get(&key).map_err(text)),
            Msg::Append { value, sync } => {
                let mut log = ctx.disk().log("log");
                let r = log
                    .append(&value)
                    .and_then(|_| if sync { log.sync() } else { Ok(()) });
                Msg::Done(r.map_err(text))
            }
            Msg::ReadLog => {
                let mut log = ctx.disk().log("log");
                let mut out = Vec::new();
                let mut r = Ok(());
                for i in 0..1_000 {
                    match log.get::<u64>(i) {
                        Ok(Some(v)) => out.push(v),
                        Ok(None) => break,
                        Err(e) => {
                            r = Err(text(e));
                            break;
                        }
                    }
                }
                Msg::Records(r.map(|()| out))
            }
            Msg::TimedSync => {
                let before = ctx.now();
                let r = ctx.disk().put_synced("timed", &1u64);
                Msg::Took(r.map(|()| ns(ctx.now() - before)).map_err(text))
            }
            Msg::Clocks => Msg::Times {
                mono_ns: ns(ctx.now()),
                wall_ns: ns(ctx.wall_clock()),
            },
            Msg::Arm { ms } => {
                self.armed = Some((ms, ns(ctx.now())));
                self.fired = None;
                ctx.set_timer(millis(ms), 0);
                Msg::Done(Ok(()))
            }
            Msg::Fired => Msg::FiredAt(self.fired),
            other => {
                tracing::warn!(?other, "unexpected");
                return;
            }
        };
        ctx.send(from, reply);
    }
    fn on_timer(&mut self, ctx: &mut Context<'_, Msg>, _t: TimerId, _tag: u64) {
        if let Some((_, at)) = self.armed {
            self.fired = Some((at, ns(ctx.now())));
        }
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("store", |_: serde_json::Value| Store::default());
    r
}

const T: Duration = Duration::from_secs(2);

fn store(c: &mut dyn Cluster) -> Result<(MachineId, NodeId)> {
    let m = c.add_machine()?;
    let n = c.spawn_node(m, "store", serde_json::json!({}))?;
    Ok((m, n))
}

fn ask(c: &mut dyn Cluster, n: NodeId, msg: Msg) -> Result<Msg> {
    c.call(n, &msg, T)
}

fn done(c: &mut dyn Cluster, n: NodeId, msg: Msg) -> Result<()> {
    match ask(c, n, msg.clone())? {
        Msg::Done(Ok(())) => Ok(()),
        other => Err(Error::Check(format!("{msg:?} answered {other:?}"))),
    }
}

fn put(key: &str, value: u64, sync: bool) -> Msg {
    Msg::Put {
        key: key.into(),
        value,
        sync,
    }
}

fn get(c: &mut dyn Cluster, n: NodeId, key: &str) -> Result<Option<u64>> {
    match ask(c, n, Msg::Get { key: key.into() })? {
        Msg::Value(Ok(v)) => Ok(v),
        other => Err(Error::Check(format!("get {key}: {other:?}"))),
    }
}

fn read_log(c: &mut dyn Cluster, n: NodeId) -> Result<std::result::Result<Vec<u64>, String>> {
    match ask(c, n, Msg::ReadLog)? {
        Msg::Records(r) => Ok(r),
        other => Err(Error::Check(format!("read log: {other:?}"))),
    }
}

fn clocks(c: &mut dyn Cluster, n: NodeId) -> Result<(u64, u64)> {
    match ask(c, n, Msg::Clocks)? {
        Msg::Times { mono_ns, wall_ns } => Ok((mono_ns, wall_ns)),
        other => Err(Error::Check(format!("clocks: {other:?}"))),
    }
}

fn check(holds: bool, what: String) -> Result<()> {
    if holds {
        Ok(())
    } else {
        Err(Error::Check(what))
    }
}

fn crash_and_restart(c: &mut dyn Cluster, m: MachineId) -> Result<()> {
    c.crash(m)?;
    c.restart(m)?;
    c.run_for(millis(200))
}

/// Synced values and records survive a crash; unsynced ones do not.
fn a_crash_keeps_only_what_was_synced(c: &mut dyn Cluster) -> Result<()> {
    let (m, n) = store(c)?;
    // A sync is the machine's: synced changes first, then the others.
    done(c, n, put("a", 1, false))?;
    done(
        c,
        n,
        Msg::Append {
            value: 10,
            sync: true,
        },
    )?;
    done(c, n, put("b", 2, false))?;
    done(c, n, put("a", 3, false))?;
    done(
        c,
        n,
        Msg::Append {
            value: 11,
            sync: false,
        },
    )?;
    check(
        get(c, n, "a")? == Some(3),
        "a write is read back at once".into(),
    )?;
    crash_and_restart(c, m)?;
    check(
        get(c, n, "a")? == Some(1),
        "a is back to its synced value".into(),
    )?;
    check(get(c, n, "b")?.is_none(), "b was never synced".into())?;
    let log = read_log(c, n)?;
    check(
        log == Ok(vec![10]),
        format!("the log keeps its synced record only: {log:?}"),
    )
}

/// Errors and a full disk fail writes until the disk is reset; a failed
/// sync keeps the changes unsynced; a slow sync takes its time.
fn disk_faults_fail_writes_until_reset(c: &mut dyn Cluster) -> Result<()> {
    let (m, n) = store(c)?;
    c.disk_fault(m, DiskFault::Full)?;
    match ask(c, n, put("a", 1, true))? {
        Msg::Done(Err(e)) if e.contains("no space") => {}
        other => return Err(Error::Check(format!("a write to a full disk: {other:?}"))),
    }
    c.disk_fault(m, DiskFault::Reset)?;
    done(c, n, put("a", 1, false))?;
    c.disk_fault(m, DiskFault::Errors { pct: 100 })?;
    match ask(c, n, Msg::TimedSync)? {
        Msg::Took(Err(e)) if e.contains("I/O error") => {}
        other => return Err(Error::Check(format!("a sync of a failing disk: {other:?}"))),
    }
    c.disk_fault(m, DiskFault::Reset)?;
    // The failed sync made nothing durable.
    crash_and_restart(c, m)?;
    check(
        get(c, n, "a")?.is_none(),
        "a failed sync leaves writes unsynced".into(),
    )?;
    c.disk_fault(m, DiskFault::Slow { ms: 150 })?;
    match ask(c, n, Msg::TimedSync)? {
        Msg::Took(Ok(took)) if took >= 150_000_000 => {}
        other => return Err(Error::Check(format!("a slow sync: {other:?}"))),
    }
    // Out of bounds is refused, naming the bound.
    match c.disk_fault(m, DiskFault::Errors { pct: 101 }) {
        Err(e) if e.to_string().contains("0 to 100") => Ok(()),
        other => Err(Error::Check(format!("pct 101: {other:?}"))),
    }
}

/// A power loss that tears the last write: simulation keeps a torn record,
/// which reads as corrupt; agents lose every unsynced write instead.
fn a_torn_write_reads_as_corrupt(c: &mut dyn Cluster) -> Result<()> {
    let (m, n) = store(c)?;
    done(
        c,
        n,
        Msg::Append {
            value: 1,
            sync: true,
        },
    )?;
    done(
        c,
        n,
        Msg::Append {
            value: u64::MAX,
            sync: false,
        },
    )?;
    c.disk_fault(m, DiskFault::OnCrash(CrashLoss::TearLast))?;
    crash_and_restart(c, m)?;
    let log = read_log(c, n)?;
    if c.mode() == Mode::Simulated {
        check(
            matches!(&log, Err(e) if e.contains("record 1 of log `log`") && e.contains("checksum")),
            format!("a torn record reads as corrupt: {log:?}"),
        )
    } else {
        check(
            log == Ok(vec![1]),
            format!("agents lose the unsynced record: {log:?}"),
        )
    }
}

/// The wall clock steps back and forth; the monotonic clock never goes
/// back; drift makes the machine's clock and timers run fast.
fn clocks_step_and_drift(c: &mut dyn Cluster) -> Result<()> {
    let (m, n) = store(c)?;
    let (mono0, wall0) = clocks(c, n)?;
    c.clock_fault(m, ClockFault::Step { ms: -5_000 })?;
    let (mono1, wall1) = clocks(c, n)?;
    check(mono1 >= mono0, "the monotonic clock never goes back".into())?;
    check(
        wall1 + 4_000_000_000 < wall0,
        format!("the wall clock stepped back 5 s: {wall0} then {wall1}"),
    )?;
    c.clock_fault(m, ClockFault::Reset)?;
    let (mono2, wall2) = clocks(c, n)?;
    check(
        mono2 >= mono1,
        "a reset does not move the monotonic clock back".into(),
    )?;
    check(
        wall2 >= wall0,
        format!("a reset sets the wall clock right: {wall0} then {wall2}"),
    )?;
    c.clock_fault(m, ClockFault::Drift { ppm: 1_000 })?;
    done(c, n, Msg::Arm { ms: 1_000 })?;
    c.run_for(secs(2))?;
    let (armed, fired) = match ask(c, n, Msg::Fired)? {
        Msg::FiredAt(Some(t)) => t,
        other => return Err(Error::Check(format!("the timer did not fire: {other:?}"))),
    };
    check(
        fired - armed >= 1_000_000_000,
        "a timer never fires early on its machine's clock".into(),
    )?;
    if c.mode() == Mode::Simulated {
        // 20 s of real time read 20.02 s at +1000 ppm (give or take the
        // calls' latency; without drift the two would agree).
        let (a, _) = clocks(c, n)?;
        let real_a = c.now();
        c.run_for(secs(20))?;
        let (b, _) = clocks(c, n)?;
        let real = (c.now() - real_a).as_nanos() as i128;
        let read = (b - a) as i128;
        let want = real * 1_001 / 1_000;
        check(
            (read - want).abs() < 5_000_000,
            format!("{real} ns of real time read {read} ns at +1000 ppm (want ~{want})"),
        )?;
    }
    match c.clock_fault(m, ClockFault::Drift { ppm: 5_000 }) {
        Err(e) if e.to_string().contains("1000 ppm") => Ok(()),
        other => Err(Error::Check(format!("5000 ppm: {other:?}"))),
    }
}

distzero::workflow_tests! {
    registry: registry(),
    tests: [
        a_crash_keeps_only_what_was_synced,
        disk_faults_fail_writes_until_reset,
        a_torn_write_reads_as_corrupt,
        clocks_step_and_drift,
    ]
}
