//! The steps several attacks share, written on [`Env`]'s primitives and the lab's own API: reading the
//! image's manifest and layers from the node's store, publishing a variant of it, retagging, building a
//! layer file with a correct tree as the node's conversion would.

use std::fs;
use std::path::Path;

use veritylab::convert::{VerityLayout, verity};
use veritylab::erofs::{self, FileTime, OverlayNamespace, Whiteouts};
use veritylab::oci::Digest;
use veritylab::oci::manifest::{Descriptor, ImageManifest, Platform};
use veritylab::oci::store_tars;
use veritylab::sign::cosign;

use crate::layer_tar;
use crate::{AttackError, Env, SigningKey, Trojan};

/// A limit on the manifests read back from the store.
const MANIFEST_LIMIT: u64 = 4 << 20;
/// A limit on the layer tars read back from the store.
const LAYER_LIMIT: u64 = 1 << 30;

fn env_err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> AttackError + '_ {
    move |e| AttackError::env(format!("{what}: {e}"))
}

/// The repository of the image under test (its name without the tag).
pub(crate) fn repository(env: &dyn Env) -> &str {
    let name = env.image();
    name.rsplit_once(':').map_or(name, |(repository, _)| repository)
}

/// The image `name`'s descriptor and manifest in the node's store.
pub(crate) fn manifest_of(env: &dyn Env, name: &str) -> Result<(Descriptor, ImageManifest), AttackError> {
    let store = env.store();
    let descriptor = store.lookup(name).map_err(env_err(name))?;
    let bytes = store
        .read_blob(&descriptor.digest, descriptor.size, MANIFEST_LIMIT, "manifest")
        .map_err(env_err(name))?;
    let manifest = serde_json::from_slice(&bytes).map_err(env_err("the stored manifest"))?;
    Ok((descriptor, manifest))
}

/// The image under test's manifest in the node's store.
pub(crate) fn manifest(env: &dyn Env) -> Result<ImageManifest, AttackError> {
    manifest_of(env, env.image()).map(|(_, manifest)| manifest)
}

/// Layer `index`'s tar as the node's store holds it.
pub(crate) fn layer_tar(env: &dyn Env, manifest: &ImageManifest, index: usize) -> Result<Vec<u8>, AttackError> {
    let layer = manifest
        .layers
        .get(index)
        .ok_or_else(|| AttackError::env(format!("layer {index}: the image has {} layers", manifest.layers.len())))?;
    env.store()
        .read_blob(&layer.digest, layer.size, LAYER_LIMIT, "layer")
        .map_err(env_err("the stored layer"))
}

/// Every layer's tar of the image under test, base first.
pub(crate) fn layer_tars(env: &dyn Env) -> Result<Vec<Vec<u8>>, AttackError> {
    let manifest = manifest(env)?;
    (0..manifest.layers.len())
        .map(|i| layer_tar(env, &manifest, i))
        .collect()
}

/// Stores an image of `tars` (base first) in the node's store as `name` in the image's repository, unsigned;
/// returns its descriptor.
pub(crate) fn publish(env: &dyn Env, tag: &str, tars: &[Vec<u8>]) -> Result<Descriptor, AttackError> {
    let name = format!("{}:{tag}", repository(env));
    store_tars(env.store(), &name, &Platform::host(), tars).map_err(env_err(&name))
}

/// Stores an image of `tars` as [`publish`] does and signs it with `key` as built at `built`; returns the signed
/// image's descriptor.
pub(crate) fn publish_signed(
    env: &mut dyn Env,
    tag: &str,
    tars: &[Vec<u8>],
    key: SigningKey,
    built: u64,
) -> Result<Descriptor, AttackError> {
    publish(env, tag, tars)?;
    let name = format!("{}:{tag}", repository(env));
    env.sign(&name, key, built)?;
    env.store().lookup(&name).map_err(env_err(&name))
}

/// Points the image's name at `descriptor`.
pub(crate) fn retag(env: &dyn Env, descriptor: Descriptor) -> Result<(), AttackError> {
    env.store().tag(env.image(), descriptor).map_err(env_err("tagging"))
}

/// Stores `manifest` and points the image's name at it; with `keep_signature`, the current manifest's cosign
/// signature is attached to the new one as well, as an attacker copying it would. Returns the new digest.
pub(crate) fn replace_manifest(
    env: &dyn Env,
    manifest: &ImageManifest,
    keep_signature: bool,
) -> Result<Digest, AttackError> {
    let store = env.store();
    let old = store.lookup(env.image()).map_err(env_err("manifest"))?;
    let bytes = serde_json::to_vec(manifest).map_err(env_err("manifest"))?;
    let digest = Digest::of(&bytes);
    store
        .put_bytes(&digest, bytes.len() as u64, &bytes)
        .map_err(env_err("manifest"))?;
    retag(
        env,
        Descriptor {
            digest,
            size: bytes.len() as u64,
            ..old.clone()
        },
    )?;
    let repository = repository(env);
    if keep_signature
        && let Some(signatures) = cosign::load(store, repository, &old.digest).map_err(env_err("signatures"))?
    {
        cosign::save(store, repository, &digest, &cosign::SignatureImage::new(&signatures))
            .map_err(env_err("signatures"))?;
    }
    Ok(digest)
}

