//! From an image's config and the command line to an OCI runtime bundle's `config.json`: pure functions
//! over bytes and values, no I/O.
//!
//! The image config gives the process (`Entrypoint` then `Cmd`, or the command line's arguments in place
//! of `Cmd`), its environment, working directory and user; the command line gives the volumes. The runtime
//! mounts are runc's usual set (proc, a tmpfs `/dev` with devpts, shm and mqueue, a read-only sysfs and the
//! cgroup hierarchy), with the usual masked and read-only paths; the audit expects exactly these, so they are
//! declared once here ([`RUNTIME_MOUNTS`], [`MASKED_PATHS`], [`READONLY_PATHS`]).

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ContainerError;

/// The largest image config `run` reads.
pub const CONFIG_LIMIT: u64 = 4 << 20;

/// The runtime's own mounts: (destination, type, source, options).
pub const RUNTIME_MOUNTS: &[(&str, &str, &str, &[&str])] = &[
    ("/proc", "proc", "proc", &[]),
    (
        "/dev",
        "tmpfs",
        "tmpfs",
        &["nosuid", "strictatime", "mode=755", "size=65536k"],
    ),
    (
        "/dev/pts",
        "devpts",
        "devpts",
        &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    ),
    (
        "/dev/shm",
        "tmpfs",
        "shm",
        &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    ),
    ("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
    ("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
    (
        "/sys/fs/cgroup",
        "cgroup",
        "cgroup",
        &["nosuid", "noexec", "nodev", "relatime", "ro"],
    ),
];

/// Paths the runtime hides (a tmpfs over a directory, `/dev/null` over a file).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// Paths the runtime bind-mounts read-only over themselves.
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The search path a process gets when the image sets none.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The part of an OCI image config `run` uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// The entrypoint.
    pub entrypoint: Vec<String>,
    /// The default arguments (replaced by the command line's).
    pub cmd: Vec<String>,
    /// `NAME=VALUE` pairs.
    pub env: Vec<String>,
    /// The working directory (`/` when unset).
    pub working_dir: String,
    /// `user`, `uid`, `user:group` or `uid:gid` (root when unset).
    pub user: String,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<ConfigSection>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConfigSection {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

impl ImageConfig {
    /// Parses an image config blob (`application/vnd.oci.image.config.v1+json`).
    pub fn parse(bytes: &[u8]) -> Result<Self, ContainerError> {
        let file: ConfigFile =
            serde_json::from_slice(bytes).map_err(|e| ContainerError::ImageConfig { reason: e.to_string() })?;
        let section = file.config.unwrap_or_default();
        Ok(Self {
            entrypoint: section.entrypoint.unwrap_or_default(),
            cmd: section.cmd.unwrap_or_default(),
            env: section.env.unwrap_or_default(),
            working_dir: section.working_dir.unwrap_or_default(),
            user: section.user.unwrap_or_default(),
        })
    }

    /// The process's arguments: the entrypoint, then `command` if given, else the image's `Cmd`.
    pub fn args(&self, command: &[String]) -> Result<Vec<String>, ContainerError> {
        let tail = if command.is_empty() { &self.cmd } else { command };
        let args: Vec<String> = self.entrypoint.iter().chain(tail).cloned().collect();
        match args.first() {
            None => Err(ContainerError::NoCommand),
            Some(first) if first.is_empty() => Err(ContainerError::NoCommand),
            Some(_) => Ok(args),
        }
    }

    /// The environment, with a default `PATH` when the image sets none.
    pub fn environment(&self) -> Vec<String> {
        let mut env = self.env.clone();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH.to_owned());
        }
        env
    }

    /// The working directory, `/` when unset.
    pub fn cwd(&self) -> String {
        if self.working_dir.is_empty() {
            "/".to_owned()
        } else {
            self.working_dir.clone()
        }
    }
}

/// A volume from `-v SRC:DST[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The host path (absolute once validated).
    pub source: PathBuf,
    /// Where it appears in the container (absolute, no `..`).
    pub destination: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

impl std::str::FromStr for Volume {
    type Err = ContainerError;

    fn from_str(text: &str) -> Result<Self, ContainerError> {
        let bad = |reason: &str| ContainerError::BadVolume {
            volume: text.to_owned(),
            reason: reason.to_owned(),
        };
        let parts: Vec<&str> = text.split(':').collect();
        let (source, destination, read_only) = match parts.as_slice() {
            [source, destination] => (*source, *destination, false),
            [source, destination, "ro"] => (*source, *destination, true),
            [source, destination, "rw"] => (*source, *destination, false),
            [_, _, other] => return Err(bad(&format!("option {other:?} is not ro or rw"))),
            _ => return Err(bad("not SRC:DST or SRC:DST:ro")),
        };
        if source.is_empty() || destination.is_empty() {
            return Err(bad("not SRC:DST or SRC:DST:ro"));
        }
        let destination = PathBuf::from(destination);
        if !destination.is_absolute() {
            return Err(bad("the destination must be an absolute path in the container"));
        }
        if destination.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(bad("the destination leaves the rootfs (`..`)"));
        }
        if destination.components().count() < 2 {
            return Err(bad("the destination cannot be the rootfs itself"));
        }
        Ok(Self {
            source: PathBuf::from(source),
            destination,
            read_only,
        })
    }
}

