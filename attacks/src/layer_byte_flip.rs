//! `layer-byte-flip`: one byte of a file's data flipped inside a stored layer.

use crate::catalogue::{AttackSpec, LAYER, ParamType, opt, req};
use crate::{Attack, AttackError, Effect, Env, Params, Stage, flip_byte};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct LayerByteFlip {
    layer: Option<usize>,
    path: String,
    offset: u64,
    flipped: Option<u8>,
}

impl LayerByteFlip {
    /// From the scenario's parameters (`layer`, `path`, `offset`).
    pub(crate) fn new(params: &Params) -> Result<Self, AttackError> {
        Ok(Self {
            layer: params.layer(),
            path: params.required("path")?,
            offset: params.integer("offset").unwrap_or(0),
            flipped: None,
        })
    }
}

impl Attack for LayerByteFlip {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let index = self.layer.unwrap_or(env.layer_count().saturating_sub(1));
        let layer = env.layer(index)?;
        let at = crate::steps::file_offset(env, index, &self.path)? + self.offset;
        let (old, new) = flip_byte(&layer.erofs, at)?;
        self.flipped = Some(new);
        Ok(format!(
            "flipped byte {at} of {} ({} + {}): {old:#04x} -> {new:#04x}",
            layer.erofs.display(),
            self.path,
            self.offset
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(&self.path)?;
        let at = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let byte = seen.get(at).copied();
        let detail = format!(
            "the container reads /{} ({} bytes), byte {at} is {}",
            self.path,
            seen.len(),
            byte.map_or_else(|| "missing".to_owned(), |b| format!("{b:#04x}"))
        );
        Ok(match self.flipped {
            Some(new) if byte == Some(new) => Effect::Seen(format!("{detail}: the flipped byte")),
            Some(_) => Effect::Genuine(format!("{detail}: not the flipped byte")),
            None => Effect::Unobservable("no byte was flipped".to_owned()),
        })
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "layer-byte-flip",
    summary: "flip one byte of a file's data inside a stored layer",
    params: &[
        LAYER,
        req("path", ParamType::Path, "file whose data gets the flipped byte"),
        opt(
            "offset",
            ParamType::Integer,
            "byte offset inside that file (default: 0)",
        ),
    ],
    create: |params| Ok(Box::new(LayerByteFlip::new(params)?)),
};
