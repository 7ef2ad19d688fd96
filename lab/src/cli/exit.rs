//! The exit codes of `veritylab`, each derived from an [`ErrorClass`] alone.

use std::fmt::Write as _;

use verity_fuse::ErrorClass;

/// How `veritylab` ends. [`VeritylabExit::BrokenPipe`] is what a shell reports for a command killed by
/// `SIGPIPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VeritylabExit {
    /// The command did what was asked (and `check` found nothing, every scenario cell was as expected).
    Success,
    /// An I/O failure, something this host lacks (a tool, a privilege, a backend), or an internal error.
    Failure,
    /// A usage error: arguments that make no sense together or a required one left out.
    Usage,
    /// The input was refused: malformed or unsupported, failed verification, or not trusted.
    Rejected,
    /// The command ran and found problems: `check` findings, scenario cells that differ from their expectation.
    Findings,
    /// Something is in use, already exists, or was left behind (`umount`, `cleanup`).
    Busy,
    /// The reader of the output went away; nothing is printed about it.
    BrokenPipe,
}

impl VeritylabExit {
    /// Every exit code, in numeric order.
    pub const ALL: [VeritylabExit; 7] = [
        Self::Success,
        Self::Failure,
        Self::Usage,
        Self::Rejected,
        Self::Findings,
        Self::Busy,
        Self::BrokenPipe,
    ];

    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::Rejected => 3,
            Self::Findings => 4,
            Self::Busy => 5,
            Self::BrokenPipe => 141,
        }
    }

    /// What the code means, as the help and the README say it.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "an I/O failure, something this host lacks, or an internal error",
            Self::Usage => "usage error",
            Self::Rejected => "input refused: malformed or unsupported, failed verification, or not trusted",
            Self::Findings => "check found problems, or scenario cells differ from their expectation",
            Self::Busy => "something is in use, already exists, or was left behind",
            Self::BrokenPipe => "the reader of the output went away (as a shell reports SIGPIPE)",
        }
    }

    /// The exit code of a failure of class `class`.
    pub fn from_class(class: ErrorClass) -> VeritylabExit {
        match class {
            ErrorClass::Usage => Self::Usage,
            ErrorClass::BadInput | ErrorClass::VerificationFailed | ErrorClass::NotTrusted => Self::Rejected,
            ErrorClass::Findings => Self::Findings,
            ErrorClass::Busy => Self::Busy,
            ErrorClass::OutputClosed => Self::BrokenPipe,
            ErrorClass::Io | ErrorClass::Unavailable | ErrorClass::Internal => Self::Failure,
            _ => Self::Failure,
        }
    }

    /// The table of exit codes that `--help` ends with.
    pub fn help() -> String {
        let mut text = String::from("Exit codes:\n");
        for exit in Self::ALL {
            let _ = writeln!(text, "  {:>3}  {}", exit.code(), exit.meaning());
        }
        text
    }
}

impl From<VeritylabExit> for std::process::ExitCode {
    fn from(exit: VeritylabExit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_an_exit_code_and_codes_are_unique() {
        let codes: std::collections::HashSet<u8> = VeritylabExit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes.len(), VeritylabExit::ALL.len());
        assert_eq!(VeritylabExit::from_class(ErrorClass::OutputClosed).code(), 128 + 13);
        for class in ErrorClass::ALL {
            assert_ne!(VeritylabExit::from_class(class), VeritylabExit::Success, "{class}");
        }
    }
}
