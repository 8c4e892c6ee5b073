//! [`Ec2Inventory`]: cloud machines launched on EC2 for a run and
//! terminated after it.
//!
//! - `acquire` launches one instance per machine (`RunInstances`: the image,
//!   type, subnet, security group and key pair of the settings), tagged
//!   `distzero-run=<run id>` and `distzero-controller=<this process>`
//!   ([`crate::provider::ControllerRecord`]), waits until it runs and answers
//!   SSH (bounded by `DISTZERO_EC2_BOOT_TIMEOUT`), and hands it to the
//!   [`crate::SshProvider`], which deploys as on any SSH host. A failure in
//!   the middle terminates the instances of that call at once and names
//!   them, with the cause; the provider's rollback then gives back the rest.
//! - `release` terminates; dropping the inventory terminates whatever is
//!   left, then deletes the security group and key pair made for the run
//!   (when the settings named none). An interrupt (SIGINT, SIGTERM, SIGHUP)
//!   terminates the run's instances through `distzero_real::cleanup`.
//! - A run killed outright (SIGKILL) is swept at the next start in this
//!   process's machine: instances, security groups and key pairs tagged by a
//!   controller of this machine that is gone are terminated or deleted
//!   (once per process and endpoint).
//! - At most `DISTZERO_EC2_MAX_INSTANCES` instances per run; missing account
//!   settings (image, region, credentials, key) fail before any call.

use crate::aws::{self, CallError, Ec2Client, Xml};
use crate::inventory::{Host, Inventory};
use crate::provider::ControllerRecord;
use crate::ssh::Ssh;
use distzero_core::{Error, Result, Settings};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tag naming the run on everything a run creates.
pub const RUN_TAG: &str = "distzero-run";
/// Tag naming the controller process (its [`ControllerRecord`] line).
pub const CONTROLLER_TAG: &str = "distzero-controller";
/// Longest wait between two looks at a booting instance.
const POLL_MAX: Duration = Duration::from_secs(3);
/// How long the drop waits for instances to be gone before it deletes the
/// security group made for the run (AWS refuses while one still uses it).
const TERMINATED_WAIT: Duration = Duration::from_secs(180);

/// What a run's instances are made of, from the settings.
#[derive(Clone, Debug)]
pub struct Ec2Config {
    pub image: String,
    pub instance_type: String,
    pub subnet: Option<String>,
    pub security_group: Option<String>,
    pub key_name: Option<String>,
    /// The public key imported for the run when `key_name` is None.
    pub public_key: Option<String>,
    pub ingress_cidr: String,
    pub private_address: bool,
    pub max_instances: usize,
    pub boot_timeout: Duration,
    pub user: String,
}

fn opt(settings: &Settings, name: &str) -> Option<String> {
    Some(settings.raw(name).to_string()).filter(|v| !v.is_empty())
}

fn valid_cidr(c: &str) -> bool {
    let Some((ip, bits)) = c.split_once('/') else {
        return false;
    };
    ip.parse::<std::net::Ipv4Addr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 32)
}

