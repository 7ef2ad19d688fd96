//! Privileged tier: `veritylab mount` on the kernel backend with each profile, on an image pulled from a real
//! registry; the rootfs against `umoci unpack`, writes per profile, the audit, overmounts, and teardown after
//! `umount` and after a killed holder. The fuse backend's tests run as any user, in `super::fuse`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use veritylab::audit::{self, AuditFinding, Namespace};
use veritylab::mount::{self, Plan, Record, Trust};
use veritylab::profile::{Backend, Profile};
use veritylab::store::Store;

use crate::oci::kernel::{Tree, tree};
use crate::oci::support::{Seeded, plain_http, pull, run, seeded_registry};

/// The entries the pinned standard-mountpoints layer adds on top of the image.
const PINNED: &[&str] = &[
    "dev",
    "proc",
    "sys",
    "tmp",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
];

pub(super) struct Lab {
    seeded: Seeded,
    pub(super) store: Store,
    name: String,
    unpacked: PathBuf,
}

pub(super) fn lab(test: &str) -> Option<Lab> {
    if !testkit::is_root() {
        testkit::skip(test, testkit::NEEDS_ROOT);
        return None;
    }
    let Some(umoci) = testkit::find_tool("umoci") else {
        testkit::skip(test, "`umoci` is not installed (see .ci/run)");
        return None;
    };
    let seeded = seeded_registry(test, "lab/app:v1")?;
    let store = Store::open(&seeded.work.path().join("store")).unwrap();
    let name = pull(&store, &format!("{}/lab/app:v1", seeded.registry.host()), &plain_http())
        .unwrap()
        .name;
    let unpacked = seeded.work.path().join("unpacked");
    run(Command::new(umoci)
        .args(["unpack", "--image", &format!("{}:v1", seeded.layout.display())])
        .arg(&unpacked));
    Some(Lab {
        seeded,
        store,
        name,
        unpacked: unpacked.join("rootfs"),
    })
}

impl Lab {
    pub(super) fn target(&self, name: &str) -> PathBuf {
        let target = self.seeded.work.path().join(name);
        fs::create_dir_all(&target).unwrap();
        target
    }

    /// The image signed with a new key and verified: root hashes from a signature.
    fn signed(&self) -> Trust {
        super::signed(&self.store, &self.name)
    }

    pub(super) fn local(&self) -> Trust {
        Trust::Local(self.name.clone())
    }

    pub(super) fn plan(&self, profile: Profile, target: &Path, trust: &Trust) -> Plan {
        self.plan_on(Backend::Kernel, profile, target, trust)
    }

    fn plan_on(&self, backend: Backend, profile: Profile, target: &Path, trust: &Trust) -> Plan {
        mount::prepare(&self.store, trust, target, profile, backend).unwrap()
    }

    pub(super) fn mount(&self, profile: Profile, target: &Path) -> Record {
        self.mount_on(Backend::Kernel, profile, target)
    }

    pub(super) fn mount_on(&self, backend: Backend, profile: Profile, target: &Path) -> Record {
        let trust = if profile == Profile::Hardened {
            self.signed()
        } else {
            self.local()
        };
        let plan = self.plan_on(backend, profile, target, &trust);
        mount::mount(&self.store, &plan, Path::new(env!("CARGO_BIN_EXE_veritylab"))).unwrap()
    }

    pub(super) fn umount_clean(&self, record: &Record) {
        let report = mount::umount(&self.store, &record.target).unwrap();
        assert_eq!(report.leftovers, Vec::<String>::new(), "nothing is left after umount");
        assert!(!record.state.exists(), "the state directory is gone");
    }
}

/// A test that fails half-way still takes its mounts down: the holders, their namespaces and any FUSE
/// rootfs would otherwise outlive it.
impl Drop for Lab {
    fn drop(&mut self) {
        for record in mount::list(&self.store).unwrap_or_default() {
            let _ = mount::umount(&self.store, &record.target);
        }
    }
}

