//! Message events from a simulated run: the same bytes for the same seed,
//! one seq counter over the run, every delivery and drop of a message sent
//! in the logs, and nothing of the kind when they are off.

use distzero::nemesis::schedules_from_json;
use distzero::settings::LogMessages;
use distzero::sim::sweep::{run_once, same_tree};
use distzero::sim::SimSettings;
use distzero_cli::run::{read_run, MAX_LINES};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("distzero-events-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn message_events_are_deterministic_and_complete() {
    let w = distzero_examples::scenarios::all()
        .into_iter()
        .find(|w| w.name == "kv")
        .expect("the kv workflow");
    let sim = SimSettings::default();
    // The primary cut off from its backups for a while: messages are lost.
    let schedules = schedules_from_json(
        r#"[[{"at_ms":13,"fault":{"Partition":[[0],[1,2]]}},{"at_ms":400,"fault":"HealAll"}]]"#,
        "the test's schedule",
    )
    .unwrap();
    let (a, b) = (temp("a"), temp("b"));
    // A replay (run_once) writes message events unless they are off.
    run_once(&w, 3, Some(&schedules), Some(&a), &sim).unwrap();
    run_once(&w, 3, Some(&schedules), Some(&b), &sim).unwrap();
    assert!(
        same_tree(&a, &b),
        "two runs of one seed wrote different logs"
    );

    let run = read_run(&a, MAX_LINES).unwrap();
    assert!(run.exact, "one seq counter over the simulated run");
    let seqs: Vec<u64> = run.lines.iter().map(|l| l.seq).collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "seq counts every line once"
    );
    let mut sent: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
    let (mut delivered, mut dropped) = (0, 0);
    for l in &run.lines {
        let field = |k: &str| l.str_field(k).unwrap_or_default().to_string();
        match l.message.as_str() {
            "send" => {
                let id = l.u64_field("msg").unwrap();
                assert!(
                    !field("msg_type").is_empty(),
                    "a send names its type: {l:?}"
                );
                sent.insert(id, (field("from"), field("to"), field("msg_type")));
            }
            "deliver" | "drop" => {
                let id = l.u64_field("msg").unwrap();
                let (from, to, _) = sent
                    .get(&id)
                    .unwrap_or_else(|| panic!("{} of message {id} before its send", l.message));
                assert_eq!((&field("from"), &field("to")), (from, to), "{l:?}");
                if l.message == "drop" {
                    dropped += 1;
                    let known = [
                        "loss",
                        "cut",
                        "crash",
                        "queue-full",
                        "cut-or-crash-in-flight",
                        "held-then-healed",
                        "no-node",
                        "client-gone",
                    ];
                    assert!(known.contains(&field("reason").as_str()), "{l:?}");
                } else {
                    delivered += 1;
                }
            }
            _ => {}
        }
    }
    assert!(
        sent.len() > 100 && delivered > 100,
        "{} sent, {delivered} delivered",
        sent.len()
    );
    assert!(
        dropped > 0,
        "the nemesis cuts and crashes: some messages are lost"
    );

    // Off: no message event at all, the rest of the log as before.
    let off = SimSettings {
        log_messages: LogMessages::Off,
        ..SimSettings::default()
    };
    let c = temp("off");
    run_once(&w, 3, Some(&schedules), Some(&c), &off).unwrap();
    let quiet = read_run(&c, MAX_LINES).unwrap();
    assert!(quiet.lines.iter().all(|l| !l.is_message_event()));
    let others = |r: &distzero_cli::run::Run| -> Vec<String> {
        r.lines
            .iter()
            .filter(|l| !l.is_message_event())
            .map(|l| format!("{} {} {}", l.time, l.machine, l.message))
            .collect()
    };
    assert_eq!(
        others(&run),
        others(&quiet),
        "message events change nothing else"
    );
    for d in [a, b, c] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Two machines whose nodes ping each other every 5 ms.
fn two_pingers(
    c: &mut dyn distzero::Cluster,
) -> distzero::Result<(distzero::MachineId, distzero::MachineId)> {
    use distzero_examples::pingpong::{PingConfig, KIND};
    let [a, b] = c.add_machines()?;
    let (na, nb) = (c.next_node_id(a)?, c.next_node_id(b)?);
    let cfg = |peer| PingConfig {
        peers: vec![peer],
        every_ms: 5,
        rounds: 0,
    };
    c.spawn_node(a, KIND, cfg(nb))?;
    c.spawn_node(b, KIND, cfg(na))?;
    Ok((a, b))
}

/// The log folder of the one loopback run under `root`.
fn loopback_run(root: &std::path::Path) -> PathBuf {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("loopback-")
        })
        .expect("the run's log folder")
}

