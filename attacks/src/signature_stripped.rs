//! `signature-stripped`: a modified image served with no signature at all.

use crate::catalogue::{AttackSpec, SCHEME};
use crate::{Attack, AttackError, Effect, Env, Stage, TROJAN, steps};
use veritylab::sign::{Scheme, cosign, delivery_kit};

/// Deletes every signature of the image: its cosign signature's tag, or the delivery-kit signature embedded
/// in its manifest.
pub(crate) fn remove_signatures(env: &mut dyn Env) -> Result<String, AttackError> {
    let (descriptor, mut manifest) = steps::manifest_of(env, env.image())?;
    if env.scheme() == Scheme::Cosign {
        let tag = format!(
            "{}:{}",
            steps::repository(env),
            cosign::signature_tag(&descriptor.digest)
        );
        env.store()
            .untag(&tag)
            .map_err(|e| AttackError::env(format!("{tag}: {e}")))?;
        return Ok(format!("deleted the cosign signature {tag}"));
    }
    manifest.annotations.remove(delivery_kit::SIGNATURE);
    let digest = steps::replace_manifest(env, &manifest, false)?;
    Ok(format!(
        "removed the embedded {} annotation; the manifest is now {digest}",
        delivery_kit::SIGNATURE
    ))
}

/// The attack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignatureStripped;

impl Attack for SignatureStripped {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let removed = remove_signatures(env)?;
        let modified = steps::modify_image(env, "bin/app", TROJAN.as_bytes())?;
        Ok(format!("{removed}; {modified}"))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let seen = env.read_in_container("bin/app")?;
        Ok(Effect::read("bin/app", &seen, TROJAN.as_bytes()))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "signature-stripped",
    summary: "serve a modified image with its signature deleted",
    params: &[SCHEME],
    create: |_| Ok(Box::new(SignatureStripped)),
};
