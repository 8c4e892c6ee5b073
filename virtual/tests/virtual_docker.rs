//! The Docker provider against a real engine, with a stand-in agent. Every
//! test name holds `virtual`: they run with `cargo test virtual`, not in CI.

mod common;

use common::{ask, launch, run_id, settings};
use distzero::provider::Provider;
use distzero::{MachineId, Settings};
use distzero_virtual::{image, DockerProvider, Engine};
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);

fn assert_run_gone(engine: &Engine, run: &str) {
    let c = engine.containers(Some(run)).unwrap();
    let n = engine.networks(Some(run)).unwrap();
    assert!(
        c.is_empty() && n.is_empty(),
        "run {run} left {} containers and {} networks",
        c.len(),
        n.len()
    );
}

#[test]
fn virtual_image_is_built_and_reused_by_hash() {
    let engine = Engine::connect(&Settings::load().unwrap()).unwrap();
    let standin =
        |fail| image::Artifact::static_binary(&common::standin(fail), "stand-in").unwrap();
    let bin = standin(false);
    let first = image::ensure_image(&engine, &bin).unwrap();
    assert_eq!(first.sha256, bin.sha256);
    assert_eq!(first.bytes, bin.size());
    assert_eq!(
        first.reference,
        format!("distzero-agent:{}", &bin.sha256[..16])
    );
    let again = image::ensure_image(&engine, &bin).unwrap();
    assert!(again.reused, "the second ensure reuses the image");
    assert_eq!(again.reference, first.reference);
    let other = image::ensure_image(&engine, &standin(true)).unwrap();
    assert_ne!(
        other.reference, first.reference,
        "another binary, another image"
    );
    // Pruning spares the image named and recent ones.
    image::prune_old_images(&engine, &first.reference, Duration::from_secs(3600));
    assert!(image::ensure_image(&engine, &bin).unwrap().reused);
    assert!(image::ensure_image(&engine, &standin(true)).unwrap().reused);
    // Pruning lists images; that listing must parse this engine's answer.
    let listed = engine.block(
        engine
            .docker()
            .list_images(None::<distzero_virtual::bollard::query_parameters::ListImagesOptions>),
    );
    assert!(listed
        .unwrap()
        .iter()
        .any(|i| i.repo_tags.contains(&first.reference)));
    // A dynamically linked binary is refused with a clear message.
    let mut s = Settings::load().unwrap();
    s.set("DISTZERO_AGENT_BIN", "/bin/true").unwrap();
    let e = image::agent_binary(&s).unwrap_err().to_string();
    assert!(
        e.contains("dynamically linked") && e.contains("crt-static"),
        "{e}"
    );
}

#[test]
fn virtual_no_engine_gives_a_clear_error() {
    for host in ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:1"] {
        let mut s = Settings::load().unwrap();
        s.set("DISTZERO_DOCKER_HOST", host).unwrap();
        let e = Engine::connect(&s).unwrap_err().to_string();
        assert!(
            e.contains("Is the Docker daemon running?") && e.contains("DISTZERO_DOCKER_HOST"),
            "{e}"
        );
    }
}

/// Not a test on its own: connects to Docker as another user for
/// `virtual_no_permission_on_the_socket_gives_a_clear_error`.
#[test]
#[ignore = "child process of virtual_no_permission_on_the_socket_gives_a_clear_error"]
fn virtual_helper_connect_as_another_user() {
    if std::env::var("DZTEST_VIRTUAL_CONNECT").is_err() {
        return;
    }
    match Engine::connect(&Settings::load().unwrap()) {
        Ok(_) => println!("CONNECTED"),
        Err(e) => println!("ERROR {e}"),
    }
}

#[test]
fn virtual_no_permission_on_the_socket_gives_a_clear_error() {
    let am_root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    if !am_root || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv to run a child as another user");
        return;
    }
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "virtual_helper_connect_as_another_user",
            "--ignored",
            "--nocapture",
        ])
        .env("DZTEST_VIRTUAL_CONNECT", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("ERROR") || l.starts_with("CONNECTED"));
    let Some(line) = line else {
        panic!(
            "the child said nothing: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert!(
        line.contains("no permission on the Docker socket") && line.contains("docker"),
        "{line}"
    );
}

