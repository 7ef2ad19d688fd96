//! Real containers on a profile's rootfs: `veritylab run`, `ps`, `stop`, the container mount audit and the
//! cleanup of what a stopped container leaves in namespaces other processes still hold.
//!
//! [`run`] mounts the image as `veritylab mount` does (the profile's rootfs in a holder's namespace) at
//! `<store>/containers/NAME/rootfs`, builds an OCI runtime bundle in `<store>/containers/NAME` from the image
//! config ([`spec`]), and has `runc` create the container inside the holder's namespace (the `runc` module).
//! Before the process starts it records the container's state (`state.json`, written atomically): the init pid, the
//! container's mount namespace, every mount of that namespace with why it is expected (the rootfs, the
//! runtime's mounts, a volume) and its unique mount id, and what the upperdir holds. Then `runc start`. A
//! foreground run waits for the process (this process is its subreaper), returns its exit status and takes
//! everything down; a detached one leaves it to [`stop`].
//!
//! [`audit`] checks a running container's namespace against that state; [`cleanup`] finds the namespaces
//! that still hold a stopped container's mounts and unmounts them there.

pub mod audit;
pub mod cleanup;
pub(crate) mod resolve;
pub(crate) mod runc;
pub mod spec;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use verity_fuse::ErrorClass;
use verity_fuse::identity::{MountId, ProcessId};

use crate::image_spec::manifest::{self, Manifest};
use crate::mount::{self, MountError, Plan, Record, Trust, UmountReport};
use crate::mountinfo::{self, DeviceNumber};
use crate::profile::{Backend, Profile};
use crate::store::{Store, StoreError, write_atomically};
pub use spec::{ImageConfig, User, Volume};

/// The directory under the store holding one directory per container.
pub const CONTAINERS_DIR: &str = "containers";
/// runc's state directory under the store.
const RUNC_DIR: &str = "runc";
/// The container's state file.
pub const STATE_FILE: &str = "state.json";
/// The bundle's runtime config.
pub const CONFIG_FILE: &str = "config.json";
/// Where a detached container's output goes.
pub const LOG_FILE: &str = "container.log";
/// runc's own log.
const RUNC_LOG: &str = "runc.log";
/// The init pid runc writes.
const PID_FILE: &str = "init.pid";
/// The rootfs mount point inside the container directory.
const ROOTFS_DIR: &str = "rootfs";
/// How long `stop` waits for the container's processes to die after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// The most upperdir entries the state records and the audit reports.
pub(crate) const UPPER_LIMIT: usize = 10_000;

