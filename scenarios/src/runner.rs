//! The scenario runner: each (scenario, profile, backend) cell staged for real in its own sandbox.
//!
//! A cell builds its image (the embedded sample or the scenario's inline layers) in a fresh store, signs it,
//! and walks the pipeline a node would: publish to a registry and pull (registry-stage attacks only; the
//! cell's own `docker-registry` on a loopback port where installed, else an OCI layout: the `cell_registry` module),
//! convert, verify the signature (hardened only: its `--key` semantics, with the policy's rollback floor and
//! single-signed-manifest rule), mount with the profile, read the whole rootfs, and run the profile's checks
//! (hardened: the mount audit, one re-verification pass at rest and the cleanup helper). The attack's
//! `detonate` runs at its [`Stage`]. Any step that refuses (a pull digest mismatch, a rejected signature, a
//! refused mount, an `EIO` on read) makes the cell `blocked` with that error's kind, matched exactly from the
//! product's typed errors (an error of any other kind is the harness's, and the cell ends in `error`);
//! findings of the product's own checks make it `detected`; otherwise the attack's observation from the
//! container's side ([`attacks::Effect`]) decides: the attacker's change seen is `undetected`, the genuine
//! content seen is `blocked`, nothing observable is `inconclusive` (which fails the run). After the attack is reverted, the mount taken down and
//! the registry stopped, a leak check looks for anything of the sandbox still alive (mount records, mounts in
//! any namespace, loop devices backed by sandbox files, processes naming it) and fails the cell if it finds
//! any.
//!
//! Backends: `kernel` (real mounts in the cell's holder namespace, reached through `/proc/HOLDER/root`
//! and `nsenter`; root), `fuse` (the FUSE rootfs; root for the attacks' mounts) and `emulated` (in process,
//! any user). A mount the backend refuses comes back as a typed [`veritylab::mount::LayerRefusal`] carrying the
//! verified devices' status, so the evidence is the same whichever backend ran the cell.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use attacks::{Attack, AttackError, DefenceRefusal, Effect, Stage};
use std::io;

use super::admission::{self, Decision, PodImage};
use super::cell_registry::{self, CellRegistry, LocalRegistry};
use super::image;
use super::outcome::{
    DeviceSnapshot, DeviceState, EffectEvidence, ErrorEvidence, ErrorKind, Evidence, FindingEvidence, FindingKind,
    Observation, Outcome, Phase, TimelineStep,
};
use super::results::{BackendChoice, CellResult, HostInfo, RunReport, ScenarioResult};
use super::sandbox::{MINIMUM, REGISTRY_REPOSITORY, REPOSITORY, Sandbox, SandboxError};
use super::schema::{Admission, Scenario};
use crate::backend::RunnerBackend;
use crate::publisher::Publisher;
use verity_fuse::ErrorClass;
use verity_fuse::fuse::StatusReport;
use veritylab::audit;
use veritylab::convert::{self, ConvertError, VerityLayout};
use veritylab::defence::{self, Defence};
use veritylab::erofs::ReadError;
use veritylab::mount::{self, LayerRefusalKind, MountError, Trust};
use veritylab::oci::LayoutError;
use veritylab::oci::Reference;
use veritylab::oci::reference::{self, RegistryRef};
use veritylab::oci::{self, PullError, PullOptions};
use veritylab::oci::{ClientOptions, RegistryError};
use veritylab::profile::{Backend, Profile};
use veritylab::rootfs::{RootfsError, SnapshotError};
use veritylab::sign::BuildTimestamp;
use veritylab::sign::Scheme;
use veritylab::sign::SignReport;
use veritylab::sign::cosign;
use veritylab::sign::{self, SignatureFinding as VerifyFinding, VerifyError, VerifyOptions};
use veritylab::sign::{Policy, Rule};
use veritylab::store::StoreError;
use veritylab::watch::{self, WatchConfig};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run only this profile's cells.
    pub profile: Option<Profile>,
    /// Where to run, as asked (`None`: the best mount backend available here).
    pub backend: Option<RunnerBackend>,
    /// The `veritylab` executable whose hidden `__hold` command holds kernel and FUSE mounts (`None`: this
    /// process's executable, right when the runner runs inside `veritylab`).
    pub exe: Option<PathBuf>,
    /// The publisher every cell signs with instead of a fresh key of its own: one the node's kernel trusts,
    /// so that the `enforced` cells' root-hash signatures and IPE policy are checked by the kernel itself
    /// (`None`: a fresh key per cell).
    pub publisher: Option<Publisher>,
    /// Switches that break the lab on purpose, for the runner's own tests: only with the `test-hooks` cargo
    /// feature, which the `veritylab` command never enables.
    #[cfg(feature = "test-hooks")]
    pub hooks: Hooks,
}

impl RunOptions {
    /// The breakage asked for: none unless the `test-hooks` feature is on and a test set some.
    fn hooks(&self) -> Hooks {
        #[cfg(feature = "test-hooks")]
        let hooks = self.hooks;
        #[cfg(not(feature = "test-hooks"))]
        let hooks = Hooks::default();
        hooks
    }
}

/// Deliberate breakage of the harness, settable only with the `test-hooks` feature (no command-line flag sets
/// it): the runner's tests use it to show that a leak fails the run. Defences are turned off with
/// `veritylab::defence::mutation` instead (the lab's `mutation` feature).
#[derive(Debug, Clone, Copy, Default)]
pub struct Hooks {
    /// Leave the mount behind after each cell instead of taking it down.
    pub leak_mount: bool,
}

/// Resolves the backend to use and says why: the one asked for, else [`Backend::auto`]'s choice.
pub fn choose_backend(requested: Option<RunnerBackend>) -> BackendChoice {
    let (used, reason) = match requested {
        Some(backend) => match available(backend) {
            Ok(()) => (backend, format!("{backend}: requested")),
            Err(why) => (backend, format!("{backend}: requested, but not available here: {why}")),
        },
        None => {
            let (backend, reason) = Backend::auto();
            (backend.into(), reason)
        }
    };
    BackendChoice {
        requested,
        used,
        reason,
    }
}

/// Whether the runner can drive `backend` here, or why not: the runner stages cells on this host only
/// (`kernel-vm` cells are [`crate::vm::run_scenarios`]'s).
pub fn available(backend: RunnerBackend) -> Result<(), String> {
    match backend {
        RunnerBackend::KernelVm => Err(
            "the runner boots no VM: `veritylab scenario run --backend kernel-vm` runs the kernel backend's cells \
             inside one (see scenarios::vm::run_scenarios)"
                .to_owned(),
        ),
        RunnerBackend::Runc => {
            RunnerBackend::Kernel.mount_backend().available()?;
            for tool in ["runc", "busybox"] {
                if verity_fuse::sys::find_tool(tool).is_none() {
                    return Err(format!(
                        "`{tool}` is not installed (Debian packages runc, busybox-static)"
                    ));
                }
            }
            Ok(())
        }
        other => other.mount_backend().available(),
    }
}

