//! The agent: the real process that hosts the nodes of one machine.
//!
//! One current-thread tokio runtime. One loop (`host.rs`) owns the nodes and
//! is their [`distzero_core::Env`]: real time since the cluster's epoch, timers on
//! tokio time, a ChaCha rng seeded from the seed, the machine and its boot
//! count, a file-backed disk in the data dir, buggify always false. Socket
//! tasks (`conn.rs`) only move frames between TCP and that loop.
//!
//! - Control connection (from the controller): spawn nodes, deliver client
//!   messages, per-destination link settings and filters (cut, hold), peers,
//!   shutdown. Messages from nodes to clients go back over it.
//! - Peer links: one TCP connection per destination agent, dialed on demand,
//!   re-dialed with backoff; what is queued on a link that breaks is lost.
//! - Orphan rule: no controller connection for `orphan` (also at start) and
//!   the agent exits. SIGTERM exits cleanly (the agent may be PID 1).
//!
//! Entries: [`main_with`] for the agent binary, [`run_agent`] for an agent
//! inside a thread (the loopback provider).

pub(crate) mod conn;
mod msgtrace;
pub use conn::{MAX_UNAUTHENTICATED, MAX_UNAUTHENTICATED_PER_IP};
pub mod disk;
mod host;

pub use host::MAX_UNSENT_RECORDS;

use distzero_core::error::{Error, Result};
use distzero_core::ids::MachineId;
use distzero_core::log::{Clock, RunLog};
use distzero_core::registry::Registry;
use distzero_core::settings::Settings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Everything one agent needs; [`AgentConfig::from_args`] reads it from the
/// command line of [`crate::provider::AgentLaunch::args`].
#[derive(Debug)]
pub struct AgentConfig {
    pub machine: MachineId,
    pub run_id: String,
    pub cookie: String,
    pub seed: u64,
    /// Where to listen for the controller and peers.
    pub listen: SocketAddr,
    /// A socket already bound (the loopback provider binds first to learn
    /// the port); when set, `listen` is not bound again.
    pub listener: Option<std::net::TcpListener>,
    /// Unix time (µs) of the cluster's start: the origin of `now`.
    pub epoch_micros: u64,
    /// Exit after this long without a controller.
    pub orphan: Duration,
    pub log_dir: PathBuf,
    pub data_dir: PathBuf,
    pub log_level: Option<tracing::Level>,
    /// Log message events (send, deliver, drop) with the logs at INFO or
    /// more (`DISTZERO_LOG_MESSAGES` not `off`: a real run cannot be run
    /// again for them, so `failing` logs them too).
    pub log_messages: bool,
    /// Exit cleanly on SIGTERM / SIGINT (the binary; not an agent in a thread).
    pub handle_signals: bool,
}

const USAGE: &str = "usage: distzero-agent --machine N --run-id ID --seed N --listen ADDR:PORT \
--epoch-micros N --orphan-secs N --log-dir DIR --data-dir DIR (the cookie on the first line of stdin, or in DISTZERO_COOKIE)";

impl AgentConfig {
    /// Parse the agent's arguments (without the program name).
    pub fn from_args(
        args: &[String],
        cookie: &str,
        log_level: Option<tracing::Level>,
    ) -> Result<AgentConfig> {
        let mut vals: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
        let known = [
            "--machine",
            "--run-id",
            "--seed",
            "--listen",
            "--epoch-micros",
            "--orphan-secs",
            "--log-dir",
            "--data-dir",
        ];
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let Some(&name) = known.iter().find(|k| **k == flag.as_str()) else {
                return Err(Error::Setting(format!(
                    "unknown argument `{flag}`; {USAGE}"
                )));
            };
            let Some(v) = it.next() else {
                return Err(Error::Setting(format!("{name} needs a value; {USAGE}")));
            };
            vals.insert(name, v.as_str());
        }
        let get = |name: &str| -> Result<&str> {
            vals.get(name)
                .copied()
                .ok_or_else(|| Error::Setting(format!("missing {name}; {USAGE}")))
        };
        fn num<T: std::str::FromStr>(name: &str, v: &str, what: &str) -> Result<T> {
            v.parse()
                .map_err(|_| Error::Setting(format!("{name} {v:?} is not valid: it takes {what}")))
        }
        let machine = MachineId(num("--machine", get("--machine")?, "a machine number")?);
        if cookie.is_empty() {
            return Err(Error::Setting(
                "DISTZERO_COOKIE is empty: the controller passes the cluster cookie in it".into(),
            ));
        }
        let orphan_secs: u64 = num(
            "--orphan-secs",
            get("--orphan-secs")?,
            "whole seconds, at least 1",
        )?;
        if orphan_secs == 0 {
            return Err(Error::Setting(
                "--orphan-secs 0 is not valid: it takes whole seconds, at least 1".into(),
            ));
        }
        Ok(AgentConfig {
            machine,
            run_id: get("--run-id")?.to_string(),
            cookie: cookie.to_string(),
            seed: num("--seed", get("--seed")?, "an unsigned 64-bit integer")?,
            listen: num(
                "--listen",
                get("--listen")?,
                "an address such as 0.0.0.0:7410",
            )?,
            listener: None,
            epoch_micros: num(
                "--epoch-micros",
                get("--epoch-micros")?,
                "unix time in microseconds",
            )?,
            orphan: Duration::from_secs(orphan_secs),
            log_dir: PathBuf::from(get("--log-dir")?),
            data_dir: PathBuf::from(get("--data-dir")?),
            log_level,
            log_messages: true,
            handle_signals: true,
        })
    }
}

