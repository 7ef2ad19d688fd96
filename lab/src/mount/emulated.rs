//! The `emulated` backend: no mounts at all, for `cargo test` and demos anywhere.
//!
//! The rootfs is the in-process merged view ([`crate::rootfs::Merged`]) over the same layers the kernel
//! backend would mount: verified devices for `verity` and `hardened`, plain EROFS files otherwise (the
//! `vanilla` profile's unpacked directories are emulated by its EROFS layers, which hold the same tree).
//! Profiles with an upperdir get a real host directory in the mount's state, consulted before the layers,
//! so a host write into it shows through as it would with overlayfs. The mount table is emulated too:
//! the record carries the entries the kernel backend would create (FUSE device, EROFS on a loop over it,
//! overlay at the target), with made-up device numbers, unique mount ids and loop backing files (as device and
//! inode), and attacks may add or replace entries; the audit reads it through [`Table`] exactly as it reads
//! `/proc/PID/mountinfo`, and an entry without a unique id models a kernel that has none. What the table
//! cannot model: path resolution across namespaces (a path shadowed in another namespace is just another
//! entry), the kernel's reuse of ids and device numbers (an attack chooses them), and a verified device's
//! status when [`Table::with_devices`] is not given the devices the container reads.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use verity_fuse::ReadAt;
use verity_fuse::device::{Options, VerifiedDevice};
use verity_fuse::fuse::StatusReport;
use verity_fuse::identity::FileId;
use verity_fuse::source::{FileSource, Window};

use super::record::{BaselineMount, MountId, MountedLayer, RECORD_FILE, Record};
use super::signed::{self, LayerTrust};
use super::view::View;
use super::{LayerRefusal, LayerRefusalKind, MountError, Plan};
use crate::convert::{self, verity::geometry_for};
use crate::defence::{self, Defence};
use crate::erofs::OverlayNamespace;
use crate::mountinfo::{self, DeviceNumber, MountInfo};
use crate::rootfs::{Merged, RootfsError};
use crate::store::write_atomically;

/// Major number of the emulated FUSE devices (anonymous devices, as the kernel gives FUSE mounts).
const FUSE_MAJOR: u32 = 0;
/// Major number of the emulated loop devices.
const LOOP_MAJOR: u32 = 7;
/// First minor number handed out.
const FIRST_MINOR: u32 = 4000;
/// First unique mount id handed out (the kernel's start above 2^32 too).
const FIRST_UNIQUE: u64 = 1 << 32;
/// Inode number of a file inside an emulated mount (its root is inode 1).
const FILE_INODE: u64 = 2;

pub use super::record::TableEntry;

impl TableEntry {
    /// The entry's mount identity: unique where it has a unique id.
    pub fn identity(&self) -> Option<MountId> {
        Some(self.unique.map_or(MountId::Reusable(self.id), MountId::Unique))
    }

    fn to_mountinfo(&self) -> MountInfo {
        let options = |o: &[String]| mountinfo::Options(o.iter().map(OsString::from).collect());
        MountInfo {
            mount_id: self.id,
            parent_id: 1,
            device: self.device,
            root: PathBuf::from("/"),
            mount_point: self.mount_point.clone(),
            mount_options: options(&self.options),
            optional: Vec::new(),
            fs_type: OsString::from(&self.fs_type),
            source: OsString::from(&self.source),
            super_options: options(&self.super_options),
        }
    }
}

