//! `self-declared-root-hash`: the attacker's unsigned image declares its own root hashes. A layer is
//! trojaned on the node disk with a correct tree, the manifest's root-hash annotation names the new tree,
//! the signature is gone, and the node's policy is edited to stop requiring signatures for the repository.
//! A profile that takes root hashes from whatever verification accepted mounts the trojan.

use crate::{Attack, AttackError, Effect, Env, Params, Stage, TROJAN};

/// The annotation keys that carry a layer's root hash, in either scheme.
const KEYS: &[&str] = &[
    "org.veritylab.dm-verity.root-hash",
    "io.deckhouse.delivery-kit.dm-verity-root-hash",
];

/// The attack.
#[derive(Debug, Clone)]
pub struct SelfDeclaredRootHash {
    layer: Option<usize>,
    path: String,
    content: String,
}

impl SelfDeclaredRootHash {
    /// From the scenario's parameters (`layer`, `path`, `content`).
    pub fn new(params: &Params) -> Self {
        Self {
            layer: params.layer(),
            path: params.string("path").unwrap_or("bin/app").to_owned(),
            content: params.string("content").unwrap_or(TROJAN).to_owned(),
        }
    }
}

impl Attack for SelfDeclaredRootHash {
    fn name(&self) -> &'static str {
        "self-declared-root-hash"
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let index = self.layer.unwrap_or(env.layer_count().saturating_sub(1));
        let layer = env.layer(index)?;
        let trojan = env.trojan_layer(index, &self.path, self.content.as_bytes())?;
        std::fs::copy(&trojan.erofs, &layer.erofs)
            .map_err(|e| AttackError::env(format!("copying over {}: {e}", layer.erofs.display())))?;
        env.rewrite_local_metadata(index, &trojan)?;
        let stripped = env.remove_signatures()?;
        let bytes = env.manifest()?;
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| AttackError::env(format!("the stored manifest: {e}")))?;
        let annotations = manifest
            .get_mut("layers")
            .and_then(|l| l.get_mut(index))
            .and_then(|l| l.get_mut("annotations"))
            .and_then(serde_json::Value::as_object_mut)
            .ok_or_else(|| AttackError::env(format!("layer {index} of the manifest has no annotations")))?;
        let key = annotations
            .keys()
            .find(|k| KEYS.contains(&k.as_str()))
            .cloned()
            .ok_or_else(|| AttackError::env(format!("layer {index} has no root-hash annotation")))?;
        annotations.insert(key.clone(), serde_json::Value::String(trojan.root_hash.clone()));
        let out = serde_json::to_vec(&manifest).map_err(AttackError::env)?;
        let digest = env.replace_manifest(&out, false)?;
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
