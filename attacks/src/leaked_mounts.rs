//! `leaked-mounts`: a process kept in a stopped container's mount namespace, so its mounts stay pinned.

use crate::catalogue::{AttackSpec, ParamType, opt};
use crate::{Attack, AttackError, Effect, Env, Params, Stage};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct LeakedMounts {
    count: u64,
}

impl LeakedMounts {
    /// From the scenario's parameters (`mounts`).
    pub(crate) fn new(params: &Params) -> Self {
        Self {
            count: params.integer("mounts").unwrap_or(1),
        }
    }
}

impl Attack for LeakedMounts {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::Runtime
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        env.leak_mounts(self.count)
    }

    /// The attacker wants the stopped container's mounts to stay: still there when the container looked.
    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let alive = env.leaks_alive()?;
        Ok(if alive.is_empty() {
            Effect::Genuine("none of the stopped container's mounts is left".to_owned())
        } else {
            Effect::Seen(format!(
                "the stopped container's mounts are still there: {}",
                alive.join("; ")
            ))
        })
    }

    fn revert(&mut self, env: &mut dyn Env) -> Result<(), AttackError> {
        env.release_leaks()
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "leaked-mounts",
    summary: "keep a process in a stopped container's mount namespace so its mounts stay pinned",
    params: &[opt("mounts", ParamType::Integer, "mounts left behind (default: 1)")],
    create: |params| Ok(Box::new(LeakedMounts::new(params))),
};
