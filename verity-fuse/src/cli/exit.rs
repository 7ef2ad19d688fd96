//! The exit codes of `verity-fuse`, as veritysetup numbers them, each derived from an [`ErrorClass`] alone.

use std::fmt::Write as _;

use crate::class::ErrorClass;

/// How `verity-fuse` ends. The numbers are veritysetup's where it has them, so scripts written for it keep
/// working; [`VerityFuseExit::BrokenPipe`] is what a shell reports for a command killed by `SIGPIPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VerityFuseExit {
    /// The command did what was asked.
    Success,
    /// Wrong parameters or bad input, a usage error, or something unavailable here.
    Invalid,
    /// Verification failed: a block does not match the tree or the root hash.
    VerificationFailed,
    /// A device or file could not be read or written, or the root hash signature was refused.
    Io,
    /// The device is busy or already exists.
    Busy,
    /// The reader of the output went away; nothing is printed about it.
    BrokenPipe,
}

impl VerityFuseExit {
    /// Every exit code, in numeric order.
    pub const ALL: [VerityFuseExit; 6] = [
        Self::Success,
        Self::Invalid,
        Self::VerificationFailed,
        Self::Io,
        Self::Busy,
        Self::BrokenPipe,
    ];

    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Invalid => 1,
            Self::VerificationFailed => 2,
            Self::Io => 4,
            Self::Busy => 5,
            Self::BrokenPipe => 141,
        }
    }

    /// What the code means, as the help and the README say it.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Invalid => "wrong parameters or bad input, or something this host lacks",
            Self::VerificationFailed => "verification failed (a block differs from the tree or the root hash)",
            Self::Io => "a device or file could not be read or written, or the root hash signature was refused",
            Self::Busy => "the device is busy or already exists",
            Self::BrokenPipe => "the reader of the output went away (as a shell reports SIGPIPE)",
        }
    }

    /// The exit code of a failure of class `class`.
    pub fn from_class(class: ErrorClass) -> VerityFuseExit {
        match class {
            ErrorClass::VerificationFailed => Self::VerificationFailed,
            // veritysetup exits 4 when the kernel refuses a root hash signature, and so does the emulation.
            ErrorClass::Io | ErrorClass::NotTrusted => Self::Io,
            ErrorClass::Busy => Self::Busy,
            ErrorClass::OutputClosed => Self::BrokenPipe,
            ErrorClass::Usage
            | ErrorClass::BadInput
            | ErrorClass::Unavailable
            | ErrorClass::Findings
            | ErrorClass::Internal => Self::Invalid,
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

impl From<VerityFuseExit> for std::process::ExitCode {
    fn from(exit: VerityFuseExit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_an_exit_code_and_codes_are_unique() {
        let codes: std::collections::HashSet<u8> = VerityFuseExit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes.len(), VerityFuseExit::ALL.len());
        for class in ErrorClass::ALL {
            assert!(VerityFuseExit::ALL.contains(&VerityFuseExit::from_class(class)));
        }
        assert_eq!(VerityFuseExit::from_class(ErrorClass::OutputClosed).code(), 128 + 13);
    }
}
