//! `hash-tree-byte-flip`: one byte flipped in a layer's dm-verity hash tree.

use crate::catalogue::{AttackSpec, LAYER, ParamType, opt};
use crate::{Attack, AttackError, Effect, Env, Params, Stage, flip_byte};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct HashTreeByteFlip {
    layer: Option<usize>,
    level: u64,
    offset: u64,
    damaged: Option<(usize, u64)>,
}

impl HashTreeByteFlip {
    /// From the scenario's parameters (`layer`, `level`, `offset`).
    pub(crate) fn new(params: &Params) -> Self {
        Self {
            layer: params.layer(),
            level: params.integer("level").unwrap_or(0),
            offset: params.integer("offset").unwrap_or(0),
            damaged: None,
        }
    }
}

impl Attack for HashTreeByteFlip {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let index = self.layer.unwrap_or(env.layer_count().saturating_sub(1));
        let layer = env.layer(index)?;
        let start = usize::try_from(self.level)
            .ok()
            .and_then(|l| layer.levels.get(l))
            .copied()
            .ok_or_else(|| AttackError::Param {
                name: "level".to_owned(),
                reason: format!("the tree has {} levels", layer.levels.len()),
            })?;
        let at = start + self.offset;
        let (old, new) = flip_byte(&layer.erofs, at)?;
        self.damaged = Some((index, layer.data_size));
        Ok(format!(
            "flipped byte {} of tree level {} in {} (file offset {at}): {old:#04x} -> {new:#04x}",
            self.offset,
            self.level,
            layer.erofs.display()
        ))
    }

    /// The attacker wants the damaged tree accepted: the container reading every data block of the layer
    /// through its device without an error.
    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let Some((index, size)) = self.damaged else {
            return Ok(Effect::Unobservable("no tree byte was flipped".to_owned()));
        };
        let len = usize::try_from(size).map_err(AttackError::env)?;
        let read = env.read_device(index, 0, len)?;
        Ok(Effect::Seen(format!(
            "the container's device of layer {index} served all {} bytes under the damaged tree",
            read.len()
        )))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "hash-tree-byte-flip",
    summary: "flip one byte in a layer's dm-verity hash tree",
    params: &[
        LAYER,
        opt(
            "level",
            ParamType::Integer,
            "tree level, 0 = the level that hashes data blocks (default: 0)",
        ),
        opt(
            "offset",
            ParamType::Integer,
            "byte offset inside that level (default: 0)",
        ),
    ],
    create: |params| Ok(Box::new(HashTreeByteFlip::new(params))),
};