#[test]
fn virtual_machines_start_kill_restart_pause() {
    let mut p = DockerProvider::new(&settings(false)).unwrap();
    let run = run_id("life");
    let a = p.start(&launch(&run, 0)).unwrap();
    let b = p.start(&launch(&run, 1)).unwrap();
    assert_ne!(a.control, b.control);
    assert_eq!(ask(a.control, "ping", SEC).as_deref(), Some("pong"));
    assert_eq!(
        ask(a.control, "cookie", SEC).as_deref(),
        Some("cookie secret-cookie")
    );
    // Containers reach each other on the run's network.
    assert_eq!(
        ask(a.control, &format!("dial {}", b.peer), 3 * SEC).as_deref(),
        Some("dial ok")
    );
    // The disk survives a crash.
    assert_eq!(
        ask(a.control, "write before-crash", SEC).as_deref(),
        Some("ok")
    );
    p.kill(MachineId(0)).unwrap();
    assert_eq!(
        ask(a.control, "ping", SEC),
        None,
        "a killed machine does not answer"
    );
    let a2 = p.restart(&launch(&run, 0)).unwrap();
    assert_eq!(a2, a, "same address after a restart");
    assert_eq!(ask(a.control, "read", SEC).as_deref(), Some("before-crash"));
    // A paused machine is silent, then answers again.
    p.pause(MachineId(1)).unwrap();
    assert_eq!(ask(b.control, "ping", Duration::from_millis(500)), None);
    p.resume(MachineId(1)).unwrap();
    assert_eq!(ask(b.control, "ping", SEC).as_deref(), Some("pong"));
    // Killing a paused machine works too.
    p.pause(MachineId(1)).unwrap();
    p.kill(MachineId(1)).unwrap();
    p.restart(&launch(&run, 1)).unwrap();
    assert_eq!(ask(b.control, "ping", SEC).as_deref(), Some("pong"));
    let e = p.start(&launch(&run, 1)).unwrap_err().to_string();
    assert!(
        e.contains("machine m1 is already started; use restart after a kill"),
        "a machine starts once: {e}"
    );
    assert!(
        p.start(&launch("another-run", 2)).is_err(),
        "one run per provider"
    );
    // Shutdown removes a paused machine too.
    p.pause(MachineId(0)).unwrap();
    p.shutdown().unwrap();
    p.shutdown().unwrap();
    assert_run_gone(p.engine(), &run);
}

#[test]
fn virtual_cut_drops_real_packets_until_heal() {
    let mut p = DockerProvider::new(&settings(false)).unwrap();
    let run = run_id("cut");
    let a = p.start(&launch(&run, 0)).unwrap();
    let b = p.start(&launch(&run, 1)).unwrap();
    let c = p.start(&launch(&run, 2)).unwrap();
    let dial = |from: std::net::SocketAddr, to: std::net::SocketAddr| {
        ask(from, &format!("dial {to}"), 5 * SEC)
    };
    assert_eq!(dial(a.control, b.peer).as_deref(), Some("dial ok"));
    assert!(
        p.cut(MachineId(0), MachineId(1)).unwrap(),
        "this host allows real drops (root, nsenter, iptables)"
    );
    let t = Instant::now();
    let r = dial(a.control, b.peer).unwrap();
    assert!(r.starts_with("dial err"), "{r}");
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "a cut link stalls, it does not refuse: {r} after {:?}",
        t.elapsed()
    );
    // One way only: b still reaches a (a's answers travel on b's connection).
    assert_eq!(dial(b.control, a.peer).as_deref(), Some("dial ok"));
    // Other links are untouched.
    assert_eq!(dial(a.control, c.peer).as_deref(), Some("dial ok"));
    assert_eq!(dial(c.control, b.peer).as_deref(), Some("dial ok"));
    // Both ways: a partition.
    assert!(p.cut(MachineId(1), MachineId(0)).unwrap());
    assert!(dial(b.control, a.peer).unwrap().starts_with("dial err"));
    p.heal(MachineId(1), MachineId(0)).unwrap();
    assert_eq!(dial(b.control, a.peer).as_deref(), Some("dial ok"));
    // The controller still reaches both.
    assert_eq!(ask(b.control, "ping", SEC).as_deref(), Some("pong"));
    // A restart of the receiver keeps the cut.
    p.kill(MachineId(1)).unwrap();
    p.restart(&launch(&run, 1)).unwrap();
    assert!(dial(a.control, b.peer).unwrap().starts_with("dial err"));
    p.heal(MachineId(0), MachineId(1)).unwrap();
    assert_eq!(dial(a.control, b.peer).as_deref(), Some("dial ok"));
    p.heal(MachineId(0), MachineId(1)).unwrap();
    drop(p);
    assert_run_gone(&Engine::connect(&Settings::load().unwrap()).unwrap(), &run);
}

