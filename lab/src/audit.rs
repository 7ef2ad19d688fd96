//! The mount audit: does what is mounted in the container's namespace still match what `veritylab mount`
//! set up, and can every layer be traced to a trusted root hash?
//!
//! The audit reads the mount table of the mount's namespace (`/proc/HOLDER/mountinfo`) and matches mounts
//! by device number, never by the source string, which whoever mounts chooses (a FUSE server may call
//! itself anything). For each verified layer it follows the chain: the EROFS mount at the lowerdir has the
//! recorded device; that device is a loop device whose backing file is the `device` file of the recorded
//! FUSE mount, on the recorded device number; that FUSE mount's device answers with the trusted root hash
//! and has seen no corruption. A layer on a kernel dm-verity mapping ([`crate::mount::dm`]) is followed the
//! same way: the EROFS mount's device is the recorded mapping, whose table (read by device number) has the
//! trusted root hash over loop devices backed by the recorded layer files, and whose status is `V`. It then checks the overlay (read-only and without upperdir for `hardened`),
//! that the counts of lowerdirs, verified devices and EROFS mounts agree, that nothing is mounted at or
//! under the target beside the overlay (an overmount), and that no mount appeared elsewhere since the
//! mount was made.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::mount::dm;
use crate::mount::record::{MountedLayer, Record};
use crate::mountinfo::{DeviceNumber, MountInfo};
use crate::profile::{Backend, Profile};

/// One thing the audit found wrong, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Finding {
    /// The namespace holding the mount is gone.
    NamespaceGone {
        /// The holder process that was expected.
        holder: Option<u32>,
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
        trusted: String,
        /// The device's root hash.
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
}

impl Finding {
    /// The finding's kind, as in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::NamespaceGone { .. } => "namespace-gone",
            Finding::RootfsMissing { .. } => "rootfs-missing",
            Finding::Overmount { .. } => "overmount",
            Finding::WritableUpperdir { .. } => "writable-upperdir",
            Finding::OverlayWritable => "overlay-writable",
            Finding::LowerdirsChanged { .. } => "lowerdirs-changed",
            Finding::CountMismatch { .. } => "count-mismatch",
            Finding::UntracedLayer { .. } => "untraced-layer",
            Finding::RootHashMismatch { .. } => "root-hash-mismatch",
            Finding::DeviceCorrupted { .. } => "device-corrupted",
            Finding::UnexpectedMount { .. } => "unexpected-mount",
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::NamespaceGone { holder } => write!(f, "the mount namespace (holder {holder:?}) is gone"),
            Finding::RootfsMissing { target } => write!(f, "no rootfs overlay at {}", target.display()),
            Finding::Overmount {
                path,
                fs_type,
                source,
                device,
            } => write!(
                f,
                "overmount at {}: {fs_type} {source:?} on device {device}",
                path.display()
            ),
            Finding::WritableUpperdir { upperdir } => write!(f, "the overlay has a writable upperdir {upperdir}"),
            Finding::OverlayWritable => f.write_str("the overlay is mounted read-write"),
            Finding::LowerdirsChanged { expected, found } => {
                write!(f, "lowerdirs are {found:?}, recorded {expected:?}")
            }
            Finding::CountMismatch {
                layers,
                lowerdirs,
                verified_devices,
                erofs_mounts,
            } => write!(
                f,
                "{layers} layers but {lowerdirs} lowerdirs, {verified_devices} verified devices, {erofs_mounts} EROFS mounts"
            ),
            Finding::UntracedLayer {
                layer,
                lowerdir,
                reason,
            } => write!(f, "layer {layer} at {}: {reason}", lowerdir.display()),
            Finding::RootHashMismatch { layer, trusted, device } => {
                write!(f, "layer {layer}: device root hash {device}, trusted {trusted}")
            }
            Finding::DeviceCorrupted { layer, status } => {
                write!(f, "layer {layer}: device reports corruption {status}")
            }
            Finding::UnexpectedMount {
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
    pub findings: Vec<Finding>,
}

impl Report {
    /// True when nothing was found.
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Where to look: the namespace's mount table, and a way to read files as the namespace sees them.
pub trait View {
    /// The namespace's mounts.
    fn mounts(&self) -> Vec<MountInfo>;
    /// The device number of the file at `path` in the namespace.
    fn device_of(&self, path: &Path) -> Option<DeviceNumber>;
    /// The backing file of loop device `device`, if it is one.
    fn loop_backing(&self, device: DeviceNumber) -> Option<PathBuf>;
    /// The status report of the verified device served at `device_dir`.
    fn device_status(&self, device_dir: &Path) -> Option<serde_json::Value>;
    /// The kernel dm-verity mapping with device number `device`: `None` when the device is no mapping,
    /// `Err` when it is one that cannot be read as dm-verity. Views without device-mapper have none.
    fn dm_mapping(&self, device: DeviceNumber) -> Option<Result<dm::Observed, String>> {
        let _ = device;
        None
    }
}

/// The real namespace of a kernel-backend mount, through `/proc/HOLDER`.
#[derive(Debug, Clone)]
pub struct Namespace<'a> {
    record: &'a Record,
}

impl<'a> Namespace<'a> {
    /// The namespace of `record`'s holder.
    pub fn new(record: &'a Record) -> Self {
        Self { record }
    }
}

impl View for Namespace<'_> {
    fn mounts(&self) -> Vec<MountInfo> {
        self.record
            .holder
            .and_then(|pid| crate::mountinfo::read(pid).ok())
            .unwrap_or_default()
    }