/// What the process runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Resolves the image's `User` against the rootfs's `/etc/passwd` and `/etc/group` text (either may be
/// absent, then only numeric ids resolve).
pub fn resolve_user(user: &str, passwd: &str, group: &str) -> Result<User, ContainerError> {
    if user.is_empty() {
        return Ok(User { uid: 0, gid: 0 });
    }
    let unknown = || ContainerError::UnknownUser { user: user.to_owned() };
    let (name, group_name) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let entries = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split(':').map(str::to_owned).collect())
            .collect()
    };
    let users = entries(passwd);
    let (uid, primary) = match name.parse::<u32>() {
        Ok(uid) => (
            uid,
            users
                .iter()
                .find(|e| e.get(2).and_then(|f| f.parse::<u32>().ok()) == Some(uid))
                .and_then(|e| e.get(3)?.parse().ok()),
        ),
        Err(_) => {
            let entry = users
                .iter()
                .find(|e| e.first().map(String::as_str) == Some(name))
                .ok_or_else(unknown)?;
            let uid = entry.get(2).and_then(|f| f.parse().ok()).ok_or_else(unknown)?;
            (uid, entry.get(3).and_then(|f| f.parse().ok()))
        }
    };
    let gid = match group_name {
        None => primary.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => entries(group)
                .iter()
                .find(|e| e.first().map(String::as_str) == Some(g))
                .and_then(|e| e.get(2)?.parse().ok())
                .ok_or_else(unknown)?,
        },
    };
    Ok(User { uid, gid })
}

/// Everything the bundle's `config.json` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSpec<'a> {
    /// The rootfs (absolute; in the mount's namespace).
    pub rootfs: &'a Path,
    /// Mount the rootfs read-only.
    pub read_only: bool,
    /// The process's arguments.
    pub args: &'a [String],
    /// Its environment.
    pub env: &'a [String],
    /// Its working directory.
    pub cwd: &'a str,
    /// Its user.
    pub user: User,
    /// The container's hostname.
    pub hostname: &'a str,
    /// The volumes.
    pub volumes: &'a [Volume],
}

