//! `extra-mount`: a mount that is not on a verified device, added at a fresh path inside the container
//! (the same lifecycle as [`overmount`](crate::overmount), another place and filesystem).

use crate::overmount::AddedMount;
use crate::{AttackError, MountKind, Params};

/// `extra-mount` from the scenario's parameters (`path`, `fs`: `tmpfs` or an unverified EROFS by default).
pub fn new(params: &Params) -> Result<AddedMount, AttackError> {
    let kind = match params.string("fs") {
        Some("tmpfs") => MountKind::Tmpfs,
        _ => MountKind::UnverifiedErofs,
    };
    Ok(AddedMount::new("extra-mount", params.required("path")?, kind))
}
