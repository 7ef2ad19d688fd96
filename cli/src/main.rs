//! The `veritylab` command: parses arguments, runs the library, maps each error's class to an exit code
//! ([`VeritylabExit`], listed at the end of every `--help`).
//!
//! A thin binary over two libraries: the pipeline's subcommands come from `lab` ([`veritylab::cli`]), the
//! scenario harness and `demo` from `scenarios` ([`scenarios::cli`]), which itself builds on `lab`. The binary
//! lives in its own package so that it can depend on both without a crate cycle.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use scenarios::cli::{CommandError, demo, scenario};
use veritylab::cli::{self as pipeline, Cli as PipelineCommand, VeritylabExit};

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
    /// against every profile (vanilla to enforced) and print the matrix. No network, no root needed.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let help = VeritylabExit::help();
    let matches = Command::command()
        .after_help(&help)
        .mut_subcommands(|sub| sub.after_help(&help))
        .get_matches();
    let command = Command::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match command {
        Command::Pipeline(PipelineCommand::Run(args)) => match pipeline::run_container(&args) {
            Ok(status) => return ExitCode::from(status),
            Err(e) => Err(CommandError::from(e)),
        },
        Command::Pipeline(command) => pipeline::run(command).map_err(CommandError::from),
        Command::Scenario(command) => scenario::run(command),
        Command::Demo(args) => demo::run(&args),
    };
    match result {
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
