//! Settings: the one module that reads the environment and `.env`.
//!
//! Every variable is in [`VARS`] with its default; `.env.template` lists the
//! same (a test keeps the two in step). The environment wins over `.env`.
//! A bad value fails at start with one line naming the variable and what it
//! accepts.

use crate::error::{Error, Result};
use crate::link::{Latency, Link};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A known variable: name, default ("" = unset), what it does.
pub struct Var {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

pub const VARS: &[Var] = &[
    Var { name: "DISTZERO_SEED", default: "", help: "seed of simulated runs: an unsigned integer, or `random`; unset = derived from the test name; when set, a workflow test runs this one seed, whatever DISTZERO_SEEDS says" },
    Var { name: "DISTZERO_SEEDS", default: "", help: "seeds of a sweep: of every simulated workflow test (cargo test simulated) and of distzero-sweep (its --first and --seeds win); N = seeds 0 to N-1, A..B = seeds A to B-1, swept on DISTZERO_SWEEP_JOBS threads; unset = one seed for a test (DISTZERO_SEED or the test name's), 200 seeds for distzero-sweep" },
    Var { name: "DISTZERO_SHARD", default: "", help: "i/n = run only the seeds of a sweep with seed % n == i (0 <= i < n), e.g. one of n machines; unset = every seed, or the shard of a Kubernetes Indexed Job (JOB_COMPLETION_INDEX of DISTZERO_SHARDS)" },
    Var { name: "DISTZERO_SHARDS", default: "", help: "number of shards of a Kubernetes Indexed Job (set it to the Job's completions): with JOB_COMPLETION_INDEX it gives the shard when DISTZERO_SHARD is unset" },
    Var { name: "JOB_COMPLETION_INDEX", default: "", help: "set by Kubernetes in each pod of an Indexed Job (completionMode: Indexed): the pod's index, its shard of DISTZERO_SHARDS; never set it yourself" },
    Var { name: "DISTZERO_KEEP_GOING", default: "0", help: "1 = a sweep runs every seed and reports every failing one; 0 = it stops at the first failure" },
    Var { name: "DISTZERO_SHRINK", default: "300", help: "runs a sweep may spend shrinking the fault schedule of its first failure; 0 = no shrinking" },
    Var { name: "DISTZERO_PROGRESS", default: "0", help: "1 = a progress bar of a workflow test's sweep on stderr (drawn only when stderr is a terminal); distzero-sweep shows one unless --quiet" },
    Var { name: "DISTZERO_CHECK_DETERMINISM", default: "0", help: "1 = run each seed of a simulated test or sweep twice with full logs and compare them byte for byte; 0 = once" },
    Var { name: "DISTZERO_LOG_DIR", default: ".tmp", help: "folder that receives the logs of every run" },
    Var { name: "DISTZERO_LOG_LEVEL", default: "info", help: "least level written to the logs: off, error, warn, info, debug or trace" },
    Var { name: "DISTZERO_LOG_MESSAGES", default: "failing", help: "message events (send, deliver, drop) in the logs: failing = in the logs of a failing seed (a sweep's or test's run again of it, a replay), on = in every run that writes logs, off = never" },
    Var { name: "DISTZERO_COOKIE", default: "", help: "cluster cookie that members prove: at least 32 random characters (openssl rand -hex 16); unset = a fresh random one (128 bits) per run" },
    Var { name: "DISTZERO_BUGGIFY", default: "0.05", help: "probability that ctx.buggify() is true in simulation, 0.0..=1.0 (simulation-only: real modes refuse another value)" },
    Var { name: "DISTZERO_REORDER", default: "0", help: "1 = simulation reorders messages per pair of machines, beyond the delivery contract; 0 = in order (simulation-only)" },
    Var { name: "DISTZERO_DUPLICATE", default: "0", help: "probability that simulation delivers a message twice, 0.0..=1.0, beyond the delivery contract (simulation-only)" },
    Var { name: "DISTZERO_LATENCY", default: "500us..1500us", help: "one-way latency of every simulated link a test does not set: a duration (0, 250us, 1ms, 1.5s) or a uniform range min..max such as 500us..1500us; units ns, us, ms, s (simulation-only)" },
    Var { name: "DISTZERO_SCHEDULE", default: "", help: "fault schedules that replace the ones a test's nemesis declarations draw, as a sweep prints them: JSON (one list of steps per start_nemesis, e.g. [[{\"at_ms\":10,\"fault\":{\"Crash\":0}}]]) or the path of a file holding it; unset = drawn from the seed; every mode" },
    Var { name: "DISTZERO_SWARM", default: "0", help: "1 = swarm testing: each seed draws its own fault profile (which kinds, how often, when, quiet periods) for every nemesis that does not say otherwise; 0 = every declared kind at fixed weights; every mode" },
    Var { name: "DISTZERO_LOSS", default: "0", help: "probability that a simulated link a test does not set loses a message, 0.0..=1.0 (simulation-only)" },
    Var { name: "DISTZERO_AGENT_BIN", default: "", help: "a prebuilt static agent binary to deploy; unset = the test binary itself (workflow_tests!), else a static build of distzero-agent from this workspace" },
    Var { name: "DISTZERO_AGENT_ARGS", default: "", help: "set by real modes on a test binary they start as an agent (its launch arguments); never set it yourself" },
    Var { name: "DISTZERO_AGENT_ORPHAN_SECS", default: "5", help: "seconds an agent lives on without its controller before it exits" },
    Var { name: "DISTZERO_DOCKER_HOST", default: "unix:///var/run/docker.sock", help: "Docker engine to use in virtual mode" },
    Var { name: "DISTZERO_DOCKER_SUBNET", default: "", help: "first three octets of the /24 of a virtual run (e.g. 172.29.7): the tests of one process take turns on it, another process holding it is refused; unset = a free one picked per run from 172.28-31 (tests run in parallel)" },
    Var { name: "DISTZERO_CLOUD_HOSTS", default: "", help: "cloud inventory: comma-separated [user@]host[:port] reached over SSH" },
    Var { name: "DISTZERO_CLOUD_USER", default: "root", help: "SSH user for cloud hosts that name none" },
    Var { name: "DISTZERO_CLOUD_SSH_KEY", default: "", help: "private key file for SSH to cloud hosts; unset = ssh's own defaults" },
    Var { name: "DISTZERO_CLOUD_BIND", default: "", help: "address cloud agents listen on: unset = the host's own address from DISTZERO_CLOUD_HOSTS (resolved), which the controller and peers dial; 0.0.0.0 where that address is not on the host (behind NAT)" },
    Var { name: "DISTZERO_CLOUD_DIR", default: "/tmp/distzero", help: "folder on cloud hosts that holds the agent, its disk and its logs" },
    Var { name: "DISTZERO_CLOUD_KNOWN_HOSTS", default: "", help: "known_hosts file that cloud hosts' SSH keys must match; unset = trust on first use, remembered for the run only" },
    Var { name: "DISTZERO_CLOUD_PROVIDER", default: "ssh", help: "where cloud mode's machines come from: ssh = the existing hosts of DISTZERO_CLOUD_HOSTS; ec2 = EC2 instances launched for each run (DISTZERO_EC2_*, AWS_*) and terminated after it" },
    Var { name: "DISTZERO_EC2_ENDPOINT", default: "", help: "EC2 API endpoint (such as http://127.0.0.1:5000 for a moto stand-in); unset = AWS_ENDPOINT_URL, else https://ec2.<region>.amazonaws.com" },
    Var { name: "DISTZERO_EC2_IMAGE", default: "", help: "AMI id of the instances (a Linux with sshd and iptables, such as Debian or Ubuntu); required with DISTZERO_CLOUD_PROVIDER=ec2" },
    Var { name: "DISTZERO_EC2_INSTANCE_TYPE", default: "t3.micro", help: "EC2 instance type of every machine" },
    Var { name: "DISTZERO_EC2_SUBNET", default: "", help: "subnet id the instances are launched in; unset = the default subnet of the region's default VPC" },
    Var { name: "DISTZERO_EC2_SECURITY_GROUP", default: "", help: "security group id of the instances (must admit SSH and TCP 20000-59999 from the controller and between instances); unset = one made for the run (see DISTZERO_EC2_INGRESS_CIDR) and deleted after it" },
    Var { name: "DISTZERO_EC2_KEY_NAME", default: "", help: "EC2 key pair the instances admit (DISTZERO_CLOUD_SSH_KEY must be its private key); unset = the public key beside DISTZERO_CLOUD_SSH_KEY (<key>.pub) imported for the run and deleted after it" },
    Var { name: "DISTZERO_EC2_INGRESS_CIDR", default: "0.0.0.0/0", help: "addresses a security group made for the run admits on SSH and the agents' ports (agents accept only holders of the run's cookie); narrow it to your own address/32" },
    Var { name: "DISTZERO_EC2_ADDRESS", default: "public", help: "which address of an instance the controller dials: public (the controller is outside the VPC; set DISTZERO_CLOUD_BIND=0.0.0.0 too) or private (inside the VPC, or a stand-in)" },
    Var { name: "DISTZERO_EC2_MAX_INSTANCES", default: "8", help: "most instances one run may launch (1 to 1000); a run that needs more fails before launching it" },
    Var { name: "DISTZERO_EC2_BOOT_TIMEOUT", default: "300", help: "seconds an instance may take from launch until it runs and answers SSH; longer fails the run, which terminates its instances" },
    Var { name: "AWS_ACCESS_KEY_ID", default: "", help: "AWS access key (the standard AWS variable); unset = the profile's credentials in the shared credentials and config files" },
    Var { name: "AWS_SECRET_ACCESS_KEY", default: "", help: "AWS secret key that goes with AWS_ACCESS_KEY_ID (the standard AWS variable)" },
    Var { name: "AWS_SESSION_TOKEN", default: "", help: "AWS session token of temporary credentials (the standard AWS variable); unset = none" },
    Var { name: "AWS_REGION", default: "", help: "AWS region of the EC2 instances (the standard AWS variable); unset = AWS_DEFAULT_REGION, else the profile's region in the shared config file" },
    Var { name: "AWS_DEFAULT_REGION", default: "", help: "AWS region when AWS_REGION is unset (the standard AWS variable)" },
    Var { name: "AWS_PROFILE", default: "", help: "profile of the shared AWS config and credentials files (the standard AWS variable); unset = default" },
    Var { name: "AWS_CONFIG_FILE", default: "", help: "shared AWS config file (the standard AWS variable); unset = $HOME/.aws/config" },
    Var { name: "AWS_SHARED_CREDENTIALS_FILE", default: "", help: "shared AWS credentials file (the standard AWS variable); unset = $HOME/.aws/credentials" },
    Var { name: "AWS_ENDPOINT_URL", default: "", help: "endpoint of every AWS service (the standard AWS variable); DISTZERO_EC2_ENDPOINT wins for EC2" },
    Var { name: "HOME", default: "", help: "set by your shell: the home folder, where the shared AWS files are by default (~/.aws/); never set it here" },
    Var { name: "DISTZERO_SWEEP_JOBS", default: "0", help: "threads of a sweep (distzero-sweep, or a workflow test under DISTZERO_SEEDS); 0 = one per core" },
    Var { name: "DISTZERO_MAX_EVENTS", default: "1000000000", help: "event budget of one simulated run (one seed of a sweep); more fails the run" },
    Var { name: "DISTZERO_SWEEP_SEED_TIMEOUT", default: "60", help: "wall-time budget of one simulated run (a workflow test's seed, one seed of a sweep, a replay), in seconds (decimals allowed); more fails the seed" },
];

/// Fewest characters of a user-chosen `DISTZERO_COOKIE` (32 hex digits:
/// 128 bits).
pub const MIN_COOKIE_CHARS: usize = 32;

/// Separates the arguments in `DISTZERO_AGENT_ARGS` (the ASCII unit
/// separator: no argument a provider makes contains it).
pub const AGENT_ARGS_SEP: char = '\u{1f}';

/// Settings that only simulation honours. A real mode (loopback, virtual,
/// cloud) refuses to run when one is not at its default
/// ([`Settings::refuse_simulation_only`]), rather than silently ignore it.
pub const SIMULATION_ONLY: &[&str] = &[
    "DISTZERO_SEEDS",
    "DISTZERO_CHECK_DETERMINISM",
    "DISTZERO_BUGGIFY",
    "DISTZERO_REORDER",
    "DISTZERO_DUPLICATE",
    "DISTZERO_LATENCY",
    "DISTZERO_LOSS",
];

/// When a run writes message events ([`crate::msglog`]) into its logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogMessages {
    Off,
    /// Only in the logs of a failing seed: a sweep's run again of it with
    /// logs, a replay, a single-seed test run again once it failed.
    Failing,
    /// In every run that writes logs.
    On,
}

