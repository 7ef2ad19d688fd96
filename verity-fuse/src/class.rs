//! What kind of failure an error is, so callers decide by class and never by message text.
//!
//! Every public error type of `verity-fuse` and `veritylab` has a `class()` method returning an [`ErrorClass`];
//! errors that wrap another error return the class of what they wrap. The commands derive their exit codes from
//! the class alone, and the scenario runner its evidence.

use std::fmt;

/// The kind of a failure: who has to act, and how a caller should treat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorClass {
    /// The request makes no sense as given: arguments that contradict each other, a required setting left out.
    /// Fixed by asking differently.
    Usage,
    /// The input is malformed or unsupported: an image, archive, manifest, key, policy or parameter that cannot
    /// be parsed or used. Fixed by giving other input.
    BadInput,
    /// Content does not match what vouches for it: a block against its hash tree, a blob against its digest, a
    /// layer against its signed root hash. The evidence of tampering or corruption.
    VerificationFailed,
    /// The content is intact but nothing trusted vouches for it: no valid signature by a trusted key, a policy
    /// or profile that refuses it, a mount that is not what was verified.
    NotTrusted,
    /// Reading or writing a file, device or network peer failed.
    Io,
    /// The resource is in use or already exists: a device still held, a name taken, mounts left behind.
    Busy,
    /// What the request needs is not available here: a tool, a privilege, a kernel feature, a passphrase.
    Unavailable,
    /// The command ran to the end and found problems it reports (audit or check findings, scenario cells that
    /// differ from their expectation).
    Findings,
    /// The reader of the command's output went away (`veritylab ... | head`); the work itself did not fail.
    OutputClosed,
    /// An unexpected state: a bug or a broken invariant.
    Internal,
}

impl ErrorClass {
    /// Every class, in declaration order.
    pub const ALL: [ErrorClass; 10] = [
        Self::Usage,
        Self::BadInput,
        Self::VerificationFailed,
        Self::NotTrusted,
        Self::Io,
        Self::Busy,
        Self::Unavailable,
        Self::Findings,
        Self::OutputClosed,
        Self::Internal,
    ];

    /// The class's name, as it appears in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Usage => "usage",
            Self::BadInput => "bad-input",
            Self::VerificationFailed => "verification-failed",
            Self::NotTrusted => "not-trusted",
            Self::Io => "io",
            Self::Busy => "busy",
            Self::Unavailable => "unavailable",
            Self::Findings => "findings",
            Self::OutputClosed => "output-closed",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_json_spelling_and_unique() {
        let mut names = std::collections::HashSet::new();
        for class in ErrorClass::ALL {
            assert_eq!(serde_json::to_string(&class).unwrap(), format!("\"{class}\""));
            assert!(names.insert(class.name()));
        }
    }
}
