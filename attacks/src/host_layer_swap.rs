//! `host-layer-swap`: a layer's `layer.erofs` replaced on the node disk by a trojaned copy, its metadata kept.

use crate::{Attack, AttackError, Effect, Env, Params, Stage, TROJAN};

/// The attack.
#[derive(Debug, Clone)]
pub struct HostLayerSwap {
    layer: Option<usize>,
    path: String,
    content: String,
}

impl HostLayerSwap {
    /// From the scenario's parameters (`layer`, `path`, `content`).
    pub fn new(params: &Params) -> Self {
        Self {
            layer: params.layer(),
            path: params.string("path").unwrap_or("bin/app").to_owned(),
            content: params.string("content").unwrap_or(TROJAN).to_owned(),
        }
    }
}

impl Attack for HostLayerSwap {
    fn name(&self) -> &'static str {
        "host-layer-swap"
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
        Ok(format!(
            "replaced {} of layer {index} with a copy whose {} is trojaned; metadata untouched",
            layer.erofs.display(),
            self.path
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(&self.path)?;
        Ok(Effect::read(&self.path, &seen, self.content.as_bytes()))
    }
}
