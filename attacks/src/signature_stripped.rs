//! `signature-stripped`: the image's signature deleted.

use crate::{Attack, AttackError, Env, Stage};

/// The attack.
#[derive(Debug, Clone, Copy)]
pub struct SignatureStripped;

impl Attack for SignatureStripped {
    fn name(&self) -> &'static str {
        "signature-stripped"
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        env.remove_signatures()
    }
}
