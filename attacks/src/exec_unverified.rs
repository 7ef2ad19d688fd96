//! `exec-unverified`: the image's own `bin/app`, copied byte for byte onto a filesystem no verified device
//! backs (a tmpfs, or a bind mount of a host directory) inside the running container, and executed from
//! there. The bytes are genuine; what differs is where they are: an attacker who can run a copy from such a
//! place can run anything from it. The attack first runs `bin/app` from the rootfs, so a profile that refuses
//! every execution cannot pass for one that refuses only the copy.

use std::fs;

use crate::catalogue::{AttackSpec, ParamType, req};
use crate::{Attack, AttackError, Effect, Env, MountKind, Params, Stage, overmount};

/// The genuine binary the attack copies and runs.
const APP: &str = "bin/app";

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct ExecUnverified {
    path: String,
    kind: MountKind,
    mounted: bool,
}

/// From the scenario's parameters (`path`, where the filesystem is mounted; `fs`: `tmpfs` or `bind`).
pub(crate) fn new(params: &Params) -> Result<ExecUnverified, AttackError> {
    Ok(ExecUnverified {
        path: params.required("path")?,
        kind: overmount::tmpfs_or_bind(params),
        mounted: false,
    })
}

impl ExecUnverified {
    fn copy(&self) -> String {
        format!("{}/app", self.path)
    }
}

impl Attack for ExecUnverified {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::Runtime
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let bytes = env.read_in_container(APP)?;
        let dir = env.scratch().join("copy");
        let io = |e: std::io::Error| AttackError::env(format!("{}: {e}", dir.display()));
        fs::create_dir_all(&dir).map_err(io)?;
        let file = dir.join("app");
        fs::write(&file, &bytes).map_err(io)?;
        fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(io)?;
        let done = env.mount_in_container(&self.path, self.kind, &dir)?;
        self.mounted = true;
        Ok(format!(
            "copied /{APP} ({} bytes) to /{}: {done}",
            bytes.len(),
            self.copy()
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let genuine = env.exec_in_container(APP)?;
        let copy = env.exec_in_container(&self.copy())?;
        Ok(Effect::Seen(format!(
            "from the rootfs, {genuine}; from the unverified filesystem, {copy}"
        )))
    }

    fn revert(&mut self, env: &mut dyn Env) -> Result<(), AttackError> {
        overmount::unmount(env, &self.path, &mut self.mounted)
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "exec-unverified",
    summary: "run a copy of the image's own binary from a tmpfs or bind mount inside the container",
    params: &[
        req("path", ParamType::Path, "where the unverified filesystem is mounted"),
        overmount::TMPFS_OR_BIND,
    ],
    create: |params| Ok(Box::new(new(params)?)),
};
