//! `tag-moved-after-verify`: the tag moved to the attacker's image between verification and use (TOCTOU).

use crate::catalogue::{AttackSpec, ParamType, opt};
use crate::{Attack, AttackError, Effect, Env, Params, Stage, TROJAN, layer_tar, steps};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct TagMovedAfterVerify {
    tag: String,
}

impl TagMovedAfterVerify {
    /// From the scenario's parameters (`tag`).
    pub(crate) fn new(params: &Params) -> Self {
        Self {
            tag: params.string("tag").unwrap_or("v1").to_owned(),
        }
    }
}

impl Attack for TagMovedAfterVerify {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::AfterVerify
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let mut tars = steps::layer_tars(env)?;
        tars.push(layer_tar::single_file("bin/app", TROJAN.as_bytes())?);
        let attacker = steps::publish(env, "attacker", &tars)?;
        let name = format!("{}:{}", steps::repository(env), self.tag);
        env.store()
            .tag(&name, attacker.clone())
            .map_err(|e| AttackError::env(format!("tagging: {e}")))?;
        Ok(format!(
            "{name} now names the attacker's unsigned image {} (trojaned bin/app)",
            attacker.digest
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container("bin/app")?;
        Ok(Effect::read("bin/app", &seen, TROJAN.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "tag-moved-after-verify",
    summary: "move the tag to the attacker's image between signature verification and pull (TOCTOU)",
    params: &[opt("tag", ParamType::String, "the tag that moves (default: v1)")],
    create: |params| Ok(Box::new(TagMovedAfterVerify::new(params))),
};