/// Why an `enforced` cell cannot run on `backend` here, if it cannot: where the kernel backend's verified
/// devices are kernel dm-verity mappings, the kernel checks each layer's root-hash signature against its own
/// keyrings, which are filled at boot and cannot hold a cell's fresh certificate; only a run given a
/// [`Publisher`] the kernel trusts can run them.
fn kernel_keyring_gap(profile: Profile, backend: RunnerBackend, publisher: Option<&Publisher>) -> Option<String> {
    (profile.enforced()
        && publisher.is_none()
        && backend == RunnerBackend::Kernel
        && veritylab::mount::dm::available().is_ok())
    .then(|| {
        "the kernel checks root-hash signatures against its own keyrings, which cannot hold this cell's fresh \
         certificate; `--backend kernel-vm` runs the enforced cells in a VM whose firmware enrolls one publisher \
         certificate for the run"
            .to_owned()
    })
}

/// How a cell skipped for lack of root begins its reason (the scenario's `needs_root` says the rest).
pub const NEEDS_ROOT: &str = "needs root";

/// Runs `scenarios`; `progress` hears one line per cell.
pub fn run(scenarios: &[Scenario], options: &RunOptions, progress: &mut dyn FnMut(&str)) -> RunReport {
    let choice = choose_backend(options.backend);
    let backend = choice.used;
    let unavailable = available(backend).err();
    let mut report = RunReport::new(HostInfo::probe(), vec![choice]);
    let start = Instant::now();
    for scenario in scenarios {
        let mut result = ScenarioResult::new(scenario);
        for &profile in &scenario.profiles {
            if options.profile.is_some_and(|p| p != profile) {
                continue;
            }
            let Some(expected) = scenario.expect.get(&profile).cloned() else {
                continue;
            };
            let cell = if !scenario.backends.contains(&backend) {
                CellResult::skipped(
                    profile,
                    backend,
                    expected,
                    format!("the scenario does not run on {backend}"),
                )
            } else if let Some(why) = scenario
                .needs_root
                .get(&backend)
                .filter(|_| !verity_fuse::sys::is_root())
            {
                CellResult::skipped(profile, backend, expected, format!("{NEEDS_ROOT}: {why}"))
            } else if scenario.admission.is_some() && verity_fuse::sys::find_tool(cell_registry::BINARY).is_none() {
                CellResult::skipped(
                    profile,
                    backend,
                    expected,
                    format!(
                        "the admission stage checks the pod against the cell's {}, which is not installed here",
                        cell_registry::BINARY
                    ),
                )
            } else if let Some(why) = kernel_keyring_gap(profile, backend, options.publisher.as_ref()) {
                CellResult::skipped(profile, backend, expected, why)
            } else if let Some(why) = &unavailable {
                CellResult::skipped(
                    profile,
                    backend,
                    expected,
                    format!("{backend} is not available here: {why}"),
                )
            } else {
                run_cell(scenario, profile, backend, expected, options, start)
            };
            progress(&format!(
                "{} [{profile}/{backend}]: {}",
                scenario.id,
                match cell.observed_outcome() {
                    Some(o) => format!("{o} (expected {})", cell.expected.outcome),
                    None => format!("{:?}", cell.verdict()).to_lowercase(),
                }
            ));
            result.cells.push(cell);
        }
        report.scenarios.push(result);
    }
    report.duration_ms = ms(start);
    report
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One cell in progress: its sandbox, evidence and clock.
struct Cell<'a> {
    run_start: Instant,
    evidence: Evidence,
    effect: Option<Effect>,
    /// Which identities the attack's replayed mounts got back, for an attack that replays mounts.
    replay: Option<attacks::ReplayFidelity>,
    /// The image the admission pinned the pod to, when it pinned one.
    pinned: Option<String>,
    options: &'a RunOptions,
}

/// A harness failure: the cell ends in `error`, with the class of what failed (the product's own refusals
/// are evidence, never a harness failure).
#[derive(Debug)]
struct HarnessError {
    class: ErrorClass,
    message: String,
}

impl HarnessError {
    fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }
}

impl From<SandboxError> for HarnessError {
    fn from(e: SandboxError) -> Self {
        Self::new(e.class(), e.to_string())
    }
}

impl Cell<'_> {
    fn step(&mut self, phase: Phase, action: &str, ok: bool, detail: impl Into<String>) {
        let detail = detail.into();
        self.evidence.timeline.push(TimelineStep {
            at_ms: ms(self.run_start),
            phase,
            action: action.to_owned(),
            ok,
            detail: (!detail.is_empty()).then_some(detail),
        });
    }

    fn refused(&mut self, phase: Phase, step: &str, kind: ErrorKind, message: String) {
        self.step(phase, step, false, format!("{kind}: {message}"));
        self.evidence.errors.push(ErrorEvidence {
            kind,
            step: step.to_owned(),
            message,
        });
    }

    fn finding(&mut self, kind: FindingKind, path: Option<String>, message: String) {
        self.evidence.findings.push(FindingEvidence { kind, path, message });
    }

    /// Runs the attack's `detonate`; `Ok(false)` when a refusal ended the pipeline.
    fn detonate(&mut self, attack: &mut dyn Attack, sandbox: &mut Sandbox, phase: Phase) -> Result<bool, HarnessError> {
        let action = format!("detonate {} at {}", attack.name(), attack.stage());
        match attack.detonate(sandbox) {
            Ok(detail) => {
                self.step(phase, &action, true, detail);
                Ok(true)
            }
            Err(e) => self.attack_error(phase, &action, e).map(|()| false),
        }
    }

    fn attack_error(&mut self, phase: Phase, action: &str, e: AttackError) -> Result<(), HarnessError> {
        match e {
            AttackError::Refused { kind, message } => {
                let kind = match kind {
                    DefenceRefusal::ReadOnly => ErrorKind::ReadOnly,
                    DefenceRefusal::OutOfRange => ErrorKind::OutOfRange,
                    DefenceRefusal::HashMismatch => ErrorKind::HashMismatch,
                    DefenceRefusal::ExecDenied => ErrorKind::ExecDenied,
                };
                self.refused(phase, action, kind, message);
                Ok(())
            }
            other => {
                self.step(phase, action, false, other.to_string());
                Err(HarnessError::new(other.class(), format!("{action}: {other}")))
            }
        }
    }

    /// The outcome and the evidence it rests on: the product's refusal, else its findings, else what the
    /// container showed of the attack.
    /// The outcome and its grounds; reads repaired from parity on the way are named with the devices'
    /// counters, since they are why a container read genuine bytes from a damaged layer.
    fn conclude(&self) -> (Outcome, String) {
        let (outcome, grounds) = self.outcome();
        match self.repairs() {
            Some(repairs) if outcome != Outcome::Blocked || self.evidence.errors.is_empty() => {
                (outcome, format!("{grounds}; {repairs}"))
            }
            _ => (outcome, grounds),
        }
    }

    /// What the verified devices corrected from parity, by their counters, when they corrected anything.
    fn repairs(&self) -> Option<String> {
        let repaired: Vec<String> = self
            .evidence
            .devices
            .iter()
            .filter(|d| d.fec_corrected > 0)
            .map(|d| {
                format!(
                    "device {} corrected {} block reads from parity",
                    d.device, d.fec_corrected
                )
            })
            .collect();
        (!repaired.is_empty()).then(|| repaired.join(", "))
    }

    fn outcome(&self) -> (Outcome, String) {
        if let Some(e) = self.evidence.errors.first() {
            return (Outcome::Blocked, format!("{} at {}: {}", e.kind, e.step, e.message));
        }
        if !self.evidence.findings.is_empty() {
            let grounds = self
                .evidence
                .findings
                .iter()
                .map(|f| format!("{}: {}", f.kind, f.message))
                .collect::<Vec<_>>()
                .join("; ");
            return (Outcome::Detected, grounds);
        }
        match &self.effect {
            Some(Effect::Seen(seen)) => (Outcome::Undetected, seen.clone()),
            Some(Effect::Genuine(seen)) => match &self.pinned {
                Some(pod) => (
                    Outcome::Blocked,
                    format!("{seen} (the node pulled {pod}, the digest the admission pinned)"),
                ),
                None => (Outcome::Blocked, seen.clone()),
            },
            Some(Effect::Unobservable(why)) => (Outcome::Inconclusive, why.clone()),
            None => (
                Outcome::Inconclusive,
                "nothing refused the attack, and the pipeline ended before the attacker could look".to_owned(),
            ),
        }
    }
}

