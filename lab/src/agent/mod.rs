//! `veritylab agent`: the node agent. Every interval it audits each container `veritylab run` started (the
//! audit of `veritylab check --container NAME`: its rootfs mount and its own mount namespace) and each other
//! mount `veritylab` made on the node (the mount audit of `veritylab check TARGET`) and re-verifies their layers at rest within the CPU budget (the
//! watcher of `veritylab check --watch`), logs each pass as one JSON line on stderr, and serves the results as
//! Prometheus metrics over HTTP (see [`Metrics`] for the series).
//!
//! The agent runs in the foreground until SIGTERM or SIGINT (or `passes` are done): a signal stops the pass
//! under way (its unfinished layers are reported incomplete), the HTTP server is shut down and the agent
//! returns.

mod http;
mod metrics;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use verity_fuse::ErrorClass;

use crate::audit;
use crate::container::audit::{ContainerFinding, ContainerReport};
use crate::container::{self, Container};
use crate::mount::{self, MountError, Record};
use crate::profile::Backend;
use crate::store::{Store, StoreError};
use crate::watch::{self, CpuClock, DriftFinding, LayerTarget, PassReport, TargetError, WatchConfig, Watcher};

pub use metrics::Metrics;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The store whose mounts are watched.
    pub store: PathBuf,
    /// Time from the start of one pass to the start of the next.
    pub interval: Duration,
    /// Hashing CPU budget, in percent of one core.
    pub cpu_budget_percent: f64,
    /// Layers re-verified at the same time.
    pub max_parallel: usize,
    /// Where the metrics are served (port 0: any free port, logged at start).
    pub listen: SocketAddr,
    /// Stop after this many passes; `None` to run until a signal.
    pub passes: Option<u64>,
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration cannot run (a budget out of range, no parallelism).
    #[error("{0}")]
    Config(#[from] watch::ConfigError),
    /// The metrics address could not be bound.
    #[error("serving metrics on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signal handlers could not be installed.
    #[error("installing the signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

impl AgentError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Config(_) => ErrorClass::BadInput,
            Self::Listen { .. } | Self::Signals(_) => ErrorClass::Io,
            Self::Store(e) => e.class(),
        }
    }
}

/// What one pass saw, the agent's unit of work (also what [`Metrics`] are set from).
#[derive(Debug, Clone)]
pub struct AgentPass {
    /// Pass number, from 1.
    pub number: u64,
    /// When the pass started.
    pub started: SystemTime,
    /// Wall time of the pass.
    pub duration: Duration,
    /// The mounts audited, with what each audit found (a running container's rootfs among them).
    pub audits: Vec<audit::Report>,
    /// The running containers' namespace audits, by container name (their rootfs audits are in `audits`).
    pub containers: Vec<(String, String, Vec<ContainerFinding>)>,
    /// The re-verification of the mounts' layers at rest.
    pub verification: PassReport,
    /// Mounts that could not be audited or whose layers could not be found, with why.
    pub errors: Vec<(String, String)>,
}

impl AgentPass {
    /// Layers whose bytes or tree no longer match their pinned root hash, plus mounted devices that saw
    /// corruption.
    pub fn corrupted_devices(&self) -> usize {
        let at_rest = self
            .verification
            .layers
            .iter()
            .filter(|l| l.findings.iter().any(|f| f.class() == ErrorClass::VerificationFailed))
            .count();
        let mounted = self
            .audits
            .iter()
            .flat_map(|a| &a.findings)
            .filter(|f| matches!(f, audit::AuditFinding::DeviceCorrupted { .. }))
            .count();
        at_rest + mounted
    }

