//! `rollback`: an older, correctly signed image of the same repository served instead of the current one.

use crate::{Attack, AttackError, Env, Params, Stage};

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
        "rollback"
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        env.serve_older(self.within_window)
    }
}