fn run_cell(
    scenario: &Scenario,
    profile: Profile,
    backend: RunnerBackend,
    expected: super::outcome::Expectation,
    options: &RunOptions,
    run_start: Instant,
) -> CellResult {
    let started_ms = ms(run_start);
    let cell_start = Instant::now();
    let Some(layers) = image::layers(&scenario.image) else {
        return CellResult::skipped(
            profile,
            backend,
            expected,
            "images to pull are not staged by the runner yet",
        );
    };
    let scheme = match scenario.attack.string("scheme") {
        Some("delivery-kit") => Scheme::DeliveryKit,
        _ => Scheme::Cosign,
    };
    let mut cell = Cell {
        run_start,
        evidence: Evidence::default(),
        effect: None,
        replay: None,
        pinned: None,
        options,
    };
    let exe = options
        .exe
        .clone()
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_default();
    let result = Sandbox::new(
        profile,
        backend.mount_backend(),
        layers,
        scheme,
        &exe,
        options.publisher.as_ref(),
    )
    .map_err(HarnessError::from)
    .and_then(|mut sandbox| {
        sandbox.use_runc = backend == RunnerBackend::Runc;
        let staged = stage(scenario, &mut cell, &mut sandbox);
        let cleaned = teardown(&mut cell, sandbox);
        staged.and(cleaned)
    });
    let duration = ms(cell_start);
    match result {
        Ok(()) => {
            let (outcome, grounds) = cell.conclude();
            let mut evidence = cell.evidence;
            evidence.effect = cell.effect.as_ref().map(|effect| EffectEvidence {
                replay: cell.replay.clone(),
                ..EffectEvidence::from(effect)
            });
            let observation = Observation {
                outcome,
                grounds,
                evidence,
            };
            CellResult::observed(profile, backend, expected, observation, started_ms, duration)
        }
        Err(e) => CellResult::error(profile, backend, expected, e.class, e.message, started_ms, duration),
    }
}

/// Builds, attacks, mounts and checks; returns early (Ok) once a refusal ends the pipeline.
fn stage(scenario: &Scenario, cell: &mut Cell<'_>, sandbox: &mut Sandbox) -> Result<(), HarnessError> {
    let mut attack = attacks::create(&scenario.attack.name, &scenario.attack.attack_params())
        .map_err(|e| HarnessError::new(e.class(), e.to_string()))?;
    let at = attack.stage();
    if let Err(e) = attack.prepare(sandbox) {
        cell.attack_error(Phase::Prepare, "prepare", e)?;
    }
    cell.step(
        Phase::Prepare,
        "prepare",
        true,
        format!("{} (detonates at {at})", attack.name()),
    );

    if let Some(admission) = &scenario.admission {
        if !admit_and_pull(cell, sandbox, attack.as_mut(), admission)? {
            return Ok(());
        }
    } else if at == Stage::AfterAdmission {
        return Err(HarnessError::new(
            ErrorClass::BadInput,
            format!(
                "{} detonates after admission, and the scenario stages none",
                attack.name()
            ),
        ));
    } else if at == Stage::Registry {
        if !publish_and_pull(cell, sandbox, attack.as_mut())? {
            return Ok(());
        }
    } else {
        Sandbox::store_image(&sandbox.store, &sandbox.name, &sandbox.layers).map_err(HarnessError::from)?;
        sandbox
            .sign(&sandbox.store, &sandbox.name, &sandbox.key, super::sandbox::BUILT)
            .map_err(HarnessError::from)?;
        cell.step(
            Phase::Setup,
            "build and sign",
            true,
            format!("{} signed ({})", sandbox.name, sandbox.scheme.name()),
        );
    }

    match convert::convert_image(&sandbox.store, &sandbox.name, VerityLayout::Containerd, &|_| {}) {
        Ok(c) => {
            sandbox.conversions = c.layers.into_iter().map(|l| l.conversion).collect();
            cell.step(
                Phase::Setup,
                "convert",
                true,
                format!("{} layers to EROFS with dm-verity trees", sandbox.conversions.len()),
            );
        }
        Err(e) => {
            let kind = convert_kind(&e).ok_or_else(|| HarnessError::new(e.class(), format!("convert: {e}")))?;
            cell.refused(Phase::Setup, "convert", kind, e.to_string());
            return Ok(());
        }
    }

    if at == Stage::NodeDisk && !cell.detonate(attack.as_mut(), sandbox, Phase::Detonate)? {
        return Ok(());
    }

    let Some((mount_name, trust)) = verify(cell, sandbox)? else {
        return Ok(());
    };

    if at == Stage::AfterVerify && !cell.detonate(attack.as_mut(), sandbox, Phase::Detonate)? {
        return Ok(());
    }

    if !mount_image(cell, sandbox, &trust)? {
        return Ok(());
    }

    if at == Stage::Runtime && !cell.detonate(attack.as_mut(), sandbox, Phase::Detonate)? {
        revert(cell, attack.as_mut(), sandbox)?;
        return Ok(());
    }

    read_all(cell, sandbox, "read the whole rootfs")?;
    if at == Stage::AfterFirstRead {
        if cell.detonate(attack.as_mut(), sandbox, Phase::Detonate)? {
            read_all(cell, sandbox, "read the whole rootfs again")?;
        } else {
            return Ok(());
        }
    }
    match attack.observe(sandbox) {
        Ok(effect) => {
            cell.step(Phase::Observe, "the attacker looks", true, effect.detail());
            cell.effect = Some(effect);
            cell.replay = attack.replay_fidelity().cloned();
        }
        Err(e) => cell.attack_error(Phase::Observe, "the attacker looks", e)?,
    }
    devices(cell, sandbox);
    if sandbox.profile.hardened() {
        checks(cell, sandbox, &mount_name)?;
    }
    revert(cell, attack.as_mut(), sandbox)
}

