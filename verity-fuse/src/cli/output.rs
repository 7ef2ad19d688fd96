//! The command's standard output, written so that a failed write is an error the caller returns (and a
//! closed pipe ends the command quietly with [`super::VerityFuseExit::BrokenPipe`]) instead of a panic.

use std::io::{self, Write};

use crate::class::ErrorClass;

/// Writing to standard output failed.
#[derive(Debug, thiserror::Error)]
#[error("writing to standard output: {0}")]
pub struct OutputError(#[source] pub io::Error);

impl OutputError {
    /// What kind of failure this is: [`ErrorClass::OutputClosed`] when the reader went away, else I/O.
    pub fn class(&self) -> ErrorClass {
        if self.0.kind() == io::ErrorKind::BrokenPipe {
            ErrorClass::OutputClosed
        } else {
            ErrorClass::Io
        }
    }
}

/// Writes `args` and a newline to standard output.
pub(crate) fn line(args: std::fmt::Arguments<'_>) -> Result<(), OutputError> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .map_err(OutputError)
}

/// `println!` that returns an [`OutputError`] instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::line(format_args!($($arg)*))
    };
}