/// Loaded settings: raw values from the environment over `.env`, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    values: BTreeMap<&'static str, String>,
    /// Where `.env` was found, if anywhere.
    pub env_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedChoice {
    Fixed(u64),
    Random,
    FromTestName,
}

/// The known variable nearest to `name` (at most 3 edits away), for a hint.
fn closest(name: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    VARS.iter()
        .map(|v| (distance(name, v.name), v.name))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, n)| n)
}

fn bad(var: &str, value: &str, accepts: &str) -> Error {
    Error::Setting(format!(
        "{var}={value:?} is not valid: {var} accepts {accepts}"
    ))
}

impl Settings {
    /// Read the environment and the nearest `.env` (this folder or a parent).
    pub fn load() -> Result<Settings> {
        let env_file =
            find_env_file(&std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")));
        let file_vals = match &env_file {
            Some(p) => parse_env_file(p)?,
            None => BTreeMap::new(),
        };
        let vars: BTreeMap<String, String> = std::env::vars().collect();
        Self::from_sources(&vars, &file_vals, env_file)
    }

    /// The environment alone, no `.env`: what an agent reads on a host, where
    /// a stray `.env` in its folder or above must not change its settings.
    pub fn from_environment() -> Result<Settings> {
        let vars: BTreeMap<String, String> = std::env::vars().collect();
        Self::from_sources(&vars, &BTreeMap::new(), None)
    }

    /// These variables alone, as if they were the whole environment (no
    /// `.env`, no process state read): what tests build settings from.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Settings> {
        let env: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::from_sources(&env, &BTreeMap::new(), None)
    }

