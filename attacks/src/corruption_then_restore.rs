//! `corruption-then-restore`: a byte of a file's data changed in a stored layer while the container runs, the
//! file read once, and the byte put back, so the layer on disk is genuine again when anyone looks.

use crate::catalogue::{AttackSpec, LAYER, ParamType, req};
use crate::{Attack, AttackError, DefenceRefusal, Effect, Env, Params, Stage, flip_byte};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct CorruptionThenRestore {
    layer: Option<usize>,
    path: String,
    reached: bool,
}

impl CorruptionThenRestore {
    /// From the scenario's parameters (`layer`, `path`).
    pub(crate) fn new(params: &Params) -> Result<Self, AttackError> {
        Ok(Self {
            layer: params.layer(),
            path: params.required("path")?,
            reached: false,
        })
    }
}

impl Attack for CorruptionThenRestore {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::Runtime
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let index = self.layer.unwrap_or(env.layer_count().saturating_sub(1));
        let layer = env.layer(index)?;
        let genuine = env.read_in_container(&self.path)?;
        let at = crate::steps::file_offset(env, index, &self.path)?;
        let (old, new) = flip_byte(&layer.erofs, at)?;
        env.drop_caches()?;
        let read = env.read_in_container(&self.path);
        flip_byte(&layer.erofs, at)?;
        env.drop_caches()?;
        let seen = match read {
            Ok(seen) => {
                self.reached = seen != genuine;
                format!("the container read /{} ({} bytes)", self.path, seen.len())
            }
            Err(AttackError::Refused {
                kind: DefenceRefusal::HashMismatch,
                message,
            }) => format!("the container's read failed: {message}"),
            Err(other) => return Err(other),
        };
        Ok(format!(
            "flipped byte {at} of {} (start of {}): {old:#04x} -> {new:#04x}; {seen}; restored the byte and dropped \
             caches",
            layer.erofs.display(),
            self.path
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(&self.path)?;
        let detail = format!(
            "the tampered bytes {} the container while they were on disk; /{} now reads {} genuine bytes again",
            if self.reached { "reached" } else { "never reached" },
            self.path,
            seen.len()
        );
        Ok(if self.reached {
            Effect::Seen(detail)
        } else {
            Effect::Genuine(detail)
        })
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "corruption-then-restore",
    summary: "change a byte of a stored layer while the container runs, let it read the file, then put the byte \
              back",
    params: &[
        LAYER,
        req(
            "path",
            ParamType::Path,
            "file whose first data byte is changed and restored",
        ),
    ],
    create: |params| Ok(Box::new(CorruptionThenRestore::new(params)?)),
};
