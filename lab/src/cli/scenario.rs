//! `veritylab scenario list|validate [--dir DIR]`: the scenario catalogue.
//!
//! Without `--dir` the scenarios are the repository's `scenarios/` folder as embedded in the binary at build
//! time, so the installed command works anywhere; `--dir DIR` reads `DIR/*.toml` instead.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::CliError;
use crate::profile::{Backend, Profile};
use crate::scenario::outcome::Outcome;
use crate::scenario::{Scenario, load};

/// `veritylab scenario` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum ScenarioCommand {
    /// List the scenarios: id, attack, profiles and title.
    List(ListArgs),
    /// Check scenario files: schema, attack parameters, expectations and unique ids; exit 3 on any problem.
    Validate(DirArgs),
}

/// Where the scenarios come from.
#[derive(Args, Debug, Clone)]
pub struct DirArgs {
    /// Read DIR/*.toml instead of the scenarios embedded in veritylab.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Raw arguments of `veritylab scenario list`.
#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// Where the scenarios come from.
    #[command(flatten)]
    pub dir: DirArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One scenario in the listing.
#[derive(Debug, Clone, Serialize)]
pub struct ListEntry {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The attack it stages.
    pub attack: String,
    /// The profiles it runs.
    pub profiles: Vec<Profile>,
    /// The backends it may run on.
    pub backends: Vec<Backend>,
    /// The outcome expected of each profile.
    pub expect: BTreeMap<Profile, Outcome>,
    /// The file it came from.
    pub source: String,
}

impl From<&Scenario> for ListEntry {
    fn from(s: &Scenario) -> Self {
        ListEntry {
            id: s.id.clone(),
            title: s.title.clone(),
            attack: s.attack.name.clone(),
            profiles: s.profiles.clone(),
            backends: s.backends.clone(),
            expect: s.expect.iter().map(|(p, e)| (*p, e.outcome)).collect(),
            source: s.source.clone(),
        }
    }
}

/// Loads the scenarios `--dir` names, or the embedded ones.
pub fn load_from(args: &DirArgs) -> Result<Vec<Scenario>, CliError> {
    Ok(match &args.dir {
        Some(dir) => load::load_dir(dir)?,
        None => load::embedded()?,
    })
}

/// Runs a `scenario` subcommand.
pub fn run(command: ScenarioCommand) -> Result<(), CliError> {
    match command {
        ScenarioCommand::List(args) => {
            let entries: Vec<ListEntry> = load_from(&args.dir)?.iter().map(ListEntry::from).collect();
            if args.json {
                println!("{}", serde_json::to_string_pretty(&entries).unwrap_or_default());
                return Ok(());
            }
            let width = |f: fn(&ListEntry) -> usize| entries.iter().map(f).max().unwrap_or(0);
            let id_width = width(|e| e.id.len()).max(2);
            let attack_width = width(|e| e.attack.len()).max(6);
            let profiles = |e: &ListEntry| e.profiles.iter().map(|p| p.name()).collect::<Vec<_>>().join(",");
            let profiles_width = entries.iter().map(|e| profiles(e).len()).max().unwrap_or(0).max(8);
            println!(
                "{:id_width$}  {:attack_width$}  {:profiles_width$}  TITLE",
                "ID", "ATTACK", "PROFILES"
            );
            for e in &entries {
                println!(
                    "{:id_width$}  {:attack_width$}  {:profiles_width$}  {}",
                    e.id,
                    e.attack,
                    profiles(e),
                    e.title
                );
            }
            Ok(())
        }
        ScenarioCommand::Validate(args) => {
            let scenarios = load_from(&args)?;
            let from = args
                .dir
                .map_or_else(|| "embedded scenarios/".to_owned(), |d| d.display().to_string());
            let cells: usize = scenarios.iter().map(|s| s.profiles.len()).sum();
            println!(
                "{} scenarios valid ({cells} profile expectations) in {from}",
                scenarios.len()
            );
            Ok(())
        }
    }
}