/// Replaces the image with a copy whose added top layer gives the file at `path` the `content`, unsigned.
pub(crate) fn modify_image(env: &dyn Env, path: &str, content: &[u8]) -> Result<String, AttackError> {
    let mut tars = layer_tars(env)?;
    tars.push(layer_tar::single_file(path, content)?);
    let modified = publish(env, "modified", &tars)?;
    retag(env, modified.clone())?;
    Ok(format!(
        "{} now names the modified image {} (/{path} changed by an added layer), unsigned",
        env.image(),
        modified.digest
    ))
}

/// Builds, in the scratch directory as `file`, an EROFS image of `tar` the way the node's conversion does,
/// with its tree appended.
pub(crate) fn build_layer(env: &dyn Env, tar: &[u8], file: &str) -> Result<Trojan, AttackError> {
    let options = erofs::Options {
        block_size: 4096,
        inline_data: false,
        build_time: Some(FileTime { secs: 0, nanos: 0 }),
        uuid: [7; 16],
    };
    let dest = env.scratch().join(file);
    let _ = fs::remove_file(&dest);
    erofs::build_from_tar(&dest, tar, options, Whiteouts::Aufs(OverlayNamespace::Trusted))
        .map_err(env_err("building the attacker's layer"))?;
    append_tree(&dest)
}

/// Writes the attacker's crafted EROFS data `erofs` to the scratch directory and appends a tree for it.
pub(crate) fn build_tree(env: &dyn Env, erofs: &[u8]) -> Result<Trojan, AttackError> {
    let dest = env.scratch().join("crafted.erofs");
    fs::write(&dest, erofs).map_err(env_err(&dest.display().to_string()))?;
    append_tree(&dest)
}

fn append_tree(dest: &Path) -> Result<Trojan, AttackError> {
    let area = verity::build(dest, [7; 16]).map_err(env_err("building a tree"))?;
    area.write(dest, VerityLayout::Containerd, Path::new("/nonexistent"))
        .map_err(env_err(&dest.display().to_string()))?;
    Ok(Trojan {
        erofs: dest.to_owned(),
        root_hash: area.root_hash(),
        data_size: area.data_size(),
    })
}

/// Builds, from layer `index`'s genuine tar with the file at `path` given `content`, a layer file with a
/// correct tree, in the scratch directory.
pub(crate) fn trojan_layer(env: &dyn Env, index: usize, path: &str, content: &[u8]) -> Result<Trojan, AttackError> {
    let manifest = manifest(env)?;
    let tar = layer_tar::with_file(&layer_tar(env, &manifest, index)?, path, content)?;
    build_layer(env, &tar, &format!("trojan-{index}.erofs"))
}

/// Offset in layer `index`'s `layer.erofs` of the first data byte of the file at `path` (its content found in
/// the EROFS data, where the writer stores it in one piece).
pub(crate) fn file_offset(env: &dyn Env, index: usize, path: &str) -> Result<u64, AttackError> {
    let manifest = manifest(env)?;
    let content = layer_tar::file(&layer_tar(env, &manifest, index)?, path)?
        .ok_or_else(|| AttackError::env(format!("layer {index} has no file {path}")))?;
    if content.is_empty() {
        return Err(AttackError::env(format!("{path} is empty")));
    }
    let layer = env.layer(index)?;
    let bytes = fs::read(&layer.erofs).map_err(env_err(&layer.erofs.display().to_string()))?;
    let data = &bytes[..bytes.len().min(usize::try_from(layer.data_size).unwrap_or(usize::MAX))];
    data.windows(content.len())
        .position(|w| w == content)
        .map(|p| p as u64)
        .ok_or_else(|| AttackError::env(format!("{path}'s data is not stored contiguously in layer {index}")))
}

/// What an attacker's trojan changes: the file at `path` of layer `layer` (the top layer when `None`) gets
/// `content`. Read from the `layer`, `path` and `content` parameters.
#[derive(Debug, Clone)]
pub(crate) struct TrojanTarget {
    layer: Option<usize>,
    /// The file changed, relative to the image root.
    pub(crate) path: String,
    /// The attacker's content for it.
    pub(crate) content: String,
}

impl TrojanTarget {
    /// From the scenario's parameters, with the defaults: the top layer, `bin/app`, [`crate::TROJAN`].
    pub(crate) fn from_params(params: &crate::Params) -> Self {
        Self {
            layer: params.layer(),
            path: params.string("path").unwrap_or("bin/app").to_owned(),
            content: params.string("content").unwrap_or(crate::TROJAN).to_owned(),
        }
    }

    /// The layer's index among `count` layers.
    pub(crate) fn index(&self, count: usize) -> usize {
        self.layer.unwrap_or(count.saturating_sub(1))
    }

    /// What the container shows at the target's path: the attacker's content or not.
    pub(crate) fn look(&self, env: &mut dyn Env) -> Result<crate::Effect, AttackError> {
        let seen = env.read_in_container(&self.path)?;
        Ok(crate::Effect::read(&self.path, &seen, self.content.as_bytes()))
    }
}