/// The client and the instances' recipe of the settings. Every missing or
/// bad account setting is named in one error, before any call is made.
pub fn from_settings(settings: &Settings) -> Result<(Ec2Client, Ec2Config)> {
    let mut problems: Vec<String> = Vec::new();
    let image = opt(settings, "DISTZERO_EC2_IMAGE");
    if image.is_none() {
        problems.push("DISTZERO_EC2_IMAGE is unset: set the AMI id of the instances (a Linux with sshd and iptables, such as a Debian 12 AMI of your region)".into());
    }
    let region = aws::region(settings);
    if region.is_none() {
        problems.push(
            "no AWS region: set AWS_REGION, or region in your profile of ~/.aws/config".into(),
        );
    }
    let credentials = match aws::credentials(settings) {
        Ok(Some(c)) => Some(c),
        Ok(None) => {
            problems.push("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or aws_access_key_id and aws_secret_access_key in your profile (AWS_PROFILE, default: default) of ~/.aws/credentials".into());
            None
        }
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let key_name = opt(settings, "DISTZERO_EC2_KEY_NAME");
    let mut public_key = None;
    if key_name.is_none() {
        match settings.cloud_ssh_key() {
            None => problems.push("DISTZERO_EC2_KEY_NAME and DISTZERO_CLOUD_SSH_KEY are both unset: name an EC2 key pair (and its private key in DISTZERO_CLOUD_SSH_KEY), or set DISTZERO_CLOUD_SSH_KEY alone to import its .pub for the run".into()),
            Some(k) => {
                let mut p = k.clone().into_os_string();
                p.push(".pub");
                let p = PathBuf::from(p);
                match std::fs::read_to_string(&p) {
                    Ok(t) if t.trim().starts_with("ssh-") || t.trim().starts_with("ecdsa-") => {
                        public_key = Some(t.trim().to_string())
                    }
                    _ => problems.push(format!(
                        "DISTZERO_EC2_KEY_NAME is unset and {} is not a readable OpenSSH public key: make it (ssh-keygen -y -f {} > {}) or name an EC2 key pair in DISTZERO_EC2_KEY_NAME",
                        p.display(),
                        k.display(),
                        p.display()
                    )),
                }
            }
        }
    }
    let security_group = opt(settings, "DISTZERO_EC2_SECURITY_GROUP");
    let ingress_cidr = settings.raw("DISTZERO_EC2_INGRESS_CIDR").to_string();
    if security_group.is_none() && !valid_cidr(&ingress_cidr) {
        problems.push(format!("DISTZERO_EC2_INGRESS_CIDR={ingress_cidr:?} is not valid: it accepts an IPv4 block such as 203.0.113.7/32 or 0.0.0.0/0"));
    }
    let private_address = settings.ec2_address_is_private()?;
    if !private_address && settings.raw("DISTZERO_CLOUD_BIND").is_empty() {
        problems.push("DISTZERO_EC2_ADDRESS=public needs DISTZERO_CLOUD_BIND=0.0.0.0 (an instance's public address is not on the instance, so agents cannot listen on it); or set DISTZERO_EC2_ADDRESS=private when the controller is inside the VPC".into());
    }
    let endpoint = match &region {
        Some(r) => match aws::ec2_endpoint(settings, r) {
            Ok(e) => Some(e),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        },
        None => None,
    };
    if !problems.is_empty() {
        return Err(Error::Setting(format!(
            "cloud mode on EC2 (DISTZERO_CLOUD_PROVIDER=ec2) cannot start; nothing was launched: {}",
            problems.join("; ")
        )));
    }
    let (Some(image), Some(region), Some(credentials), Some(endpoint)) =
        (image, region, credentials, endpoint)
    else {
        return Err(Error::Setting("EC2 settings incomplete".into()));
    };
    let cfg = Ec2Config {
        image,
        instance_type: settings.raw("DISTZERO_EC2_INSTANCE_TYPE").to_string(),
        subnet: opt(settings, "DISTZERO_EC2_SUBNET"),
        security_group,
        key_name,
        public_key,
        ingress_cidr,
        private_address,
        max_instances: settings.ec2_max_instances()?,
        boot_timeout: settings.ec2_boot_timeout()?,
        user: settings.raw("DISTZERO_CLOUD_USER").to_string(),
    };
    Ok((Ec2Client::new(endpoint, region, credentials), cfg))
}

/// What a run holds on the account: what the clean-up on interrupt and the
/// drop remove.
#[derive(Debug, Default)]
struct Held {
    /// Live instances: id -> its host once known.
    instances: BTreeMap<String, Option<Host>>,
    /// A key pair imported for the run.
    key: Option<String>,
    /// A security group made for the run (id).
    group: Option<String>,
}

/// EC2 instances for the machines of one run.
pub struct Ec2Inventory {
    client: Ec2Client,
    cfg: Ec2Config,
    run_id: String,
    controller: String,
    /// Probes that a booted instance takes our SSH login.
    ssh: Option<Ssh>,
    held: Arc<Mutex<Held>>,
    /// Every instance this run launched (the cap; the wait before the
    /// security group can go).
    launched: Vec<String>,
    /// The key pair and security group in use, once prepared.
    prepared: Option<(String, Option<String>)>,
    cleanup: Option<distzero_real::cleanup::Registration>,
    finished: bool,
}

fn ec2_err(what: &str, e: CallError) -> Error {
    Error::Infra(format!("EC2 {what}: {e}"))
}

fn tags(spec: usize, resource: &str, run: &str, controller: &str) -> Vec<(String, String)> {
    let p = format!("TagSpecification.{spec}");
    vec![
        (format!("{p}.ResourceType"), resource.to_string()),
        (format!("{p}.Tag.1.Key"), RUN_TAG.to_string()),
        (format!("{p}.Tag.1.Value"), run.to_string()),
        (format!("{p}.Tag.2.Key"), CONTROLLER_TAG.to_string()),
        (format!("{p}.Tag.2.Value"), controller.to_string()),
        (format!("{p}.Tag.3.Key"), "Name".to_string()),
        (format!("{p}.Tag.3.Value"), format!("distzero-{run}")),
    ]
}

fn p(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// The tags of an item (`tagSet`).
fn tag_map(item: &Xml) -> BTreeMap<String, String> {
    item.items(&["tagSet"])
        .iter()
        .filter_map(|t| Some((t.get(&["key"])?.to_string(), t.get(&["value"])?.to_string())))
        .collect()
}

/// Whether the controller named by these tags is gone (ran on this machine).
fn dead(tags: &BTreeMap<String, String>) -> bool {
    tags.get(CONTROLLER_TAG)
        .and_then(|l| ControllerRecord::parse(l))
        .and_then(|r| r.is_dead_here(&ControllerRecord::current().boot_id))
        == Some(true)
}

/// Terminate `ids` (one call). Names them on failure.
pub fn terminate(client: &Ec2Client, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let params: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (format!("InstanceId.{}", i + 1), id.clone()))
        .collect();
    client.call("TerminateInstances", &params).map(|_| ()).map_err(|e| {
        Error::Infra(format!(
            "EC2 TerminateInstances of {} failed: {e}; they carry the tag {RUN_TAG}: terminate them in the console, or run again (the start sweeps what dead runs left)",
            ids.join(", ")
        ))
    })
}

/// Instances (id, state, private address, public address, tags) by filter.
pub fn describe(
    client: &Ec2Client,
    params: &[(String, String)],
) -> std::result::Result<Vec<InstanceInfo>, CallError> {
    let x = client.call("DescribeInstances", params)?;
    let mut out = Vec::new();
    for r in x.items(&["reservationSet"]) {
        for i in r.items(&["instancesSet"]) {
            out.push(InstanceInfo {
                id: i.get(&["instanceId"]).unwrap_or_default().to_string(),
                state: i
                    .get(&["instanceState", "name"])
                    .unwrap_or_default()
                    .to_string(),
                private_ip: i.get(&["privateIpAddress"]).map(str::to_string),
                public_ip: i.get(&["ipAddress"]).map(str::to_string),
                reason: i
                    .get(&["stateReason", "message"])
                    .or(i.get(&["reason"]))
                    .unwrap_or_default()
                    .to_string(),
                tags: tag_map(i),
            });
        }
    }
    Ok(out)
}

/// One instance as DescribeInstances gives it.
#[derive(Clone, Debug)]
pub struct InstanceInfo {
    pub id: String,
    pub state: String,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub reason: String,
    pub tags: BTreeMap<String, String>,
}

/// Terminate the instances, delete the security groups and key pairs that
/// runs of dead controllers of this machine left. Returns the instances
/// terminated.
pub fn sweep(client: &Ec2Client) -> Result<Vec<String>> {
    let live_states = ["pending", "running", "stopping", "stopped"];
    let mut params = vec![
        p("Filter.1.Name", "tag-key"),
        p("Filter.1.Value.1", RUN_TAG),
    ];
    params.push(p("Filter.2.Name", "instance-state-name"));
    for (i, s) in live_states.iter().enumerate() {
        params.push((format!("Filter.2.Value.{}", i + 1), s.to_string()));
    }
    let found = describe(client, &params).map_err(|e| ec2_err("DescribeInstances (sweep)", e))?;
    let dead_ids: Vec<String> = found
        .iter()
        .filter(|i| dead(&i.tags))
        .map(|i| i.id.clone())
        .collect();
    if !dead_ids.is_empty() {
        tracing::info!(instances = ?dead_ids, "sweep: terminating the instances of dead runs");
        terminate(client, &dead_ids)?;
    }
    // Security groups and key pairs of dead runs: best effort (a group
    // still used by a terminating instance goes at a later sweep).
    let filter = [
        p("Filter.1.Name", "tag-key"),
        p("Filter.1.Value.1", RUN_TAG),
    ];
    match client.call("DescribeSecurityGroups", &filter) {
        Ok(x) => {
            for g in x.items(&["securityGroupInfo"]) {
                if let (true, Some(id)) = (dead(&tag_map(g)), g.get(&["groupId"])) {
                    if let Err(e) = client.call("DeleteSecurityGroup", &[p("GroupId", id)]) {
                        tracing::warn!(group = id, error = %e, "sweep: security group of a dead run not deleted yet");
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "sweep: listing security groups failed"),
    }
    match client.call("DescribeKeyPairs", &filter) {
        Ok(x) => {
            for k in x.items(&["keySet"]) {
                if let (true, Some(name)) = (dead(&tag_map(k)), k.get(&["keyName"])) {
                    if let Err(e) = client.call("DeleteKeyPair", &[p("KeyName", name)]) {
                        tracing::warn!(key = name, error = %e, "sweep: key pair of a dead run not deleted");
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "sweep: listing key pairs failed"),
    }
    Ok(dead_ids)
}

impl Ec2Inventory {
    /// The inventory of run `run_id` from the settings (see [`from_settings`]);
    /// `ssh` probes that instances take the login before they are handed
    /// out. Sweeps what dead runs left (once per process and endpoint).
    pub fn from_settings(settings: &Settings, run_id: &str, ssh: Option<Ssh>) -> Result<Self> {
        let (client, cfg) = from_settings(settings)?;
        Ok(Self::new(client, cfg, run_id, ssh))
    }

    pub fn new(client: Ec2Client, cfg: Ec2Config, run_id: &str, ssh: Option<Ssh>) -> Self {
        static SWEPT: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
        let first = SWEPT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(format!("{} {}", client.endpoint(), client.region()));
        if first {
            if let Err(e) = sweep(&client) {
                tracing::warn!(error = %e, "sweep of dead runs' instances skipped");
            }
        }
        Ec2Inventory {
            client,
            cfg,
            run_id: run_id.to_string(),
            controller: ControllerRecord::current().line(),
            ssh,
            held: Arc::default(),
            launched: Vec::new(),
            prepared: None,
            cleanup: None,
            finished: false,
        }
    }

    /// The client (tests ask the API what is left).
    pub fn client(&self) -> &Ec2Client {
        &self.client
    }

    /// The ids of the instances this run launched so far.
    pub fn launched(&self) -> &[String] {
        &self.launched
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key pair and security group of the run: from the settings, or
    /// made now (tagged with the run) and recorded for removal.
    fn prepare(&mut self) -> Result<(String, Option<String>)> {
        if let Some(p) = &self.prepared {
            return Ok(p.clone());
        }
        if self.cleanup.is_none() {
            let (client, held, run) = (self.client.clone(), self.held.clone(), self.run_id.clone());
            self.cleanup = Some(distzero_real::cleanup::register(
                format!("the EC2 instances of run {run}"),
                move || {
                    let h = held.lock().unwrap_or_else(|e| e.into_inner());
                    let ids: Vec<String> = h.instances.keys().cloned().collect();
                    if let Err(e) = terminate(&client, &ids) {
                        eprintln!("distzero-cloud: {e}");
                    }
                    if let Some(k) = &h.key {
                        let _ = client.call("DeleteKeyPair", &[p("KeyName", k)]);
                    }
                    // The security group goes at the next start's sweep:
                    // AWS refuses while the instances are shutting down.
                },
            ));
        }
        let name = format!("distzero-{}", self.run_id);
        let key = match &self.cfg.key_name {
            Some(k) => k.clone(),
            None => {
                let material = self.cfg.public_key.clone().unwrap_or_default();
                let mut params = vec![
                    p("KeyName", &name),
                    p("PublicKeyMaterial", &base64(material.as_bytes())),
                ];
                params.extend(tags(1, "key-pair", &self.run_id, &self.controller));
                self.client
                    .call("ImportKeyPair", &params)
                    .map_err(|e| ec2_err(&format!("ImportKeyPair {name}"), e))?;
                self.held().key = Some(name.clone());
                name.clone()
            }
        };
        let group = match &self.cfg.security_group {
            Some(g) => Some(g.clone()),
            None => {
                let mut params = vec![
                    p("GroupName", &name),
                    p("GroupDescription", &format!("distzero run {}", self.run_id)),
                ];
                if let Some(subnet) = &self.cfg.subnet {
                    let x = self
                        .client
                        .call("DescribeSubnets", &[p("SubnetId.1", subnet)])
                        .map_err(|e| {
                            ec2_err(
                                &format!("DescribeSubnets {subnet} (DISTZERO_EC2_SUBNET)"),
                                e,
                            )
                        })?;
                    let vpc = x
                        .items(&["subnetSet"])
                        .first()
                        .and_then(|s| s.get(&["vpcId"]))
                        .map(str::to_string)
                        .ok_or_else(|| {
                            Error::Setting(format!(
                                "DISTZERO_EC2_SUBNET={subnet}: EC2 knows no such subnet"
                            ))
                        })?;
                    params.push(p("VpcId", &vpc));
                }
                params.extend(tags(1, "security-group", &self.run_id, &self.controller));
                let x = self
                    .client
                    .call("CreateSecurityGroup", &params)
                    .map_err(|e| ec2_err(&format!("CreateSecurityGroup {name}"), e))?;
                let id = x
                    .get(&["groupId"])
                    .filter(|g| !g.is_empty())
                    .ok_or_else(|| {
                        Error::Infra("EC2 CreateSecurityGroup: no groupId in the answer".into())
                    })?
                    .to_string();
                self.held().group = Some(id.clone());
                let cidr = &self.cfg.ingress_cidr;
                let mut rule = vec![p("GroupId", &id)];
                for (i, (from, to)) in [
                    (22u16, 22u16),
                    (
                        crate::provider::PORT_RANGE.start,
                        crate::provider::PORT_RANGE.end - 1,
                    ),
                ]
                .iter()
                .enumerate()
                {
                    let k = format!("IpPermissions.{}", i + 1);
                    rule.push((format!("{k}.IpProtocol"), "tcp".into()));
                    rule.push((format!("{k}.FromPort"), from.to_string()));
                    rule.push((format!("{k}.ToPort"), to.to_string()));
                    rule.push((format!("{k}.IpRanges.1.CidrIp"), cidr.clone()));
                }
                self.client
                    .call("AuthorizeSecurityGroupIngress", &rule)
                    .map_err(|e| ec2_err(&format!("AuthorizeSecurityGroupIngress {id}"), e))?;
                Some(id)
            }
        };
        self.prepared = Some((key.clone(), group.clone()));
        Ok((key, group))
    }

    /// Launch one instance; its id.
    fn run_instance(&mut self, key: &str, group: Option<&str>) -> Result<String> {
        let n = self.launched.len();
        let mut params = vec![
            p("ImageId", &self.cfg.image),
            p("InstanceType", &self.cfg.instance_type),
            p("MinCount", "1"),
            p("MaxCount", "1"),
            p("KeyName", key),
            p("InstanceInitiatedShutdownBehavior", "terminate"),
        ];
        let token: String = format!("{}-{n}", self.run_id)
            .chars()
            .rev()
            .take(64)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        params.push(p("ClientToken", &token));
        if let Some(s) = &self.cfg.subnet {
            params.push(p("SubnetId", s));
        }
        if let Some(g) = group {
            params.push(p("SecurityGroupId.1", g));
        }
        params.extend(tags(1, "instance", &self.run_id, &self.controller));
        let x = self.client.call("RunInstances", &params).map_err(|e| {
            ec2_err(
                &format!("RunInstances (instance {} of run {})", n + 1, self.run_id),
                e,
            )
        })?;
        let id = x
            .items(&["instancesSet"])
            .first()
            .and_then(|i| i.get(&["instanceId"]))
            .filter(|i| !i.is_empty())
            .map(str::to_string)
            .ok_or_else(|| Error::Infra("EC2 RunInstances: no instanceId in the answer".into()))?;
        self.launched.push(id.clone());
        self.held().instances.insert(id.clone(), None);
        tracing::info!(run = %self.run_id, instance = %id, "instance launched");
        Ok(id)
    }

    /// Wait until `id` runs with an address; its host.
    fn wait_running(&self, id: &str, deadline: Instant) -> Result<Host> {
        let mut pause = Duration::from_millis(100);
        let mut last: String;
        loop {
            match describe(&self.client, &[p("InstanceId.1", id)]) {
                Ok(v) => match v.first() {
                    Some(i) if i.state == "running" => {
                        let addr = if self.cfg.private_address {
                            i.private_ip.clone()
                        } else {
                            i.public_ip.clone()
                        };
                        let Some(addr) = addr.filter(|a| !a.is_empty()) else {
                            return Err(Error::Infra(format!(
                                "instance {id} runs with no {} address: {}",
                                if self.cfg.private_address {
                                    "private"
                                } else {
                                    "public"
                                },
                                if self.cfg.private_address {
                                    "check DISTZERO_EC2_SUBNET"
                                } else {
                                    "launch in a subnet that assigns public addresses (DISTZERO_EC2_SUBNET), or set DISTZERO_EC2_ADDRESS=private from inside the VPC"
                                }
                            )));
                        };
                        return Ok(Host {
                            user: self.cfg.user.clone(),
                            addr,
                            port: 22,
                        });
                    }
                    Some(i) if i.state == "pending" => last = "pending".into(),
                    Some(i) => {
                        return Err(Error::Infra(format!(
                            "instance {id} is {} instead of running: {}",
                            i.state,
                            if i.reason.is_empty() {
                                "no reason given"
                            } else {
                                &i.reason
                            }
                        )))
                    }
                    None => last = "not listed yet".into(),
                },
                // Eventual consistency: a new id may be unknown for a moment.
                Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => last = e.to_string(),
                Err(e) => return Err(ec2_err(&format!("DescribeInstances {id}"), e)),
            }
            if Instant::now() >= deadline {
                return Err(Error::Infra(format!(
                    "instance {id} did not run within DISTZERO_EC2_BOOT_TIMEOUT={}s (last: {last})",
                    self.cfg.boot_timeout.as_secs()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// Wait until `host` answers SSH (the banner, then our login).
    fn wait_ssh(&self, id: &str, host: &Host, deadline: Instant) -> Result<()> {
        let mut pause = Duration::from_millis(100);
        let mut last;
        loop {
            last = match banner(host) {
                Err(e) => e,
                Ok(()) => match &self.ssh {
                    None => return Ok(()),
                    Some(ssh) => match ssh.run(host, "true", b"", Duration::from_secs(20)) {
                        Ok(o) if o.code == 0 => return Ok(()),
                        Ok(o) => format!("`true` exited {}: {}", o.code, o.text()),
                        Err(e) => e.to_string(),
                    },
                },
            };
            if Instant::now() >= deadline {
                return Err(Error::Infra(format!(
                    "instance {id} ({host}) did not answer SSH within DISTZERO_EC2_BOOT_TIMEOUT={}s: {last}",
                    self.cfg.boot_timeout.as_secs()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// Terminate `ids` (a failed acquire), forget them; the error to report.
    fn roll_back(&mut self, ids: &[String], cause: Error) -> Error {
        if ids.is_empty() {
            return cause;
        }
        let result = terminate(&self.client, ids);
        let mut held = self.held();
        for id in ids {
            held.instances.remove(id);
        }
        drop(held);
        match result {
            Ok(()) => Error::Infra(format!(
                "{cause}; rolled back: terminated instance(s) {} of run {}",
                ids.join(", "),
                self.run_id
            )),
            Err(e) => Error::Infra(format!("{cause}; the rollback failed: {e}")),
        }
    }

    /// Terminate everything still held, wait (bounded) until the run's
    /// instances are gone, delete the key pair and security group made for
    /// the run. Returns the first error.
    pub fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let mut first: Option<Error> = None;
        let ids: Vec<String> = self.held().instances.keys().cloned().collect();
        let terminated = match terminate(&self.client, &ids) {
            Ok(()) => {
                self.held().instances.clear();
                true
            }
            Err(e) => {
                first.get_or_insert(e);
                false
            }
        };
        let (key, group) = {
            let h = self.held();
            (h.key.clone(), h.group.clone())
        };
        if let Some(k) = key {
            match self.client.call("DeleteKeyPair", &[p("KeyName", &k)]) {
                Ok(_) => self.held().key = None,
                Err(e) => {
                    first.get_or_insert(ec2_err(&format!("DeleteKeyPair {k}"), e));
                }
            }
        }
        // A group still used by a live instance cannot go: leave it to the
        // next start's sweep rather than wait for nothing.
        if let (Some(g), true) = (group, terminated) {
            let deadline = Instant::now() + TERMINATED_WAIT;
            let mut pause = Duration::from_millis(100);
            let mut outcome;
            loop {
                outcome = self.client.call("DeleteSecurityGroup", &[p("GroupId", &g)]);
                match &outcome {
                    Err(e)
                        if e.code() == Some("DependencyViolation") && Instant::now() < deadline =>
                    {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                    _ => break,
                }
            }
            match outcome {
                Ok(_) => self.held().group = None,
                Err(e) => {
                    first.get_or_insert(ec2_err(
                        &format!("DeleteSecurityGroup {g} (tagged {RUN_TAG}={}; the next start's sweep retries)", self.run_id),
                        e,
                    ));
                }
            }
        }
        self.cleanup = None;
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Connect to the host's SSH port and read its banner (short deadlines).
fn banner(host: &Host) -> std::result::Result<(), String> {
    use std::io::Read;
    let ip: std::net::IpAddr = host
        .addr
        .parse()
        .map_err(|_| format!("{} is not an IP address", host.addr))?;
    let addr = SocketAddr::new(ip, host.port);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf)
        .map_err(|e| format!("reading the SSH banner of {addr}: {e}"))?;
    if &buf != b"SSH-" {
        return Err(format!("{addr} does not speak SSH"));
    }
    Ok(())
}

/// Standard base64 with padding (the key material of ImportKeyPair).
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

impl Inventory for Ec2Inventory {
    fn describe(&self) -> String {
        format!(
            "EC2 at {} ({}): {} of {}, at most {} instance(s) per run",
            self.client.endpoint(),
            self.client.region(),
            self.cfg.instance_type,
            self.cfg.image,
            self.cfg.max_instances
        )
    }

    fn acquire(&mut self, run_id: &str, n: usize) -> Result<Vec<Host>> {
        if run_id != self.run_id {
            return Err(Error::Unsupported(format!(
                "this EC2 inventory serves run {}, not {run_id}",
                self.run_id
            )));
        }
        if self.finished {
            return Err(Error::Unsupported(format!(
                "the EC2 instances of run {run_id} were released"
            )));
        }
        if self.launched.len() + n > self.cfg.max_instances {
            return Err(Error::Setting(format!(
                "run {run_id} needs {} EC2 instance(s), more than DISTZERO_EC2_MAX_INSTANCES={}: raise it, or use fewer machines; nothing more was launched",
                self.launched.len() + n,
                self.cfg.max_instances
            )));
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let (key, group) = self.prepare()?;
        let deadline = Instant::now() + self.cfg.boot_timeout;
        let mut batch: Vec<String> = Vec::new();
        for _ in 0..n {
            match self.run_instance(&key, group.as_deref()) {
                Ok(id) => batch.push(id),
                Err(e) => return Err(self.roll_back(&batch, e)),
            }
        }
        let mut hosts = Vec::new();
        for id in batch.clone() {
            let host = match self
                .wait_running(&id, deadline)
                .and_then(|h| self.wait_ssh(&id, &h, deadline).map(|()| h))
            {
                Ok(h) => h,
                Err(e) => return Err(self.roll_back(&batch, e)),
            };
            tracing::info!(run = %self.run_id, instance = %id, %host, "instance answers SSH");
            self.held().instances.insert(id, Some(host.clone()));
            hosts.push(host);
        }
        Ok(hosts)
    }

    fn release(&mut self, _run_id: &str, hosts: &[Host]) -> Result<()> {
        let ids: Vec<String> = {
            let h = self.held();
            h.instances
                .iter()
                .filter(|(_, host)| host.as_ref().is_some_and(|x| hosts.contains(x)))
                .map(|(id, _)| id.clone())
                .collect()
        };
        terminate(&self.client, &ids)?;
        let mut h = self.held();
        for id in &ids {
            h.instances.remove(id);
        }
        if !ids.is_empty() {
            tracing::info!(run = %self.run_id, instances = ?ids, "instances terminated");
        }
        Ok(())
    }

    fn known(&self) -> Vec<Host> {
        let h = self.held();
        let mut v: Vec<Host> = h.instances.values().flatten().cloned().collect();
        v.sort();
        v.dedup();
        v
    }
}

impl Drop for Ec2Inventory {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            eprintln!(
                "distzero-cloud: cleaning up the EC2 resources of run {} failed: {e}",
                self.run_id
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(pairs).unwrap()
    }

    #[test]
    fn missing_account_settings_are_all_named_before_any_call() {
        let e = from_settings(&settings(&[("HOME", "/nonexistent")]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        for what in [
            "nothing was launched",
            "DISTZERO_EC2_IMAGE",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "DISTZERO_EC2_KEY_NAME",
            "DISTZERO_CLOUD_BIND=0.0.0.0",
        ] {
            assert!(e.contains(what), "{what} in {e}");
        }
        let ok = [
            ("HOME", "/nonexistent"),
            ("DISTZERO_EC2_IMAGE", "ami-1"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("DISTZERO_EC2_KEY_NAME", "mine"),
            ("DISTZERO_EC2_ADDRESS", "private"),
        ];
        let (client, cfg) = from_settings(&settings(&ok)).unwrap();
        assert_eq!(client.endpoint(), "https://ec2.eu-west-1.amazonaws.com/");
        assert_eq!(cfg.key_name.as_deref(), Some("mine"));
        assert_eq!(cfg.max_instances, 8);
        let mut bad = ok.to_vec();
        bad.push(("DISTZERO_EC2_INGRESS_CIDR", "everyone"));
        let e = from_settings(&settings(&bad))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("DISTZERO_EC2_INGRESS_CIDR"), "{e}");
        let mut bad = ok.to_vec();
        bad.retain(|(k, _)| *k != "DISTZERO_EC2_KEY_NAME");
        bad.push(("DISTZERO_CLOUD_SSH_KEY", "/nonexistent/id"));
        let e = from_settings(&settings(&bad))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("/nonexistent/id.pub"), "{e}");
        let e = Settings::from_sources(
            &[("DISTZERO_EC2_MAX_INSTANCES".to_string(), "0".to_string())].into(),
            &BTreeMap::new(),
            None,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("DISTZERO_EC2_MAX_INSTANCES"), "{e}");
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
