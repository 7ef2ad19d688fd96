//! `container-pid-replay`: the container's process replaced by a decoy of the attacker's that the kernel gives
//! the same pid, in the container's own mount namespace, so that a check which names the container's process
//! by its pid, or audits the namespace that pid leads to, finds everything as it was.

use crate::catalogue::AttackSpec;
use crate::{Attack, AttackError, Effect, Env, Stage};

/// What the decoy runs: the container's own command with another argument, so it can be told apart.
pub(crate) const DECOY_MARK: &str = "100001";

/// The attack.
#[derive(Debug, Clone, Default)]
pub(crate) struct ContainerPidReplay {
    replaced: bool,
}

impl Attack for ContainerPidReplay {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::Runtime
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let done = env.replace_container_process(DECOY_MARK)?;
        self.replaced = true;
        Ok(done)
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.container_process()?;
        let detail = format!("the container's pid runs `{seen}`");
        Ok(if seen.split(' ').any(|arg| arg == DECOY_MARK) {
            Effect::Seen(detail)
        } else {
            Effect::Genuine(detail)
        })
    }

    fn revert(&mut self, env: &mut dyn Env) -> Result<(), AttackError> {
        if self.replaced {
            env.release_replaced_process()?;
            self.replaced = false;
        }
        Ok(())
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "container-pid-replay",
    summary: "kill the running container's process and have the kernel give its pid to a decoy in the \
              container's own mount namespace",
    params: &[],
    create: |_| Ok(Box::new(ContainerPidReplay::default())),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stub::Stub;

    #[test]
    fn without_a_container_process_the_attack_is_the_harness_failing() {
        let mut stub = Stub::default();
        let mut attack = ContainerPidReplay::default();
        let err = attack.detonate(&mut stub).unwrap_err();
        assert!(!matches!(err, AttackError::Refused { .. }), "{err}");
        attack.revert(&mut stub).unwrap();
    }
}