/// A failed `run`, `stop`, listing, audit or cleanup of a container.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// The name is not a container name.
    #[error("{name:?} is not a container name (1 to 64 of A-Z a-z 0-9 _ . -, starting with a letter or digit)")]
    BadName {
        /// The name.
        name: String,
    },
    /// A container of that name exists.
    #[error("a container named {name} exists already (veritylab stop {name})")]
    NameInUse {
        /// The name.
        name: String,
    },
    /// No container of that name.
    #[error("no container named {name}")]
    NotFound {
        /// The name.
        name: String,
    },
    /// A `-v` argument is unusable.
    #[error("volume {volume:?}: {reason}")]
    BadVolume {
        /// The argument.
        volume: String,
        /// Why.
        reason: String,
    },
    /// The image config cannot be parsed.
    #[error("the image config is unusable: {reason}")]
    ImageConfig {
        /// Why.
        reason: String,
    },
    /// Neither the image nor the command line gives a command.
    #[error("the image has no Entrypoint or Cmd and no command was given (after --)")]
    NoCommand,
    /// The command is missing from the rootfs or not executable.
    #[error("{program}: not found in the rootfs or not executable (PATH {path})")]
    NotExecutable {
        /// The program.
        program: String,
        /// The search path used.
        path: String,
    },
    /// The image's user is not in the rootfs's `/etc/passwd` (or its group in `/etc/group`).
    #[error("user {user:?} is not in the rootfs's /etc/passwd or /etc/group")]
    UnknownUser {
        /// The user.
        user: String,
    },
    /// The rootfs is read-only and lacks a mount point the runtime needs.
    #[error(
        "{}: the runtime mounts there, but the rootfs ({profile} on {backend}) is read-only and lacks it (the hardened \
         and enforced profiles' pinned layer has the runtime's mount points; the kernel backend gives the others an \
         upperdir)",
        path.display()
    )]
    MissingMountPoint {
        /// The mount point.
        path: PathBuf,
        /// The profile.
        profile: Profile,
        /// The backend.
        backend: Backend,
    },
    /// runc is not installed.
    #[error("runc is not installed (Debian package runc)")]
    RuncMissing,
    /// Something else the container needs is not available here.
    #[error("containers cannot run here: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// runc refused or failed.
    #[error("runc {what}: {message}")]
    Runc {
        /// The runc command.
        what: &'static str,
        /// runc's message.
        message: String,
    },
    /// Mounting or unmounting the rootfs failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored manifest is unusable.
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    /// The container's state file is unusable.
    #[error("{}: {reason}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A stop or cleanup left things behind (listed in its report).
    #[error("{count} leftover(s): {}", leftovers.join("; "))]
    Leftovers {
        /// How many.
        count: usize,
        /// What.
        leftovers: Vec<String>,
    },
    /// Another I/O failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ContainerError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::BadName { .. } | Self::BadVolume { .. } | Self::NoCommand => ErrorClass::Usage,
            Self::NameInUse { .. } | Self::Leftovers { .. } => ErrorClass::Busy,
            Self::NotFound { .. }
            | Self::ImageConfig { .. }
            | Self::NotExecutable { .. }
            | Self::UnknownUser { .. }
            | Self::MissingMountPoint { .. }
            | Self::State { .. } => ErrorClass::BadInput,
            Self::RuncMissing | Self::Unavailable { .. } => ErrorClass::Unavailable,
            Self::Runc { .. } | Self::Io { .. } => ErrorClass::Io,
            Self::Mount(e) => e.class(),
            Self::Store(e) => e.class(),
            Self::Manifest(e) => e.class(),
        }
    }
}

/// A mount of the container's namespace as it was when the container was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedMount {
    /// Its mount point in the container.
    pub mount_point: PathBuf,
    /// Its identity (unique where the kernel has unique mount ids).
    pub id: MountId,
    /// Its device number.
    pub device: DeviceNumber,
    /// Whether it was read-only.
    pub read_only: bool,
    /// Why it is expected (the rootfs, a runtime mount, a volume).
    pub because: String,
}

/// A container's state (`<store>/containers/NAME/state.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Its name (also runc's id).
    pub name: String,
    /// The image's name in the store.
    pub image: String,
    /// The profile of its rootfs.
    pub profile: Profile,
    /// The backend of its rootfs.
    pub backend: Backend,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The rootfs mount's target.
    pub rootfs: PathBuf,
    /// The rootfs mount as `veritylab mount` recorded it (kept so that cleanup knows its devices after stop).
    pub mount: Record,
    /// The process's arguments.
    pub args: Vec<String>,
    /// The volumes.
    pub volumes: Vec<Volume>,
    /// The container's init process: its pid and start time, so that a process given the same pid after it is
    /// not taken for it.
    pub init: Option<ProcessId>,
    /// The container's mount namespace (`mnt:[INODE]`).
    pub namespace: Option<String>,
    /// The mounts of the container's namespace when it was created, each with why it is expected.
    pub expected: Vec<ExpectedMount>,
    /// What the overlay's upperdir held when the container was created (paths relative to it).
    pub upper_baseline: Vec<PathBuf>,
    /// Whether it was started detached.
    pub detached: bool,
    /// Unix time it was created.
    pub created: u64,
}

/// What a container is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Created, its process not started yet.
    Created,
    /// Its process runs.
    Running,
    /// Its process has ended (`stop` removes it).
    Stopped,
}

impl Status {
    /// The status's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Stopped => "stopped",
        }
    }
}

impl Container {
    /// Its status, from its init process: running only while the process that was created runs, whatever now
    /// holds its pid.
    pub fn status(&self) -> Status {
        match self.init {
            Some(init) if init.is_live() => Status::Running,
            Some(_) => Status::Stopped,
            None => Status::Created,
        }
    }
}

