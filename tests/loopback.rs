//! The real path without Docker: agents as threads on 127.0.0.1, driven by
//! the RemoteCluster over the real wire protocol. Quick enough for CI.

use distzero::agent::{run_agent, AgentConfig, Exit, StopHandle};
use distzero::loopback::{run_loopback_workflow, AgentCommand, LoopbackProvider, ProcessProvider};
use distzero::remote::{new_run_id, run_log_dir, RemoteCluster};
use distzero::wire::{self, PeerFrame, Role};
use distzero::{
    millis, secs, Cluster, Context, Error, Link, MachineId, Mode, Node, NodeId, Registry, Result,
    Settings,
};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Msg {
    Ping(u64),
    Pong(u64),
    /// Send `Seq(first..first + count)` to `to`.
    Burst {
        to: NodeId,
        first: u64,
        count: u64,
    },
    Seq(u64),
    Seen,
    SeenList(Vec<u64>),
    Boots,
    BootCount(u64),
    /// The node panics: its agent dies without a crash from the test.
    Die,
}

/// Answers pings, sends bursts, remembers what it received (in memory) and
/// counts its starts (on disk).
struct Probe {
    seen: Vec<u64>,
}

impl Node for Probe {
    type Msg = Msg;

    fn on_start(&mut self, ctx: &mut Context<'_, Msg>) {
        let boots: u64 = ctx.disk().get("boots").ok().flatten().unwrap_or(0);
        ctx.disk()
            .put_synced("boots", &(boots + 1))
            .expect("disk write");
        tracing::info!(boots = boots + 1, "probe started");
    }

    fn on_message(&mut self, ctx: &mut Context<'_, Msg>, from: NodeId, msg: Msg) {
        match msg {
            Msg::Ping(n) => ctx.send(from, Msg::Pong(n)),
            Msg::Burst { to, first, count } => {
                for i in first..first + count {
                    ctx.send(to, Msg::Seq(i));
                }
            }
            Msg::Seq(i) => self.seen.push(i),
            Msg::Seen => ctx.send(from, Msg::SeenList(self.seen.clone())),
            Msg::Boots => {
                let b: u64 = ctx.disk().get("boots").ok().flatten().unwrap_or(0);
                ctx.send(from, Msg::BootCount(b))
            }
            Msg::Die => panic!("told to die (expected in loopback_agent_that_dies_on_its_own)"),
            Msg::Pong(_) | Msg::SeenList(_) | Msg::BootCount(_) => {}
        }
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("probe", |_: ()| Probe { seen: Vec::new() });
    r
}

const COOKIE: &str = "loopback-test-cookie-0123456789abcdef";

fn settings() -> Settings {
    let mut s = Settings::load().expect("settings");
    s.set("DISTZERO_COOKIE", COOKIE).unwrap();
    s.set("DISTZERO_AGENT_ORPHAN_SECS", "5").unwrap();
    s
}

fn cluster(test: &str) -> RemoteCluster {
    let s = settings();
    let run_id = new_run_id();
    let dir = run_log_dir(&s, test, Mode::Loopback, &run_id);
    let p = LoopbackProvider::new(registry(), &dir, &s).unwrap();
    RemoteCluster::with_run(Box::new(p), test, &run_id, &dir, &s).unwrap()
}

fn seen(c: &mut dyn Cluster, n: NodeId) -> Result<Vec<u64>> {
    match c.call(n, &Msg::Seen, secs(2))? {
        Msg::SeenList(v) => Ok(v),
        other => panic!("unexpected {other:?}"),
    }
}

fn two_probes(c: &mut dyn Cluster) -> Result<(NodeId, NodeId)> {
    let [m0, m1] = c.add_machines()?;
    let a = c.spawn_node(m0, "probe", ())?;
    let b = c.spawn_node(m1, "probe", ())?;
    Ok((a, b))
}

fn ping_body(c: &mut dyn Cluster) -> Result<()> {
    let (a, b) = two_probes(c)?;
    assert_eq!(c.call::<_, Msg>(a, &Msg::Ping(7), secs(2))?, Msg::Pong(7));
    assert_eq!(c.call::<_, Msg>(b, &Msg::Ping(8), secs(2))?, Msg::Pong(8));
    assert_eq!(c.mode(), Mode::Loopback);
    Ok(())
}

#[test]
fn loopback_ping_through_the_cluster() {
    run_loopback_workflow("loopback_ping_through_the_cluster", registry(), ping_body);
}

fn failing_body(c: &mut dyn Cluster) -> Result<()> {
    let (a, _) = two_probes(c)?;
    c.crash(a.machine)?;
    c.call::<_, Msg>(a, &Msg::Ping(1), millis(100))?;
    Ok(())
}

#[test]
fn loopback_failing_workflow_names_test_mode_error_and_logs() {
    let err = std::panic::catch_unwind(|| {
        run_loopback_workflow("loopback_failing_workflow", registry(), failing_body);
    })
    .expect_err("the workflow must fail");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("loopback_failing_workflow"), "{msg}");
    assert!(msg.contains("loopback mode"), "{msg}");
    assert!(msg.contains("no reply within"), "{msg}");
    assert!(msg.contains("logs: "), "{msg}");
}

