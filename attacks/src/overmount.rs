//! `overmount`: a mount over a path inside the running container's rootfs, in its mount namespace.
//!
//! [`AddedMount`] is also the `extra-mount` attack: both add one mount in the container holding the
//! attacker's executable `plugin.so`, try to execute it from the container, and take the mount away on
//! revert; they differ in where it goes and what is mounted.

use crate::catalogue::{AttackSpec, ParamSpec, ParamType, opt, req};
use std::fs;
use std::path::PathBuf;

use crate::{Attack, AttackError, Effect, Env, MountKind, Params, Stage, TROJAN, layer_tar, steps};

/// The attacker's executable, in each mount the attack adds.
const PLUGIN: &str = "plugin.so";

/// The attacker's files for a mount of `kind` in the scratch directory: a directory holding the executable
/// [`PLUGIN`], or for an unverified EROFS an image of it (with a tree, as a layer file, which no device checks).
fn attacker_files(env: &dyn Env, kind: MountKind) -> Result<PathBuf, AttackError> {
    let io = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |e: std::io::Error| AttackError::env(format!("{path}: {e}"))
    };
    let dir = env.scratch().join("plugins");
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let plugin = dir.join(PLUGIN);
    fs::write(&plugin, TROJAN).map_err(io(&plugin))?;
    fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(io(&plugin))?;
    if kind != MountKind::UnverifiedErofs {
        return Ok(dir);
    }
    let tar = layer_tar::single_file(PLUGIN, TROJAN.as_bytes())?;
    Ok(steps::build_layer(env, &tar, "plugins.erofs")?.erofs)
}

/// A mount added inside the running container.
#[derive(Debug, Clone)]
pub(crate) struct AddedMount {
    name: &'static str,
    path: String,
    kind: MountKind,
    mounted: bool,
}

impl AddedMount {
    /// The attack `name`, mounting `kind` at `path`.
    pub(crate) fn new(name: &'static str, path: String, kind: MountKind) -> Self {
        Self {
            name,
            path,
            kind,
            mounted: false,
        }
    }
}

/// The `fs` parameter's choice between a tmpfs (the default) and a bind mount.
pub(crate) fn tmpfs_or_bind(params: &Params) -> MountKind {
    match params.string("fs") {
        Some("bind") => MountKind::Bind,
        _ => MountKind::Tmpfs,
    }
}

/// The `fs` parameter of attacks that mount a tmpfs or a bind mount.
pub(crate) const TMPFS_OR_BIND: ParamSpec = opt(
    "fs",
    ParamType::Choice(&["tmpfs", "bind"]),
    "what is mounted (default: tmpfs)",
);

/// Takes away the mount at `path` if `mounted` says it is there, and records that it is gone.
pub(crate) fn unmount(env: &mut dyn Env, path: &str, mounted: &mut bool) -> Result<(), AttackError> {
    if *mounted {
        env.unmount_in_container(path)?;
        *mounted = false;
    }
    Ok(())
}

/// `overmount` from the scenario's parameters (`path`, `fs`: `bind` or tmpfs by default).
pub(crate) fn new(params: &Params) -> Result<AddedMount, AttackError> {
    Ok(AddedMount::new(
        SPEC.name,
        params.required("path")?,
        tmpfs_or_bind(params),
    ))
}

impl Attack for AddedMount {
    fn name(&self) -> &'static str {
        self.name
    }

    fn stage(&self) -> Stage {
        Stage::Runtime
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let source = attacker_files(env, self.kind)?;
        let done = env.mount_in_container(&self.path, self.kind, &source)?;
        self.mounted = true;
        Ok(done)
    }

    /// The mount seen over the path, and the planted executable run from it (an exec policy's refusal is the
    /// lab's, and ends the look).
    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let Some(what) = env.mount_at(&self.path)? else {
            return Ok(Effect::Genuine(format!(
                "the container sees /{} on its rootfs",
                self.path
            )));
        };
        let ran = env.exec_in_container(&format!("{}/{PLUGIN}", self.path))?;
        Ok(Effect::Seen(format!(
            "the container sees {what} mounted over /{}, and {ran}",
            self.path
        )))
    }

    fn revert(&mut self, env: &mut dyn Env) -> Result<(), AttackError> {
        unmount(env, &self.path, &mut self.mounted)
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "overmount",
    summary: "mount over a path inside the running container's rootfs, in its mount namespace",
    params: &[req("path", ParamType::Path, "the path covered"), TMPFS_OR_BIND],
    create: |params| Ok(Box::new(new(params)?)),
};