/// What `run` is asked to do, validated.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The container's name.
    pub name: String,
    /// The profile.
    pub profile: Profile,
    /// The backend (kernel or fuse).
    pub backend: Backend,
    /// The volumes.
    pub volumes: Vec<Volume>,
    /// Leave it running and return.
    pub detach: bool,
    /// Replaces the image's `Cmd`.
    pub command: Vec<String>,
    /// The `enforced` profile's node trust.
    pub kernel: Option<mount::KernelTrust>,
}

/// What a run ended with.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The detached container runs.
    Detached(Box<Container>),
    /// The foreground process exited with this status (128 + signal when a signal ended it).
    Exited(i32),
}

/// Checks a container name: 1 to 64 of `A-Z a-z 0-9 _ . -`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), ContainerError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ContainerError::BadName { name: name.to_owned() })
    }
}

/// The directory of container `name`.
pub fn dir(store: &Store, name: &str) -> PathBuf {
    store.root().join(CONTAINERS_DIR).join(name)
}

fn runc_for(store: &Store, dir: &Path) -> Result<runc::Runc, ContainerError> {
    runc::Runc::find(&store.root().join(CONTAINERS_DIR).join(RUNC_DIR), &dir.join(RUNC_LOG))
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> ContainerError {
    move |source| ContainerError::Io { what, source }
}

/// Runs `trust`'s image as container `options.name` (see the module docs). `exe` is the veritylab
/// executable the mount's holder runs. Nothing is left mounted or running when it fails.
pub fn run(store: &Store, trust: &Trust, options: &RunOptions, exe: &Path) -> Result<Outcome, ContainerError> {
    check_name(&options.name)?;
    if options.backend == Backend::Emulated {
        return Err(ContainerError::Unavailable {
            reason: "the emulated backend has no rootfs a runtime can use (give --backend kernel or fuse)".to_owned(),
        });
    }
    let volumes = options
        .volumes
        .iter()
        .map(|v| {
            let source = fs::canonicalize(&v.source).map_err(|e| ContainerError::BadVolume {
                volume: format!("{}:{}", v.source.display(), v.destination.display()),
                reason: format!("the source {}: {e}", v.source.display()),
            })?;
            Ok(Volume { source, ..v.clone() })
        })
        .collect::<Result<Vec<_>, ContainerError>>()?;
    let dir = claim(store, &options.name)?;
    let mut guard = Guard {
        store,
        dir: dir.clone(),
        name: options.name.clone(),
        record: None,
        armed: true,
    };
    let config = ImageConfig::parse(&read_config(store, trust)?)?;
    let args = config.args(&options.command)?;
    let rootfs = dir.join(ROOTFS_DIR);
    fs::create_dir(&rootfs).map_err(io(format!("creating {}", rootfs.display())))?;
    let plan = match (&options.kernel, options.profile) {
        (Some(kernel), Profile::Enforced) => mount::prepare_enforced(store, trust, &rootfs, options.backend, kernel)?,
        _ => mount::prepare(store, trust, &rootfs, options.profile, options.backend)?,
    };
    let record = mount::mount(store, &plan, exe)?;
    guard.record = Some(record.clone());
    let env = config.environment();
    let cwd = config.cwd();
    let seen = record.in_namespace(&record.target);
    let read_only = read_only(&plan);
    check_rootfs(&seen, &plan, read_only, &args[0], &cwd, &env, &volumes)?;
    let passwd = read_in(&seen, "/etc/passwd");
    let group = read_in(&seen, "/etc/group");
    let user = spec::resolve_user(&config.user, &passwd, &group)?;
    let start = Start {
        name: &options.name,
        args: &args,
        env: &env,
        cwd: &cwd,
        user,
        volumes: &volumes,
        detach: options.detach,
    };
    let container = start_on(store, &dir, &record, read_only, &start)?;
    if options.detach {
        guard.armed = false;
        return Ok(Outcome::Detached(Box::new(container)));
    }
    let status = container.init.map_or(1, wait_exit);
    drop(guard);
    Ok(Outcome::Exited(status))
}

/// Claims the name `name` in `store`: creates its directory, which must not exist; returns it (absolute).
pub fn claim(store: &Store, name: &str) -> Result<PathBuf, ContainerError> {
    check_name(name)?;
    let root = store.root().join(CONTAINERS_DIR);
    fs::create_dir_all(root.join(RUNC_DIR)).map_err(io(format!("creating {}", root.display())))?;
    let dir = dir(store, name);
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ContainerError::NameInUse { name: name.to_owned() });
        }
        Err(e) => return Err(io(format!("creating {}", dir.display()))(e)),
    }
    fs::canonicalize(&dir).map_err(io(format!("resolving {}", dir.display())))
}

