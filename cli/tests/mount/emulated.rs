//! Unprivileged tier: the `emulated` backend (no mounts) with each profile: the rootfs against `umoci unpack`,
//! writes per profile, a flipped byte, and the audit of the emulated mount table with an overmount added, a
//! replayed lowerdir and overlay (with and without unique mount ids), a corrupted device, and an old record.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use veritylab::audit::{self, AuditFinding};
use veritylab::mount::MountId;
use veritylab::mount::emulated::{self, Rootfs, Table, TableEntry};
use veritylab::mount::{self, Record, Trust};
use veritylab::mountinfo::DeviceNumber;
use veritylab::profile::{Backend, Profile};
use veritylab::rootfs::Snapshot;
use veritylab::store::Store;
use veritylab::verity_fuse::identity::FileId;

use crate::oci::support::{pulled_umoci_image, run};

/// Paths the pinned standard-mountpoints layer adds or takes over.
const PINNED: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/tmp",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc",
];

struct Lab {
    work: tempfile::TempDir,
    store: Store,
    name: String,
    bundle: PathBuf,
}

/// The pulled umoci image and its tree as `umoci unpack` makes it; `None` (skipped, saying why) without umoci.
fn lab(test: &str) -> Option<Lab> {
    let image = pulled_umoci_image(test)?;
    let bundle = image.work.path().join("bundle");
    run(Command::new(&image.umoci)
        .args([
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:v1", image.layout.display()),
        ])
        .arg(&bundle));
    Some(Lab {
        work: image.work,
        store: image.store,
        name: image.name,
        bundle,
    })
}

macro_rules! lab_or_skip {
    () => {
        match lab(module_path!()) {
            Some(lab) => lab,
            None => return,
        }
    };
}

impl Lab {
    fn mount(&self, profile: Profile, name: &str) -> (Record, Rootfs) {
        let target = self.work.path().join(name);
        fs::create_dir_all(&target).unwrap();
        let trust = if profile == Profile::Hardened {
            super::signed(&self.store, &self.name)
        } else {
            Trust::Local(self.name.clone())
        };
        let plan = mount::prepare(&self.store, &trust, &target, profile, Backend::Emulated).unwrap();
        let record = mount::mount(&self.store, &plan, Path::new("/nonexistent")).unwrap();
        let rootfs = emulated::open_view(&record, &plan).unwrap();
        (record, rootfs)
    }
}

fn audit(record: &Record) -> audit::Report {
    audit::audit(record, &Table::new(record), &BTreeMap::new())
}

#[test]
fn every_profile_shows_the_tree_umoci_unpacks_and_passes_the_audit() {
    let lab = lab_or_skip!();
    let expected = Snapshot::of_umoci_bundle(&lab.bundle).unwrap();
    // `enforced` needs the node's keyring and signed root-hash signatures: the runner's enforced cells and
    // kernel_vm::enforced mount it.
    for profile in Profile::ALL.into_iter().filter(|p| !p.enforced()) {
        let (record, rootfs) = lab.mount(profile, profile.name());
        let mut seen = Snapshot::of_merged(&rootfs.merged).unwrap();
        let mut want = expected.clone();
        for snap in [&mut seen, &mut want] {
            snap.entries
                .retain(|e| e.path != "/" && !(profile == Profile::Hardened && PINNED.contains(&e.path.as_str())));
        }
        assert_eq!(want.diff(&seen), Vec::<String>::new(), "{profile}");
        let report = audit(&record);
        assert!(report.passed(), "{profile}: {:?}", report.findings);
        let gone = mount::umount(&lab.store, &record.target).unwrap();
        assert!(gone.leftovers.is_empty() && !record.state.exists());
    }
}

#[test]
fn hardened_refuses_writes_and_vanilla_shows_host_writes_to_its_upperdir() {
    let lab = lab_or_skip!();
    let (record, rootfs) = lab.mount(Profile::Hardened, "hardened");
    assert_eq!(rootfs.write("/etc/hello", b"x").unwrap_err().raw_os_error(), Some(30));
    assert_eq!(record.upperdir, None);
    assert!(audit(&record).passed());

    let (record, rootfs) = lab.mount(Profile::Vanilla, "vanilla");
    let upper = record.upperdir.clone().unwrap();
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::write(upper.join("etc/hello"), b"rewritten from the host\n").unwrap();
    assert_eq!(
        rootfs.read("/etc/hello", 1 << 20).unwrap(),
        b"rewritten from the host\n"
    );
    assert!(audit(&record).passed(), "the lowerdirs are untouched");
}

