//! The Docker provider with the real agent (`distzero-agent`, built
//! statically, or DISTZERO_AGENT_BIN) under `distzero::remote::RemoteCluster`.
//! Every test name holds `virtual`: they run with `cargo test virtual`.

use distzero::provider::{AgentLaunch, MachineAddrs, Provider};
use distzero::remote::{new_run_id, run_log_dir, RemoteCluster};
use distzero::wire::{dial_handshake, Role};
use distzero::{Cluster, MachineId, Mode, NodeId, Result, Settings};
use distzero_examples::pingpong::{PingConfig, PingMsg, KIND};
use distzero_virtual::{DockerProvider, Engine};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A provider the test keeps a handle on while the cluster owns it, so the
/// test can apply provider-level faults (real packet drops alone, without
/// the agents' own filter).
#[derive(Clone)]
struct Shared(Arc<Mutex<DockerProvider>>);

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, DockerProvider> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Provider for Shared {
    fn mode(&self) -> Mode {
        Mode::Virtual
    }
    fn start(&mut self, l: &AgentLaunch) -> Result<MachineAddrs> {
        self.lock().start(l)
    }
    fn kill(&mut self, m: MachineId) -> Result<()> {
        self.lock().kill(m)
    }
    fn restart(&mut self, l: &AgentLaunch) -> Result<MachineAddrs> {
        self.lock().restart(l)
    }
    fn pause(&mut self, m: MachineId) -> Result<()> {
        self.lock().pause(m)
    }
    fn resume(&mut self, m: MachineId) -> Result<()> {
        self.lock().resume(m)
    }
    fn cut(&mut self, a: MachineId, b: MachineId) -> Result<bool> {
        self.lock().cut(a, b)
    }
    fn heal(&mut self, a: MachineId, b: MachineId) -> Result<()> {
        self.lock().heal(a, b)
    }
    fn collect_logs(&mut self, dir: &Path) -> Result<()> {
        self.lock().collect_logs(dir)
    }
    fn shutdown(&mut self) -> Result<()> {
        self.lock().shutdown()
    }
}

fn cluster(test: &str) -> (RemoteCluster, Shared, String) {
    let settings = Settings::load().unwrap();
    let run = new_run_id();
    let dir = run_log_dir(&settings, test, Mode::Virtual, &run);
    let shared = Shared(Arc::new(Mutex::new(
        DockerProvider::for_run(&settings, &run).unwrap(),
    )));
    let c = RemoteCluster::with_run(Box::new(shared.clone()), test, &run, &dir, &settings).unwrap();
    (c, shared, run)
}

fn assert_run_gone(run: &str) {
    let engine = Engine::connect(&Settings::load().unwrap()).unwrap();
    let c = engine.containers(Some(run)).unwrap();
    let n = engine.networks(Some(run)).unwrap();
    assert!(
        c.is_empty() && n.is_empty(),
        "run {run} left {} containers and {} networks",
        c.len(),
        n.len()
    );
}

fn pongs(c: &mut dyn Cluster, n: NodeId) -> Result<u64> {
    match c.call(n, &PingMsg::Stats, Duration::from_secs(3))? {
        PingMsg::StatsReply(s) => Ok(s.pongs),
        other => panic!("unexpected reply {other:?}"),
    }
}

#[test]
fn virtual_agent_refuses_a_wrong_cookie() {
    let (mut cl, _shared, run) = cluster("virtual_agent_refuses_a_wrong_cookie");
    let c: &mut dyn Cluster = &mut cl;
    let m = c.add_machine().unwrap();
    let addr = cl.addrs(m).unwrap().control;
    let cookie = cl.cookie().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for role in [Role::Controller, Role::Peer(MachineId(7))] {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let e = dial_handshake(&mut s, b"not-the-cookie", &run, role)
                .await
                .unwrap_err();
            assert!(e.is_auth(), "{role:?} with a wrong cookie: {e}");
        }
        // No cookie at all.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(dial_handshake(&mut s, b"", &run, Role::Peer(MachineId(7)))
            .await
            .unwrap_err()
            .is_auth());
        // The right cookie is accepted, and the agent names its machine.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let who = dial_handshake(&mut s, cookie.as_bytes(), &run, Role::Peer(MachineId(7)))
            .await
            .unwrap();
        assert_eq!(who, m);
    });
    // The cookie is nowhere in what Docker shows of the container (its
    // configuration, arguments, environment): it came on stdin.
    let shown = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label=distzero.run={run}")])
        .output()
        .unwrap();
    let ids = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(!ids.trim().is_empty(), "the run's container is listed");
    for id in ids.split_whitespace() {
        let inspect = std::process::Command::new("docker")
            .args(["inspect", id])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&inspect.stdout);
        assert!(text.contains("OpenStdin"), "{text}");
        assert!(
            !text.contains(&cookie),
            "the cookie shows in docker inspect"
        );
        assert!(!text.contains("DISTZERO_COOKIE"), "{text}");
    }
    cl.shutdown().unwrap();
    drop(cl);
    assert_run_gone(&run);
}

