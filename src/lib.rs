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

    /// `simulated::<test>`: a seeded run, or under `DISTZERO_SEEDS` a sweep
    /// of the test over those seeds; on failure, the seed, its log folder
    /// and the one command that replays it (`distzero_sim::check_workflow`).
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

    /// The name of the hidden agent test of [`workflow_tests!`] that was
    /// expanded in the module `module_path` (`module_path!()` there): its
    /// full libtest name, without the crate's name.
    pub fn agent_test_name(module_path: &str) -> String {
        match module_path.split_once("::") {
            Some((_, inner)) => format!("{inner}::{AGENT_TEST}"),
            None => AGENT_TEST.to_string(),
        }
    }

    /// The name of the hidden test that [`workflow_tests!`] adds.
    pub const AGENT_TEST: &str = "__distzero_agent";

    /// The hidden test `__distzero_agent`: nothing in a normal run; when a
    /// real mode starts this test binary as an agent (launch arguments in
    /// `DISTZERO_AGENT_ARGS`), the agent's `main` for the nodes of
    /// `registry`, which exits the process. So a user's own test binary is
    /// the agent: no agent binary to write or build. Without the `loopback`
    /// feature there is no agent runtime and it does nothing.
    pub fn agent_entry(registry: fn() -> Registry) {
        #[cfg(feature = "loopback")]
        if let Some(args) = crate::Settings::agent_args_from_environment() {
            distzero_real::agent::main_with_args(registry(), args)
        }
        #[cfg(not(feature = "loopback"))]
        let _ = registry;
    }

    /// `virtual_mode::<test>`: one Docker container per machine, each
    /// running this test binary as its agent (`agent_module` is the
    /// `module_path!()` where [`workflow_tests!`] made the hidden agent
    /// test).
    pub fn docker(test: &str, registry: Registry, body: Body, agent_module: &str) {
        #[cfg(feature = "docker")]
        {
            let _ = registry;
            let agent = distzero_real::artifact::AgentSource::TestBinary {
                test: agent_test_name(agent_module),
            };
            distzero_virtual::run_workflow(test, &agent, body);
        }
        #[cfg(not(feature = "docker"))]
        {
            let _ = (test, registry, body, agent_module);
            feature_off("virtual", "docker")
        }
    }

    /// `cloud_mode::<test>`: hosts over SSH, each agent this test binary
    /// (see [`docker`]).
    pub fn cloud(test: &str, registry: Registry, body: Body, agent_module: &str) {
        #[cfg(feature = "ssh")]
        {
            let _ = registry;
            let agent = distzero_real::artifact::AgentSource::TestBinary {
                test: agent_test_name(agent_module),
            };
            distzero_cloud::run_workflow(test, &agent, body);
        }
        #[cfg(not(feature = "ssh"))]
        {
            let _ = (test, registry, body, agent_module);
            feature_off("cloud", "ssh")
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn agent_test_names_drop_the_crate() {
            assert_eq!(super::agent_test_name("workflows"), "__distzero_agent");
            assert_eq!(
                super::agent_test_name("workflows::inner::deep"),
                "inner::deep::__distzero_agent"
            );
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
///
/// It also makes one hidden test, `__distzero_agent`, which passes at once
/// in a normal run: virtual and cloud mode start this same test binary on
/// each machine with that test selected and the launch arguments in
/// `DISTZERO_AGENT_ARGS`, and there it runs the agent for `registry`
/// ([`modes::agent_entry`]). No agent binary to write or build. Use the
/// macro once per module.
#[macro_export]
macro_rules! workflow_tests {
    (registry: $registry:expr, tests: [$($name:ident),+ $(,)?] $(,)?) => {
        #[allow(dead_code)]
        fn __distzero_registry() -> $crate::Registry {
            $registry
        }
        #[allow(dead_code)]
        fn __distzero_module() -> &'static str {
            module_path!()
        }
        /// Runs the agent when a real mode starts this test binary as one.
        #[test]
        fn __distzero_agent() {
            $crate::modes::agent_entry(__distzero_registry);
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
                    $crate::modes::docker(stringify!($name), super::__distzero_registry(), super::$name, super::__distzero_module());
                }
            )+
        }
        mod cloud_mode {
            $(
                #[test]
                fn $name() {
                    $crate::modes::cloud(stringify!($name), super::__distzero_registry(), super::$name, super::__distzero_module());
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
