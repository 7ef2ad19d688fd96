//! `signature-other-key`: the image re-signed with a key the node does not trust.

use crate::{Attack, AttackError, Env, Stage};

/// The attack.
#[derive(Debug, Clone, Copy)]
pub struct SignatureOtherKey;

impl Attack for SignatureOtherKey {
    fn name(&self) -> &'static str {
        "signature-other-key"
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        env.sign_with_other_key()
    }
}
