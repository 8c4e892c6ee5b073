//! Cloud mode on EC2 instances, end to end: a launch that fails while
//! earlier machines are already deployed (agents running on instances
//! reached over SSH) rolls the whole run back: every instance is
//! terminated, as moto then reports.
//!
//! Needs the EC2 stand-in (moto plus SSH hosts at its instances'
//! addresses):
//!
//!     sudo scripts/ec2-standin.sh run -- cargo test -p distzero-cloud --test cloud_ec2
//!
//! The name contains `cloud`, so CI (`--skip cloud`) leaves it out.

mod support;

use distzero::provider::Provider;
use distzero::remote::{new_run_id, run_log_dir, RemoteCluster};
use distzero::{Cluster, Mode, Settings};
use distzero_cloud::aws::{Credentials, Ec2Client};
use distzero_cloud::ec2::{self, RUN_TAG};
use distzero_cloud::SshProvider;
use std::sync::atomic::Ordering;
use support::FaultProxy;

#[test]
fn cloud_ec2_failed_launch_rolls_back_every_deployed_instance() {
    let mut s = Settings::load().expect("settings");
    assert_eq!(
        s.cloud_provider().expect("DISTZERO_CLOUD_PROVIDER"),
        "ec2",
        "this test needs the EC2 stand-in: sudo scripts/ec2-standin.sh run -- cargo test -p distzero-cloud --test cloud_ec2"
    );
    let moto = s.raw("DISTZERO_EC2_ENDPOINT").to_string();
    // The third machine's RunInstances fails.
    let proxy = FaultProxy::new(&moto, 3);
    s.set("DISTZERO_EC2_ENDPOINT", proxy.endpoint.clone())
        .unwrap();
    let test = "cloud_ec2_failed_launch_rolls_back";
    let run_id = new_run_id();
    let log_dir = run_log_dir(&s, test, Mode::Cloud, &run_id);
    let provider = SshProvider::for_run(&s, &run_id, &log_dir).expect("provider");
    let mut cluster = RemoteCluster::with_run(
        Box::new(provider) as Box<dyn Provider>,
        test,
        &run_id,
        &log_dir,
        &s,
    )
    .expect("cluster");
    let c: &mut dyn Cluster = &mut cluster;
    let a = c.add_machine().expect("machine 0 deploys");
    let b = c.add_machine().expect("machine 1 deploys");
    assert_ne!(a, b);
    let err = c
        .add_machine()
        .expect_err("the injected launch failure")
        .to_string();
    assert!(err.contains("InstanceLimitExceeded"), "cause named: {err}");
    assert!(err.contains("m2"), "machine named: {err}");
    assert_eq!(proxy.runs.load(Ordering::SeqCst), 3);
    drop(cluster);
    // Moto, asked directly: both instances of the run are terminated.
    let direct = Ec2Client::new(
        moto,
        "us-east-1".into(),
        Credentials {
            access_key_id: "standin".into(),
            secret_access_key: "standin".into(),
            session_token: None,
            source: "test".into(),
        },
    );
    let seen = ec2::describe(
        &direct,
        &[
            ("Filter.1.Name".into(), format!("tag:{RUN_TAG}")),
            ("Filter.1.Value.1".into(), run_id.clone()),
        ],
    )
    .expect("DescribeInstances");
    assert_eq!(seen.len(), 2, "{seen:?}");
    for i in &seen {
        assert!(
            matches!(i.state.as_str(), "terminated" | "shutting-down"),
            "instance {} is {} after the rollback",
            i.id,
            i.state
        );
    }
}
