//! `tag-moved-after-admission`: the tag moved in the registry after the admission check, before the node
//! pulls (TOCTOU across two components).
//!
//! The admission controller resolved the pod's tag and verified what it named; the attacker, with push
//! rights to the repository, then pushes an unsigned image of the genuine layers plus a trojaned `bin/app`
//! under the same tag. A node pulling the tag gets the attacker's image; a node pulling the digest the
//! admission pinned gets the verified one.

use crate::catalogue::{AttackSpec, ParamType, opt};
use crate::{Attack, AttackError, Effect, Env, Params, Stage, TROJAN, layer_tar};

/// A limit on each layer read back from the registry's storage.
const LAYER_LIMIT: u64 = 1 << 30;

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct TagMovedAfterAdmission {
    tag: String,
}

impl TagMovedAfterAdmission {
    /// From the scenario's parameters (`tag`).
    pub(crate) fn new(params: &Params) -> Self {
        Self {
            tag: params.string("tag").unwrap_or("v1").to_owned(),
        }
    }
}

/// The genuine image's layer tars as the registry stores them, base first.
pub(crate) fn registry_layer_tars(env: &dyn Env) -> Result<Vec<Vec<u8>>, AttackError> {
    let manifest = env.registry_manifest()?;
    manifest
        .layers
        .iter()
        .map(|layer| {
            if layer.size > LAYER_LIMIT {
                return Err(AttackError::env(format!(
                    "layer {} is larger than {LAYER_LIMIT} bytes",
                    layer.digest
                )));
            }
            let path = env.registry_blob(&layer.digest)?;
            std::fs::read(&path).map_err(|e| AttackError::env(format!("{}: {e}", path.display())))
        })
        .collect()
}

impl Attack for TagMovedAfterAdmission {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::AfterAdmission
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let mut tars = registry_layer_tars(env)?;
        tars.push(layer_tar::single_file("bin/app", TROJAN.as_bytes())?);
        let attacker = env.registry_push(&self.tag, &tars)?;
        Ok(format!(
            "the registry's tag {} now names the attacker's unsigned image {attacker} (trojaned bin/app)",
            self.tag
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container("bin/app")?;
        Ok(Effect::read("bin/app", &seen, TROJAN.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "tag-moved-after-admission",
    summary: "push the attacker's image under the pod's tag after the admission check, before the node pulls",
    params: &[opt("tag", ParamType::String, "the tag that moves (default: v1)")],
    create: |params| Ok(Box::new(TagMovedAfterAdmission::new(params))),
};