fn revert(cell: &mut Cell<'_>, attack: &mut dyn Attack, sandbox: &mut Sandbox) -> Result<(), HarnessError> {
    match attack.revert(sandbox) {
        Ok(()) => {
            cell.step(Phase::Revert, "revert", true, "");
            Ok(())
        }
        Err(e) => cell.attack_error(Phase::Revert, "revert", e),
    }
}

/// Publishes the signed image to the cell's registry (its own `docker-registry` where installed, else an OCI
/// layout), lets the attack at it, and pulls it with the real pull code; `Ok(false)` when the pull refused.
fn publish_and_pull(cell: &mut Cell<'_>, sandbox: &mut Sandbox, attack: &mut dyn Attack) -> Result<bool, HarnessError> {
    let (source, publisher) = publish_image(cell, sandbox)?;
    if !cell.detonate(attack, sandbox, Phase::Detonate)? {
        return Ok(false);
    }
    pull_image(cell, sandbox, &source, &publisher)
}

/// The admission stage: publishes the signed image to the cell's registry, lets a registry-stage attack at
/// it, has the pod (naming [`REPOSITORY`]`:v1`) checked by the scenario's admission policy against it, lets an
/// after-admission attack in, and has the node pull what the admitted pod names; `Ok(false)` when the
/// admission denied the pod or the pull refused.
fn admit_and_pull(
    cell: &mut Cell<'_>,
    sandbox: &mut Sandbox,
    attack: &mut dyn Attack,
    stage: &Admission,
) -> Result<bool, HarnessError> {
    let (source, publisher) = publish_image(cell, sandbox)?;
    let Reference::Registry(published) = &source else {
        return Err(HarnessError::new(
            ErrorClass::Unavailable,
            format!(
                "the admission stage checks the pod against the cell's {}",
                cell_registry::BINARY
            ),
        ));
    };
    if attack.stage() == Stage::Registry && !cell.detonate(attack, sandbox, Phase::Detonate)? {
        return Ok(false);
    }
    // Clients reach the registry through the attacker's front once there is one.
    let endpoint = &RegistryRef {
        host: sandbox
            .front
            .as_ref()
            .map_or_else(|| published.host.clone(), |f| f.host()),
        ..published.clone()
    };
    let image = PodImage {
        repository: REPOSITORY.to_owned(),
        tag: endpoint.tag.clone().unwrap_or_else(|| "v1".to_owned()),
        digest: None,
    };
    let pem = veritylab::sign::keys::public_pem(&sandbox.public.key);
    let policy = admission::policy(&stage.policy, &pem).map_err(|e| HarnessError::new(e.class(), e.to_string()))?;
    let pod = match policy {
        None => {
            cell.step(
                Phase::Setup,
                "admission",
                true,
                format!("no admission policy: the pod is admitted as written, naming {image}"),
            );
            image
        }
        Some((policy, not_enforced)) => {
            let controller = veritylab::store::Store::open(&sandbox.dir.path().join("admission-controller"))
                .map_err(|e| HarnessError::new(e.class(), e.to_string()))?;
            let client = ClientOptions {
                user_agent: Some(admission::USER_AGENT.to_owned()),
                ..client_options(&source)
            };
            match admission::admit(&policy, &image, &stage.namespace, endpoint, &controller, &client) {
                Ok(Decision::Admitted { image, detail }) => {
                    cell.step(
                        Phase::Setup,
                        "admission",
                        true,
                        format!(
                            "{} ({not_enforced} parts of the document not enforced here): {detail}",
                            stage.policy
                        ),
                    );
                    image
                }
                Ok(Decision::Denied { reason }) => {
                    cell.refused(
                        Phase::Setup,
                        "admission",
                        ErrorKind::AdmissionDenied,
                        format!("{} denied the pod: {reason}", stage.policy),
                    );
                    return Ok(false);
                }
                Err(e) => return Err(HarnessError::new(e.class(), e.to_string())),
            }
        }
    };
    if pod.digest.is_some() {
        cell.pinned = Some(pod.to_string());
    }
    if attack.stage() == Stage::AfterAdmission && !cell.detonate(attack, sandbox, Phase::Detonate)? {
        return Ok(false);
    }
    pull_image(cell, sandbox, &Reference::Registry(pod.at(endpoint)), &publisher)
}

/// Publishes the signed image to the cell's registry; returns where it is published (under tag `v1`) and
/// the publisher's store.
fn publish_image(
    cell: &mut Cell<'_>,
    sandbox: &mut Sandbox,
) -> Result<(Reference, veritylab::store::Store), HarnessError> {
    let harness = |class: ErrorClass, e: &dyn std::fmt::Display| HarnessError::new(class, e.to_string());
    let publisher =
        veritylab::store::Store::open(&sandbox.dir.path().join("publisher")).map_err(|e| harness(e.class(), &e))?;
    Sandbox::store_image(&publisher, &sandbox.name, &sandbox.layers).map_err(HarnessError::from)?;
    let signed = sandbox
        .sign(&publisher, &sandbox.name, &sandbox.key, super::sandbox::BUILT)
        .map_err(HarnessError::from)?;
    let dir = sandbox.dir.path().join("registry");
    let (source, published) = match verity_fuse::sys::find_tool(cell_registry::BINARY) {
        Some(binary) => {
            let served = LocalRegistry::start(&binary, &dir).map_err(|e| {
                HarnessError::new(ErrorClass::Unavailable, format!("starting the cell's registry: {e}"))
            })?;
            let target = RegistryRef {
                host: served.host(),
                repository: REGISTRY_REPOSITORY.to_owned(),
                tag: Some("v1".to_owned()),
                digest: None,
            };
            // Held by the sandbox from here on, so the teardown stops it whatever happens next.
            sandbox.registry = Some(CellRegistry::Served(served));
            let pushed = publish(&publisher, &signed, &target)?;
            (Reference::Registry(target), pushed)
        }
        None => {
            Sandbox::export(&publisher, &sandbox.name, &dir, "v1").map_err(HarnessError::from)?;
            sandbox.registry = Some(CellRegistry::Layout(dir.clone()));
            let reference =
                reference::parse(&format!("oci:{}:v1", dir.display())).map_err(|e| harness(e.class(), &e))?;
            let published = format!("{reference} (the image only; the signature stays with the publisher)");
            (reference, published)
        }
    };
    let registry = sandbox
        .registry
        .as_ref()
        .map(CellRegistry::describe)
        .unwrap_or_default();
    cell.step(
        Phase::Setup,
        "build, sign and publish",
        true,
        format!(
            "{} signed ({}) and published to {registry}: {published}",
            sandbox.name,
            sandbox.scheme.name()
        ),
    );
    Ok((source, publisher))
}

