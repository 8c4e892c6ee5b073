//! Cloud mode against real hosts over SSH: deploy and its rollback, faults
//! on real processes and packets, logs, the sweep of dead runs.
//!
//! They need hosts (`DISTZERO_CLOUD_HOSTS`, at least 2); here the local
//! stand-in makes them:
//!
//!     sudo scripts/cloud-standin.sh run 6 -- cargo test -p distzero-cloud
//!
//! Every test name contains `cloud`, so CI (`--skip cloud`) leaves them out.

use distzero::provider::Provider;
use distzero::remote::{new_run_id, run_log_dir, RemoteCluster};
use distzero::{secs, Cluster, Error, MachineId, Mode, NodeId, Settings};
use distzero_cloud::inventory::NO_HOSTS_HELP;
use distzero_cloud::provider::{ctl, hostctl_path, ssh_from_settings, sweep_host};
use distzero_cloud::ssh::{Ssh, COMMAND_TIMEOUT};
use distzero_cloud::{Host, SshProvider, StaticInventory};
use distzero_examples::pingpong::{PingConfig, PingMsg, PingStats, KIND as PINGPONG};
use std::path::PathBuf;
use std::time::Duration;

const CALL: Duration = Duration::from_secs(1);

/// The settings, with at least two hosts or a panic saying how to get them.
fn settings() -> Settings {
    let s = Settings::load().expect("settings");
    let hosts = s.cloud_hosts().expect("DISTZERO_CLOUD_HOSTS");
    assert!(
        hosts.len() >= 2,
        "these tests need 2 cloud hosts or more; {NO_HOSTS_HELP}"
    );
    s
}

fn hosts(s: &Settings) -> Vec<Host> {
    StaticInventory::from_settings(s).unwrap().hosts().to_vec()
}

/// A cluster over an SshProvider on `inventory`, plus what the test needs to
/// look at the hosts itself.
struct Run {
    cluster: RemoteCluster,
    run_id: String,
    log_dir: PathBuf,
    ssh: Ssh,
    dir: String,
}

fn start(test: &str, inventory: Vec<Host>) -> Run {
    let s = settings();
    let run_id = new_run_id();
    let log_dir = run_log_dir(&s, test, Mode::Cloud, &run_id);
    let inv = StaticInventory::new(inventory).unwrap();
    let provider = SshProvider::with_inventory(Box::new(inv), &s, &run_id, &log_dir)
        .unwrap_or_else(|e| panic!("cloud provider: {e}"));
    let cluster = RemoteCluster::with_run(
        Box::new(provider) as Box<dyn Provider>,
        test,
        &run_id,
        &log_dir,
        &s,
    )
    .unwrap_or_else(|e| panic!("cluster: {e}"));
    Run {
        cluster,
        ssh: ssh_from_settings(&s, &log_dir).unwrap(),
        dir: s.cloud_dir().trim_end_matches('/').to_string(),
        run_id,
        log_dir,
    }
}

impl Run {
    fn c(&mut self) -> &mut dyn Cluster {
        &mut self.cluster
    }

    fn ctl(&self, host: &Host, args: &[&str]) -> String {
        let out = ctl(&self.ssh, &hostctl_path(&self.dir), host, args, b"")
            .unwrap_or_else(|e| panic!("hostctl {args:?} on {host}: {e}"));
        assert_eq!(out.code, 0, "hostctl {args:?} on {host}: {}", out.text());
        out.stdout
    }

    /// Live agents of this run on `host`: (machine folder, pid).
    fn agents(&self, host: &Host) -> Vec<(String, u32)> {
        self.ctl(host, &["agents", &self.dir, &self.run_id])
            .lines()
            .filter_map(|l| {
                let (m, p) = l.split_once(' ')?;
                Some((m.to_string(), p.trim().parse().ok()?))
            })
            .collect()
    }

