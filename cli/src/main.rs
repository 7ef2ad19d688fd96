//! The `veritylab` command: parses arguments, runs the library, maps errors to exit codes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use veritylab::cli::{self, Cli};

fn main() -> ExitCode {
    verity_fuse::sys::exit_quietly_on_broken_pipe();
    match cli::run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("veritylab: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
