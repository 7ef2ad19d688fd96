//! The `kernel` backend: real mounts, owned by a holder process in a private mount namespace.
//!
//! `veritylab mount` starts `unshare --mount --propagation private -- veritylab __hold PLAN`. The holder
//! sets up, inside its namespace, per layer: the verified device (a kernel dm-verity mapping where the host
//! has device-mapper, see [`super::dm`]; else our dm-verity emulation served over FUSE, in this process, with
//! a loop device over it: `mount -o loop` sets autoclear, so the loop goes with the last mount) and the EROFS
//! mount; then the overlay at the target. It records what it made and waits for a signal, then takes it all
//! down in reverse. Nothing is visible in the host's namespace; if the holder is killed, its namespace and
//! every mount in it go with it, and the autoclear loops clear themselves (dm-verity mappings and their loops
//! are global and stay: `umount` and `cleanup` remove them). Commands reach the rootfs through
//! `/proc/HOLDER/root` or `nsenter -t HOLDER -m`.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use verity_fuse::device::Options;
use verity_fuse::fuse::{self, MountConfig};
use verity_fuse::identity::ProcessId;
use verity_fuse::source::{FileSource, Window};
use verity_fuse::sys::{self, find_tool};

use super::emulated::Layers;
use super::record::{self, BaselineMount, LOG_FILE, MountId, MountedLayer, RECORD_FILE, REFUSAL_FILE, Record};
use super::{LayerRefusal, LayerRefusalKind, LayerTrust, MountError, Plan, UmountReport, dm};
use crate::erofs::{self, ExtractOptions, Image};
use crate::mountinfo::{self, DeviceNumber};
use crate::profile::{Backend, Profile};
use crate::rootfs::{FuseMount, FuseOptions};
use crate::store::write_atomically;

/// How long `mount` waits for the holder to finish setting up.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `umount` waits for the holder to exit after SIGTERM, before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `umount` waits for autoclear loops and namespace teardown after the holder is gone.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The name of the hidden subcommand the holder runs.
pub(crate) const HOLD_COMMAND: &str = "__hold";

