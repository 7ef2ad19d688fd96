//! `consistent-layer-replace`: while the container runs, a layer at rest is replaced by a trojaned copy with a
//! correct tree, and containerd's sidecar and our `conversion.json` are rewritten to match it, every file
//! renamed into place so the running mount keeps its open (genuine) files and shows nothing. The node's
//! records now all agree with each other: a check at rest pinned to them says clean, and the next container
//! started from this image runs the trojan. Only a check pinned to the signed root hashes sees it.

use crate::catalogue::{AttackSpec, LAYER, TROJAN_CONTENT, TROJAN_PATH};
use crate::{Attack, AttackError, Effect, Env, Params, Stage, TROJAN};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct ConsistentLayerReplace {
    layer: Option<usize>,
    path: String,
    content: String,
}

impl ConsistentLayerReplace {
    /// From the scenario's parameters (`layer`, `path`, `content`).
    pub(crate) fn new(params: &Params) -> Self {
        Self {
            layer: params.layer(),
            path: params.string("path").unwrap_or("bin/app").to_owned(),
            content: params.string("content").unwrap_or(TROJAN).to_owned(),
        }
    }
}

impl Attack for ConsistentLayerReplace {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::Runtime
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let index = self.layer.unwrap_or(env.layer_count().saturating_sub(1));
        let layer = env.layer(index)?;
        let trojan = crate::steps::trojan_layer(env, index, &self.path, self.content.as_bytes())?;
        let staged = layer.erofs.with_extension("erofs.attacker");
        let io = |what: &str, e: std::io::Error| AttackError::env(format!("{what}: {e}"));
        std::fs::copy(&trojan.erofs, &staged).map_err(|e| io("staging the trojaned layer", e))?;
        std::fs::rename(&staged, &layer.erofs).map_err(|e| io("renaming it into place", e))?;
        env.rewrite_local_metadata(index, &trojan)?;
        Ok(format!(
            "renamed a trojaned {} with its own tree over layer {index} at rest, and rewrote its sidecar and \
             conversion record to root hash {}",
            self.path, trojan.root_hash
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let index = self.layer.unwrap_or(env.layer_count().saturating_sub(1));
        let layer = env.layer(index)?;
        let bytes =
            std::fs::read(&layer.erofs).map_err(|e| AttackError::env(format!("{}: {e}", layer.erofs.display())))?;
        let data = &bytes[..bytes.len().min(usize::try_from(layer.data_size).unwrap_or(usize::MAX))];
        let needle = self.content.as_bytes();
        let at = (!needle.is_empty())
            .then(|| data.windows(needle.len()).position(|w| w == needle))
            .flatten();
        Ok(match at {
            Some(at) => Effect::Seen(format!(
                "the layer at rest holds the trojaned {} (at byte {at}) under records that agree with it: the next \
                 container started from this image runs it",
                self.path
            )),
            None => Effect::Genuine(format!("the layer at rest does not hold the trojaned {}", self.path)),
        })
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "consistent-layer-replace",
    summary: "while the container runs, rename a trojaned layer, its sidecar and its conversion record into place, all consistent",
    params: &[LAYER, TROJAN_PATH, TROJAN_CONTENT],
    create: |params| Ok(Box::new(ConsistentLayerReplace::new(params))),
};