/// The process of a container and how it is started.
#[derive(Debug, Clone)]
pub struct Start<'a> {
    /// The container's name (claimed with [`claim`]).
    pub name: &'a str,
    /// The process's arguments.
    pub args: &'a [String],
    /// Its environment.
    pub env: &'a [String],
    /// Its working directory.
    pub cwd: &'a str,
    /// Its user.
    pub user: User,
    /// The volumes (sources absolute).
    pub volumes: &'a [Volume],
    /// Its output goes to the container's log instead of this process's streams, and nothing waits for it.
    pub detach: bool,
}

/// Starts a container on the rootfs mount `record` in the claimed directory `dir`: writes the bundle,
/// creates the container inside the mount's namespace, records its state (mounts and upperdir as created),
/// and starts its process. On failure the caller removes what is left with [`remove`].
pub fn start_on(
    store: &Store,
    dir: &Path,
    record: &Record,
    read_only: bool,
    start: &Start<'_>,
) -> Result<Container, ContainerError> {
    let holder = record.holder.ok_or_else(|| ContainerError::Unavailable {
        reason: "the mount has no holder process whose namespace holds the rootfs".to_owned(),
    })?;
    let runc = runc_for(store, dir)?;
    let bundle = spec::runtime_config(&spec::BundleSpec {
        rootfs: &record.target,
        read_only,
        args: start.args,
        env: start.env,
        cwd: start.cwd,
        user: start.user,
        hostname: start.name,
        volumes: start.volumes,
    });
    write_atomically(
        &dir.join(CONFIG_FILE),
        &serde_json::to_vec_pretty(&bundle).unwrap_or_default(),
    )?;
    let mut container = Container {
        name: start.name.to_owned(),
        image: record.image.clone(),
        profile: record.profile,
        backend: record.backend,
        bundle: dir.to_owned(),
        rootfs: record.target.clone(),
        mount: record.clone(),
        args: start.args.to_vec(),
        volumes: start.volumes.to_vec(),
        init: None,
        namespace: None,
        expected: Vec::new(),
        upper_baseline: Vec::new(),
        detached: start.detach,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    save(&container)?;
    let streams = if start.detach {
        runc::Streams::Log(dir.join(LOG_FILE))
    } else {
        // Become the init process's parent once runc create exits, to collect its exit status.
        rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(|e| ContainerError::Io {
            what: "becoming a subreaper".to_owned(),
            source: e.into(),
        })?;
        runc::Streams::Inherit
    };
    runc.create(holder, dir, start.name, &dir.join(PID_FILE), &streams)?;
    let init: u32 = fs::read_to_string(dir.join(PID_FILE))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| ContainerError::Runc {
            what: "create",
            message: "wrote no init pid".to_owned(),
        })?;
    // runc's init waits for `runc start` until then, so the pid still names the process runc created.
    let process = ProcessId::of(init).map_err(io(format!("reading process {init}")))?;
    container.init = Some(process);
    container.namespace = fs::read_link(format!("/proc/{init}/ns/mnt"))
        .ok()
        .map(|l| l.to_string_lossy().into_owned());
    container.expected = expected_mounts(init, &container.volumes);
    container.upper_baseline = record.upperdir.as_deref().map(upper_entries).unwrap_or_default();
    save(&container)?;
    runc.start(start.name)?;
    Ok(container)
}

/// Kills the container in `dir` (named `name`), has runc delete it and removes its directory; its rootfs
/// mount is the caller's.
pub fn remove(store: &Store, dir: &Path, name: &str) -> Result<(), ContainerError> {
    end(store, dir, name)?;
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("removing {}", dir.display()))(e)),
    }
}

