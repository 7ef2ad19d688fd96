//! `pinned-layer-replace`: the pinned standard-mountpoints layer replaced by one that changes a file.

use crate::catalogue::{AttackSpec, ParamType, opt};
use std::io::Read;

use veritylab::mount;

use crate::{Attack, AttackError, Effect, Env, Params, Stage, layer_tar, steps};

/// The attacker's resolver, written into the replacement layer.
const RESOLVER: &str = "nameserver 203.0.113.66\n";

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct PinnedLayerReplace {
    path: String,
}

impl PinnedLayerReplace {
    /// From the scenario's parameters (`path`).
    pub(crate) fn new(params: &Params) -> Self {
        Self {
            path: params.string("path").unwrap_or("etc/resolv.conf").to_owned(),
        }
    }
}

impl Attack for PinnedLayerReplace {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let Some(file) = env.pinned_layer() else {
            return Ok("the profile has no pinned layer".to_owned());
        };
        let err = |what: &str| {
            let what = what.to_owned();
            move |e: std::io::Error| AttackError::env(format!("{what}: {e}"))
        };
        mount::pinned::ensure(env.store()).map_err(|e| AttackError::env(format!("the pinned layer: {e}")))?;
        let content = RESOLVER.as_bytes();
        let mut builder = layer_tar::Builder::new(Vec::new());
        let genuine = mount::pinned::tar();
        let mut archive = tar::Archive::new(&genuine[..]);
        for entry in archive.entries().map_err(err("the pinned layer's tar"))? {
            let mut entry = entry.map_err(err("the pinned layer's tar"))?;
            let entry_path = entry.path().map_err(err("tar"))?.to_string_lossy().into_owned();
            let mut header = entry.header().clone();
            if entry_path.trim_end_matches('/') == self.path {
                header.set_size(content.len() as u64);
                header.set_cksum();
                builder.append(&header, content).map_err(err("tar"))?;
            } else {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).map_err(err("tar"))?;
                builder.append(&header, &data[..]).map_err(err("tar"))?;
            }
        }
        let tar = layer_tar::finish(builder).map_err(err("tar"))?;
        let built = steps::build_layer(env, &tar, "pinned.erofs")?;
        std::fs::copy(&built.erofs, &file).map_err(err(&file.display().to_string()))?;
        Ok(format!(
            "replaced {} with a layer whose /{} points at the attacker's resolver (root hash {})",
            file.display(),
            self.path,
            built.root_hash
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(&self.path)?;
        Ok(Effect::read(&self.path, &seen, RESOLVER.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "pinned-layer-replace",
    summary: "replace the pinned standard-mountpoints layer with one that changes a file",
    params: &[opt(
        "path",
        ParamType::Path,
        "file the replacement changes (default: etc/resolv.conf)",
    )],
    create: |params| Ok(Box::new(PinnedLayerReplace::new(params))),
};
