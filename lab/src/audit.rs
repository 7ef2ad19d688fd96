//! The mount audit: does what is mounted in the container's namespace still match what `veritylab mount`
//! set up, and can every layer be traced to a trusted root hash?
//!
//! The audit reads the mount table of the mount's namespace (`/proc/HOLDER/mountinfo`) and matches mounts
//! by device number, never by the source string, which whoever mounts chooses (a FUSE server may call
//! itself anything). Device numbers, loop minors, mountinfo ids and paths are all handed out again once
//! their owner is gone, so a root attacker can unmount a layer and mount a replacement that shows the same
//! ones. The audit therefore compares identities that cannot be handed back ([`verity_fuse::identity`]):
//!
//! - each mount the holder made (the rootfs, each EROFS lowerdir, each verified device's FUSE mount) by its
//!   64-bit unique mount id, recorded when it was made: a replacement is the `mount-replaced` finding;
//! - each loop device under an EROFS lowerdir by the device and inode of the file it has open
//!   (`LOOP_GET_STATUS64`), which must be the `device` file of the recorded FUSE mount as the holder's
//!   namespace shows it (through `/proc/HOLDER/root`), never by the backing file's path;
//! - each verified device's status through a file opened on that same recorded mount, so the root hash and
//!   the corruption counters come from the device the loop reads.
//!
//! A layer on a kernel dm-verity mapping ([`crate::mount::dm`]) is followed by device number to the recorded
//! mapping, whose table (read by device number) has the trusted root hash over loop devices backed by the
//! recorded layer files, and whose status is `V`. Every backend gets the same checks: the rootfs (an overlay,
//! read-only and without upperdir for `hardened`; on the fuse backend the holder's FUSE rootfs), every
//! verified device's root hash and counters, nothing mounted at or under the target beside the rootfs (an
//! overmount), and no mount added since the mount was made (by unique id; on the fuse backend, which mounts
//! in the host's namespace, only at or under the target and the mount's state directory).
//!
//! On kernels without unique mount ids (before 6.8) the records hold mountinfo ids, which the kernel reuses:
//! the audit then cannot tell a mount from a replacement made with the same options in the same order, and
//! says so in its report. The loop's backing (device, inode) still ties each EROFS lowerdir to a file on the
//! verified device's FUSE mount, but a FUSE mount replaced by another server on a reused device number is
//! not told apart from the holder's.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use verity_fuse::identity::{FileId, MountId, ProcessDir};

use crate::defence::{self, Defence};
use crate::mount::dm;
use crate::mount::record::{MountedLayer, Record};
pub use crate::mount::view::View;
use crate::mountinfo::{self, DeviceNumber, MountInfo};
use crate::profile::{Backend, Profile};
use crate::root_hash::RootHash;