/// Starts the holder for `plan` and waits until its record says the mount is ready.
pub(super) fn start(plan: &Plan, exe: &Path) -> Result<Record, MountError> {
    let unavailable = |reason: &str| MountError::Unavailable {
        backend: Backend::Kernel,
        reason: reason.to_owned(),
    };
    let mut command = match plan.backend {
        Backend::Fuse => {
            verity_fuse::backend::capabilities()
                .fuse
                .clone()
                .map_err(|reason| MountError::Unavailable {
                    backend: Backend::Fuse,
                    reason,
                })?;
            Command::new(exe)
        }
        _ => {
            if !sys::is_root() {
                return Err(unavailable("mounts need root (use --backend fuse or emulated)"));
            }
            let unshare = find_tool("unshare").ok_or_else(|| unavailable("unshare(1) from util-linux is missing"))?;
            let mut command = Command::new(unshare);
            command.args(["--mount", "--propagation", "private", "--"]).arg(exe);
            command
        }
    };
    let log_path = plan.state.join(LOG_FILE);
    let log =
        File::create(&log_path).map_err(|e| setup_error(plan, format!("creating {}: {e}", log_path.display())))?;
    let mut child = command
        .arg(HOLD_COMMAND)
        .arg(plan.state.join(record::PLAN_FILE))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| setup_error(plan, format!("starting the holder {}: {e}", exe.display())))?;
    let started = Instant::now();
    let record_path = plan.state.join(RECORD_FILE);
    loop {
        if let Ok(record) = Record::read(&record_path)
            && record.ready
            && record.holder == Some(child.id())
        {
            // Reap the holder when it exits, so a long-lived caller (the scenario runner) keeps no zombies.
            std::thread::spawn(move || child.wait());
            return Ok(record);
        }
        if let Ok(Some(status)) = child.try_wait() {
            if let Ok(refusal) = record::read_json::<LayerRefusal>(&plan.state.join(REFUSAL_FILE)) {
                return Err(MountError::Refused {
                    target: plan.target.clone(),
                    refusal,
                });
            }
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            return Err(setup_error(
                plan,
                format!("the holder exited ({status}): {}", last_lines(&log)),
            ));
        }
        if started.elapsed() > READY_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(setup_error(plan, format!("not ready after {READY_TIMEOUT:?}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The holder's main: sets up `plan` in this (private) namespace, records it, serves until a signal, tears down.
pub(crate) fn hold(plan_path: &Path) -> Result<(), MountError> {
    let plan: Plan = record::read_json(plan_path)?;
    let mut record = Record::for_plan(&plan);
    record.holder = Some(std::process::id());
    record.holder_start = ProcessId::of(std::process::id()).ok().map(|p| p.start);
    let record_path = plan.state.join(RECORD_FILE);
    write_atomically(&record_path, &to_json(&record))?;
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| setup_error(&plan, format!("installing signal handlers: {e}")))?;
    let mut held = Held::default();
    let done = match plan.backend {
        Backend::Fuse => set_up_fuse(&plan, &mut record, &mut held),
        _ => {
            drop_inherited(&plan);
            set_up(&plan, &mut record, &mut held)
        }
    };
    if let Err(e) = done {
        held.tear_down(&plan.target);
        if let MountError::Refused { refusal, .. } = &e {
            write_atomically(
                &plan.state.join(REFUSAL_FILE),
                &serde_json::to_vec_pretty(refusal).unwrap_or_default(),
            )?;
        }
        return Err(e);
    }
    record.baseline = mountinfo::read_self()
        .map_err(|e| setup_error(&plan, e.to_string()))?
        .iter()
        .filter(|m| record.watches(&m.mount_point))
        .map(|m| BaselineMount {
            id: m.mount_id,
            unique: match mountinfo::identify(Path::new("/"), m) {
                MountId::Unique(id) => Some(id),
                MountId::Reusable(_) => None,
            },
        })
        .collect();
    record.namespace = fs::read_link("/proc/self/ns/mnt")
        .ok()
        .map(|link| link.to_string_lossy().into_owned());
    record.ready = true;
    write_atomically(&record_path, &to_json(&record))?;
    let mut signals = signals;
    let _ = signals.forever().next();
    held.tear_down(&plan.target);
    Ok(())
}

/// Detaches the image mounts (FUSE, EROFS, overlay) this new namespace copied from the host, except those
/// the plan's paths live on. Kept, a copy would outlive its owner's umount for as long as this holder runs,
/// pinning FUSE connections and loop devices of mounts that are not ours (the fuse backend's, a test's).
fn drop_inherited(plan: &Plan) {
    let ours = |point: &Path| {
        plan.target.starts_with(point)
            || plan.state.starts_with(point)
            || plan
                .layers
                .iter()
                .any(|l| l.erofs.starts_with(point) || l.hash.starts_with(point))
    };
    for m in mountinfo::read_self().unwrap_or_default() {
        let kind = m.fs_type.to_string_lossy();
        let image = kind == "erofs" || kind == "overlay" || kind == "fuse" || kind.starts_with("fuse.");
        if image && !ours(&m.mount_point) {
            // The system call, not umount(8): that one stats the path first, which waits on a FUSE server
            // that may be busy or gone. Children of an already detached mount went with it, so a failure
            // here does not matter.
            let _ = rustix::mount::unmount(&m.mount_point, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// What the holder has set up, in order.
#[derive(Default)]
struct Held {
    /// Verified devices being served, with their mount points.
    sessions: Vec<(PathBuf, fuser::BackgroundSession)>,
    /// Kernel dm-verity mappings, when the host has device-mapper, with their layers' names.
    mappings: Vec<(String, dm::Mapping)>,
    /// EROFS mounts (lowerdirs), in mount order.
    lowers: Vec<PathBuf>,
    /// Whether the overlay is mounted at the target.
    overlay: bool,
    /// The FUSE rootfs (fuse backend).
    rootfs: Option<FuseMount>,
}

impl Held {
    fn tear_down(&mut self, target: &Path) {
        if let Some(rootfs) = self.rootfs.take() {
            // Unmounting ends the FUSE session; dropping it then joins the serving threads.
            unmount(target, true);
            drop(rootfs);
        }
        if self.overlay {
            unmount(target, true);
        }
        for lower in self.lowers.drain(..).rev() {
            unmount(&lower, false);
        }
        for (_, mapping) in self.mappings.drain(..).rev() {
            if let Err(e) = dm::close(&mapping) {
                eprintln!("removing {}: {e}", mapping.name);
            }
        }
        // Unmounted first (lazily if busy): a session's own unmount on drop can fail quietly, which on the fuse
        // backend (no private namespace to take the mount away) would leave it behind.
        for (dir, session) in self.sessions.drain(..).rev() {
            unmount(&dir, false);
            drop(session);
        }
    }
}

fn set_up(plan: &Plan, record: &mut Record, held: &mut Held) -> Result<(), MountError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| setup_error(plan, format!("{what}: {e}"));
    let kernel_checks = dm::available().is_ok();
    let opened = match (plan.profile.verified(), kernel_checks) {
        (true, true) => Layers::open_for_kernel(plan)?,
        (true, false) => Layers::open(plan)?,
        (false, _) => Layers {
            sources: Vec::new(),
            devices: Vec::new(),
            trust: Vec::new(),
        },
    };
    let mut lowerdirs = Vec::with_capacity(plan.layers.len());
    for (i, layer) in plan.layers.iter().enumerate() {
        let lower = plan.state.join("lower").join(i.to_string());
        fs::create_dir_all(&lower).map_err(|e| fail("creating a lowerdir", &e))?;
        let mut mounted = MountedLayer {
            name: layer.name.clone(),
            lowerdir: lower.clone(),
            root_hash: layer.root_hash,
            device_dir: None,
            device_dev: None,
            erofs_dev: None,
            dm: None,
            erofs_mount: None,
            device_mount: None,
            trust: None,
        };
        match (plan.profile, layer.root_hash) {
            (Profile::Vanilla, _) => {
                let file = FileSource::open(&layer.erofs).map_err(|e| fail(&layer.name, &e))?;
                let data = Window::new(file, 0, layer.erofs_size).map_err(|e| fail(&layer.name, &e))?;
                Image::open(data)
                    .map_err(|e| e.to_string())
                    .and_then(|image| {
                        erofs::extract(&image, &lower, ExtractOptions { preserve_owner: true })
                            .map_err(|e| format!("unpacking: {e}"))
                    })
                    .map_err(|message| opened.refused(plan, LayerRefusalKind::Malformed, &layer.name, message))?;
            }
            // A layer without a root hash under a verified profile is `containerd-dmverity-auto`'s fallback:
            // the whole file, as plain EROFS on a loop device.
            (Profile::Erofs, _) | (_, None) => {
                let options = format!("ro,loop,sizelimit={}", layer.erofs_size);
                mount_tool(&["-t", "erofs", "-o", &options], &layer.erofs, &lower).map_err(|e| {
                    opened.refused(
                        plan,
                        LayerRefusalKind::Malformed,
                        &layer.name,
                        format!("the kernel refused it: {e}"),
                    )
                })?;
                held.lowers.push(lower.clone());
                mounted.erofs_dev = Some(device_of(&lower).map_err(|e| fail("stat", &e))?);
                mounted.erofs_mount = Some(mount_id(&lower).map_err(|e| fail("identifying the EROFS mount", &e))?);
            }
            _ if dm::available().is_ok() => {
                let what = format!("opening the dm-verity mapping of {}", layer.name);
                let root = layer
                    .root_hash
                    .ok_or_else(|| fail(&what, &"the plan gives it no root hash"))?;
                let options = Options {
                    check_at_most_once: plan.check_at_most_once,
                    ..Options::default()
                };
                let signed = plan
                    .profile
                    .enforced()
                    .then_some(layer.root_hash_signature.as_ref())
                    .flatten();
                if signed.is_some() && sys::find_tool("keyctl").is_none() {
                    return Err(fail(
                        &format!("loading the root-hash signature of {}", layer.name),
                        &"`keyctl` is not installed (Debian package keyutils)",
                    ));
                }
                if plan.profile.enforced() && layer.signature_required && signed.is_none() {
                    return Err(opened.refused(
                        plan,
                        LayerRefusalKind::Signature,
                        &layer.name,
                        "activation refused: Required key not available: no root hash signature, and signatures \
                         are required"
                            .to_owned(),
                    ));
                }
                let mapping =
                    dm::open(layer, &dm::name(&plan.id, i), root, &options, signed).map_err(|e| match signed {
                        Some(_) => opened.refused(
                            plan,
                            LayerRefusalKind::Signature,
                            &layer.name,
                            format!("the kernel refused the table with its root-hash signature: {e}"),
                        ),
                        None => fail(&what, &e),
                    })?;
                if signed.is_some() {
                    mounted.trust = Some(LayerTrust::Kernel);
                } else if plan.profile.enforced() {
                    mounted.trust = Some(LayerTrust::Unsigned);
                }
                let device = mapping.path();
                held.mappings.push((layer.name.clone(), mapping.clone()));
                mount_tool(&["-t", "erofs", "-o", "ro"], &device, &lower)
                    .map_err(|e| dm_refusal(plan, &layer.name, &mapping, &held.mappings, &e))?;
                mounted.dm = Some(mapping);
                held.lowers.push(lower.clone());
                mounted.erofs_dev = Some(device_of(&lower).map_err(|e| fail("stat", &e))?);
                mounted.erofs_mount = Some(mount_id(&lower).map_err(|e| fail("identifying the EROFS mount", &e))?);
            }
            _ => {
                let device_dir = serve_device(plan, i, &opened, &mut mounted, held)?;
                mount_tool(
                    &["-t", "erofs", "-o", "ro,loop"],
                    &device_dir.join(fuse::DEVICE_FILE),
                    &lower,
                )
                .map_err(|e| {
                    let corrupted = opened.statuses().iter().any(|(_, s)| s.corruptions > 0);
                    let kind = if corrupted {
                        LayerRefusalKind::Verification
                    } else {
                        LayerRefusalKind::Malformed
                    };
                    opened.refused(
                        plan,
                        kind,
                        &layer.name,
                        format!("mounting from its verified device: {e}"),
                    )
                })?;
                held.lowers.push(lower.clone());
                mounted.erofs_dev = Some(device_of(&lower).map_err(|e| fail("stat", &e))?);
                mounted.erofs_mount = Some(mount_id(&lower).map_err(|e| fail("identifying the EROFS mount", &e))?);
            }
        }
        lowerdirs.push(lower);
        if mounted.trust.is_none() {
            mounted.trust = opened
                .trust
                .iter()
                .find(|(name, _)| *name == layer.name)
                .map(|(_, trust)| trust.clone());
        }
        record.layers.push(mounted);
    }
    let mut options = format!(
        "lowerdir={}",
        lowerdirs
            .iter()
            .rev()
            .map(|p| p.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":")
    );
    if let (Some(upper), Some(work)) = (plan.upperdir(), plan.workdir()) {
        fs::create_dir_all(&upper).map_err(|e| fail("creating the upperdir", &e))?;
        fs::create_dir_all(&work).map_err(|e| fail("creating the workdir", &e))?;
        options = format!("{options},upperdir={},workdir={}", upper.display(), work.display());
    }
    if plan.read_only() {
        options = format!("ro,{options}");
    }
    mount_tool(&["-t", "overlay", "-o", &options], Path::new("overlay"), &plan.target)
        .map_err(|e| fail("mounting the overlay", &e))?;
    held.overlay = true;
    record.overlay_dev = Some(device_of(&plan.target).map_err(|e| fail("stat", &e))?);
    record.rootfs_mount = Some(mount_id(&plan.target).map_err(|e| fail("identifying the overlay", &e))?);
    Ok(())
}

/// The `fuse` backend: one FUSE filesystem at the target serving the merged view of the layers (verified
/// devices for verified profiles), read-only, in the host's namespace. Each verified device is also served at
/// its device directory (the same device the rootfs reads), so its status and reads are visible as on the
/// kernel backend.
fn set_up_fuse(plan: &Plan, record: &mut Record, held: &mut Held) -> Result<(), MountError> {
    record.upperdir = None;
    let opened = Layers::open(plan)?;
    for (i, layer) in plan.layers.iter().enumerate() {
        let mut mounted = MountedLayer {
            name: layer.name.clone(),
            lowerdir: PathBuf::new(),
            root_hash: layer.root_hash,
            device_dir: None,
            device_dev: None,
            erofs_dev: None,
            dm: None,
            erofs_mount: None,
            device_mount: None,
            trust: None,
        };
        if layer.root_hash.is_some() {
            serve_device(plan, i, &opened, &mut mounted, held)?;
        }
        record.layers.push(mounted);
    }
    opened.record_trust(record);
    let (merged, _) = opened.merge(plan)?;
    let options = FuseOptions {
        fs_name: format!("veritylab:{}", plan.id),
        ..FuseOptions::default()
    };
    let rootfs =
        crate::rootfs::mount(Arc::new(merged), &plan.target, &options).map_err(|e| setup_error(plan, e.to_string()))?;
    held.rootfs = Some(rootfs);
    record.overlay_dev = Some(device_of(&plan.target).map_err(|e| setup_error(plan, format!("stat: {e}")))?);
    record.rootfs_mount =
        Some(mount_id(&plan.target).map_err(|e| setup_error(plan, format!("identifying the FUSE rootfs: {e}")))?);
    Ok(())
}

/// Serves layer `index`'s verified device (opened in `opened`) over FUSE at `<state>/dev/<index>`, and records
/// where; returns that directory.
fn serve_device(
    plan: &Plan,
    index: usize,
    opened: &Layers,
    mounted: &mut MountedLayer,
    held: &mut Held,
) -> Result<PathBuf, MountError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| setup_error(plan, format!("{what}: {e}"));
    let device = opened
        .devices
        .iter()
        .find(|(name, _)| *name == mounted.name)
        .map(|(_, device)| Arc::clone(device))
        .ok_or_else(|| setup_error(plan, format!("layer {} has no verified device", mounted.name)))?;
    let dir = plan.state.join("dev").join(index.to_string());
    fs::create_dir_all(&dir).map_err(|e| fail("creating a device dir", &e))?;
    let config = MountConfig {
        threads: 2,
        // Only root shares it (its loop devices): a normal user's device is read by that user alone.
        allow_other: sys::is_root(),
        auto_unmount: false,
        fs_name: format!("veritylab:{}:{index}", plan.id),
    };
    let session = fuse::spawn(device, &dir, &config)
        .map_err(|e| fail(&format!("serving the verified device of {}", mounted.name), &e))?;
    held.sessions.push((dir.clone(), session));
    mounted.device_dev = Some(device_of(&dir).map_err(|e| fail("stat", &e))?);
    mounted.device_mount = Some(mount_id(&dir).map_err(|e| fail("identifying the verified device's mount", &e))?);
    mounted.device_dir = Some(dir.clone());
    Ok(dir)
}

fn mount_tool(args: &[&str], source: &Path, target: &Path) -> Result<(), sys::ToolError> {
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    all.push(source.as_os_str());
    all.push(target.as_os_str());
    sys::run_tool("mount", "mount", all).map(drop)
}

/// Unmounts `path` (with everything below it when `recursive`), lazily if it is busy.
pub(super) fn unmount(path: &Path, recursive: bool) {
    let flag = if recursive { "-R" } else { "--" };
    if sys::run_tool("umount", "mount", [flag.as_ref(), path.as_os_str()]).is_err() {
        let _ = sys::run_tool("umount", "mount", ["-l".as_ref(), path.as_os_str()]);
    }
}

fn device_of(path: &Path) -> std::io::Result<DeviceNumber> {
    Ok(DeviceNumber::from_dev(fs::metadata(path)?.dev()))
}

/// The identity of the mount at `path` in this namespace (unique where the kernel has unique mount ids).
fn mount_id(path: &Path) -> std::io::Result<MountId> {
    verity_fuse::identity::stat(path).map(|s| s.mount)
}

/// Stops the holder of `record` (SIGTERM, then SIGKILL) and reports anything left behind.
pub(super) fn stop(record: &Record) -> UmountReport {
    let mut report = UmountReport::default();
    if record.holder_alive() {
        signal(record, rustix::process::Signal::TERM);
        if !wait_until(STOP_TIMEOUT, || !record.holder_alive()) {
            signal(record, rustix::process::Signal::KILL);
            report.killed = true;
            wait_until(STOP_TIMEOUT, || !record.holder_alive());
        }
    }
    if record.backend == Backend::Fuse {
        // A FUSE rootfs outlives a killed server (it is not auto-unmounted): take down the one we recorded.
        let ours = mountinfo::read_self()
            .unwrap_or_default()
            .into_iter()
            .any(|m| m.mount_point == record.target && Some(m.device) == record.overlay_dev);
        if ours {
            unmount(&record.target, false);
        }
        // So do the verified devices it served for status and reads.
        let mounts = mountinfo::read_self().unwrap_or_default();
        for layer in &record.layers {
            if let (Some(dir), Some(dev)) = (&layer.device_dir, layer.device_dev)
                && mounts.iter().any(|m| &m.mount_point == dir && m.device == dev)
            {
                unmount(dir, false);
            }
        }
    }
    if record.backend == Backend::Kernel {
        // Mappings are global: a killed holder leaves them behind, so remove them by name.
        report.leftovers.extend(dm::remove_mount(&record.id, &mappings(record)));
    }
    wait_until(SETTLE_TIMEOUT, || leftovers(record).is_empty());
    report.leftovers.extend(leftovers(record));
    report
}

/// Signals the record's holder: through a pidfd of the very process that made the mount, or for a record
/// without the holder's start time, by pid (`holder_alive` checked its name just before).
fn signal(record: &Record, signal: rustix::process::Signal) {
    match (record.holder_process(), record.holder) {
        (Some(holder), _) => {
            let _ = holder.signal(signal);
        }
        (None, Some(pid)) => {
            if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, signal);
            }
        }
        (None, None) => {}
    }
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// What of `record` is still present: its holder, its dm-verity mappings and their loop devices, loop
/// devices backed by files in its state directory, and mounts in this namespace at its target or state
/// directory.
pub(crate) fn leftovers(record: &Record) -> Vec<String> {
    let mut found = Vec::new();
    if record.holder_alive() {
        found.push(format!("holder process {}", record.holder.unwrap_or_default()));
    }
    found.extend(dm::leftovers(&record.id, &mappings(record)));
    for device in verity_fuse::host::loop_devices() {
        if let Some(backing) = device.backing_path.filter(|b| b.starts_with(&record.state)) {
            found.push(format!(
                "loop device {} backed by {}",
                device.path.display(),
                backing.display()
            ));
        }
    }
    for m in mountinfo::read_self().unwrap_or_default() {
        if m.mount_point.starts_with(&record.state) || m.mount_point == record.target {
            found.push(format!(
                "{} mount at {} ({})",
                m.fs_type.to_string_lossy(),
                m.mount_point.display(),
                m.device
            ));
        }
    }
    found
}

/// A layer whose EROFS mount from its dm-verity mapping failed: a verification refusal when the mapping has
/// seen corruption (status `C`), else the filesystem's; the evidence is the status of every mapping made so far.
fn dm_refusal(
    plan: &Plan,
    layer: &str,
    mapping: &dm::Mapping,
    mappings: &[(String, dm::Mapping)],
    error: &sys::ToolError,
) -> MountError {
    let devices: Vec<_> = mappings
        .iter()
        .filter_map(|(name, m)| Some((name.clone(), dm::status_report(m)?)))
        .collect();
    let letter = devices
        .iter()
        .find(|(name, _)| name == layer)
        .map_or('?', |(_, status)| status.letter);
    MountError::Refused {
        target: plan.target.clone(),
        refusal: LayerRefusal {
            kind: if letter == 'C' {
                LayerRefusalKind::Verification
            } else {
                LayerRefusalKind::Malformed
            },
            layer: layer.to_owned(),
            message: format!(
                "mounting from its dm-verity mapping {} (status {letter}): {error}",
                mapping.name
            ),
            devices,
        },
    }
}

/// The dm-verity mappings `record` lists.
fn mappings(record: &Record) -> Vec<&dm::Mapping> {
    record.layers.iter().filter_map(|l| l.dm.as_ref()).collect()
}

fn setup_error(plan: &Plan, reason: String) -> MountError {
    MountError::Setup {
        target: plan.target.clone(),
        reason,
    }
}

fn to_json(record: &Record) -> Vec<u8> {
    serde_json::to_vec_pretty(record).unwrap_or_default()
}

fn last_lines(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