#[test]
fn virtual_real_cut_stalls_the_link_and_it_recovers_after_heal() {
    let (mut cl, shared, run) =
        cluster("virtual_real_cut_stalls_the_link_and_it_recovers_after_heal");
    let res = (|| -> Result<()> {
        let c: &mut dyn Cluster = &mut cl;
        let [a, b] = c.add_machines::<2>()?;
        let pb = c.spawn_node(b, KIND, PingConfig::default())?;
        let pa = c.spawn_node(
            a,
            KIND,
            PingConfig {
                peers: vec![pb],
                every_ms: 50,
                rounds: 0,
            },
        )?;
        c.run_until(Duration::from_secs(10), |c| Ok(pongs(c, pa)? >= 5))?;
        // Real drops only: the agents' own filter knows nothing of this cut.
        assert!(shared.lock().cut(a, b)?, "this host allows real drops");
        assert!(shared.lock().cut(b, a)?);
        c.run_for(Duration::from_millis(500))?;
        let before = pongs(c, pa)?; // the controller still reaches both machines
        c.run_for(Duration::from_secs(3))?;
        let after = pongs(c, pa)?;
        assert!(
            after <= before + 1,
            "pongs went on through a real cut: {before} -> {after}"
        );
        shared.lock().heal(a, b)?;
        shared.lock().heal(b, a)?;
        let t = Instant::now();
        c.run_until(Duration::from_secs(30), |c| Ok(pongs(c, pa)? >= after + 5))?;
        eprintln!("link recovered {:?} after heal", t.elapsed());
        Ok(())
    })();
    let shut = cl.shutdown();
    drop(cl);
    res.unwrap();
    shut.unwrap();
    assert_run_gone(&run);
}

#[test]
fn virtual_cluster_crash_restart_keeps_the_address_and_logs_land_in_the_run_folder() {
    let (mut cl, _shared, run) = cluster("virtual_cluster_crash_restart_keeps_the_address");
    let c: &mut dyn Cluster = &mut cl;
    let [a, b] = c.add_machines::<2>().unwrap();
    let pb = c.spawn_node(b, KIND, PingConfig::default()).unwrap();
    let pa = c
        .spawn_node(
            a,
            KIND,
            PingConfig {
                peers: vec![pb],
                every_ms: 50,
                rounds: 0,
            },
        )
        .unwrap();
    c.run_until(Duration::from_secs(10), |c| Ok(pongs(c, pa)? >= 3))
        .unwrap();
    let before = cl.addrs(b).unwrap();
    let c: &mut dyn Cluster = &mut cl;
    c.crash(b).unwrap();
    let e = pongs(c, pb);
    assert!(
        matches!(&e, Err(e) if e.is_timeout()),
        "a crashed machine does not answer: the call times out, got {e:?}"
    );
    c.restart(b).unwrap();
    assert_eq!(cl.addrs(b).unwrap(), before);
    let c: &mut dyn Cluster = &mut cl;
    c.run_until(Duration::from_secs(15), |c| Ok(pongs(c, pb).is_ok()))
        .unwrap();
    let dir = c.log_dir().to_path_buf();
    cl.shutdown().unwrap();
    drop(cl);
    assert_run_gone(&run);
    for f in ["m0.jsonl", "m1.jsonl", "m0.log", "m1.log"] {
        let p = dir.join(f);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(!text.is_empty(), "{} is empty", p.display());
    }
    assert!(dir.ends_with(format!("virtual-{run}")), "{}", dir.display());
}
