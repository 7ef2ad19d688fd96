//! Signing and verification: each layer's dm-verity root hash carried in a signed manifest, so a node mounts
//! exactly the EROFS the publisher built.
//!
//! Data flow when signing ([`image::sign_image`]): stored image → each layer converted ([`crate::convert`]) →
//! [`annotate`] writes root hashes and tree parameters into a copy of the manifest (same config and layers,
//! new digest) → the new manifest is stored and tagged → [`cosign`] signs a simple-signing payload naming its
//! digest and stores the signature manifest at `sha256-<hex>.sig`, or [`delivery_kit`] embeds Deckhouse
//! delivery-kit's signature in the manifest itself → `remote` pushes both.
//!
//! Verifying ([`verify::verify_image`]) runs the other way under a `policy` and returns a
//! [`verify::VerifiedImage`] (the exact manifest digest and ordered layers checked, each layer's root hash a
//! [`verify::SignedRootHash`] when the image's own signature verified with a trusted key), or the
//! [`verify::Report`] of every check with typed findings. [`keys`] reads and writes P-256 key pairs;
//! `kernel_signature` makes their X.509 certificates and the PKCS#7 root-hash signatures the kernel checks,
//! which `kernel_annotation` carries in each layer's descriptor (covered by the image signature) and beside
//! the layer.

pub mod annotate;
pub mod cosign;
pub mod delivery_kit;
pub(crate) mod image;
pub(crate) mod kernel_annotation;
pub mod kernel_signature;
pub mod keys;
pub(crate) mod policy;
pub(crate) mod remote;
pub(crate) mod timestamp;
pub(crate) mod verify;

pub use image::{CosignSignature, SignError, SignOptions, SignReport, SignedLayer, read_image, sign_image};
pub use kernel_annotation::{LayerSignature, LayerSignatureError, ROOT_HASH_SIGNATURE};
pub use kernel_signature::{KernelSignatureError, root_hash_signature};
pub use policy::{
    DEFAULT_RULE, KeySet, Policy, PolicyError, PolicyFile, Requirements, Rule, RuleFile, Unmatched, is_namespace_name,
};
pub use remote::{PushReport, SignatureTransferError, fetch_signatures, push_signed};
pub use timestamp::{BuildTimestamp, TimestampError};
pub use verify::{
    Check, CheckName, DataCheck, LayerSource, Outcome, Report, SignatureFinding, SignedBy, SignedRootHash,
    VerifiedImage, VerifiedLayer, VerifyError, VerifyOptions, verify_image,
};

use serde::Serialize;

use crate::oci::Digest;
use crate::oci::reference::{Reference, ReferenceError, RegistryRef};

/// How an image is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// cosign simple signing: a payload naming the manifest digest, in a signature manifest beside the image.
    Cosign,
    /// Deckhouse delivery-kit's signature, embedded in the manifest's annotations (does not cover layer annotations).
    DeliveryKit,
}

impl Scheme {
    /// The scheme's name.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Cosign => "cosign",
            Scheme::DeliveryKit => "delivery-kit",
        }
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Scheme {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "cosign" => Ok(Self::Cosign),
            "delivery-kit" => Ok(Self::DeliveryKit),
            _ => Err(format!("scheme {text:?} is not cosign or delivery-kit")),
        }
    }
}

/// An image's name in the store, split into the parts signing needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageName {
    /// The whole name (`HOST/REPO:TAG`, `HOST/REPO@sha256:…`, `oci:DIR:TAG`).
    pub name: String,
    /// The repository without tag or digest (`HOST/REPO`, `oci:DIR`): cosign's `docker-reference`.
    pub repository: String,
    /// The tag, if the name has one.
    pub tag: Option<String>,
    /// The digest, if the name pins one.
    pub digest: Option<Digest>,
    /// The registry, for names of registry images.
    #[serde(skip)]
    pub registry: Option<RegistryRef>,
}

impl ImageName {
    /// Splits a store name (as `pull` records it).
    pub fn parse(name: &str) -> Result<Self, ReferenceError> {
        Ok(Self::from_reference(&name.parse()?))
    }

    /// The store name of a reference, split.
    pub fn from_reference(reference: &Reference) -> Self {
        let name = crate::oci::pull::store_name(reference);
        match reference {
            Reference::Registry(r) => Self {
                name,
                repository: format!("{}/{}", r.host, r.repository),
                tag: r
                    .tag
                    .clone()
                    .or_else(|| r.digest.is_none().then(|| "latest".to_owned())),
                digest: r.digest,
                registry: Some(r.clone()),
            },
            Reference::Layout(l) | Reference::Archive(l) => {
                let tag_suffix = l.tag.as_ref().map_or(0, |t| t.len() + 1);
                Self {
                    repository: name[..name.len() - tag_suffix].to_owned(),
                    name,
                    tag: l.tag.clone(),
                    digest: None,
                    registry: None,
                }
            }
        }
    }

    /// The store name of `tag` in the same repository.
    pub fn with_tag(&self, tag: &str) -> String {
        format!("{}:{tag}", self.repository)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_repository_tag_and_digest() {
        let n = ImageName::parse("127.0.0.1:5000/lab/demo:v1").unwrap();
        assert_eq!(n.repository, "127.0.0.1:5000/lab/demo");
        assert_eq!(n.tag.as_deref(), Some("v1"));
        assert_eq!(n.with_tag("sha256-x.sig"), "127.0.0.1:5000/lab/demo:sha256-x.sig");
        let d = Digest::of(b"m");
        let n = ImageName::parse(&format!("127.0.0.1:5000/lab/demo@{d}")).unwrap();
        assert_eq!((n.tag, n.digest), (None, Some(d)));
        let n = ImageName::parse("oci:/tmp/layout:v1").unwrap();
        assert_eq!(n.repository, "oci:/tmp/layout");
        assert_eq!(n.name, "oci:/tmp/layout:v1");
    }
}
