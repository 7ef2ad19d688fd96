//! `leaked-mounts`: a process kept in a stopped container's mount namespace, so its mounts stay pinned.

use crate::{Attack, AttackError, Env, Params, Stage};

/// The attack.
#[derive(Debug, Clone)]
pub struct LeakedMounts {
    count: u64,
}

impl LeakedMounts {
    /// From the scenario's parameters (`mounts`).
    pub fn new(params: &Params) -> Self {
        Self {
            count: params.integer("mounts").unwrap_or(1),
        }
    }
}

impl Attack for LeakedMounts {
    fn name(&self) -> &'static str {
        "leaked-mounts"
    }

    fn stage(&self) -> Stage {
        Stage::Runtime
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        env.leak_mounts(self.count)
    }

    fn revert(&mut self, env: &mut dyn Env) -> Result<(), AttackError> {
        env.release_leaks()
    }
}