/// One thing the audit found wrong, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AuditFinding {
    /// The namespace holding the mount is gone.
    NamespaceGone {
        /// The holder process that was expected.
        holder: Option<u32>,
    },
    /// A mount the holder made was replaced: what is mounted there now is another mount, whatever device
    /// number or mount id it shows.
    MountReplaced {
        /// Where.
        path: PathBuf,
        /// The mount made then.
        recorded: Option<MountId>,
        /// The mount found now.
        found: MountId,
    },
    /// No overlay with the recorded device is at the target.
    RootfsMissing {
        /// The target.
        target: PathBuf,
    },
    /// Something is mounted at or under the target beside the rootfs overlay.
    Overmount {
        /// Where.
        path: PathBuf,
        /// Its filesystem type.
        fs_type: String,
        /// Its (self-declared) source.
        source: String,
        /// Its device number.
        device: DeviceNumber,
    },
    /// The overlay has a writable upper directory where the profile forbids one.
    WritableUpperdir {
        /// The upper directory.
        upperdir: String,
    },
    /// The overlay is not read-only where the profile requires it.
    OverlayWritable,
    /// The overlay's lowerdirs are not the recorded ones.
    LowerdirsChanged {
        /// The recorded lowerdirs, top first.
        expected: Vec<PathBuf>,
        /// What the overlay has.
        found: Vec<PathBuf>,
    },
    /// The counts of lowerdirs, verified devices and EROFS mounts disagree.
    CountMismatch {
        /// Layers recorded.
        layers: usize,
        /// Lowerdirs of the overlay.
        lowerdirs: usize,
        /// Verified devices found.
        verified_devices: usize,
        /// EROFS mounts found at the lowerdirs.
        erofs_mounts: usize,
    },
    /// A layer's mount cannot be traced to a verified device with a trusted root hash.
    UntracedLayer {
        /// The layer.
        layer: String,
        /// The lowerdir.
        lowerdir: PathBuf,
        /// Why the chain breaks.
        reason: String,
    },
    /// A layer's device uses a root hash other than the trusted one.
    RootHashMismatch {
        /// The layer.
        layer: String,
        /// The trusted root hash.
        trusted: RootHash,
        /// The device's root hash, as the device reports it (text that is not a root hash is kept as evidence).
        device: String,
    },
    /// A layer's verified device has seen corruption.
    DeviceCorrupted {
        /// The layer.
        layer: String,
        /// The device's status report.
        status: serde_json::Value,
    },
    /// A mount appeared in the namespace, outside the rootfs, after the mount was made.
    UnexpectedMount {
        /// Where.
        path: PathBuf,
        /// Its filesystem type.
        fs_type: String,
        /// Its (self-declared) source.
        source: String,
        /// Its device number.
        device: DeviceNumber,
    },
    /// The kernel's active IPE policy is not the one the `enforced` mount loaded (or none is active).
    ExecPolicyChanged {
        /// The policy the mount loaded.
        loaded: String,
        /// The active policy, if any.
        active: Option<String>,
    },
}

impl AuditFinding {
    /// The finding's kind, as in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditFinding::NamespaceGone { .. } => "namespace-gone",
            AuditFinding::MountReplaced { .. } => "mount-replaced",
            AuditFinding::RootfsMissing { .. } => "rootfs-missing",
            AuditFinding::Overmount { .. } => "overmount",
            AuditFinding::WritableUpperdir { .. } => "writable-upperdir",
            AuditFinding::OverlayWritable => "overlay-writable",
            AuditFinding::LowerdirsChanged { .. } => "lowerdirs-changed",
            AuditFinding::CountMismatch { .. } => "count-mismatch",
            AuditFinding::UntracedLayer { .. } => "untraced-layer",
            AuditFinding::RootHashMismatch { .. } => "root-hash-mismatch",
            AuditFinding::DeviceCorrupted { .. } => "device-corrupted",
            AuditFinding::UnexpectedMount { .. } => "unexpected-mount",
            AuditFinding::ExecPolicyChanged { .. } => "exec-policy-changed",
        }
    }
}