    fn device_of(&self, path: &Path) -> Option<DeviceNumber> {
        fs::metadata(self.record.in_namespace(path))
            .ok()
            .map(|m| DeviceNumber::from_dev(m.dev()))
    }

    fn loop_backing(&self, device: DeviceNumber) -> Option<PathBuf> {
        let text = fs::read_to_string(format!("/sys/dev/block/{device}/loop/backing_file")).ok()?;
        Some(PathBuf::from(text.trim_end()))
    }

    fn device_status(&self, device_dir: &Path) -> Option<serde_json::Value> {
        let path = self
            .record
            .in_namespace(&device_dir.join(verity_fuse::fuse::STATUS_FILE));
        serde_json::from_slice(&fs::read(path).ok()?).ok()
    }

    fn dm_mapping(&self, device: DeviceNumber) -> Option<Result<dm::Observed, String>> {
        dm::observe(device)
    }
}

/// Audits `record` through `view`. `trusted` gives the root hash each layer must have (by layer name);
/// layers missing from it are held to the root hash they were mounted with.
pub fn audit(record: &Record, view: &dyn View, trusted: &BTreeMap<String, String>) -> Report {
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
        report.findings.push(Finding::NamespaceGone { holder: record.holder });
        return report;
    }
    report.checked.push(format!("{} mounts in the namespace", mounts.len()));
    let overlay = check_target(record, &mounts, &mut report);
    if record.backend == Backend::Fuse {
        check_fuse_rootfs(record, overlay, &mut report);
        check_fuse_devices(record, view, trusted, &mut report);
        return report;
    }
    if let Some(overlay) = overlay {
        check_overlay(record, overlay, &mut report);
    }
    check_layers(record, view, &mounts, trusted, &mut report);
    check_new_mounts(record, &mounts, &mut report);
    report
}

/// Finds the rootfs overlay and reports anything else at or under the target.
fn check_target<'m>(record: &Record, mounts: &'m [MountInfo], report: &mut Report) -> Option<&'m MountInfo> {
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
    if overlay.is_none() {
        report.findings.push(Finding::RootfsMissing {
            target: record.target.clone(),
        });
    }
    report.checked.push(format!(
        "nothing else is mounted at or under {}",
        record.target.display()
    ));
    for m in mounts {
        let is_overlay = overlay.is_some_and(|o| o.mount_id == m.mount_id);
        if !is_overlay && m.mount_point.starts_with(&record.target) {
            report.findings.push(Finding::Overmount {
                path: m.mount_point.clone(),
                fs_type: m.fs_type.to_string_lossy().into_owned(),
                source: m.source.to_string_lossy().into_owned(),
                device: m.device,
            });
        }
    }
    overlay
}

