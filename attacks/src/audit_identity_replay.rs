//! `audit-identity-replay`: a layer's mount replaced while the container runs by one made alike, so every
//! identity that the kernel hands out again (mount ids, the loop minor, the overlay's device number, the
//! loop's backing path) comes back the same and only identities that are never reused tell them apart. The
//! attack keeps what the replay says of each identity it did not get back (another process on the node took
//! it while it was free), so that a report can tell a perfect replay from an imperfect one.

use crate::catalogue::{AttackSpec, LAYER, TROJAN_CONTENT, TROJAN_PATH};
use crate::{Attack, AttackError, Effect, Env, Params, ReplayFidelity, Stage, TROJAN};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct AuditIdentityReplay {
    layer: Option<usize>,
    path: String,
    content: String,
    /// How faithful the replay was, once it is done.
    replayed: Option<ReplayFidelity>,
}

impl AuditIdentityReplay {
    /// From the scenario's parameters (`layer`, `path`, `content`).
    pub(crate) fn new(params: &Params) -> Self {
        Self {
            layer: params.layer(),
            path: params.string("path").unwrap_or("bin/app").to_owned(),
            content: params.string("content").unwrap_or(TROJAN).to_owned(),
            replayed: None,
        }
    }
}

impl Attack for AuditIdentityReplay {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::Runtime
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let index = self.layer.unwrap_or(env.layer_count().saturating_sub(1));
        let trojan = crate::steps::trojan_layer(env, index, &self.path, self.content.as_bytes())?;
        let replayed = env.replay_layer_mount(index, &trojan)?;
        let done = format!("{} ({})", replayed.done, replayed.fidelity);
        self.replayed = Some(replayed.fidelity);
        Ok(done)
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(&self.path)?;
        Ok(Effect::read(&self.path, &seen, self.content.as_bytes()))
    }

    fn replay_fidelity(&self) -> Option<&ReplayFidelity> {
        self.replayed.as_ref()
    }

    fn revert(&mut self, env: &mut dyn Env) -> Result<(), AttackError> {
        if self.replayed.is_some() {
            env.release_replay()?;
        }
        Ok(())
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "audit-identity-replay",
    summary: "replace a layer's mount and the rootfs in the running container by ones made alike over a trojaned \
              copy, on the same loop device, mount ids and device numbers",
    params: &[LAYER, TROJAN_PATH, TROJAN_CONTENT],
    create: |params| Ok(Box::new(AuditIdentityReplay::new(params))),
};