    /// Build from explicit sources (tests use this; no process state read).
    pub fn from_sources(
        env: &BTreeMap<String, String>,
        file: &BTreeMap<String, String>,
        env_file: Option<PathBuf>,
    ) -> Result<Settings> {
        for key in file.keys() {
            if key.starts_with("DISTZERO_") && !VARS.iter().any(|v| v.name == key) {
                return Err(Error::Setting(format!(
                    "{key} in {} is not a distzero setting; the known ones are in .env.template",
                    env_file
                        .as_deref()
                        .map(Path::display)
                        .map(|d| d.to_string())
                        .unwrap_or_default()
                )));
            }
        }
        for key in env.keys() {
            if key.starts_with("DISTZERO_") && !VARS.iter().any(|v| v.name == key) {
                let hint = closest(key)
                    .map(|k| format!(" (did you mean {k}?)"))
                    .unwrap_or_default();
                return Err(Error::Setting(format!(
                    "{key} in the environment is not a distzero setting{hint}; the known ones are in .env.template"
                )));
            }
        }
        let mut values = BTreeMap::new();
        for v in VARS {
            let val = env
                .get(v.name)
                .or_else(|| file.get(v.name))
                .cloned()
                .unwrap_or_else(|| v.default.to_string());
            values.insert(v.name, val.trim().to_string());
        }
        let s = Settings { values, env_file };
        s.validate()?;
        Ok(s)
    }

    /// The defaults alone.
    pub fn defaults() -> Settings {
        Self::from_sources(&BTreeMap::new(), &BTreeMap::new(), None).expect("defaults are valid")
    }

