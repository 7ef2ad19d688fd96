//! The `verity-fuse` command: arguments become validated plans, plans call the library, and every error
//! maps to an exit code in [`run`].
//!
//! Exit codes follow veritysetup: 0 success, 1 wrong parameters or bad input, 2 verification failed,
//! 4 a device or file could not be read or written, 5 the device is busy or already exists.

mod args;
mod close;
mod dump;
mod format;
mod list;
mod open;
mod report;
mod status;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::VerityError;

/// Userspace dm-verity: hash trees byte-identical to veritysetup's, and verified block devices.
#[derive(Parser, Debug)]
#[command(name = "verity-fuse", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build the hash tree of DATA into HASH and print the root hash (as `veritysetup format`).
    Format(format::FormatArgs),
    /// Check DATA against the tree in HASH and the root hash (as `veritysetup verify`).
    Verify(verify::VerifyArgs),
    /// Print the superblock of HASH (as `veritysetup dump`).
    Dump(dump::DumpArgs),
    /// Make a verified device NAME from DATA and HASH, served by FUSE or kernel dm-verity; prints its path.
    Open(open::OpenArgs),
    /// Print whether device NAME is verified or corrupted, with its counters.
    Status(status::StatusArgs),
    /// Close device NAME; refuses while a loop device or mount still holds it.
    Close(close::CloseArgs),
    /// List open devices; stale ones (their server killed) are cleaned up.
    List(list::ListArgs),
}

/// The device is held by a loop device, a mount or an open file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Busy(pub(crate) String);

/// Exit code for bad parameters or input.
pub const EXIT_INPUT: u8 = 1;
/// Exit code for a failed verification.
pub const EXIT_VERIFY: u8 = 2;
/// Exit code for a device or file that could not be read or written.
pub const EXIT_IO: u8 = 4;
/// Exit code for a device that is busy or already exists.
pub const EXIT_BUSY: u8 = 5;

/// Runs the command line `args` (including the program name) and returns the exit code.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let argv: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_INPUT } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Format(a) => format::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Dump(a) => dump::run(a),
        Command::Open(a) => open::run(a, &argv),
        Command::Status(a) => status::run(a),
        Command::Close(a) => close::run(a),
        Command::List(a) => list::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("verity-fuse: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The exit code for an error, decided once here from its typed cause.
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.downcast_ref::<Busy>().is_some()
            || matches!(
                cause.downcast_ref::<crate::registry::RegistryError>(),
                Some(crate::registry::RegistryError::Exists(_))
            )
        {
            return EXIT_BUSY;
        }
        // veritysetup exits 4 when the kernel refuses a root hash signature ("Required key not available").
        if cause.downcast_ref::<crate::signature::SignatureError>().is_some() {
            return EXIT_IO;
        }
        if let Some(v) = cause.downcast_ref::<VerityError>() {
            return match v {
                VerityError::HashMismatch { .. } | VerityError::NonZeroPadding { .. } => EXIT_VERIFY,
                VerityError::Io { .. } => EXIT_IO,
                _ => EXIT_INPUT,
            };
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return EXIT_IO;
        }
    }
    EXIT_INPUT
}