/// "Mounts" `plan`: builds the emulated table, checks every layer opens, and writes the record.
pub(super) fn start(plan: &Plan) -> Result<Record, MountError> {
    let mut record = Record::for_plan(plan);
    let mut table = Vec::new();
    let mut minor = FIRST_MINOR;
    let mut next = |major| {
        minor += 1;
        DeviceNumber { major, minor }
    };
    for (i, layer) in plan.layers.iter().enumerate() {
        let lowerdir = plan.state.join("lower").join(i.to_string());
        let mut mounted = MountedLayer {
            name: layer.name.clone(),
            lowerdir: lowerdir.clone(),
            root_hash: layer.root_hash,
            device_dir: None,
            device_dev: None,
            erofs_dev: None,
            dm: None,
            erofs_mount: None,
            device_mount: None,
            trust: None,
        };
        let mut backing = layer.erofs.clone();
        let mut backing_file = None;
        if plan.profile.verified() {
            let dir = plan.state.join("dev").join(i.to_string());
            let dev = next(FUSE_MAJOR);
            table.push(TableEntry {
                id: table.len() as u64 + 100,
                mount_point: dir.clone(),
                fs_type: "fuse.verity-fuse".to_owned(),
                source: format!("veritylab:{}:{i}", plan.id),
                device: dev,
                options: vec!["ro".to_owned()],
                super_options: vec!["ro".to_owned()],
                backing: None,
                unique: Some(FIRST_UNIQUE + table.len() as u64),
                backing_file: None,
            });
            backing = dir.join(verity_fuse::fuse::DEVICE_FILE);
            backing_file = Some(FileId {
                major: dev.major,
                minor: dev.minor,
                inode: FILE_INODE,
            });
            mounted.device_dir = Some(dir);
            mounted.device_dev = Some(dev);
            mounted.device_mount = table.last().and_then(TableEntry::identity);
        }
        if plan.profile != crate::profile::Profile::Vanilla {
            let dev = next(LOOP_MAJOR);
            table.push(TableEntry {
                id: table.len() as u64 + 100,
                mount_point: lowerdir,
                fs_type: "erofs".to_owned(),
                source: format!("/dev/loop{}", dev.minor),
                device: dev,
                options: vec!["ro".to_owned()],
                super_options: vec!["ro".to_owned()],
                backing: Some(backing),
                unique: Some(FIRST_UNIQUE + table.len() as u64),
                backing_file,
            });
            mounted.erofs_dev = Some(dev);
            mounted.erofs_mount = table.last().and_then(TableEntry::identity);
        }
        record.layers.push(mounted);
    }
    let lowerdirs: Vec<String> = record
        .layers
        .iter()
        .rev()
        .map(|l| l.lowerdir.display().to_string())
        .collect();
    let mut super_options = vec![format!("lowerdir={}", lowerdirs.join(":"))];
    if let (Some(upper), Some(work)) = (plan.upperdir(), plan.workdir()) {
        for dir in [&upper, &work] {
            fs::create_dir_all(dir).map_err(|e| MountError::Setup {
                target: plan.target.clone(),
                reason: format!("creating {}: {e}", dir.display()),
            })?;
        }
        super_options.push(format!("upperdir={}", upper.display()));
        super_options.push(format!("workdir={}", work.display()));
    }
    let options = vec![if plan.read_only() { "ro" } else { "rw" }.to_owned()];
    super_options.insert(0, options[0].clone());
    let overlay_dev = next(FUSE_MAJOR);
    table.push(TableEntry {
        id: table.len() as u64 + 100,
        mount_point: plan.target.clone(),
        fs_type: "overlay".to_owned(),
        source: "overlay".to_owned(),
        device: overlay_dev,
        options,
        super_options,
        backing: None,
        unique: Some(FIRST_UNIQUE + table.len() as u64),
        backing_file: None,
    });
    record.overlay_dev = Some(overlay_dev);
    record.rootfs_mount = table.last().and_then(TableEntry::identity);
    record.baseline = table
        .iter()
        .map(|e| BaselineMount {
            id: e.id,
            unique: e.unique,
        })
        .collect();
    record.emulated = Some(table);
    let opened = Layers::open(plan)?;
    opened.record_trust(&mut record);
    opened.merge(plan)?;
    record.ready = true;
    save(&record)?;
    Ok(record)
}

/// Writes `record` back (after an attack changed its table, say).
pub fn save(record: &Record) -> Result<(), MountError> {
    write_atomically(
        &record.state.join(RECORD_FILE),
        &serde_json::to_vec_pretty(record).unwrap_or_default(),
    )?;
    Ok(())
}