    /// Override one value (for tools and tests), validating it. A refused
    /// value is not kept.
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) -> Result<()> {
        if !VARS.iter().any(|v| v.name == name) {
            return Err(Error::Setting(format!("{name} is not a distzero setting")));
        }
        let old = self.values.insert(name, value.into());
        let checked = self.validate();
        if checked.is_err() {
            if let Some(old) = old {
                self.values.insert(name, old);
            }
        }
        checked
    }

    fn validate(&self) -> Result<()> {
        self.seed()?;
        self.log_level()?;
        self.log_messages()?;
        self.seeds()?;
        self.check_determinism()?;
        self.buggify()?;
        self.reorder()?;
        self.duplicate()?;
        self.default_link()?;
        self.agent_orphan()?;
        self.shard()?;
        self.keep_going()?;
        self.shrink_budget()?;
        self.progress()?;
        self.sweep_jobs()?;
        self.max_events()?;
        self.sweep_seed_timeout()?;
        self.docker_subnet()?;
        self.cloud_hosts()?;
        self.cloud_bind()?;
        self.cloud_provider()?;
        self.ec2_address_is_private()?;
        self.ec2_max_instances()?;
        self.ec2_boot_timeout()?;
        self.cookie()?;
        self.swarm()?;
        Ok(())
    }

    /// The raw value of a variable ("" when unset with no default).
    pub fn raw(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }

    fn opt(&self, name: &str) -> Option<&str> {
        Some(self.raw(name)).filter(|v| !v.is_empty())
    }

    pub fn seed(&self) -> Result<SeedChoice> {
        match self.opt("DISTZERO_SEED") {
            None => Ok(SeedChoice::FromTestName),
            Some("random") => Ok(SeedChoice::Random),
            Some(v) => v
                .parse()
                .map(SeedChoice::Fixed)
                .map_err(|_| bad("DISTZERO_SEED", v, "an unsigned 64-bit integer or `random`")),
        }
    }

    pub fn log_dir(&self) -> PathBuf {
        PathBuf::from(self.raw("DISTZERO_LOG_DIR"))
    }

    /// [`Settings::log_dir`], made if missing and checked writable (a probe
    /// file written and removed), so a run that cannot write its logs
    /// fails at once naming `DISTZERO_LOG_DIR`, not as a failed seed.
    pub fn writable_log_dir(&self) -> Result<PathBuf> {
        // One probe file per call: threads of one process check at once.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.log_dir();
        let probe = dir.join(format!(".distzero-probe-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&probe, b""))
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                Error::Setting(format!(
                    "DISTZERO_LOG_DIR={:?} cannot be written ({e}): set DISTZERO_LOG_DIR to a folder this user may write",
                    dir.display().to_string()
                ))
            })?;
        Ok(dir)
    }

    pub fn log_level(&self) -> Result<Option<tracing::Level>> {
        use tracing::Level;
        match self.raw("DISTZERO_LOG_LEVEL").to_ascii_lowercase().as_str() {
            "off" => Ok(None),
            "error" => Ok(Some(Level::ERROR)),
            "warn" => Ok(Some(Level::WARN)),
            "info" => Ok(Some(Level::INFO)),
            "debug" => Ok(Some(Level::DEBUG)),
            "trace" => Ok(Some(Level::TRACE)),
            v => Err(bad(
                "DISTZERO_LOG_LEVEL",
                v,
                "off, error, warn, info, debug or trace",
            )),
        }
    }

    /// When runs log message events (`DISTZERO_LOG_MESSAGES`).
    pub fn log_messages(&self) -> Result<LogMessages> {
        match self
            .raw("DISTZERO_LOG_MESSAGES")
            .to_ascii_lowercase()
            .as_str()
        {
            "off" | "0" => Ok(LogMessages::Off),
            "failing" => Ok(LogMessages::Failing),
            "on" | "1" => Ok(LogMessages::On),
            v => Err(bad("DISTZERO_LOG_MESSAGES", v, "off, failing or on")),
        }
    }

    /// The cluster cookie (`DISTZERO_COOKIE`), if set: at least
    /// [`MIN_COOKIE_CHARS`] characters, not mostly one character, so that
    /// guessing it offline from a proof is hopeless (128 bits and more).
    pub fn cookie(&self) -> Result<Option<&str>> {
        let Some(c) = self.opt("DISTZERO_COOKIE") else {
            return Ok(None);
        };
        let distinct: std::collections::BTreeSet<char> = c.chars().collect();
        if c.chars().count() < MIN_COOKIE_CHARS || distinct.len() < 8 {
            return Err(Error::Setting(format!(
                "DISTZERO_COOKIE is too weak ({} characters, {} distinct): it needs at least {MIN_COOKIE_CHARS} random characters, such as `openssl rand -hex 16` prints; or leave it unset for a fresh random cookie per run",
                c.chars().count(),
                distinct.len()
            )));
        }
        Ok(Some(c))
    }

    pub fn buggify(&self) -> Result<f64> {
        probability(self, "DISTZERO_BUGGIFY")
    }

    /// The seeds of a sweep (`DISTZERO_SEEDS`): `N` is `0..N`, `A..B` is
    /// `A..B` (B excluded); None = unset (one seed for a workflow test).
    pub fn seeds(&self) -> Result<Option<Range<u64>>> {
        let Some(v) = self.opt("DISTZERO_SEEDS") else {
            return Ok(None);
        };
        let range = match v.split_once("..") {
            Some((a, b)) => a
                .trim()
                .parse::<u64>()
                .ok()
                .zip(b.trim().parse::<u64>().ok()),
            None => v.parse::<u64>().ok().map(|n| (0, n)),
        };
        match range {
            Some((a, b)) if a < b => Ok(Some(a..b)),
            _ => Err(bad(
                "DISTZERO_SEEDS",
                v,
                "a positive number of seeds N (seeds 0 to N-1) or a range A..B with A < B (seeds A to B-1)",
            )),
        }
    }

    /// Run each seed twice and compare the logs (`DISTZERO_CHECK_DETERMINISM`).
    pub fn check_determinism(&self) -> Result<bool> {
        flag(self, "DISTZERO_CHECK_DETERMINISM")
    }

    /// Simulation reorders messages per pair (`DISTZERO_REORDER`).
    pub fn reorder(&self) -> Result<bool> {
        flag(self, "DISTZERO_REORDER")
    }

    /// Swarm testing for every nemesis that does not say (`DISTZERO_SWARM`).
    pub fn swarm(&self) -> Result<bool> {
        flag(self, "DISTZERO_SWARM")
    }

    /// Fault schedules replacing the drawn ones (`DISTZERO_SCHEDULE`): JSON,
    /// or the path of a file holding it.
    pub fn schedules(&self) -> Result<Option<Vec<crate::nemesis::Schedule>>> {
        let Some(v) = self.opt("DISTZERO_SCHEDULE") else {
            return Ok(None);
        };
        let v = v.trim();
        let json = if v.starts_with('[') {
            v.to_string()
        } else {
            std::fs::read_to_string(v).map_err(|e| {
                Error::Setting(format!(
                    "DISTZERO_SCHEDULE: `{v}` is neither schedules in JSON (starting with `[`) nor a file that can be read: {e}"
                ))
            })?
        };
        crate::nemesis::schedules_from_json(&json, "DISTZERO_SCHEDULE").map(Some)
    }

    /// Probability that simulation delivers a message twice (`DISTZERO_DUPLICATE`).
    pub fn duplicate(&self) -> Result<f64> {
        probability(self, "DISTZERO_DUPLICATE")
    }

    /// The link of every simulated pair a test does not set:
    /// `DISTZERO_LATENCY` and `DISTZERO_LOSS`.
    pub fn default_link(&self) -> Result<Link> {
        let v = self.raw("DISTZERO_LATENCY");
        let latency = parse_latency(v).ok_or_else(|| {
            bad(
                "DISTZERO_LATENCY",
                v,
                "a duration such as 0, 250us, 1ms or 1.5s, or a uniform range min..max such as 500us..1500us (min <= max; units ns, us, ms, s)",
            )
        })?;
        Ok(Link {
            latency,
            loss: probability(self, "DISTZERO_LOSS")?,
        })
    }

    /// In a real mode (`mode`: its name), refuse the [`SIMULATION_ONLY`]
    /// settings not at their default: one line naming the first such
    /// variable and why.
    pub fn refuse_simulation_only(&self, mode: &str) -> Result<()> {
        for name in SIMULATION_ONLY {
            let default = VARS.iter().find(|v| v.name == *name).map(|v| v.default);
            let value = self.raw(name);
            if Some(value) != default {
                return Err(Error::Setting(format!(
                    "{name}={value:?} is simulation-only and {mode} mode cannot honour it: unset it, or run only the simulated tests (cargo test simulated)"
                )));
            }
        }
        Ok(())
    }

    pub fn agent_bin(&self) -> Option<PathBuf> {
        self.opt("DISTZERO_AGENT_BIN").map(PathBuf::from)
    }

    /// The launch arguments of a test binary started as an agent (by a real
    /// mode, through the hidden test of `workflow_tests!`): the value of
    /// `DISTZERO_AGENT_ARGS` in this process's environment, split at
    /// [`AGENT_ARGS_SEP`]; `None` in a normal test run.
    pub fn agent_args_from_environment() -> Option<Vec<String>> {
        let v = std::env::var("DISTZERO_AGENT_ARGS").ok()?;
        if v.is_empty() {
            return None;
        }
        Some(v.split(AGENT_ARGS_SEP).map(String::from).collect())
    }

    pub fn agent_orphan(&self) -> Result<Duration> {
        let v = self.raw("DISTZERO_AGENT_ORPHAN_SECS");
        match v.parse::<u64>() {
            Ok(s) if s > 0 => Ok(Duration::from_secs(s)),
            _ => Err(bad(
                "DISTZERO_AGENT_ORPHAN_SECS",
                v,
                "a whole number of seconds, at least 1",
            )),
        }
    }

    pub fn docker_host(&self) -> &str {
        self.raw("DISTZERO_DOCKER_HOST")
    }

    /// The first three octets of a virtual run's /24, if pinned.
    pub fn docker_subnet(&self) -> Result<Option<[u8; 3]>> {
        let Some(v) = self.opt("DISTZERO_DOCKER_SUBNET") else {
            return Ok(None);
        };
        let parts: Vec<_> = v.split('.').map(str::parse::<u8>).collect();
        match parts.as_slice() {
            [Ok(a), Ok(b), Ok(c)] => Ok(Some([*a, *b, *c])),
            _ => Err(bad(
                "DISTZERO_DOCKER_SUBNET",
                v,
                "three octets such as 172.29.7",
            )),
        }
    }

    /// Cloud inventory: (user, host, port) per host.
    pub fn cloud_hosts(&self) -> Result<Vec<(String, String, u16)>> {
        let default_user = self.raw("DISTZERO_CLOUD_USER").to_string();
        let mut out = Vec::new();
        for item in self
            .raw("DISTZERO_CLOUD_HOSTS")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (user, rest) = match item.split_once('@') {
                Some((u, r)) => (u.to_string(), r),
                None if default_user.is_empty() => {
                    return Err(bad(
                        "DISTZERO_CLOUD_USER",
                        "",
                        &format!("an SSH user name for the hosts that name none (such as {item} in DISTZERO_CLOUD_HOSTS); or write user@host there"),
                    ))
                }
                None => (default_user.clone(), item),
            };
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
                        bad(
                            "DISTZERO_CLOUD_HOSTS",
                            item,
                            "comma-separated [user@]host[:port] with a port from 1 to 65535",
                        )
                    })?,
                ),
                None => (rest.to_string(), 22),
            };
            if host.is_empty() || user.is_empty() {
                return Err(bad(
                    "DISTZERO_CLOUD_HOSTS",
                    item,
                    "comma-separated [user@]host[:port]",
                ));
            }
            out.push((user, host, port));
        }
        Ok(out)
    }

    pub fn cloud_ssh_key(&self) -> Option<PathBuf> {
        self.opt("DISTZERO_CLOUD_SSH_KEY").map(PathBuf::from)
    }

    /// The address cloud agents listen on (`DISTZERO_CLOUD_BIND`); None =
    /// the host's own address.
    pub fn cloud_bind(&self) -> Result<Option<std::net::IpAddr>> {
        match self.opt("DISTZERO_CLOUD_BIND") {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                bad(
                    "DISTZERO_CLOUD_BIND",
                    v,
                    "an IP address such as 0.0.0.0 or 10.0.0.5, or unset for the host's own address",
                )
            }),
        }
    }

    /// Where cloud machines come from (`DISTZERO_CLOUD_PROVIDER`): `ssh` or `ec2`.
    pub fn cloud_provider(&self) -> Result<&str> {
        match self.raw("DISTZERO_CLOUD_PROVIDER") {
            v @ ("ssh" | "ec2") => Ok(v),
            v => Err(bad(
                "DISTZERO_CLOUD_PROVIDER",
                v,
                "ssh (the hosts of DISTZERO_CLOUD_HOSTS) or ec2 (instances launched per run)",
            )),
        }
    }

    /// `DISTZERO_EC2_ADDRESS`: true = private, false = public.
    pub fn ec2_address_is_private(&self) -> Result<bool> {
        match self.raw("DISTZERO_EC2_ADDRESS") {
            "public" => Ok(false),
            "private" => Ok(true),
            v => Err(bad("DISTZERO_EC2_ADDRESS", v, "public or private")),
        }
    }

    /// `DISTZERO_EC2_MAX_INSTANCES`, 1 to 1000.
    pub fn ec2_max_instances(&self) -> Result<usize> {
        let v = self.raw("DISTZERO_EC2_MAX_INSTANCES");
        v.parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                bad(
                    "DISTZERO_EC2_MAX_INSTANCES",
                    v,
                    "a whole number of instances from 1 to 1000",
                )
            })
    }

    /// `DISTZERO_EC2_BOOT_TIMEOUT`, 1 to 3600 seconds.
    pub fn ec2_boot_timeout(&self) -> Result<Duration> {
        let v = self.raw("DISTZERO_EC2_BOOT_TIMEOUT");
        v.parse::<u64>()
            .ok()
            .filter(|n| (1..=3600).contains(n))
            .map(Duration::from_secs)
            .ok_or_else(|| {
                bad(
                    "DISTZERO_EC2_BOOT_TIMEOUT",
                    v,
                    "whole seconds from 1 to 3600",
                )
            })
    }

    pub fn cloud_dir(&self) -> &str {
        self.raw("DISTZERO_CLOUD_DIR")
    }

    /// The shard of a sweep this process runs, `(i, n)`: only the seeds
    /// with `seed % n == i`. `DISTZERO_SHARD=i/n`; when unset, in a pod of
    /// a Kubernetes Indexed Job, `JOB_COMPLETION_INDEX` of
    /// `DISTZERO_SHARDS` (the Job's completions); None = every seed. One
    /// of the last two without the other is an error saying what to set.
    pub fn shard(&self) -> Result<Option<(u64, u64)>> {
        let shards = match self.opt("DISTZERO_SHARDS") {
            None => None,
            Some(v) => Some(v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                bad(
                    "DISTZERO_SHARDS",
                    v,
                    "a positive whole number, the completions of the Indexed Job",
                )
            })?),
        };
        if let Some(v) = self.opt("DISTZERO_SHARD") {
            let parsed = v.split_once('/').and_then(|(i, n)| {
                let (i, n) = (i.trim().parse::<u64>().ok()?, n.trim().parse::<u64>().ok()?);
                (i < n).then_some((i, n))
            });
            return parsed.map(Some).ok_or_else(|| {
                bad(
                    "DISTZERO_SHARD",
                    v,
                    "i/n with 0 <= i < n, such as 3/10 (the seeds with seed % n == i)",
                )
            });
        }
        let index = match self.opt("JOB_COMPLETION_INDEX") {
            None => None,
            Some(v) => Some((
                v,
                v.parse::<u64>().map_err(|_| {
                    bad(
                        "JOB_COMPLETION_INDEX",
                        v,
                        "a whole number, the index Kubernetes gives each pod of an Indexed Job",
                    )
                })?,
            )),
        };
        match (index, shards) {
            (None, None) => Ok(None),
            (Some((v, i)), Some(n)) if i >= n => Err(bad(
                "JOB_COMPLETION_INDEX",
                v,
                &format!("a whole number below DISTZERO_SHARDS={n}: set DISTZERO_SHARDS to the Job's completions"),
            )),
            (Some((_, i)), Some(n)) => Ok(Some((i, n))),
            (Some((v, _)), None) => Err(Error::Setting(format!(
                "JOB_COMPLETION_INDEX={v:?} is set (this is a pod of a Kubernetes Indexed Job) but DISTZERO_SHARDS is not: set DISTZERO_SHARDS to the Job's completions so that this pod runs shard {v} of them, or set DISTZERO_SHARD=i/n (which wins)"
            ))),
            (None, Some(n)) => Err(Error::Setting(format!(
                "DISTZERO_SHARDS=\"{n}\" is set but JOB_COMPLETION_INDEX is not: Kubernetes sets it in each pod of an Indexed Job (completionMode: Indexed); elsewhere unset DISTZERO_SHARDS and set DISTZERO_SHARD=i/n"
            ))),
        }
    }

    /// A sweep runs every seed rather than stop at the first failure
    /// (`DISTZERO_KEEP_GOING`).
    pub fn keep_going(&self) -> Result<bool> {
        flag(self, "DISTZERO_KEEP_GOING")
    }

    /// Runs a sweep may spend shrinking its first failure's schedule
    /// (`DISTZERO_SHRINK`; 0 = none).
    pub fn shrink_budget(&self) -> Result<usize> {
        let v = self.raw("DISTZERO_SHRINK");
        v.parse::<usize>().map_err(|_| {
            bad(
                "DISTZERO_SHRINK",
                v,
                "a whole number of runs (0 = no shrinking)",
            )
        })
    }

    /// A progress bar of a sweep on stderr (`DISTZERO_PROGRESS`).
    pub fn progress(&self) -> Result<bool> {
        flag(self, "DISTZERO_PROGRESS")
    }

    pub fn sweep_jobs(&self) -> Result<usize> {
        let v = self.raw("DISTZERO_SWEEP_JOBS");
        v.parse::<usize>().map_err(|_| {
            bad(
                "DISTZERO_SWEEP_JOBS",
                v,
                "a whole number (0 = one per core)",
            )
        })
    }

    /// Most events one simulated run may handle (a sweep's budget per seed).
    pub fn max_events(&self) -> Result<u64> {
        let v = self.raw("DISTZERO_MAX_EVENTS");
        v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            bad(
                "DISTZERO_MAX_EVENTS",
                v,
                "a positive whole number of events",
            )
        })
    }

    /// Wall time one seed of a sweep (or its replay) may take.
    pub fn sweep_seed_timeout(&self) -> Result<Duration> {
        let v = self.raw("DISTZERO_SWEEP_SEED_TIMEOUT");
        v.parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                bad(
                    "DISTZERO_SWEEP_SEED_TIMEOUT",
                    v,
                    "a positive number of seconds, such as 60 or 0.5",
                )
            })
    }
}

