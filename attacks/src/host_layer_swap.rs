//! `host-layer-swap`: a layer's `layer.erofs` replaced on the node disk by a trojaned copy, its metadata kept.
//!
//! [`LayerSwap`] is also the `layer-and-tree-replace` attack, which additionally writes the copy's root hash
//! into the node's local metadata.

use crate::catalogue::{AttackSpec, LAYER, TROJAN_CONTENT, TROJAN_PATH};
use crate::{Attack, AttackError, Effect, Env, Params, Stage, TROJAN};

/// A layer file swapped for a trojaned copy with a correct tree of its own.
#[derive(Debug, Clone)]
pub(crate) struct LayerSwap {
    name: &'static str,
    rewrite_metadata: bool,
    layer: Option<usize>,
    path: String,
    content: String,
}

impl LayerSwap {
    /// The attack `name` from the scenario's parameters (`layer`, `path`, `content`); with
    /// `rewrite_metadata` the local metadata is made to describe the copy.
    pub(crate) fn new(name: &'static str, rewrite_metadata: bool, params: &Params) -> Self {
        Self {
            name,
            rewrite_metadata,
            layer: params.layer(),
            path: params.string("path").unwrap_or("bin/app").to_owned(),
            content: params.string("content").unwrap_or(TROJAN).to_owned(),
        }
    }
}

/// `host-layer-swap` from the scenario's parameters.
pub(crate) fn new(params: &Params) -> LayerSwap {
    LayerSwap::new(SPEC.name, false, params)
}

impl Attack for LayerSwap {
    fn name(&self) -> &'static str {
        self.name
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
        if !self.rewrite_metadata {
            return Ok(format!(
                "replaced {} of layer {index} with a copy whose {} is trojaned; metadata untouched",
                layer.erofs.display(),
                self.path
            ));
        }
        env.rewrite_local_metadata(index, &trojan)?;
        Ok(format!(
            "replaced layer {index} and its tree (trojaned {}); local metadata now says root hash {}",
            self.path, trojan.root_hash
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(&self.path)?;
        Ok(Effect::read(&self.path, &seen, self.content.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "host-layer-swap",
    summary: "replace a layer's files on the node disk with a trojaned copy, keeping its metadata",
    params: &[LAYER, TROJAN_PATH, TROJAN_CONTENT],
    create: |params| Ok(Box::new(new(params))),
};
