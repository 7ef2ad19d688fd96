//! `pinned-layer-replace`: the pinned standard-mountpoints layer replaced by one that changes a file.

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
        "pinned-layer-replace"
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