fn flag(s: &Settings, var: &str) -> Result<bool> {
    match s.raw(var) {
        "0" | "false" => Ok(false),
        "1" | "true" => Ok(true),
        v => Err(bad(var, v, "0 or 1 (or false, true)")),
    }
}

fn probability(s: &Settings, var: &str) -> Result<f64> {
    let v = s.raw(var);
    match v.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(bad(var, v, "a probability from 0.0 to 1.0")),
    }
}

/// `0`, or a number and a unit (ns, us, ms, s): `250us`, `1.5ms`.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    if v == "0" {
        return Some(Duration::ZERO);
    }
    let at = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = v.split_at(at);
    let unit_ns = match unit {
        "ns" => 1.0,
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    let ns = number.trim().parse::<f64>().ok()? * unit_ns;
    (ns.is_finite() && (0.0..1e18).contains(&ns)).then(|| Duration::from_nanos(ns.round() as u64))
}

/// A duration (fixed latency) or `min..max` (uniform, min <= max).
fn parse_latency(v: &str) -> Option<Latency> {
    match v.split_once("..") {
        Some((a, b)) => {
            let (min, max) = (parse_duration(a)?, parse_duration(b)?);
            (min <= max).then_some(Latency::Uniform { min, max })
        }
        None => parse_duration(v).map(Latency::Fixed),
    }
}

