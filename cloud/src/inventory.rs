//! Where cloud machines come from.
//!
//! An [`Inventory`] hands out hosts reachable over SSH and takes them back.
//! [`StaticInventory`] is the first: a fixed list of existing hosts from
//! `DISTZERO_CLOUD_HOSTS`. A provisioning inventory (EC2, Kubernetes) would
//! launch instances tagged with the run id in `acquire`, terminate them in
//! `release`, and list the instances it may have left behind in `known`.

use distzero_core::{Error, Result, Settings};

/// One host reached over SSH.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Host {
    pub user: String,
    /// Name or IP address, as ssh and the controller dial it.
    pub addr: String,
    /// SSH port.
    pub port: u16,
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.addr.contains(':') {
            write!(f, "{}@[{}]:{}", self.user, self.addr, self.port)
        } else {
            write!(f, "{}@{}:{}", self.user, self.addr, self.port)
        }
    }
}

/// A source of hosts for the machines of a run.
pub trait Inventory: Send {
    /// One line for messages: what this inventory is.
    fn describe(&self) -> String;

    /// Hosts for `n` more machines of run `run_id` (a provisioning inventory
    /// launches them, tagged with the run id, and returns once they accept SSH).
    fn acquire(&mut self, run_id: &str, n: usize) -> Result<Vec<Host>>;

    /// Give hosts of `run_id` back (a provisioning inventory terminates
    /// them). Idempotent.
    fn release(&mut self, run_id: &str, hosts: &[Host]) -> Result<()>;

    /// Every host that may hold what earlier runs left, for the sweep at start.
    fn known(&self) -> Vec<Host>;
}

/// Existing hosts from the settings. Machine k of a run goes to host
/// `k mod N`: more machines than hosts share hosts (each agent has its own
/// port and folder), and concurrent runs share them too.
#[derive(Clone, Debug)]
pub struct StaticInventory {
    hosts: Vec<Host>,
    next: usize,
}

/// What to do when there is no inventory.
pub const NO_HOSTS_HELP: &str = "no cloud hosts: DISTZERO_CLOUD_HOSTS is empty. \
For a local stand-in run `sudo scripts/cloud-standin.sh run 6 -- cargo test cloud`; \
for real hosts set DISTZERO_CLOUD_HOSTS=[user@]host[:port],... and DISTZERO_CLOUD_SSH_KEY \
(in the environment or .env, see .env.template)";

impl StaticInventory {
    pub fn new(hosts: Vec<Host>) -> Result<StaticInventory> {
        if hosts.is_empty() {
            return Err(Error::Setting(NO_HOSTS_HELP.into()));
        }
        Ok(StaticInventory { hosts, next: 0 })
    }

    /// The hosts of `DISTZERO_CLOUD_HOSTS` (user from `DISTZERO_CLOUD_USER`
    /// when an entry names none).
    pub fn from_settings(settings: &Settings) -> Result<StaticInventory> {
        let hosts = settings
            .cloud_hosts()?
            .into_iter()
            .map(|(user, addr, port)| Host {
                user,
                addr: strip_brackets(&addr),
                port,
            })
            .collect();
        Self::new(hosts)
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }
}

/// `[fd00::1]` -> `fd00::1`.
fn strip_brackets(a: &str) -> String {
    a.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(a)
        .to_string()
}

impl Inventory for StaticInventory {
    fn describe(&self) -> String {
        format!(
            "static inventory of {} host(s) from DISTZERO_CLOUD_HOSTS",
            self.hosts.len()
        )
    }

    fn acquire(&mut self, _run_id: &str, n: usize) -> Result<Vec<Host>> {
        let out = (0..n)
            .map(|i| self.hosts[(self.next + i) % self.hosts.len()].clone())
            .collect();
        self.next += n;
        Ok(out)
    }

    fn release(&mut self, _run_id: &str, _hosts: &[Host]) -> Result<()> {
        Ok(())
    }

    fn known(&self) -> Vec<Host> {
        let mut v = self.hosts.clone();
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings> {
        let env: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_sources(&env, &BTreeMap::new(), None)
    }

    #[test]
    fn hosts_come_from_the_settings() {
        let s = settings(&[
            (
                "DISTZERO_CLOUD_HOSTS",
                "10.214.0.11, admin@h2:2222 ,[fd00::1]:22",
            ),
            ("DISTZERO_CLOUD_USER", "ubuntu"),
        ])
        .unwrap();
        let inv = StaticInventory::from_settings(&s).unwrap();
        assert_eq!(
            inv.hosts(),
            [
                Host {
                    user: "ubuntu".into(),
                    addr: "10.214.0.11".into(),
                    port: 22
                },
                Host {
                    user: "admin".into(),
                    addr: "h2".into(),
                    port: 2222
                },
                Host {
                    user: "ubuntu".into(),
                    addr: "fd00::1".into(),
                    port: 22
                },
            ]
        );
        assert_eq!(inv.hosts()[1].to_string(), "admin@h2:2222");
        assert_eq!(inv.hosts()[2].to_string(), "ubuntu@[fd00::1]:22");
    }

    #[test]
    fn no_hosts_says_what_to_do() {
        let e = StaticInventory::from_settings(&settings(&[]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("DISTZERO_CLOUD_HOSTS"), "{e}");
        assert!(
            e.contains("scripts/cloud-standin.sh run 6 -- cargo test cloud"),
            "{e}"
        );
        let e = settings(&[("DISTZERO_CLOUD_HOSTS", "a:notaport")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DISTZERO_CLOUD_HOSTS"), "{e}");
        let e = settings(&[("DISTZERO_CLOUD_HOSTS", "@host")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("[user@]host"), "{e}");
    }

    #[test]
    fn machines_go_round_robin_and_share_hosts_when_few() {
        let h = |a: &str| Host {
            user: "root".into(),
            addr: a.into(),
            port: 22,
        };
        let mut inv = StaticInventory::new(vec![h("a"), h("b")]).unwrap();
        let got: Vec<String> = (0..3)
            .flat_map(|_| inv.acquire("r", 1).unwrap())
            .map(|h| h.addr)
            .collect();
        assert_eq!(got, ["a", "b", "a"]);
        assert_eq!(inv.acquire("r", 2).unwrap(), vec![h("b"), h("a")]);
        assert_eq!(inv.known(), vec![h("a"), h("b")]);
        // Static hosts are shared, not owned: giving one back keeps it known
        // and in the rotation.
        inv.release("r", &[h("a")]).unwrap();
        assert_eq!(inv.known(), vec![h("a"), h("b")]);
        assert_eq!(inv.acquire("r", 2).unwrap(), vec![h("b"), h("a")]);
    }
}
