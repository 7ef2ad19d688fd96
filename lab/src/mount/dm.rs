//! Kernel dm-verity devices for the `kernel` backend, on hosts that have device-mapper.
//!
//! When `available` (root, `/dev/mapper/control`, `dmsetup`, `losetup`), the holder opens each verified
//! layer as a real dm-verity mapping instead of serving our emulation over FUSE: read-only loop devices over
//! the layer's files, `dmsetup create` with the table line verity-fuse builds (`open`), and EROFS mounted
//! from `/dev/mapper/NAME`. The mapping is recorded per layer ([`Mapping`]).
//!
//! Unlike mounts, mappings and loop devices are global, not per mount namespace: a holder killed with
//! SIGKILL leaves them behind. Every mapping of a mount is therefore named `veritylab-<mount id>-<layer>`
//! (`name`), so `umount` and `cleanup` find them by name (`remove_mount`) even when the record never
//! got them, and take their loop devices from the mappings' own tables.
//!
//! The audit reads a mapping by device number (`observe`): `dmsetup table` and `dmsetup status` with
//! `-j MAJOR -m MINOR`, parsed by the pure [`Table::parse`].

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::root_hash::RootHash;
use serde::{Deserialize, Serialize};
use verity_fuse::backend::kernel;
use verity_fuse::device::Options;
use verity_fuse::fuse::StatusReport;
use verity_fuse::sys::run_tool;

use super::PlannedLayer;
use crate::convert::verity::geometry_for;
use crate::mountinfo::DeviceNumber;

/// The prefix of every mapping veritylab makes.
pub(crate) const PREFIX: &str = "veritylab-";

/// How long removal retries a mapping that is still busy (a dying namespace releases its mounts shortly
/// after its last process exits).
const BUSY_RETRY: Duration = Duration::from_secs(10);

/// A dm-verity mapping serving one layer, as the mount record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// The mapping's name: `veritylab-<mount id>-<layer index>`.
    pub name: String,
    /// Its device number (what the EROFS mount on it shows).
    pub device: DeviceNumber,
    /// The root hash it was created with.
    pub root_hash: RootHash,
    /// The file holding the layer's data (EROFS image).
    pub data_file: PathBuf,
    /// The file holding its hash tree.
    pub hash_file: PathBuf,
    /// The read-only loop devices under it (one when data and tree share a file, one more for parity).
    pub loops: Vec<PathBuf>,
    /// The file holding its forward error correction parity, when the table has FEC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fec_file: Option<PathBuf>,
}

impl Mapping {
    /// `/dev/mapper/NAME`.
    pub fn path(&self) -> PathBuf {
        Path::new("/dev/mapper").join(&self.name)
    }
}

/// Why device-mapper cannot be used here, or `Ok` when the holder uses dm-verity for verified layers.
pub fn available() -> Result<(), String> {
    verity_fuse::backend::capabilities().kernel.clone()
}

/// The name of layer `index`'s mapping in mount `mount_id`.
pub(crate) fn name(mount_id: &str, index: usize) -> String {
    format!("{PREFIX}{mount_id}-{index}")
}

/// Whether mapping `name` belongs to mount `mount_id`.
pub(crate) fn belongs_to(name: &str, mount_id: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_prefix(mount_id))
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|index| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
}

/// Opens `layer` as mapping `name` with root hash `root`; on failure nothing is left behind. With
/// `signature`, the kernel checks it against its trusted keyrings when the table loads
/// (`root_hash_sig_key_desc`).
pub(crate) fn open(
    layer: &PlannedLayer,
    name: &str,
    root: RootHash,
    options: &Options,
    signature: Option<&super::RootHashSignature>,
) -> Result<Mapping, String> {
    let digest = root.digest();
    let geometry = geometry_for(layer.erofs_size, layer.hashoffset).map_err(|e| e.to_string())?;
    let same_file = layer.erofs == layer.hash;
    let fec_params = layer.fec.as_ref().map(|f| f.params.params());
    let files = kernel::Files {
        data: &layer.erofs,
        hash: &layer.hash,
        hash_is_data: same_file,
        fec: layer
            .fec
            .as_ref()
            .zip(fec_params.as_ref())
            .map(|(f, params)| kernel::FecFile {
                path: &f.file,
                params,
                is_data: false,
                is_hash: false,
            }),
    };
    let made = kernel::open_signed(
        name,
        files,
        &geometry,
        &digest,
        options,
        signature.map(super::RootHashSignature::der),
    )
    .map_err(|e| e.to_string())?;
    let device = device_number(&made.device).inspect_err(|_| {
        let _ = kernel::close(name, &made.loops);
    })?;
    Ok(Mapping {
        name: name.to_owned(),
        device,
        root_hash: root,
        data_file: layer.erofs.clone(),
        hash_file: layer.hash.clone(),
        loops: made.loops,
        fec_file: layer.fec.as_ref().map(|f| f.file.clone()),
    })
}

