//! Helpers of the provider's tests: a static stand-in agent built with
//! rustc, settings that deploy it, launches, and a line client.
#![allow(dead_code)]

use distzero::provider::AgentLaunch;
use distzero::{MachineId, Settings};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// Build the stand-in agent (once per cfg), statically linked.
pub fn standin(fail: bool) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/standin/agent.rs");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(if fail {
        "standin-fail"
    } else {
        "standin"
    });
    let fresh = |o: &PathBuf| {
        let (Ok(a), Ok(b)) = (std::fs::metadata(o), std::fs::metadata(src)) else {
            return false;
        };
        a.modified().unwrap() >= b.modified().unwrap()
    };
    if !fresh(&out) {
        let mut cmd = Command::new("rustc");
        cmd.args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "--target",
        ])
        .arg(distzero::artifact::static_target())
        .arg("-o")
        .arg(&out)
        .arg(src);
        if fail {
            cmd.args(["--cfg", "standin_fail"]);
        }
        let o = cmd.output().expect("running rustc");
        assert!(
            o.status.success(),
            "building the stand-in agent: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    out
}

/// Settings that deploy the stand-in.
pub fn settings(fail: bool) -> Settings {
    let mut s = Settings::load().expect("settings");
    s.set("DISTZERO_AGENT_BIN", standin(fail).display().to_string())
        .unwrap();
    s
}

/// A run id unique to this test.
pub fn run_id(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("t{}-{tag}-{nanos:x}", std::process::id())
}

pub fn launch(run_id: &str, machine: u32) -> AgentLaunch {
    AgentLaunch {
        machine: MachineId(machine),
        run_id: run_id.to_string(),
        cookie: "secret-cookie".into(),
        seed: 7,
        port: 7400,
        epoch_micros: 0,
        orphan_secs: 30,
    }
}

/// Send one line, read one line (None on timeout or a closed connection).
pub fn ask(addr: SocketAddr, line: &str, timeout: Duration) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    writeln!(s, "{line}").ok()?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).ok()?;
    (!reply.is_empty()).then(|| reply.trim_end().to_string())
}
