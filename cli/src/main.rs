//! The `veritylab` command: parses arguments, runs the library, maps errors to exit codes.
//!
//! A thin binary over two libraries: the pipeline's subcommands come from `lab` ([`veritylab::cli`]), the
//! scenario harness and `demo` from `scenarios` ([`scenarios::cli`]), which itself builds on `lab`. The binary
//! lives in its own package so that it can depend on both without a crate cycle.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use scenarios::cli::{CommandError, demo, scenario};
use veritylab::cli::{self as pipeline, Cli as PipelineCommand};

/// veritylab: a lab for container-image integrity.
#[derive(Parser, Debug)]
#[command(name = "veritylab", version, about)]
enum Command {
    #[command(flatten)]
    Pipeline(PipelineCommand),
    /// List, validate and run the attack scenarios.
    #[command(subcommand)]
    Scenario(scenario::ScenarioCommand),
    /// The guided tour: build the sample image, pull, convert, sign, mount and check it, then stage every attack
    /// against all four profiles and print the matrix. No network, no root needed.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    verity_fuse::sys::exit_quietly_on_broken_pipe();
    let result = match Command::parse() {
        Command::Pipeline(command) => pipeline::run(command).map_err(CommandError::from),
        Command::Scenario(command) => scenario::run(command),
        Command::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("veritylab: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
