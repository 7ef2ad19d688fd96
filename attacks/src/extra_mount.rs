//! `extra-mount`: a mount that is not on a verified device, added at a fresh path inside the container
//! (the same lifecycle as [`overmount`](crate::overmount), another place and filesystem).

use crate::catalogue::{AttackSpec, ParamType, opt, req};
use crate::overmount::AddedMount;
use crate::{AttackError, MountKind, Params};

/// `extra-mount` from the scenario's parameters (`path`, `fs`: `tmpfs` or an unverified EROFS by default).
pub(crate) fn new(params: &Params) -> Result<AddedMount, AttackError> {
    let kind = match params.string("fs") {
        Some("tmpfs") => MountKind::Tmpfs,
        _ => MountKind::UnverifiedErofs,
    };
    Ok(AddedMount::new(SPEC.name, params.required("path")?, kind))
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "extra-mount",
    summary: "add a mount that is not on a verified device inside the container",
    params: &[
        req("path", ParamType::Path, "where it is mounted"),
        opt(
            "fs",
            ParamType::Choice(&["tmpfs", "unverified-erofs"]),
            "what is mounted (default: unverified-erofs)",
        ),
    ],
    create: |params| Ok(Box::new(new(params)?)),
};