/// Adds `entry` to the emulated mount table of `record` (as a mount inside the container would) and saves it:
/// it gets the next mount id and, where the table has unique ids, the next unique id.
pub fn add_mount(record: &mut Record, mut entry: TableEntry) -> Result<(), MountError> {
    let table = record.emulated.get_or_insert_with(Vec::new);
    entry.id = table.iter().map(|e| e.id).max().unwrap_or(100) + 1;
    entry.unique = next_unique(table);
    table.push(entry);
    save(record)
}

/// Replaces the entry at `mount_point` of `record`'s table with `entry`, as unmounting it and mounting again
/// would: `entry` keeps the mount id and device number it is given (a kernel reuses both), and gets the next
/// unique id where the table has unique ids (a kernel never reuses those). Saves the record.
pub fn replace_mount(record: &mut Record, mount_point: &Path, mut entry: TableEntry) -> Result<(), MountError> {
    let table = record.emulated.get_or_insert_with(Vec::new);
    entry.unique = next_unique(table);
    match table.iter_mut().find(|e| e.mount_point == mount_point) {
        Some(slot) => *slot = entry,
        None => table.push(entry),
    }
    save(record)
}

/// The next unique mount id of `table`; `None` when it models a kernel without them.
fn next_unique(table: &[TableEntry]) -> Option<u64> {
    let highest = table.iter().filter_map(|e| e.unique).max()?;
    Some(highest + 1)
}

/// A layer source: a verified device or the plain file.
pub type Source = Box<dyn ReadAt>;

/// A layer's verified device, as every backend opens it.
pub type Device = VerifiedDevice<Window<FileSource>, FileSource>;

/// Verified devices by layer name.
pub type Devices = Vec<(String, Arc<Device>)>;

/// A plan's layers, opened as its profile reads them.
pub struct Layers {
    /// Each layer's source, base first.
    pub sources: Vec<Source>,
    /// The verified devices among them, by layer name.
    pub devices: Devices,
    /// How each verified device's root hash was vouched for (`enforced`), by layer name.
    pub trust: Vec<(String, LayerTrust)>,
}

impl Layers {
    /// Opens `plan`'s layers: verified devices (with the plan's options) for verified profiles, the plain EROFS
    /// data otherwise. A root hash or tree the device refuses is a [`MountError::Refused`]. For `enforced`,
    /// each layer's root-hash signature is checked first by the emulation of the kernel's check
    /// (`signed::check`); a layer it refuses is a [`MountError::Refused`] of kind
    /// [`LayerRefusalKind::Signature`].
    pub fn open(plan: &Plan) -> Result<Self, MountError> {
        Self::open_with(plan, true)
    }

    /// [`Layers::open`] for a backend whose kernel checks root-hash signatures itself (dm-verity mappings):
    /// the emulated check is left to the kernel.
    pub fn open_for_kernel(plan: &Plan) -> Result<Self, MountError> {
        Self::open_with(plan, false)
    }

    /// Sets each recorded layer's [`LayerTrust`] from what the open found.
    pub fn record_trust(&self, record: &mut super::Record) {
        for layer in &mut record.layers {
            layer.trust = self
                .trust
                .iter()
                .find(|(name, _)| *name == layer.name)
                .map(|(_, trust)| trust.clone());
        }
    }