    /// Every finding of the pass as a [`FindingRow`]: a mount's, a container's namespace's, or a layer's at
    /// rest (no mount: a layer may be shared by several).
    pub fn findings(&self) -> Vec<FindingRow> {
        let mut all: Vec<FindingRow> = self
            .audits
            .iter()
            .flat_map(|a| {
                a.findings.iter().map(|f| FindingRow {
                    kind: f.kind().to_owned(),
                    mount: a.id.clone(),
                    target: a.target.display().to_string(),
                    container: String::new(),
                    text: f.to_string(),
                })
            })
            .collect();
        all.extend(self.containers.iter().flat_map(|(name, mount, findings)| {
            findings.iter().map(|f| FindingRow {
                kind: f.kind().to_owned(),
                mount: mount.clone(),
                target: String::new(),
                container: name.clone(),
                text: f.to_string(),
            })
        }));
        all.extend(self.verification.all_findings().map(|f| FindingRow {
            kind: format!("layer-{}", f.kind().replace('_', "-")),
            mount: String::new(),
            target: String::new(),
            container: String::new(),
            text: f.to_string(),
        }));
        all
    }
}

/// One finding of a pass, as the metrics label it and the log prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingRow {
    /// The finding's kind (`overmount`, `unexpected-mount`, `layer-mismatch`...).
    pub kind: String,
    /// The mount's id (a container's: its rootfs mount's), or empty for a layer at rest.
    pub mount: String,
    /// The mount's target, or empty.
    pub target: String,
    /// The container whose namespace it is in, or empty.
    pub container: String,
    /// The finding in full.
    pub text: String,
}

/// Runs the agent until `passes` are done or a signal comes; returns the number of passes run.
pub fn run(config: &AgentConfig) -> Result<u64, AgentError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(AgentError::Signals)?;
    }
    run_until(config, &stop)
}

/// [`run`] with the stop flag given (tests set it themselves).
pub fn run_until(config: &AgentConfig, stop: &Arc<AtomicBool>) -> Result<u64, AgentError> {
    // Validate the watcher's settings before binding anything.
    Watcher::new(Vec::new(), Vec::new(), watch_config(config))?;
    let store = Store::open(&config.store)?;
    let metrics = Arc::new(Metrics::new(config.interval, config.cpu_budget_percent));
    let server = http::Server::start(config.listen, Arc::clone(&metrics))?;
    log(
        "info",
        "agent started",
        json!({
            "listen": server.addr().to_string(),
            "store": config.store.display().to_string(),
            "interval_seconds": config.interval.as_secs_f64(),
            "cpu_budget_percent": config.cpu_budget_percent,
        }),
    );
    let mut number = 0u64;
    while !stop.load(Ordering::Relaxed) && config.passes.is_none_or(|n| number < n) {
        number += 1;
        let start = Instant::now();
        let pass = one_pass(&store, config, number, stop);
        metrics.observe(&pass);
        log_pass(&pass);
        if config.passes.is_some_and(|n| number >= n) {
            break;
        }
        // Sleep to the next pass in short steps, so a signal is seen promptly.
        let next = start + config.interval;
        while !stop.load(Ordering::Relaxed) && Instant::now() < next {
            std::thread::sleep(
                next.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100)),
            );
        }
    }
    server.shutdown();
    log("info", "agent stopped", json!({ "passes": number }));
    Ok(number)
}

fn watch_config(config: &AgentConfig) -> WatchConfig {
    WatchConfig {
        interval: config.interval,
        max_parallel: config.max_parallel,
        cpu_budget_percent: Some(config.cpu_budget_percent),
        clock: CpuClock::Threads,
        passes: Some(1),
        ..WatchConfig::default()
    }
}

