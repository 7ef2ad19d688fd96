//! `extra-mount`: a mount that is not on a verified device, added at a fresh path inside the container.

use crate::{Attack, AttackError, Env, MountKind, Params, Stage};

/// The attack.
#[derive(Debug, Clone)]
pub struct ExtraMount {
    path: String,
    kind: MountKind,
    mounted: bool,
}

impl ExtraMount {
    /// From the scenario's parameters (`path`, `fs`).
    pub fn new(params: &Params) -> Result<Self, AttackError> {
        Ok(Self {
            path: params.required("path")?,
            kind: match params.string("fs") {
                Some("tmpfs") => MountKind::Tmpfs,
                _ => MountKind::UnverifiedErofs,
            },
            mounted: false,
        })
    }
}

impl Attack for ExtraMount {
    fn name(&self) -> &'static str {
        "extra-mount"
    }

    fn stage(&self) -> Stage {
        Stage::Runtime
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let done = env.add_mount(&self.path, self.kind)?;
        self.mounted = true;
        Ok(done)
    }

    fn revert(&mut self, env: &mut dyn Env) -> Result<(), AttackError> {
        if self.mounted {
            env.remove_mount(&self.path)?;
            self.mounted = false;
        }
        Ok(())
    }
}
