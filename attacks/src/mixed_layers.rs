//! `mixed-layers`: an image assembled from the layers of two correctly signed images.

use crate::{Attack, AttackError, Env, Params, Stage};

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
        "mixed-layers"
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        env.mix_layers(self.foreign)
    }
}