#[test]
fn loopback_order_per_pair_with_jittery_latency() {
    let mut c = cluster("loopback_order_per_pair");
    let c: &mut dyn Cluster = &mut c;
    let (a, b) = two_probes(c).unwrap();
    c.set_link(
        a.machine,
        b.machine,
        Link {
            latency: distzero::Latency::Uniform {
                min: millis(0),
                max: millis(5),
            },
            loss: 0.0,
        },
    )
    .unwrap();
    c.send(
        a,
        &Msg::Burst {
            to: b,
            first: 0,
            count: 300,
        },
    )
    .unwrap();
    c.run_until(secs(5), |c| Ok(seen(c, b)?.len() >= 300))
        .unwrap();
    assert_eq!(seen(c, b).unwrap(), (0..300).collect::<Vec<_>>());
    c.shutdown().unwrap();
}

#[test]
fn loopback_call_to_a_crashed_machine_times_out() {
    let mut c = cluster("loopback_crashed_call");
    let c: &mut dyn Cluster = &mut c;
    let (_, b) = two_probes(c).unwrap();
    c.crash(b.machine).unwrap();
    let t = Instant::now();
    let e = c.call::<_, Msg>(b, &Msg::Ping(1), millis(300)).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(t.elapsed() >= millis(300));
    // Unknown nodes and machines are errors, not timeouts.
    assert!(matches!(
        c.call::<_, Msg>(NodeId::new(b.machine, 5), &Msg::Ping(1), millis(10)),
        Err(Error::NoSuchNode(_))
    ));
    assert!(matches!(
        c.crash(MachineId(9)),
        Err(Error::NoSuchMachine(_))
    ));
}

#[test]
fn loopback_restart_respawns_from_specs_and_the_disk_survives() {
    let mut c = cluster("loopback_restart");
    let c: &mut dyn Cluster = &mut c;
    let (a, b) = two_probes(c).unwrap();
    c.send(
        a,
        &Msg::Burst {
            to: b,
            first: 0,
            count: 3,
        },
    )
    .unwrap();
    c.run_until(secs(2), |c| Ok(seen(c, b)?.len() == 3))
        .unwrap();
    assert_eq!(
        c.call::<_, Msg>(b, &Msg::Boots, secs(2)).unwrap(),
        Msg::BootCount(1)
    );

    c.crash(b.machine).unwrap();
    c.restart(b.machine).unwrap();
    // Started again from its spec: memory gone, disk kept.
    assert_eq!(
        c.call::<_, Msg>(b, &Msg::Boots, secs(2)).unwrap(),
        Msg::BootCount(2)
    );
    assert_eq!(seen(c, b).unwrap(), Vec::<u64>::new());
    // Its peer reaches it again (the old link broke; a new one is dialed).
    c.run_until(secs(5), |c| {
        c.send(
            a,
            &Msg::Burst {
                to: b,
                first: 10,
                count: 1,
            },
        )?;
        c.run_for(millis(50))?;
        Ok(!seen(c, b)?.is_empty())
    })
    .unwrap();
    assert!(seen(c, b).unwrap().iter().all(|&x| x == 10));
    // The previous boot's log is kept.
    assert!(c.log_dir().join("m1.boot1.jsonl").exists());
    c.shutdown().unwrap();
}

#[test]
fn loopback_cut_drops_heal_restores_hold_queues() {
    let mut c = cluster("loopback_cut_heal");
    let c: &mut dyn Cluster = &mut c;
    let (a, b) = two_probes(c).unwrap();
    c.cut(a.machine, b.machine).unwrap();
    c.send(
        a,
        &Msg::Burst {
            to: b,
            first: 0,
            count: 10,
        },
    )
    .unwrap();
    c.run_for(millis(300)).unwrap();
    assert_eq!(seen(c, b).unwrap(), Vec::<u64>::new(), "a cut link drops");
    // The other direction is not cut.
    c.send(
        b,
        &Msg::Burst {
            to: a,
            first: 0,
            count: 2,
        },
    )
    .unwrap();
    c.run_until(secs(2), |c| Ok(seen(c, a)?.len() == 2))
        .unwrap();

    c.heal(a.machine, b.machine).unwrap();
    c.send(
        a,
        &Msg::Burst {
            to: b,
            first: 10,
            count: 10,
        },
    )
    .unwrap();
    c.run_until(secs(2), |c| Ok(seen(c, b)?.len() == 10))
        .unwrap();
    assert_eq!(seen(c, b).unwrap(), (10..20).collect::<Vec<_>>());

    c.hold(a.machine, b.machine).unwrap();
    c.send(
        a,
        &Msg::Burst {
            to: b,
            first: 20,
            count: 5,
        },
    )
    .unwrap();
    c.run_for(millis(300)).unwrap();
    assert_eq!(seen(c, b).unwrap().len(), 10, "held messages wait");
    c.release(a.machine, b.machine).unwrap();
    c.run_until(secs(2), |c| Ok(seen(c, b)?.len() == 15))
        .unwrap();
    assert_eq!(seen(c, b).unwrap(), (10..25).collect::<Vec<_>>());

    c.set_link(a.machine, b.machine, Link::fixed(millis(0)).with_loss(1.0))
        .unwrap();
    c.send(
        a,
        &Msg::Burst {
            to: b,
            first: 100,
            count: 5,
        },
    )
    .unwrap();
    c.run_for(millis(200)).unwrap();
    assert_eq!(seen(c, b).unwrap().len(), 15, "loss 1.0 loses everything");
    c.shutdown().unwrap();
}

