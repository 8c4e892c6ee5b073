//! Operation histories, as recorded by clients, for the checkers in
//! [`crate`].
//!
//! The op types, [`History`] and [`RunHistory`] live in
//! `distzero_core::history` (nodes record ops through their context, and
//! every runtime keeps them: see its docs for the semantics of invoke / ok /
//! fail / info, recording and bounds); they are re-exported here whole, so
//! `distzero::history::Op` and friends name them. What this module adds is
//! reading a run's history back from its logs: [`read_history_dir`] and
//! [`read_history_file`].
//!
//! # Reading back from logs
//!
//! Every recorded op is logged as a `history` event ([`log_op`]) where its
//! node runs. [`read_history_dir`] / [`read_history_file`] collect exactly
//! the lines whose `message` is `history` (see [`History::from_jsonl`] for
//! what is an error); ops from several files are merged by their own
//! `time_ns` (the client's clock), not by the log line's `time`. A run's
//! [`distzero_core::Cluster::history`] gives the same ops without logs.

pub use distzero_core::history::*;

use std::path::{Path, PathBuf};

/// Read the history ops of one JSON-lines file (see the module docs).
pub fn read_history_file(path: &Path) -> Result<History, HistoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    History::from_jsonl(&path.display().to_string(), &text)
}

/// Read and merge the history ops of every `*.jsonl` file in `dir` (a run's
/// log folder). Ops are ordered by their `time_ns`; ties keep file-name then
/// line order, so each process's records stay in the order it wrote them.
pub fn read_history_dir(dir: &Path) -> Result<History, HistoryError> {
    let io = |source| HistoryError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "jsonl") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut all: Vec<(Op, usize)> = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(|source| HistoryError::Io {
            path: path.clone(),
            source,
        })?;
        parse_lines(&path.display().to_string(), &text, &mut all)?;
    }
    // Stable: equal times keep file then line order.
    all.sort_by_key(|(op, _)| op.time);
    Ok(History::from_ops(
        all.into_iter().map(|(op, _)| op).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn logged_ops_are_read_back_from_run_logs() {
        use distzero_core::ids::{MachineId, NodeId};
        use distzero_core::log::{set_scope, Clock, RunLog, Scope};
        let dir =
            std::env::temp_dir().join(format!("distzero-history-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = RunLog::new(&dir, Clock::Scope, Some(tracing::Level::INFO)).unwrap();
        let a = Op::invoke(7, F::Write, Some("x"), 5, ms(10));
        let b = Op::invoke(8, F::Read, Some("x"), Value::Nil, ms(11));
        let c = a.completion(OpKind::Ok, 5, ms(12));
        let d = b.completion(OpKind::Ok, 5, ms(13));
        {
            let _g = log.set_default();
            // Two machines, so the reader has to merge files by op time.
            set_scope(Scope {
                machine: Some(MachineId(1)),
                node: Some(NodeId::new(MachineId(1), 0)),
                time: ms(10),
            });
            log_op(&a);
            tracing::info!(x = 1u64, "unrelated");
            log_op(&c);
            set_scope(Scope {
                machine: Some(MachineId(2)),
                node: Some(NodeId::new(MachineId(2), 0)),
                time: ms(11),
            });
            log_op(&b);
            log_op(&d);
            set_scope(Scope::default());
        }
        log.flush();
        let h = read_history_dir(&dir).unwrap();
        assert_eq!(h.ops(), &[a.clone(), b, c, d][..]);
        assert_eq!(read_history_file(&dir.join("m1.jsonl")).unwrap().len(), 2);
        assert_eq!(h.calls().unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