impl std::fmt::Display for AuditFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditFinding::NamespaceGone { holder } => write!(f, "the mount namespace (holder {holder:?}) is gone"),
            AuditFinding::MountReplaced { path, recorded, found } => match recorded {
                Some(recorded) => write!(
                    f,
                    "the mount at {} is {found}, the one made was {recorded}",
                    path.display()
                ),
                None => write!(
                    f,
                    "the mount at {} is {found}, no mount was recorded there",
                    path.display()
                ),
            },
            AuditFinding::RootfsMissing { target } => write!(f, "no rootfs overlay at {}", target.display()),
            AuditFinding::ExecPolicyChanged { loaded, active } => write!(
                f,
                "the active IPE policy is {}, the mount loaded {loaded}",
                active.as_deref().unwrap_or("none")
            ),
            AuditFinding::Overmount {
                path,
                fs_type,
                source,
                device,
            } => write!(
                f,
                "overmount at {}: {fs_type} {source:?} on device {device}",
                path.display()
            ),
            AuditFinding::WritableUpperdir { upperdir } => write!(f, "the overlay has a writable upperdir {upperdir}"),
            AuditFinding::OverlayWritable => f.write_str("the overlay is mounted read-write"),
            AuditFinding::LowerdirsChanged { expected, found } => {
                write!(f, "lowerdirs are {found:?}, recorded {expected:?}")
            }
            AuditFinding::CountMismatch {
                layers,
                lowerdirs,
                verified_devices,
                erofs_mounts,
            } => write!(
                f,
                "{layers} layers but {lowerdirs} lowerdirs, {verified_devices} verified devices, {erofs_mounts} EROFS mounts"
            ),
            AuditFinding::UntracedLayer {
                layer,
                lowerdir,
                reason,
            } => write!(f, "layer {layer} at {}: {reason}", lowerdir.display()),
            AuditFinding::RootHashMismatch { layer, trusted, device } => {
                write!(f, "layer {layer}: device root hash {device}, trusted {trusted}")
            }
            AuditFinding::DeviceCorrupted { layer, status } => {
                write!(f, "layer {layer}: device reports corruption {status}")
            }
            AuditFinding::UnexpectedMount {
                path,
                fs_type,
                source,
                device,
            } => write!(
                f,
                "new mount at {}: {fs_type} {source:?} on device {device}",
                path.display()
            ),
        }
    }
}

/// The result of one audit.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The mount's id.
    pub id: String,
    /// The target.
    pub target: PathBuf,
    /// The profile the mount was made with.
    pub profile: Profile,
    /// What was checked, one line each.
    pub checked: Vec<String>,
    /// What was found wrong.
    pub findings: Vec<AuditFinding>,
}

impl Report {
    /// True when nothing was found.
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }
}

/// The real namespace of a kernel- or fuse-backend mount, through the holder's `/proc/PID` opened once, when
/// the view is made, for the very process the record names: every read of the audit goes to that process's
/// namespace or fails, even if the holder dies meanwhile and another process is given its pid.
#[derive(Debug)]
pub struct Namespace {
    holder: Holder,
}

/// Where a [`Namespace`] reads the holder's view.
#[derive(Debug)]
enum Holder {
    /// `/proc/PID` of the process with the recorded start time.
    Pinned(ProcessDir),
    /// `/proc/PID` of a record written without the start time.
    ByPid(PathBuf),
    /// No holder yet: paths are the host's, and there are no mounts to read.
    Host,
    /// The recorded holder is gone (or its pid is another process's): nothing can be read.
    Gone,
}

impl Namespace {
    /// The namespace of `record`'s holder.
    pub fn new(record: &Record) -> Self {
        let holder = match (record.holder_process(), record.holder) {
            (Some(holder), _) => holder.open().map_or(Holder::Gone, Holder::Pinned),
            (None, Some(pid)) => Holder::ByPid(PathBuf::from(format!("/proc/{pid}"))),
            (None, None) => Holder::Host,
        };
        Self { holder }
    }

    /// The holder's `/proc/PID` (`None`: no holder, or it is gone).
    fn proc_dir(&self) -> Option<PathBuf> {
        match &self.holder {
            Holder::Pinned(dir) => Some(dir.path()),
            Holder::ByPid(dir) => Some(dir.clone()),
            Holder::Host | Holder::Gone => None,
        }
    }

    /// The path that reaches the holder's `/`.
    fn root(&self) -> Option<PathBuf> {
        match &self.holder {
            Holder::Host => Some(PathBuf::from("/")),
            _ => Some(self.proc_dir()?.join("root")),
        }
    }
}

/// The largest status file the audit reads.
const STATUS_LIMIT: u64 = 1 << 20;

impl View for Namespace {
    fn mounts(&self) -> Vec<MountInfo> {
        self.proc_dir()
            .and_then(|dir| mountinfo::read_path(&dir.join("mountinfo")).ok())
            .unwrap_or_default()
    }

    fn identify(&self, mount: &MountInfo) -> MountId {
        match self.root() {
            Some(root) => mountinfo::identify(&root, mount),
            None => MountId::Reusable(mount.mount_id),
        }
    }

