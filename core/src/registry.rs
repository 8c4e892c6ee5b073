//! Start nodes by kind name from a spec (kind + JSON config), in every mode.

use crate::error::{Error, Result};
use crate::node::{AnyNode, Node};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What to start: a registered kind and its JSON config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub kind: String,
    pub config: serde_json::Value,
}

impl NodeSpec {
    pub fn new(kind: impl Into<String>, config: impl Serialize) -> Result<Self> {
        let kind = kind.into();
        let config = serde_json::to_value(config).map_err(|e| Error::BadConfig {
            kind: kind.clone(),
            reason: e.to_string(),
        })?;
        Ok(NodeSpec { kind, config })
    }
}

/// A node kind as a typed handle: its name in the registry and the type
/// of its config, so that registering and spawning check the config type
/// at compile time:
///
/// ```
/// use distzero_core::{Kind, Registry};
/// # struct Echo { prefix: String }
/// # impl distzero_core::Node for Echo {
/// #     type Msg = String;
/// #     fn on_message(&mut self, _: &mut distzero_core::Context<'_, String>, _: distzero_core::NodeId, _: String) {}
/// # }
/// pub const ECHO: Kind<String> = Kind::new("echo");
///
/// let mut r = Registry::new();
/// r.register(ECHO, |prefix: String| Echo { prefix });
/// ```
///
/// A config of another type does not compile, neither when registering:
///
/// ```compile_fail,E0631
/// # use distzero_core::{Kind, Registry};
/// # struct Echo;
/// # impl distzero_core::Node for Echo {
/// #     type Msg = String;
/// #     fn on_message(&mut self, _: &mut distzero_core::Context<'_, String>, _: distzero_core::NodeId, _: String) {}
/// # }
/// # pub const ECHO: Kind<String> = Kind::new("echo");
/// Registry::new().register(ECHO, |n: u64| Echo);
/// ```
///
/// nor when spawning:
///
/// ```compile_fail,E0277
/// # use distzero_core::{Cluster, Kind, MachineId};
/// # pub const ECHO: Kind<String> = Kind::new("echo");
/// fn spawn(c: &mut dyn Cluster, m: MachineId) {
///     c.spawn_node(m, ECHO, 42u64);
/// }
/// ```
///
/// A plain `&str` still works where a kind is asked for, with any config.
pub struct Kind<C> {
    name: &'static str,
    _config: std::marker::PhantomData<fn(C) -> C>,
}

impl<C> Kind<C> {
    pub const fn new(name: &'static str) -> Self {
        Kind {
            name,
            _config: std::marker::PhantomData,
        }
    }

    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<C> Clone for Kind<C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C> Copy for Kind<C> {}

impl<C> std::fmt::Debug for Kind<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kind({:?})", self.name)
    }
}

impl<C> std::fmt::Display for Kind<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Where a kind is asked for with config type `C`: a [`Kind<C>`] (exactly
/// that config) or a plain `&str` (any config).
pub trait KindOf<C> {
    fn kind_name(&self) -> &str;
}

impl<C> KindOf<C> for Kind<C> {
    fn kind_name(&self) -> &str {
        self.name
    }
}

impl<C> KindOf<C> for &str {
    fn kind_name(&self) -> &str {
        self
    }
}

type Maker = Arc<dyn Fn(&serde_json::Value) -> Result<Box<dyn AnyNode>> + Send + Sync>;

/// Kind name -> constructor. The simulator and the agent binary each hold one.
#[derive(Clone, Default)]
pub struct Registry {
    makers: BTreeMap<String, Maker>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a kind: `make` builds the node from its deserialized config.
    pub fn register<N, C, F>(&mut self, kind: impl KindOf<C>, make: F) -> &mut Self
    where
        N: Node,
        C: DeserializeOwned,
        F: Fn(C) -> N + Send + Sync + 'static,
    {
        let kind = kind.kind_name().to_string();
        let name = kind.clone();
        self.makers.insert(
            kind.to_string(),
            Arc::new(move |config| {
                let c: C =
                    serde_json::from_value(config.clone()).map_err(|e| Error::BadConfig {
                        kind: name.clone(),
                        reason: e.to_string(),
                    })?;
                Ok(Box::new(make(c)) as Box<dyn AnyNode>)
            }),
        );
        self
    }

    /// Add every kind of `other`; a kind registered in both takes
    /// `other`'s constructor. `extend` merges registries of several crates
    /// into one agent binary.
    pub fn extend(&mut self, other: &Registry) -> &mut Self {
        for (kind, make) in &other.makers {
            self.makers.insert(kind.clone(), make.clone());
        }
        self
    }

    pub fn build(&self, spec: &NodeSpec) -> Result<Box<dyn AnyNode>> {
        match self.makers.get(&spec.kind) {
            Some(make) => make(&spec.config),
            None => Err(Error::UnknownKind {
                kind: spec.kind.clone(),
                known: self.kinds().join(", "),
            }),
        }
    }

    /// Check a spec without keeping the node (fail early, before a spawn).
    pub fn validate(&self, spec: &NodeSpec) -> Result<()> {
        self.build(spec).map(drop)
    }

    pub fn kinds(&self) -> Vec<String> {
        self.makers.keys().cloned().collect()
    }
}