    fn sh(&self, host: &Host, line: &str) -> String {
        let out = self
            .ssh
            .run(host, line, b"", COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("`{line}` on {host}: {e}"));
        out.stdout
    }

    /// Processes on `host` whose command line names this run (pgrep).
    fn pgrep(&self, host: &Host) -> String {
        self.sh(
            host,
            &format!(
                "pgrep -f -a -- '[d]istzero-agent.* --run-id {} ' || true",
                self.run_id
            ),
        )
        .trim()
        .to_string()
    }

    fn pid_of(&self, host: &Host, m: MachineId) -> Option<u32> {
        self.agents(host)
            .into_iter()
            .find(|(f, _)| *f == m.to_string())
            .map(|(_, p)| p)
    }

    fn state_of(&self, host: &Host, pid: u32) -> String {
        self.sh(
            host,
            &format!("sed 's/.*) //' /proc/{pid}/stat | cut -d' ' -f1"),
        )
        .trim()
        .to_string()
    }
}

fn stats(c: &mut dyn Cluster, node: NodeId) -> distzero::Result<PingStats> {
    match c.call::<PingMsg, PingMsg>(node, &PingMsg::Stats, CALL)? {
        PingMsg::StatsReply(s) => Ok(s),
        other => panic!("{node} answered {other:?} to Stats"),
    }
}

fn pinger(peers: Vec<NodeId>, every_ms: u64) -> PingConfig {
    PingConfig {
        peers,
        every_ms,
        rounds: 0,
    }
}

#[test]
fn cloud_deploy_with_an_unreachable_host_fails_cleanly_and_leaves_nothing() {
    let s = settings();
    let good = hosts(&s);
    // An address on no host of the stand-in's /24 (or of a real network).
    let bogus = Host {
        user: good[0].user.clone(),
        addr: "10.214.0.250".into(),
        port: 22,
    };
    let mut run = start(
        "cloud_deploy_unreachable",
        vec![good[0].clone(), good[1].clone(), bogus.clone()],
    );
    let err = run
        .c()
        .add_machines::<3>()
        .expect_err("the third host does not exist: the deploy must fail");
    let msg = err.to_string();
    assert!(matches!(err, Error::Infra(_)), "{err:?}");
    assert!(
        msg.contains(&bogus.to_string()),
        "the error names the host: {msg}"
    );
    assert!(msg.contains("m2"), "the error names the machine: {msg}");
    assert!(
        msg.contains("unreachable"),
        "the error names the cause: {msg}"
    );
    // Rolled back at once: nothing of this run runs on the good hosts.
    for h in &good[..2] {
        assert_eq!(
            run.agents(h),
            vec![],
            "agents left on {h} after the rollback"
        );
        assert_eq!(run.pgrep(h), "", "processes of the run left on {h}");
    }
    run.cluster
        .shutdown()
        .expect("shutdown after a rolled-back deploy");
    for h in &good[..2] {
        assert_eq!(run.pgrep(h), "", "processes of the run left on {h}");
        let left = run.sh(
            h,
            &format!("test -e {}/{} && echo left || true", run.dir, run.run_id),
        );
        assert_eq!(left.trim(), "", "the run's folder is left on {h}");
    }
}

#[test]
fn cloud_deploy_with_a_refused_key_names_the_cause() {
    let s = settings();
    let good = hosts(&s);
    let wrong_user = Host {
        user: "nobody-distzero".into(),
        ..good[1].clone()
    };
    let mut run = start(
        "cloud_deploy_auth",
        vec![good[0].clone(), wrong_user.clone()],
    );
    let msg = run.c().add_machines::<2>().unwrap_err().to_string();
    assert!(msg.contains(&wrong_user.to_string()), "{msg}");
    assert!(msg.contains("authentication refused"), "{msg}");
    assert_eq!(run.agents(&good[0]), vec![], "m0 was not rolled back");
    run.cluster.shutdown().unwrap();
}