/// Why an agent stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The controller said so.
    Shutdown,
    /// No controller for the orphan time.
    Orphaned,
    /// SIGTERM or SIGINT.
    Signal,
    /// [`StopHandle::kill`]: stopped at once, sockets dropped, no goodbye.
    Killed,
}

impl Exit {
    /// The process exit code of the agent binary.
    pub fn code(self) -> i32 {
        match self {
            Exit::Shutdown | Exit::Signal => 0,
            Exit::Orphaned => 3,
            Exit::Killed => 137,
        }
    }
}

#[derive(Default)]
struct Flags {
    killed: bool,
    paused: bool,
    /// The agent's thread is blocked in a pause.
    frozen: bool,
}

struct HandleInner {
    flags: Mutex<Flags>,
    cv: Condvar,
    wake: tokio::sync::Notify,
}

/// Controls an agent running in a thread: kill it, freeze and thaw it.
#[derive(Clone)]
pub struct StopHandle {
    inner: Arc<HandleInner>,
}

impl Default for StopHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl StopHandle {
    pub fn new() -> StopHandle {
        StopHandle {
            inner: Arc::new(HandleInner {
                flags: Mutex::new(Flags::default()),
                cv: Condvar::new(),
                wake: Default::default(),
            }),
        }
    }

    fn flags(&self) -> std::sync::MutexGuard<'_, Flags> {
        self.inner.flags.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stop the agent at once: its loop returns, its runtime and sockets drop.
    pub fn kill(&self) {
        self.flags().killed = true;
        self.inner.cv.notify_all();
        self.inner.wake.notify_one();
    }

    pub fn is_killed(&self) -> bool {
        self.flags().killed
    }

    /// Freeze the agent's whole thread (like SIGSTOP): nothing runs, its
    /// sockets stay open. Returns once it is frozen (true) or after `wait`.
    pub fn pause(&self, wait: Duration) -> bool {
        self.flags().paused = true;
        self.inner.wake.notify_one();
        let deadline = Instant::now() + wait;
        let mut f = self.flags();
        while !f.frozen && !f.killed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            f = self
                .inner
                .cv
                .wait_timeout(f, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    pub fn resume(&self) {
        self.flags().paused = false;
        self.inner.cv.notify_all();
    }

    /// Called by the agent's loop: block while paused. Returns true if it blocked.
    fn freeze_if_paused(&self) -> bool {
        let mut f = self.flags();
        if !f.paused || f.killed {
            return false;
        }
        f.frozen = true;
        self.inner.cv.notify_all();
        while f.paused && !f.killed {
            f = self.inner.cv.wait(f).unwrap_or_else(|p| p.into_inner());
        }
        f.frozen = false;
        true
    }
}

/// Run one agent on this thread until it stops. The thread gets its own
/// log subscriber (`m<id>.jsonl` / `.log` in the log dir).
pub fn run_agent(cfg: AgentConfig, registry: Registry, stop: StopHandle) -> Result<Exit> {
    std::fs::create_dir_all(&cfg.log_dir)
        .map_err(|e| Error::io(format!("creating the log dir {}", cfg.log_dir.display()), e))?;
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
        Error::io(
            format!("creating the data dir {}", cfg.data_dir.display()),
            e,
        )
    })?;
    let boot = next_boot(&cfg)?;
    keep_previous_logs(&cfg, boot);

    let clock = AgentClock::new(cfg.epoch_micros);
    let c = clock.clone();
    let log = RunLog::new(
        &cfg.log_dir,
        Clock::Real(Arc::new(move || c.now())),
        cfg.log_level,
    )
    .map_err(|e| Error::io(format!("opening logs in {}", cfg.log_dir.display()), e))?
    .with_fixed_name(&cfg.machine.to_string());
    let _guard = log.install();
    // The host loop runs on this thread (a current-thread runtime).
    let messages = cfg.log_messages && cfg.log_level >= Some(tracing::Level::INFO);
    let _was = distzero_core::msglog::set_enabled(messages);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the agent's tokio runtime", e))?;
    let result = rt.block_on(host::run(cfg, registry, stop, clock, boot, log.clone()));
    drop(rt);
    log.flush();
    result
}

/// The agent binary's `main`: parse the arguments of
/// [`crate::provider::AgentLaunch::args`], read the cookie through the
/// settings, run, exit with [`Exit::code`] (2 on a start-up error).
pub fn main_with(registry: Registry) -> ! {
    main_with_args(registry, std::env::args().skip(1).collect())
}

