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