/// Audits every live mount of the store and re-verifies their layers.
fn one_pass(store: &Store, config: &AgentConfig, number: u64, stop: &Arc<AtomicBool>) -> AgentPass {
    let started = SystemTime::now();
    let start = Instant::now();
    let mut errors = Vec::new();
    let records: Vec<Record> = match mount::list(store) {
        Ok(records) => records
            .into_iter()
            .filter(|r| r.ready && (r.holder_alive() || r.backend == Backend::Emulated))
            .collect(),
        Err(e) => {
            errors.push((String::new(), format!("listing the mounts: {e}")));
            Vec::new()
        }
    };
    // A running container's rootfs is one of the mounts above; its own namespace is audited with it. A container
    // whose process has ended is no finding (containers stop), unless another process took its place in its
    // namespace.
    let launched: Vec<Container> = container::list(store)
        .into_iter()
        .filter(|c| c.status() != container::Status::Created)
        .collect();
    let (audits, containers) = audit_mounts(store, &records, &launched, &mut |r| {
        audit::audit_record(r, &BTreeMap::new())
    });
    let containers = containers
        .into_iter()
        .zip(launched)
        .filter_map(|(report, c)| {
            let running = c.status() == container::Status::Running;
            let findings: Vec<ContainerFinding> = report
                .findings
                .into_iter()
                .filter(|f| !matches!(f, ContainerFinding::NotRunning { .. }))
                .collect();
            (running || !findings.is_empty()).then_some((c.name, c.mount.id, findings))
        })
        .collect();
    let mut targets: Vec<LayerTarget> = Vec::new();
    let mut unchecked: Vec<DriftFinding> = Vec::new();
    let mut seen = BTreeSet::new();
    for record in &records {
        match layer_targets(store, record) {
            Ok((more, findings)) => {
                for target in more {
                    if seen.insert((target.data.clone(), target.hash.clone())) {
                        targets.push(target);
                    }
                }
                unchecked.extend(findings);
            }
            Err(reason) => errors.push((record.id.clone(), reason)),
        }
    }
    let verification = match Watcher::new(targets, unchecked.clone(), watch_config(config)) {
        Ok(watcher) => watcher.with_stop(Arc::clone(stop)).pass(number),
        Err(e) => {
            errors.push((String::new(), e.to_string()));
            PassReport {
                pass: number,
                started: crate::utc::rfc3339_millis(started),
                duration: Duration::ZERO,
                bytes: 0,
                cpu: Duration::ZERO,
                cpu_percent: 0.0,
                budget_percent: config.cpu_budget_percent,
                layers: Vec::new(),
                findings: unchecked,
            }
        }
    };
    AgentPass {
        number,
        started,
        duration: start.elapsed(),
        audits,
        containers,
        verification,
        errors,
    }
}

/// Audits each of `records` once with `audit_rootfs`, and each of `containers`' own namespaces on top of its
/// rootfs mount's audit from that list (the container audit's rootfs half is that same report, never a second
/// audit); a container whose rootfs mount is not among `records` (its holder gone) gets the whole container
/// audit. Returns the mounts' audits and the containers', in the order given.
fn audit_mounts(
    store: &Store,
    records: &[Record],
    containers: &[Container],
    audit_rootfs: &mut dyn FnMut(&Record) -> audit::Report,
) -> (Vec<audit::Report>, Vec<ContainerReport>) {
    let audits: Vec<audit::Report> = records.iter().map(&mut *audit_rootfs).collect();
    let containers = containers
        .iter()
        .map(
            |c| match records.iter().zip(&audits).find(|(r, _)| r.target == c.rootfs) {
                Some((record, rootfs)) => container::audit::audit_with_rootfs(c, Some(record), rootfs.clone()),
                None => container::audit::audit(store, c),
            },
        )
        .collect();
    (audits, containers)
}

/// The layers of a mount, pinned as `veritylab check TARGET` pins them: to the root hashes its plan took (from
/// a signature where it was mounted from one), else to the node's conversion records.
fn layer_targets(store: &Store, record: &Record) -> Result<watch::Targets, String> {
    let plan = record.plan().map_err(|e| MountError::from(e).to_string())?;
    let pinned = watch::for_plan(store, &plan).map_err(|e: TargetError| e.to_string())?;
    match pinned {
        Some(targets) => Ok(targets),
        None => watch::for_images(store, std::slice::from_ref(&record.image)).map_err(|e| e.to_string()),
    }
}