/// Removes `mapping` and detaches its loop devices.
pub(crate) fn close(mapping: &Mapping) -> Result<(), String> {
    kernel::close(&mapping.name, &mapping.loops).map_err(|e| e.to_string())
}

/// The device number of the block device node at `path`.
fn device_number(path: &Path) -> Result<DeviceNumber, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(DeviceNumber::from_dev(meta.rdev()))
}

/// The names of every device-mapper mapping on the host (`dmsetup ls`).
fn all_names() -> Vec<String> {
    run_tool("dmsetup", "dmsetup", ["ls"])
        .map(|out| parse_ls(&out))
        .unwrap_or_default()
}

/// The names in `dmsetup ls` output (`NAME\t(MAJOR:MINOR)` lines; `No devices found` when empty).
pub(crate) fn parse_ls(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|line| {
            let (name, device) = line.split_once('\t').or_else(|| line.split_once(' '))?;
            device.trim().starts_with('(').then(|| name.trim().to_owned())
        })
        .collect()
}

/// What is left of mount `mount_id`'s mappings: the mappings still present, and the loop devices of
/// `recorded` still attached to their files and used by no other mapping.
pub(crate) fn leftovers(mount_id: &str, recorded: &[&Mapping]) -> Vec<String> {
    if available().is_err() && recorded.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<String> = all_names()
        .into_iter()
        .filter(|n| belongs_to(n, mount_id))
        .map(|n| format!("dm-verity mapping {n}"))
        .collect();
    for mapping in recorded {
        for device in stale_loops(mapping) {
            found.push(format!("loop device {} of mapping {}", device.display(), mapping.name));
        }
    }
    found
}

/// The recorded loops of `mapping` that still exist with the recorded backing file and feed no mapping.
fn stale_loops(mapping: &Mapping) -> Vec<PathBuf> {
    mapping
        .loops
        .iter()
        .filter(|device| {
            let Some(found) = verity_fuse::host::loop_device(device) else {
                return false;
            };
            let ours = [
                Some(&mapping.data_file),
                Some(&mapping.hash_file),
                mapping.fec_file.as_ref(),
            ]
            .into_iter()
            .flatten()
            .any(|f| found.backing_path.as_deref() == Some(f.as_path()));
            ours && !found.held
        })
        .cloned()
        .collect()
}

/// Removes every mapping of mount `mount_id` (found by name, so also those a killed holder never recorded)
/// and the loop devices under them, then the recorded loops left unused. Returns what could not be removed.
pub(crate) fn remove_mount(mount_id: &str, recorded: &[&Mapping]) -> Vec<String> {
    if available().is_err() {
        return Vec::new();
    }
    let mut failed = Vec::new();
    for name in all_names().into_iter().filter(|n| belongs_to(n, mount_id)) {
        let loops = run_tool("dmsetup", "dmsetup", ["table", &name])
            .ok()
            .and_then(|t| Table::parse(&t).ok())
            .map(|t| loop_paths(&[t.data_device, t.hash_device]))
            .unwrap_or_default();
        if let Err(e) = remove_when_free(&name) {
            failed.push(format!("dm-verity mapping {name}: {e}"));
            continue;
        }
        detach(&loops);
    }
    for mapping in recorded {
        detach(&stale_loops(mapping));
    }
    // Without udev nothing removes /dev/mapper nodes of removed mappings: have dmsetup drop them.
    let _ = run_tool("dmsetup", "dmsetup", ["mknodes"]);
    failed
}

