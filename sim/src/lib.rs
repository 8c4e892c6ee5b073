//! distzero-sim: the simulated mode.
//!
//! One thread, one event queue ordered by (virtual time, sequence), every
//! choice drawn from streams seeded from the cluster seed (one per machine,
//! one per message keyed by its pair and number, one per disk, one per
//! nemesis declaration: a fault removed changes only what it touched).
//! Same seed, same code: the same events in the same order and the same
//! log bytes.
//!
//! - [`SimCluster`]: the [`distzero_core::Cluster`] on the deterministic event loop.
//! - the network model is `distzero_core::net`, shared with the agent.
//! - [`workload`]: the ping-pong benchmark workload (`benches/pingpong.rs`).
//! - [`run_workflow`]: what `workflow_tests!` calls for `simulated::*` tests.

mod cluster;

mod msgtrace;
mod payload;
mod queue;
mod runner;
pub mod sweep;
pub mod workload;

pub use cluster::{SimCluster, SimConfig, SimStats, Spent};
pub use runner::{
    check_workflow, log_dir_for, replay_command, replay_env, replay_env_with, run_workflow,
    seed_for, shell_word, try_workflow, view_command, BudgetSpent, Failure, SimSettings,
    WorkflowFailure, RUN_SETTINGS, SCHEDULE_SUFFIX,
};
pub use sweep::{sweep, SweepOptions, SweepReport, Workflow};