    fn file_at(&self, path: &Path) -> Option<(FileId, MountId)> {
        let stat = verity_fuse::identity::stat(&mountinfo::under(&self.root()?, path)).ok()?;
        Some((stat.file, stat.mount))
    }

    fn loop_backing(&self, device: DeviceNumber) -> Option<FileId> {
        verity_fuse::identity::loop_backing(device.major, device.minor).ok()?
    }

    fn device_status(&self, device_dir: &Path) -> Option<(serde_json::Value, MountId)> {
        use std::io::Read;
        let path = mountinfo::under(&self.root()?, &device_dir.join(verity_fuse::fuse::STATUS_FILE));
        let file = fs::File::open(path).ok()?;
        let mount = verity_fuse::identity::stat_open(&file).ok()?.mount;
        let mut bytes = Vec::new();
        file.take(STATUS_LIMIT).read_to_end(&mut bytes).ok()?;
        Some((serde_json::from_slice(&bytes).ok()?, mount))
    }

    fn dm_mapping(&self, device: DeviceNumber) -> Option<Result<dm::Observed, String>> {
        dm::observe(device)
    }
}

/// Audits `record` through the view its backend has: the holder's namespace, or the emulated table the
/// record carries. `veritylab check` and the scenario runner both audit this way.
pub fn audit_record(record: &Record, trusted: &BTreeMap<String, RootHash>) -> Report {
    match record.backend {
        Backend::Emulated => audit(record, &crate::mount::emulated::Table::new(record), trusted),
        _ => audit(record, &Namespace::new(record), trusted),
    }
}

/// Audits `record` through `view`. `trusted` gives the root hash each layer must have (by layer name);
/// layers missing from it are held to the root hash they were mounted with.
pub fn audit(record: &Record, view: &dyn View, trusted: &BTreeMap<String, RootHash>) -> Report {
    let mut report = audit_mounts(record, view, trusted);
    if !defence::on(Defence::Audit) {
        report.findings.clear();
    }
    report
}

fn audit_mounts(record: &Record, view: &dyn View, trusted: &BTreeMap<String, RootHash>) -> Report {
    let mut report = Report {
        id: record.id.clone(),
        target: record.target.clone(),
        profile: record.profile,
        checked: Vec::new(),
        findings: Vec::new(),
    };
    let mounts = view.mounts();
    let held = record.backend == Backend::Emulated || record.holder_alive();
    if mounts.is_empty() || !held {
        report
            .findings
            .push(AuditFinding::NamespaceGone { holder: record.holder });
        return report;
    }
    report.checked.push(format!("{} mounts in the namespace", mounts.len()));
    let all_unique = record
        .rootfs_mount
        .into_iter()
        .chain(
            record
                .layers
                .iter()
                .flat_map(|l| [l.erofs_mount, l.device_mount])
                .flatten(),
        )
        .all(MountId::is_unique);
    report.checked.push(if all_unique {
        "mounts are compared by unique mount ids, which the kernel never hands to another mount".to_owned()
    } else {
        "this kernel has no unique mount ids: mounts are compared by mountinfo ids, which the kernel reuses, so a \
         mount replaced by one made alike cannot be told apart"
            .to_owned()
    });
    let rootfs = check_target(record, view, &mounts, &mut report);
    match (record.backend, rootfs) {
        (Backend::Fuse, _) => check_fuse_rootfs(record, rootfs, &mut report),
        (_, Some(overlay)) => check_overlay(record, overlay, &mut report),
        (_, None) => {}
    }
    check_layers(record, view, &mounts, trusted, &mut report);
    check_new_mounts(record, view, &mounts, &mut report);
    if record.profile.enforced() {
        check_exec_policy(record, crate::ipe::Securityfs::find(), &mut report);
    }
    report
}

