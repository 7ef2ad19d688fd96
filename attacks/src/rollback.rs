//! `rollback`: an older, correctly signed image of the same repository served instead of the current one.

use crate::catalogue::{AttackSpec, ParamType, opt};
use crate::{Attack, AttackError, Effect, Env, Params, Stage};

/// The file whose content tells the older build from the current one.
pub const VERSION_FILE: &str = "etc/version";
/// What [`VERSION_FILE`] reads in the older build.
pub const OLDER_VERSION: &str = "1.0 (vulnerable)\n";

/// The attack.
#[derive(Debug, Clone)]
pub struct Rollback {
    within_window: bool,
}

impl Rollback {
    /// From the scenario's parameters (`within-window`).
    pub fn new(params: &Params) -> Self {
        Self {
            within_window: params.bool("within-window").unwrap_or(false),
        }
    }
}

impl Attack for Rollback {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        env.serve_older(self.within_window)
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(VERSION_FILE)?;
        Ok(Effect::read(VERSION_FILE, &seen, OLDER_VERSION.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub const SPEC: AttackSpec = AttackSpec {
    name: "rollback",
    summary: "serve an older, correctly signed image of the same repository",
    params: &[opt(
        "within-window",
        ParamType::Bool,
        "whether the older image's build timestamp still meets the policy's minimum (default: false)",
    )],
    create: |params| Ok(Box::new(Rollback::new(params))),
};
