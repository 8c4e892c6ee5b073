//! distzero: write a distributed system once, as nodes that talk by messages;
//! test it deterministically in simulation, then run the same workflow test
//! on Docker containers and on cloud hosts.
//!
//! This is the crate users depend on. It re-exports the mode-free core
//! (`distzero-core`: nodes, context, messages, the [`Cluster`] interface,
//! the network model, settings, logging) and the checkers
//! (`distzero-check`), and brings in each mode by feature:
//!
//! | feature | default | what it brings |
//! |---|---|---|
//! | `sim` | yes | [`sim`]: the deterministic simulator, sweeps, nemesis |
//! | `loopback` | yes | the real runtime ([`agent`], [`wire`], [`remote`]) and loopback mode |
//! | `docker` | no | virtual mode: one Docker container per machine (`distzero::docker`) |
//! | `ssh` | no | cloud mode: hosts over SSH (`distzero::cloud`) |
//!
//! [`workflow_tests!`] instantiates a workflow test once per mode.

pub use distzero_core::*;

/// Histories and checkers (linearizability of registers and key-value maps).
pub use distzero_check as check;
pub use distzero_check::history;

/// The simulated mode (feature `sim`, on by default).
#[cfg(feature = "sim")]
pub use distzero_sim as sim;

#[cfg(feature = "loopback")]
pub use distzero_real::{agent, artifact, loopback, provider, remote, wire};

/// Virtual mode: one Docker container per machine (feature `docker`).
#[cfg(feature = "docker")]
pub use distzero_virtual as docker;

/// Cloud mode: hosts over SSH (feature `ssh`).
#[cfg(feature = "ssh")]
pub use distzero_cloud as cloud;

/// What the tests made by [`workflow_tests!`] call: one function per mode.
/// A mode whose feature is off fails its tests with a line saying which
/// feature to turn on (the tests still exist, so `cargo test virtual`
/// never silently runs nothing).
pub mod modes {
    use crate::{Cluster, Registry, Result};

    /// A workflow test body.
    pub type Body = fn(&mut dyn Cluster) -> Result<()>;

    #[allow(dead_code)]
    fn feature_off(mode: &str, feature: &str) -> ! {
        panic!(
            "{mode} mode needs the `{feature}` feature of distzero: \
             distzero = {{ version = \"…\", features = [\"{feature}\"] }} in Cargo.toml"
        )
    }

    /// `simulated::<test>`: a seeded run; on failure, the seed and the
    /// command that replays it.
    pub fn simulated(test: &str, registry: Registry, body: Body) {
        #[cfg(feature = "sim")]
        distzero_sim::run_workflow(test, registry, body);
        #[cfg(not(feature = "sim"))]
        {
            let _ = (test, registry, body);
            feature_off("simulated", "sim")
        }
    }

    /// `loopback_mode::<test>`: real agents in this process, over 127.0.0.1.
    pub fn loopback(test: &str, registry: Registry, body: Body) {
        #[cfg(feature = "loopback")]
        distzero_real::loopback::run_loopback_workflow(test, registry, body);
        #[cfg(not(feature = "loopback"))]
        {
            let _ = (test, registry, body);
            feature_off("loopback", "loopback")
        }
    }

    /// `virtual_mode::<test>`: one Docker container per machine.
    pub fn docker(test: &str, registry: Registry, body: Body) {
        #[cfg(feature = "docker")]
        {
            let _ = registry;
            distzero_virtual::run_workflow(test, body);
        }
        #[cfg(not(feature = "docker"))]
        {
            let _ = (test, registry, body);
            feature_off("virtual", "docker")
        }
    }

    /// `cloud_mode::<test>`: hosts over SSH.
    pub fn cloud(test: &str, registry: Registry, body: Body) {
        #[cfg(feature = "ssh")]
        {
            let _ = registry;
            distzero_cloud::run_workflow(test, body);
        }
        #[cfg(not(feature = "ssh"))]
        {
            let _ = (test, registry, body);
            feature_off("cloud", "ssh")
        }
    }
}

/// Instantiate workflow tests once per mode:
///
/// ```ignore
/// distzero::workflow_tests! {
///     registry: my_system::registry(),
///     tests: [kv_survives_backup_crash, reads_see_writes],
/// }
/// ```
///
/// makes `simulated::<test>`, `loopback_mode::<test>`, `virtual_mode::<test>`
/// and `cloud_mode::<test>` for each, so `cargo test simulated` (or
/// `loopback`, `virtual`, `cloud`) selects by mode. `registry` is any
/// expression giving the [`Registry`] of the nodes the tests spawn; each
/// test is a `fn(&mut dyn Cluster) -> Result<()>` in scope.
#[macro_export]
macro_rules! workflow_tests {
    (registry: $registry:expr, tests: [$($name:ident),+ $(,)?] $(,)?) => {
        #[allow(dead_code)]
        fn __distzero_registry() -> $crate::Registry {
            $registry
        }
        mod simulated {
            $(
                #[test]
                fn $name() {
                    $crate::modes::simulated(stringify!($name), super::__distzero_registry(), super::$name);
                }
            )+
        }
        mod loopback_mode {
            $(
                #[test]
                fn $name() {
                    $crate::modes::loopback(stringify!($name), super::__distzero_registry(), super::$name);
                }
            )+
        }
        mod virtual_mode {
            $(
                #[test]
                fn $name() {
                    $crate::modes::docker(stringify!($name), super::__distzero_registry(), super::$name);
                }
            )+
        }
        mod cloud_mode {
            $(
                #[test]
                fn $name() {
                    $crate::modes::cloud(stringify!($name), super::__distzero_registry(), super::$name);
                }
            )+
        }
    };
}

/// The README's code blocks, compiled (and run) as doctests, so the README
/// cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