/// Reports whether the exec rule in force is ours: with the kernel's IPE, the active policy must be the one
/// the mount loaded (compared by the signed policy's SHA-256 in securityfs); the emulated rule is ours by
/// construction, and the report says so.
fn check_exec_policy(record: &Record, ipe: Option<crate::ipe::Securityfs>, report: &mut Report) {
    use crate::exec_policy::Enforcer;
    match &record.exec_policy {
        Some(Enforcer::Kernel { policy }) => {
            report.checked.push(format!(
                "the active IPE policy is the one the mount loaded ({}, signed policy sha256 {})",
                policy.name, policy.pkcs7_sha256
            ));
            let active = ipe.and_then(|ipe| ipe.active().ok().flatten());
            if active.as_ref() != Some(policy) {
                report.findings.push(AuditFinding::ExecPolicyChanged {
                    loaded: policy.name.clone(),
                    active: active.map(|p| format!("{} (sha256 {})", p.name, p.pkcs7_sha256)),
                });
            }
        }
        Some(Enforcer::Emulated) | None => report.checked.push(
            "the exec rule is veritylab's emulation of the IPE policy: ours by construction, enforced only where \
             veritylab executes (no kernel policy is involved)"
                .to_owned(),
        ),
    }
}

/// Finds the rootfs overlay and reports anything else at or under the target.
fn check_target<'m>(
    record: &Record,
    view: &dyn View,
    mounts: &'m [MountInfo],
    report: &mut Report,
) -> Option<&'m MountInfo> {
    // The FUSE rootfs shows as `fuse` or `fuse.veritylab` depending on how it was mounted; the device
    // number is what ties it to the server.
    let fs_type = if record.backend == Backend::Fuse {
        "fuse"
    } else {
        "overlay"
    };
    let overlay = mounts.iter().find(|m| {
        let kind = m.fs_type.to_string_lossy();
        let kind_ok = kind == fs_type || (fs_type == "fuse" && kind.starts_with("fuse."));
        m.mount_point == record.target && kind_ok && Some(m.device) == record.overlay_dev
    });
    report.checked.push(format!(
        "the {fs_type} rootfs at {} has the recorded device {}",
        record.target.display(),
        record.overlay_dev.map(|d| d.to_string()).unwrap_or_default()
    ));
    match overlay {
        None => report.findings.push(AuditFinding::RootfsMissing {
            target: record.target.clone(),
        }),
        Some(overlay) => check_identity(&record.target, record.rootfs_mount, view.identify(overlay), report),
    }
    report.checked.push(format!(
        "nothing else is mounted at or under {}",
        record.target.display()
    ));
    for m in mounts {
        let is_overlay = overlay.is_some_and(|o| o.mount_id == m.mount_id);
        if !is_overlay && m.mount_point.starts_with(&record.target) {
            report.findings.push(AuditFinding::Overmount {
                path: m.mount_point.clone(),
                fs_type: m.fs_type.to_string_lossy().into_owned(),
                source: m.source.to_string_lossy().into_owned(),
                device: m.device,
            });
        }
    }
    overlay
}

/// The `fuse` backend serves the merged layers from its holder process: the rootfs mount must be the one the
/// holder made (checked with the target) and read-only.
fn check_fuse_rootfs(record: &Record, rootfs: Option<&MountInfo>, report: &mut Report) {
    report.checked.push(format!(
        "the FUSE rootfs served by the holder (pid {}) is read-only",
        record.holder.unwrap_or_default()
    ));
    if rootfs.is_some_and(|m| !m.is_read_only()) {
        report.findings.push(AuditFinding::OverlayWritable);
    }
}