/// Kills the container's processes (waiting for them, bounded) and has runc delete it.
fn end(store: &Store, dir: &Path, name: &str) -> Result<(), ContainerError> {
    let runc = runc_for(store, dir)?;
    // The process recorded at create; before the state has it, whatever holds the pid runc wrote.
    let recorded = fs::read(dir.join(STATE_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Container>(&bytes).ok())
        .and_then(|c| c.init);
    let init = recorded.or_else(|| {
        fs::read_to_string(dir.join(PID_FILE))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .and_then(|pid| ProcessId::of(pid).ok())
    });
    runc.kill(name);
    let started = Instant::now();
    while init.is_some_and(|init| init.is_live()) && started.elapsed() < KILL_TIMEOUT {
        std::thread::sleep(Duration::from_millis(20));
    }
    runc.delete(name)
}

/// Takes down what a failed or finished run set up (the container, the mount, the directory).
struct Guard<'a> {
    store: &'a Store,
    dir: PathBuf,
    name: String,
    record: Option<Record>,
    armed: bool,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = end(self.store, &self.dir, &self.name);
        if let Some(record) = &self.record {
            let _ = mount::umount(self.store, &record.target);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Waits for the init process (this process's child once runc create exited) and returns its status.
fn wait_exit(init: ProcessId) -> i32 {
    use rustix::process::{Pid, WaitOptions, waitpid};
    let Some(pid) = i32::try_from(init.pid).ok().and_then(Pid::from_raw) else {
        return 1;
    };
    loop {
        match waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => {
                if let Some(code) = status.exit_status() {
                    return code;
                }
                if let Some(signal) = status.terminating_signal() {
                    return 128 + signal;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            // Not our child after all: wait for it to go away (bounded by the process's own life).
            _ => {
                while init.is_live() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return 1;
            }
        }
    }
}

/// The image config's bytes: the verified image's config, or the stored image's.
fn read_config(store: &Store, trust: &Trust) -> Result<Vec<u8>, ContainerError> {
    let descriptor = match trust {
        Trust::Verified(image) => image.config().clone(),
        Trust::Local(name) => {
            let descriptor = store.lookup(name)?;
            let bytes = store.read_blob(&descriptor.digest, descriptor.size, spec::CONFIG_LIMIT, "manifest")?;
            match manifest::parse(&descriptor.digest, &descriptor.media_type, &bytes)? {
                Manifest::Image(image) => image.config,
                Manifest::Index(_) => {
                    return Err(ContainerError::ImageConfig {
                        reason: format!("{name} is an index, not an image"),
                    });
                }
            }
        }
    };
    Ok(store.read_blob(&descriptor.digest, descriptor.size, spec::CONFIG_LIMIT, "image config")?)
}

/// Whether the rootfs a plan mounts is read-only: the profile's, and always on the fuse backend.
pub fn read_only(plan: &Plan) -> bool {
    plan.read_only() || plan.backend == Backend::Fuse
}

/// Refuses a command that is not executable in the rootfs, and on a read-only rootfs a missing runtime mount
/// point or volume destination (the runtime cannot create them there).
fn check_rootfs(
    seen: &Path,
    plan: &Plan,
    read_only: bool,
    program: &str,
    cwd: &str,
    env: &[String],
    volumes: &[Volume],
) -> Result<(), ContainerError> {
    if resolve::executable(seen, program, cwd, env).is_none() {
        return Err(ContainerError::NotExecutable {
            program: program.to_owned(),
            path: env
                .iter()
                .find_map(|e| e.strip_prefix("PATH="))
                .unwrap_or_default()
                .to_owned(),
        });
    }
    if read_only {
        for point in ["/proc", "/dev", "/sys"] {
            if resolve::resolve(seen, Path::new(point)).is_none() {
                return Err(ContainerError::MissingMountPoint {
                    path: PathBuf::from(point),
                    profile: plan.profile,
                    backend: plan.backend,
                });
            }
        }
        for volume in volumes {
            if resolve::resolve(seen, &volume.destination).is_none() {
                return Err(ContainerError::BadVolume {
                    volume: format!("{}:{}", volume.source.display(), volume.destination.display()),
                    reason: format!(
                        "{} does not exist in the read-only rootfs ({} on {} cannot create mount targets; \
                         the pinned layer provides /tmp, /etc/hosts, /etc/hostname and /etc/resolv.conf)",
                        volume.destination.display(),
                        plan.profile,
                        plan.backend
                    ),
                });
            }
        }
    }
    Ok(())
}

/// A small text file of the rootfs (empty when absent).
fn read_in(seen: &Path, path: &str) -> String {
    resolve::resolve(seen, Path::new(path))
        .and_then(|p| {
            use std::io::Read;
            let mut text = String::new();
            fs::File::open(p).ok()?.take(1 << 20).read_to_string(&mut text).ok()?;
            Some(text)
        })
        .unwrap_or_default()
}

/// Every mount of `init`'s namespace that the bundle explains, with its identity.
fn expected_mounts(init: u32, volumes: &[Volume]) -> Vec<ExpectedMount> {
    let root = PathBuf::from(format!("/proc/{init}/root"));
    mountinfo::read(init)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            let because = spec::expected_because(&m.mount_point, volumes)?;
            Some(ExpectedMount {
                mount_point: m.mount_point.clone(),
                id: mountinfo::identify(&root, m),
                device: m.device,
                read_only: m.is_read_only(),
                because,
            })
        })
        .collect()
}

/// The entries under `upper` (relative paths), at most [`UPPER_LIMIT`].
pub(crate) fn upper_entries(upper: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![upper.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(Result::ok) {
            if found.len() >= UPPER_LIMIT {
                return found;
            }
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path.clone());
            }
            if let Ok(relative) = path.strip_prefix(upper) {
                found.push(relative.to_owned());
            }
        }
    }
    found.sort();
    found
}

