//! The `veritylab` command.
#![forbid(unsafe_code)]

use clap::Parser;

/// veritylab: a lab for container-image integrity.
#[derive(Parser, Debug)]
#[command(version, about)]
enum Cli {}

fn main() {
    let cli = Cli::parse();
    match cli {}
}