#[test]
fn loopback_pause_delays_and_resume_delivers() {
    let mut c = cluster("loopback_pause");
    let c: &mut dyn Cluster = &mut c;
    let (a, b) = two_probes(c).unwrap();
    c.pause(b.machine).unwrap();
    c.send(
        a,
        &Msg::Burst {
            to: b,
            first: 0,
            count: 5,
        },
    )
    .unwrap();
    let e = c.call::<_, Msg>(b, &Msg::Ping(1), millis(300)).unwrap_err();
    assert!(e.is_timeout(), "a paused machine does not answer: {e}");
    // Commands to a paused machine apply when it resumes.
    c.cut(b.machine, a.machine).unwrap();
    c.resume(b.machine).unwrap();
    c.run_until(secs(3), |c| Ok(seen(c, b)?.len() == 5))
        .unwrap();
    assert_eq!(seen(c, b).unwrap(), (0..5).collect::<Vec<_>>());
    c.send(
        b,
        &Msg::Burst {
            to: a,
            first: 0,
            count: 3,
        },
    )
    .unwrap();
    c.run_for(millis(200)).unwrap();
    assert!(
        seen(c, a).unwrap().is_empty(),
        "the cut sent while paused is in force"
    );
    c.shutdown().unwrap();
}

#[test]
fn loopback_unknown_kind_is_reported_clearly() {
    let mut c = cluster("loopback_unknown_kind");
    let c: &mut dyn Cluster = &mut c;
    let [m] = c.add_machines().unwrap();
    let e = c.spawn_node(m, "no-such-kind", ()).unwrap_err().to_string();
    assert!(
        e.contains("no-such-kind") && e.contains("probe") && e.contains("m0"),
        "{e}"
    );
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Whether the agent closes a raw connection within `within`.
fn closed_by_agent(s: &mut std::net::TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // e.g. a Refused frame before the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn loopback_wrong_cookie_is_refused_and_the_agent_keeps_serving() {
    let mut rc = cluster("loopback_wrong_cookie");
    let (a, _) = two_probes(&mut rc).unwrap();
    let addr = rc.addrs(a.machine).unwrap().control;
    let run = rc.run_id().to_string();
    let rt = rt();
    for role in [Role::Controller, Role::Peer(MachineId(1))] {
        let e = rt
            .block_on(async {
                let mut s = tokio::net::TcpStream::connect(addr).await?;
                wire::dial_handshake(&mut s, b"not-the-cookie", &run, role)
                    .await
                    .map_err(std::io::Error::other)
            })
            .unwrap_err();
        assert!(e.to_string().contains("cookie"), "{e}");
    }
    // The right cookie passes.
    let ok = rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        wire::dial_handshake(&mut s, COOKIE.as_bytes(), &run, Role::Peer(MachineId(1))).await
    });
    assert_eq!(ok.unwrap(), a.machine);
    let c: &mut dyn Cluster = &mut rc;
    assert_eq!(
        c.call::<_, Msg>(a, &Msg::Ping(3), secs(2)).unwrap(),
        Msg::Pong(3)
    );
    c.run_for(millis(300)).unwrap(); // the agent flushes its log
    let log = std::fs::read_to_string(c.log_dir().join("m0.jsonl")).unwrap();
    assert!(
        log.contains("refused a connection"),
        "the refusal is logged"
    );
}

#[test]
fn loopback_malformed_frames_close_only_that_connection() {
    let mut rc = cluster("loopback_malformed");
    let (a, b) = two_probes(&mut rc).unwrap();
    let addr = rc.addrs(a.machine).unwrap().control;
    let run = rc.run_id().to_string();

    // Garbage instead of a hello.
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(&[0x00, 0x00, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff])
        .unwrap();
    assert!(closed_by_agent(&mut s, secs(3)), "garbage hello closes");
    // An oversized length.
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert!(closed_by_agent(&mut s, secs(3)), "oversized frame closes");

    // After a good handshake, as a peer: a malformed frame, an oversized one,
    // and a message it may not send (spoofing another machine).
    let rt = rt();
    for bad in [
        vec![0, 0, 0, 3, 0xff, 0xff, 0xff],
        (MAX_PLUS_ONE).to_be_bytes().to_vec(),
        spoofed(a),
    ] {
        let mut s = rt
            .block_on(async {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                wire::dial_handshake(&mut s, COOKIE.as_bytes(), &run, Role::Peer(MachineId(1)))
                    .await
                    .unwrap();
                s.into_std()
            })
            .unwrap();
        s.set_nonblocking(false).unwrap();
        s.write_all(&bad).unwrap();
        assert!(
            closed_by_agent(&mut s, secs(3)),
            "bad frame after the handshake closes"
        );
    }

    let c: &mut dyn Cluster = &mut rc;
    assert_eq!(
        c.call::<_, Msg>(a, &Msg::Ping(4), secs(2)).unwrap(),
        Msg::Pong(4)
    );
    c.send(
        b,
        &Msg::Burst {
            to: a,
            first: 0,
            count: 4,
        },
    )
    .unwrap();
    c.run_until(secs(2), |c| Ok(seen(c, a)?.len() == 4))
        .unwrap();
}

