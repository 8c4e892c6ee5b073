//! distzero-core: the mode-free core of distzero. No tokio, no sockets, no
//! clock: nodes, their context, messages, ids, the registry, the
//! [`Cluster`] interface a workflow test sees, the op types of histories
//! ([`history`]), the one network model ([`net`]), settings, logging, and
//! the delivery-contract probes ([`conformance`]). Every mode builds on
//! this; users reach it through the `distzero` crate, which re-exports it
//! whole.

pub mod clock;
pub mod cluster;
pub mod conformance;
pub mod context;
pub mod disk;
pub mod error;
pub mod history;
pub mod ids;
pub mod link;
pub mod log;
pub mod message;
pub mod msglog;
pub mod nemesis;
pub mod net;
pub mod node;
pub mod registry;
pub mod settings;

pub use clock::ClockFault;
pub use cluster::{millis, secs, Cluster, Mode, Request};
pub use context::{Context, Disk, DiskStore, Env, Log, TimerTag};
pub use disk::{CrashLoss, DiskFault, DiskModel};
pub use error::{Error, Result};
pub use ids::{MachineId, NodeId, TimerId};
pub use link::{Latency, Link};
pub use message::{decode, encode, Message};
pub use nemesis::{Fault, FaultKind, Nemesis, Schedule, Step};
pub use node::{AnyNode, Node};
pub use registry::{Kind, KindOf, NodeSpec, Registry};
pub use settings::Settings;
