//! `veritylab scenario list|attacks|validate|run`: the scenario catalogue, its attacks, and the runner.
//!
//! Without `--dir` the scenarios are the repository's `scenarios/` folder as embedded in the binary at build
//! time, so the installed command works anywhere; `--dir DIR` reads `DIR/*.toml` instead.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use veritylab::cli::CliError;

use super::CommandError;
use crate::outcome::Outcome;
use crate::report::{self, ColorChoice, Format};
use crate::results::RunReport;
use crate::runner::{self, RunOptions};
use crate::{Scenario, load};
use veritylab::profile::Profile;

use crate::backend::RunnerBackend;
use veritylab::out;

/// `veritylab scenario` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum ScenarioCommand {
    /// List the scenarios: id, attack, profiles and title.
    List(ListArgs),
    /// List the attacks of the catalogue: name, what the attacker does, and the parameters each takes.
    Attacks,
    /// Check scenario files: schema, attack parameters, expectations and unique ids; exit 3 on any problem.
    Validate(DirArgs),
    /// Stage scenarios for real, each cell in its own sandbox; exit 4 if any observed outcome differs from the
    /// expected one (or a cell's harness failed, a leak included).
    Run(RunArgs),
}

/// Raw arguments of `veritylab scenario run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Scenario ids to run (see `veritylab scenario list`).
    #[arg(value_name = "ID", required_unless_present = "all", conflicts_with = "all")]
    pub ids: Vec<String>,
    /// Run every scenario.
    #[arg(long)]
    pub all: bool,
    /// Run only this profile's cells.
    #[arg(long, value_name = "PROFILE", value_parser = parse_profile)]
    pub profile: Option<Profile>,
    /// The backend (default: the best available; the report says which and why).
    #[arg(long, value_name = "BACKEND", value_parser = parse_backend)]
    pub backend: Option<RunnerBackend>,
    /// The report's format.
    #[arg(long, value_parser = veritylab::cli::named::<Format>(Format::ALL.map(Format::name)), default_value = "text")]
    pub report: Format,
    /// Write the report to FILE (atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Sign every cell's image and root hashes with this key (unencrypted; its certificate beside it as
    /// KEY.crt) instead of a fresh key per cell, and have the kernel backend load the IPE policy it signs: for
    /// a node whose kernel trusts that certificate, so it checks the enforced cells itself.
    #[arg(long, value_name = "KEY")]
    pub publisher_key: Option<PathBuf>,
    /// Colour the terminal report: `auto` (when stdout is a terminal or `CLICOLOR_FORCE` is set, unless
    /// `NO_COLOR` is), `always` or `never`.
    #[arg(long, value_name = "WHEN", value_parser = parse_color, default_value = "auto")]
    pub color: ColorChoice,
    /// Where the scenarios come from.
    #[command(flatten)]
    pub dir: DirArgs,
}

/// Parses `--color`.
pub(crate) fn parse_color(text: &str) -> Result<ColorChoice, String> {
    text.parse().map_err(|e: veritylab::profile::UnknownName| e.to_string())
}

fn parse_profile(text: &str) -> Result<Profile, String> {
    text.parse().map_err(|e: veritylab::profile::UnknownName| e.to_string())
}

fn parse_backend(text: &str) -> Result<RunnerBackend, String> {
    text.parse().map_err(|e: veritylab::profile::UnknownName| e.to_string())
}

/// Runs `scenarios` and writes the report as asked; returns it (see [`passed`] for the verdict).
pub fn run_and_report(
    scenarios: &[Scenario],
    options: &RunOptions,
    format: Format,
    out: Option<&std::path::Path>,
) -> Result<RunReport, CommandError> {
    run_and_report_from(scenarios, None, options, format, out, ColorChoice::Auto)
}

/// [`run_and_report`] with the terminal report coloured as `color` says.
pub fn run_and_report_coloured(
    scenarios: &[Scenario],
    options: &RunOptions,
    format: Format,
    out: Option<&std::path::Path>,
    color: ColorChoice,
) -> Result<RunReport, CommandError> {
    run_and_report_from(scenarios, None, options, format, out, color)
}