const MAX_PLUS_ONE: u32 = wire::MAX_FRAME as u32 + 1;

/// A peer frame claiming to come from a machine other than the dialer's.
fn spoofed(to: NodeId) -> Vec<u8> {
    let mut out = Vec::new();
    let f = PeerFrame::Msg {
        from: NodeId::new(MachineId(7), 0),
        to,
        stamp: distzero::net::Stamp(0),
        id: 0,
        bytes: vec![],
    };
    wire::encode_frame(&f, &mut out).unwrap();
    out
}

fn lone_agent(
    test: &str,
    orphan_secs: u64,
) -> (
    std::net::SocketAddr,
    std::thread::JoinHandle<distzero::Result<Exit>>,
) {
    let s = settings();
    let dir = run_log_dir(&s, test, Mode::Loopback, &new_run_id());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = AgentConfig {
        machine: MachineId(0),
        run_id: "lone".into(),
        cookie: COOKIE.into(),
        seed: 1,
        listen: addr,
        listener: Some(listener),
        epoch_micros: 0,
        orphan: Duration::from_secs(orphan_secs),
        log_dir: dir.clone(),
        data_dir: dir.join("data"),
        log_level: Some(tracing::Level::INFO),
        log_messages: true,
        handle_signals: false,
    };
    let t = std::thread::spawn(move || run_agent(cfg, registry(), StopHandle::new()));
    (addr, t)
}

fn wait_end<T>(t: &std::thread::JoinHandle<T>, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if t.is_finished() {
            return true;
        }
        std::thread::sleep(millis(10));
    }
    false
}

#[test]
fn loopback_agent_without_controller_exits_after_orphan_secs() {
    let start = Instant::now();
    let (_, t) = lone_agent("loopback_orphan_at_start", 1);
    assert!(
        wait_end(&t, secs(3)),
        "an agent that never had a controller exits"
    );
    assert!(start.elapsed() >= millis(900), "not before the orphan time");
    assert_eq!(t.join().unwrap().unwrap(), Exit::Orphaned);
}

#[test]
fn loopback_agent_exits_when_its_controller_goes() {
    let (addr, t) = lone_agent("loopback_orphan_later", 1);
    let rt = rt();
    rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        wire::dial_handshake(&mut s, COOKIE.as_bytes(), "lone", Role::Controller)
            .await
            .unwrap();
        // A live controller keeps it alive past the orphan time.
        for _ in 0..6 {
            wire::write_frame(&mut s, &wire::ToAgent::Ping)
                .await
                .unwrap();
            tokio::time::sleep(millis(250)).await;
        }
        assert!(!t.is_finished(), "alive while its controller is");
        drop(s);
    });
    let gone = Instant::now();
    assert!(wait_end(&t, secs(3)), "exits once the controller is gone");
    assert!(gone.elapsed() >= millis(800));
    assert_eq!(t.join().unwrap().unwrap(), Exit::Orphaned);
}

#[test]
fn loopback_shutdown_leaves_nothing_listening() {
    let mut rc = cluster("loopback_shutdown");
    let (a, _) = two_probes(&mut rc).unwrap();
    let addr = rc.addrs(a.machine).unwrap().control;
    let dir = rc.log_dir().to_path_buf();
    rc.shutdown().unwrap();
    rc.shutdown().unwrap(); // idempotent
    assert_refused(addr, "agent still listening");
    let ctl = std::fs::read_to_string(dir.join("controller.jsonl")).unwrap();
    assert!(ctl.contains("shut down"), "controller log written");
    assert!(dir.join("m0.jsonl").exists() && dir.join("m1.log").exists());
}

/// Nothing listens at `addr` any more: a connection is refused (not merely
/// slow, which would also be an error).
fn assert_refused(addr: std::net::SocketAddr, what: &str) {
    match std::net::TcpStream::connect_timeout(&addr, millis(500)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
        Err(e) => panic!("{what}? connecting to {addr} failed otherwise: {e}"),
        Ok(_) => panic!("{what}: {addr} accepted a connection"),
    }
}

/// Set when this test binary is started as an agent process.
const AGENT_ARGS_VAR: &str = "DZTEST_AGENT_ARGS";

#[test]
fn loopback_process_agent_entry() {
    // A no-op in a normal run; the agent's `main` when a process test starts
    // this binary as an agent (so the real process path runs in CI).
    let Ok(args) = std::env::var(AGENT_ARGS_VAR) else {
        return;
    };
    distzero::agent::main_with_args(registry(), args.split('\u{1f}').map(String::from).collect())
}

