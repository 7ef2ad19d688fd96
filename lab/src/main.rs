//! The `veritylab` command.
#![forbid(unsafe_code)]

use clap::Parser;

/// veritylab: a lab for container-image integrity. Its commands arrive with the pipeline; the verity core
/// is the `verity-fuse` command.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {}

fn main() {
    Cli::parse();
}