#[test]
fn cloud_crash_restart_and_pause_act_on_the_real_process() {
    let s = settings();
    let hs = hosts(&s);
    let mut run = start("cloud_faults", hs[..2].to_vec());
    let [a, b] = run.c().add_machines().unwrap();
    let hb = hs[1].clone();
    let pong = run
        .c()
        .spawn_node(b, PINGPONG, PingConfig::default())
        .unwrap();
    let ping = run
        .c()
        .spawn_node(a, PINGPONG, pinger(vec![pong], 50))
        .unwrap();
    run.c()
        .run_until(secs(10), |c| Ok(stats(c, ping)?.pongs >= 3))
        .unwrap();

    // crash = SIGKILL of the agent process
    let before = run.pid_of(&hb, b).expect("m1 runs");
    run.c().crash(b).unwrap();
    assert_eq!(run.pid_of(&hb, b), None, "m1's agent survived the crash");
    let e = run
        .c()
        .call::<PingMsg, PingMsg>(pong, &PingMsg::Stats, CALL);
    assert!(
        matches!(&e, Err(e) if e.is_timeout()),
        "a crashed machine answered, or failed otherwise than by a timeout: {e:?}"
    );

    // restart = a new process, same folder: its disk is kept
    run.c().restart(b).unwrap();
    let after = run.pid_of(&hb, b).expect("m1 runs again");
    assert_ne!(before, after);
    let boots = run.sh(&hb, &format!("cat {}/{}/m1/data/boot", run.dir, run.run_id));
    assert_eq!(
        boots.trim(),
        "2",
        "the disk was not kept across the restart"
    );
    let p0 = stats(run.c(), ping).unwrap().pongs;
    run.c()
        .run_until(secs(10), |c| Ok(stats(c, ping)?.pongs >= p0 + 3))
        .unwrap();

    // pause = SIGSTOP: the process is stopped and answers nothing
    run.c().pause(b).unwrap();
    assert_eq!(run.state_of(&hb, after), "T", "m1's agent is not stopped");
    let e = run
        .c()
        .call::<PingMsg, PingMsg>(pong, &PingMsg::Stats, CALL);
    assert!(
        matches!(&e, Err(e) if e.is_timeout()),
        "a paused machine answered, or failed otherwise than by a timeout: {e:?}"
    );
    run.c().resume(b).unwrap();
    assert_ne!(run.state_of(&hb, after), "T");
    run.c()
        .run_until(secs(10), |c| Ok(stats(c, pong).is_ok()))
        .unwrap();
    run.cluster.shutdown().unwrap();
    assert_eq!(run.pgrep(&hb), "", "processes of the run left on {hb}");
}