/// [`main_with`] with the arguments given (without the program name).
pub fn main_with_args(registry: Registry, args: Vec<String>) -> ! {
    let code = match main_inner(registry, args) {
        Ok(exit) => exit.code(),
        Err(e) => {
            eprintln!("distzero-agent: {e}");
            2
        }
    };
    std::process::exit(code)
}

fn main_inner(registry: Registry, args: Vec<String>) -> Result<Exit> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(Exit::Shutdown);
    }
    // The controller passes everything an agent needs; a `.env` lying on the
    // host must not change it.
    let settings = Settings::from_environment()?;
    // The cookie comes on stdin (its first line), never in the arguments
    // or a container's configuration; `DISTZERO_COOKIE` for a hand start.
    let cookie = match settings.cookie()? {
        Some(c) => c.to_string(),
        None => cookie_from_stdin()?,
    };
    let mut cfg = AgentConfig::from_args(&args, &cookie, settings.log_level()?)?;
    cfg.log_messages = settings.log_messages()? != distzero_core::settings::LogMessages::Off;
    eprintln!(
        "distzero-agent {} of run {} listening on {}",
        cfg.machine, cfg.run_id, cfg.listen
    );
    let exit = run_agent(cfg, registry, StopHandle::new())?;
    eprintln!("distzero-agent exits: {exit:?}");
    Ok(exit)
}

/// The first line of stdin (at most 1 KiB), trimmed: the cookie as
/// providers pass it.
fn cookie_from_stdin() -> Result<String> {
    use std::io::{BufRead, Read};
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(1024)
        .read_line(&mut line)
        .map_err(|e| Error::io("reading the cookie from stdin", e))?;
    Ok(line.trim().to_string())
}

/// Real time since the cluster's epoch, monotonic within the process.
#[derive(Clone)]
pub(crate) struct AgentClock {
    base: Instant,
    base_since_epoch: Duration,
}

impl AgentClock {
    pub(crate) fn new(epoch_micros: u64) -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        AgentClock {
            base: Instant::now(),
            base_since_epoch: unix.saturating_sub(Duration::from_micros(epoch_micros)),
        }
    }
    pub(crate) fn now(&self) -> Duration {
        self.base_since_epoch + self.base.elapsed()
    }
}

/// Count boots of this machine in its data dir (mixed into its rng seed).
fn next_boot(cfg: &AgentConfig) -> Result<u64> {
    let path = cfg.data_dir.join("boot");
    let prev: u64 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    std::fs::write(&path, (prev + 1).to_string())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(prev + 1)
}

/// The log files are created anew at start: keep those of the previous boot
/// as `m<id>.boot<N>.jsonl` / `.log`.
fn keep_previous_logs(cfg: &AgentConfig, boot: u64) {
    if boot <= 1 {
        return;
    }
    for ext in ["jsonl", "log"] {
        let cur = cfg.log_dir.join(format!("{}.{ext}", cfg.machine));
        if cur.exists() {
            let _ = std::fs::rename(
                &cur,
                cfg.log_dir
                    .join(format!("{}.boot{}.{ext}", cfg.machine, boot - 1)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_the_launch_arguments() {
        let launch = crate::provider::AgentLaunch {
            machine: MachineId(3),
            run_id: "r1".into(),
            cookie: "c".into(),
            seed: 42,
            port: 7410,
            epoch_micros: 99,
            orphan_secs: 5,
        };
        let cfg = AgentConfig::from_args(&launch.args("/l", "/d"), "c", None).unwrap();
        assert_eq!(cfg.machine, MachineId(3));
        assert_eq!(cfg.seed, 42);
        assert_eq!(cfg.listen, "0.0.0.0:7410".parse().unwrap());
        assert_eq!(cfg.orphan, Duration::from_secs(5));
        assert_eq!(cfg.data_dir, PathBuf::from("/d"));
        assert_eq!(cfg.log_dir, PathBuf::from("/l"));
        assert_eq!(cfg.run_id, "r1");
        assert_eq!(cfg.cookie, "c");
        assert_eq!(cfg.epoch_micros, 99);
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        let e = AgentConfig::from_args(&args("--machine x"), "c", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--machine \"x\" is not valid: it takes a machine number"),
            "{e}"
        );
        let e = AgentConfig::from_args(&args("--machine 1"), "c", None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("missing --orphan-secs; usage:"), "{e}");
        let e = AgentConfig::from_args(&args("--machine 1 --orphan-secs 0"), "c", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--orphan-secs 0 is not valid"), "{e}");
        let e = AgentConfig::from_args(&args("--machine"), "c", None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--machine needs a value"), "{e}");
        let e = AgentConfig::from_args(&args("--bogus 1"), "c", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--bogus"), "{e}");
        let e = AgentConfig::from_args(&[], "", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("DISTZERO_COOKIE"), "{e}");
    }
}
