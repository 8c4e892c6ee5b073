//! Identifiers of machines, nodes and timers.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One computer of a cluster: simulated, a container, or a cloud instance.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct MachineId(pub u32);

impl MachineId {
    /// The controller: the test itself. Its "nodes" are the clients of calls.
    pub const CONTROLLER: MachineId = MachineId(u32::MAX);

    pub fn is_controller(self) -> bool {
        self == Self::CONTROLLER
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_controller() {
            f.write_str("controller")
        } else {
            write!(f, "m{}", self.0)
        }
    }
}

/// A node: the `local`-th node placed on `machine`. Stable across restarts of
/// its machine, so peers keep addressing it after a crash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct NodeId {
    pub machine: MachineId,
    pub local: u32,
}

impl NodeId {
    pub fn new(machine: MachineId, local: u32) -> Self {
        NodeId { machine, local }
    }

    /// A client address on the controller (the `n`-th call or send of a test).
    pub fn client(n: u32) -> Self {
        NodeId {
            machine: MachineId::CONTROLLER,
            local: n,
        }
    }

    pub fn is_client(self) -> bool {
        self.machine.is_controller()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_client() {
            write!(f, "client.{}", self.local)
        } else {
            write!(f, "{}.n{}", self.machine, self.local)
        }
    }
}

/// A timer set by a node; unique within its machine's incarnation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct TimerId(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_machine_node_and_client() {
        assert_eq!(MachineId(3).to_string(), "m3");
        assert_eq!(NodeId::new(MachineId(3), 1).to_string(), "m3.n1");
        assert_eq!(NodeId::client(7).to_string(), "client.7");
        assert!(NodeId::client(7).is_client());
        assert!(!NodeId::new(MachineId(0), 0).is_client());
    }
}