/// The node pulls `source` with the real pull code and fetches its signature (from the registry, or from
/// `publisher` for an OCI layout); `Ok(false)` when the pull refused.
fn pull_image(
    cell: &mut Cell<'_>,
    sandbox: &mut Sandbox,
    source: &Reference,
    publisher: &veritylab::store::Store,
) -> Result<bool, HarnessError> {
    let harness = |class: ErrorClass, e: &dyn std::fmt::Display| HarnessError::new(class, e.to_string());
    let options = PullOptions {
        client: client_options(source),
        ..PullOptions::default()
    };
    let pulled = match oci::pull(source, &sandbox.store, &options, &|_| {}) {
        Ok(report) => report,
        Err(e) => {
            let kind = pull_kind(&e).ok_or_else(|| HarnessError::new(e.class(), format!("pull: {e}")))?;
            cell.refused(Phase::Setup, "pull", kind, e.to_string());
            return Ok(false);
        }
    };
    let descriptor = sandbox.store.lookup(&pulled.name).map_err(|e| harness(e.class(), &e))?;
    sandbox
        .store
        .tag(&sandbox.name, descriptor.clone())
        .map_err(|e| harness(e.class(), &e))?;
    let signature = match source {
        // A registry without a signature answers `None`; failing to ask is the harness's failure, never a
        // missing signature for the hardened check to refuse.
        Reference::Registry(r) => {
            fetch_signature(&sandbox.store, r, &descriptor.digest, &options.client).map_err(|e| {
                cell.step(Phase::Setup, "fetch the signature", false, e.message.clone());
                HarnessError::new(e.class, format!("fetching the signature: {}", e.message))
            })?
        }
        _ => copy_signature(publisher, &sandbox.store, &descriptor.digest)?,
    };
    cell.step(
        Phase::Setup,
        "pull",
        true,
        format!(
            "pulled {} from {source} ({}){}",
            pulled.manifest,
            pulled.transport,
            signature
                .map(|s| format!(", with its signature {s}"))
                .unwrap_or_default()
        ),
    );
    Ok(true)
}

/// Registry client settings for `source`: plain HTTP to the cell's loopback registry.
fn client_options(source: &Reference) -> ClientOptions {
    ClientOptions {
        plain_http: matches!(source, Reference::Registry(r) if r.is_loopback()),
        ..ClientOptions::default()
    }
}

/// Pushes the signed image of `signed` from `publisher` to `target` with the lab's push code (as `veritylab
/// sign --push` does: blobs, the manifest under its tag, then the cosign signature at `sha256-<hex>.sig`);
/// returns what was pushed, for the timeline.
fn publish(
    publisher: &veritylab::store::Store,
    signed: &SignReport,
    target: &RegistryRef,
) -> Result<String, HarnessError> {
    let client = client_options(&Reference::Registry(target.clone()));
    sign::push_signed(publisher, target, signed, &client)
        .map(|pushed| pushed.summary())
        .map_err(|e| HarnessError::new(e.class(), format!("pushing {} to {target}: {e}", signed.name)))
}

/// Fetches the cosign signature of `manifest` from the registry with the real signature code and files it
/// under [`REPOSITORY`], where the hardened check looks; `Ok(None)` when the registry has none.
fn fetch_signature(
    store: &veritylab::store::Store,
    source: &RegistryRef,
    manifest: &veritylab::oci::Digest,
    client: &ClientOptions,
) -> Result<Option<String>, HarnessError> {
    let tag = cosign::signature_tag(manifest);
    if !sign::fetch_signatures(store, source, manifest, client)
        .map_err(|e| HarnessError::new(e.class(), e.to_string()))?
    {
        return Ok(None);
    }
    let fetched = format!("{}/{}:{tag}", source.host, source.repository);
    let descriptor = store
        .lookup(&fetched)
        .map_err(|e| HarnessError::new(e.class(), e.to_string()))?;
    store
        .tag(&format!("{REPOSITORY}:{tag}"), descriptor)
        .map_err(|e| HarnessError::new(e.class(), e.to_string()))?;
    Ok(Some(format!("{fetched} (fetched)")))
}

/// Copies the cosign signature of `manifest` from the publisher's store (the OCI-layout registry carries
/// only the image); `Ok(None)` when there is none.
fn copy_signature(
    publisher: &veritylab::store::Store,
    store: &veritylab::store::Store,
    manifest: &veritylab::oci::Digest,
) -> Result<Option<String>, HarnessError> {
    let Some(signatures) =
        cosign::load(publisher, REPOSITORY, manifest).map_err(|e| HarnessError::new(e.class(), e.to_string()))?
    else {
        return Ok(None);
    };
    cosign::save(store, REPOSITORY, manifest, &cosign::SignatureImage::new(&signatures))
        .map_err(|e| HarnessError::new(e.class(), e.to_string()))?;
    Ok(Some(format!(
        "{REPOSITORY}:{} (copied from the publisher)",
        cosign::signature_tag(manifest)
    )))
}

/// The kind of a pull refusal; `None` for an error that is no refusal (the harness failed).
fn pull_kind(e: &PullError) -> Option<ErrorKind> {
    match e {
        PullError::Store(StoreError::Verify(_))
        | PullError::Verify { .. }
        | PullError::Layout(LayoutError::Verify { .. })
        | PullError::Registry(RegistryError::Verify { .. } | RegistryError::ContentDigestHeader { .. }) => {
            Some(ErrorKind::DigestMismatch)
        }
        _ => None,
    }
}

/// The kind of a conversion refusal: a layer that no longer matches its digest, or one the EROFS writer
/// refuses; `None` for anything else.
fn convert_kind(e: &ConvertError) -> Option<ErrorKind> {
    match e {
        ConvertError::LayerChanged { .. } | ConvertError::Store(StoreError::Verify(_)) => {
            Some(ErrorKind::DigestMismatch)
        }
        ConvertError::Erofs { .. } => Some(ErrorKind::MalformedImage),
        _ => None,
    }
}

