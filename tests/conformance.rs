//! The delivery-contract conformance suite (`distzero::conformance`), once
//! per mode: `cargo test --test conformance simulated` (or `loopback`,
//! `virtual`, `cloud`). Each probe fails naming the clause it saw broken.

use distzero::conformance::*;
use distzero::sim::{SimCluster, SimConfig};
use distzero::Cluster;

distzero::workflow_tests! {
    registry: distzero::conformance::registry(),
    tests: [
    fifo_when_latency_drops_mid_flight,
    fifo_under_uniform_latency,
    cut_loses_in_flight_even_if_healed,
    receiver_crash_loses_in_flight,
    mail_sent_while_down_never_reaches_next_life,
    sender_crash_loses_in_flight,
    no_message_before_on_start_after_restart,
    release_delivers_in_order_before_later_mail,
    heal_drops_what_a_hold_queued,
    pause_then_resume_delivers_in_order,
    same_machine_in_order_and_not_cut,
    self_link_faults_refused,
    ],
}

/// Every probe of `probes()` is instantiated above (a new probe is not
/// forgotten here).
#[test]
fn every_probe_is_instantiated() {
    let src = include_str!("conformance.rs");
    for (name, _) in probes() {
        assert!(
            src.contains(&format!("    {name},\n")),
            "probe {name} is not in workflow_tests! of tests/conformance.rs"
        );
    }
}

/// The probes can fail: on a simulator told to be more hostile than the
/// contract (reordering, duplicates), the probes of order and at-most-once
/// must fail, naming that clause.
#[test]
fn simulated_hostile_network_fails_the_probes() {
    let run = |reorder: bool, duplicate: f64, probe: ProbeFn| -> String {
        let mut cfg = SimConfig::new(7, registry());
        cfg.reorder = reorder;
        cfg.duplicate = duplicate;
        let mut sim = SimCluster::new(cfg).unwrap();
        let c: &mut dyn Cluster = &mut sim;
        match probe(c) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let e = run(true, 0.0, fifo_under_uniform_latency);
    assert!(e.contains("in order per"), "reordering must fail: {e:?}");
    let e = run(true, 0.0, pause_then_resume_delivers_in_order);
    assert!(e.contains("in order per"), "reordering must fail: {e:?}");
    let e = run(false, 0.3, cut_loses_in_flight_even_if_healed);
    assert!(e.contains("at most once"), "duplicates must fail: {e:?}");
}