fn agent_command() -> AgentCommand {
    let exe = std::env::current_exe().unwrap();
    Box::new(move |args: &[String]| {
        let mut c = std::process::Command::new(&exe);
        c.args([
            "--exact",
            "loopback_process_agent_entry",
            "--nocapture",
            "--test-threads",
            "1",
            "-q",
        ]);
        c.env(AGENT_ARGS_VAR, args.join("\u{1f}"));
        c
    })
}

#[test]
fn loopback_process_agents_crash_restart_pause() {
    let s = settings();
    let run_id = new_run_id();
    let dir = run_log_dir(&s, "loopback_process", Mode::Loopback, &run_id);
    let p = ProcessProvider::with_command(agent_command(), &dir, &s);
    let mut rc =
        RemoteCluster::with_run(Box::new(p), "loopback_process", &run_id, &dir, &s).unwrap();
    let addr = {
        let c: &mut dyn Cluster = &mut rc;
        let (a, b) = two_probes(c).unwrap();
        assert_eq!(
            c.call::<_, Msg>(a, &Msg::Ping(1), secs(5)).unwrap(),
            Msg::Pong(1)
        );
        c.send(
            a,
            &Msg::Burst {
                to: b,
                first: 0,
                count: 50,
            },
        )
        .unwrap();
        c.run_until(secs(5), |c| Ok(seen(c, b)?.len() >= 50))
            .unwrap();
        assert_eq!(seen(c, b).unwrap(), (0..50).collect::<Vec<_>>());

        // SIGKILL: no reply; restart: from the spec, with the disk.
        c.crash(b.machine).unwrap();
        assert!(c
            .call::<_, Msg>(b, &Msg::Ping(2), millis(300))
            .unwrap_err()
            .is_timeout());
        c.restart(b.machine).unwrap();
        assert_eq!(
            c.call::<_, Msg>(b, &Msg::Boots, secs(5)).unwrap(),
            Msg::BootCount(2)
        );
        c.run_until(secs(5), |c| {
            c.send(
                a,
                &Msg::Burst {
                    to: b,
                    first: 100,
                    count: 1,
                },
            )?;
            c.run_for(millis(50))?;
            Ok(!seen(c, b)?.is_empty())
        })
        .unwrap();

        // SIGSTOP / SIGCONT.
        c.pause(a.machine).unwrap();
        assert!(c
            .call::<_, Msg>(a, &Msg::Ping(3), millis(300))
            .unwrap_err()
            .is_timeout());
        c.resume(a.machine).unwrap();
        assert_eq!(
            c.call::<_, Msg>(a, &Msg::Ping(4), secs(5)).unwrap(),
            Msg::Pong(4)
        );
        // The agent processes got the cookie on stdin: it is in neither
        // their arguments nor their environment.
        let agents = agent_processes(rc.run_id());
        assert_eq!(agents.len(), 2, "two agent processes of this run");
        for (cmdline, environ) in &agents {
            assert!(!cmdline.contains(COOKIE) && !environ.contains(COOKIE));
            assert!(!environ.contains("DISTZERO_COOKIE"));
        }
        let addr = rc.addrs(a.machine).unwrap().control;
        // A local process agent listens on loopback only: through any other
        // address of this machine, nothing answers.
        assert!(addr.ip().is_loopback(), "{addr}");
        if let Some(ip) = non_loopback_ip() {
            assert_refused(
                std::net::SocketAddr::new(ip, addr.port()),
                "agent reachable from the network",
            );
        }
        addr
    };
    rc.shutdown().unwrap();
    assert_refused(addr, "agent process still listening");
}

/// Command line and environment of this test binary's agent processes of
/// `run` (found by their launch variable in `/proc`).
fn agent_processes(run: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let (Ok(environ), Ok(cmdline)) = (
            std::fs::read(e.path().join("environ")),
            std::fs::read(e.path().join("cmdline")),
        ) else {
            continue;
        };
        let environ = String::from_utf8_lossy(&environ).to_string();
        if environ.contains(&format!("{AGENT_ARGS_VAR}=")) && environ.contains(run) {
            out.push((String::from_utf8_lossy(&cmdline).to_string(), environ));
        }
    }
    out
}

/// An address of this machine other than loopback, if it has one (the
/// route a UDP socket would take; nothing is sent).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.255.255.255:9").ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

/// An agent process with no controller; returns it and its log folder.
fn lone_process(test: &str, orphan_secs: u64) -> (std::process::Child, std::path::PathBuf) {
    let s = settings();
    let dir = run_log_dir(&s, test, Mode::Loopback, &new_run_id());
    let launch = distzero::provider::AgentLaunch {
        machine: MachineId(0),
        run_id: "lone".into(),
        cookie: COOKIE.into(),
        seed: 1,
        port: 0,
        epoch_micros: 0,
        orphan_secs,
    };
    let args = launch.args(&dir.to_string_lossy(), &dir.join("data").to_string_lossy());
    let child = agent_command()(&args)
        .env("DISTZERO_COOKIE", COOKIE)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (child, dir)
}

fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the agent process did not exit within {within:?}");
        }
        std::thread::sleep(millis(20));
    }
}

#[test]
fn loopback_process_agent_exits_3_when_orphaned() {
    let (mut child, _) = lone_process("loopback_process_orphan", 1);
    assert_eq!(
        wait_exit(&mut child, secs(10)).code(),
        Some(3),
        "exit code of an orphan"
    );
}

#[test]
fn loopback_process_agent_exits_0_on_sigterm() {
    let (mut child, dir) = lone_process("loopback_process_sigterm", 30);
    // Its first log flush comes after its signal handlers are in place.
    let log = dir.join("m0.jsonl");
    let deadline = Instant::now() + secs(10);
    while std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the agent never logged");
        std::thread::sleep(millis(20));
    }
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(
        wait_exit(&mut child, secs(5)).code(),
        Some(0),
        "clean exit on SIGTERM"
    );
    assert!(std::fs::read_to_string(&log).unwrap().contains("SIGTERM"));
}

#[test]
fn loopback_agent_that_dies_on_its_own_times_out_and_restarts() {
    let mut c = cluster("loopback_dies_on_its_own");
    let c: &mut dyn Cluster = &mut c;
    let (_, b) = two_probes(c).unwrap();
    c.send(b, &Msg::Die).unwrap();
    c.run_for(millis(100)).unwrap();
    let e = c.call::<_, Msg>(b, &Msg::Ping(1), millis(300)).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    // Not crashed by the test, yet restart brings it back from its spec.
    c.restart(b.machine).unwrap();
    assert_eq!(
        c.call::<_, Msg>(b, &Msg::Boots, secs(5)).unwrap(),
        Msg::BootCount(2)
    );
    c.shutdown().unwrap();
}

#[test]
fn loopback_controller_redials_after_another_takes_its_link() {
    let mut rc = cluster("loopback_redial");
    let (a, _) = two_probes(&mut rc).unwrap();
    let addr = rc.addrs(a.machine).unwrap().control;
    let run = rc.run_id().to_string();
    let rt = rt();
    // A second controller with the cookie takes the agent's control link over.
    let intruder = rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        wire::dial_handshake(&mut s, COOKIE.as_bytes(), &run, Role::Controller)
            .await
            .unwrap();
        s
    });
    let c: &mut dyn Cluster = &mut rc;
    c.run_for(millis(200)).unwrap(); // the cluster sees its link close
    assert_eq!(
        c.call::<_, Msg>(a, &Msg::Ping(5), secs(3)).unwrap(),
        Msg::Pong(5)
    );
    drop(intruder);
    assert_eq!(
        c.call::<_, Msg>(a, &Msg::Ping(6), secs(3)).unwrap(),
        Msg::Pong(6)
    );
    // The link was taken over and dialed again (not merely left alone).
    let dir = rc.log_dir().to_path_buf();
    rc.shutdown().unwrap();
    let ctl = std::fs::read_to_string(dir.join("controller.jsonl")).unwrap();
    let m0 = |l: &&str| l.contains("\"event_machine\":\"m0\"");
    assert!(
        ctl.lines()
            .filter(m0)
            .any(|l| l.contains("re-dialing the control link")),
        "no re-dial of m0 in:\n{ctl}"
    );
    assert!(
        ctl.lines()
            .filter(m0)
            .filter(|l| l.contains("control link up"))
            .count()
            >= 2,
        "m0's control link came up once only:\n{ctl}"
    );
}

fn boots(c: &mut dyn Cluster, n: NodeId) -> Result<u64> {
    match c.call(n, &Msg::Boots, secs(2))? {
        Msg::BootCount(b) => Ok(b),
        other => panic!("unexpected {other:?}"),
    }
}

/// Run the cluster until `at` after `t0` (real time here).
fn run_to(c: &mut dyn Cluster, t0: Duration, at: u64) -> Result<()> {
    let until = t0 + millis(at);
    c.run_for(until.saturating_sub(c.now()))
}

/// A nemesis declared in the test fires on real time while the test waits
/// and calls: the crash at 100 ms makes a call time out, the restart at
/// 600 ms starts the node again (its disk counts two boots), the partition
/// from 700 ms to 1200 ms drops a burst sent inside it, and the schedule
/// that ran is the one given.
#[test]
fn loopback_nemesis_fires_on_real_time_while_the_test_waits() {
    use distzero::nemesis::{Fault, Nemesis, Schedule, Step};
    let mut c = cluster("loopback_nemesis");
    let c: &mut dyn Cluster = &mut c;
    let (a, b) = two_probes(c).unwrap();
    let step = |at_ms, fault| Step { at_ms, fault };
    let schedule = Schedule::new(vec![
        step(100, Fault::Crash(0)),
        step(600, Fault::Restart(0)),
        step(700, Fault::Partition(vec![vec![0], vec![1]])),
        step(1200, Fault::Heal(vec![vec![0], vec![1]])),
    ]);
    let t0 = c.now();
    c.start_nemesis(
        Nemesis::on(&[a.machine, b.machine])
            .window(millis(1500))
            .schedule(schedule.clone()),
    )
    .unwrap();
    run_to(c, t0, 250).unwrap();
    let e = c.call::<_, Msg>(a, &Msg::Ping(1), millis(100)).unwrap_err();
    assert!(e.is_timeout(), "a is down: {e}");
    run_to(c, t0, 850).unwrap();
    let burst = Msg::Burst {
        to: a,
        first: 0,
        count: 10,
    };
    c.send(b, &burst).unwrap();
    run_to(c, t0, 1000).unwrap();
    c.wait_nemesis().unwrap();
    assert!(c.now() >= t0 + millis(1500));
    assert_eq!(boots(c, a).unwrap(), 2, "crashed and restarted once");
    assert_eq!(seen(c, a).unwrap(), Vec::<u64>::new(), "the burst was cut");
    // Healed: the same burst now arrives.
    c.send(b, &burst).unwrap();
    c.run_until(secs(5), |c| Ok(seen(c, a)?.len() >= 10))
        .unwrap();
    assert_eq!(c.nemesis_schedules(), vec![schedule]);
    c.shutdown().unwrap();
}