fn check_overlay(record: &Record, overlay: &MountInfo, report: &mut Report) {
    let expected: Vec<PathBuf> = record.layers.iter().rev().map(|l| l.lowerdir.clone()).collect();
    let found: Vec<PathBuf> = overlay
        .super_options
        .get("lowerdir")
        .map(split_lowerdirs)
        .unwrap_or_default();
    report.checked.push(format!(
        "the overlay's {} lowerdirs are the recorded ones",
        expected.len()
    ));
    if found != expected {
        report.findings.push(AuditFinding::LowerdirsChanged { expected, found });
    }
    if record.profile.hardened() {
        report
            .checked
            .push("the overlay is read-only and has no upperdir (hardened)".to_owned());
        if let Some(upper) = overlay.super_options.get("upperdir") {
            report.findings.push(AuditFinding::WritableUpperdir {
                upperdir: upper.to_string_lossy().into_owned(),
            });
        }
        if !overlay.is_read_only() {
            report.findings.push(AuditFinding::OverlayWritable);
        }
    }
}

/// Splits overlayfs's `lowerdir=` value at unescaped colons.
fn split_lowerdirs(value: &OsStr) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut current = Vec::new();
    let mut escaped = false;
    for &b in value.as_encoded_bytes() {
        match (escaped, b) {
            (false, b'\\') => escaped = true,
            (false, b':') => dirs.push(std::mem::take(&mut current)),
            _ => {
                current.push(b);
                escaped = false;
            }
        }
    }
    dirs.push(current);
    dirs.into_iter()
        .map(|d| PathBuf::from(std::ffi::OsString::from(String::from_utf8_lossy(&d).into_owned())))
        .collect()
}

fn check_layers(
    record: &Record,
    view: &dyn View,
    mounts: &[MountInfo],
    trusted: &BTreeMap<String, RootHash>,
    report: &mut Report,
) {
    let fuse = record.backend == Backend::Fuse;
    if !record.profile.verified() && (fuse || record.profile == Profile::Vanilla) {
        report.checked.push(format!(
            "{}: the layers are read unverified, nothing to trace",
            record.profile
        ));
        if fuse {
            return;
        }
    }
    if record.profile == Profile::Vanilla {
        return;
    }
    let mut erofs_mounts = 0;
    let mut verified = 0;
    for layer in &record.layers {
        let traced = if fuse {
            verified_device(layer, view, mounts)
        } else {
            let at_lowerdir = mounts.iter().rev().find(|m| m.mount_point == layer.lowerdir);
            let Some(erofs) = at_lowerdir.filter(|m| m.fs_type == "erofs" && Some(m.device) == layer.erofs_dev) else {
                report.findings.push(untraced(
                    layer,
                    "no EROFS mount with the recorded device at the lowerdir",
                ));
                continue;
            };
            erofs_mounts += 1;
            check_identity(&layer.lowerdir, layer.erofs_mount, view.identify(erofs), report);
            if !record.profile.verified() {
                continue;
            }
            match &layer.dm {
                Some(mapping) => trace_dm(mapping, erofs, view),
                None => trace(layer, erofs, view).and_then(|()| verified_device(layer, view, mounts)),
            }
        };
        let device = match traced {
            Ok(device) => {
                verified += 1;
                device
            }
            Err(reason) => {
                report.findings.push(untraced(layer, &reason));
                continue;
            }
        };
        let Some(trusted_root) = trusted.get(&layer.name).copied().or(layer.root_hash) else {
            report
                .findings
                .push(untraced(layer, "no trusted root hash for this layer"));
            continue;
        };
        if device.root_hash.parse::<RootHash>().ok() != Some(trusted_root) {
            report.findings.push(AuditFinding::RootHashMismatch {
                layer: layer.name.clone(),
                trusted: trusted_root,
                device: device.root_hash,
            });
        }
        if device.corrupted {
            report.findings.push(AuditFinding::DeviceCorrupted {
                layer: layer.name.clone(),
                status: device.status,
            });
        }
    }
    let verified_text = ", a verified device (its recorded FUSE mount) with the trusted root hash and no corruption";
    report.checked.push(if fuse {
        format!(
            "{} layers: each read by the FUSE server from{verified_text}",
            record.layers.len()
        )
    } else {
        format!(
            "{} layers: each the recorded EROFS mount on the recorded device{}",
            record.layers.len(),
            match (record.profile.verified(), record.layers.iter().any(|l| l.dm.is_some())) {
                (true, true) =>
                    ", a recorded kernel dm-verity mapping with the trusted root hash over the recorded layer \
                     files, status V"
                        .to_owned(),
                (true, false) =>
                    format!(", on a loop whose backing file (device and inode) is the device file of{verified_text}"),
                (false, _) => String::new(),
            }
        )
    });
    let lowerdirs = if fuse { 0 } else { record.layers.len() };
    let wanted_verified = if record.profile.verified() {
        record.layers.len()
    } else {
        0
    };
    if erofs_mounts != lowerdirs || verified != wanted_verified {
        report.findings.push(AuditFinding::CountMismatch {
            layers: record.layers.len(),
            lowerdirs,
            verified_devices: verified,
            erofs_mounts,
        });
    }
}