#[test]
fn cloud_cut_drops_real_packets_and_heal_removes_exactly_its_rules() {
    let s = settings();
    let hs = hosts(&s);
    let mut run = start("cloud_cut", hs[..2].to_vec());
    let [a, b] = run.c().add_machines().unwrap();
    let hb = hs[1].clone();
    let pong = run
        .c()
        .spawn_node(b, PINGPONG, PingConfig::default())
        .unwrap();
    let ping = run
        .c()
        .spawn_node(a, PINGPONG, pinger(vec![pong], 20))
        .unwrap();
    run.c()
        .run_until(secs(10), |c| Ok(stats(c, ping)?.pongs >= 3))
        .unwrap();
    let tag = format!("distzero-{}", run.run_id);
    run.c().cut(a, b).unwrap();
    let rules = run.sh(
        &hb,
        &format!("iptables -w -S INPUT | grep -- '{tag}' || true"),
    );
    assert_eq!(rules.lines().count(), 1, "one DROP rule on {hb}: {rules}");
    let p0 = stats(run.c(), ping).unwrap().pongs;
    run.c().run_for(secs(1)).unwrap();
    let p1 = stats(run.c(), ping).unwrap().pongs;
    assert!(p1 <= p0 + 1, "pongs went on through a cut: {p0} -> {p1}");
    // The agent's own filter also stops m0 from sending to m1, so prove the
    // packet filter with a fresh connection from m0's host to m1's port:
    // its SYNs meet silence (dropped, not refused) and the rule counts them.
    let to = run.cluster.addrs(b).unwrap().peer;
    let probe = format!(
        "timeout 3 bash -c 'exec 3<>/dev/tcp/{}/{}' 2>/dev/null && echo connected || echo silent",
        to.ip(),
        to.port()
    );
    let ha = hs[0].clone();
    assert_eq!(
        run.sh(&ha, &probe).trim(),
        "silent",
        "a connection crossed the cut"
    );
    let dropped: u64 = run
        .ctl(&hb, &["dropped", &run.run_id])
        .trim()
        .parse()
        .unwrap();
    assert!(dropped > 0, "the cut dropped no real packet");
    run.c().heal(a, b).unwrap();
    let rules = run.sh(
        &hb,
        &format!("iptables -w -S INPUT | grep -- '{tag}' || true"),
    );
    assert_eq!(rules.trim(), "", "heal left rules: {rules}");
    assert_eq!(
        run.sh(&ha, &probe).trim(),
        "connected",
        "healed, a connection must pass"
    );
    run.c()
        .run_until(secs(15), |c| Ok(stats(c, ping)?.pongs >= p1 + 3))
        .unwrap();
    // A cut left in place is removed at shutdown.
    run.c().cut(a, b).unwrap();
    run.cluster.shutdown().unwrap();
    let rules = run.sh(
        &hb,
        &format!("iptables -w -S INPUT | grep -- '{tag}' || true"),
    );
    assert_eq!(rules.trim(), "", "shutdown left rules: {rules}");
}

#[test]
fn cloud_logs_are_pulled_back_and_the_hosts_are_clean() {
    let s = settings();
    let hs = hosts(&s);
    let mut run = start("cloud_logs", hs[..2].to_vec());
    let [a, b] = run.c().add_machines().unwrap();
    let pong = run
        .c()
        .spawn_node(b, PINGPONG, PingConfig::default())
        .unwrap();
    run.c()
        .spawn_node(a, PINGPONG, pinger(vec![pong], 50))
        .unwrap();
    run.c().run_for(Duration::from_millis(500)).unwrap();
    run.c().crash(a).unwrap();
    run.c().restart(a).unwrap();
    run.cluster.shutdown().unwrap();
    let expect = run
        .log_dir
        .ends_with(format!("cloud_logs/cloud-{}", run.run_id));
    assert!(expect, "log folder {}", run.log_dir.display());
    for f in [
        "controller.jsonl",
        "m0.jsonl",
        "m0.log",
        "m0.boot1.jsonl",
        "m0.stderr",
        "m1.jsonl",
        "m1.log",
    ] {
        let p = run.log_dir.join(f);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{} missing or empty", p.display());
    }
    let m1 = std::fs::read_to_string(run.log_dir.join("m1.jsonl")).unwrap();
    assert!(m1.contains("\"machine\""), "m1.jsonl has no machine field");
    for h in &hs[..2] {
        let left = run.sh(
            h,
            &format!("test -e {}/{} && echo left || true", run.dir, run.run_id),
        );
        assert_eq!(left.trim(), "", "the run's folder is left on {h}");
    }
}

