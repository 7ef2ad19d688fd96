//! `check-at-most-once-tamper`: under `check_at_most_once`, a block changed on disk after its first verified
//! read.

use crate::{Attack, AttackError, Effect, Env, Params, Stage, flip_byte};

/// The attack.
#[derive(Debug, Clone)]
pub struct CheckAtMostOnceTamper {
    layer: Option<usize>,
    path: String,
}

impl CheckAtMostOnceTamper {
    /// From the scenario's parameters (`layer`, `path`).
    pub fn new(params: &Params) -> Result<Self, AttackError> {
        Ok(Self {
            layer: params.layer(),
            path: params.required("path")?,
        })
    }
}

impl Attack for CheckAtMostOnceTamper {
    fn name(&self) -> &'static str {
        "check-at-most-once-tamper"
    }

    fn stage(&self) -> Stage {
        Stage::AfterFirstRead
    }

    fn prepare(&mut self, env: &mut dyn Env) -> Result<(), AttackError> {
        env.set_check_at_most_once();
        Ok(())
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let index = self.layer.unwrap_or(env.layer_count().saturating_sub(1));
        let layer = env.layer(index)?;
        let at = env.file_offset(index, &self.path)?;
        let (old, new) = flip_byte(&layer.erofs, at)?;
        env.drop_caches();
        Ok(format!(
            "after the first read, flipped byte {at} of {} (start of {}): {old:#04x} -> {new:#04x}; caches dropped",
            layer.erofs.display(),
            self.path
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(&self.path)?;
        Ok(Effect {
            took_effect: true,
            detail: format!(
                "the container reads /{} again: {:?}",
                self.path,
                String::from_utf8_lossy(&seen)
            ),
        })
    }
}
