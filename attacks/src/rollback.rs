//! `rollback`: an older, correctly signed image of the same repository served instead of the current one.

use crate::catalogue::{AttackSpec, ParamType, opt};
use crate::{Attack, AttackError, Effect, Env, Params, SigningKey, Stage, layer_tar, steps};

/// The file whose content tells the older build from the current one.
pub(crate) const VERSION_FILE: &str = "etc/version";
/// What [`VERSION_FILE`] reads in the older build.
pub(crate) const OLDER_VERSION: &str = "1.0 (vulnerable)\n";

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct Rollback {
    within_window: bool,
}

impl Rollback {
    /// From the scenario's parameters (`within-window`).
    pub(crate) fn new(params: &Params) -> Self {
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
        let times = env.build_times();
        let built = if self.within_window {
            times.minimum + 86_400
        } else {
            times.minimum.saturating_sub(365 * 86_400)
        };
        let mut tars = steps::layer_tars(env)?;
        if let Some(top) = tars.last_mut() {
            *top = layer_tar::with_file(top, VERSION_FILE, OLDER_VERSION.as_bytes())?;
        }
        let older = steps::publish_signed(env, "old", &tars, SigningKey::Trusted, built)?;
        steps::retag(env, older.clone())?;
        Ok(format!(
            "serving the older signed build {} (built {}) in place of the current one",
            older.digest,
            veritylab::utc::rfc3339(built)
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container(VERSION_FILE)?;
        Ok(Effect::read(VERSION_FILE, &seen, OLDER_VERSION.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "rollback",
    summary: "serve an older, correctly signed image of the same repository",
    params: &[opt(
        "within-window",
        ParamType::Bool,
        "whether the older image's build timestamp still meets the policy's minimum (default: false)",
    )],
    create: |params| Ok(Box::new(Rollback::new(params))),
};