fn log_pass(pass: &AgentPass) {
    let rows = pass.findings();
    let findings: Vec<Value> = rows
        .iter()
        .map(|r| json!({ "kind": r.kind, "mount": r.mount, "target": r.target, "container": r.container }))
        .collect();
    let details: Vec<Value> = rows
        .iter()
        .map(|r| json!({ "mount": r.mount, "container": r.container, "finding": r.text }))
        .collect();
    let level = if findings.is_empty() && pass.errors.is_empty() {
        "info"
    } else {
        "warn"
    };
    log(
        level,
        "pass",
        json!({
            "pass": pass.number,
            "started": crate::utc::rfc3339_millis(pass.started),
            "duration_seconds": pass.duration.as_secs_f64(),
            "mounts": pass.audits.len(),
            "containers": pass.containers.len(),
            "layers": pass.verification.layers.len(),
            "bytes_verified": pass.verification.bytes,
            "hash_cpu_seconds": pass.verification.layers.iter().map(|l| l.cpu.as_secs_f64()).sum::<f64>(),
            "corrupted_devices": pass.corrupted_devices(),
            "findings": findings,
            "details": details,
            "errors": pass.errors.iter().map(|(m, e)| json!({ "mount": m, "error": e })).collect::<Vec<_>>(),
        }),
    );
}

/// One structured log line on stderr: `{"time", "level", "msg", ...fields}`.
fn log(level: &str, msg: &str, fields: Value) {
    let mut line = json!({
        "time": crate::utc::rfc3339_millis(SystemTime::now()),
        "level": level,
        "msg": msg,
    });
    if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
        line.extend(fields);
    }
    eprintln!("{line}");
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::mount::Plan;
    use crate::oci::digest::Digest;
    use crate::profile::Profile;

    /// A mount's record at `target`, as the store lists it (nothing behind it: the audits here are doubles).
    fn record(id: &str, target: &Path) -> Record {
        Record::for_plan(&Plan {
            id: id.to_owned(),
            target: target.to_owned(),
            image: "image".to_owned(),
            manifest: Digest::of(b"manifest"),
            signature: None,
            profile: Profile::Hardened,
            backend: Backend::Kernel,
            state: PathBuf::from("/nonexistent/state"),
            layers: Vec::new(),
            check_at_most_once: false,
            keyring: None,
            ipe_policy: None,
        })
    }

    /// A container running as this test's own process, its rootfs mount `mount`.
    fn container(name: &str, mount: &Record) -> Container {
        Container {
            name: name.to_owned(),
            image: mount.image.clone(),
            profile: mount.profile,
            backend: mount.backend,
            bundle: PathBuf::from("/nonexistent/bundle"),
            rootfs: mount.target.clone(),
            mount: mount.clone(),
            args: Vec::new(),
            volumes: Vec::new(),
            init: Some(verity_fuse::identity::ProcessId::of(std::process::id()).unwrap()),
            namespace: None,
            expected: Vec::new(),
            upper_baseline: Vec::new(),
            detached: true,
            created: 0,
        }
    }

    #[test]
    fn a_pass_audits_each_container_rootfs_once_and_gives_its_namespace_audit_that_report() {
        let work = tempfile::tempdir().unwrap();
        let store = Store::open(&work.path().join("store")).unwrap();
        let records = [
            record("a", Path::new("/run/a/rootfs")),
            record("b", Path::new("/run/b/rootfs")),
            record("plain", Path::new("/mnt/plain")),
        ];
        let containers = [container("a", &records[0]), container("b", &records[1])];
        let mut audited: Vec<String> = Vec::new();
        let (audits, reports) = audit_mounts(&store, &records, &containers, &mut |r| {
            audited.push(r.id.clone());
            audit::Report {
                id: r.id.clone(),
                target: r.target.clone(),
                profile: r.profile,
                checked: vec![format!("rootfs audit {} of {}", audited.len(), r.id)],
                findings: Vec::new(),
            }
        });
        assert_eq!(audited, ["a", "b", "plain"], "one rootfs audit per mount per pass");
        assert_eq!(audits.len(), 3);
        assert_eq!(reports.len(), 2);
        for (report, audit) in reports.iter().zip(&audits) {
            assert_eq!(report.rootfs.id, audit.id);
            assert_eq!(
                report.rootfs.checked, audit.checked,
                "the container's rootfs half is the pass's audit"
            );
            let namespace_reads = report
                .checked
                .iter()
                .filter(|c| c.contains("mounts in the container's namespace"));
            assert_eq!(namespace_reads.count(), 1, "one mountinfo read of {}", report.name);
        }
    }
}
