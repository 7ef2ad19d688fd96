//! `tag-moved-after-verify`: the tag moved to the attacker's image between verification and use (TOCTOU).

use crate::catalogue::{AttackSpec, ParamType, opt};
use crate::{Attack, AttackError, Effect, Env, Params, Stage, TROJAN};

/// The attack.
#[derive(Debug, Clone)]
pub struct TagMovedAfterVerify {
    tag: String,
}

impl TagMovedAfterVerify {
    /// From the scenario's parameters (`tag`).
    pub fn new(params: &Params) -> Self {
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
        env.move_tag(&self.tag)
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container("bin/app")?;
        Ok(Effect::read("bin/app", &seen, TROJAN.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub const SPEC: AttackSpec = AttackSpec {
    name: "tag-moved-after-verify",
    summary: "move the tag to the attacker's image between signature verification and pull (TOCTOU)",
    params: &[opt("tag", ParamType::String, "the tag that moves (default: v1)")],
    create: |params| Ok(Box::new(TagMovedAfterVerify::new(params))),
};
