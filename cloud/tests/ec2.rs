//! The EC2 inventory against moto's EC2 server (no SSH hosts needed): a
//! launch that fails in the middle rolls back every instance already
//! started, the cap refuses before any launch, the sweep terminates what a
//! killed run left, and the run's security group and key pair go.
//!
//! Each test starts its own moto server on loopback (`moto_server` from
//! `DZTEST_MOTO_SERVER`, `~/.cache/distzero/moto-venv/bin/`, or PATH:
//! `scripts/ec2-standin.sh install-moto` installs it) and stops it after.
//! Without moto the tests say so and pass, unless `DZTEST_REQUIRE_MOTO=1`
//! (CI sets it) makes them fail. No test name contains "cloud": CI runs them.

use distzero_cloud::aws::{Credentials, Ec2Client};
use distzero_cloud::ec2::{self, Ec2Config, InstanceInfo, CONTROLLER_TAG, RUN_TAG};
use distzero_cloud::provider::ControllerRecord;
use distzero_cloud::{Ec2Inventory, Inventory};
mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::FaultProxy;

fn moto_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DZTEST_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".cache/distzero/moto-venv/bin/moto_server");
        if p.is_file() {
            return Some(p);
        }
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("moto_server"))
            .find(|p| p.is_file())
    })
}

/// A moto server of this test; stopped (and reaped) on drop.
struct Moto {
    child: Child,
    endpoint: String,
    _cleanup: distzero_real::cleanup::Registration,
}

