//! The mountinfo parser against the real kernel: this process's mount table, and tmpfs mounts whose mount
//! point and source hold the characters the kernel escapes.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use veritylab::mountinfo::{self, DeviceNumber};

#[test]
fn this_process_mount_table_parses_and_its_root_is_the_device_of_slash() {
    let mounts = mountinfo::read_self().unwrap();
    assert!(!mounts.is_empty());
    assert_eq!(mountinfo::read(std::process::id()).unwrap(), mounts);
    let root = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == Path::new("/"))
        .expect("a mount on /");
    assert_eq!(
        root.device,
        DeviceNumber::from_dev(std::fs::metadata("/").unwrap().dev()),
        "mountinfo's major:minor is st_dev of the files on the mount"
    );
}

/// Unmounts on drop, so a failing assertion leaves nothing mounted.
struct Mounted {
    umount: PathBuf,
    dir: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new(&self.umount).arg(&self.dir).status();
    }
}

#[test]
fn escaped_spaces_tabs_newlines_and_backslashes_in_real_mounts_unescape() {
    testkit::require_root!();
    let umount = testkit::require_tool!("umount");
    let mount = testkit::require_tool!("mount");
    let work = tempfile::tempdir().unwrap();
    let names = [
        "with space",
        "with\ttab",
        "with\nnewline",
        "back\\slash",
        "all \t\n\\ of\\040them",
    ];
    let mut held = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let dir = work.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let source = format!("src {i}\t{name}");
        let status = Command::new(&mount)
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0700"])
            .arg(&source)
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs on {dir:?}");
        held.push(Mounted {
            umount: umount.clone(),
            dir: dir.clone(),
        });
        let found: Vec<_> = mountinfo::read_self()
            .unwrap()
            .into_iter()
            .filter(|m| m.mount_point == dir)
            .collect();
        assert_eq!(found.len(), 1, "{dir:?} appears once, unescaped");
        let m = &found[0];
        assert_eq!(m.fs_type, "tmpfs");
        assert_eq!(m.source, OsStr::new(&source));
        assert_eq!(m.root, Path::new("/"));
        assert_eq!(m.super_options.get("size"), Some(OsStr::new("64k")));
        assert_eq!(m.device, DeviceNumber::from_dev(std::fs::metadata(&dir).unwrap().dev()));
    }
    drop(held);
    let after = mountinfo::read_self().unwrap();
    assert!(
        after.iter().all(|m| !m.mount_point.starts_with(work.path())),
        "everything was unmounted"
    );
}
