//! `signature-stripped`: a modified image served with no signature at all.

use crate::catalogue::{AttackSpec, SCHEME};
use crate::{Attack, AttackError, Effect, Env, Stage, TROJAN};

/// The attack.
#[derive(Debug, Clone, Copy)]
pub struct SignatureStripped;

impl Attack for SignatureStripped {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let removed = env.remove_signatures()?;
        let modified = env.modify_image("bin/app", TROJAN.as_bytes())?;
        Ok(format!("{removed}; {modified}"))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container("bin/app")?;
        Ok(Effect::read("bin/app", &seen, TROJAN.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub const SPEC: AttackSpec = AttackSpec {
    name: "signature-stripped",
    summary: "serve a modified image with its signature deleted",
    params: &[SCHEME],
    create: |_| Ok(Box::new(SignatureStripped)),
};