/// The hardened profile's signature check; returns the name to mount and the root hashes' source, or
/// `None` when verification refused the image.
fn verify(cell: &mut Cell<'_>, sandbox: &mut Sandbox) -> Result<Option<(String, Trust)>, HarnessError> {
    if !sandbox.profile.hardened() {
        cell.step(
            Phase::Setup,
            "no signature check",
            true,
            match sandbox.profile.containerd_dmverity() {
                Some(_) => format!(
                    "the {} profile takes each layer's root hash from its layer.erofs.dmverity sidecar, which \
                     the node's conversion wrote",
                    sandbox.profile
                ),
                None => format!(
                    "the {} profile takes root hashes (if any) from local metadata",
                    sandbox.profile
                ),
            },
        );
        return Ok(Some((sandbox.name.clone(), Trust::Local(sandbox.name.clone()))));
    }
    if !defence::on(Defence::SignatureCheck) {
        cell.step(
            Phase::Setup,
            "signature check OFF (mutation test)",
            true,
            "root hashes taken from the node's local metadata; mounting the image the tag names now",
        );
        return Ok(Some((sandbox.name.clone(), Trust::Local(sandbox.name.clone()))));
    }
    let policy = Policy {
        rules: vec![Rule {
            pattern: REPOSITORY.to_owned(),
            group: None,
            namespaces: Vec::new(),
            exclude_namespaces: Vec::new(),
            require_signature: sandbox.policy_requires_signature,
            reject: false,
            keys: Vec::new(),
            key_threshold: None,
            require_pull_by_digest: None,
            mutate_digest: None,
            min_build_timestamp: Some(BuildTimestamp(MINIMUM)),
        }],
        ..Policy::default()
    };
    let mut options = VerifyOptions::new(policy, vec![sandbox.public.clone()]);
    options.scheme = sandbox.scheme;
    match sign::verify_image(&sandbox.store, &sandbox.name, &options) {
        Ok(image) => {
            let pinned = format!("{REPOSITORY}@{}", image.manifest().digest);
            sandbox
                .store
                .tag(&pinned, image.manifest().clone())
                .map_err(|e| HarnessError::new(e.class(), e.to_string()))?;
            cell.step(
                Phase::Setup,
                "verify the signature",
                true,
                format!(
                    "{} {}; mounting exactly that manifest and its layers",
                    image.manifest().digest,
                    if image.signed_by().is_some() {
                        "verified"
                    } else {
                        "accepted by the policy WITHOUT a signature"
                    }
                ),
            );
            Ok(Some((pinned, Trust::Verified(Box::new(image)))))
        }
        Err(VerifyError::Rejected { report }) => {
            for finding in report.findings() {
                let kind = verify_kind(finding).ok_or_else(|| {
                    HarnessError::new(
                        ErrorClass::Internal,
                        format!("verify refused the image with an unnamed finding: {finding}"),
                    )
                })?;
                cell.refused(Phase::Setup, "verify the signature", kind, finding.to_string());
            }
            Ok(None)
        }
        Err(e) => Err(HarnessError::new(e.class(), format!("verify: {e}"))),
    }
}

/// The kind of a verification finding; `None` for one no scenario can name (a policy or harness problem).
fn verify_kind(finding: &VerifyFinding) -> Option<ErrorKind> {
    Some(match finding {
        VerifyFinding::SignatureMissing { .. } | VerifyFinding::TooFewSigners { .. } => ErrorKind::SignatureMissing,
        VerifyFinding::Rollback { .. } => ErrorKind::Rollback,
        VerifyFinding::MixAndMatch { .. } => ErrorKind::MixedLayers,
        VerifyFinding::RootHashMismatch { .. } | VerifyFinding::ParamsMismatch { .. } => ErrorKind::RootHashMismatch,
        VerifyFinding::ManifestUnusable { .. } => ErrorKind::MalformedImage,
        VerifyFinding::BadSignature { .. }
        | VerifyFinding::PayloadMalformed { .. }
        | VerifyFinding::PayloadType { .. }
        | VerifyFinding::PayloadDigest { .. }
        | VerifyFinding::PayloadIdentity { .. }
        | VerifyFinding::Annotation(_)
        | VerifyFinding::TimestampMissing { .. }
        | VerifyFinding::TimestampMalformed { .. } => ErrorKind::SignatureInvalid,
        _ => return None,
    })
}

/// Plans and mounts; `Ok(false)` when the mount was refused.
fn mount_image(cell: &mut Cell<'_>, sandbox: &mut Sandbox, trust: &Trust) -> Result<bool, HarnessError> {
    let target = sandbox.dir.path().join("rootfs");
    fs::create_dir_all(&target).map_err(|e| HarnessError::new(ErrorClass::Io, e.to_string()))?;
    let planned = match sandbox.profile {
        Profile::Enforced => {
            let kernel = mount::KernelTrust {
                keyring: sandbox
                    .keyring()
                    .map_err(|e| HarnessError::new(ErrorClass::Io, format!("the node's keyring: {e}")))?,
                ipe_policy: sandbox
                    .ipe_policy()
                    .map_err(|e| HarnessError::new(ErrorClass::Io, format!("the IPE policy: {e}")))?,
            };
            mount::prepare_enforced(&sandbox.store, trust, &target, sandbox.backend, &kernel)
        }
        profile => mount::prepare(&sandbox.store, trust, &target, profile, sandbox.backend),
    };
    let mut plan = match planned {
        Ok(plan) => plan,
        Err(e) => {
            let kind = match &e {
                MountError::MissingRootHash { .. } | MountError::PinnedMismatch { .. } => ErrorKind::RootHashMismatch,
                MountError::NotSigned { .. } => ErrorKind::SignatureMissing,
                MountError::VerityMetadataMissing { .. } => ErrorKind::VerityMetadataMissing,
                MountError::Convert(c) => {
                    convert_kind(c).ok_or_else(|| HarnessError::new(e.class(), format!("planning the mount: {e}")))?
                }
                _ => return Err(HarnessError::new(e.class(), format!("planning the mount: {e}"))),
            };
            cell.refused(Phase::Setup, "mount", kind, e.to_string());
            return Ok(false);
        }
    };
    plan.check_at_most_once = sandbox.check_at_most_once;
    let opened = mount::mount(&sandbox.store, &plan, &sandbox.exe).and_then(|record| {
        match sandbox.open_container(&plan, &record) {
            Ok(container) => Ok((record, container)),
            Err(e) => {
                let _ = mount::umount(&sandbox.store, &record.target);
                Err(e)
            }
        }
    });
    match opened {
        Ok((record, container)) => {
            cell.step(
                Phase::Setup,
                "mount",
                true,
                format!(
                    "{} layers at {} ({} profile, {} backend)",
                    plan.layers.len(),
                    record.target.display(),
                    plan.profile,
                    plan.backend
                ),
            );
            sandbox.container = Some(container);
            sandbox.mounted = Some((plan, record));
            if sandbox.use_runc {
                sandbox.start_runc().map_err(HarnessError::from)?;
                let init = sandbox.runc.as_ref().and_then(|c| c.init).map_or(0, |init| init.pid);
                cell.step(
                    Phase::Setup,
                    "runc run",
                    true,
                    format!("a container under runc on the rootfs, init pid {init}"),
                );
            }
            Ok(true)
        }
        Err(MountError::Refused { refusal, .. }) => {
            push_devices(cell, &refusal.devices);
            let kind = match refusal.kind {
                LayerRefusalKind::RootHash => ErrorKind::RootHashMismatch,
                LayerRefusalKind::Verification => ErrorKind::HashMismatch,
                LayerRefusalKind::Malformed => ErrorKind::MalformedImage,
                LayerRefusalKind::Signature => ErrorKind::RootHashSignature,
            };
            cell.refused(Phase::Setup, "mount", kind, refusal.to_string());
            Ok(false)
        }
        Err(e) => Err(HarnessError::new(e.class(), format!("mount: {e}"))),
    }
}