#[test]
fn a_flipped_layer_byte_fails_the_read_under_verity_but_not_under_erofs() {
    let lab = lab_or_skip!();
    let (record, _) = lab.mount(Profile::Verity, "probe");
    let layer = &record.plan().unwrap().layers[0];
    let mut bytes = fs::read(&layer.erofs).unwrap();
    bytes[(layer.erofs_size / 2) as usize] ^= 0x55;
    fs::write(&layer.erofs, &bytes).unwrap();

    let (_, rootfs) = lab.mount(Profile::Verity, "verity");
    let err = rootfs.read("/usr/bin/tool", 1 << 20).unwrap_err();
    assert!(err.is_verification_failure(), "{err}");
    let (_, rootfs) = lab.mount(Profile::Erofs, "erofs");
    assert_eq!(rootfs.read("/usr/bin/tool", 1 << 20).unwrap().len(), 160_000);
}

#[test]
fn an_overmount_added_to_the_emulated_table_is_reported_with_path_and_device() {
    let lab = lab_or_skip!();
    let (mut record, _) = lab.mount(Profile::Hardened, "rootfs");
    let path = record.target.join("etc");
    let device = DeviceNumber { major: 0, minor: 77 };
    emulated::add_mount(
        &mut record,
        TableEntry {
            id: 0,
            mount_point: path.clone(),
            fs_type: "tmpfs".to_owned(),
            source: "decoy".to_owned(),
            device,
            options: vec!["rw".to_owned()],
            super_options: vec!["rw".to_owned()],
            backing: None,
            unique: None,
            backing_file: None,
        },
    )
    .unwrap();
    let reread = mount::list(&lab.store).unwrap().pop().unwrap();
    let report = audit(&reread);
    assert_eq!(
        report.findings,
        vec![AuditFinding::Overmount {
            path,
            fs_type: "tmpfs".to_owned(),
            source: "decoy".to_owned(),
            device,
        }]
    );
}

#[test]
fn a_lowerdir_mount_claiming_the_right_source_on_another_device_is_untraced() {
    let lab = lab_or_skip!();
    let (mut record, _) = lab.mount(Profile::Verity, "rootfs");
    let table = record.emulated.as_mut().unwrap();
    let erofs = table.iter_mut().find(|e| e.fs_type == "erofs").unwrap();
    // Same path, type and source string as ours, but not the device the mount made.
    erofs.device = DeviceNumber { major: 7, minor: 99 };
    let layer = record
        .layers
        .iter()
        .find(|l| l.lowerdir == erofs.mount_point)
        .unwrap()
        .name
        .clone();
    emulated::save(&record).unwrap();
    let report = audit(&mount::list(&lab.store).unwrap().pop().unwrap());
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, AuditFinding::UntracedLayer { layer: l, .. } if *l == layer)),
        "{:?}",
        report.findings
    );
}

#[test]
fn a_target_already_mounted_is_refused_and_left_as_it_was() {
    let lab = lab_or_skip!();
    let (record, _) = lab.mount(Profile::Hardened, "rootfs");
    let plan = mount::prepare(
        &lab.store,
        &Trust::Local(lab.name.clone()),
        &record.target,
        Profile::Verity,
        Backend::Emulated,
    )
    .unwrap();
    let err = mount::mount(&lab.store, &plan, Path::new("/nonexistent")).unwrap_err();
    assert!(err.to_string().contains("already mounted"), "{err}");
    assert!(!plan.state.exists());
    assert_eq!(mount::list(&lab.store).unwrap(), vec![record]);
}

