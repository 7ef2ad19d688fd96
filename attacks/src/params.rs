//! An attack's parameters, as the lab's scenario loader checked them.

use std::collections::BTreeMap;

/// One parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// An integer.
    Integer(u64),
    /// A string, path, hex string or choice.
    String(String),
    /// A boolean.
    Bool(bool),
}

/// Parameters by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub BTreeMap<String, Param>);

impl Params {
    /// The integer `name`, if given.
    pub fn integer(&self, name: &str) -> Option<u64> {
        match self.0.get(name) {
            Some(Param::Integer(v)) => Some(*v),
            _ => None,
        }
    }

    /// The string `name`, if given.
    pub fn string(&self, name: &str) -> Option<&str> {
        match self.0.get(name) {
            Some(Param::String(v)) => Some(v),
            _ => None,
        }
    }

    /// The boolean `name`, if given.
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.0.get(name) {
            Some(Param::Bool(v)) => Some(*v),
            _ => None,
        }
    }

    /// The layer index `layer`, if given (`None`: the attack's default, usually the top layer).
    pub fn layer(&self) -> Option<usize> {
        self.integer("layer").map(|v| usize::try_from(v).unwrap_or(usize::MAX))
    }

    /// The required string `name`.
    pub fn required(&self, name: &str) -> Result<String, crate::AttackError> {
        self.string(name)
            .map(str::to_owned)
            .ok_or_else(|| crate::AttackError::Param {
                name: name.to_owned(),
                reason: "required".to_owned(),
            })
    }
}
