//! The OpenSSH client (`ssh`, `scp`) driven through `std::process::Command`.
//!
//! Every call is non-interactive (`BatchMode=yes`), bounded (`ConnectTimeout`,
//! server keep-alives, and a deadline after which the client is killed) and
//! uses the key from the settings only (`IdentitiesOnly`). Host keys are
//! checked against `DISTZERO_CLOUD_KNOWN_HOSTS` when set, else trusted on first
//! use into a known_hosts file of the run (`StrictHostKeyChecking=accept-new`).
//!
//! A failure of ssh itself (exit 255) is classified from its message into
//! [`SshFailure`]: unreachable, authentication refused, host key mismatch.

use crate::inventory::Host;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds ssh waits for a TCP connection.
pub const CONNECT_TIMEOUT_SECS: u32 = 5;
/// Deadline of one remote command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline of one copy.
pub const COPY_TIMEOUT: Duration = Duration::from_secs(300);

/// How host keys are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeys {
    /// Only keys already in this file are accepted (`StrictHostKeyChecking=yes`).
    Known(PathBuf),
    /// Trust on first use, remembered in this file (`accept-new`).
    FirstUse(PathBuf),
}

/// Options shared by every ssh and scp call.
#[derive(Clone, Debug)]
pub struct Ssh {
    pub key: Option<PathBuf>,
    pub host_keys: HostKeys,
    pub connect_timeout_secs: u32,
    /// Share one connection per host (`ControlMaster`): sockets in this
    /// folder; masters exit after [`CONTROL_PERSIST_SECS`] idle or at
    /// [`Ssh::close_masters`].
    pub control_dir: Option<PathBuf>,
}

/// Idle seconds after which a shared connection closes by itself.
pub const CONTROL_PERSIST_SECS: u32 = 15;

/// What went wrong when ssh itself failed (exit status 255).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SshFailure {
    /// No TCP connection: no route, refused, timed out, name not resolved.
    Unreachable(String),
    /// The host refused our key.
    AuthRefused(String),
    /// The host's key is not the one we know.
    HostKey(String),
    /// The client could not run or some other ssh error.
    Other(String),
}

impl std::fmt::Display for SshFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SshFailure::Unreachable(m) => write!(f, "unreachable ({m})"),
            SshFailure::AuthRefused(m) => write!(
                f,
                "authentication refused ({m}); check DISTZERO_CLOUD_SSH_KEY and the user (DISTZERO_CLOUD_USER or user@ in DISTZERO_CLOUD_HOSTS)"
            ),
            SshFailure::HostKey(m) => write!(
                f,
                "host key check failed ({m}); fix DISTZERO_CLOUD_KNOWN_HOSTS or the host"
            ),
            SshFailure::Other(m) => write!(f, "ssh failed ({m})"),
        }
    }
}

/// Classify the stderr of an ssh or scp that exited with 255.
pub fn classify(stderr: &str) -> SshFailure {
    let msg = last_meaningful_line(stderr);
    let l = stderr.to_ascii_lowercase();
    if l.contains("permission denied") || l.contains("too many authentication failures") {
        SshFailure::AuthRefused(msg)
    } else if l.contains("host key verification failed")
        || l.contains("remote host identification has changed")
    {
        SshFailure::HostKey(msg)
    } else if l.contains("connection refused")
        || l.contains("no route to host")
        || l.contains("timed out")
        || l.contains("could not resolve hostname")
        || l.contains("network is unreachable")
        || l.contains("connection closed by")
        || l.contains("connection reset")
        || l.contains("name or service not known")
    {
        SshFailure::Unreachable(msg)
    } else if msg.is_empty() {
        SshFailure::Other("exit status 255 and no message".into())
    } else {
        SshFailure::Other(msg)
    }
}

fn last_meaningful_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .unwrap_or("")
        .to_string()
}

/// The outcome of a remote command that ran (ssh itself worked).
#[derive(Clone, Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout and stderr together, trimmed, for messages.
    pub fn text(&self) -> String {
        let mut t = self.stdout.trim().to_string();
        let e = self.stderr.trim();
        if !e.is_empty() {
            if !t.is_empty() {
                t.push('\n');
            }
            t.push_str(e);
        }
        t
    }
}