fn find_env_file(start: &Path) -> Option<PathBuf> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(".env");
        if candidate.is_file() {
            return Some(candidate);
        }
        // Stop at the workspace root (the folder with .git or a [workspace]).
        if d.join(".git").exists() {
            return None;
        }
        dir = d.parent();
    }
    None
}

/// Parse `KEY=value` lines; `#` comments and blank lines are skipped; values
/// may be quoted.
pub fn parse_env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    parse_env_text(&text, &path.display().to_string())
}

pub fn parse_env_text(text: &str, origin: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(Error::Setting(format!(
                "{origin}:{}: `{line}` is not KEY=value; fix or remove that line",
                i + 1
            )));
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
            .unwrap_or(v);
        out.insert(k.trim().to_string(), v.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_precedence() {
        let s = Settings::defaults();
        assert_eq!(s.seed().unwrap(), SeedChoice::FromTestName);
        assert_eq!(s.log_dir(), PathBuf::from(".tmp"));
        let s = Settings::from_sources(
            &env(&[("DISTZERO_SEED", "9")]),
            &env(&[("DISTZERO_SEED", "3")]),
            None,
        )
        .unwrap();
        assert_eq!(s.seed().unwrap(), SeedChoice::Fixed(9));
        let s =
            Settings::from_sources(&env(&[]), &env(&[("DISTZERO_SEED", "random")]), None).unwrap();
        assert_eq!(s.seed().unwrap(), SeedChoice::Random);
    }

    #[test]
    fn bad_values_name_the_variable_and_what_it_accepts() {
        let e =
            Settings::from_sources(&env(&[("DISTZERO_SEED", "abc")]), &env(&[]), None).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("DISTZERO_SEED") && msg.contains("unsigned"),
            "{msg}"
        );
        let e = Settings::from_sources(&env(&[("DISTZERO_LOG_LEVEL", "loud")]), &env(&[]), None)
            .unwrap_err();
        assert!(
            matches!(e, Error::Setting(_))
                && e.to_string().starts_with("DISTZERO_LOG_LEVEL=\"loud\"")
                && e.to_string().contains("off, error, warn"),
            "{e}"
        );
        let e = Settings::from_sources(
            &env(&[("DISTZERO_CLOUD_HOSTS", "a:99999")]),
            &env(&[]),
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("DISTZERO_CLOUD_HOSTS=\"a:99999\"")
                && e.to_string().contains("a port from 1 to 65535"),
            "{e}"
        );
        let e = Settings::from_sources(
            &env(&[("DISTZERO_CLOUD_BIND", "anywhere")]),
            &env(&[]),
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("DISTZERO_CLOUD_BIND=\"anywhere\"")
                && e.to_string().contains("an IP address"),
            "{e}"
        );
        for weak in ["hunter2", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"] {
            let e = Settings::from_sources(&env(&[("DISTZERO_COOKIE", weak)]), &env(&[]), None)
                .unwrap_err();
            assert!(
                e.to_string().starts_with("DISTZERO_COOKIE is too weak")
                    && e.to_string().contains("at least 32"),
                "{e}"
            );
        }
        let strong = "9f86d081884c7d659a2feaa0c55ad015";
        let s =
            Settings::from_sources(&env(&[("DISTZERO_COOKIE", strong)]), &env(&[]), None).unwrap();
        assert_eq!(s.cookie().unwrap(), Some(strong));
        let e =
            Settings::from_sources(&env(&[]), &env(&[("DISTZERO_SEEED", "1")]), None).unwrap_err();
        assert!(
            e.to_string().starts_with("DISTZERO_SEEED in ")
                && e.to_string()
                    .contains("is not a distzero setting; the known ones are in .env.template"),
            "{e}"
        );
        // An unwritable log folder is a settings error, named.
        let file = std::env::temp_dir().join(format!("distzero-not-a-dir-{}", std::process::id()));
        std::fs::write(&file, b"").unwrap();
        let s = Settings::from_sources(
            &env(&[("DISTZERO_LOG_DIR", &file.join("logs").display().to_string())]),
            &env(&[]),
            None,
        )
        .unwrap();
        let e = s.writable_log_dir().unwrap_err().to_string();
        assert!(
            e.starts_with("DISTZERO_LOG_DIR=") && e.contains("cannot be written"),
            "{e}"
        );
        let _ = std::fs::remove_file(file);
        // Misspelled in the environment too, with a hint.
        let e =
            Settings::from_sources(&env(&[("DISTZERO_SEEED", "1")]), &env(&[]), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "DISTZERO_SEEED in the environment is not a distzero setting (did you mean DISTZERO_SEED?); the known ones are in .env.template"
        );
        let e = Settings::from_sources(&env(&[("DISTZERO_WHATEVER_ELSE", "1")]), &env(&[]), None)
            .unwrap_err();
        assert!(!e.to_string().contains("did you mean"), "{e}");
        // An empty cloud user is blamed, not the hosts; port 0 is no port.
        let e = Settings::from_sources(
            &env(&[("DISTZERO_CLOUD_HOSTS", "h1"), ("DISTZERO_CLOUD_USER", "")]),
            &env(&[]),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("DISTZERO_CLOUD_USER=\"\""), "{e}");
        let e = Settings::from_sources(&env(&[("DISTZERO_CLOUD_HOSTS", "h1:0")]), &env(&[]), None)
            .unwrap_err();
        assert!(e.to_string().contains("a port from 1 to 65535"), "{e}");
        // Every validated variable: a bad value is refused in one line that
        // names the variable, the value and what it accepts.
        for (var, value, accepts) in [
            (
                "DISTZERO_MAX_EVENTS",
                "0",
                "a positive whole number of events",
            ),
            (
                "DISTZERO_MAX_EVENTS",
                "many",
                "a positive whole number of events",
            ),
            (
                "DISTZERO_SWEEP_SEED_TIMEOUT",
                "0",
                "a positive number of seconds",
            ),
            (
                "DISTZERO_SWEEP_SEED_TIMEOUT",
                "-1",
                "a positive number of seconds",
            ),
            (
                "DISTZERO_SWEEP_SEED_TIMEOUT",
                "1m",
                "a positive number of seconds",
            ),
            ("DISTZERO_BUGGIFY", "2", "a probability from 0.0 to 1.0"),
            ("DISTZERO_LOSS", "0.5%", "a probability from 0.0 to 1.0"),
            (
                "DISTZERO_DUPLICATE",
                "-0.1",
                "a probability from 0.0 to 1.0",
            ),
            ("DISTZERO_REORDER", "yes", "0 or 1 (or false, true)"),
            ("DISTZERO_CHECK_DETERMINISM", "2", "0 or 1 (or false, true)"),
            (
                "DISTZERO_LATENCY",
                "fast",
                "a duration such as 0, 250us, 1ms or 1.5s",
            ),
            (
                "DISTZERO_LATENCY",
                "5",
                "a duration such as 0, 250us, 1ms or 1.5s",
            ),
            (
                "DISTZERO_LATENCY",
                "2ms..1ms",
                "a duration such as 0, 250us, 1ms or 1.5s",
            ),
            (
                "DISTZERO_LATENCY",
                "1ms..",
                "a duration such as 0, 250us, 1ms or 1.5s",
            ),
            ("DISTZERO_SEEDS", "0", "a positive number of seeds N"),
            ("DISTZERO_SEEDS", "9..3", "a positive number of seeds N"),
            ("DISTZERO_SEEDS", "many", "a positive number of seeds N"),
            ("DISTZERO_BUGGIFY", "often", "a probability from 0.0 to 1.0"),
            (
                "DISTZERO_AGENT_ORPHAN_SECS",
                "0",
                "a whole number of seconds, at least 1",
            ),
            ("DISTZERO_SHARD", "4/4", "i/n with 0 <= i < n"),
            ("DISTZERO_SHARD", "1/0", "i/n with 0 <= i < n"),
            ("DISTZERO_SHARD", "3", "i/n with 0 <= i < n"),
            ("DISTZERO_SHARD", "-1/4", "i/n with 0 <= i < n"),
            ("DISTZERO_SHARDS", "0", "a positive whole number"),
            ("DISTZERO_SHARDS", "ten", "a positive whole number"),
            ("JOB_COMPLETION_INDEX", "first", "a whole number"),
            ("DISTZERO_KEEP_GOING", "yes", "0 or 1 (or false, true)"),
            ("DISTZERO_PROGRESS", "2", "0 or 1 (or false, true)"),
            (
                "DISTZERO_SHRINK",
                "-1",
                "a whole number of runs (0 = no shrinking)",
            ),
            (
                "DISTZERO_SHRINK",
                "lots",
                "a whole number of runs (0 = no shrinking)",
            ),
            (
                "DISTZERO_SWEEP_JOBS",
                "-1",
                "a whole number (0 = one per core)",
            ),
            (
                "DISTZERO_DOCKER_SUBNET",
                "172.29",
                "three octets such as 172.29.7",
            ),
            (
                "DISTZERO_DOCKER_SUBNET",
                "172.29.300",
                "three octets such as 172.29.7",
            ),
            (
                "DISTZERO_CLOUD_HOSTS",
                "@h",
                "comma-separated [user@]host[:port]",
            ),
        ] {
            let e = Settings::from_sources(&env(&[(var, value)]), &env(&[]), None).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!(
                    "{var}={value:?} is not valid: {var} accepts {accepts}"
                )) && !msg.contains('\n'),
                "{var}={value}: {msg}"
            );
            // The same from .env, and through `set`.
            let e = Settings::from_sources(&env(&[]), &env(&[(var, value)]), None).unwrap_err();
            assert!(e.to_string().starts_with(&format!("{var}=")), "{e}");
            let mut s = Settings::defaults();
            let e = s.set(var, value);
            assert!(
                e.unwrap_err().to_string().starts_with(&format!("{var}=")),
                "set({var}, {value})"
            );
            // A refused value is not kept: the settings stay valid.
            assert_eq!(
                s.raw(var),
                VARS.iter().find(|v| v.name == var).unwrap().default,
                "set({var}, {value}) was refused but kept"
            );
            s.set("DISTZERO_SEED", "5").unwrap();
        }
        let e = Settings::defaults()
            .set("DISTZERO_NOPE", "1")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "DISTZERO_NOPE is not a distzero setting");
    }

    #[test]
    fn budgets_parse() {
        let s = Settings::defaults();
        assert_eq!(s.max_events().unwrap(), 1_000_000_000);
        assert_eq!(s.sweep_seed_timeout().unwrap(), Duration::from_secs(60));
        let s = Settings::from_sources(
            &env(&[
                ("DISTZERO_MAX_EVENTS", "5000"),
                ("DISTZERO_SWEEP_SEED_TIMEOUT", "0.25"),
            ]),
            &env(&[]),
            None,
        )
        .unwrap();
        assert_eq!(s.max_events().unwrap(), 5000);
        assert_eq!(s.sweep_seed_timeout().unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn hostility_and_seeds_parse() {
        let s = Settings::defaults();
        assert_eq!(s.default_link().unwrap(), Link::default());
        assert_eq!((s.reorder().unwrap(), s.duplicate().unwrap()), (false, 0.0));
        assert_eq!(s.seeds().unwrap(), None);
        assert!(!s.check_determinism().unwrap());
        let s = Settings::from_sources(
            &env(&[
                ("DISTZERO_LATENCY", "1.5ms"),
                ("DISTZERO_LOSS", "0.01"),
                ("DISTZERO_REORDER", "1"),
                ("DISTZERO_DUPLICATE", "0.05"),
                ("DISTZERO_SEEDS", "500"),
                ("DISTZERO_CHECK_DETERMINISM", "true"),
            ]),
            &env(&[]),
            None,
        )
        .unwrap();
        assert_eq!(
            s.default_link().unwrap(),
            Link::fixed(Duration::from_micros(1500)).with_loss(0.01)
        );
        assert_eq!((s.reorder().unwrap(), s.duplicate().unwrap()), (true, 0.05));
        assert_eq!(s.seeds().unwrap(), Some(0..500));
        assert!(s.check_determinism().unwrap());
        let s = Settings::from_sources(
            &env(&[
                ("DISTZERO_LATENCY", "0..2s"),
                ("DISTZERO_SEEDS", "1000..1500"),
            ]),
            &env(&[]),
            None,
        )
        .unwrap();
        assert_eq!(
            s.default_link().unwrap().latency,
            Latency::Uniform {
                min: Duration::ZERO,
                max: Duration::from_secs(2)
            }
        );
        assert_eq!(s.seeds().unwrap(), Some(1000..1500));
        assert_eq!(parse_duration("250ns"), Some(Duration::from_nanos(250)));
        assert_eq!(parse_duration("1 ms"), Some(Duration::from_millis(1)));
        assert_eq!(parse_duration("1m"), None);
    }

    #[test]
    fn sweep_options_parse() {
        let s = Settings::defaults();
        assert_eq!(s.shard().unwrap(), None);
        assert!(!s.keep_going().unwrap() && !s.progress().unwrap());
        assert_eq!(s.shrink_budget().unwrap(), 300);
        let s = Settings::from_sources(
            &env(&[
                ("DISTZERO_SHARD", "3/10"),
                ("DISTZERO_KEEP_GOING", "1"),
                ("DISTZERO_SHRINK", "0"),
                ("DISTZERO_PROGRESS", "true"),
            ]),
            &env(&[]),
            None,
        )
        .unwrap();
        assert_eq!(s.shard().unwrap(), Some((3, 10)));
        assert!(s.keep_going().unwrap() && s.progress().unwrap());
        assert_eq!(s.shrink_budget().unwrap(), 0);
    }

    /// What each pod of a Kubernetes Indexed Job sees: its index in
    /// JOB_COMPLETION_INDEX, and the count the manifest sets.
    #[test]
    fn an_indexed_job_pod_gets_its_shard() {
        let shard = |pairs: &[(&str, &str)]| {
            Settings::from_sources(&env(pairs), &env(&[]), None).map(|s| s.shard().unwrap())
        };
        assert_eq!(
            shard(&[("JOB_COMPLETION_INDEX", "3"), ("DISTZERO_SHARDS", "10")]).unwrap(),
            Some((3, 10))
        );
        assert_eq!(
            shard(&[("JOB_COMPLETION_INDEX", "0"), ("DISTZERO_SHARDS", "1")]).unwrap(),
            Some((0, 1))
        );
        // DISTZERO_SHARD wins over the Job's index.
        assert_eq!(
            shard(&[
                ("JOB_COMPLETION_INDEX", "3"),
                ("DISTZERO_SHARDS", "10"),
                ("DISTZERO_SHARD", "1/2"),
            ])
            .unwrap(),
            Some((1, 2))
        );
        assert_eq!(
            shard(&[("JOB_COMPLETION_INDEX", "7"), ("DISTZERO_SHARD", "0/1")]).unwrap(),
            Some((0, 1)),
            "DISTZERO_SHARD needs no DISTZERO_SHARDS"
        );
        // The index without the count: say what to set.
        let e = shard(&[("JOB_COMPLETION_INDEX", "3")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("JOB_COMPLETION_INDEX=\"3\" is set")
                && e.contains("set DISTZERO_SHARDS to the Job's completions")
                && !e.contains('\n'),
            "{e}"
        );
        // The count without the index (not in a Job's pod).
        let e = shard(&[("DISTZERO_SHARDS", "10")]).unwrap_err().to_string();
        assert!(
            e.starts_with("DISTZERO_SHARDS=\"10\" is set but JOB_COMPLETION_INDEX is not")
                && e.contains("DISTZERO_SHARD=i/n"),
            "{e}"
        );
        // An index past the count.
        let e = shard(&[("JOB_COMPLETION_INDEX", "10"), ("DISTZERO_SHARDS", "10")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("JOB_COMPLETION_INDEX=\"10\" is not valid: JOB_COMPLETION_INDEX accepts a whole number below DISTZERO_SHARDS=10"),
            "{e}"
        );
        // A bad count names the count, even beside a good index.
        let e = shard(&[("JOB_COMPLETION_INDEX", "1"), ("DISTZERO_SHARDS", "0")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("DISTZERO_SHARDS=\"0\" is not valid"), "{e}");
    }

    #[test]
    fn real_modes_refuse_simulation_only_settings() {
        Settings::defaults()
            .refuse_simulation_only("loopback")
            .unwrap();
        // Written out at their defaults they are no change.
        let s = Settings::from_sources(
            &env(&[
                ("DISTZERO_BUGGIFY", "0.05"),
                ("DISTZERO_LATENCY", "500us..1500us"),
            ]),
            &env(&[]),
            None,
        )
        .unwrap();
        s.refuse_simulation_only("loopback").unwrap();
        for (var, value) in [
            ("DISTZERO_REORDER", "1"),
            ("DISTZERO_DUPLICATE", "0.1"),
            ("DISTZERO_LATENCY", "1ms"),
            ("DISTZERO_LOSS", "0.01"),
            ("DISTZERO_BUGGIFY", "0.2"),
            ("DISTZERO_SEEDS", "50"),
            ("DISTZERO_CHECK_DETERMINISM", "1"),
        ] {
            let s = Settings::from_sources(&env(&[(var, value)]), &env(&[]), None).unwrap();
            let e = s.refuse_simulation_only("virtual").unwrap_err().to_string();
            assert_eq!(
                e,
                format!("{var}={value:?} is simulation-only and virtual mode cannot honour it: unset it, or run only the simulated tests (cargo test simulated)")
            );
        }
    }

    #[test]
    fn env_file_syntax() {
        let m = parse_env_text("# c\n\nexport A=1\nB=\"two\"\nC='3'\n", "x").unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two");
        assert_eq!(m["C"], "3");
        let e = parse_env_text("oops", ".env").unwrap_err();
        assert!(e.to_string().contains(".env:1"), "{e}");
    }

    #[test]
    fn inventory_hosts_parse() {
        let s = Settings::from_sources(
            &env(&[("DISTZERO_CLOUD_HOSTS", "a, bob@b:2222")]),
            &env(&[]),
            None,
        )
        .unwrap();
        assert_eq!(
            s.cloud_hosts().unwrap(),
            vec![
                ("root".into(), "a".into(), 22),
                ("bob".into(), "b".into(), 2222)
            ]
        );
    }

    #[test]
    fn template_lists_every_variable_with_its_default() {
        let text = include_str!("../../.env.template");
        let vals = parse_env_text(text, ".env.template").unwrap();
        for v in VARS {
            assert_eq!(
                vals.get(v.name).map(String::as_str),
                Some(v.default),
                "{} in .env.template",
                v.name
            );
        }
        assert_eq!(
            vals.len(),
            VARS.len(),
            ".env.template lists a variable that VARS does not know"
        );
    }
}
