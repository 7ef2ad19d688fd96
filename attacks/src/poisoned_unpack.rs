//! `poisoned-unpack`: the node unpacks a layer the publisher never built.
//!
//! The attacker controls the registry path the node pulls from (a compromised mirror, a hijacked namespace):
//! the tag now names a manifest whose layer carries the trojan, every digest in it true, so the pull's digest
//! checks pass and the node stores it. The publisher's signature is left where it was, over the genuine
//! manifest's digest. A node that computes its root hashes when it converts the layer (containerd's differ)
//! hashes the poisoned bytes, and its dm-verity then guarantees them faithfully.

use crate::catalogue::{AttackSpec, LAYER, TROJAN_CONTENT, TROJAN_PATH};
use crate::steps::{self, TrojanTarget};
use crate::{Attack, AttackError, Effect, Env, Stage, layer_tar};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct PoisonedUnpack(TrojanTarget);

impl Attack for PoisonedUnpack {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    /// The node's store right after the pull, before the node converts the new layer: the poisoned layer has
    /// a digest the node has never converted, so the mount converts it and computes its root hash then.
    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let target = &self.0;
        let genuine = env
            .store()
            .lookup(env.image())
            .map_err(|e| AttackError::env(format!("{}: {e}", env.image())))?;
        let mut tars = steps::layer_tars(env)?;
        let index = target.index(tars.len());
        let tar = tars
            .get_mut(index)
            .ok_or_else(|| AttackError::env(format!("layer {index}: the image has fewer layers")))?;
        *tar = layer_tar::with_file(tar, &target.path, target.content.as_bytes())?;
        let poisoned = steps::publish(env, "poisoned", &tars)?;
        steps::retag(env, poisoned.clone())?;
        Ok(format!(
            "{} now names {} as pulled from the attacker's registry path: layer {index} carries a trojaned /{}, \
             every digest true; the publisher's signature still covers only {}",
            env.image(),
            poisoned.digest,
            target.path,
            genuine.digest
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        self.0.look(env)
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "poisoned-unpack",
    summary: "serve the node, from a registry path the attacker controls, a trojaned layer with true digests \
              for it to unpack and hash",
    params: &[LAYER, TROJAN_PATH, TROJAN_CONTENT],
    create: |params| Ok(Box::new(PoisonedUnpack(TrojanTarget::from_params(params)))),
};