/// Why a call failed before the remote command could report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    Ssh(SshFailure),
    /// The deadline passed; the client was killed.
    Timeout(Duration),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Ssh(s) => s.fmt(f),
            CallError::Timeout(d) => write!(f, "no answer within {d:?} (host hung or very slow)"),
        }
    }
}

/// Quote one word for a POSIX shell (the remote login shell parses the
/// command line that ssh sends).
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A command line of quoted words.
pub fn shell_line<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Ssh {
    /// The `-o` options common to ssh and scp.
    pub fn common_args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut opt = |s: String| {
            a.push("-o".into());
            a.push(s);
        };
        opt("BatchMode=yes".into());
        opt(format!("ConnectTimeout={}", self.connect_timeout_secs));
        opt("ServerAliveInterval=5".into());
        opt("ServerAliveCountMax=3".into());
        opt("LogLevel=ERROR".into());
        match &self.host_keys {
            HostKeys::Known(f) => {
                opt("StrictHostKeyChecking=yes".into());
                opt(format!("UserKnownHostsFile={}", f.display()));
            }
            HostKeys::FirstUse(f) => {
                opt("StrictHostKeyChecking=accept-new".into());
                opt(format!("UserKnownHostsFile={}", f.display()));
            }
        }
        opt("GlobalKnownHostsFile=/dev/null".into());
        if let Some(d) = &self.control_dir {
            opt("ControlMaster=auto".into());
            opt(format!("ControlPath={}/%C", d.display()));
            opt(format!("ControlPersist={CONTROL_PERSIST_SECS}"));
        }
        if let Some(k) = &self.key {
            opt("IdentitiesOnly=yes".into());
            a.push("-i".into());
            a.push(k.display().to_string());
        }
        a
    }

    /// Arguments of `ssh` running `remote` (one shell line) on `host`.
    pub fn ssh_args(&self, host: &Host, remote: &str) -> Vec<String> {
        let mut a = self.common_args();
        a.push("-p".into());
        a.push(host.port.to_string());
        a.push("-l".into());
        a.push(host.user.clone());
        a.push("--".into());
        a.push(host.addr.clone());
        a.push(remote.to_string());
        a
    }

    /// Make the folder of the shared connections (mode 0700).
    pub fn prepare_control_dir(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        if let Some(d) = &self.control_dir {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)?;
        }
        Ok(())
    }

    /// Close the shared connections to `hosts` and remove their folder.
    pub fn close_masters(&self, hosts: &[Host]) {
        let Some(d) = &self.control_dir else { return };
        for h in hosts {
            let mut cmd = Command::new("ssh");
            cmd.args(self.common_args())
                .args(["-O", "exit", "-p"])
                .arg(h.port.to_string())
                .args(["-l", &h.user, "--", &h.addr]);
            let _ = run_with_deadline(cmd, b"", Duration::from_secs(5));
        }
        let _ = std::fs::remove_dir_all(d);
    }

    /// `user@host:path` for scp (IPv6 addresses in brackets).
    pub fn scp_target(host: &Host, path: &str) -> String {
        let addr = if host.addr.contains(':') {
            format!("[{}]", host.addr)
        } else {
            host.addr.clone()
        };
        format!("{}@{addr}:{path}", host.user)
    }

    /// Run `remote` on `host`, feeding `stdin`. Ok when ssh worked, whatever
    /// the remote command's exit code (in [`Output::code`]).
    pub fn run(
        &self,
        host: &Host,
        remote: &str,
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<Output, CallError> {
        let mut cmd = Command::new("ssh");
        cmd.args(self.ssh_args(host, remote));
        let out = run_with_deadline(cmd, stdin, timeout)?;
        if out.code == 255 {
            return Err(CallError::Ssh(classify(&out.stderr)));
        }
        Ok(out)
    }

    /// Copy local `from` to `to` on `host`.
    pub fn copy_to(&self, host: &Host, from: &Path, to: &str) -> Result<(), CallError> {
        let mut cmd = Command::new("scp");
        cmd.arg("-q")
            .args(self.common_args())
            .arg("-P")
            .arg(host.port.to_string())
            .arg("--")
            .arg(from)
            .arg(Self::scp_target(host, to));
        self.copy(cmd)
    }

    /// Copy remote files `from` (paths on `host`) into the local folder `to`.
    pub fn copy_from(&self, host: &Host, from: &[String], to: &Path) -> Result<(), CallError> {
        if from.is_empty() {
            return Ok(());
        }
        let mut cmd = Command::new("scp");
        cmd.arg("-q")
            .args(self.common_args())
            .arg("-P")
            .arg(host.port.to_string())
            .arg("--");
        for f in from {
            cmd.arg(Self::scp_target(host, f));
        }
        cmd.arg(to);
        self.copy(cmd)
    }

    fn copy(&self, cmd: Command) -> Result<(), CallError> {
        let out = run_with_deadline(cmd, b"", COPY_TIMEOUT)?;
        match out.code {
            0 => Ok(()),
            255 => Err(CallError::Ssh(classify(&out.stderr))),
            c => Err(CallError::Ssh(SshFailure::Other(format!(
                "scp exit status {c}: {}",
                last_meaningful_line(&out.stderr)
            )))),
        }
    }
}

