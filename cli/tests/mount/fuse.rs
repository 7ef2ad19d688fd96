//! The fuse backend as whoever runs the tests: a normal user in the unprivileged tier (no root, no loop
//! devices, no `allow_other`), root in the main one. The registry image mounted with each profile reads as
//! `umoci unpack` shows it and refuses writes, a flipped layer byte fails verity and hardened reads with EIO
//! and the audit reports `device-corrupted`, `mount` + `check` + `umount` work from the command line, and
//! nothing is left behind, after a killed server too: no FUSE mount, no server process.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use veritylab::audit::{self, Namespace};
use veritylab::mount::{self, Record, Trust};
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

struct Lab {
    seeded: Seeded,
    store: Store,
    name: String,
    /// The rootfs `umoci unpack` made of the same image, owners as the layers record them.
    expected: Tree,
}

fn lab(test: &str) -> Option<Lab> {
    if !testkit::fuse_available(test) {
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
    let mut unpack = Command::new(umoci);
    unpack.arg("unpack");
    if !testkit::is_root() {
        // A normal user cannot give files away: umoci gives them to this user, and the tree maps them back.
        unpack.arg("--rootless");
    }
    run(unpack
        .args(["--image", &format!("{}:v1", seeded.layout.display())])
        .arg(&unpacked));
    let expected = as_recorded(tree(&unpacked.join("rootfs")));
    Some(Lab {
        seeded,
        store,
        name,
        expected,
    })
}

/// `tree` with this user's ids as 0, for a rootless unpack (the layers record root's).
fn as_recorded(mut tree: Tree) -> Tree {
    if !testkit::is_root() {
        let (uid, gid) = (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
        for entry in tree.values_mut() {
            if entry.2 == uid {
                entry.2 = 0;
            }
            if entry.3 == gid {
                entry.3 = 0;
            }
        }
    }
    tree
}

impl Lab {
    fn target(&self, name: &str) -> PathBuf {
        let target = self.seeded.work.path().join(name);
        fs::create_dir_all(&target).unwrap();
        target
    }

    /// Root hashes from a real signature over the stored image, verified.
    fn signed(&self) -> Trust {
        super::signed(&self.store, &self.name)
    }

    fn mount(&self, profile: Profile, target: &Path) -> Record {
        let trust = if profile == Profile::Hardened {
            self.signed()
        } else {
            Trust::Local(self.name.clone())
        };
        let plan = mount::prepare(&self.store, &trust, target, profile, Backend::Fuse).unwrap();
        mount::mount(&self.store, &plan, Path::new(env!("CARGO_BIN_EXE_veritylab"))).unwrap()
    }

    /// Unmounts `record` and shows nothing of it is left: no leftovers reported, no state, no FUSE mount
    /// under the test's directory, no process of the mount.
    fn umount_clean(&self, record: &Record) {
        let report = mount::umount(&self.store, &record.target).unwrap();
        assert_eq!(report.leftovers, Vec::<String>::new(), "nothing is left after umount");
        assert!(!record.state.exists(), "the state directory is gone");
        assert_nothing_left(self.seeded.work.path(), record);
    }
}

/// A test that fails half-way still takes its FUSE mounts and servers down.
impl Drop for Lab {
    fn drop(&mut self) {
        for record in mount::list(&self.store).unwrap_or_default() {
            let _ = mount::umount(&self.store, &record.target);
        }
    }
}

/// No mount under `dir` in this namespace, and no live process that is `record`'s holder or names its state.
fn assert_nothing_left(dir: &Path, record: &Record) {
    let mounts: Vec<PathBuf> = veritylab::mountinfo::read_self()
        .unwrap()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect();
    assert_eq!(
        mounts,
        Vec::<PathBuf>::new(),
        "no mount is left under {}",
        dir.display()
    );
    assert!(!record.holder_alive(), "the FUSE server {:?} is gone", record.holder);
    let state = record.state.to_string_lossy().into_owned();
    let naming: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|e| {
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            text.contains(&state)
                .then(|| format!("{}: {text}", e.file_name().to_string_lossy()))
        })
        .collect();
    assert_eq!(naming, Vec::<String>::new(), "no process names the mount's state");
}

/// The tree at `root` without the pinned layer's entries (hardened), after checking they are there; the root
/// and, for hardened, `etc` (which the pinned layer also holds) take the top layer's metadata, so only
/// their presence is compared.
fn image_tree(root: &Path, profile: Profile) -> Tree {
    let mut seen = tree(root);
    if profile == Profile::Hardened {
        for entry in PINNED {
            assert!(
                seen.remove(Path::new(entry)).is_some(),
                "{profile}: pinned {entry} present"
            );
        }
        seen.remove(Path::new("etc"));
    }
    seen.remove(Path::new(""));
    seen
}

fn audit(record: &Record) -> audit::Report {
    audit::audit(record, &Namespace::new(record), &BTreeMap::new())
}

#[test]
fn every_profile_on_the_fuse_backend_reads_the_registry_image_as_umoci_unpacks_it_read_only() {
    let test = "every_profile_on_the_fuse_backend_reads_the_registry_image_as_umoci_unpacks_it_read_only";
    let Some(lab) = lab(test) else {
        return;
    };
    // `enforced` needs the node's keyring and signed root-hash signatures: the runner's enforced cells and
    // kernel_vm::enforced mount it.
    for profile in Profile::ALL.into_iter().filter(|p| !p.enforced()) {
        let target = lab.target(profile.name());
        let record = lab.mount(profile, &target);
        assert_eq!(record.backend, Backend::Fuse);
        let mut expected = lab.expected.clone();
        expected.remove(Path::new(""));
        if profile == Profile::Hardened {
            expected.remove(Path::new("etc"));
        }
        assert_eq!(image_tree(&target, profile), expected, "{profile}");
        let write = fs::write(target.join("etc/hello"), b"x").unwrap_err();
        assert_eq!(
            write.raw_os_error(),
            Some(rustix::io::Errno::ROFS.raw_os_error()),
            "{profile}: {write}"
        );
        let report = audit(&record);
        assert!(report.passed(), "{profile}: {:?}", report.findings);
        lab.umount_clean(&record);
    }
}

#[test]
fn umount_after_a_killed_fuse_server_takes_its_rootfs_down_and_leaves_nothing() {
    let test = "umount_after_a_killed_fuse_server_takes_its_rootfs_down_and_leaves_nothing";
    let Some(lab) = lab(test) else {
        return;
    };
    let target = lab.target("rootfs");
    let record = lab.mount(Profile::Verity, &target);
    kill_server(&record);
    lab.umount_clean(&record);
}

/// Kills the mount's FUSE server with SIGKILL and waits (at most 10 s) until it is gone.
fn kill_server(record: &Record) {
    let holder = rustix::process::Pid::from_raw(i32::try_from(record.holder.unwrap()).unwrap()).unwrap();
    rustix::process::kill_process(holder, rustix::process::Signal::KILL).unwrap();
    for _ in 0..200 {
        if !record.holder_alive() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the killed server {:?} is still there after 10 s", record.holder);
}

#[test]
fn a_flipped_layer_byte_fails_fuse_reads_with_eio_and_the_audit_reports_device_corrupted() {
    let test = "a_flipped_layer_byte_fails_fuse_reads_with_eio_and_the_audit_reports_device_corrupted";
    let Some(lab) = lab(test) else {
        return;
    };
    let probe = mount::prepare(
        &lab.store,
        &Trust::Local(lab.name.clone()),
        &lab.target("probe"),
        Profile::Verity,
        Backend::Fuse,
    )
    .unwrap();
    // The first layer holds usr/bin/tool (160 000 bytes): flip a byte in the middle of the image's data.
    let layer = &probe.layers[0];
    let mut bytes = fs::read(&layer.erofs).unwrap();
    let at = usize::try_from(layer.erofs_size / 2).unwrap();
    bytes[at] ^= 0x55;
    fs::write(&layer.erofs, &bytes).unwrap();

    for profile in [Profile::Verity, Profile::Hardened] {
        let target = lab.target(profile.name());
        let record = lab.mount(profile, &target);
        let read = fs::read(target.join("usr/bin/tool")).unwrap_err();
        assert_eq!(
            read.raw_os_error(),
            Some(rustix::io::Errno::IO.raw_os_error()),
            "{profile}: {read}"
        );
        let report = audit(&record);
        let kinds: Vec<&str> = report.findings.iter().map(|f| f.kind()).collect();
        assert_eq!(kinds, ["device-corrupted"], "{profile}: {:?}", report.findings);
        lab.umount_clean(&record);
    }
}

/// Runs the `veritylab` binary with `args` (standard input closed) and collects its output.
pub(crate) fn veritylab(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// The standard output of a command that must have succeeded (else a panic showing both streams).
pub(crate) fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{:?}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn mount_hardened_check_and_umount_on_the_fuse_backend_from_the_command_line_leave_nothing() {
    let test = "mount_hardened_check_and_umount_on_the_fuse_backend_from_the_command_line_leave_nothing";
    let Some(lab) = lab(test) else {
        return;
    };
    let work = lab.seeded.work.path();
    let store = work.join("store");
    let key = work.join("lab");
    let reference = format!("{}/lab/app:v1", lab.seeded.registry.host());
    let os = |s: &str| std::ffi::OsString::from(s);
    let with_store = |args: &[&str]| {
        let mut all: Vec<std::ffi::OsString> = args.iter().map(|a| os(a)).collect();
        all.push(os("--store"));
        all.push(store.clone().into_os_string());
        veritylab(&all.iter().map(|a| a.as_os_str()).collect::<Vec<_>>())
    };
    ok(&veritylab(&[os("keygen").as_os_str(), key.as_os_str()]));
    let private = key.with_extension("key").display().to_string();
    let public = key.with_extension("pub").display().to_string();
    ok(&with_store(&["sign", &reference, "--key", &private]));
    let target = lab.target("rootfs");
    let target_arg = target.display().to_string();
    let mounted = ok(&with_store(&[
        "mount",
        &reference,
        &target_arg,
        "--profile",
        "hardened",
        "--backend",
        "fuse",
        "--key",
        &public,
    ]));
    assert!(mounted.contains("profile hardened, backend fuse"), "{mounted}");
    let record = mount::list(&lab.store).unwrap().pop().unwrap();
    assert!(fs::read(target.join("usr/bin/tool")).is_ok());
    let checked = ok(&with_store(&["check", &target_arg]));
    assert!(!checked.is_empty());
    let ps = ok(&with_store(&["ps"]));
    assert!(ps.contains(&target_arg) && ps.contains("mounted"), "{ps}");
    ok(&with_store(&["umount", &target_arg]));
    assert_eq!(ok(&with_store(&["ps"])), "");
    assert_nothing_left(work, &record);
}

#[test]
fn mount_without_a_backend_takes_the_best_one_here_and_says_why() {
    let test = "mount_without_a_backend_takes_the_best_one_here_and_says_why";
    let Some(lab) = lab(test) else {
        return;
    };
    let target = lab.target("rootfs");
    let store = lab.seeded.work.path().join("store");
    let out = Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .arg("mount")
        .arg(&lab.name)
        .arg(&target)
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (backend, reason) = Backend::auto();
    assert!(stderr.contains(&format!("backend {reason}")), "{stderr}");
    assert!(stdout.contains(&format!("backend {backend}")), "{stdout}");
    let expected = if testkit::is_root() {
        Backend::Kernel
    } else {
        Backend::Fuse
    };
    assert_eq!(backend, expected, "{reason}");
    let record = mount::list(&lab.store).unwrap().pop().unwrap();
    lab.umount_clean(&record);
}

/// The fuse backend mounts in the caller's namespace, which every other process shares: cleanup after a killed
/// server takes the FUSE mounts down and names no process as holding a namespace.
#[test]
fn cleanup_after_a_killed_fuse_server_leaves_nothing_and_blames_no_process() {
    let test = "cleanup_after_a_killed_fuse_server_leaves_nothing_and_blames_no_process";
    let Some(lab) = lab(test) else {
        return;
    };
    let target = lab.target("rootfs");
    let record = lab.mount(Profile::Hardened, &target);
    kill_server(&record);
    let cleaned = mount::cleanup(&lab.store).unwrap();
    assert_eq!(cleaned.len(), 1, "{cleaned:?}");
    assert_eq!(cleaned[0].holders, Vec::<(u32, String)>::new());
    assert_eq!(cleaned[0].leftovers, Vec::<String>::new());
    assert!(mount::list(&lab.store).unwrap().is_empty());
    assert_nothing_left(lab.seeded.work.path(), &record);
}
