//! The `veritylab scenario` and `veritylab demo` subcommands as library code, with their error and its exit
//! code; the `veritylab` binary joins them to the pipeline's subcommands of [`veritylab::cli`].

pub mod demo;
pub mod scenario;

use veritylab::cli::CliError;

/// A failed `scenario` or `demo` command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// A pipeline step, an argument or an I/O failure, as the pipeline's commands report it.
    #[error(transparent)]
    Lab(#[from] CliError),
    /// Scenario files failed to load or validate.
    #[error(transparent)]
    Load(#[from] crate::LoadErrors),
    /// A scenario run observed outcomes other than the expected ones (the report lists the differences).
    #[error("{failed} cell(s) differ from their expected outcome, {errors} cell(s) failed to run")]
    Failed {
        /// Cells whose observation differs.
        failed: usize,
        /// Cells whose harness failed.
        errors: usize,
    },
    /// The backend asked for cannot run here.
    #[error("backend {backend} is not available here: {reason}")]
    Unavailable {
        /// The backend.
        backend: crate::RunnerBackend,
        /// Why.
        reason: String,
    },
    /// A `kernel-vm` batch could not run or finish.
    #[error(transparent)]
    KernelVm(#[from] crate::vm::KernelVmError),
}

impl CommandError {
    /// The process exit code: a pipeline error's own ([`CliError::exit_code`]), 3 for scenario files that do
    /// not load, 4 when a run's cells differ from their expectation, 1 for a backend not available here or a
    /// `kernel-vm` batch that failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Lab(e) => e.exit_code(),
            CommandError::Load(_) => 3,
            CommandError::Failed { .. } => 4,
            CommandError::Unavailable { .. } | CommandError::KernelVm(_) => 1,
        }
    }
}
