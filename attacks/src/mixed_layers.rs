//! `mixed-layers`: an image assembled from the layers of two correctly signed images.

use crate::catalogue::{AttackSpec, ParamType, opt};
use crate::{Attack, AttackError, Effect, Env, Params, Stage};

/// The file every layer of the second image carries.
pub const FOREIGN_FILE: &str = "etc/build";
/// Its content.
pub const FOREIGN_CONTENT: &str = "second image\n";

/// The attack.
#[derive(Debug, Clone)]
pub struct MixedLayers {
    foreign: usize,
}

impl MixedLayers {
    /// From the scenario's parameters (`foreign-layers`).
    pub fn new(params: &Params) -> Self {
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
        env.mix_layers(self.foreign)
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(FOREIGN_FILE)?;
        Ok(Effect::read(FOREIGN_FILE, &seen, FOREIGN_CONTENT.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub const SPEC: AttackSpec = AttackSpec {
    name: "mixed-layers",
    summary: "assemble an image from the layers of two correctly signed images",
    params: &[opt(
        "foreign-layers",
        ParamType::Integer,
        "layers taken from the second image (default: 1)",
    )],
    create: |params| Ok(Box::new(MixedLayers::new(params))),
};
