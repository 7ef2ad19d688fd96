//! The `veritylab scenario` and `veritylab demo` subcommands as library code, with their error and its class; the `veritylab` binary joins them to the pipeline's subcommands of [`veritylab::cli`].

pub mod demo;
pub mod narrate;
pub mod scenario;

use verity_fuse::ErrorClass;
use veritylab::cli::{CliError, VeritylabExit};

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
    /// The publisher key given with `--publisher-key` (or its certificate) could not be used.
    #[error(transparent)]
    Publisher(#[from] crate::PublisherError),
}

impl CommandError {
    /// What kind of failure this is: a pipeline error's own class, bad input for scenario files that do not
    /// load, findings when a run's cells differ from their expectation, unavailable for a backend this host
    /// lacks, and a `kernel-vm` batch's own class.
    pub fn class(&self) -> ErrorClass {
        match self {
            CommandError::Lab(e) => e.class(),
            CommandError::Load(_) => ErrorClass::BadInput,
            CommandError::Failed { .. } => ErrorClass::Findings,
            CommandError::Unavailable { .. } => ErrorClass::Unavailable,
            CommandError::KernelVm(e) => e.class(),
            CommandError::Publisher(e) => e.class(),
        }
    }

    /// How the process ends for this error, from its [`class`](Self::class) alone.
    pub fn exit(&self) -> VeritylabExit {
        VeritylabExit::from_class(self.class())
    }
}
