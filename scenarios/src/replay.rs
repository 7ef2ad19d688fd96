//! The `audit-identity-replay` attack's work in a cell: a layer's EROFS mount and the rootfs replaced by
//! ones made alike over the attacker's file, for real inside the holder's namespace, or in the emulated
//! mount table and the in-process rootfs.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use attacks::{AttackError, Identity, MissedIdentity, ReplayFidelity, Replayed, Trojan};
use verity_fuse::identity::FileId;
use verity_fuse::source::{FileSource, Window};

use super::sandbox::{Container, Sandbox};
use veritylab::erofs::OverlayNamespace;
use veritylab::mount::emulated::{self, Layers, Rootfs, Source};
use veritylab::mountinfo::{self, DeviceNumber};
use veritylab::profile::Backend;
use veritylab::rootfs::Merged;

/// How long the replay waits for the freed loop device to be free for it, before it takes another one.
const LOOP_CLEAR_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the replay keeps mounting again to get the old mount ids and device numbers back.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(5);

fn env<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> AttackError + '_ {
    move |e| AttackError::env(format!("{what}: {e}"))
}

/// A mount's identities the kernel hands out again: its mount id and device number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountIdentity {
    /// Where it is mounted.
    at: PathBuf,
    mount_id: u64,
    device: DeviceNumber,
    /// Whether the replay can get the device number back (a lowerdir on a loop device it attached again,
    /// the overlay's anonymous one), else it is not compared.
    device_wanted: bool,
}

/// Compares each original mount with the one found at its place after the replay (`None`: nothing there), and
/// the loop device the layer had with the one the replay attached (when it was on a loop device).
fn fidelity(
    before: &[MountIdentity],
    after: &[Option<(u64, DeviceNumber)>],
    loop_device: Option<(&Path, &Path)>,
) -> ReplayFidelity {
    let mut missed = Vec::new();
    if let Some((wanted, got)) = loop_device.filter(|(wanted, got)| wanted != got) {
        missed.push(MissedIdentity {
            identity: Identity::LoopMinor,
            at: wanted.to_owned(),
            wanted: wanted.display().to_string(),
            got: got.display().to_string(),
        });
    }
    for (mount, now) in before.iter().zip(after) {
        let got_id = now.map_or_else(|| "none".to_owned(), |(id, _)| id.to_string());
        if now.map(|(id, _)| id) != Some(mount.mount_id) {
            missed.push(MissedIdentity {
                identity: Identity::MountId,
                at: mount.at.clone(),
                wanted: mount.mount_id.to_string(),
                got: got_id,
            });
        }
        if mount.device_wanted && now.map(|(_, device)| device) != Some(mount.device) {
            missed.push(MissedIdentity {
                identity: Identity::Device,
                at: mount.at.clone(),
                wanted: mount.device.to_string(),
                got: now.map_or_else(|| "none".to_owned(), |(_, device)| device.to_string()),
            });
        }
    }
    ReplayFidelity { missed }
}

/// Replays layer `index`'s mount over `trojan` (see [`attacks::Env::replay_layer_mount`]); returns what was
/// done, how faithfully, and the loop device the lab's teardown will not detach.
pub(super) fn replay(
    sandbox: &mut Sandbox,
    index: usize,
    trojan: &Trojan,
) -> Result<(Replayed, Option<PathBuf>), AttackError> {
    match sandbox.backend {
        Backend::Emulated => emulated_replay(sandbox, index, trojan).map(|done| {
            // The emulated table takes the entries back as they were: every identity is the same.
            let replayed = Replayed {
                done,
                fidelity: ReplayFidelity::default(),
            };
            (replayed, None)
        }),
        Backend::Fuse => Err(AttackError::env(
            "the fuse backend serves the rootfs from its holder: there is no lowerdir mount to replay",
        )),
        Backend::Kernel => real_replay(sandbox, index, trojan),
    }
}

