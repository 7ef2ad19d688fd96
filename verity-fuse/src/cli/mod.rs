//! The `verity-fuse` command: arguments become validated plans, plans call the library, and every error
//! maps to an exit code in [`run`].
//!
//! Exit codes follow veritysetup ([`VerityFuseExit`]): each is derived from the [`ErrorClass`] of the failure,
//! never from its message.

#[macro_use]
mod output;
mod args;
mod close;
mod dump;
mod exit;
mod format;
mod list;
mod open;
mod report;
mod status;
mod verify;

pub use exit::VerityFuseExit;
pub use output::OutputError;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::class::ErrorClass;
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

/// A failure the command itself detects, with its class (a device still held, a request made at the wrong
/// time).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Failure {
    /// What kind of failure it is.
    pub(crate) class: ErrorClass,
    /// What to tell the user.
    pub(crate) message: String,
}

impl Failure {
    /// A failure of `class` saying `message`.
    pub(crate) fn new(class: ErrorClass, message: impl Into<String>) -> Failure {
        Failure {
            class,
            message: message.into(),
        }
    }

    /// What kind of failure this is.
    pub(crate) fn class(&self) -> ErrorClass {
        self.class
    }
}

/// Runs the command line `args` (including the program name) and returns the exit code.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let argv: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let command = Cli::command()
        .after_help(VerityFuseExit::help())
        .mut_subcommands(|sub| sub.after_help(VerityFuseExit::help()));
    let cli = match command
        .try_get_matches_from(&argv)
        .and_then(|matches| Cli::from_arg_matches(&matches))
    {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                VerityFuseExit::Invalid
            } else {
                VerityFuseExit::Success
            }
            .into();
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
        Ok(()) => VerityFuseExit::Success.into(),
        Err(e) => {
            let exit = VerityFuseExit::from_class(class_of(&e));
            if exit != VerityFuseExit::BrokenPipe {
                eprintln!("verity-fuse: {e:#}");
            }
            exit.into()
        }
    }
}

/// The class of a failure: that of the outermost error in its chain that has one. A failure none of whose
/// causes is classified is a refused request ([`ErrorClass::BadInput`], exit 1 as veritysetup's "wrong
/// parameters").
pub fn class_of(e: &anyhow::Error) -> ErrorClass {
    e.chain().find_map(class_of_cause).unwrap_or(ErrorClass::BadInput)
}

/// The class of one error of the chain, when it is a type that has one.
fn class_of_cause(cause: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    use crate::{backend, device, hash, hex, params, rundir, signature, superblock, sys};
    macro_rules! classes {
        ($($ty:ty),* $(,)?) => {
            $(if let Some(e) = cause.downcast_ref::<$ty>() {
                return Some(e.class());
            })*
        };
    }
    classes!(
        Failure,
        OutputError,
        VerityError,
        rundir::RunDirError,
        sys::ToolError,
        backend::Unavailable,
        backend::kernel::CloseError,
        device::OpenError,
        params::ParamError,
        superblock::SuperblockError,
        hash::UnknownAlgorithm,
        hex::HexError,
        hash::EngineUnavailable,
        signature::SignatureError,
        signature::KeyringError,
    );
    cause.downcast_ref::<std::io::Error>().map(|_| ErrorClass::Io)
}
