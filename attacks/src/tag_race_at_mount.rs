//! `tag-race-at-mount`: between the signature check and the mount, the image's tag is moved to an unsigned
//! manifest of the same signed layers in another order (the base layer on top undoes a later layer's fix).
//! Every layer and root hash is genuine; only the order is the attacker's.

use crate::catalogue::{AttackSpec, ParamType, opt, req};
use crate::{Attack, AttackError, Effect, Env, Params, Stage};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct TagRaceAtMount {
    path: String,
    content: String,
}

impl TagRaceAtMount {
    /// From the scenario's parameters (`path`, and `content`: what the container shows when the race is won,
    /// the file as the base layer has it).
    pub(crate) fn new(params: &Params) -> Result<Self, AttackError> {
        Ok(Self {
            path: params.string("path").unwrap_or("bin/app").to_owned(),
            content: params.required("content")?,
        })
    }
}

impl Attack for TagRaceAtMount {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::AfterVerify
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let mut manifest = crate::steps::manifest(env)?;
        manifest.layers.reverse();
        let digest = crate::steps::replace_manifest(env, &manifest, false)?;
        Ok(format!(
            "after verification, the tag now names {digest}: the signed layers in reverse order, unsigned"
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(&self.path)?;
        Ok(Effect::read(&self.path, &seen, self.content.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "tag-race-at-mount",
    summary: "move the tag between signature check and mount to the signed layers in another order, unsigned",
    params: &[
        opt(
            "path",
            ParamType::Path,
            "a file a later layer changes (default: bin/app)",
        ),
        req(
            "content",
            ParamType::String,
            "that file as the base layer has it: what the container shows when the race is won",
        ),
    ],
    create: |params| Ok(Box::new(TagRaceAtMount::new(params)?)),
};