/// `dmsetup remove NAME`, retried for a bounded time while the device is still open.
fn remove_when_free(name: &str) -> Result<(), String> {
    let started = Instant::now();
    loop {
        match run_tool("dmsetup", "dmsetup", ["remove", name]) {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() > BUSY_RETRY => return Err(e.to_string()),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `/dev/loopN` for each of `devices` that is a loop device.
fn loop_paths(devices: &[DeviceNumber]) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = devices
        .iter()
        .filter_map(|d| {
            let link = fs::read_link(format!("/sys/dev/block/{d}")).ok()?;
            let name = link.file_name()?.to_str()?.to_owned();
            name.starts_with("loop").then(|| Path::new("/dev").join(name))
        })
        .collect();
    paths.dedup();
    paths
}

fn detach(loops: &[PathBuf]) {
    for device in loops {
        let _ = run_tool("losetup", "mount", ["--detach".as_ref(), device.as_os_str()]);
    }
}

/// A dm-verity table line, as `dmsetup table` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Table {
    /// Length in 512-byte sectors.
    pub sectors: u64,
    /// The data device.
    pub data_device: DeviceNumber,
    /// The hash device.
    pub hash_device: DeviceNumber,
    /// Data blocks covered.
    pub data_blocks: u64,
    /// The hash algorithm.
    pub algorithm: String,
    /// The root hash.
    pub root_hash: RootHash,
    /// The salt, hex (`-` for none).
    pub salt: String,
    /// Mode flags among the optional arguments (`ignore_corruption`, `check_at_most_once`, ...).
    pub options: Vec<String>,
}

pub(crate) use verity_fuse::backend::TableError;

impl Table {
    /// Parses `0 <sectors> verity <version> <data maj:min> <hash maj:min> <data bs> <hash bs> <blocks>
    /// <hash start> <alg> <root> <salt> [<#opts> <opt>...]` with [`verity_fuse::backend::Table::parse`],
    /// then reads both devices as `MAJOR:MINOR`.
    pub fn parse(line: &str) -> Result<Table, TableError> {
        let t = verity_fuse::backend::Table::parse(line)?;
        let err = |reason| TableError {
            line: line.trim().to_owned(),
            reason,
        };
        let device = |s: &str| {
            let (major, minor) = s.split_once(':').ok_or(err("device is not MAJOR:MINOR"))?;
            Ok::<_, TableError>(DeviceNumber {
                major: major.parse().map_err(|_| err("bad major"))?,
                minor: minor.parse().map_err(|_| err("bad minor"))?,
            })
        };
        Ok(Table {
            sectors: t.sectors,
            data_device: device(&t.data_device)?,
            hash_device: device(&t.hash_device)?,
            data_blocks: t.data_blocks,
            algorithm: t.algorithm,
            root_hash: RootHash::from(t.root_hash),
            salt: t.salt,
            options: t.flags,
        })
    }
}

/// A mapping as the kernel reports it, read by device number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// Its name.
    pub name: String,
    /// Its table.
    pub table: Table,
    /// The status letter: `V` (verified so far) or `C` (corruption seen).
    pub status: char,
    /// The backing file of the data device, if it is a loop device.
    pub data_file: Option<PathBuf>,
    /// The backing file of the hash device, if it is a loop device.
    pub hash_file: Option<PathBuf>,
}

/// Reads the dm-verity mapping with device number `device`, if it is one: `None` when the device is not a
/// mapping, `Err` when it is one we cannot read as dm-verity.
pub(crate) fn observe(device: DeviceNumber) -> Option<Result<Observed, String>> {
    let name = fs::read_to_string(format!("/sys/dev/block/{device}/dm/name")).ok()?;
    let by_number = |command: &str| {
        run_tool(
            "dmsetup",
            "dmsetup",
            [
                command,
                "-j",
                &device.major.to_string(),
                "-m",
                &device.minor.to_string(),
            ],
        )
        .map_err(|e| e.to_string())
    };
    let read = || {
        let table = Table::parse(&by_number("table")?).map_err(|e| e.to_string())?;
        let status_line = by_number("status")?;
        let status = kernel::parse_status(&status_line).ok_or_else(|| format!("status {status_line:?}"))?;
        Ok(Observed {
            name: name.trim_end().to_owned(),
            data_file: backing_file(table.data_device),
            hash_file: backing_file(table.hash_device),
            table,
            status,
        })
    };
    Some(read())
}

