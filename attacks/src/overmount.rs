//! `overmount`: a mount over a path inside the running container's rootfs, in its mount namespace.
//!
//! [`AddedMount`] is also the `extra-mount` attack: both add one mount in the container and take it away on
//! revert; they differ in where it goes and what is mounted.

use crate::catalogue::{AttackSpec, ParamType, opt, req};
use std::fs;
use std::path::PathBuf;

use crate::{Attack, AttackError, Effect, Env, MountKind, Params, Stage, TROJAN, layer_tar, steps};

/// The attacker's files for a mount of `kind` in the scratch directory: a directory holding `plugin.so`, or
/// for an unverified EROFS an image of it (with a tree, as a layer file, which no device checks).
fn attacker_files(env: &dyn Env, kind: MountKind) -> Result<PathBuf, AttackError> {
    let io = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |e: std::io::Error| AttackError::env(format!("{path}: {e}"))
    };
    let dir = env.scratch().join("plugins");
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let plugin = dir.join("plugin.so");
    fs::write(&plugin, TROJAN).map_err(io(&plugin))?;
    if kind != MountKind::UnverifiedErofs {
        return Ok(dir);
    }
    let tar = layer_tar::single_file("plugin.so", TROJAN.as_bytes())?;
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

/// `overmount` from the scenario's parameters (`path`, `fs`: `bind` or tmpfs by default).
pub(crate) fn new(params: &Params) -> Result<AddedMount, AttackError> {
    let kind = match params.string("fs") {
        Some("bind") => MountKind::Bind,
        _ => MountKind::Tmpfs,
    };
    Ok(AddedMount::new(SPEC.name, params.required("path")?, kind))
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

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        Ok(match env.mount_at(&self.path)? {
            Some(what) => Effect::Seen(format!("the container sees {what} mounted over /{}", self.path)),
            None => Effect::Genuine(format!("the container sees /{} on its rootfs", self.path)),
        })
    }

    fn revert(&mut self, env: &mut dyn Env) -> Result<(), AttackError> {
        if self.mounted {
            env.unmount_in_container(&self.path)?;
            self.mounted = false;
        }
        Ok(())
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "overmount",
    summary: "mount over a path inside the running container's rootfs, in its mount namespace",
    params: &[
        req("path", ParamType::Path, "the path covered"),
        opt(
            "fs",
            ParamType::Choice(&["tmpfs", "bind"]),
            "what is mounted over it (default: tmpfs)",
        ),
    ],
    create: |params| Ok(Box::new(new(params)?)),
};