#[test]
fn virtual_container_that_does_not_come_up_fails_clearly_and_leaves_nothing() {
    let mut p = DockerProvider::new(&settings(true)).unwrap();
    let run = run_id("fail");
    let e = p.start(&launch(&run, 3)).unwrap_err().to_string();
    assert!(
        e.contains("machine m3") && e.contains("did not come up"),
        "{e}"
    );
    assert!(e.contains("exited with code 3"), "{e}");
    assert!(
        e.contains("cannot open the flux capacitor"),
        "the error carries the container's last lines: {e}"
    );
    assert!(
        p.engine().containers(Some(&run)).unwrap().is_empty(),
        "the failed container is removed at once"
    );
    p.shutdown().unwrap();
    assert_run_gone(p.engine(), &run);
}

#[test]
fn virtual_logs_are_collected_and_nothing_is_left_after_a_run() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(run_id("logs"));
    let run = run_id("logs");
    {
        let mut p = DockerProvider::new(&settings(false)).unwrap();
        p.start(&launch(&run, 0)).unwrap();
        p.start(&launch(&run, 1)).unwrap();
        p.kill(MachineId(1)).unwrap(); // logs of a stopped container too
        p.collect_logs(&dir).unwrap();
        assert_eq!(p.engine().containers(Some(&run)).unwrap().len(), 2);
        // dropped here: Drop removes everything
    }
    for m in ["m0", "m1"] {
        let jsonl = std::fs::read_to_string(dir.join(format!("{m}.jsonl"))).unwrap();
        assert!(
            jsonl.contains("standin up") && jsonl.contains(&format!("\"machine\":\"{m}\"")),
            "{jsonl}"
        );
        assert!(dir.join(format!("{m}.log")).exists());
        let console = std::fs::read_to_string(dir.join(format!("{m}.console.log"))).unwrap();
        assert!(console.contains("listening on 0.0.0.0:7400"), "{console}");
    }
    assert_run_gone(&Engine::connect(&Settings::load().unwrap()).unwrap(), &run);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Not a test on its own: the controller that `virtual_sweep_removes_a_killed_runs_leftovers`
/// starts as a child process and kills.
#[test]
#[ignore = "child process of virtual_sweep_removes_a_killed_runs_leftovers"]
fn virtual_helper_controller_to_be_killed() {
    let Ok(run) = std::env::var("DZTEST_VIRTUAL_RUN") else {
        return;
    };
    let mut p = DockerProvider::new(&settings(false)).unwrap();
    p.start(&launch(&run, 0)).unwrap();
    p.start(&launch(&run, 1)).unwrap();
    println!("READY {run}");
    std::thread::sleep(Duration::from_secs(120));
    std::mem::forget(p);
}

