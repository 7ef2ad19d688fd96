//! `mixed-layers`: an image assembled from the layers of two correctly signed images.

use crate::catalogue::{AttackSpec, ParamType, opt};
use crate::{Attack, AttackError, Effect, Env, Params, SigningKey, Stage, layer_tar, steps};
use veritylab::sign::delivery_kit;

/// The file every layer of the second image carries.
pub(crate) const FOREIGN_FILE: &str = "etc/build";
/// Its content.
pub(crate) const FOREIGN_CONTENT: &str = "second image\n";

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct MixedLayers {
    foreign: usize,
}

impl MixedLayers {
    /// From the scenario's parameters (`foreign-layers`).
    pub(crate) fn new(params: &Params) -> Self {
        Self {
            foreign: params
                .integer("foreign-layers")
                .map_or(1, |v| usize::try_from(v).unwrap_or(usize::MAX)),
        }
    }
}

impl Attack for MixedLayers {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let mut second = steps::layer_tars(env)?;
        for layer in &mut second {
            *layer = layer_tar::with_file(layer, FOREIGN_FILE, FOREIGN_CONTENT.as_bytes())?;
        }
        let built = env.build_times().built;
        steps::publish_signed(env, "other", &second, SigningKey::Trusted, built)?;
        let (current, ours) = steps::manifest_of(env, env.image())?;
        let previous = format!("{}:previous", steps::repository(env));
        env.store()
            .tag(&previous, current)
            .map_err(|e| AttackError::env(format!("tagging: {e}")))?;
        let (_, theirs) = steps::manifest_of(env, &format!("{}:other", steps::repository(env)))?;
        let keep = ours.layers.len().saturating_sub(self.foreign.min(theirs.layers.len()));
        let mut mixed = ours.clone();
        mixed.layers = ours.layers[..keep]
            .iter()
            .chain(theirs.layers.get(keep..).unwrap_or_default())
            .cloned()
            .collect();
        mixed.annotations.remove(delivery_kit::SIGNATURE);
        let digest = steps::replace_manifest(env, &mixed, false)?;
        Ok(format!(
            "assembled {digest}: {keep} layers of the image and {} of a second signed image; no signature covers it",
            ours.layers.len() - keep
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(FOREIGN_FILE)?;
        Ok(Effect::read(FOREIGN_FILE, &seen, FOREIGN_CONTENT.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "mixed-layers",
    summary: "assemble an image from the layers of two correctly signed images",
    params: &[opt(
        "foreign-layers",
        ParamType::Integer,
        "layers taken from the second image (default: 1)",
    )],
    create: |params| Ok(Box::new(MixedLayers::new(params))),
};
