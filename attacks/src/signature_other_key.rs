//! `signature-other-key`: a modified image signed with a key the node does not trust.

use crate::catalogue::{AttackSpec, SCHEME};
use crate::{Attack, AttackError, Effect, Env, Stage, TROJAN};

/// The attack.
#[derive(Debug, Clone, Copy)]
pub struct SignatureOtherKey;

impl Attack for SignatureOtherKey {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        env.sign_with_other_key("bin/app", TROJAN.as_bytes())
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container("bin/app")?;
        Ok(Effect::read("bin/app", &seen, TROJAN.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub const SPEC: AttackSpec = AttackSpec {
    name: "signature-other-key",
    summary: "serve a modified image signed with a key the node does not trust",
    params: &[SCHEME],
    create: |_| Ok(Box::new(SignatureOtherKey)),
};
