//! distzero: write a distributed system once, as nodes that talk by messages;
//! test it deterministically in simulation, then run the same workflow test
//! on Docker containers and on cloud hosts.
//!
//! This crate is the mode-free core: nodes, their context, messages, ids, the
//! registry, the [`Cluster`] interface, settings, logging, and the agent that
//! hosts nodes on real machines.

pub mod agent;
pub mod check;
pub mod cluster;
pub mod conformance;
pub mod context;
pub mod error;
pub mod history;
pub mod ids;
pub mod link;
pub mod log;
pub mod loopback;
pub mod message;
pub mod net;
pub mod node;
pub mod provider;
pub mod registry;
pub mod remote;
pub mod settings;
pub mod wire;

pub use cluster::{millis, secs, Cluster, Mode};
pub use context::{Context, Disk, DiskStore, Env, MemDisk};
pub use error::{Error, Result};
pub use ids::{MachineId, NodeId, TimerId};
pub use link::{Latency, Link};
pub use message::{decode, encode, Message};
pub use node::{AnyNode, Node};
pub use registry::{NodeSpec, Registry};
pub use settings::Settings;

/// Instantiate workflow tests once per mode: `workflow_tests!(a, b);` makes
/// `simulated::a`, `loopback_mode::a`, `virtual_mode::a` and `cloud_mode::a`,
/// so `cargo test simulated` (or `loopback`, `virtual`, `cloud`) selects by
/// mode. The test crate needs `distzero-sim`, `distzero-virtual` and
/// `distzero-cloud` as dev-dependencies, and a `fn registry() ->
/// distzero::Registry` in scope (simulated and loopback modes host the nodes
/// in the test process; virtual and cloud modes ship the agent binary).
#[macro_export]
macro_rules! workflow_tests {
    ($($name:ident),+ $(,)?) => {
        mod simulated {
            $(
                #[test]
                fn $name() {
                    ::distzero_sim::run_workflow(stringify!($name), super::registry(), super::$name);
                }
            )+
        }
        mod loopback_mode {
            $(
                #[test]
                fn $name() {
                    ::distzero::loopback::run_loopback_workflow(stringify!($name), super::registry(), super::$name);
                }
            )+
        }
        mod virtual_mode {
            $(
                #[test]
                fn $name() {
                    ::distzero_virtual::run_workflow(stringify!($name), super::$name);
                }
            )+
        }
        mod cloud_mode {
            $(
                #[test]
                fn $name() {
                    ::distzero_cloud::run_workflow(stringify!($name), super::$name);
                }
            )+
        }
    };
}
