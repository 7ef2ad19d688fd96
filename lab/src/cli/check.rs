//! `veritylab check [TARGET | --container NAME] [--image REF...] [--key PUB...] [--policy FILE] [--watch] [--interval DUR]
//! [--max-parallel N] [--cpu-budget PERCENT] [--passes N] [--store DIR] [--json]`: audits the mount at TARGET
//! (see [`crate::audit`]) and re-verifies the converted layers of stored images at rest (full dm-verity tree
//! check against the root hash pinned at start; by default the mounted image's), once, or in passes with
//! `--watch`, within a CPU budget; each pass re-runs the audit.
//!
//! The pins: with `--key` or `--policy`, each image's signature is verified at start and its signed root
//! hashes are pinned (an image that does not verify is a finding); without them, a mount made from a
//! signature is checked against the root hashes its plan took from that signature; otherwise the node's
//! `conversion.json` records are all there is. Each layer's line says where its pin came from.
//!
//! Output: per pass a summary line and one line per layer, then the audit; with `--json` one JSON object per
//! pass and one per audit, on one line each (a stream a script can read as passes end). Exit code 4 when any
//! pass found something.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{CliError, audit, store_dir};
use crate::container;
use crate::mount::{MountError, Record};
use crate::oci::Reference;
use crate::oci::pull::store_name;
use crate::sign::verify::{VerifyError, VerifyOptions, verify_image};
use crate::store::Store;
use crate::watch::DriftFinding;
use crate::watch::target::{LayerTarget, TargetError, Targets};
use crate::watch::{self, CpuClock, PassReport, WatchConfig, Watcher};

/// Raw arguments of `veritylab check`.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// A mount made by `veritylab mount` to audit.
    pub target: Option<PathBuf>,
    /// A container of `veritylab run` to audit: its rootfs mount, and its own mount namespace against what
    /// its bundle explains.
    #[arg(long, value_name = "NAME", conflicts_with = "target")]
    pub container: Option<String>,
    /// A pulled and converted image to re-verify (as given to `pull`); repeat for several [default: the
    /// mounted image].
    #[arg(long = "image", value_name = "REF", required_unless_present_any = ["target", "container"])]
    pub images: Vec<String>,
    /// Keep checking: a pass every --interval until stopped (or --passes are done).
    #[arg(long)]
    pub watch: bool,
    /// Time between the starts of two passes, e.g. 30s, 10m, 1h, 500ms.
    #[arg(long, value_name = "DUR", default_value = "10m", value_parser = parse_duration, requires = "watch")]
    pub interval: Duration,
    /// Layers checked at the same time.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub max_parallel: usize,
    /// CPU budget in percent of one core (getrusage of this process), enforced by a token bucket on hashing.
    #[arg(long, value_name = "PERCENT", default_value_t = 10.0)]
    pub cpu_budget: f64,
    /// Stop after N passes.
    #[arg(long, value_name = "N", requires = "watch")]
    pub passes: Option<u64>,
    /// A trusted public key: verify each image's signature at start and pin its signed root hashes; repeat
    /// for several.
    #[arg(long, value_name = "PUB")]
    pub key: Vec<PathBuf>,
    /// The trust policy (TOML), as for `veritylab verify`.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The store [default: /var/lib/veritylab as root, else ~/.local/share/veritylab].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print one JSON object per pass, one per line.
    #[arg(long)]
    pub json: bool,
}

/// Validated `check` arguments.
#[derive(Debug, Clone)]
pub(crate) struct CheckPlan {
    /// The mount to audit.
    pub target: Option<PathBuf>,
    /// The container to audit.
    pub container: Option<String>,
    /// The images' names in the store.
    pub images: Vec<String>,
    /// How passes run.
    pub config: WatchConfig,
    /// Verify the images with these options and pin their signed root hashes.
    pub verify: Option<VerifyOptions>,
    /// The store.
    pub store: PathBuf,
    /// JSON output.
    pub json: bool,
}

impl TryFrom<CheckArgs> for CheckPlan {
    type Error = CliError;

    fn try_from(args: CheckArgs) -> Result<Self, CliError> {
        let images = args
            .images
            .iter()
            .map(|r| r.parse::<Reference>().map(|r| store_name(&r)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CliError::Usage(format!("{e}")))?;
        let config = WatchConfig {
            interval: args.interval,
            max_parallel: args.max_parallel,
            cpu_budget_percent: Some(args.cpu_budget),
            clock: CpuClock::Process,
            passes: if args.watch { args.passes } else { Some(1) },
            ..WatchConfig::default()
        };
        // Validate here, before any work, with the same rules the watcher applies.
        Watcher::new(Vec::new(), Vec::new(), config.clone()).map_err(|e| CliError::Usage(e.to_string()))?;
        let verify = if args.key.is_empty() && args.policy.is_none() {
            None
        } else {
            let (policy, keys) = super::trust_inputs(args.policy.as_deref(), &args.key)?;
            let mut options = VerifyOptions::new(policy, keys);
            options.local = false;
            Some(options)
        };
        Ok(Self {
            target: args.target,
            container: args.container,
            images,
            config,
            verify,
            store: store_dir(args.store)?,
            json: args.json,
        })
    }
}

/// Parses `500ms`, `30s`, `10m`, `1h` or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 30s, 10m or 1h"))?;
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("{text:?}: unit {unit:?} is not ms, s, m or h")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{text:?}: {e}"))
}