#[test]
fn mounting_hardened_without_a_key_is_a_usage_error() {
    let lab = lab_or_skip!();
    let target = lab.work.path().join("unsigned");
    fs::create_dir_all(&target).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args(["mount", &lab.name])
        .arg(&target)
        .args(["--profile", "hardened", "--backend", "emulated", "--store"])
        .arg(lab.store.root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--key"), "{stderr}");
    assert!(mount::list(&lab.store).unwrap().is_empty());
}

/// Replays, in `record`'s emulated table, what a root attacker does on the kernel backend: the base layer's
/// EROFS mount and the overlay unmounted and mounted again with the same mount ids, device numbers, options
/// and loop backing path, the loop now reading a file of the host's instead of the verified device.
fn replay(record: &mut Record) {
    let table = record.emulated.clone().unwrap();
    let lowerdir = record.layers[0].lowerdir.clone();
    let mut erofs = table.iter().find(|e| e.mount_point == lowerdir).unwrap().clone();
    erofs.backing_file = Some(FileId {
        major: 8,
        minor: 1,
        inode: 4242,
    });
    emulated::replace_mount(record, &lowerdir, erofs).unwrap();
    let overlay = table.iter().find(|e| e.mount_point == record.target).unwrap().clone();
    let target = record.target.clone();
    emulated::replace_mount(record, &target, overlay).unwrap();
}

#[test]
fn a_lowerdir_and_overlay_replayed_with_the_same_ids_are_replaced_mounts_on_another_file() {
    let lab = lab_or_skip!();
    let (mut record, _) = lab.mount(Profile::Hardened, "rootfs");
    replay(&mut record);
    let report = audit(&mount::list(&lab.store).unwrap().pop().unwrap());
    let kinds: Vec<&str> = report.findings.iter().map(AuditFinding::kind).collect();
    assert_eq!(
        kinds,
        vec![
            "mount-replaced",
            "mount-replaced",
            "untraced-layer",
            "count-mismatch",
            "unexpected-mount"
        ],
        "{:?}",
        report.findings
    );
    let untraced = report.findings[2].to_string();
    assert!(untraced.contains("inode 4242 on device 8:1"), "{untraced}");
}

#[test]
fn without_unique_mount_ids_a_replay_passes_the_mount_checks_but_not_the_loop_backing_check() {
    let lab = lab_or_skip!();
    let (mut record, _) = lab.mount(Profile::Hardened, "rootfs");
    // What the holder records on a kernel before 6.8: mountinfo ids only.
    let table = record.emulated.as_mut().unwrap();
    for entry in table.iter_mut() {
        entry.unique = None;
    }
    let id_at = |path: &Path| MountId::Reusable(table.iter().find(|e| e.mount_point == path).unwrap().id);
    record.rootfs_mount = Some(id_at(&record.target));
    for layer in &mut record.layers {
        layer.erofs_mount = Some(id_at(&layer.lowerdir));
        layer.device_mount = layer.device_dir.as_deref().map(id_at);
    }
    for mount in &mut record.baseline {
        mount.unique = None;
    }
    emulated::save(&record).unwrap();
    let report = audit(&record);
    assert!(report.passed(), "{:?}", report.findings);
    assert!(
        report.checked.iter().any(|c| c.contains("no unique mount ids")),
        "{:?}",
        report.checked
    );
    replay(&mut record);
    let report = audit(&mount::list(&lab.store).unwrap().pop().unwrap());
    let kinds: Vec<&str> = report.findings.iter().map(AuditFinding::kind).collect();
    assert_eq!(kinds, vec!["untraced-layer", "count-mismatch"], "{:?}", report.findings);
}

#[test]
fn a_verified_device_that_saw_corruption_is_reported_by_the_emulated_audit() {
    let lab = lab_or_skip!();
    let (record, _) = lab.mount(Profile::Hardened, "rootfs");
    let layer = record.layers[0].name.clone();
    let mut status = serde_json::json!({
        "status": "corrupted", "letter": "C", "blocks_verified": 3, "zero_blocks": 0, "unchecked_reads": 0,
        "corruptions": 1, "io_errors": 0, "first_corrupted": "data block 7", "first_corrupted_block": null,
        "halted": null, "size": 4096, "root_hash": record.layers[0].root_hash,
    });
    let report = serde_json::from_value(status.take()).unwrap();
    let table = Table::with_devices(&record, vec![(layer.clone(), report)]);
    let audited = audit::audit(&record, &table, &BTreeMap::new());
    assert!(
        matches!(audited.findings.as_slice(), [AuditFinding::DeviceCorrupted { layer: l, .. }] if *l == layer),
        "{:?}",
        audited.findings
    );
}

#[test]
fn a_record_written_before_mount_identities_is_refused_with_its_format_named() {
    let lab = lab_or_skip!();
    let (record, _) = lab.mount(Profile::Verity, "rootfs");
    let path = record.state.join(mount::record::RECORD_FILE);
    let mut old: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let fields = old.as_object_mut().unwrap();
    fields.remove("format");
    fields.remove("rootfs_mount");
    fields.insert("baseline".to_owned(), serde_json::json!([100, 101, 102]));
    fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
    let err = mount::list(&lab.store).unwrap_err().to_string();
    assert!(
        err.contains("record format 1") && err.contains(&path.display().to_string()),
        "{err}"
    );
    let err = mount::umount(&lab.store, &record.target).unwrap_err().to_string();
    assert!(err.contains("record format 1"), "{err}");
}