/// `mapping`'s state in the shape of our FUSE devices' status file, so reports read both alike: the status
/// letter and root hash from `dmsetup status` and `table` (by name: the caller holds the record that named
/// it), the size from the table. The kernel keeps no counters, so those are zero; `None` when the mapping is
/// gone or unreadable.
pub fn status_report(mapping: &Mapping) -> Option<StatusReport> {
    let letter = kernel::status(&mapping.name).ok().filter(|l| matches!(l, 'V' | 'C'))?;
    let table = Table::parse(&kernel::table(&mapping.name).ok()?).ok()?;
    Some(StatusReport {
        status: if letter == 'V' { "verified" } else { "corrupted" }.to_owned(),
        letter,
        blocks_verified: 0,
        zero_blocks: 0,
        unchecked_reads: 0,
        corruptions: 0,
        io_errors: 0,
        first_corrupted: None,
        first_corrupted_block: None,
        halted: None,
        fec_corrected: 0,
        fec_uncorrectable: 0,
        size: table.sectors * 512,
        root_hash: table.root_hash.digest(),
    })
}

fn backing_file(device: DeviceNumber) -> Option<PathBuf> {
    verity_fuse::host::loop_backing_path(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_names_are_recognisably_the_mounts() {
        let n = name("0123456789ab", 2);
        assert_eq!(n, "veritylab-0123456789ab-2");
        assert!(belongs_to(&n, "0123456789ab"));
        assert!(!belongs_to(&n, "0123456789a"));
        assert!(!belongs_to("veritylab-0123456789ab-", "0123456789ab"));
        assert!(!belongs_to("veritylab-0123456789ab-2x", "0123456789ab"));
        assert!(!belongs_to("other-0123456789ab-2", "0123456789ab"));
    }

    #[test]
    fn tables_parse_as_dmsetup_prints_them() {
        let root = "11".repeat(32);
        let t = Table::parse(&format!("0 296 verity 1 7:1 7:0 4096 4096 37 1 sha256 {root} abcd\n")).unwrap();
        assert_eq!(t.sectors, 296);
        assert_eq!(t.data_device, DeviceNumber { major: 7, minor: 1 });
        assert_eq!(t.hash_device, DeviceNumber { major: 7, minor: 0 });
        assert_eq!(t.data_blocks, 37);
        assert_eq!(t.root_hash.to_string(), root);
        assert_eq!(t.salt, "abcd");
        assert!(t.options.is_empty());
        let t = Table::parse(&format!(
            "0 8 verity 1 7:0 7:0 4096 4096 1 1 sha256 {root} - 2 ignore_zero_blocks check_at_most_once"
        ))
        .unwrap();
        assert_eq!(t.options, ["ignore_zero_blocks", "check_at_most_once"]);
    }

    #[test]
    fn other_tables_are_refused_without_panicking() {
        for line in [
            "",
            "0 8 linear 7:0 0",
            "0 8 verity 1 7:0 7:0 4096 4096 1 1 sha256 ab",
            "0 8 verity 1 7 7:0 4096 4096 1 1 sha256 ab cd",
            "0 8 verity 1 7:0 7:0 4096 4096 1 1 sha256 ab cd 2 one",
            "0 x verity 1 7:0 7:0 4096 4096 1 1 sha256 ab cd",
        ] {
            assert!(Table::parse(line).is_err(), "{line}");
        }
    }

    #[test]
    fn dmsetup_ls_lists_names() {
        assert_eq!(
            parse_ls("veritylab-ab-0\t(254:0)\nveritylab-ab-1\t(254, 1)\n"),
            ["veritylab-ab-0", "veritylab-ab-1"]
        );
        assert!(parse_ls("No devices found\n").is_empty());
    }
}
