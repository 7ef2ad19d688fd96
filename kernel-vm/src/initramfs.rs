//! The initramfs: busybox and its applets, kernel modules, host binaries with their shared libraries, the
//! caller's data files and script, and the `/init` that runs them.
//!
//! Guest layout:
//!
//! ```text
//! /init                     busybox sh script: mounts, insmod in order, runs the script, powers off
//! /bin/busybox, applets     symlinks from `busybox --list-full`
//! /dev/console              so init has a console before devtmpfs is mounted
//! /vmtest/modules/*.ko      modules, loaded in dependency order
//! /vmtest/script.sh         the caller's script, sourced in a subshell with cwd /data
//! /data/<name>              the caller's files
//! <host path>               binaries looked up by name, their libraries (as `ldd` lists them)
//! /usr/local/bin/<name>     binaries given by path
//! ```
//!
//! On the console init prints `VMTEST-BEGIN`, the script's output, `VMTEST-EXIT <status>`, `VMTEST-DMESG`,
//! the kernel log, `VMTEST-END`; a failed setup step prints `VMTEST-INIT-FAILED <step>` and powers off.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cpio::{self, Entry, Kind};
use crate::error::VmError;
use crate::host;
use crate::process;

/// Marker printed before the script runs.
pub(crate) const BEGIN: &str = "VMTEST-BEGIN";
/// Marker printed with the script's exit status: `VMTEST-EXIT <n>`.
pub(crate) const EXIT: &str = "VMTEST-EXIT";
/// Marker printed before the kernel log.
pub(crate) const DMESG: &str = "VMTEST-DMESG";
/// Marker printed last, before power-off.
pub(crate) const END: &str = "VMTEST-END";
/// Marker printed when a setup step of `/init` fails: `VMTEST-INIT-FAILED <step>`.
pub(crate) const INIT_FAILED: &str = "VMTEST-INIT-FAILED";
/// Marker the script's `section NAME` function prints to start a named section.
pub(crate) const SECTION: &str = "VMTEST-SECTION";
/// Marker the script's `mark NAME VALUE` function prints.
pub(crate) const MARK: &str = "VMTEST-MARK";

/// Where the caller's files go inside the guest (and the script's working directory).
pub const DATA_DIR: &str = "/data";

/// The contents of a data file: bytes in memory or a host file read when the initramfs is built.
///
/// A `&str` converts to its bytes (file contents), not to a path: pass a [`Path`] or [`PathBuf`] for a host
/// file.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// These bytes.
    Bytes(Vec<u8>),
    /// The contents of this host file.
    Path(PathBuf),
}

impl From<Vec<u8>> for FileSource {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Bytes(bytes)
    }
}

impl From<&[u8]> for FileSource {
    fn from(bytes: &[u8]) -> Self {
        Self::Bytes(bytes.to_vec())
    }
}

impl From<&str> for FileSource {
    fn from(text: &str) -> Self {
        Self::Bytes(text.as_bytes().to_vec())
    }
}

impl From<PathBuf> for FileSource {
    fn from(path: PathBuf) -> Self {
        Self::Path(path)
    }
}

impl From<&Path> for FileSource {
    fn from(path: &Path) -> Self {
        Self::Path(path.to_owned())
    }
}

/// Everything that goes into one initramfs.
#[derive(Debug)]
pub(crate) struct Contents<'a> {
    pub(crate) busybox: &'a Path,
    /// Modules in load order, `(name, host path)`.
    pub(crate) modules: &'a [(String, PathBuf)],
    /// Binaries, `(host path, guest path)`.
    pub(crate) binaries: &'a [(PathBuf, String)],
    pub(crate) files: &'a [(String, FileSource)],
    pub(crate) script: &'a str,
}

