//! `pinned-layer-replace`: the pinned standard-mountpoints layer replaced by one that changes a file.

use crate::catalogue::{AttackSpec, ParamType, opt};
use crate::{Attack, AttackError, Effect, Env, Params, Stage};

/// The attacker's resolver, written into the replacement layer.
const RESOLVER: &str = "nameserver 203.0.113.66\n";

/// The attack.
#[derive(Debug, Clone)]
pub struct PinnedLayerReplace {
    path: String,
}

impl PinnedLayerReplace {
    /// From the scenario's parameters (`path`).
    pub fn new(params: &Params) -> Self {
        Self {
            path: params.string("path").unwrap_or("etc/resolv.conf").to_owned(),
        }
    }
}

impl Attack for PinnedLayerReplace {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        env.replace_pinned(&self.path, RESOLVER.as_bytes())
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(&self.path)?;
        Ok(Effect::read(&self.path, &seen, RESOLVER.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub const SPEC: AttackSpec = AttackSpec {
    name: "pinned-layer-replace",
    summary: "replace the pinned standard-mountpoints layer with one that changes a file",
    params: &[opt(
        "path",
        ParamType::Path,
        "file the replacement changes (default: etc/resolv.conf)",
    )],
    create: |params| Ok(Box::new(PinnedLayerReplace::new(params))),
};
