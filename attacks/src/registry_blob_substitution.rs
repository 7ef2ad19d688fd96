//! `registry-blob-substitution`: the registry serves other bytes for a blob than its digest names.

use crate::catalogue::{AttackSpec, LAYER, ParamType, opt};
use crate::{Attack, AttackError, Effect, Env, Params, Stage};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct RegistryBlobSubstitution {
    config: bool,
    layer: Option<usize>,
}

impl RegistryBlobSubstitution {
    /// From the scenario's parameters (`blob`, `layer`).
    pub(crate) fn new(params: &Params) -> Self {
        Self {
            config: params.string("blob") == Some("config"),
            layer: params.layer(),
        }
    }
}

impl Attack for RegistryBlobSubstitution {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::Registry
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let manifest = env.registry_manifest()?;
        let digest = if self.config {
            manifest.config.digest
        } else {
            let layers = &manifest.layers;
            let index = self.layer.unwrap_or(layers.len().saturating_sub(1));
            layers
                .get(index)
                .map(|l| l.digest)
                .ok_or_else(|| AttackError::env(format!("the image has {} layers", layers.len())))?
        };
        let path = env.registry_blob(&digest)?;
        let mut bytes = std::fs::read(&path).map_err(|e| AttackError::env(format!("{}: {e}", path.display())))?;
        let last = bytes.len().saturating_sub(1);
        if let Some(b) = bytes.get_mut(last / 2) {
            *b ^= 0xff;
        }
        std::fs::write(&path, &bytes).map_err(|e| AttackError::env(format!("{}: {e}", path.display())))?;
        Ok(format!(
            "the registry now serves other bytes (same size) for {digest}, stored at {}",
            path.display()
        ))
    }

    /// One byte flipped in the middle of a compressed or tar stream has no file the container could be
    /// checked for: only the pull's refusal can settle this attack.
    fn observe(&mut self, _env: &mut dyn Env) -> Result<Effect, AttackError> {
        Ok(Effect::Unobservable(
            "a substituted blob changes no file the container could be checked for".to_owned(),
        ))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "registry-blob-substitution",
    summary: "make the registry serve other bytes for a blob than its digest names",
    params: &[
        opt(
            "blob",
            ParamType::Choice(&["layer", "config"]),
            "which blob is substituted (default: layer)",
        ),
        LAYER,
    ],
    create: |params| Ok(Box::new(RegistryBlobSubstitution::new(params))),
};
