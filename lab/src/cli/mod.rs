//! The `veritylab` command as library code: argument types, validation into plans, and the subcommands.
//!
//! `main.rs` only parses [`Cli`], calls [`run`] and turns a [`CliError`] into an exit code with
//! [`CliError::exit_code`]. Each subcommand validates its raw arguments into a plan before doing any work.

pub mod erofs;
pub mod mkfs;

use clap::Parser;

/// veritylab: a lab for container-image integrity.
#[derive(Parser, Debug)]
#[command(version, about)]
pub enum Cli {
    /// Build an EROFS image from a directory or a tar stream (arguments in mkfs.erofs order).
    Mkfs(mkfs::MkfsArgs),
    /// Read an EROFS image in userspace.
    #[command(subcommand)]
    Erofs(erofs::ErofsCommand),
}

/// A failed command, sorted by who has to act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The arguments make no sense together.
    #[error("usage: {0}")]
    Usage(String),
    /// Building an image failed.
    #[error(transparent)]
    Write(#[from] crate::erofs::WriteError),
    /// Reading an image failed (malformed or unsupported image, missing path).
    #[error(transparent)]
    Read(#[from] crate::erofs::ReadError),
    /// Extracting an image failed.
    #[error(transparent)]
    Extract(#[from] crate::erofs::ExtractError),
    /// Another I/O failure (opening the image, writing to stdout).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// The process exit code: 2 for usage errors, 3 for bad input (a malformed image or archive, a missing
    /// path), 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        use crate::erofs::{ExtractError, WriteError};
        match self {
            CliError::Usage(_) => 2,
            CliError::Read(_) | CliError::Extract(ExtractError::Read(_)) => 3,
            CliError::Write(WriteError::Create { .. } | WriteError::Output(_) | WriteError::BlockSize(_)) => 1,
            CliError::Write(_) => 3,
            _ => 1,
        }
    }
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli {
        Cli::Mkfs(args) => mkfs::run(&mkfs::MkfsPlan::try_from(args)?),
        Cli::Erofs(cmd) => erofs::run(cmd),
    }
}
