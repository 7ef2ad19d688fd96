//! `root-hash-annotation`: a layer descriptor's root-hash annotation changed in the stored manifest, the
//! original signature kept.

use crate::catalogue::{AttackSpec, LAYER, ParamType, SCHEME, opt};
use crate::{Attack, AttackError, Effect, Env, Params, Stage, TROJAN, steps};
use veritylab::oci::manifest::ImageManifest;

/// The annotation keys that carry a layer's root hash, in either scheme.
pub(crate) const KEYS: &[&str] = &[
    "org.veritylab.dm-verity.root-hash",
    "io.deckhouse.delivery-kit.dm-verity-root-hash",
];

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct RootHashAnnotation {
    layer: Option<usize>,
    root_hash: Option<String>,
}

impl RootHashAnnotation {
    /// From the scenario's parameters (`layer`, `root-hash`; `scheme` is the image's, set up by the lab).
    pub(crate) fn new(params: &Params) -> Self {
        Self {
            layer: params.layer(),
            root_hash: params.string("root-hash").map(str::to_owned),
        }
    }
}

/// The stored manifest with layer `index`'s root-hash annotation set to `root_hash`: returns the annotation's
/// key, its old value and the new manifest's bytes (not stored yet).
/// The image's manifest with layer `index`'s root-hash annotation set to `root_hash`; returns the key, its old
/// value and the manifest.
pub(crate) fn set_annotation(
    env: &dyn Env,
    index: usize,
    root_hash: &str,
) -> Result<(String, Option<String>, ImageManifest), AttackError> {
    let mut manifest = steps::manifest(env)?;
    let annotations = manifest
        .layers
        .get_mut(index)
        .map(|l| &mut l.annotations)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| AttackError::env(format!("layer {index} of the manifest has no annotations")))?;
    let key = annotations
        .keys()
        .find(|k| KEYS.contains(&k.as_str()) || k.ends_with("root-hash") || k.ends_with("roothash"))
        .cloned()
        .ok_or_else(|| AttackError::env(format!("layer {index} has no root-hash annotation")))?;
    let old = annotations.insert(key.clone(), root_hash.to_owned());
    Ok((key, old, manifest))
}

impl Attack for RootHashAnnotation {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let index = self.layer.unwrap_or(env.layer_count().saturating_sub(1));
        let new = match &self.root_hash {
            Some(hash) => hash.clone(),
            None => steps::trojan_layer(env, index, "bin/app", TROJAN.as_bytes())?
                .root_hash
                .to_string(),
        };
        let (key, old, manifest) = set_annotation(env, index, &new)?;
        let digest = steps::replace_manifest(env, &manifest, true)?;
        Ok(format!(
            "layer {index}: {key} {} -> {new}; the manifest is now {digest}, the original signature kept",
            old.unwrap_or_default()
        ))
    }

    /// The forged root hash is that of a copy of the layer with a trojaned `bin/app`: the attacker wants the
    /// container to run it.
    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container("bin/app")?;
        Ok(Effect::read("bin/app", &seen, TROJAN.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "root-hash-annotation",
    summary: "change a layer descriptor's root-hash annotation in the manifest, keeping the original signature",
    params: &[
        LAYER,
        SCHEME,
        opt(
            "root-hash",
            ParamType::Hex,
            "the new root hash (default: that of a trojaned copy of the layer)",
        ),
    ],
    create: |params| Ok(Box::new(RootHashAnnotation::new(params))),
};
