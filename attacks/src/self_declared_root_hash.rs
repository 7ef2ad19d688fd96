//! `self-declared-root-hash`: the attacker's unsigned image declares its own root hashes. A layer is
//! trojaned on the node disk with a correct tree, the manifest's root-hash annotation names the new tree,
//! the signature is gone, and the node's policy is edited to stop requiring signatures for the repository.
//! A profile that takes root hashes from whatever verification accepted mounts the trojan.

use crate::catalogue::{AttackSpec, LAYER, TROJAN_CONTENT, TROJAN_PATH};
use crate::{Attack, AttackError, Effect, Env, Params, Stage, TROJAN};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct SelfDeclaredRootHash {
    layer: Option<usize>,
    path: String,
    content: String,
}

impl SelfDeclaredRootHash {
    /// From the scenario's parameters (`layer`, `path`, `content`).
    pub(crate) fn new(params: &Params) -> Self {
        Self {
            layer: params.layer(),
            path: params.string("path").unwrap_or("bin/app").to_owned(),
            content: params.string("content").unwrap_or(TROJAN).to_owned(),
        }
    }
}

impl Attack for SelfDeclaredRootHash {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let index = self.layer.unwrap_or(env.layer_count().saturating_sub(1));
        let layer = env.layer(index)?;
        let trojan = crate::steps::trojan_layer(env, index, &self.path, self.content.as_bytes())?;
        std::fs::copy(&trojan.erofs, &layer.erofs)
            .map_err(|e| AttackError::env(format!("copying over {}: {e}", layer.erofs.display())))?;
        env.rewrite_local_metadata(index, &trojan)?;
        let stripped = crate::signature_stripped::remove_signatures(env)?;
        let (key, _, manifest) =
            crate::root_hash_annotation::set_annotation(env, index, &trojan.root_hash.to_string())?;
        let digest = crate::steps::replace_manifest(env, &manifest, false)?;
        let policy = env.allow_unsigned()?;
        Ok(format!(
            "layer {index} trojaned with its own tree; {stripped}; the unsigned manifest {digest} declares {key} = {}; {policy}",
            trojan.root_hash
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(&self.path)?;
        Ok(Effect::read(&self.path, &seen, self.content.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "self-declared-root-hash",
    summary: "trojan a layer, declare its root hash in an unsigned manifest and edit the policy to allow unsigned images",
    params: &[LAYER, TROJAN_PATH, TROJAN_CONTENT],
    create: |params| Ok(Box::new(SelfDeclaredRootHash::new(params))),
};
