//! The one error type of distzero.

use crate::ids::{MachineId, NodeId};
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call got no reply in time: the node is slow, cut off, paused or down.
    #[error("call to {to} got no reply within {after:?}")]
    Timeout { to: NodeId, after: Duration },
    /// `run_until` gave up before its condition held.
    #[error("condition did not hold within {0:?}")]
    ConditionTimeout(Duration),
    /// A liveness requirement (`eventually`) did not hold in time: the
    /// system did not recover (elect, converge, answer) after the faults.
    #[error("liveness: {what} did not hold within {within:?}{after}")]
    Liveness {
        what: String,
        within: Duration,
        /// Where the wait started, for the message (" after the nemesis healed").
        after: String,
    },
    #[error("no machine {0} in this cluster; add it with add_machine first")]
    NoSuchMachine(MachineId),
    #[error("no node {0} in this cluster; spawn it first")]
    NoSuchNode(NodeId),
    /// A setting (environment or `.env`) has a bad value.
    #[error("{0}")]
    Setting(String),
    #[error("node kind `{kind}` is not in the registry (known kinds: {known}); register it with Registry::register")]
    UnknownKind { kind: String, known: String },
    #[error("config of node kind `{kind}` is invalid: {reason}")]
    BadConfig { kind: String, reason: String },
    /// Stored bytes failed their checksum: a torn write or a flipped bit.
    #[error("corrupt data on disk: {0}")]
    Corrupt(String),
    #[error("could not encode or decode a message: {0}")]
    Codec(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Something outside distzero (Docker, SSH, a host) failed.
    #[error("{0}")]
    Infra(String),
    /// The cluster was asked something it cannot do in this mode or state.
    #[error("{0}")]
    Unsupported(String),
    /// A recorded history is malformed, or a checker rejected it.
    #[error("{0}")]
    Check(String),
    /// A run went over one of its explicit limits (events per run, events
    /// at one instant, wall time of a sweep seed): a livelock or a runaway.
    #[error("{0}")]
    Budget(String),
}

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
}

impl From<postcard::Error> for Error {
    fn from(e: postcard::Error) -> Self {
        Error::Codec(e.to_string())
    }
}
