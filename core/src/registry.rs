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
    pub fn register<N, C, F>(&mut self, kind: &str, make: F) -> &mut Self
    where
        N: Node,
        C: DeserializeOwned,
        F: Fn(C) -> N + Send + Sync + 'static,
    {
        let name = kind.to_string();
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