/// [`run_and_report`] for scenarios loaded from `dir` (`None`: the embedded ones), which the `kernel-vm`
/// backend copies into its VM.
fn run_and_report_from(
    scenarios: &[Scenario],
    dir: Option<&std::path::Path>,
    options: &RunOptions,
    format: Format,
    out: Option<&std::path::Path>,
    color: ColorChoice,
) -> Result<RunReport, CommandError> {
    let bars = veritylab::cli::Bars::new(format != Format::Text);
    let mut progress = |line: &str| bars.report(veritylab::progress::Event::Step(line));
    let report = match options.backend {
        Some(RunnerBackend::KernelVm) => {
            let exe = std::env::current_exe().map_err(|source| CliError::Io {
                what: "finding the veritylab executable".to_owned(),
                source,
            })?;
            crate::vm::run_scenarios(scenarios, dir, options.profile, &exe, &mut progress)?
        }
        _ => runner::run(scenarios, options, &mut progress),
    };
    let color = out.is_none() && color.for_stdout();
    let text = report::render(&report, format, color);
    match out {
        Some(path) => {
            report::write_atomic(path, &text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(CliError::Output)?
        }
    }
    Ok(report)
}

/// `Ok` when every cell of `report` was as expected, else the count of those that were not.
pub fn passed(report: &RunReport) -> Result<(), CommandError> {
    if report.passed() {
        return Ok(());
    }
    let s = report.summary();
    Err(CommandError::Failed {
        failed: s.failed,
        errors: s.errors,
    })
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
    pub backends: Vec<RunnerBackend>,
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
pub fn load_from(args: &DirArgs) -> Result<Vec<Scenario>, CommandError> {
    Ok(match &args.dir {
        Some(dir) => load::load_dir(dir)?,
        None => load::embedded()?,
    })
}

/// Runs a `scenario` subcommand.
pub fn run(command: ScenarioCommand) -> Result<(), CommandError> {
    match command {
        ScenarioCommand::List(args) => {
            let entries: Vec<ListEntry> = load_from(&args.dir)?.iter().map(ListEntry::from).collect();
            if args.json {
                out!("{}", serde_json::to_string_pretty(&entries).unwrap_or_default())?;
                return Ok(());
            }
            let width = |f: fn(&ListEntry) -> usize| entries.iter().map(f).max().unwrap_or(0);
            let id_width = width(|e| e.id.len()).max(2);
            let attack_width = width(|e| e.attack.len()).max(6);
            let profiles = |e: &ListEntry| e.profiles.iter().map(|p| p.name()).collect::<Vec<_>>().join(",");
            let profiles_width = entries.iter().map(|e| profiles(e).len()).max().unwrap_or(0).max(8);
            out!(
                "{:id_width$}  {:attack_width$}  {:profiles_width$}  TITLE",
                "ID",
                "ATTACK",
                "PROFILES"
            )?;
            for e in &entries {
                out!(
                    "{:id_width$}  {:attack_width$}  {:profiles_width$}  {}",
                    e.id,
                    e.attack,
                    profiles(e),
                    e.title
                )?;
            }
            Ok(())
        }
        ScenarioCommand::Attacks => {
            for spec in attacks::CATALOGUE {
                out!("{}: {}", spec.name, spec.summary)?;
                for param in spec.params {
                    let required = if param.required { ", required" } else { "" };
                    out!("    {} ({}{required}): {}", param.name, param.ty, param.doc)?;
                }
            }
            Ok(())
        }
        ScenarioCommand::Validate(args) => {
            let scenarios = load_from(&args)?;
            let from = args
                .dir
                .map_or_else(|| "embedded scenarios/".to_owned(), |d| d.display().to_string());
            let cells: usize = scenarios.iter().map(|s| s.profiles.len()).sum();
            out!(
                "{} scenarios valid ({cells} profile expectations) in {from}",
                scenarios.len()
            )?;
            Ok(())
        }
        ScenarioCommand::Run(args) => {
            let all = load_from(&args.dir)?;
            let scenarios: Vec<Scenario> = if args.all {
                all
            } else {
                let mut chosen = Vec::new();
                for id in &args.ids {
                    let found = all.iter().find(|s| &s.id == id).ok_or_else(|| {
                        CliError::Usage(format!("no scenario {id:?} (see `veritylab scenario list`)"))
                    })?;
                    chosen.push(found.clone());
                }
                chosen
            };
            // kernel-vm cells run in a VM this command boots (see `run_and_report_from`), not in the runner.
            let available = |backend| match backend {
                RunnerBackend::KernelVm => crate::vm::available(),
                other => crate::runner::available(other),
            };
            if let Some(backend) = args.backend
                && let Err(reason) = available(backend)
            {
                return Err(CommandError::Unavailable { backend, reason });
            }
            if args.backend == Some(RunnerBackend::KernelVm) && args.publisher_key.is_some() {
                return Err(CliError::Usage(
                    "--publisher-key is not for kernel-vm, which makes and enrolls its own publisher key".to_owned(),
                )
                .into());
            }
            let publisher = args.publisher_key.as_deref().map(crate::Publisher::load).transpose()?;
            let options = RunOptions {
                profile: args.profile,
                backend: args.backend,
                publisher,
                ..RunOptions::default()
            };
            let report = run_and_report_from(
                &scenarios,
                args.dir.dir.as_deref(),
                &options,
                args.report,
                args.out.as_deref(),
                args.color,
            )?;
            passed(&report)
        }
    }
}