/// Two machines pinging each other, cut apart for a while.
fn ping_across_a_cut(c: &mut dyn distzero::Cluster) -> distzero::Result<()> {
    let (a, b) = two_pingers(c)?;
    c.run_for(distzero::millis(150))?;
    c.cut(a, b)?;
    c.run_for(distzero::millis(100))?;
    c.heal_all()?;
    c.run_for(distzero::millis(150))
}

#[test]
fn agents_log_the_same_message_ids_at_both_ends() {
    let name = "agents_log_the_same_message_ids_at_both_ends";
    let root = PathBuf::from(".tmp").join(name);
    let _ = std::fs::remove_dir_all(&root);
    distzero::modes::loopback(name, distzero_examples::registry(), ping_across_a_cut);
    let dir = loopback_run(&root);
    let run = read_run(&dir, MAX_LINES).unwrap();
    assert!(
        !run.exact,
        "each agent counts its own lines: merged by time"
    );
    let ids = |what: &str, machine: &str| -> std::collections::BTreeSet<u64> {
        run.lines
            .iter()
            .filter(|l| l.message == what && l.machine == machine)
            .filter_map(|l| l.u64_field("msg"))
            .collect()
    };
    let sent_by_m0 = ids("send", "m0");
    let delivered_at_m1 = ids("deliver", "m1");
    assert!(sent_by_m0.len() > 10, "{sent_by_m0:?}");
    let both: Vec<_> = sent_by_m0.intersection(&delivered_at_m1).collect();
    assert!(
        both.len() > 10,
        "ids the sender assigned, logged by the receiver: {both:?}"
    );
    assert!(
        delivered_at_m1.is_subset(&ids("send", "m0")),
        "every delivery at m1 is of a message m0 sent"
    );
    let cut_drops = run
        .lines
        .iter()
        .filter(|l| l.message == "drop" && l.str_field("reason") == Some("cut"))
        .count();
    assert!(
        cut_drops > 0,
        "messages sent across the cut are dropped as such"
    );
    let model = distzero_cli::view::model(&run, name);
    assert!(model["faults"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["kind"] == "cut"));
    let _ = std::fs::remove_dir_all(&root);
}

/// Two machines pinging each other; what m0 sends m1 is held for a while,
/// then the hold is healed (which drops what it queued).
fn ping_across_a_hold(c: &mut dyn distzero::Cluster) -> distzero::Result<()> {
    let (a, b) = two_pingers(c)?;
    c.run_for(distzero::millis(100))?;
    c.hold(a, b)?;
    c.run_for(distzero::millis(100))?;
    c.heal_all()?;
    c.run_for(distzero::millis(100))
}

/// The run's drops for a heal that ended a hold: some, all of m0 -> m1,
/// each of a message m0 logged sending.
fn assert_healed_drops(dir: &std::path::Path) {
    let run = read_run(dir, MAX_LINES).unwrap();
    let sent: std::collections::BTreeSet<u64> = run
        .lines
        .iter()
        .filter(|l| l.message == "send" && l.machine == "m0")
        .filter_map(|l| l.u64_field("msg"))
        .collect();
    let healed: Vec<_> = run
        .lines
        .iter()
        .filter(|l| l.message == "drop" && l.str_field("reason") == Some("held-then-healed"))
        .collect();
    assert!(
        !healed.is_empty(),
        "no drop logged for the heal in {}",
        dir.display()
    );
    for l in healed {
        let (from, to) = (l.str_field("from").unwrap(), l.str_field("to").unwrap());
        assert!(from.starts_with("m0") && to.starts_with("m1"), "{l:?}");
        assert!(sent.contains(&l.u64_field("msg").unwrap()), "{l:?}");
    }
}

#[test]
fn a_heal_logs_what_it_dropped_from_a_hold() {
    // Simulated: a replay writes message events.
    let w = distzero::sim::sweep::Workflow::new(
        "hold",
        distzero_examples::registry(),
        ping_across_a_hold,
    );
    let dir = temp("hold");
    run_once(&w, 1, None, Some(&dir), &SimSettings::default()).unwrap();
    assert_healed_drops(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    // Real agents: the agent at the held end logs them.
    let name = "a_heal_logs_what_it_dropped_from_a_hold";
    let root = PathBuf::from(".tmp").join(name);
    let _ = std::fs::remove_dir_all(&root);
    distzero::modes::loopback(name, distzero_examples::registry(), ping_across_a_hold);
    let dir = loopback_run(&root);
    assert_healed_drops(&dir);
    let _ = std::fs::remove_dir_all(&root);
}