/// Builds the uncompressed newc archive.
pub(crate) fn build(contents: &Contents<'_>) -> Result<Vec<u8>, VmError> {
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut add = |path: &str, perm: u32, kind: Kind| {
        let path = path.trim_start_matches('/').to_owned();
        entries.insert(path.clone(), Entry { path, perm, kind });
    };
    add("dev/console", 0o600, Kind::CharDevice(5, 1));
    for dir in ["proc", "sys", "run", "tmp", "mnt", "root"] {
        add(dir, 0o755, Kind::Dir);
    }
    add("bin/busybox", 0o755, Kind::File(read(contents.busybox)?));
    for applet in applets(contents.busybox)? {
        if applet != "bin/busybox" {
            add(&applet, 0o777, Kind::Symlink("/bin/busybox".into()));
        }
    }
    let mut libraries = BTreeSet::new();
    for (host_path, guest_path) in contents.binaries {
        add(guest_path, 0o755, Kind::File(read(host_path)?));
        libraries.extend(host::libraries(host_path)?);
    }
    for library in &libraries {
        add(&library.to_string_lossy(), 0o755, Kind::File(read(library)?));
    }
    let mut insmods = String::new();
    for (index, (name, path)) in contents.modules.iter().enumerate() {
        let guest = format!("/vmtest/modules/{index:02}-{name}.ko");
        add(&guest, 0o644, Kind::File(read(path)?));
        insmods.push_str(&format!("insmod {guest} || vmtest_fail insmod {name}\n"));
    }
    for (name, source) in contents.files {
        let bytes = match source {
            FileSource::Bytes(bytes) => bytes.clone(),
            FileSource::Path(path) => read(path)?,
        };
        add(&format!("{DATA_DIR}/{}", checked_name(name)?), 0o644, Kind::File(bytes));
    }
    add(
        "vmtest/script.sh",
        0o644,
        Kind::File(contents.script.as_bytes().to_vec()),
    );
    add("init", 0o755, Kind::File(init_script(&insmods).into_bytes()));

    let mut dirs = BTreeSet::from([DATA_DIR.trim_start_matches('/').to_owned()]);
    for path in entries.keys() {
        dirs.extend(Path::new(path).ancestors().skip(1).filter_map(|p| {
            let p = p.to_str()?;
            (!p.is_empty()).then(|| p.to_owned())
        }));
    }
    dirs.retain(|d| !entries.contains_key(d));
    let dir_entries = dirs.into_iter().map(|path| Entry {
        path,
        perm: 0o755,
        kind: Kind::Dir,
    });
    // BTreeSet order puts every directory after its parent; files follow all directories.
    let ordered: Vec<Entry> = dir_entries.chain(entries.into_values()).collect();
    Ok(cpio::write(&ordered))
}

fn read(path: &Path) -> Result<Vec<u8>, VmError> {
    fs::read(path).map_err(VmError::io(format!("reading {}", path.display())))
}

/// `name` if it is a relative path of plain components.
fn checked_name(name: &str) -> Result<&str, VmError> {
    let plain = !name.is_empty() && Path::new(name).components().all(|c| matches!(c, Component::Normal(_)));
    if plain {
        Ok(name)
    } else {
        Err(VmError::BadFileName { name: name.to_owned() })
    }
}

/// The applet paths (`bin/ls`, `sbin/insmod`, ...) of `busybox`, relative to `/`.
fn applets(busybox: &Path) -> Result<Vec<String>, VmError> {
    let out = process::run(Command::new(busybox).arg("--list-full"), Duration::from_secs(30))?;
    if !out.success() {
        return Err(VmError::ToolMissing {
            tool: format!("busybox with --list-full ({})", out.describe()),
            package: "busybox-static".into(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| line.trim().trim_start_matches('/').to_owned())
        .filter(|line| !line.is_empty())
        .collect())
}

/// The `/init` script: setup, the caller's script between markers, the kernel log, power-off.
fn init_script(insmods: &str) -> String {
    format!(
        r#"#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
vmtest_fail() {{ echo "{INIT_FAILED} $*"; poweroff -f; }}
mount -t proc proc /proc || vmtest_fail mount proc
mount -t sysfs sysfs /sys || vmtest_fail mount sysfs
mount -t devtmpfs devtmpfs /dev || vmtest_fail mount devtmpfs
{insmods}echo 1 > /proc/sys/kernel/printk
section() {{ echo "{SECTION} $*"; }}
mark() {{ echo "{MARK} $*"; }}
cd {DATA_DIR} || vmtest_fail cd {DATA_DIR}
# The firmware leaves the console mid-line: start the markers on a fresh one.
echo
echo {BEGIN}
( . /vmtest/script.sh ) </dev/null
echo "{EXIT} $?"
echo {DMESG}
dmesg
echo {END}
poweroff -f
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_stay_under_data() {
        assert!(checked_name("data.img").is_ok());
        assert!(checked_name("dir/data.img").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./x"] {
            assert!(checked_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn init_loads_modules_before_the_script() {
        let init = init_script("insmod /vmtest/modules/00-dm_mod.ko || vmtest_fail insmod dm_mod\n");
        let insmod = init.find("insmod /vmtest").unwrap();
        assert!(init.find("mount -t devtmpfs").unwrap() < insmod);
        assert!(insmod < init.find(BEGIN).unwrap());
        assert!(init.trim_end().ends_with("poweroff -f"));
    }
}
