//! distzero-real: the real runtime of distzero, behind the `loopback`
//! feature of `distzero`. The agent that hosts the nodes of one machine
//! ([`agent`]), the wire protocol between controller and agents and between
//! agents ([`wire`]), the controller side of a real cluster ([`remote`]),
//! the provider seam that starts and faults agents ([`provider`]), the
//! agent binary a real mode deploys ([`artifact`]), and loopback mode
//! ([`loopback`]). Tokio lives here, never in the core.

pub mod agent;
pub mod artifact;
pub mod cleanup;
pub mod loopback;
pub mod provider;
pub mod remote;
pub mod wire;