/// The OCI runtime config (`config.json`) for `spec`.
pub fn runtime_config(spec: &BundleSpec<'_>) -> serde_json::Value {
    use serde_json::json;
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut mounts: Vec<serde_json::Value> = RUNTIME_MOUNTS
        .iter()
        .map(|(destination, kind, source, options)| {
            json!({"destination": destination, "type": kind, "source": source, "options": options})
        })
        .collect();
    for volume in spec.volumes {
        let mut options = vec!["rbind", "rprivate"];
        if volume.read_only {
            options.push("ro");
        }
        mounts.push(json!({
            "destination": volume.destination,
            "type": "bind",
            "source": volume.source,
            "options": options,
        }));
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": spec.user.uid, "gid": spec.user.gid},
            "args": spec.args,
            "env": spec.env,
            "cwd": spec.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": spec.rootfs, "readonly": spec.read_only},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    })
}

/// Why a mount point of the container's table is expected, given the bundle's volumes: the rootfs, one of
/// the runtime's mounts (the cgroup hierarchy below its directory included), a masked or read-only path, or
/// a volume. `None` for anything else.
pub fn expected_because(mount_point: &Path, volumes: &[Volume]) -> Option<String> {
    if mount_point == Path::new("/") {
        return Some("the rootfs".to_owned());
    }
    if let Some((destination, kind, ..)) = RUNTIME_MOUNTS.iter().find(|(d, ..)| mount_point == Path::new(d)) {
        return Some(format!("the runtime's {kind} at {destination}"));
    }
    if mount_point.starts_with("/sys/fs/cgroup") {
        return Some("the runtime's cgroup hierarchy".to_owned());
    }
    if MASKED_PATHS.iter().any(|p| mount_point == Path::new(p)) {
        return Some("a path the runtime masks".to_owned());
    }
    if READONLY_PATHS.iter().any(|p| mount_point == Path::new(p)) {
        return Some("a path the runtime makes read-only".to_owned());
    }
    volumes
        .iter()
        .find(|v| v.destination == mount_point)
        .map(|v| format!("the volume {}:{}", v.source.display(), v.destination.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_replaces_cmd_and_keeps_the_entrypoint() {
        let config = ImageConfig::parse(
            br#"{"config":{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],"Env":["A=1"],"WorkingDir":"/w"}}"#,
        )
        .unwrap();
        assert_eq!(config.args(&[]).unwrap(), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(config.args(&["id".to_owned()]).unwrap(), ["/bin/sh", "-c", "id"]);
        assert_eq!(config.cwd(), "/w");
        assert!(config.environment()[0].starts_with("PATH="));
        assert!(matches!(
            ImageConfig::parse(b"{}").unwrap().args(&[]),
            Err(ContainerError::NoCommand)
        ));
        assert!(matches!(
            ImageConfig::parse(b"[1"),
            Err(ContainerError::ImageConfig { .. })
        ));
    }

    #[test]
    fn volumes_are_parsed_and_escapes_refused() {
        let v: Volume = "/src:/data:ro".parse().unwrap();
        assert_eq!((v.destination.as_path(), v.read_only), (Path::new("/data"), true));
        for bad in ["/src:/../etc", "/src:data", "/src", "/src:/", "/src:/d:xx", ":/d"] {
            assert!(
                matches!(bad.parse::<Volume>(), Err(ContainerError::BadVolume { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn users_resolve_by_name_or_id_and_unknown_names_are_refused() {
        let passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
        let group = "root:x:0:\nstaff:x:50:\n";
        assert_eq!(resolve_user("", passwd, group).unwrap(), User { uid: 0, gid: 0 });
        assert_eq!(
            resolve_user("app", passwd, group).unwrap(),
            User { uid: 1000, gid: 1001 }
        );
        assert_eq!(
            resolve_user("app:staff", passwd, group).unwrap(),
            User { uid: 1000, gid: 50 }
        );
        assert_eq!(resolve_user("42:7", "", "").unwrap(), User { uid: 42, gid: 7 });
        assert!(matches!(
            resolve_user("nobody-here", passwd, group),
            Err(ContainerError::UnknownUser { .. })
        ));
    }

    #[test]
    fn the_runtime_mounts_and_volumes_are_expected_and_nothing_else() {
        let volumes = vec!["/h:/data".parse::<Volume>().unwrap()];
        for point in [
            "/",
            "/proc",
            "/dev/mqueue",
            "/sys/fs/cgroup/memory",
            "/proc/kcore",
            "/proc/sys",
            "/data",
        ] {
            assert!(expected_because(Path::new(point), &volumes).is_some(), "{point}");
        }
        for point in ["/usr/bin", "/etc", "/data/x"] {
            assert!(expected_because(Path::new(point), &volumes).is_none(), "{point}");
        }
    }
}
