//! Real packet drops between containers: iptables rules entered into a
//! container's network namespace from the host (`nsenter -t <pid> -n`).
//!
//! A cut `from -> to` drops, in `to`'s namespace, the packets from `from`
//! that travel in the original direction of their connection: the packets of
//! connections that `from` dialed (its SYNs and its data), not `from`'s
//! answers on connections that `to` dialed.
//! (`INPUT -s <from ip> -m conntrack --ctdir ORIGINAL -j DROP`.)
//!
//! Why not drop everything from `from`: over TCP that cuts both ways (the
//! acks of `to`'s own connections travel from `from`), while a one-way cut
//! must leave `to -> from` open; agents send on the connections they dial,
//! so dropping by direction gives exactly the one-way cut. A cut both ways
//! drops everything in both directions, as a real partition does.
//!
//! Why on arrival and not in `from`'s OUTPUT chain: a packet dropped in
//! OUTPUT makes the sender's `connect`/`send` fail at once with EPERM, which
//! no real network does; dropped on arrival, the sender sees silence and its
//! timeouts and retries run, as on a broken link.

use std::net::Ipv4Addr;
use std::process::Command;

/// One DROP rule, tagged with a comment naming the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropRule {
    /// Drop packets from this address...
    pub from: Ipv4Addr,
    /// ...in the namespace of this process (the receiving container).
    pub pid: i64,
    pub comment: String,
}

impl DropRule {
    fn args(&self, op: &str) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-t".into(),
            self.pid.to_string(),
            "-n".into(),
            "iptables".into(),
            "-w".into(),
        ];
        a.extend([op, "INPUT", "-s"].map(String::from));
        a.push(format!("{}/32", self.from));
        a.extend(
            [
                "-m",
                "conntrack",
                "--ctdir",
                "ORIGINAL",
                "-m",
                "comment",
                "--comment",
            ]
            .map(String::from),
        );
        a.push(self.comment.clone());
        a.extend(["-j", "DROP"].map(String::from));
        a
    }

    /// Add the rule. Err holds why it could not (no nsenter, no iptables,
    /// no permission).
    pub fn add(&self) -> Result<(), String> {
        run(&self.args("-A"))
    }

    /// Remove the rule (every copy of it).
    pub fn remove(&self) -> Result<(), String> {
        run(&self.args("-D"))?;
        while run(&self.args("-D")).is_ok() {}
        Ok(())
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let out = Command::new("nsenter")
        .args(args)
        .output()
        .map_err(|e| format!("nsenter: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nsenter {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether the process `pid` has a TCP socket listening on `port`, read
/// from its network namespace's `/proc/<pid>/net/tcp{,6}`. None when those
/// files cannot be read (the engine is elsewhere, or no permission).
pub fn listens(pid: i64, port: u16) -> Option<bool> {
    let mut readable = false;
    for file in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        readable = true;
        for line in text.lines().skip(1) {
            let mut f = line.split_whitespace();
            let (Some(_), Some(local), Some(_), Some(state)) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let lport = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if state == "0A" && lport == Some(port) {
                return Some(true);
            }
        }
    }
    readable.then_some(false)
}