/// Runs `script` with `sh -c` inside the mount's namespace; returns (success, stdout + stderr).
pub(super) fn inside(record: &Record, script: &str) -> (bool, String) {
    let out = Command::new("nsenter")
        .arg("-t")
        .arg(record.holder.unwrap().to_string())
        .args(["-m", "sh", "-c", script])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The tree at `root` without the pinned layer's entries (hardened), after checking that they are there and
/// that the remaining paths are the image's.
fn image_tree(root: &Path, profile: Profile, expected: &Tree) -> Tree {
    let mut seen = tree(root);
    if profile == Profile::Hardened {
        for entry in PINNED {
            assert!(
                seen.remove(Path::new(entry)).is_some(),
                "{profile}: pinned {entry} present"
            );
        }
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{profile}"
    );
    seen
}

/// Kills the mount's holder with SIGKILL and waits (at most 10 s) until it is gone.
fn kill_holder(record: &Record) {
    run(Command::new("kill").args(["-9", &record.holder.unwrap().to_string()]));
    for _ in 0..200 {
        if !record.holder_alive() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the killed holder {:?} is still there after 10 s", record.holder);
}

pub(super) fn audit(record: &Record) -> audit::Report {
    audit::audit(record, &Namespace::new(record), &BTreeMap::new())
}

#[test]
fn every_profile_mounts_the_pulled_image_as_umoci_unpacks_it_and_passes_the_audit() {
    let Some(lab) = lab("every_profile_mounts_the_pulled_image_as_umoci_unpacks_it_and_passes_the_audit") else {
        return;
    };
    let expected = tree(&lab.unpacked);
    // `enforced` needs the node's keyring and signed root-hash signatures: the runner's enforced cells and
    // kernel_vm::enforced mount it.
    for profile in Profile::ALL.into_iter().filter(|p| !p.enforced()) {
        let target = lab.target(profile.name());
        let record = lab.mount(profile, &target);
        let seen = image_tree(&record.in_namespace(&target), profile, &expected);
        for (path, want) in &expected {
            let got = &seen[path];
            if path.as_os_str().is_empty() || (profile == Profile::Hardened && path == Path::new("etc")) {
                continue; // the overlay root and directories the pinned layer also holds take the top layer's metadata
            }
            assert_eq!(got, want, "{profile}: {}", path.display());
        }
        let report = audit(&record);
        assert!(report.passed(), "{profile}: {:?}", report.findings);
        lab.umount_clean(&record);
    }
}

#[test]
fn hardened_refuses_writes_and_has_no_upperdir_while_vanilla_shows_host_writes_to_its_upperdir() {
    let Some(lab) = lab("hardened_refuses_writes_and_has_no_upperdir_while_vanilla_shows_host_writes_to_its_upperdir")
    else {
        return;
    };
    let target = lab.target("hardened");
    let record = lab.mount(Profile::Hardened, &target);
    assert_eq!(record.upperdir, None);
    let (ok, out) = inside(&record, &format!("echo x > {}/etc/hello", target.display()));
    assert!(!ok && out.contains("Read-only file system"), "{out}");
    let (ok, out) = inside(&record, &format!("grep ' {} ' /proc/self/mountinfo", target.display()));
    assert!(ok && !out.contains("upperdir") && out.contains(" ro,"), "{out}");
    assert!(audit(&record).passed());
    lab.umount_clean(&record);

    let target = lab.target("vanilla");
    let record = lab.mount(Profile::Vanilla, &target);
    let upper = record.upperdir.clone().unwrap();
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::write(upper.join("etc/hello"), b"rewritten from the host\n").unwrap();
    let (ok, out) = inside(&record, &format!("cat {}/etc/hello", target.display()));
    assert!(ok && out == "rewritten from the host\n", "{out}");
    let report = audit(&record);
    assert!(
        report.passed(),
        "the lowerdirs are untouched, so the audit passes: {:?}",
        report.findings
    );
    lab.umount_clean(&record);
}

#[test]
fn an_overmount_and_an_extra_mount_in_the_namespace_are_reported_with_path_and_device() {
    let Some(lab) = lab("an_overmount_and_an_extra_mount_in_the_namespace_are_reported_with_path_and_device") else {
        return;
    };
    let target = lab.target("rootfs");
    let record = lab.mount(Profile::Hardened, &target);
    let (ok, out) = inside(
        &record,
        &format!(
            "mount -t tmpfs decoy {t}/etc && mount --bind /tmp {t}/usr && mount -t tmpfs extra /mnt",
            t = target.display()
        ),
    );
    assert!(ok, "{out}");
    let report = audit(&record);
    let kinds: Vec<(&str, String)> = report
        .findings
        .iter()
        .map(|f| match f {
            AuditFinding::Overmount { path, .. } | AuditFinding::UnexpectedMount { path, .. } => {
                (f.kind(), path.display().to_string())
            }
            other => (other.kind(), String::new()),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("overmount", format!("{}/etc", target.display())),
            ("overmount", format!("{}/usr", target.display())),
            ("unexpected-mount", "/mnt".to_owned()),
        ]
    );
    assert!(
        report.findings.iter().all(|f| f.to_string().contains("device")),
        "{:?}",
        report.findings
    );
    lab.umount_clean(&record);
}

#[test]
fn a_flipped_layer_byte_fails_reads_under_verity_and_is_reported_but_not_under_erofs() {
    let Some(lab) = lab("a_flipped_layer_byte_fails_reads_under_verity_and_is_reported_but_not_under_erofs") else {
        return;
    };
    let probe = lab.plan(Profile::Verity, &lab.target("probe"), &lab.local());
    // The first layer holds usr/bin/tool (160 000 bytes): flip a byte in the middle of the image's data.
    let layer = &probe.layers[0];
    let mut bytes = fs::read(&layer.erofs).unwrap();
    let at = (layer.erofs_size / 2) as usize;
    bytes[at] ^= 0x55;
    fs::write(&layer.erofs, &bytes).unwrap();

    let target = lab.target("verity");
    let record = lab.mount(Profile::Verity, &target);
    let (ok, out) = inside(&record, &format!("cat {}/usr/bin/tool > /dev/null", target.display()));
    assert!(!ok && out.contains("Input/output error"), "{out}");
    let report = audit(&record);
    assert!(
        report.findings.iter().any(|f| f.kind() == "device-corrupted"),
        "{:?}",
        report.findings
    );
    lab.umount_clean(&record);

    let target = lab.target("erofs");
    let record = lab.mount(Profile::Erofs, &target);
    let (ok, out) = inside(&record, &format!("cat {}/usr/bin/tool > /dev/null", target.display()));
    assert!(ok, "without verity the changed byte is read silently: {out}");
    assert!(audit(&record).passed());
    lab.umount_clean(&record);
}

#[test]
fn a_killed_holder_leaves_nothing_and_umount_clears_its_record() {
    let Some(lab) = lab("a_killed_holder_leaves_nothing_and_umount_clears_its_record") else {
        return;
    };
    let target = lab.target("rootfs");
    let record = lab.mount(Profile::Verity, &target);
    kill_holder(&record);
    let report = audit(&record);
    assert_eq!(
        report.findings,
        vec![AuditFinding::NamespaceGone { holder: record.holder }]
    );
    assert_eq!(
        mount::list(&lab.store).unwrap().len(),
        1,
        "the record stays until umount"
    );
    lab.umount_clean(&record);
    assert!(mount::list(&lab.store).unwrap().is_empty());
}

#[test]
fn a_mount_that_fails_half_way_leaves_nothing_behind() {
    let Some(lab) = lab("a_mount_that_fails_half_way_leaves_nothing_behind") else {
        return;
    };
    let target = lab.target("rootfs");
    let mut plan = lab.plan(Profile::Verity, &target, &lab.local());
    // The second layer's root hash is wrong: its device opens, the EROFS superblock read fails.
    plan.layers[1].root_hash = "00".repeat(32).parse().ok();
    let err = mount::mount(&lab.store, &plan, Path::new(env!("CARGO_BIN_EXE_veritylab"))).unwrap_err();
    assert!(err.to_string().contains("mounting"), "{err}");
    assert!(!plan.state.exists(), "state removed");
    assert!(mount::list(&lab.store).unwrap().is_empty());
    let loops = fs::read_dir("/sys/block")
        .unwrap()
        .filter_map(|e| fs::read_to_string(e.unwrap().path().join("loop/backing_file")).ok())
        .filter(|b| b.starts_with(&plan.state.display().to_string()))
        .count();
    assert_eq!(loops, 0, "no loop device left");
}

#[test]
fn cleanup_unmounts_what_a_dead_holder_left_in_a_namespace_another_process_still_holds() {
    let Some(lab) = lab("cleanup_unmounts_what_a_dead_holder_left_in_a_namespace_another_process_still_holds") else {
        return;
    };
    let target = lab.target("rootfs");
    let record = lab.mount(Profile::Verity, &target);
    let mut squatter = Command::new("nsenter")
        .arg("-t")
        .arg(record.holder.unwrap().to_string())
        .args(["-m", "sleep", "60"])
        .spawn()
        .unwrap();
    // Wait until nsenter has entered the namespace and become `sleep`.
    for _ in 0..200 {
        let ns = fs::read_link(format!("/proc/{}/ns/mnt", squatter.id())).ok();
        let comm = fs::read_to_string(format!("/proc/{}/comm", squatter.id())).unwrap_or_default();
        if ns.map(|l| l.to_string_lossy().into_owned()) == record.namespace && comm.trim_end() == "sleep" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    kill_holder(&record);
    let held = veritylab::mountinfo::read(squatter.id()).unwrap();
    assert!(
        held.iter().any(|m| m.mount_point == target),
        "the squatter keeps the rootfs mounted"
    );
    let cleaned = veritylab::mount::cleanup(&lab.store).unwrap();
    let _ = squatter.kill();
    let _ = squatter.wait();
    assert_eq!(cleaned.len(), 1);
    let c = &cleaned[0];
    // fusermount3's auto-unmount watchers may still be in the namespace too, on their way out.
    assert!(
        c.holders.contains(&(squatter.id(), "sleep".to_owned())),
        "{:?}",
        c.holders
    );
    // The overlay and each layer's EROFS mount (the verified devices' FUSE mounts went with their server).
    assert!(c.unmounted.len() >= 3, "{:?}", c.unmounted);
    assert_eq!(c.leftovers, Vec::<String>::new());
    assert!(mount::list(&lab.store).unwrap().is_empty());
}

#[test]
fn the_emulated_backend_shows_the_registry_image_as_umoci_unpacks_it() {
    let Some(lab) = lab("the_emulated_backend_shows_the_registry_image_as_umoci_unpacks_it") else {
        return;
    };
    let expected = veritylab::rootfs::Snapshot::of_umoci_bundle(lab.unpacked.parent().unwrap()).unwrap();
    // `enforced` needs the node's keyring and signed root-hash signatures: the runner's enforced cells and
    // kernel_vm::enforced mount it.
    for profile in Profile::ALL.into_iter().filter(|p| !p.enforced()) {
        let target = lab.target(&format!("emulated-{profile}"));
        let record = lab.mount_on(Backend::Emulated, profile, &target);
        let rootfs = veritylab::mount::emulated::open_view(&record, &record.plan().unwrap()).unwrap();
        let mut seen = veritylab::rootfs::Snapshot::of_merged(&rootfs.merged).unwrap();
        let mut want = expected.clone();
        for snap in [&mut seen, &mut want] {
            snap.entries.retain(|e| {
                let pinned = PINNED.contains(&e.path.trim_start_matches('/')) || e.path == "/etc";
                e.path != "/" && !(profile == Profile::Hardened && pinned)
            });
        }
        assert_eq!(want.diff(&seen), Vec::<String>::new(), "{profile}");
        assert!(
            audit::audit(
                &record,
                &veritylab::mount::emulated::Table::new(&record),
                &BTreeMap::new()
            )
            .passed()
        );
        lab.umount_clean(&record);
    }
}
