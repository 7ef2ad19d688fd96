//! `verity-metadata-removed`: one layer's dm-verity metadata deleted and its data replaced.
//!
//! On the node disk the attacker writes a trojaned EROFS image (no tree) over a converted layer's
//! `layer.erofs` and deletes its `layer.erofs.dmverity` sidecar. A node that decides per layer whether to
//! use dm-verity by whether that sidecar exists (containerd's `dmverity_mode = "auto"`) mounts the trojan
//! as plain EROFS; one that requires it (`"on"`) refuses the layer.

use crate::catalogue::{AttackSpec, LAYER, TROJAN_CONTENT, TROJAN_PATH};
use crate::steps::{self, TrojanTarget};
use crate::{Attack, AttackError, Effect, Env, Stage};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct VerityMetadataRemoved(TrojanTarget);

/// `what: error` as the attack's own failure.
fn failed(what: &std::path::Path) -> impl Fn(std::io::Error) -> AttackError + '_ {
    move |e| AttackError::env(format!("{}: {e}", what.display()))
}

impl Attack for VerityMetadataRemoved {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let target = &self.0;
        let index = target.index(env.layer_count());
        let genuine = env.layer(index)?.erofs;
        let built = steps::trojan_layer(env, index, &target.path, target.content.as_bytes())?;
        // The trojan's EROFS data alone: the file ends where its tree would start.
        let mut data = std::fs::read(&built.erofs).map_err(failed(&built.erofs))?;
        data.truncate(usize::try_from(built.data_size).unwrap_or(data.len()));
        std::fs::write(&genuine, &data).map_err(failed(&genuine))?;
        let sidecar = genuine.with_file_name(veritylab::convert::SIDECAR_FILE);
        std::fs::remove_file(&sidecar).map_err(failed(&sidecar))?;
        Ok(format!(
            "wrote a trojaned EROFS image without a tree ({} bytes, /{} changed) over {} and deleted {}",
            data.len(),
            target.path,
            genuine.display(),
            sidecar.display()
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        self.0.look(env)
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "verity-metadata-removed",
    summary: "delete a converted layer's dm-verity sidecar and write a trojaned EROFS image without a tree over it",
    params: &[LAYER, TROJAN_PATH, TROJAN_CONTENT],
    create: |params| Ok(Box::new(VerityMetadataRemoved(TrojanTarget::from_params(params)))),
};