/// Reports a mount at `path` that is not the one recorded there.
fn check_identity(path: &Path, recorded: Option<MountId>, found: MountId, report: &mut Report) {
    if recorded != Some(found) {
        report.findings.push(AuditFinding::MountReplaced {
            path: path.to_owned(),
            recorded,
            found,
        });
    }
}

/// Follows an EROFS mount to the verified device it must sit on: its loop device must read the very file that
/// is the `device` file on the recorded FUSE mount, as the holder's namespace resolves it.
fn trace(layer: &MountedLayer, erofs: &MountInfo, view: &dyn View) -> Result<(), String> {
    let Some(device_dir) = &layer.device_dir else {
        return Err("no verified device was recorded".to_owned());
    };
    let backing = view
        .loop_backing(erofs.device)
        .ok_or_else(|| format!("device {} is not a loop device with a backing file", erofs.device))?;
    let device_file = device_dir.join(verity_fuse::fuse::DEVICE_FILE);
    let (file, mount) = view
        .file_at(&device_file)
        .ok_or_else(|| format!("{} cannot be read in the namespace", device_file.display()))?;
    if Some(mount) != layer.device_mount {
        return Err(format!(
            "{} is on {mount}, not on the verified device's recorded FUSE mount",
            device_file.display()
        ));
    }
    if file != backing {
        return Err(format!(
            "loop {} reads {backing}, but the verified device {} is {file}",
            erofs.device,
            device_file.display()
        ));
    }
    Ok(())
}

/// The state of the verified device of `layer` served over FUSE: its mount must be the recorded one (by
/// identity, with the recorded device number and type), and its status is read through that same mount.
fn verified_device(layer: &MountedLayer, view: &dyn View, mounts: &[MountInfo]) -> Result<DeviceState, String> {
    let (Some(device_dir), Some(device_dev)) = (&layer.device_dir, layer.device_dev) else {
        return Err("no verified device was recorded".to_owned());
    };
    let fuse = mounts
        .iter()
        .rev()
        .find(|m| &m.mount_point == device_dir)
        .ok_or_else(|| format!("nothing is mounted at {}", device_dir.display()))?;
    // Mounted by fusermount3 the type carries the subtype; mounted directly by root it is plain `fuse`.
    if fuse.device != device_dev || !(fuse.fs_type == "fuse" || fuse.fs_type == "fuse.verity-fuse") {
        return Err(format!(
            "{} is {} on device {}, recorded a verity-fuse device on {device_dev}",
            device_dir.display(),
            fuse.fs_type.to_string_lossy(),
            fuse.device
        ));
    }
    let found = view.identify(fuse);
    if Some(found) != layer.device_mount {
        return Err(format!(
            "the verified device's mount at {} is {found}, not the one the holder made",
            device_dir.display()
        ));
    }
    let (status, mount) = view
        .device_status(device_dir)
        .ok_or_else(|| format!("the verified device at {} gives no status", device_dir.display()))?;
    if Some(mount) != layer.device_mount {
        return Err(format!(
            "the status at {} was read from {mount}, not from the verified device's mount",
            device_dir.display()
        ));
    }
    Ok(DeviceState {
        root_hash: status["root_hash"].as_str().unwrap_or_default().to_owned(),
        corrupted: status["corruptions"].as_u64().unwrap_or(0) > 0 || status["io_errors"].as_u64().unwrap_or(0) > 0,
        status,
    })
}