/// Runs the passes and prints each report; fails with [`CliError::CheckFailed`] if any pass found something.
pub(crate) fn run(plan: &CheckPlan) -> Result<(), CliError> {
    let store = Store::open(&plan.store)?;
    let container = plan
        .container
        .as_deref()
        .map(|name| container::find(&store, name))
        .transpose()?;
    let target = container
        .as_ref()
        .map(|c| c.rootfs.clone())
        .or_else(|| plan.target.clone());
    let record = target.as_deref().map(|t| audit::find(&store, t)).transpose()?;
    let mut images = plan.images.clone();
    if let (true, Some(record)) = (images.is_empty(), &record) {
        images.push(record.image.clone());
    }
    let (targets, unchecked) = pinned_targets(&store, plan, record.as_ref(), &images)?;
    let watcher = Watcher::new(targets, unchecked, plan.config.clone()).map_err(|e| CliError::Usage(e.to_string()))?;
    let mut findings = 0usize;
    watcher.try_run(|report| {
        findings += report.all_findings().count();
        if plan.json {
            out!("{}", serde_json::to_string(report).unwrap_or_default())?;
        } else {
            print_report(report)?;
        }
        if let Some(container) = &container {
            let audited = container::audit::audit(&store, container);
            findings += audited.count();
            if plan.json {
                out!("{}", serde_json::to_string(&audited).unwrap_or_default())?;
            } else {
                print_container(&audited)?;
            }
        } else if let Some(record) = &record {
            let audited = audit::audit_record(record);
            findings += audited.findings.len();
            if plan.json {
                out!("{}", serde_json::to_string(&audited).unwrap_or_default())?;
            } else {
                audit::print(&audited)?;
            }
        }
        Ok::<(), CliError>(())
    })?;
    match findings {
        0 => Ok(()),
        findings => Err(CliError::CheckFailed { findings }),
    }
}

/// The targets and their pins (see the module docs).
fn pinned_targets(
    store: &Store,
    plan: &CheckPlan,
    record: Option<&Record>,
    images: &[String],
) -> Result<Targets, CliError> {
    let Some(options) = &plan.verify else {
        if let (true, Some(record)) = (plan.images.is_empty(), record)
            && let Some(pinned) = watch::target::for_plan(store, &record.plan().map_err(MountError::from)?)?
        {
            return Ok(pinned);
        }
        return Ok(watch::target::for_images(store, images)?);
    };
    let mut targets: Vec<LayerTarget> = Vec::new();
    let mut findings = Vec::new();
    for name in images {
        let untrusted = |reason: String| DriftFinding::Untrusted {
            image: name.clone(),
            reason,
        };
        let pinned = match verify_image(store, name, options) {
            Ok(image) => watch::target::for_verified(store, &image),
            Err(e @ VerifyError::Rejected { .. }) => {
                findings.push(untrusted(e.to_string()));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match pinned {
            Ok((more, unconverted)) => {
                for target in more {
                    if !targets
                        .iter()
                        .any(|t| t.layer == target.layer && t.layout == target.layout)
                    {
                        targets.push(target);
                    }
                }
                findings.extend(unconverted);
            }
            Err(e @ TargetError::NotSigned { .. }) => findings.push(untrusted(e.to_string())),
            Err(e) => return Err(e.into()),
        }
    }
    Ok((targets, findings))
}

fn print_container(report: &container::audit::ContainerReport) -> Result<(), CliError> {
    audit::print(&report.rootfs)?;
    out!(
        "audit of container {} (init pid {})",
        report.name,
        report
            .init
            .map(|init| init.pid.to_string())
            .unwrap_or_else(|| "-".to_owned())
    )?;
    for line in &report.checked {
        out!("  checked: {line}")?;
    }
    for finding in &report.findings {
        out!("  FINDING {}: {finding}", finding.kind())?;
    }
    if report.findings.is_empty() {
        out!("  passed")?;
    }
    Ok(())
}

fn print_report(report: &PassReport) -> Result<(), CliError> {
    out!(
        "pass {} at {}: {} layer check(s), {:.1} MiB in {:.2} s, CPU {:.3} s ({:.1}% of one core, budget {}%): {}",
        report.pass,
        report.started,
        report.layers.len(),
        report.bytes as f64 / f64::from(1 << 20),
        report.duration.as_secs_f64(),
        report.cpu.as_secs_f64(),
        report.cpu_percent,
        report.budget_percent,
        if report.clean() { "clean" } else { "FINDINGS" }
    )?;
    for finding in &report.findings {
        out!("  FINDING  {finding}")?;
    }
    for layer in &report.layers {
        let state = match (layer.complete, layer.findings.is_empty()) {
            (_, false) => "FINDING",
            (true, true) => "ok",
            (false, true) => "stopped",
        };
        out!(
            "  {state:<8} {} {:<10} {:.1} MiB in {:.2} s, CPU {:.3} s, root hash pinned from {}",
            layer.layer,
            layer.layout.name(),
            layer.bytes as f64 / f64::from(1 << 20),
            layer.duration.as_secs_f64(),
            layer.cpu.as_secs_f64(),
            layer.pinned
        )?;
        for finding in &layer.findings {
            out!("           {finding}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("10d").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
    }
}