/// The `fuse` backend serves the merged layers from its holder process: the rootfs mount must be that
/// server's (by device number) and read-only; the layers' root hashes are the recorded ones it opened.
fn check_fuse_rootfs(record: &Record, rootfs: Option<&MountInfo>, report: &mut Report) {
    report.checked.push(format!(
        "{} layers verified inside the FUSE server (pid {}), with the recorded root hashes",
        record.layers.len(),
        record.holder.unwrap_or_default()
    ));
    report.checked.push("the FUSE rootfs is read-only".to_owned());
    if rootfs.is_some_and(|m| !m.is_read_only()) {
        report.findings.push(Finding::OverlayWritable);
    }
}

/// The FUSE server's verified devices, from the status each serves at its device directory: the trusted
/// root hash, and no corruption seen.
fn check_fuse_devices(record: &Record, view: &dyn View, trusted: &BTreeMap<String, String>, report: &mut Report) {
    let served: Vec<&MountedLayer> = record.layers.iter().filter(|l| l.device_dir.is_some()).collect();
    if served.is_empty() {
        return;
    }
    report.checked.push(format!(
        "{} verified devices report the trusted root hash and no corruption",
        served.len()
    ));
    for layer in served {
        let device = fuse_device_state(layer, view);
        let trusted_root = trusted
            .get(&layer.name)
            .or(layer.root_hash.as_ref())
            .cloned()
            .unwrap_or_default();
        if device.root_hash != trusted_root {
            report.findings.push(Finding::RootHashMismatch {
                layer: layer.name.clone(),
                trusted: trusted_root,
                device: device.root_hash,
            });
        }
        if device.corrupted {
            report.findings.push(Finding::DeviceCorrupted {
                layer: layer.name.clone(),
                status: device.status,
            });
        }
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
        report.findings.push(Finding::LowerdirsChanged { expected, found });
    }
    if record.profile == Profile::Hardened {
        report
            .checked
            .push("the overlay is read-only and has no upperdir (hardened)".to_owned());
        if let Some(upper) = overlay.super_options.get("upperdir") {
            report.findings.push(Finding::WritableUpperdir {
                upperdir: upper.to_string_lossy().into_owned(),
            });
        }
        if !overlay.is_read_only() {
            report.findings.push(Finding::OverlayWritable);
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
    trusted: &BTreeMap<String, String>,
    report: &mut Report,
) {
    if record.profile == Profile::Vanilla {
        report
            .checked
            .push("vanilla: lowerdirs are plain directories, nothing to trace".to_owned());
        return;
    }
    let mut erofs_mounts = 0;
    let mut verified = 0;
    for layer in &record.layers {
        let at_lowerdir = mounts.iter().rev().find(|m| m.mount_point == layer.lowerdir);
        let Some(erofs) = at_lowerdir.filter(|m| m.fs_type == "erofs" && Some(m.device) == layer.erofs_dev) else {
            report.findings.push(untraced(
                layer,
                "no EROFS mount with the recorded device at the lowerdir",
            ));
            continue;
        };
        erofs_mounts += 1;
        if !record.profile.verified() {
            continue;
        }
        let traced = match &layer.dm {
            Some(mapping) => trace_dm(mapping, erofs, view),
            None => trace(layer, erofs, view, mounts).map(|()| fuse_device_state(layer, view)),
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
        let trusted_root = trusted
            .get(&layer.name)
            .or(layer.root_hash.as_ref())
            .cloned()
            .unwrap_or_default();
        if device.root_hash != trusted_root {
            report.findings.push(Finding::RootHashMismatch {
                layer: layer.name.clone(),
                trusted: trusted_root,
                device: device.root_hash,
            });
        }
        if device.corrupted {
            report.findings.push(Finding::DeviceCorrupted {
                layer: layer.name.clone(),
                status: device.status,
            });
        }
    }
    report.checked.push(format!(
        "{} layers: each an EROFS mount on the recorded device{}",
        record.layers.len(),
        match (record.profile.verified(), record.layers.iter().any(|l| l.dm.is_some())) {
            (true, true) =>
                ", a recorded kernel dm-verity mapping with the trusted root hash over the recorded layer \
                             files, status V",
            (true, false) => ", on a loop over a recorded verified device with the trusted root hash and no corruption",
            (false, _) => "",
        }
    ));
    let lowerdirs = record.layers.len();
    let wanted_verified = if record.profile.verified() { lowerdirs } else { 0 };
    if erofs_mounts != lowerdirs || verified != wanted_verified {
        report.findings.push(Finding::CountMismatch {
            layers: record.layers.len(),
            lowerdirs,
            verified_devices: verified,
            erofs_mounts,
        });
    }
}

/// Follows an EROFS mount to the verified device it must sit on.
fn trace(layer: &MountedLayer, erofs: &MountInfo, view: &dyn View, mounts: &[MountInfo]) -> Result<(), String> {
    let (Some(device_dir), Some(device_dev)) = (&layer.device_dir, layer.device_dev) else {
        return Err("no verified device was recorded".to_owned());
    };
    let backing = view
        .loop_backing(erofs.device)
        .ok_or_else(|| format!("device {} is not a loop device", erofs.device))?;
    let device_file = device_dir.join(verity_fuse::fuse::DEVICE_FILE);
    if backing != device_file {
        return Err(format!(
            "loop {} is backed by {}, not by the verified device {}",
            erofs.device,
            backing.display(),
            device_file.display()
        ));
    }
    let fuse = mounts
        .iter()
        .rev()
        .find(|m| &m.mount_point == device_dir)
        .ok_or_else(|| format!("nothing is mounted at {}", device_dir.display()))?;
    // Mounted by fusermount3 the type carries the subtype; mounted directly by root it is plain `fuse`. The
    // device number is what ties the mount to the recorded server.
    if fuse.device != device_dev || !(fuse.fs_type == "fuse" || fuse.fs_type == "fuse.verity-fuse") {
        return Err(format!(
            "{} is {} on device {}, recorded a verity-fuse device on {device_dev}",
            device_dir.display(),
            fuse.fs_type.to_string_lossy(),
            fuse.device
        ));
    }
    match view.device_of(&device_file) {
        Some(dev) if dev == device_dev => Ok(()),
        other => Err(format!(
            "{} is on device {other:?}, recorded {device_dev}",
            device_file.display()
        )),
    }
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

/// The state of the FUSE-served verified device of `layer`, from its status file.
fn fuse_device_state(layer: &MountedLayer, view: &dyn View) -> DeviceState {
    let device_dir = layer.device_dir.as_deref().unwrap_or(Path::new("/"));
    let status = view.device_status(device_dir).unwrap_or_default();
    DeviceState {
        root_hash: status["root_hash"].as_str().unwrap_or_default().to_owned(),
        corrupted: status["corruptions"].as_u64().unwrap_or(0) > 0 || status["io_errors"].as_u64().unwrap_or(0) > 0,
        status,
    }
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
        root_hash: observed.table.root_hash.clone(),
        corrupted: observed.status != 'V',
        status: serde_json::json!({
            "mapping": observed.name,
            "device": mapping.device.to_string(),
            "status": observed.status.to_string(),
            "table": observed.table,
        }),
    })
}

fn untraced(layer: &MountedLayer, reason: &str) -> Finding {
    Finding::UntracedLayer {
        layer: layer.name.clone(),
        lowerdir: layer.lowerdir.clone(),
        reason: reason.to_owned(),
    }
}

fn check_new_mounts(record: &Record, mounts: &[MountInfo], report: &mut Report) {
    report.checked.push(format!(
        "no mount appeared since the mount was made ({} then)",
        record.baseline.len()
    ));
    for m in mounts {
        if !record.baseline.contains(&m.mount_id) && !m.mount_point.starts_with(&record.target) {
            report.findings.push(Finding::UnexpectedMount {
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
