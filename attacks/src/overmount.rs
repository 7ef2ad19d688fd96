//! `overmount`: a mount over a path inside the running container's rootfs, in its mount namespace.

use crate::{Attack, AttackError, Env, MountKind, Params, Stage};

/// The attack.
#[derive(Debug, Clone)]
pub struct Overmount {
    path: String,
    kind: MountKind,
    mounted: bool,
}

impl Overmount {
    /// From the scenario's parameters (`path`, `fs`).
    pub fn new(params: &Params) -> Result<Self, AttackError> {
        Ok(Self {
            path: params.required("path")?,
            kind: match params.string("fs") {
                Some("bind") => MountKind::Bind,
                _ => MountKind::Tmpfs,
            },
            mounted: false,
        })
    }
}

impl Attack for Overmount {
    fn name(&self) -> &'static str {
        "overmount"
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
