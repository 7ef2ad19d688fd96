//! `upperdir-write`: a file written into the container's overlay upperdir from the host.

use crate::catalogue::{AttackSpec, ParamType, opt, req};
use crate::{Attack, AttackError, Effect, Env, Params, Stage, TROJAN};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct UpperdirWrite {
    path: String,
    content: String,
}

impl UpperdirWrite {
    /// From the scenario's parameters (`path`, `content`).
    pub(crate) fn new(params: &Params) -> Result<Self, AttackError> {
        Ok(Self {
            path: params.required("path")?,
            content: params.string("content").unwrap_or(TROJAN).to_owned(),
        })
    }
}

impl Attack for UpperdirWrite {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::Runtime
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let Some(upper) = env.upperdir() else {
            // No upperdir to write into from the host: the attacker's next best is writing through the
            // container. A read-only rootfs refuses it (the lab's refusal comes back as the error); a write
            // that succeeds is reported as done, and `observe` reads it back.
            env.write_in_container(&self.path, self.content.as_bytes())?;
            return Ok(format!("no upperdir; wrote /{} through the container", self.path));
        };
        let dest = upper.join(&self.path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| AttackError::env(format!("{}: {e}", parent.display())))?;
        }
        std::fs::write(&dest, &self.content).map_err(|e| AttackError::env(format!("{}: {e}", dest.display())))?;
        Ok(format!("wrote {} from the host", dest.display()))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(&self.path)?;
        Ok(Effect::read(&self.path, &seen, self.content.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "upperdir-write",
    summary: "write a file into the container's overlay upperdir from the host",
    params: &[
        req("path", ParamType::Path, "the file written"),
        opt("content", ParamType::String, "its content (default: a marker script)"),
    ],
    create: |params| Ok(Box::new(UpperdirWrite::new(params)?)),
};