/// What a traced verified device reports.
struct DeviceState {
    /// The root hash it verifies against.
    root_hash: String,
    /// Whether it has seen corruption (or I/O errors).
    corrupted: bool,
    /// Its status report, as evidence.
    status: serde_json::Value,
}

/// Follows an EROFS mount to the recorded kernel dm-verity mapping, by device number, and reads its table
/// and status: its name, its data and hash devices' backing files must be the recorded ones, and it must
/// not be told to ignore corruption.
fn trace_dm(mapping: &dm::Mapping, erofs: &MountInfo, view: &dyn View) -> Result<DeviceState, String> {
    if erofs.device != mapping.device {
        return Err(format!(
            "the EROFS mount is on device {}, the recorded dm-verity mapping {} is {}",
            erofs.device, mapping.name, mapping.device
        ));
    }
    let observed = view
        .dm_mapping(erofs.device)
        .ok_or_else(|| format!("device {} is not a device-mapper mapping", erofs.device))??;
    if observed.name != mapping.name {
        return Err(format!(
            "device {} is mapping {}, recorded {}",
            erofs.device, observed.name, mapping.name
        ));
    }
    for (what, found, recorded) in [
        ("data", &observed.data_file, &mapping.data_file),
        ("hash", &observed.hash_file, &mapping.hash_file),
    ] {
        if found.as_ref() != Some(recorded) {
            return Err(format!(
                "mapping {}'s {what} device is backed by {found:?}, recorded {}",
                mapping.name,
                recorded.display()
            ));
        }
    }
    if observed.table.options.iter().any(|o| o == "ignore_corruption") {
        return Err(format!("mapping {} ignores corruption", mapping.name));
    }
    Ok(DeviceState {
        root_hash: observed.table.root_hash.to_string(),
        corrupted: observed.status != 'V',
        status: serde_json::json!({
            "mapping": observed.name,
            "device": mapping.device.to_string(),
            "status": observed.status.to_string(),
            "table": observed.table,
        }),
    })
}

fn untraced(layer: &MountedLayer, reason: &str) -> AuditFinding {
    AuditFinding::UntracedLayer {
        layer: layer.name.clone(),
        lowerdir: layer.lowerdir.clone(),
        reason: reason.to_owned(),
    }
}

fn check_new_mounts(record: &Record, view: &dyn View, mounts: &[MountInfo], report: &mut Report) {
    report.checked.push(format!(
        "no mount appeared since the mount was made ({} then{})",
        record.baseline.len(),
        if record.backend == Backend::Fuse {
            ", at or under the target and the state directory: the fuse backend mounts in the host's namespace"
        } else {
            ""
        }
    ));
    for m in mounts {
        if m.mount_point.starts_with(&record.target) || !record.watches(&m.mount_point) {
            continue;
        }
        // A mount hidden under another when the mount was made has only its mountinfo id on record.
        let known = match view.identify(m) {
            MountId::Unique(id) => record
                .baseline
                .iter()
                .any(|b| b.unique == Some(id) || (b.unique.is_none() && b.id == m.mount_id)),
            MountId::Reusable(id) => record.baseline.iter().any(|b| b.id == id),
        };
        if !known {
            report.findings.push(AuditFinding::UnexpectedMount {
                path: m.mount_point.clone(),
                fs_type: m.fs_type.to_string_lossy().into_owned(),
                source: m.source.to_string_lossy().into_owned(),
                device: m.device,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowerdirs_split_at_unescaped_colons() {
        assert_eq!(
            split_lowerdirs(OsStr::new("/a:/b\\:c:/d")),
            vec![PathBuf::from("/a"), PathBuf::from("/b:c"), PathBuf::from("/d")]
        );
    }
}