    fn open_with(plan: &Plan, emulate_signatures: bool) -> Result<Self, MountError> {
        let mut layers = Self {
            sources: Vec::with_capacity(plan.layers.len()),
            devices: Vec::new(),
            trust: Vec::new(),
        };
        for layer in &plan.layers {
            let fail = |reason: String| MountError::Setup {
                target: plan.target.clone(),
                reason: format!("layer {}: {reason}", layer.name),
            };
            let file = FileSource::open(&layer.erofs).map_err(|e| fail(format!("{}: {e}", layer.erofs.display())))?;
            let data = Window::new(file, 0, layer.erofs_size).map_err(|e| fail(e.to_string()))?;
            let Some(root) = layer.root_hash.filter(|_| defence::on(Defence::VerifiedReads)) else {
                layers.sources.push(Box::new(data));
                continue;
            };
            if plan.profile.enforced() && emulate_signatures {
                let trust = match (&plan.keyring, layer.signature_required) {
                    (Some(keyring), true) => signed::check(&root, layer.root_hash_signature.as_ref(), keyring)
                        .map_err(|e| layers.refused(plan, LayerRefusalKind::Signature, &layer.name, e.to_string()))?,
                    (Some(keyring), false) => layer
                        .root_hash_signature
                        .as_ref()
                        .and_then(|sig| signed::check(&root, Some(sig), keyring).ok())
                        .unwrap_or(LayerTrust::Unsigned),
                    (None, _) => return Err(MountError::NoKeyring),
                };
                layers.trust.push((layer.name.clone(), trust));
            }
            let hash = FileSource::open(&layer.hash).map_err(|e| fail(format!("{}: {e}", layer.hash.display())))?;
            let options = Options {
                check_at_most_once: plan.check_at_most_once,
                ..Options::default()
            };
            let device = geometry_for(layer.erofs_size, layer.hashoffset)
                .map_err(|e| e.to_string())
                .and_then(|geometry| {
                    VerifiedDevice::new(data, hash, geometry, root.as_bytes(), options).map_err(|e| e.to_string())
                })
                .map_err(|message| layers.refused(plan, LayerRefusalKind::RootHash, &layer.name, message))?;
            let device = match &layer.fec {
                Some(fec) => {
                    let (parity, params) =
                        convert::fec::open_planned(&layer.name, &fec.file, device.geometry(), fec.params)?;
                    device
                        .with_fec(params, Box::new(parity))
                        .map_err(|e| fail(format!("FEC: {e}")))?
                }
                None => device,
            };
            let device = Arc::new(device);
            layers.devices.push((layer.name.clone(), Arc::clone(&device)));
            layers.sources.push(Box::new(device));
        }
        Ok(layers)
    }

    /// The status of each verified device now.
    pub fn statuses(&self) -> Vec<(String, StatusReport)> {
        self.devices
            .iter()
            .map(|(name, device)| (name.clone(), StatusReport::of(device)))
            .collect()
    }

    /// A refusal of `layer`, with the devices' statuses as evidence.
    pub fn refused(&self, plan: &Plan, kind: LayerRefusalKind, layer: &str, message: String) -> MountError {
        MountError::Refused {
            target: plan.target.clone(),
            refusal: LayerRefusal {
                kind,
                layer: layer.to_owned(),
                message,
                devices: self.statuses(),
            },
        }
    }

    /// Merges the layers into the container's view; returns it with the verified devices. A block that fails
    /// verification or an image the reader refuses is a [`MountError::Refused`].
    pub fn merge(self, plan: &Plan) -> Result<(Merged<Source>, Devices), MountError> {
        let Self { sources, devices, .. } = self;
        match Merged::from_sources(sources, OverlayNamespace::Trusted) {
            Ok(merged) => Ok((merged, devices)),
            Err(e) => {
                let refused = Self {
                    sources: Vec::new(),
                    devices,
                    trust: Vec::new(),
                };
                let kind = if e.is_verification_failure() {
                    LayerRefusalKind::Verification
                } else {
                    LayerRefusalKind::Malformed
                };
                let statuses = refused.statuses();
                let layer = statuses
                    .iter()
                    .find(|(_, status)| status.corruptions > 0)
                    .map_or("rootfs", |(name, _)| name.as_str());
                Err(refused.refused(plan, kind, layer, e.to_string()))
            }
        }
    }
}

/// The merged view of a plan's layers.
pub fn open_view(record: &Record, plan: &Plan) -> Result<Rootfs, MountError> {
    let (merged, _) = Layers::open(plan)?.merge(plan)?;
    Ok(Rootfs {
        merged,
        upper: record.upperdir.clone(),
        read_only: plan.read_only(),
    })
}

