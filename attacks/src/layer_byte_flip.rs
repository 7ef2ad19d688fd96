//! `layer-byte-flip`: one byte of a file's data flipped inside a stored layer.

use crate::{Attack, AttackError, Effect, Env, Params, Stage, flip_byte};

/// The attack.
#[derive(Debug, Clone)]
pub struct LayerByteFlip {
    layer: Option<usize>,
    path: String,
    offset: u64,
}

impl LayerByteFlip {
    /// From the scenario's parameters (`layer`, `path`, `offset`).
    pub fn new(params: &Params) -> Result<Self, AttackError> {
        Ok(Self {
            layer: params.layer(),
            path: params.required("path")?,
            offset: params.integer("offset").unwrap_or(0),
        })
    }
}

impl Attack for LayerByteFlip {
    fn name(&self) -> &'static str {
        "layer-byte-flip"
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let index = self.layer.unwrap_or(env.layer_count().saturating_sub(1));
        let layer = env.layer(index)?;
        let at = env.file_offset(index, &self.path)? + self.offset;
        let (old, new) = flip_byte(&layer.erofs, at)?;
        Ok(format!(
            "flipped byte {at} of {} ({} + {}): {old:#04x} -> {new:#04x}",
            layer.erofs.display(),
            self.path,
            self.offset
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(&self.path)?;
        Ok(Effect {
            took_effect: true,
            detail: format!("the container reads /{} ({} bytes)", self.path, seen.len()),
        })
    }
}