fn real_replay(sandbox: &Sandbox, index: usize, trojan: &Trojan) -> Result<(Replayed, Option<PathBuf>), AttackError> {
    let (_, record) = sandbox
        .mounted
        .as_ref()
        .ok_or_else(|| AttackError::env("nothing is mounted"))?;
    let holder = record
        .holder
        .ok_or_else(|| AttackError::env("the mount has no holder"))?;
    let layer = record
        .layers
        .get(index)
        .ok_or_else(|| AttackError::env(format!("no layer {index}")))?;
    let mounts = mountinfo::read(holder).map_err(env("reading the container's mounts"))?;
    let overlay = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == record.target && m.fs_type == "overlay")
        .ok_or_else(|| AttackError::env("no overlay at the target"))?;
    let mut options = vec![if overlay.is_read_only() { "ro" } else { "rw" }.to_owned()];
    for key in ["lowerdir", "upperdir", "workdir"] {
        if let Some(value) = overlay.super_options.get(key) {
            options.push(format!("{key}={}", value.to_string_lossy()));
        }
    }
    let erofs = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == layer.lowerdir)
        .ok_or_else(|| AttackError::env(format!("nothing is mounted at {}", layer.lowerdir.display())))?;
    let block = fs::read_link(format!("/sys/dev/block/{}", erofs.device)).map_err(env("the lowerdir's device"))?;
    let block = block
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    sandbox.mount_inside(&["umount".as_ref(), record.target.as_os_str()])?;
    sandbox.mount_inside(&["umount".as_ref(), layer.lowerdir.as_os_str()])?;
    // The attacker's file sits where the verified device is, in the host's namespace, where that path is a
    // plain directory; without a verified device, anywhere.
    let file = match &layer.device_dir {
        Some(dir) => dir.join(verity_fuse::fuse::DEVICE_FILE),
        None => sandbox.scratch().join("replayed.erofs"),
    };
    fs::copy(&trojan.erofs, &file).map_err(env(&format!("copying to {}", file.display())))?;
    let sizelimit = trojan.data_size.to_string();
    let attach = |device: &Path| {
        let args: [&std::ffi::OsStr; 5] = [
            "-r".as_ref(),
            "--sizelimit".as_ref(),
            sizelimit.as_ref(),
            device.as_os_str(),
            file.as_os_str(),
        ];
        verity_fuse::sys::run_tool("losetup", "mount", args)
    };
    let attach_free = || -> Result<PathBuf, AttackError> {
        let args: [&std::ffi::OsStr; 6] = [
            "-r".as_ref(),
            "--sizelimit".as_ref(),
            sizelimit.as_ref(),
            "-f".as_ref(),
            "--show".as_ref(),
            file.as_os_str(),
        ];
        let shown = verity_fuse::sys::run_tool("losetup", "mount", args).map_err(env("attaching a free loop"))?;
        Ok(PathBuf::from(shown.trim()))
    };
    let on_loop = block
        .starts_with("loop")
        .then(|| PathBuf::from(format!("/dev/{block}")));
    let device = match &on_loop {
        // The EROFS mount was the loop's last user: autoclear frees it, and the attacker attaches the same minor
        // again. Another process on the host may take the freed minor first: the attacker waits for it to be
        // free again (bounded), and settles for another loop device when it is not (the replay is then
        // imperfect: the device number differs).
        Some(same) => {
            let backing = PathBuf::from(format!("/sys/block/{block}/loop/backing_file"));
            let started = Instant::now();
            loop {
                if !backing.exists() && attach(same).is_ok() {
                    break same.clone();
                }
                if started.elapsed() > LOOP_CLEAR_TIMEOUT {
                    break attach_free()?;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // A dm-verity mapping stays: the replacement goes on a free loop device, whose number differs from the
        // mapping's by design.
        None => attach_free()?,
    };
    let options = options.join(",");
    let mount_both = || -> Result<(), AttackError> {
        sandbox.mount_inside(&[
            "mount".as_ref(),
            "-t".as_ref(),
            "erofs".as_ref(),
            "-o".as_ref(),
            "ro".as_ref(),
            device.as_os_str(),
            layer.lowerdir.as_os_str(),
        ])?;
        sandbox.mount_inside(&[
            "mount".as_ref(),
            "-t".as_ref(),
            "overlay".as_ref(),
            "-o".as_ref(),
            options.as_ref(),
            "overlay".as_ref(),
            record.target.as_os_str(),
        ])
    };
    // The kernel hands out the lowest free mount id and anonymous device number: another process's mount made
    // meanwhile can take the ones just freed. The attacker mounts again until both mounts have their old
    // identities back (bounded), as a real attacker would, and records the ones that did not come back.
    let before = [
        MountIdentity {
            at: layer.lowerdir.clone(),
            mount_id: erofs.mount_id,
            device: erofs.device,
            device_wanted: on_loop.as_ref() == Some(&device),
        },
        MountIdentity {
            at: record.target.clone(),
            mount_id: overlay.mount_id,
            device: overlay.device,
            device_wanted: true,
        },
    ];
    let started = Instant::now();
    let fidelity = loop {
        mount_both()?;
        let now = mountinfo::read(holder).map_err(env("reading the container's mounts"))?;
        let after = before.each_ref().map(|b| {
            now.iter()
                .rev()
                .find(|m| m.mount_point == b.at)
                .map(|m| (m.mount_id, m.device))
        });
        let fidelity = fidelity(
            &before,
            &after,
            on_loop.as_deref().map(|wanted| (wanted, device.as_path())),
        );
        let only_loop_missed = fidelity.missed.iter().all(|m| m.identity == Identity::LoopMinor);
        if only_loop_missed || started.elapsed() > REPLAY_TIMEOUT {
            break fidelity;
        }
        sandbox.mount_inside(&["umount".as_ref(), record.target.as_os_str()])?;
        sandbox.mount_inside(&["umount".as_ref(), layer.lowerdir.as_os_str()])?;
        std::thread::sleep(Duration::from_millis(20));
    };
    let done = format!(
        "unmounted the rootfs and layer {index}'s EROFS inside the container, attached {} to {} from the host's \
         namespace, and mounted both again the same way",
        device.display(),
        file.display()
    );
    Ok((Replayed { done, fidelity }, Some(device)))
}

fn emulated_replay(sandbox: &mut Sandbox, index: usize, trojan: &Trojan) -> Result<String, AttackError> {
    let (plan, record) = sandbox
        .mounted
        .as_mut()
        .ok_or_else(|| AttackError::env("nothing is mounted"))?;
    let table = record.emulated.clone().unwrap_or_default();
    let lowerdir = record
        .layers
        .get(index)
        .map(|l| l.lowerdir.clone())
        .ok_or_else(|| AttackError::env(format!("no layer {index}")))?;
    let meta = fs::metadata(&trojan.erofs).map_err(env("the attacker's file"))?;
    let mut erofs = table
        .iter()
        .find(|e| e.mount_point == lowerdir)
        .cloned()
        .ok_or_else(|| AttackError::env(format!("nothing is mounted at {}", lowerdir.display())))?;
    erofs.backing_file = Some(FileId::from_dev(meta.dev(), meta.ino()));
    emulated::replace_mount(record, &lowerdir, erofs).map_err(env("replacing the EROFS mount"))?;
    let target = record.target.clone();
    let overlay = table
        .iter()
        .find(|e| e.mount_point == target)
        .cloned()
        .ok_or_else(|| AttackError::env("no rootfs in the table"))?;
    emulated::replace_mount(record, &target, overlay).map_err(env("replacing the overlay"))?;
    // The container now reads the layer from the attacker's file, unverified.
    let Layers {
        mut sources, devices, ..
    } = Layers::open(plan).map_err(env("opening the layers"))?;
    let file = FileSource::open(&trojan.erofs).map_err(env("the attacker's file"))?;
    let window = Window::new(file, 0, trojan.data_size).map_err(env("the attacker's file"))?;
    let slot = sources
        .get_mut(index)
        .ok_or_else(|| AttackError::env(format!("no layer {index}")))?;
    *slot = Box::new(window) as Source;
    let merged = Merged::from_sources(sources, OverlayNamespace::Trusted).map_err(env("merging"))?;
    let upper = record.upperdir.clone();
    sandbox.container = Some(Container::Emulated {
        rootfs: Box::new(Rootfs {
            merged,
            upper,
            read_only: plan.read_only(),
        }),
        devices,
    });
    Ok(format!(
        "replaced layer {index}'s EROFS mount and the overlay in the emulated table with the same ids and devices, \
         the loop now reading {}",
        trojan.erofs.display()
    ))
}

/// Detaches `device` (the kernel detaches it when its last user, the replayed EROFS mount, goes).
pub(super) fn release(device: &Path) -> Result<(), AttackError> {
    verity_fuse::sys::run_tool("losetup", "mount", ["-d".as_ref(), device.as_os_str()])
        .map(drop)
        .map_err(env("detaching the replayed loop"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> [MountIdentity; 2] {
        [
            MountIdentity {
                at: PathBuf::from("/layers/0"),
                mount_id: 40,
                device: DeviceNumber { major: 7, minor: 3 },
                device_wanted: true,
            },
            MountIdentity {
                at: PathBuf::from("/rootfs"),
                mount_id: 41,
                device: DeviceNumber { major: 0, minor: 90 },
                device_wanted: true,
            },
        ]
    }

    #[test]
    fn a_replay_that_got_every_identity_back_is_perfect() {
        let before = mounts();
        let after = before.each_ref().map(|m| Some((m.mount_id, m.device)));
        let loop_device = Path::new("/dev/loop3");
        let fidelity = fidelity(&before, &after, Some((loop_device, loop_device)));
        assert!(fidelity.perfect(), "{fidelity}");
    }

    #[test]
    fn an_imperfect_replay_names_each_mount_id_device_and_loop_device_it_did_not_get_back() {
        let before = mounts();
        let after = [
            Some((40, DeviceNumber { major: 7, minor: 5 })),
            Some((44, DeviceNumber { major: 0, minor: 90 })),
        ];
        let fidelity = fidelity(
            &before,
            &after,
            Some((Path::new("/dev/loop3"), Path::new("/dev/loop5"))),
        );
        assert!(!fidelity.perfect());
        let missed: Vec<_> = fidelity
            .missed
            .iter()
            .map(|m| (m.identity, m.at.to_str().unwrap(), m.wanted.as_str(), m.got.as_str()))
            .collect();
        assert_eq!(
            missed,
            [
                (Identity::LoopMinor, "/dev/loop3", "/dev/loop3", "/dev/loop5"),
                (Identity::Device, "/layers/0", "7:3", "7:5"),
                (Identity::MountId, "/rootfs", "41", "44"),
            ]
        );
        assert!(
            fidelity
                .to_string()
                .starts_with("imperfect: loop device of /dev/loop3: /dev/loop5 instead of")
        );
    }

    #[test]
    fn a_device_the_replay_cannot_get_back_is_not_compared_and_a_missing_mount_is_named() {
        let mut before = mounts();
        before[0].device_wanted = false;
        let after = [Some((40, DeviceNumber { major: 7, minor: 9 })), None];
        let fidelity = fidelity(&before, &after, None);
        let missed: Vec<_> = fidelity.missed.iter().map(|m| (m.identity, m.got.as_str())).collect();
        assert_eq!(missed, [(Identity::MountId, "none"), (Identity::Device, "none")]);
    }
}
