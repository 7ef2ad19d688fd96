//! `layer-and-tree-replace`: a layer and its tree replaced by a trojaned copy, the new root hash written into
//! the node's local metadata.

use crate::{Attack, AttackError, Effect, Env, Params, Stage, TROJAN};

/// The attack.
#[derive(Debug, Clone)]
pub struct LayerAndTreeReplace {
    layer: Option<usize>,
    path: String,
    content: String,
}

impl LayerAndTreeReplace {
    /// From the scenario's parameters (`layer`, `path`, `content`).
    pub fn new(params: &Params) -> Self {
        Self {
            layer: params.layer(),
            path: params.string("path").unwrap_or("bin/app").to_owned(),
            content: params.string("content").unwrap_or(TROJAN).to_owned(),
        }
    }
}

impl Attack for LayerAndTreeReplace {
    fn name(&self) -> &'static str {
        "layer-and-tree-replace"
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