/// Reads every file of the rootfs as the container would; a refused read is evidence, any other failure the
/// harness's.
fn read_all(cell: &mut Cell<'_>, sandbox: &Sandbox, action: &str) -> Result<(), HarnessError> {
    let Some(container) = &sandbox.container else {
        return Ok(());
    };
    match container.snapshot() {
        Ok(snapshot) => cell.step(
            Phase::Observe,
            action,
            true,
            format!("{} entries, digest {}", snapshot.entries.len(), snapshot.digest()),
        ),
        Err(e) => {
            let kind = snapshot_kind(&e).ok_or_else(|| {
                cell.step(Phase::Observe, action, false, e.to_string());
                HarnessError::new(e.class(), format!("{action}: {e}"))
            })?;
            cell.refused(Phase::Observe, action, kind, e.to_string());
        }
    }
    Ok(())
}

/// The product's refusal a failed read of the rootfs is, matched exactly: a verified device refusing a block
/// (in process, or `EIO` from the kernel), or the EROFS reader refusing its structures (its parser's error in
/// process, `EFSCORRUPTED` from the kernel's EROFS or our FUSE rootfs). `None` for anything else (a dead FUSE
/// server's `ENOTCONN`, `ENOENT`, `EACCES`, an I/O error of the plain file).
pub fn snapshot_kind(e: &SnapshotError) -> Option<ErrorKind> {
    match e {
        SnapshotError::Merged(RootfsError::Verification { .. }) => Some(ErrorKind::HashMismatch),
        SnapshotError::Merged(RootfsError::Layer { source, .. }) => match source {
            ReadError::Io { .. } => None,
            _ => Some(ErrorKind::MalformedImage),
        },
        SnapshotError::Merged(RootfsError::Cycle { .. }) => Some(ErrorKind::MalformedImage),
        SnapshotError::Host { source, .. } => host_kind(source),
        _ => None,
    }
}

/// The refusal an error from a real mount's files is: `EIO` from a verified device, `EFSCORRUPTED` from EROFS.
fn host_kind(e: &io::Error) -> Option<ErrorKind> {
    match e.raw_os_error() {
        Some(veritylab::rootfs::EIO) => Some(ErrorKind::HashMismatch),
        Some(veritylab::rootfs::EFSCORRUPTED) => Some(ErrorKind::MalformedImage),
        _ => None,
    }
}

/// The scenario kind of an audit finding. The match is exhaustive, so a new kind of finding cannot reach a
/// scenario unnamed: it does not compile until it has a kind here.
pub fn finding_kind(finding: &audit::AuditFinding) -> FindingKind {
    use audit::AuditFinding as A;
    match finding {
        A::NamespaceGone { .. } => FindingKind::NamespaceGone,
        A::MountReplaced { .. } => FindingKind::MountReplaced,
        A::RootfsMissing { .. } => FindingKind::RootfsMissing,
        A::Overmount { .. } => FindingKind::Overmount,
        A::WritableUpperdir { .. } => FindingKind::WritableUpperdir,
        A::OverlayWritable => FindingKind::OverlayWritable,
        A::LowerdirsChanged { .. } => FindingKind::LowerdirsChanged,
        A::CountMismatch { .. } => FindingKind::CountMismatch,
        A::UntracedLayer { .. } => FindingKind::UntracedLayer,
        A::RootHashMismatch { .. } => FindingKind::RootHashMismatch,
        A::DeviceCorrupted { .. } => FindingKind::DeviceCorrupted,
        A::UnexpectedMount { .. } => FindingKind::UnexpectedMount,
        A::ExecPolicyChanged { .. } => FindingKind::ExecPolicyChanged,
    }
}

fn devices(cell: &mut Cell<'_>, sandbox: &Sandbox) {
    if let Some(container) = &sandbox.container {
        push_devices(cell, &container.statuses());
    }
}

fn push_devices(cell: &mut Cell<'_>, devices: &[(String, StatusReport)]) {
    for (name, status) in devices {
        cell.evidence.devices.push(DeviceSnapshot {
            device: name.clone(),
            state: match status.letter {
                'C' => DeviceState::Corrupted,
                _ if status.fec_corrected > 0 => DeviceState::Repaired,
                _ => DeviceState::Verified,
            },
            blocks_verified: status.blocks_verified,
            corruptions: status.corruptions,
            fec_corrected: status.fec_corrected,
            fec_uncorrectable: status.fec_uncorrectable,
            first_corrupted: status.first_corrupted.clone(),
        });
    }
}

/// The hardened profile's checks, each the product's own code: the mount audit `veritylab check` runs (on the
/// mount's record as the store holds it), a re-verification pass at rest and `veritylab cleanup`. A check
/// that fails to run is the harness's failure.
fn checks(cell: &mut Cell<'_>, sandbox: &mut Sandbox, mount_name: &str) -> Result<(), HarnessError> {
    let Some((_, mounted)) = &sandbox.mounted else {
        return Ok(());
    };
    let trusted = sandbox.trusted();
    let record = mount::record::find(&sandbox.store, &mounted.target)
        .map_err(|e| HarnessError::new(e.class(), format!("mount audit: reading the mount's record: {e}")))?
        .ok_or_else(|| {
            HarnessError::new(
                ErrorClass::Internal,
                format!("mount audit: no record of the mount at {}", mounted.target.display()),
            )
        })?;
    // An emulated mount's verified devices live in this process: the audit reads their live status, as
    // `veritylab check` reads a kernel or fuse mount's through its namespace.
    let report = if record.backend == Backend::Emulated {
        let devices = sandbox.container.as_ref().map(|c| c.statuses()).unwrap_or_default();
        audit::audit(
            &record,
            &mount::emulated::Table::with_devices(&record, devices),
            &trusted,
        )
    } else {
        audit::audit_record(&record, &trusted)
    };
    for f in &report.findings {
        let kind = finding_kind(f);
        let path = match f {
            audit::AuditFinding::Overmount { path, .. } => {
                path.strip_prefix(&record.target).ok().map(|p| p.display().to_string())
            }
            _ => None,
        };
        cell.finding(kind, path, f.to_string());
    }
    cell.step(
        Phase::Observe,
        "mount audit",
        report.passed(),
        format!("{} checks, {} findings", report.checked.len(), report.findings.len()),
    );
    if let Some(container) = &sandbox.runc {
        let audited = veritylab::container::audit::audit(&sandbox.store, container);
        for f in &audited.findings {
            use veritylab::container::audit::ContainerFinding as C;
            let (kind, path) = match f {
                C::UnexpectedMount { path, .. } if path != Path::new("/") => (
                    FindingKind::Overmount,
                    Some(path.strip_prefix("/").unwrap_or(path).display().to_string()),
                ),
                C::NotRunning { .. } => (FindingKind::ContainerNotRunning, None),
                C::ProcessReplaced { .. } => (FindingKind::ProcessReplaced, None),
                _ => (FindingKind::UnexpectedMount, None),
            };
            cell.finding(kind, path, f.to_string());
        }
        cell.step(
            Phase::Observe,
            "container mount audit",
            audited.findings.is_empty(),
            format!("{} checks, {} findings", audited.checked.len(), audited.findings.len()),
        );
    }

    let fail = |cell: &mut Cell<'_>, action: &str, class: ErrorClass, e: String| {
        cell.step(Phase::Observe, action, false, e.clone());
        HarnessError::new(class, format!("{action}: {e}"))
    };
    let reverify = "re-verify layers at rest";
    let (mut targets, unchecked) = watch::for_images(&sandbox.store, &[mount_name.to_owned()])
        .map_err(|e| fail(cell, reverify, e.class(), e.to_string()))?;
    // Pin the root hashes the signature gave, not the ones the node's metadata says now.
    for target in &mut targets {
        if let Some(root) = trusted.get(&target.layer) {
            target.root = *root;
        }
    }
    let config = WatchConfig {
        cpu_budget_percent: None,
        ..WatchConfig::default()
    };
    let watcher =
        watch::Watcher::new(targets, unchecked, config).map_err(|e| fail(cell, reverify, e.class(), e.to_string()))?;
    let pass = watcher.pass(1);
    let found: Vec<String> = pass.all_findings().map(ToString::to_string).collect();
    for f in &found {
        cell.finding(FindingKind::TreeMismatch, None, f.clone());
    }
    cell.step(
        Phase::Observe,
        reverify,
        found.is_empty(),
        format!("{} layers, {} findings", pass.layers.len(), found.len()),
    );

    let cleaned = mount::cleanup(&sandbox.store).map_err(|e| fail(cell, "cleanup helper", e.class(), e.to_string()))?;
    for c in &cleaned {
        cell.finding(
            FindingKind::LeakedMount,
            None,
            format!("veritylab cleanup: {}", c.summary()),
        );
    }
    cell.step(
        Phase::Observe,
        "cleanup helper",
        true,
        format!("veritylab cleanup found {} leftover mounts", cleaned.len()),
    );
    Ok(())
}

