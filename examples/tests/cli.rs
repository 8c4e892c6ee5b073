//! The `distzero-sweep` binary: the replay line it prints re-runs the
//! failing seed exactly, with the settings the sweep read.

use distzero::sim::sweep::same_tree;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Run the binary in `dir` with only `envs` among the DISTZERO_ variables
/// (and JOB_COMPLETION_INDEX).
fn cli(dir: &Path, envs: &[(String, String)], args: &[String]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_distzero-sweep"));
    for (k, _) in std::env::vars() {
        if k.starts_with("DISTZERO_") || k == "JOB_COMPLETION_INDEX" {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .envs(envs.iter().cloned())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running distzero-sweep");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// The printed replay line as (environment, arguments after `--`).
fn replay_line(text: &str) -> (Vec<(String, String)>, Vec<String>) {
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("replay:"))
        .unwrap_or_else(|| panic!("no replay line in:\n{text}"));
    let w = words(line);
    let cargo = w.iter().position(|x| x == "cargo").expect("cargo");
    let env = w[..cargo]
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("VAR=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    let dashes = w.iter().position(|x| x == "--").expect("--");
    (env, w[dashes + 1..].to_vec())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("distzero-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_printed_replay_reads_the_sweeps_buggify_and_is_byte_identical() {
    let dir = temp("buggify");
    let logs = dir.join("logs");
    let env = vec![
        ("DISTZERO_BUGGIFY".to_string(), "0.3".to_string()),
        ("DISTZERO_LOG_DIR".to_string(), logs.display().to_string()),
        ("DISTZERO_LATENCY".to_string(), "1ms..2ms".to_string()),
    ];
    let (ok, text) = cli(
        &dir,
        &env,
        &words("kv-ack-before-replicate --quiet --no-shrink --jobs 2 --seeds 50"),
    );
    assert!(!ok, "the planted bug is found:\n{text}");
    assert!(text.contains("time: first failure after "), "{text}");
    let (replay_env, replay_args) = replay_line(&text);
    assert!(
        env.iter().all(|kv| replay_env.contains(kv)),
        "the replay line repeats the settings: {replay_env:?}"
    );
    let seed: u64 = replay_args.last().unwrap().parse().unwrap();
    let swept = logs
        .join("kv-ack-before-replicate")
        .join(format!("simulated-{seed}"));
    let kept = dir.join("swept");
    copy_dir(&swept, &kept);
    // The replay, exactly as printed (from another folder: nothing else read).
    let (ok, out) = cli(&dir, &replay_env, &replay_args);
    assert!(!ok && out.contains("FAILED: history"), "{out}");
    assert!(
        same_tree(&kept, &swept),
        "replay logs differ from the sweep's"
    );
    // The same command under another buggify is another run.
    let mut other = replay_env.clone();
    other.retain(|(k, _)| k != "DISTZERO_BUGGIFY");
    other.push(("DISTZERO_BUGGIFY".into(), "0.05".into()));
    let _ = cli(&dir, &other, &replay_args);
    assert!(!same_tree(&kept, &swept), "buggify must show in the logs");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_seed_over_its_event_budget_fails_and_its_replay_line_keeps_the_budget() {
    let dir = temp("budget");
    let env = vec![(
        "DISTZERO_LOG_DIR".to_string(),
        dir.join("logs").display().to_string(),
    )];
    let (ok, text) = cli(
        &dir,
        &env,
        &words("kv --quiet --no-shrink --jobs 1 --seeds 1 --first 7 --max-events 300"),
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("FAILED seed 7")
            && text.contains("seed 7 went over its event budget of 300 events"),
        "{text}"
    );
    let (replay_env, replay_args) = replay_line(&text);
    assert!(
        replay_args.ends_with(&words("--replay 7 --max-events 300")),
        "{replay_args:?}"
    );
    let (ok, out) = cli(&dir, &replay_env, &replay_args);
    assert!(
        !ok && out.contains("FAILED: seed 7 went over its event budget of 300 events"),
        "{out}"
    );
    // A bad budget setting is one line naming the variable.
    let (ok, out) = cli(
        &dir,
        &[("DISTZERO_SWEEP_SEED_TIMEOUT".into(), "soon".into())],
        &words("kv --seeds 1"),
    );
    assert!(!ok, "{out}");
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    assert!(
        out.contains("DISTZERO_SWEEP_SEED_TIMEOUT=\"soon\""),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn seeds_and_shard_come_from_the_settings_and_the_flags_win() {
    let dir = temp("shard");
    let logs = ("DISTZERO_LOG_DIR", "logs");
    // A pod of a Kubernetes Indexed Job: seeds 10..22, shard 1 of 3.
    let pod = pairs(&[
        logs,
        ("DISTZERO_SEEDS", "10..22"),
        ("JOB_COMPLETION_INDEX", "1"),
        ("DISTZERO_SHARDS", "3"),
    ]);
    let (ok, text) = cli(&dir, &pod, &words("kv --quiet --jobs 2"));
    assert!(ok, "{text}");
    assert!(
        text.starts_with("workflow kv: 4 seeds in ")
            && text.contains("\nshard 1/3: seeds ≡ 1 mod 3\n"),
        "seeds 10, 13, 16, 19:\n{text}"
    );
    // --first and --seeds win over DISTZERO_SEEDS, --shard over the Job's.
    let (ok, text) = cli(
        &dir,
        &pod,
        &words("kv --quiet --jobs 2 --first 0 --seeds 4 --shard 0/2"),
    );
    assert!(ok, "{text}");
    assert!(
        text.starts_with("workflow kv: 2 seeds in ") && text.contains("\nshard 0/2: "),
        "seeds 0, 2:\n{text}"
    );
    // Without DISTZERO_SEEDS, 200 seeds from --first (here: 1 seed).
    let (ok, text) = cli(
        &dir,
        &pairs(&[logs]),
        &words("kv --quiet --first 5 --seeds 1"),
    );
    assert!(ok && text.starts_with("workflow kv: 1 seeds in "), "{text}");
    assert!(!text.contains("shard"), "{text}");
    // The Job's index without the count: one line saying what to set.
    let (ok, text) = cli(
        &dir,
        &pairs(&[logs, ("JOB_COMPLETION_INDEX", "1")]),
        &words("kv --quiet"),
    );
    assert!(
        !ok && text.starts_with("error: JOB_COMPLETION_INDEX=\"1\" is set")
            && text.contains("set DISTZERO_SHARDS to the Job's completions"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
