//! The `veritylab` command: parses arguments, runs the library, maps errors to exit codes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use veritylab::cli::{self, VeritylabExit};

fn main() -> ExitCode {
    match cli::run(cli::parse()) {
        Ok(()) => VeritylabExit::Success.into(),
        Err(err) => {
            let exit = err.exit();
            if exit != VeritylabExit::BrokenPipe {
                eprintln!("veritylab: {err}");
            }
            exit.into()
        }
    }
}