/// `DISTZERO_SCHEDULE` replaces what a declaration would draw in real
/// modes too: a schedule found in simulation replays on real agents.
#[test]
fn loopback_nemesis_takes_the_schedule_from_the_settings() {
    let mut s = settings();
    s.set(
        "DISTZERO_SCHEDULE",
        r#"[[{"at_ms":50,"fault":{"Crash":1}}]]"#,
    )
    .unwrap();
    let run_id = new_run_id();
    let test = "loopback_nemesis_schedule";
    let dir = run_log_dir(&s, test, Mode::Loopback, &run_id);
    let p = LoopbackProvider::new(registry(), &dir, &s).unwrap();
    let mut c = RemoteCluster::with_run(Box::new(p), test, &run_id, &dir, &s).unwrap();
    let c: &mut dyn Cluster = &mut c;
    let (a, b) = two_probes(c).unwrap();
    c.start_nemesis(distzero::nemesis::Nemesis::on(&[a.machine, b.machine]).window(secs(2)))
        .unwrap();
    c.run_for(millis(200)).unwrap();
    let e = c.call::<_, Msg>(b, &Msg::Ping(1), millis(100)).unwrap_err();
    assert!(e.is_timeout(), "b crashed at 50 ms: {e}");
    assert_eq!(
        c.call::<_, Msg>(a, &Msg::Ping(2), secs(2)).unwrap(),
        Msg::Pong(2)
    );
    // Ending the nemesis early heals: b runs again.
    c.stop_nemesis().unwrap();
    assert_eq!(
        c.call::<_, Msg>(b, &Msg::Ping(3), secs(2)).unwrap(),
        Msg::Pong(3)
    );
    assert_eq!(boots(c, b).unwrap(), 2);
    c.shutdown().unwrap();
}

/// A flood of unauthenticated connections (each announcing a 16 MiB
/// frame, then silent) neither takes the agent down nor holds it: past
/// `MAX_UNAUTHENTICATED` at once the agent closes new ones straight away,
/// the others are dropped at the handshake deadline, and the controller is
/// served throughout.
#[test]
fn loopback_agent_sheds_a_flood_of_unauthenticated_connections() {
    use std::io::Read;
    let mut rc = cluster("loopback_flood");
    let (a, _) = two_probes(&mut rc).unwrap();
    let addr = rc.addrs(a.machine).unwrap().control;
    let closed_now = |s: &std::net::TcpStream| {
        let mut s = s.try_clone().unwrap();
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 512];
        let r = match s.read(&mut b) {
            Ok(0) => true,
            Ok(_) => matches!(s.read(&mut b), Ok(0)),
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        };
        s.set_nonblocking(false).unwrap();
        r
    };
    // 200 silent connections: those over the cap are closed at once, those
    // under it wait for the handshake deadline (2 s).
    let t0 = std::time::Instant::now();
    let mut flood: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(millis(300));
    let early = flood.iter().filter(|s| closed_now(s)).count();
    if t0.elapsed() < millis(1500) {
        assert!(
            early >= 200 - distzero::agent::MAX_UNAUTHENTICATED,
            "{early} of 200 silent connections closed at once"
        );
        assert!(early < 200, "the ones under the cap wait for the deadline");
    } else {
        eprintln!("the machine is too slow to see the cap apart from the deadline");
    }
    // Then 100 that announce a 16 MiB frame: refused as soon as read.
    flood.extend((0..100).map(|_| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let _ = s.write_all(&(16u32 << 20).to_be_bytes());
        s
    }));
    // Served while flooded.
    let c: &mut dyn Cluster = &mut rc;
    assert_eq!(
        c.call::<_, Msg>(a, &Msg::Ping(1), secs(2)).unwrap(),
        Msg::Pong(1)
    );
    let closed = flood.iter().filter(|s| closed_within(s, secs(5))).count();
    assert_eq!(closed, 300, "every unauthenticated connection is closed");
    assert_eq!(
        c.call::<_, Msg>(a, &Msg::Ping(2), secs(2)).unwrap(),
        Msg::Pong(2)
    );
    c.shutdown().unwrap();
}