fn save(container: &Container) -> Result<(), ContainerError> {
    write_atomically(
        &container.bundle.join(STATE_FILE),
        &serde_json::to_vec_pretty(container).unwrap_or_default(),
    )?;
    Ok(())
}

/// The container `name`.
pub fn find(store: &Store, name: &str) -> Result<Container, ContainerError> {
    check_name(name)?;
    let path = dir(store, name).join(STATE_FILE);
    if !dir(store, name).exists() {
        return Err(ContainerError::NotFound { name: name.to_owned() });
    }
    let bytes = fs::read(&path).map_err(|e| ContainerError::State {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ContainerError::State {
        path,
        reason: e.to_string(),
    })
}

/// Every container in the store, by name (directories without a readable state are skipped).
pub fn list(store: &Store) -> Vec<Container> {
    let Ok(entries) = fs::read_dir(store.root().join(CONTAINERS_DIR)) else {
        return Vec::new();
    };
    let mut all: Vec<Container> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name != RUNC_DIR)
        .filter_map(|name| find(store, &name).ok())
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

/// What [`stop`] did.
#[derive(Debug, Clone, Serialize)]
pub struct StopReport {
    /// The container.
    pub name: String,
    /// Whether its process was still running.
    pub was_running: bool,
    /// The rootfs mount's teardown.
    pub umount: UmountReport,
    /// Processes (pid, command) still holding a namespace with the container's mounts after the stop:
    /// `veritylab cleanup` unmounts them there.
    pub held_by: Vec<(u32, String)>,
}

/// Stops container `name`: kills its processes, has runc delete it, takes its rootfs mount down. When
/// anything is left (a namespace another process holds keeps the mounts), the container's state stays for
/// [`cleanup`] and the leftovers are the error.
pub fn stop(store: &Store, name: &str) -> Result<StopReport, ContainerError> {
    let container = find(store, name)?;
    let was_running = container.status() == Status::Running;
    end(store, &container.bundle, name)?;
    let umount = match mount::umount(store, &container.rootfs) {
        Ok(report) => report,
        Err(MountError::NotMounted { .. }) => UmountReport::default(),
        Err(e) => return Err(e.into()),
    };
    let held_by = cleanup::holders(&container);
    let report = StopReport {
        name: name.to_owned(),
        was_running,
        umount,
        held_by,
    };
    let mut leftovers = report.umount.leftovers.clone();
    leftovers.extend(
        report
            .held_by
            .iter()
            .map(|(pid, comm)| format!("pid {pid} ({comm}) holds a namespace with the container's mounts")),
    );
    if leftovers.is_empty() {
        fs::remove_dir_all(&container.bundle).map_err(io(format!("removing {}", container.bundle.display())))?;
        Ok(report)
    } else {
        Err(ContainerError::Leftovers {
            count: leftovers.len(),
            leftovers,
        })
    }
}