/// The emulated container's rootfs: the upperdir (if any) over the merged layers.
#[derive(Debug)]
pub struct Rootfs {
    /// The merged layers.
    pub merged: Merged<Source>,
    /// The upper directory on the host, for profiles that have one.
    pub upper: Option<PathBuf>,
    /// Mounted read-only: writes are refused even with an upperdir.
    pub read_only: bool,
}

impl Rootfs {
    /// Reads the file at `path` (relative to the rootfs), as a process in the container would.
    pub fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, RootfsError> {
        let rel = path.trim_start_matches('/');
        if let Some(upper) = &self.upper
            && let Ok(bytes) = fs::read(upper.join(rel))
        {
            return Ok(bytes);
        }
        self.merged.read_file(rel.as_bytes(), limit)
    }

    /// Writes a file, as a process in the container would: into the upperdir, or refused (EROFS) on a read-only
    /// mount or an overlay without one.
    pub fn write(&self, path: &str, bytes: &[u8]) -> Result<(), std::io::Error> {
        let Some(upper) = self.upper.as_ref().filter(|_| !self.read_only) else {
            return Err(std::io::Error::from_raw_os_error(30));
        };
        let dest = upper.join(path.trim_start_matches('/'));
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(dest, bytes)
    }
}

/// The emulated mount table of a record, as the audit sees it.
#[derive(Debug, Clone)]
pub struct Table<'a> {
    record: &'a Record,
    devices: Vec<(String, StatusReport)>,
}

impl<'a> Table<'a> {
    /// The table of `record`; its verified devices report the root hash they were mounted with and no
    /// corruption.
    pub fn new(record: &'a Record) -> Self {
        Self {
            record,
            devices: Vec::new(),
        }
    }

    /// The table of `record` with the status of the verified devices the container reads (by layer name).
    pub fn with_devices(record: &'a Record, devices: Vec<(String, StatusReport)>) -> Self {
        Self { record, devices }
    }

    fn entries(&self) -> &[TableEntry] {
        self.record.emulated.as_deref().unwrap_or_default()
    }

    /// The entry `path` is on: the deepest mount point above it, the newest where several are at one place.
    fn entry_at(&self, path: &Path) -> Option<&TableEntry> {
        self.entries()
            .iter()
            .rev()
            .filter(|e| path.starts_with(&e.mount_point))
            .max_by_key(|e| e.mount_point.components().count())
    }
}

impl View for Table<'_> {
    fn mounts(&self) -> Vec<MountInfo> {
        self.entries().iter().map(TableEntry::to_mountinfo).collect()
    }

    fn identify(&self, mount: &MountInfo) -> MountId {
        self.entries()
            .iter()
            .find(|e| e.id == mount.mount_id)
            .and_then(TableEntry::identity)
            .unwrap_or(MountId::Reusable(mount.mount_id))
    }

    fn file_at(&self, path: &Path) -> Option<(FileId, MountId)> {
        let entry = self.entry_at(path)?;
        let file = FileId {
            major: entry.device.major,
            minor: entry.device.minor,
            inode: if path == entry.mount_point { 1 } else { FILE_INODE },
        };
        Some((file, entry.identity()?))
    }

    fn loop_backing(&self, device: DeviceNumber) -> Option<FileId> {
        self.entries()
            .iter()
            .find(|e| e.device == device)
            .and_then(|e| e.backing_file)
    }

    fn device_status(&self, device_dir: &Path) -> Option<(serde_json::Value, MountId)> {
        let layer = self
            .record
            .layers
            .iter()
            .find(|l| l.device_dir.as_deref() == Some(device_dir))?;
        let mount = self
            .entry_at(&device_dir.join(verity_fuse::fuse::STATUS_FILE))?
            .identity()?;
        let status = match self.devices.iter().find(|(name, _)| *name == layer.name) {
            Some((_, report)) => serde_json::to_value(report).ok()?,
            None => serde_json::json!({ "root_hash": layer.root_hash, "corruptions": 0, "io_errors": 0 }),
        };
        Some((status, mount))
    }
}