/// Run a client with `stdin`, collect its output, kill it at the deadline.
fn run_with_deadline(
    mut cmd: Command,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Output, CallError> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = format!("{:?}", cmd.get_program());
    let mut child = cmd.spawn().map_err(|e| {
        CallError::Ssh(SshFailure::Other(format!(
            "cannot run {program}: {e}; install the OpenSSH client"
        )))
    })?;
    let input = stdin.to_vec();
    let mut child_in = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(w) = child_in.as_mut() {
            let _ = w.write_all(&input);
        }
        drop(child_in);
    });
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut s);
        }
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut s);
        }
        s
    });
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let _ = writer.join();
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    match status {
        None => Err(CallError::Timeout(timeout)),
        Some(st) => Ok(Output {
            code: st.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }),
    }
}

/// One long-lived shell on a host (`ssh host sh`, over the shared
/// connection): commands go in on its stdin one at a time and their output
/// comes back up to an end marker carrying the exit status. The faults of a
/// running test (kill, stop, cut) then cost no new SSH session each, which
/// is what dominates their latency. When the session breaks, callers fall
/// back to a plain [`Ssh::run`].
pub struct Session {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

const END: &str = "__distzero_end__";

impl Ssh {
    /// Open a shell session on `host` (lazily connected: failures show on
    /// the first [`Session::run`]).
    pub fn open_session(&self, host: &Host) -> Result<Session, CallError> {
        let mut cmd = Command::new("ssh");
        cmd.args(self.ssh_args(host, "exec sh"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            CallError::Ssh(SshFailure::Other(format!(
                "cannot run ssh: {e}; install the OpenSSH client"
            )))
        })?;
        let stdin = child.stdin.take();
        let (tx, lines) = std::sync::mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                    if s.len() < 64 * 1024 {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        Ok(Session {
            child,
            stdin,
            lines,
            stderr,
        })
    }
}

impl Session {
    /// Run one shell line (its stdin is /dev/null, its stderr joins its
    /// stdout). Ok with its exit status; Err when the session is broken or
    /// the deadline passed (the session is then unusable: close it).
    pub fn run(&mut self, line: &str, timeout: Duration) -> Result<Output, CallError> {
        let broken = |s: &Session| {
            let err = s.stderr.lock().map(|e| e.clone()).unwrap_or_default();
            if err.trim().is_empty() {
                CallError::Ssh(SshFailure::Other("the shell session ended".into()))
            } else {
                CallError::Ssh(classify(&err))
            }
        };
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(broken(self));
        };
        let wrapped = format!("{{ {line}\n}} </dev/null 2>&1; echo \"{END} $?\"\n");
        if stdin
            .write_all(wrapped.as_bytes())
            .and_then(|_| stdin.flush())
            .is_err()
        {
            self.stdin = None;
            return Err(broken(self));
        }
        let deadline = Instant::now() + timeout;
        let mut out = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(code) = l.strip_prefix(END) {
                        return Ok(Output {
                            code: code.trim().parse().unwrap_or(-1),
                            stdout: out,
                            stderr: String::new(),
                        });
                    }
                    out.push_str(&l);
                    out.push('\n');
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    self.stdin = None;
                    return Err(CallError::Timeout(timeout));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    self.stdin = None;
                    // Give the stderr reader a moment to take ssh's last words.
                    std::thread::sleep(Duration::from_millis(20));
                    return Err(broken(self));
                }
            }
        }
    }

    /// End the shell (EOF), then the client; at most about two seconds.
    pub fn close(mut self) {
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stdin = None;
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            user: "root".into(),
            addr: "10.0.0.5".into(),
            port: 2222,
        }
    }

    #[test]
    fn quoting_survives_the_remote_shell() {
        assert_eq!(shell_quote("abc-1.2/x"), "abc-1.2/x");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        // A real shell gives the words back unchanged.
        let words = ["a b", "it's", "$HOME", "x;y", "--", "", "ünï"];
        let line = format!("printf '%s\\n' {}", shell_line(&words));
        let out = Command::new("sh").arg("-c").arg(&line).output().unwrap();
        let got: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(got, words);
    }

    #[test]
    fn ssh_arguments_are_batch_bounded_and_use_the_key() {
        let ssh = Ssh {
            key: Some("/k/id".into()),
            host_keys: HostKeys::FirstUse("/run/kh".into()),
            connect_timeout_secs: 5,
            control_dir: Some("/tmp/c".into()),
        };
        let a = ssh.ssh_args(&host(), "true");
        let joined = a.join(" ");
        for want in [
            "BatchMode=yes",
            "ConnectTimeout=5",
            "StrictHostKeyChecking=accept-new",
            "UserKnownHostsFile=/run/kh",
            "IdentitiesOnly=yes",
            "-i /k/id",
            "-p 2222",
            "-l root",
            "ControlMaster=auto",
            "ControlPath=/tmp/c/%C",
        ] {
            assert!(joined.contains(want), "{want} missing in {joined}");
        }
        assert_eq!(&a[a.len() - 3..], ["--", "10.0.0.5", "true"]);
        let strict = Ssh {
            key: None,
            host_keys: HostKeys::Known("/etc/kh".into()),
            connect_timeout_secs: 3,
            control_dir: None,
        };
        let joined = strict.common_args().join(" ");
        assert!(joined.contains("StrictHostKeyChecking=yes"), "{joined}");
        assert!(!joined.contains("-i "), "{joined}");
        assert!(!joined.contains("ControlMaster"), "{joined}");
        assert_eq!(Ssh::scp_target(&host(), "/a/b"), "root@10.0.0.5:/a/b");
        let v6 = Host {
            addr: "fd00::5".into(),
            ..host()
        };
        assert_eq!(Ssh::scp_target(&v6, "/a"), "root@[fd00::5]:/a");
    }

    #[test]
    fn ssh_failures_are_classified() {
        let c = classify("ssh: connect to host 10.214.0.99 port 22: No route to host\r\n");
        assert!(
            matches!(c, SshFailure::Unreachable(ref m) if m.contains("No route")),
            "{c:?}"
        );
        assert!(matches!(
            classify("ssh: connect to host x port 22: Connection timed out"),
            SshFailure::Unreachable(_)
        ));
        assert!(matches!(
            classify("ssh: Could not resolve hostname nowhere: Name or service not known"),
            SshFailure::Unreachable(_)
        ));
        let c = classify("root@10.214.0.11: Permission denied (publickey).");
        assert!(matches!(c, SshFailure::AuthRefused(_)), "{c:?}");
        assert!(c.to_string().contains("DISTZERO_CLOUD_SSH_KEY"), "{c}");
        assert!(matches!(
            classify("Host key verification failed."),
            SshFailure::HostKey(_)
        ));
        assert!(matches!(classify(""), SshFailure::Other(_)));
    }

    #[test]
    fn a_hung_command_is_killed_at_the_deadline() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exec sleep 5"]);
        let t = Instant::now();
        let e = run_with_deadline(cmd, b"", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, CallError::Timeout(_)), "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(3));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "read x; echo got $x; echo err >&2; exit 3"]);
        let out = run_with_deadline(cmd, b"cookie\n", Duration::from_secs(5)).unwrap();
        assert_eq!(out.code, 3);
        assert_eq!(out.stdout.trim(), "got cookie");
        assert_eq!(out.text(), "got cookie\nerr");
    }
}
