//! `check-at-most-once-tamper`: under `check_at_most_once`, a block changed on disk after its first verified
//! read.

use crate::catalogue::{AttackSpec, LAYER, ParamType, req};
use crate::{Attack, AttackError, Effect, Env, Params, Stage, flip_byte};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct CheckAtMostOnceTamper {
    layer: Option<usize>,
    path: String,
    flipped: Option<u8>,
}

impl CheckAtMostOnceTamper {
    /// From the scenario's parameters (`layer`, `path`).
    pub(crate) fn new(params: &Params) -> Result<Self, AttackError> {
        Ok(Self {
            layer: params.layer(),
            path: params.required("path")?,
            flipped: None,
        })
    }
}

impl Attack for CheckAtMostOnceTamper {
    fn name(&self) -> &'static str {
        SPEC.name
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
        let at = crate::steps::file_offset(env, index, &self.path)?;
        let (old, new) = flip_byte(&layer.erofs, at)?;
        self.flipped = Some(new);
        let dropped = env.drop_caches()?;
        Ok(format!(
            "after the first read, flipped byte {at} of {} (start of {}): {old:#04x} -> {new:#04x}; {dropped}",
            layer.erofs.display(),
            self.path
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(&self.path)?;
        let detail = format!(
            "the container reads /{} again: {:?}",
            self.path,
            String::from_utf8_lossy(&seen)
        );
        Ok(match (self.flipped, seen.first()) {
            (Some(new), Some(&first)) if first == new => Effect::Seen(format!("{detail} (the flipped first byte)")),
            (Some(_), _) => Effect::Genuine(format!("{detail} (not the flipped first byte)")),
            (None, _) => Effect::Unobservable("no byte was flipped".to_owned()),
        })
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "check-at-most-once-tamper",
    summary: "under check_at_most_once, change a block on disk after its first verified read",
    params: &[
        LAYER,
        req(
            "path",
            ParamType::Path,
            "file whose data block is changed after it was read once",
        ),
    ],
    create: |params| Ok(Box::new(CheckAtMostOnceTamper::new(params)?)),
};
