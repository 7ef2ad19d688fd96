//! `registry-split-view`: the registry shows the admission controller the genuine image and the node the
//! attacker's, under the same tag.
//!
//! A compromised registry or mirror tells its clients apart (here by `User-Agent`) and answers the node's
//! request for the tag with the manifest of an unsigned image of the genuine layers plus a trojaned
//! `bin/app`; the admission controller, asking the same registry for the same tag, sees and verifies the
//! genuine one. Requests by digest are answered honestly (a digest names its bytes, and every client checks
//! them), so only a node that pulls the digest the admission verified escapes.

use crate::catalogue::{AttackSpec, ParamType, opt};
use crate::tag_moved_after_admission::registry_layer_tars;
use crate::{Attack, AttackError, Effect, Env, Params, Stage, TROJAN, layer_tar};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct RegistrySplitView {
    tag: String,
}

impl RegistrySplitView {
    /// From the scenario's parameters (`tag`).
    pub(crate) fn new(params: &Params) -> Self {
        Self {
            tag: params.string("tag").unwrap_or("v1").to_owned(),
        }
    }
}

impl Attack for RegistrySplitView {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::Registry
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let mut tars = registry_layer_tars(env)?;
        tars.push(layer_tar::single_file("bin/app", TROJAN.as_bytes())?);
        let decoy = env.registry_split_view(&self.tag, &tars)?;
        Ok(format!(
            "the registry answers the node's requests for the tag {} with the attacker's unsigned image {decoy} \
             (trojaned bin/app), every other client's with the genuine one",
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
    name: "registry-split-view",
    summary: "make the registry serve the node another manifest for the tag than it serves the admission controller",
    params: &[opt(
        "tag",
        ParamType::String,
        "the tag whose answer depends on the client (default: v1)",
    )],
    create: |params| Ok(Box::new(RegistrySplitView::new(params))),
};