impl Moto {
    /// None (after saying why) when moto is not installed and not required.
    fn start() -> Option<Moto> {
        let Some(bin) = moto_server() else {
            let msg = "moto is not installed: run `scripts/ec2-standin.sh install-moto` (a venv in ~/.cache/distzero/moto-venv) or set DZTEST_MOTO_SERVER";
            if std::env::var("DZTEST_REQUIRE_MOTO").as_deref() == Ok("1") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let pid = child.id();
        let cleanup = distzero_real::cleanup::register(format!("moto server {pid}"), move || {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        });
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}/"),
            _cleanup: cleanup,
        };
        let c = moto.client();
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(e) = c.call("DescribeRegions", &[]) {
            assert!(
                Instant::now() < deadline,
                "moto at {} did not answer within 60 s: {e}",
                moto.endpoint
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    fn client(&self) -> Ec2Client {
        client(&self.endpoint)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(endpoint: &str) -> Ec2Client {
    Ec2Client::new(
        endpoint.to_string(),
        "us-east-1".into(),
        Credentials {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: "test-secret".into(),
            session_token: None,
            source: "test".into(),
        },
    )
}

fn p(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// A recipe on moto: one of its images, a key pair made here, a security
/// group made for the run.
fn config(c: &Ec2Client, max_instances: usize) -> Ec2Config {
    let images = c
        .call("DescribeImages", &[p("Owner.1", "amazon")])
        .expect("DescribeImages");
    let image = images
        .items(&["imagesSet"])
        .first()
        .and_then(|i| i.get(&["imageId"]))
        .expect("moto lists an image")
        .to_string();
    let key = format!("dztest-{}", std::process::id());
    let _ = c.call("CreateKeyPair", &[p("KeyName", &key)]);
    Ec2Config {
        image,
        instance_type: "t3.micro".into(),
        subnet: None,
        security_group: None,
        key_name: Some(key),
        public_key: None,
        ingress_cidr: "10.0.0.0/8".into(),
        private_address: true,
        max_instances,
        boot_timeout: Duration::from_secs(20),
        user: "root".into(),
    }
}

/// The instances tagged with `run`, as moto reports them.
fn instances_of(c: &Ec2Client, run: &str) -> Vec<InstanceInfo> {
    ec2::describe(
        c,
        &[
            p("Filter.1.Name", &format!("tag:{RUN_TAG}")),
            p("Filter.1.Value.1", run),
        ],
    )
    .expect("DescribeInstances")
}

fn gone(state: &str) -> bool {
    matches!(state, "shutting-down" | "terminated")
}

fn run_id(what: &str) -> String {
    format!("dztest-{what}-{}", std::process::id())
}

#[test]
fn ec2_rollback_terminates_every_instance_started_when_a_launch_fails() {
    let Some(moto) = Moto::start() else { return };
    let direct = moto.client();
    let cfg = config(&direct, 8);
    // The third RunInstances fails: two instances are running by then.
    let proxy = FaultProxy::new(&moto.endpoint, 3);
    let run = run_id("rollback");
    let mut inv = Ec2Inventory::new(client(&proxy.endpoint), cfg, &run, None);
    let err = inv
        .acquire(&run, 3)
        .expect_err("the injected failure fails the acquire")
        .to_string();
    assert_eq!(proxy.runs.load(Ordering::SeqCst), 3, "three launches tried");
    let launched = inv.launched().to_vec();
    assert_eq!(
        launched.len(),
        2,
        "two instances started before the failure"
    );
    assert!(
        err.contains("InstanceLimitExceeded"),
        "the cause is named: {err}"
    );
    for id in &launched {
        assert!(err.contains(id.as_str()), "{id} is named: {err}");
    }
    // Moto itself (not through the proxy) says both are gone already,
    // before the inventory is dropped.
    let seen = instances_of(&direct, &run);
    assert_eq!(seen.len(), 2, "{seen:?}");
    for i in &seen {
        assert!(launched.contains(&i.id), "{i:?}");
        assert!(
            gone(&i.state),
            "instance {} is {} after the rollback",
            i.id,
            i.state
        );
        assert_eq!(i.tags.get(RUN_TAG), Some(&run));
    }
    // The security group made for the run goes with the inventory.
    let groups = |c: &Ec2Client| {
        c.call(
            "DescribeSecurityGroups",
            &[
                p("Filter.1.Name", &format!("tag:{RUN_TAG}")),
                p("Filter.1.Value.1", &run),
            ],
        )
        .expect("DescribeSecurityGroups")
        .items(&["securityGroupInfo"])
        .len()
    };
    assert_eq!(groups(&direct), 1, "a security group was made for the run");
    drop(inv);
    assert_eq!(groups(&direct), 0, "the run's security group is deleted");
    assert!(instances_of(&direct, &run).iter().all(|i| gone(&i.state)));
}

#[test]
fn ec2_release_and_drop_terminate_what_acquire_launched() {
    let Some(moto) = Moto::start() else { return };
    let direct = moto.client();
    // No SSH here: a proxy failing nothing, and acquire's SSH wait would
    // find no host, so this test launches through the API and checks that
    // a failed boot (no SSH within the timeout) rolls back too.
    let mut cfg = config(&direct, 8);
    cfg.boot_timeout = Duration::from_secs(2);
    let run = run_id("boot");
    let mut inv = Ec2Inventory::new(direct.clone(), cfg, &run, None);
    let started = Instant::now();
    let err = inv
        .acquire(&run, 2)
        .expect_err("no SSH answers at moto's addresses")
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(30), "bounded wait");
    assert!(
        err.contains("did not answer SSH within DISTZERO_EC2_BOOT_TIMEOUT"),
        "{err}"
    );
    let seen = instances_of(&direct, &run);
    assert_eq!(seen.len(), 2, "{seen:?}");
    for i in &seen {
        assert!(err.contains(i.id.as_str()), "{} named: {err}", i.id);
        assert!(gone(&i.state), "{} is {}", i.id, i.state);
    }
}

#[test]
fn ec2_cap_refuses_before_any_launch() {
    let Some(moto) = Moto::start() else { return };
    let direct = moto.client();
    let cfg = config(&direct, 2);
    let run = run_id("cap");
    let mut inv = Ec2Inventory::new(direct.clone(), cfg, &run, None);
    let err = inv.acquire(&run, 3).expect_err("over the cap").to_string();
    assert!(err.contains("DISTZERO_EC2_MAX_INSTANCES=2"), "{err}");
    assert!(instances_of(&direct, &run).is_empty(), "nothing launched");
}

#[test]
fn ec2_sweep_terminates_only_what_dead_controllers_left() {
    let Some(moto) = Moto::start() else { return };
    let c = moto.client();
    let cfg = config(&c, 8);
    let me = ControllerRecord::current();
    let dead = ControllerRecord {
        start: me.start + 1,
        ..me.clone()
    };
    let launch = |run: &str, controller: &ControllerRecord| -> String {
        let x = c
            .call(
                "RunInstances",
                &[
                    p("ImageId", &cfg.image),
                    p("MinCount", "1"),
                    p("MaxCount", "1"),
                    p("TagSpecification.1.ResourceType", "instance"),
                    p("TagSpecification.1.Tag.1.Key", RUN_TAG),
                    p("TagSpecification.1.Tag.1.Value", run),
                    p("TagSpecification.1.Tag.2.Key", CONTROLLER_TAG),
                    p("TagSpecification.1.Tag.2.Value", &controller.line()),
                ],
            )
            .expect("RunInstances");
        x.items(&["instancesSet"])[0]
            .get(&["instanceId"])
            .unwrap()
            .to_string()
    };
    let killed = launch("killed-run", &dead);
    let alive = launch("live-run", &me);
    let swept = ec2::sweep(&c).expect("sweep");
    assert_eq!(swept, vec![killed.clone()]);
    let state = |run: &str| instances_of(&c, run)[0].state.clone();
    assert!(gone(&state("killed-run")), "{}", state("killed-run"));
    assert_eq!(state("live-run"), "running");
    ec2::terminate(&c, &[alive]).unwrap();
    assert!(gone(&state("live-run")));
}

/// POST `body` to moto's own API at `path` (such as /moto-api/reset-auth).
fn moto_api(endpoint: &str, path: &str, body: &str) {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).expect("moto");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
}

#[test]
fn ec2_requests_carry_a_sigv4_signature_that_moto_verifies() {
    let Some(moto) = Moto::start() else { return };
    let open = moto.client();
    // A user with EC2 rights and an access key, made while moto checks
    // nothing yet (IAM's Query API, signed the same way).
    let iam = |action: &str, params: &[(String, String)]| {
        open.call_service("iam", "2010-05-08", action, params)
            .unwrap_or_else(|e| panic!("IAM {action}: {e}"))
    };
    iam("CreateUser", &[p("UserName", "dz")]);
    iam(
        "PutUserPolicy",
        &[
            p("UserName", "dz"),
            p("PolicyName", "ec2"),
            p(
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:*","Resource":"*"}]}"#,
            ),
        ],
    );
    let key = iam("CreateAccessKey", &[p("UserName", "dz")]);
    let id = key
        .get(&["CreateAccessKeyResult", "AccessKey", "AccessKeyId"])
        .expect("AccessKeyId")
        .to_string();
    let secret = key
        .get(&["CreateAccessKeyResult", "AccessKey", "SecretAccessKey"])
        .expect("SecretAccessKey")
        .to_string();
    // From now on moto checks every request's signature and rights.
    moto_api(&moto.endpoint, "/moto-api/reset-auth", "0");
    let with = |secret: &str| {
        Ec2Client::new(
            moto.endpoint.clone(),
            "us-east-1".into(),
            Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.to_string(),
                session_token: None,
                source: "test".into(),
            },
        )
    };
    let good = with(&secret);
    good.call("DescribeInstances", &[])
        .unwrap_or_else(|e| panic!("a correctly signed request is refused: {e}"));
    let bad = with("not-the-secret")
        .call("DescribeInstances", &[])
        .expect_err("a wrong secret is refused");
    // EC2 answers a bad signature with AuthFailure (other services:
    // SignatureDoesNotMatch).
    assert!(
        matches!(bad.code(), Some("AuthFailure" | "SignatureDoesNotMatch")),
        "{bad}"
    );
    let unknown = open
        .call("DescribeInstances", &[])
        .expect_err("an unknown key is refused");
    assert!(unknown.code().is_some(), "{unknown}");
}
