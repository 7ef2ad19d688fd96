//! Privileged tier: the mount audit against a root attacker who replays identities (mount ids, loop minors,
//! device numbers, paths) and against a verified device that saw corruption before the byte was restored, on
//! the kernel and fuse backends.

use std::fs;
use std::path::Path;
use std::process::Command;

use veritylab::mount::Record;
use veritylab::mountinfo::{self, DeviceNumber};
use veritylab::profile::{Backend, Profile};

use super::kernel::{Lab, audit, inside, lab};
use crate::oci::support::run;

/// The kernel's name of block device `device` (`loop3`), from sysfs.
fn block_name(device: DeviceNumber) -> String {
    let link = fs::read_link(format!("/sys/dev/block/{device}")).unwrap();
    link.file_name().unwrap().to_string_lossy().into_owned()
}

/// Waits (at most 10 s) until `check` holds.
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{what}: not after 10 s");
}

/// The (mount id, device) of what is mounted at `path` in the holder's namespace, as mountinfo shows it.
fn mount_at(record: &Record, path: &Path) -> (u64, DeviceNumber) {
    let mounts = mountinfo::read(record.holder.unwrap()).unwrap();
    let m = mounts.iter().rev().find(|m| m.mount_point == path).unwrap();
    (m.mount_id, m.device)
}

/// An EROFS image whose `usr/bin/tool` is the attacker's, built with mkfs.erofs.
fn attacker_image(lab: &Lab, dest: &Path) {
    let tree = lab.target("attacker-tree");
    fs::create_dir_all(tree.join("usr/bin")).unwrap();
    fs::write(tree.join("usr/bin/tool"), b"trojan\n").unwrap();
    run(Command::new("mkfs.erofs").arg(dest).arg(&tree));
}

#[test]
fn a_lowerdir_and_overlay_remounted_from_a_host_file_on_the_same_loop_are_not_passed() {
    let Some(lab) = lab("a_lowerdir_and_overlay_remounted_from_a_host_file_on_the_same_loop_are_not_passed") else {
        return;
    };
    testkit::require_tool!("mkfs.erofs");
    let target = lab.target("rootfs");
    let record = lab.mount(Profile::Hardened, &target);
    assert!(audit(&record).passed());
    let layer = &record.layers[0];
    let lower = &layer.lowerdir;
    let device_dir = layer.device_dir.clone().expect("a verified device served over FUSE");
    let loop_name = block_name(layer.erofs_dev.unwrap());
    let before = (mount_at(&record, &target), mount_at(&record, lower));
    let (_, options) = inside(&record, &format!("grep ' {} ' /proc/self/mountinfo", target.display()));
    let lowerdirs = options
        .split([',', ' '])
        .find_map(|o| o.strip_prefix("lowerdir="))
        .unwrap()
        .to_owned();

    // Inside the namespace: the overlay and the base layer's EROFS go; autoclear frees the loop.
    let (ok, out) = inside(
        &record,
        &format!("umount {} && umount {}", target.display(), lower.display()),
    );
    assert!(ok, "{out}");
    let backing = format!("/sys/block/{loop_name}/loop/backing_file");
    wait_for("the loop clears itself", || !Path::new(&backing).exists());
    // In the host's namespace the device directory is a plain directory: a file takes the device's path, and
    // the same loop device is attached to it.
    let host_device = device_dir.join(veritylab::verity_fuse::fuse::DEVICE_FILE);
    attacker_image(&lab, &host_device);
    run(Command::new("losetup")
        .args(["-r", &format!("/dev/{loop_name}")])
        .arg(&host_device));
    let (ok, out) = inside(
        &record,
        &format!(
            "mount -t erofs -o ro /dev/{loop_name} {} && mount -t overlay -o ro,lowerdir={lowerdirs} overlay {t} && \
             cat {t}/usr/bin/tool",
            lower.display(),
            t = target.display()
        ),
    );
    let after = (mount_at(&record, &target), mount_at(&record, lower));
    eprintln!("overlay and EROFS (mount id, device) before {before:?}, after the replay {after:?}");
    eprintln!(
        "loop backing file: {}",
        fs::read_to_string(&backing).unwrap_or_default().trim_end()
    );
    assert!(
        ok && out == "trojan\n",
        "the container reads the attacker's file: {out}"
    );

    let report = audit(&record);
    let kinds: Vec<&str> = report.findings.iter().map(|f| f.kind()).collect();
    let (_, out) = inside(
        &record,
        &format!("umount {} ; umount {}", target.display(), lower.display()),
    );
    let _ = Command::new("losetup")
        .args(["-d", &format!("/dev/{loop_name}")])
        .status();
    let _ = fs::remove_file(&host_device);
    assert!(
        !report.passed(),
        "the replayed chain passed the audit: {:?}",
        report.checked
    );
    assert!(
        kinds.contains(&"mount-replaced") && kinds.contains(&"untraced-layer"),
        "{:?} ({out})",
        report.findings
    );
    lab.umount_clean(&record);
}

#[test]
fn a_fuse_mount_whose_device_saw_corruption_fails_the_audit_after_the_byte_is_restored() {
    let test = "a_fuse_mount_whose_device_saw_corruption_fails_the_audit_after_the_byte_is_restored";
    let Some(lab) = lab(test) else {
        return;
    };
    if !testkit::fuse_available(test) {
        return;
    }
    let target = lab.target("rootfs");
    let record = lab.mount_on(Backend::Fuse, Profile::Hardened, &target);
    assert!(audit(&record).passed());
    let probe = lab.plan(Profile::Verity, &lab.target("probe"), &lab.local());
    // The first layer holds usr/bin/tool (160 000 bytes): flip a byte in the middle of the image's data.
    let layer = &probe.layers[0];
    let mut bytes = fs::read(&layer.erofs).unwrap();
    let at = (layer.erofs_size / 2) as usize;
    bytes[at] ^= 0x55;
    fs::write(&layer.erofs, &bytes).unwrap();
    fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let read = fs::read(target.join("usr/bin/tool")).unwrap_err();
    assert_eq!(read.raw_os_error(), Some(5), "{read}");
    bytes[at] ^= 0x55;
    fs::write(&layer.erofs, &bytes).unwrap();

    let report = audit(&record);
    assert!(
        report.findings.iter().any(|f| f.kind() == "device-corrupted"),
        "restoring the byte hides the corruption: {:?}",
        report.findings
    );
    lab.umount_clean(&record);
}

#[test]
fn a_mount_under_a_fuse_rootfs_and_one_over_its_device_are_reported() {
    let test = "a_mount_under_a_fuse_rootfs_and_one_over_its_device_are_reported";
    let Some(lab) = lab(test) else {
        return;
    };
    if !testkit::fuse_available(test) {
        return;
    }
    let target = lab.target("rootfs");
    let record = lab.mount_on(Backend::Fuse, Profile::Hardened, &target);
    let device_dir = record.layers[0].device_dir.clone().unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "decoy"])
        .arg(target.join("etc")));
    run(Command::new("mount").args(["-t", "tmpfs", "decoy"]).arg(&device_dir));
    let report = audit(&record);
    run(Command::new("umount").arg(target.join("etc")));
    run(Command::new("umount").arg(&device_dir));
    let kinds: Vec<&str> = report.findings.iter().map(|f| f.kind()).collect();
    assert!(kinds.contains(&"overmount"), "{:?}", report.findings);
    assert!(kinds.contains(&"unexpected-mount"), "{:?}", report.findings);
    lab.umount_clean(&record);
}