/// Takes the mount down, checks for leaks and removes the sandbox.
fn teardown(cell: &mut Cell<'_>, mut sandbox: Sandbox) -> Result<(), HarnessError> {
    let root = sandbox.dir.path().to_owned();
    sandbox.container = None;
    // Teardown goes on past a failed step (so nothing stays behind), and the first failure fails the cell.
    let mut failed: Option<HarnessError> = None;
    if let Err(e) = sandbox.stop_runc() {
        cell.step(Phase::Revert, "runc delete", false, e.to_string());
        failed.get_or_insert(HarnessError::new(
            e.class(),
            format!("removing the runc container: {e}"),
        ));
    }
    // Whatever an attack left of a stopped container goes first, whether or not its revert ran.
    if !sandbox.leaked.is_empty()
        && let Err(e) = attacks::Env::release_leaks(&mut sandbox)
    {
        cell.step(Phase::Revert, "release leaked mounts", false, e.to_string());
        failed.get_or_insert(HarnessError::new(e.class(), format!("releasing leaked mounts: {e}")));
    }
    if let Some((_, record)) = sandbox.mounted.take() {
        if cell.options.hooks().leak_mount {
            cell.step(Phase::Revert, "umount SKIPPED (test hook)", false, "");
        } else {
            match mount::umount(&sandbox.store, &record.target) {
                Ok(report) if report.leftovers.is_empty() => cell.step(Phase::Revert, "umount", true, ""),
                Ok(report) => {
                    cell.step(Phase::Revert, "umount", false, report.leftovers.join("; "));
                    failed.get_or_insert(HarnessError::new(
                        ErrorClass::Busy,
                        format!("umount left {}", report.leftovers.join("; ")),
                    ));
                }
                Err(e) => {
                    cell.step(Phase::Revert, "umount", false, e.to_string());
                    failed.get_or_insert(HarnessError::new(e.class(), format!("umount: {e}")));
                }
            }
        }
    }
    if let Some(mut front) = sandbox.front.take() {
        front.stop();
        cell.step(
            Phase::Revert,
            "stop the registry's front",
            true,
            format!("it answered {} requests with the decoy", front.rewritten()),
        );
    }
    if let Some(CellRegistry::Served(mut served)) = sandbox.registry.take() {
        served.stop();
        cell.step(
            Phase::Revert,
            "stop the registry",
            true,
            format!(
                "{} at {} (pid {}) killed and reaped",
                cell_registry::BINARY,
                served.host(),
                served.pid()
            ),
        );
    }
    let leaks = leak_check(&sandbox, &root);
    let removed = sandbox.dir.close();
    if !leaks.is_empty() {
        cell.step(Phase::LeakCheck, "leak check", false, leaks.join("; "));
        return Err(HarnessError::new(
            ErrorClass::Busy,
            format!("leak check: {}", leaks.join("; ")),
        ));
    }
    if let Err(e) = removed {
        return Err(HarnessError::new(
            ErrorClass::Io,
            format!("removing the sandbox {}: {e}", root.display()),
        ));
    }
    if root.exists() {
        return Err(HarnessError::new(
            ErrorClass::Busy,
            format!("the sandbox {} is still there", root.display()),
        ));
    }
    if let Some(failure) = failed {
        return Err(failure);
    }
    cell.step(
        Phase::LeakCheck,
        "leak check",
        true,
        "no mounts, loop devices, processes or files left",
    );
    Ok(())
}

/// Everything of the sandbox at `root` still alive: mount records, mounts in any namespace, loop devices
/// backed by its files, processes naming it.
fn leak_check(sandbox: &Sandbox, root: &Path) -> Vec<String> {
    let mut leaks = Vec::new();
    match mount::list(&sandbox.store) {
        Ok(records) => {
            for r in records {
                leaks.push(format!("mount record {} at {}", r.id, r.target.display()));
            }
        }
        Err(e) => leaks.push(format!("the mount records cannot be listed: {e}")),
    }
    let root_text = root.display().to_string();
    let pids: Vec<String> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                .map(str::to_owned)
        })
        .take(100_000)
        .collect();
    let mut namespaces = std::collections::BTreeSet::new();
    for pid in &pids {
        let ns = fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
        if let Some(ns) = ns
            && namespaces.insert(ns)
            && let Ok(info) = fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        {
            let command = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim_end().to_owned())
                .unwrap_or_default();
            for line in info.lines().filter(|l| l.contains(&root_text)) {
                leaks.push(format!("mount in the namespace of pid {pid} ({command}): {line}"));
            }
        }
        if let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(&root_text)
        {
            let command = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            leaks.push(format!(
                "process {pid} still runs for the sandbox: {}",
                command.trim_end()
            ));
        }
    }
    for device in verity_fuse::host::loop_devices() {
        if let Some(file) = device.backing_path.filter(|b| b.starts_with(root)) {
            leaks.push(format!(
                "{} backed by {}",
                device.path.file_name().unwrap_or_default().to_string_lossy(),
                file.display()
            ));
        }
    }
    leaks
}
