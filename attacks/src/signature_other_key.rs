//! `signature-other-key`: a modified image signed with a key the node does not trust.

use crate::catalogue::{AttackSpec, SCHEME};
use crate::{Attack, AttackError, Effect, Env, SigningKey, Stage, TROJAN, steps};

/// The attack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignatureOtherKey;

impl Attack for SignatureOtherKey {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let modified = steps::modify_image(env, "bin/app", TROJAN.as_bytes())?;
        let image = env.image().to_owned();
        let built = env.build_times().built;
        let signed = env.sign(&image, SigningKey::Untrusted, built)?;
        Ok(format!(
            "{modified}; signed it as {signed} with a key the node does not trust"
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container("bin/app")?;
        Ok(Effect::read("bin/app", &seen, TROJAN.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "signature-other-key",
    summary: "serve a modified image signed with a key the node does not trust",
    params: &[SCHEME],
    create: |_| Ok(Box::new(SignatureOtherKey)),
};
