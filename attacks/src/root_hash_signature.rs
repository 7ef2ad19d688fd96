//! `root-hash-signature`: a layer's kernel root-hash signature in the stored manifest that the kernel would
//! refuse (none at all, one by a key the node does not trust, or the publisher's signature over the root
//! hash's 32 bytes instead of its hex text, the mistake one public implementation makes), with the image's
//! own signature kept. The delivery-kit payload leaves layer annotations out, so the image still verifies;
//! the layer's content and root hash are the publisher's. What changes is whether a trusted key vouches for
//! the root hash to the kernel: the attacker wants the node to run the image's code without that.

use veritylab::root_hash::RootHash;
use veritylab::sign::ROOT_HASH_SIGNATURE;

use crate::catalogue::{AttackSpec, LAYER, ParamType, SCHEME, opt};
use crate::{Attack, AttackError, Effect, Env, Params, SigningKey, Stage, root_hash_annotation, steps};

/// Which signature the layer is left with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No root-hash signature.
    Missing,
    /// A signature by a key the node does not trust, over the right root hash.
    OtherKey,
    /// The trusted publisher's signature over the binary root hash instead of its hex text.
    BinaryDigest,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::OtherKey => "by a key the node does not trust",
            Kind::BinaryDigest => "over the binary root hash instead of its hex text",
        }
    }
}

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct RootHashSignature {
    layer: Option<usize>,
    kind: Kind,
    index: usize,
}

/// From the scenario's parameters (`layer`, `signature`; `scheme` is the image's, set up by the lab).
pub(crate) fn new(params: &Params) -> RootHashSignature {
    let kind = match params.string("signature") {
        Some("other-key") => Kind::OtherKey,
        Some("binary-digest") => Kind::BinaryDigest,
        _ => Kind::Missing,
    };
    RootHashSignature {
        layer: params.layer(),
        kind,
        index: 0,
    }
}

impl Attack for RootHashSignature {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        self.index = self.layer.unwrap_or(env.layer_count().saturating_sub(1));
        let mut manifest = steps::manifest(env)?;
        let layer = manifest
            .layers
            .get_mut(self.index)
            .ok_or_else(|| AttackError::env(format!("the manifest has no layer {}", self.index)))?;
        let root: RootHash = root_hash_annotation::KEYS
            .iter()
            .find_map(|key| layer.annotations.get(*key))
            .ok_or_else(|| AttackError::env(format!("layer {} has no root-hash annotation", self.index)))?
            .parse()
            .map_err(|e| AttackError::env(format!("layer {}: root hash: {e}", self.index)))?;
        let signature = match self.kind {
            Kind::Missing => None,
            Kind::OtherKey => Some(env.kernel_signature(SigningKey::Untrusted, root.to_string().as_bytes())?),
            Kind::BinaryDigest => Some(env.kernel_signature(SigningKey::Trusted, root.as_bytes())?),
        };
        let old = match &signature {
            None => layer.annotations.remove(ROOT_HASH_SIGNATURE),
            Some(der) => {
                use base64::Engine as _;
                let value = base64::engine::general_purpose::STANDARD.encode(der);
                layer.annotations.insert(ROOT_HASH_SIGNATURE.to_owned(), value)
            }
        };
        if old.is_none() {
            return Err(AttackError::env(format!(
                "layer {} carries no {ROOT_HASH_SIGNATURE} to replace",
                self.index
            )));
        }
        let digest = steps::replace_manifest(env, &manifest, true)?;
        Ok(format!(
            "layer {}: the root-hash signature is now {}; the manifest is now {digest}, the image's signature kept",
            self.index,
            self.kind.describe()
        ))
    }

    /// The attacker's aim is the image's code running with no trusted key vouching for its root hash to the
    /// kernel: the container runs `bin/app` from that layer.
    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let ran = env.exec_in_container("bin/app")?;
        Ok(Effect::Seen(format!(
            "{ran}, from layer {} whose root-hash signature is {}",
            self.index,
            self.kind.describe()
        )))
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "root-hash-signature",
    summary: "leave a layer with a kernel root-hash signature the kernel refuses, keeping the image's signature",
    params: &[
        LAYER,
        SCHEME,
        opt(
            "signature",
            ParamType::Choice(&["missing", "other-key", "binary-digest"]),
            "what the layer's root-hash signature becomes (default: missing)",
        ),
    ],
    create: |params| Ok(Box::new(new(params))),
};