#[test]
fn cloud_sweep_kills_the_agents_of_a_dead_run() {
    let s = settings();
    let hs = hosts(&s);
    let mut run = start("cloud_sweep", hs[..1].to_vec());
    let [a] = run.c().add_machines().unwrap();
    // Frozen, it would outlive its controller (no orphan rule runs).
    run.c().pause(a).unwrap();
    let h = hs[0].clone();
    assert_eq!(run.agents(&h).len(), 1);
    // Its controller "dies": the record names a process that is gone.
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    run.sh(
        &h,
        &format!(
            "echo '{} 4194303 1 gone' > {}/{}/controller",
            boot.trim(),
            run.dir,
            run.run_id
        ),
    );
    let swept = sweep_host(&run.ssh, &hostctl_path(&run.dir), &run.dir, &h).unwrap();
    assert!(swept.contains(&run.run_id), "not swept: {swept:?}");
    assert_eq!(run.agents(&h), vec![]);
    assert_eq!(run.pgrep(&h), "", "the frozen agent survived the sweep");
    // Live runs are left alone: a second sweep finds nothing of ours.
    let again = sweep_host(&run.ssh, &hostctl_path(&run.dir), &run.dir, &h).unwrap();
    assert!(!again.contains(&run.run_id));
    let _ = run.cluster.shutdown();
}

#[test]
fn cloud_machines_outnumbering_hosts_share_them() {
    let s = settings();
    let hs = hosts(&s);
    let mut run = start("cloud_shared", hs[..1].to_vec());
    let [a, b, d] = run.c().add_machines().unwrap();
    let pong = run
        .c()
        .spawn_node(d, PINGPONG, PingConfig::default())
        .unwrap();
    let p1 = run
        .c()
        .spawn_node(a, PINGPONG, pinger(vec![pong], 50))
        .unwrap();
    let p2 = run
        .c()
        .spawn_node(b, PINGPONG, pinger(vec![pong], 50))
        .unwrap();
    run.c()
        .run_until(secs(10), |c| {
            Ok(stats(c, p1)?.pongs >= 3 && stats(c, p2)?.pongs >= 3)
        })
        .unwrap();
    assert_eq!(run.agents(&hs[0]).len(), 3);
    // A cut between machines of one address is left to the agents' filter.
    run.c().cut(a, d).unwrap();
    let n = stats(run.c(), p1).unwrap().pongs;
    run.c().run_for(secs(1)).unwrap();
    assert!(stats(run.c(), p1).unwrap().pongs <= n + 1);
    run.cluster.shutdown().unwrap();
    assert_eq!(run.pgrep(&hs[0]), "");
}

/// A static stand-in agent that fails at start, as a broken agent would.
fn exiting_agent() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let src = dir.join("exiting_agent.rs");
    let bin = dir.join("exiting-agent");
    if !bin.exists() {
        std::fs::write(
            &src,
            "fn main() { eprintln!(\"distzero-agent: cannot open the data disk (planted failure)\"); std::process::exit(2); }\n",
        )
        .unwrap();
        let out = std::process::Command::new("rustc")
            .args([
                "--edition",
                "2021",
                "-C",
                "target-feature=+crt-static",
                "--target",
            ])
            .arg(distzero::artifact::static_target())
            .arg("-o")
            .arg(&bin)
            .arg(&src)
            .output()
            .expect("running rustc");
        assert!(
            out.status.success(),
            "building the exiting agent: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    bin
}

#[test]
fn cloud_agent_that_exits_at_start_is_reported_with_its_log() {
    let mut s = settings();
    s.set("DISTZERO_AGENT_BIN", exiting_agent().display().to_string())
        .unwrap();
    let hs = hosts(&s);
    let run_id = new_run_id();
    let test = "cloud_agent_exits";
    let log_dir = run_log_dir(&s, test, Mode::Cloud, &run_id);
    let inv = StaticInventory::new(hs[..1].to_vec()).unwrap();
    let provider = SshProvider::with_inventory(Box::new(inv), &s, &run_id, &log_dir).unwrap();
    let mut c = RemoteCluster::with_run(Box::new(provider), test, &run_id, &log_dir, &s).unwrap();
    let msg = c.add_machine().unwrap_err().to_string();
    assert!(msg.contains(&hs[0].to_string()), "names the host: {msg}");
    assert!(msg.contains("agent exited"), "names the cause: {msg}");
    assert!(
        msg.contains("planted failure"),
        "carries the tail of the agent's log: {msg}"
    );
    c.shutdown().unwrap();
}