/// Whether the agent closed `s` (a refusal frame at most, then the end),
/// waiting at most `within`.
fn closed_within(s: &std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    let mut s = s.try_clone().unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 512];
    (0..2).any(|_| match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    })
}

/// A connection to `addr` from the loopback address `from` (any of
/// 127.0.0.0/8 reaches the agent: another host, as the agent sees it).
fn connect_from(from: [u8; 4], addr: std::net::SocketAddr) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind((std::net::Ipv4Addr::from(from), 0).into()).unwrap();
        s.connect(addr).await.unwrap().into_std().unwrap()
    })
}

/// A flood from a host that is neither a peer nor the controller takes at
/// most `MAX_UNAUTHENTICATED_PER_IP` of the agent's unauthenticated slots
/// (the rest of its connections are closed at once): three flooding hosts
/// leave room for a connection from a fourth.
#[test]
fn loopback_a_flood_from_one_host_leaves_room_for_others() {
    use distzero::agent::{MAX_UNAUTHENTICATED, MAX_UNAUTHENTICATED_PER_IP};
    let mut rc = cluster("loopback_flood_one_host");
    let (a, _) = two_probes(&mut rc).unwrap();
    let addr = rc.addrs(a.machine).unwrap().control;
    // Three flooding hosts, each with more silent connections than the
    // agent has slots; then one connection from a fourth host.
    let t0 = std::time::Instant::now();
    let floods: Vec<Vec<_>> = [2, 4, 5]
        .iter()
        .map(|&h| {
            (0..MAX_UNAUTHENTICATED + 10)
                .map(|_| connect_from([127, 0, 0, h], addr))
                .collect()
        })
        .collect();
    let other = connect_from([127, 0, 0, 3], addr);
    std::thread::sleep(millis(200));
    let early: Vec<usize> = floods
        .iter()
        .map(|f| f.iter().filter(|s| closed_within(s, millis(20))).count())
        .collect();
    let other_closed = closed_within(&other, millis(20));
    // The handshake deadline (2 s) closes the waiting ones too: only a
    // look before it tells the cap apart.
    if t0.elapsed() < millis(1500) {
        for (f, early) in floods.iter().zip(&early) {
            assert_eq!(
                f.len() - early,
                MAX_UNAUTHENTICATED_PER_IP,
                "one host's silent connections wait, up to its cap; the rest closed at once"
            );
        }
        assert!(
            !other_closed,
            "another host's connection waits for its handshake"
        );
    } else {
        eprintln!("the machine is too slow to see the cap apart from the deadline");
    }
    let c: &mut dyn Cluster = &mut rc;
    assert_eq!(
        c.call::<_, Msg>(a, &Msg::Ping(1), secs(2)).unwrap(),
        Msg::Pong(1)
    );
    c.shutdown().unwrap();
}

/// A user-chosen cookie shorter than 32 characters is refused before
/// anything starts, naming the minimum.
#[test]
fn loopback_weak_cookie_is_refused_naming_the_minimum() {
    let mut s = settings();
    let e = s.set("DISTZERO_COOKIE", "hunter2").unwrap_err().to_string();
    assert!(
        e.contains("DISTZERO_COOKIE is too weak") && e.contains("at least 32"),
        "{e}"
    );
}

/// Set in the child process of the interrupt test.
const INTERRUPT_CHILD_VAR: &str = "DZTEST_INTERRUPT_CHILD";

/// The child of `loopback_interrupt_removes_the_agent_processes`: a run
/// with two process agents (orphan timer 60 s), then a long wait.
#[test]
fn loopback_interrupt_child() {
    if std::env::var(INTERRUPT_CHILD_VAR).is_err() {
        return;
    }
    let mut s = settings();
    s.set("DISTZERO_AGENT_ORPHAN_SECS", "60").unwrap();
    let run_id = new_run_id();
    let dir = run_log_dir(&s, "loopback_interrupt", Mode::Loopback, &run_id);
    let p = ProcessProvider::with_command(agent_command(), &dir, &s);
    let mut rc =
        RemoteCluster::with_run(Box::new(p), "loopback_interrupt", &run_id, &dir, &s).unwrap();
    two_probes(&mut rc).unwrap();
    println!("READY {run_id}");
    std::thread::sleep(secs(60));
}

/// Ctrl-C (SIGINT) of a test process with a run up removes the run's agent
/// processes at once (long before their orphan timer), and the process
/// ends as interrupted.
#[test]
fn loopback_interrupt_removes_the_agent_processes() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "loopback_interrupt_child", "--nocapture"])
        .env(INTERRUPT_CHILD_VAR, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let run = out
        .lines()
        .map_while(|l| l.ok())
        .find_map(|l| l.strip_prefix("READY ").map(str::to_string))
        .expect("the child's run starts");
    assert_eq!(agent_processes(&run).len(), 2, "two agents up");
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "ended as interrupted: {status}");
    let gone = (0..100).any(|_| {
        std::thread::sleep(millis(100));
        agent_processes(&run).is_empty()
    });
    assert!(gone, "the agents of run {run} outlived the interrupt");
}