#[test]
fn virtual_sweep_removes_a_killed_runs_leftovers() {
    let run = run_id("sweep");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "virtual_helper_controller_to_be_killed",
            "--ignored",
            "--nocapture",
        ])
        .env("DZTEST_VIRTUAL_RUN", &run)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.find(|l| l.as_ref().is_ok_and(|l| l.starts_with("READY")));
    assert!(
        ready.is_some(),
        "the child controller did not start its run"
    );
    child.kill().unwrap(); // SIGKILL: no Drop, no clean-up
    child.wait().unwrap();
    let engine = Engine::connect(&Settings::load().unwrap()).unwrap();
    assert_eq!(
        engine.containers(Some(&run)).unwrap().len(),
        2,
        "the killed run left its containers"
    );
    assert_eq!(
        engine.networks(Some(&run)).unwrap().len(),
        1,
        "and its network"
    );
    // Tests running beside this one sweep too (every new provider does), so
    // this sweep may find part of the work done: what counts is that it is done.
    let report = engine.sweep().unwrap();
    eprintln!("sweep removed {report:?}");
    assert_run_gone(&engine, &run);
}

#[test]
fn virtual_pinned_subnet_is_used_and_a_second_run_on_it_is_refused_clearly() {
    let mut s = settings(false);
    s.set("DISTZERO_DOCKER_SUBNET", "172.31.251").unwrap();
    let mut p = DockerProvider::new(&s).unwrap();
    let run = run_id("pin");
    let a = p.start(&launch(&run, 4)).unwrap();
    assert_eq!(
        a.control.ip().to_string(),
        "172.31.251.6",
        "machine K gets .K+2"
    );
    let mut q = DockerProvider::new(&s).unwrap();
    let e = q
        .start(&launch(&run_id("pin2"), 0))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("DISTZERO_DOCKER_SUBNET=172.31.251") && e.contains("unset"),
        "{e}"
    );
    drop(q);
    p.shutdown().unwrap();
    assert_run_gone(p.engine(), &run);
}

/// Not a test on its own: the controller that
/// `virtual_interrupt_removes_the_run_at_once` starts as a child and signals.
#[test]
#[ignore = "child process of virtual_interrupt_removes_the_run_at_once"]
fn virtual_helper_controller_to_be_interrupted() {
    let Ok(run) = std::env::var("DZTEST_VIRTUAL_RUN") else {
        return;
    };
    let mut p = DockerProvider::new(&settings(false)).unwrap();
    p.start(&launch(&run, 0)).unwrap();
    p.start(&launch(&run, 1)).unwrap();
    p.pause(MachineId(1)).unwrap(); // a paused container must not stay paused
    println!("READY {run}");
    std::thread::sleep(Duration::from_secs(120));
    std::mem::forget(p);
}

/// SIGTERM and Ctrl-C (SIGINT) of a controller with a run up remove the
/// run's containers (a paused one too) and network within 10 s, without
/// waiting for the next run's sweep.
#[test]
fn virtual_interrupt_removes_the_run_at_once() {
    for signal in ["-TERM", "-INT"] {
        let run = run_id("interrupt");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "virtual_helper_controller_to_be_interrupted",
                "--ignored",
                "--nocapture",
            ])
            .env("DZTEST_VIRTUAL_RUN", &run)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.find(|l| l.as_ref().is_ok_and(|l| l.starts_with("READY")));
        assert!(
            ready.is_some(),
            "the child controller did not start its run"
        );
        let engine = Engine::connect(&Settings::load().unwrap()).unwrap();
        assert_eq!(engine.containers(Some(&run)).unwrap().len(), 2);
        let t = Instant::now();
        std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        assert!(
            matches!(status.code(), Some(130) | Some(143)),
            "{signal}: ended as interrupted: {status}"
        );
        let gone = (0..100).any(|_| {
            engine.containers(Some(&run)).unwrap().is_empty()
                && engine.networks(Some(&run)).unwrap().is_empty()
                || {
                    std::thread::sleep(Duration::from_millis(100));
                    false
                }
        });
        assert!(
            gone,
            "{signal}: run {run} still has containers or a network"
        );
        eprintln!("{signal}: run removed {:?} after the signal", t.elapsed());
    }
}
