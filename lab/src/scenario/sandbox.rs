//! One cell's sandbox: its own store, registry and keys in a temporary directory, the pipeline's steps on
//! them, and the [`attacks::Env`] through which an attack touches them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use attacks::env::Trojan;
use attacks::{AttackError, LayerFiles, MountKind, Refusal, Scheme as AttackScheme};
use p256::ecdsa::SigningKey;
use verity_fuse::ReadAt;
use verity_fuse::device::{Options, VerifiedDevice};
use verity_fuse::source::{FileSource, Window};

use super::image;
use super::schema::LayerSpec;
use crate::convert::{self, LayerConversion, VerityLayout, verity};
use crate::erofs::{self, OverlayNamespace, Timestamp as ErofsTime, Whiteouts};
use crate::mount::emulated::{self, Rootfs, TableEntry};
use crate::mount::{self, Plan, Record};
use crate::mountinfo::DeviceNumber;
use crate::oci::manifest::Descriptor;
use crate::oci::{Digest, media};
use crate::profile::{Backend, Profile};
use crate::rootfs::Merged;
use crate::sign::image::{SignOptions, sign_image};
use crate::sign::keys::{self, PublicKey};
use crate::sign::timestamp::Timestamp;
use crate::sign::{Scheme, cosign, delivery_kit};
use crate::store::{Store, write_atomically};

/// The repository every scenario image is published under (a name only: nothing is contacted).
pub const REPOSITORY: &str = "lab.example/veritylab/app";
/// The build time of the image under test; the rollback floor sits 30 days before it.
pub const BUILT: u64 = 1_800_000_000;
/// The policy's minimum build timestamp for the repository (the hardened profile's rollback floor).
pub const MINIMUM: u64 = BUILT - 30 * 86_400;

/// A verified device of the emulated view, kept to read its status.
pub type Device = VerifiedDevice<Window<FileSource>, FileSource>;

/// The emulated container: its rootfs and its verified devices by layer name.
pub struct View {
    /// The rootfs as the container reads it.
    pub rootfs: Rootfs,
    /// The verified devices, by layer name.
    pub devices: Vec<(String, Arc<Device>)>,
}

/// Why a layer does not open as the profile would open it.
pub enum OpenFailure {
    /// A verified device refused its parameters or root hash.
    RootHash(String),
    /// A block failed verification while the reader parsed the image; the devices show the corruption.
    Verification(String, Vec<(String, Arc<Device>)>),
    /// The reader refused the image.
    Malformed(String),
    /// The files are unusable (harness).
    Other(String),
}

/// One cell's sandbox.
pub struct Sandbox {
    /// The temporary directory holding everything.
    pub dir: tempfile::TempDir,
    /// The node's store.
    pub store: Store,
    /// The profile.
    pub profile: Profile,
    /// The backend.
    pub backend: Backend,
    /// The image's name in the node's store.
    pub name: String,
    /// The image's layers as built.
    pub layers: Vec<LayerSpec>,
    /// The signature scheme.
    pub scheme: Scheme,
    /// The trusted signing key.
    pub key: SigningKey,
    /// Its public half, the key the node trusts.
    pub public: PublicKey,
    /// The registry (an OCI layout the node pulls from), for registry-stage attacks.
    pub registry: Option<PathBuf>,
    /// Open verified devices with `check_at_most_once`.
    pub check_at_most_once: bool,
    /// The converted layers, base first.
    pub conversions: Vec<LayerConversion>,
    /// The mount's plan and record, once mounted.
    pub mounted: Option<(Plan, Record)>,
    /// The emulated container, once mounted.
    pub view: Option<View>,
    /// Mount records the attack left behind (emulated backend).
    pub leaked: Vec<PathBuf>,
}

fn env_err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> AttackError + '_ {
    move |e| AttackError::env(format!("{what}: {e}"))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> AttackError + '_ {
    move |e| AttackError::env(format!("{}: {e}", path.display()))
}

impl Sandbox {
    /// A fresh sandbox for one cell.
    pub fn new(profile: Profile, backend: Backend, layers: Vec<LayerSpec>, scheme: Scheme) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("veritylab-scenario-")
            .tempdir()
            .map_err(|e| format!("creating the sandbox: {e}"))?;
        let store = Store::open(&dir.path().join("store")).map_err(|e| e.to_string())?;
        fs::create_dir_all(dir.path().join("scratch")).map_err(|e| e.to_string())?;
        let key = keys::generate();
        let public = PublicKey::new(*key.verifying_key(), Path::new("scenario.pub"));
        Ok(Self {
            dir,
            store,
            profile,
            backend,
            name: format!("{REPOSITORY}:v1"),
            layers,
            scheme,
            key,
            public,
            registry: None,
            check_at_most_once: false,
            conversions: Vec::new(),
            mounted: None,
            view: None,
            leaked: Vec::new(),
        })
    }

    /// The attacker's scratch directory.
    pub fn scratch(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }

    /// Stores an unsigned image of `layers` in `store` under `name`; returns its manifest descriptor.
    pub fn store_image(store: &Store, name: &str, layers: &[LayerSpec]) -> Result<Descriptor, String> {
        let put = |bytes: &[u8]| -> Result<Digest, String> {
            let digest = Digest::of(bytes);
            store
                .put_bytes(&digest, bytes.len() as u64, bytes)
                .map_err(|e| e.to_string())?;
            Ok(digest)
        };
        let mut descriptors = Vec::new();
        let mut diff_ids = Vec::new();
        for layer in layers {
            let bytes = image::tar(layer);
            let digest = put(&bytes)?;
            diff_ids.push(digest.to_string());
            descriptors.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest.to_string(),
                "size": bytes.len(),
            }));
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}
        }))
        .map_err(|e| e.to_string())?;
        let config_digest = put(&config)?;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
            "layers": descriptors,
        }))
        .map_err(|e| e.to_string())?;
        Self::tag_bytes(store, name, &manifest)
    }

    /// Stores manifest `bytes` and tags them `name`.
    pub fn tag_bytes(store: &Store, name: &str, bytes: &[u8]) -> Result<Descriptor, String> {
        let digest = Digest::of(bytes);
        store
            .put_bytes(&digest, bytes.len() as u64, bytes)
            .map_err(|e| e.to_string())?;
        let descriptor = Descriptor {
            media_type: media::OCI_MANIFEST.to_owned(),
            digest,
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        };
        store.tag(name, descriptor.clone()).map_err(|e| e.to_string())?;
        Ok(descriptor)
    }

    /// Signs `name` in `store` with `key`, built at `built`.
    pub fn sign(&self, store: &Store, name: &str, key: &SigningKey, built: u64) -> Result<(), String> {
        let options = SignOptions {
            key: key.clone(),
            scheme: self.scheme,
            root_hash_key: None,
            tag: None,
            built: Timestamp(built),
            layout: VerityLayout::Containerd,
        };
        sign_image(store, name, &options, &|_| {})
            .map(|_| ())
            .map_err(|e| format!("signing {name}: {e}"))
    }

    /// Removes the tag `name` from `store`'s index.
    pub fn untag(store: &Store, name: &str) -> Result<bool, String> {
        let path = store.root().join("index.json");
        let bytes = fs::read(&path).map_err(|e| e.to_string())?;
        let mut index: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let Some(list) = index.get_mut("manifests").and_then(serde_json::Value::as_array_mut) else {
            return Ok(false);
        };
        let before = list.len();
        list.retain(|m| m["annotations"][crate::oci::manifest::REF_NAME] != name);
        let removed = list.len() != before;
        write_atomically(&path, &serde_json::to_vec(&index).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        Ok(removed)
    }

    /// The stored manifest of `name` as JSON.
    pub fn manifest_json(store: &Store, name: &str) -> Result<serde_json::Value, String> {
        let d = store.lookup(name).map_err(|e| e.to_string())?;
        let bytes = fs::read(store.blob_path(&d.digest)).map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }

    /// Copies the image `name` (manifest, config, layers) and its cosign signature from `from` into the
    /// registry layout at `dir`, tagged `tag`.
    pub fn export(from: &Store, name: &str, dir: &Path, tag: &str) -> Result<(), String> {
        let blobs = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(|e| e.to_string())?;
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(|e| e.to_string())?;
        let descriptor = from.lookup(name).map_err(|e| e.to_string())?;
        let manifest = Self::manifest_json(from, name)?;
        let mut digests = vec![descriptor.digest.to_string()];
        digests.push(manifest["config"]["digest"].as_str().unwrap_or_default().to_owned());
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            digests.push(layer["digest"].as_str().unwrap_or_default().to_owned());
        }
        for digest in digests {
            let d: Digest = digest.parse().map_err(|e| format!("{digest}: {e}"))?;
            let hex = digest.trim_start_matches("sha256:");
            fs::copy(from.blob_path(&d), blobs.join(hex)).map_err(|e| format!("copying {digest}: {e}"))?;
        }
        let mut entry = serde_json::to_value(&descriptor).map_err(|e| e.to_string())?;
        entry["annotations"] = serde_json::json!({ crate::oci::manifest::REF_NAME: tag });
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": [entry]});
        fs::write(
            dir.join("index.json"),
            serde_json::to_vec(&index).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())
    }

    /// The trusted root hashes of the mounted layers, by layer name (for the audit).
    pub fn trusted(&self) -> BTreeMap<String, String> {
        self.mounted
            .iter()
            .flat_map(|(plan, _)| &plan.layers)
            .filter_map(|l| Some((l.name.clone(), l.root_hash.clone()?)))
            .collect()
    }

    /// Opens the emulated container over `plan`, as the profile reads it.
    pub fn open_view(&self, plan: &Plan, record: &Record) -> Result<View, OpenFailure> {
        let mut sources: Vec<Box<dyn ReadAt>> = Vec::new();
        let mut devices = Vec::new();
        for layer in &plan.layers {
            let file = FileSource::open(&layer.erofs)
                .map_err(|e| OpenFailure::Other(format!("{}: {e}", layer.erofs.display())))?;
            let data = Window::new(file, 0, layer.erofs_size).map_err(|e| OpenFailure::Other(e.to_string()))?;
            let Some(root) = &layer.root_hash else {
                sources.push(Box::new(data));
                continue;
            };
            let root_bytes =
                verity_fuse::hex::decode("root hash", root).map_err(|e| OpenFailure::Other(e.to_string()))?;
            let geometry = verity::geometry_for(layer.erofs_size, layer.hashoffset)
                .map_err(|e| OpenFailure::Other(e.to_string()))?;
            let hash = FileSource::open(&layer.hash).map_err(|e| OpenFailure::Other(e.to_string()))?;
            let options = Options {
                check_at_most_once: self.check_at_most_once,
                ..Options::default()
            };
            let device = Arc::new(
                VerifiedDevice::new(data, hash, geometry, &root_bytes, options)
                    .map_err(|e| OpenFailure::RootHash(format!("layer {}: {e}", layer.name)))?,
            );
            devices.push((layer.name.clone(), Arc::clone(&device)));
            sources.push(Box::new(device));
        }
        let merged = Merged::from_sources(sources, OverlayNamespace::Trusted).map_err(|e| {
            if e.is_verification_failure() {
                OpenFailure::Verification(e.to_string(), devices.clone())
            } else {
                OpenFailure::Malformed(e.to_string())
            }
        })?;
        Ok(View {
            rootfs: Rootfs {
                merged,
                upper: record.upperdir.clone(),
            },
            devices,
        })
    }

    fn conversion(&self, index: usize) -> Result<&LayerConversion, AttackError> {
        self.conversions.get(index).ok_or_else(|| {
            AttackError::env(format!(
                "layer {index}: the image has {} converted layers",
                self.conversions.len()
            ))
        })
    }

    /// Builds an EROFS image from `tar` at `dest` the way conversion does, with its tree appended.
    fn build_layer_file(tar: &[u8], dest: &Path) -> Result<Trojan, AttackError> {
        let options = erofs::Options {
            block_size: 4096,
            inline_data: false,
            build_time: Some(ErofsTime { secs: 0, nanos: 0 }),
            uuid: [7; 16],
        };
        let _ = fs::remove_file(dest);
        erofs::build_from_tar(dest, tar, options, Whiteouts::Aufs(OverlayNamespace::Trusted))
            .map_err(env_err("building the attacker's layer"))?;
        Self::append_tree(dest)
    }

    fn append_tree(dest: &Path) -> Result<Trojan, AttackError> {
        let area = verity::build(dest, [7; 16]).map_err(|e| AttackError::env(format!("building a tree: {e}")))?;
        area.write(dest, VerityLayout::Containerd, Path::new("/nonexistent"))
            .map_err(io(dest))?;
        Ok(Trojan {
            erofs: dest.to_owned(),
            root_hash: area.root_hex(),
            data_size: area.data_size(),
        })
    }

    fn scratch_file(&self, name: &str) -> PathBuf {
        self.scratch().join(name)
    }

    /// Publishes a variant of the image (layers changed by `edit`) under `name`, signed with `key` at `built`
    /// when given; returns the stored descriptor.
    fn variant(
        &self,
        name: &str,
        layers: &[LayerSpec],
        signed: Option<(&SigningKey, u64)>,
    ) -> Result<Descriptor, AttackError> {
        Self::store_image(&self.store, name, layers).map_err(AttackError::env)?;
        if let Some((key, built)) = signed {
            self.sign(&self.store, name, key, built).map_err(AttackError::env)?;
        }
        self.store.lookup(name).map_err(env_err(name))
    }

    fn retag(&self, descriptor: Descriptor) -> Result<(), AttackError> {
        self.store.tag(&self.name, descriptor).map_err(env_err("tagging"))
    }

    /// Kernel-backend operations are not wired into the runner yet.
    fn emulated_only(&self, what: &str) -> Result<(), AttackError> {
        if self.backend == Backend::Emulated {
            Ok(())
        } else {
            Err(AttackError::env(format!(
                "{what} is implemented for the emulated backend only"
            )))
        }
    }
}

impl attacks::Env for Sandbox {
    fn layer_count(&self) -> usize {
        self.conversions.len()
    }

    fn layer(&self, index: usize) -> Result<LayerFiles, AttackError> {
        let c = self.conversion(index)?;
        let geometry = verity::geometry_for(c.erofs_size, c.hashoffset).map_err(env_err("geometry"))?;
        let block = geometry.hash_block_size() as u64;
        Ok(LayerFiles {
            digest: c.layer.to_string(),
            erofs: c.dir.join(convert::LAYER_FILE),
            data_size: c.erofs_size,
            hash_offset: c.hashoffset,
            levels: geometry.levels.iter().map(|l| l.first_block * block).collect(),
        })
    }

    fn file_offset(&self, index: usize, path: &str) -> Result<u64, AttackError> {
        let layer = self
            .layers
            .get(index)
            .ok_or_else(|| AttackError::env(format!("no layer {index}")))?;
        let content = layer
            .files
            .iter()
            .find_map(|e| match &e.kind {
                super::schema::EntryKind::File { content } if e.path == path => Some(content.clone()),
                _ => None,
            })
            .ok_or_else(|| AttackError::env(format!("layer {index} has no file {path}")))?;
        let c = self.conversion(index)?;
        let file = c.dir.join(convert::LAYER_FILE);
        let bytes = fs::read(&file).map_err(io(&file))?;
        let data = &bytes[..bytes.len().min(c.erofs_size as usize)];
        let needle = content.as_bytes();
        if needle.is_empty() {
            return Err(AttackError::env(format!("{path} is empty")));
        }
        data.windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p as u64)
            .ok_or_else(|| AttackError::env(format!("{path}'s data is not stored contiguously in layer {index}")))
    }

    fn trojan_layer(&mut self, index: usize, path: &str, content: &[u8]) -> Result<Trojan, AttackError> {
        let layer = self
            .layers
            .get(index)
            .ok_or_else(|| AttackError::env(format!("no layer {index}")))?;
        let tar = image::tar(&image::with_file(layer, path, content));
        Self::build_layer_file(&tar, &self.scratch_file(&format!("trojan-{index}.erofs")))
    }

    fn build_tree(&mut self, erofs: &[u8]) -> Result<Trojan, AttackError> {
        let dest = self.scratch_file("crafted.erofs");
        fs::write(&dest, erofs).map_err(io(&dest))?;
        Self::append_tree(&dest)
    }

    fn rewrite_local_metadata(&mut self, index: usize, trojan: &Trojan) -> Result<(), AttackError> {
        let c = self.conversion(index)?.clone();
        let mut record = c.clone();
        record.roothash = trojan.root_hash.clone();
        record.erofs_size = trojan.data_size;
        record.hashoffset = trojan.data_size;
        record.data_blocks = trojan.data_size / verity::BLOCK;
        let bytes = serde_json::to_vec_pretty(&record).map_err(env_err("record"))?;
        write_atomically(&c.dir.join(convert::RECORD_FILE), &bytes).map_err(env_err("record"))?;
        let sidecar = serde_json::json!({ "roothash": record.roothash, "hashoffset": record.hashoffset });
        write_atomically(&c.dir.join(convert::SIDECAR_FILE), sidecar.to_string().as_bytes())
            .map_err(env_err("sidecar"))?;
        self.conversions[index] = record;
        Ok(())
    }

    fn manifest(&self) -> Result<Vec<u8>, AttackError> {
        let d = self.store.lookup(&self.name).map_err(env_err("manifest"))?;
        let path = self.store.blob_path(&d.digest);
        fs::read(&path).map_err(io(&path))
    }

    fn replace_manifest(&mut self, bytes: &[u8], keep_signature: bool) -> Result<String, AttackError> {
        let old = self.store.lookup(&self.name).map_err(env_err("manifest"))?;
        let new = Self::tag_bytes(&self.store, &self.name, bytes).map_err(AttackError::env)?;
        if keep_signature
            && let Some(signatures) =
                cosign::load(&self.store, REPOSITORY, &old.digest).map_err(env_err("signatures"))?
        {
            cosign::save(
                &self.store,
                REPOSITORY,
                &new.digest,
                &cosign::SignatureImage::new(&signatures),
            )
            .map_err(env_err("signatures"))?;
        }
        Ok(new.digest.to_string())
    }

    fn trojan_root_hash(&mut self, index: usize) -> Result<String, AttackError> {
        Ok(self
            .trojan_layer(index, "bin/app", attacks::TROJAN.as_bytes())?
            .root_hash)
    }

    fn scheme(&self) -> AttackScheme {
        match self.scheme {
            Scheme::Cosign => AttackScheme::Cosign,
            _ => AttackScheme::DeliveryKit,
        }
    }

    fn remove_signatures(&mut self) -> Result<String, AttackError> {
        let d = self.store.lookup(&self.name).map_err(env_err("manifest"))?;
        if self.scheme == Scheme::Cosign {
            let tag = format!("{REPOSITORY}:{}", cosign::signature_tag(&d.digest));
            Self::untag(&self.store, &tag).map_err(AttackError::env)?;
            return Ok(format!("deleted the cosign signature {tag}"));
        }
        let mut manifest: serde_json::Value = serde_json::from_slice(&self.manifest()?).map_err(env_err("manifest"))?;
        if let Some(a) = manifest["annotations"].as_object_mut() {
            a.remove(delivery_kit::SIGNATURE);
        }
        let digest = self.replace_manifest(&serde_json::to_vec(&manifest).map_err(env_err("manifest"))?, false)?;
        Ok(format!(
            "removed the embedded {} annotation; the manifest is now {digest}",
            delivery_kit::SIGNATURE
        ))
    }

    fn sign_with_other_key(&mut self) -> Result<String, AttackError> {
        self.remove_signatures()?;
        let other = keys::generate();
        self.sign(&self.store, &self.name, &other, BUILT)
            .map_err(AttackError::env)?;
        Ok("re-signed the image with a key the node does not trust".to_owned())
    }

    fn registry_blob(&self, digest: &str) -> Result<PathBuf, AttackError> {
        let dir = self
            .registry
            .as_ref()
            .ok_or_else(|| AttackError::env("this cell has no registry"))?;
        Ok(dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:")))
    }

    fn registry_image(&self) -> Result<(String, Vec<String>), AttackError> {
        let publisher = Store::open(&self.dir.path().join("publisher")).map_err(env_err("publisher"))?;
        let manifest = Self::manifest_json(&publisher, &self.name).map_err(AttackError::env)?;
        let config = manifest["config"]["digest"].as_str().unwrap_or_default().to_owned();
        let layers = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str().map(str::to_owned))
            .collect();
        Ok((config, layers))
    }

    fn move_tag(&mut self, tag: &str) -> Result<String, AttackError> {
        let mut layers = self.layers.clone();
        layers.push(image::with_file(
            &LayerSpec { files: Vec::new() },
            "bin/app",
            attacks::TROJAN.as_bytes(),
        ));
        let name = format!("{REPOSITORY}:{tag}");
        let attacker = self.variant(&format!("{REPOSITORY}:attacker"), &layers, None)?;
        self.store.tag(&name, attacker.clone()).map_err(env_err("tagging"))?;
        Ok(format!(
            "{name} now names the attacker's unsigned image {} (trojaned bin/app)",
            attacker.digest
        ))
    }

    fn serve_older(&mut self, within_window: bool) -> Result<String, AttackError> {
        let built = if within_window {
            MINIMUM + 86_400
        } else {
            MINIMUM - 365 * 86_400
        };
        let mut layers = self.layers.clone();
        if let Some(top) = layers.last_mut() {
            *top = image::with_file(top, "etc/version", b"1.0 (vulnerable)\n");
        }
        let older = self.variant(&format!("{REPOSITORY}:old"), &layers, Some((&self.key.clone(), built)))?;
        self.retag(older.clone())?;
        Ok(format!(
            "serving the older signed build {} (built {}) in place of the current one",
            older.digest,
            crate::scenario::run::rfc3339_utc(built)
        ))
    }

    fn mix_layers(&mut self, foreign: usize) -> Result<String, AttackError> {
        let mut second = self.layers.clone();
        for layer in &mut second {
            *layer = image::with_file(layer, "etc/build", b"second image\n");
        }
        let other = format!("{REPOSITORY}:other");
        self.variant(&other, &second, Some((&self.key.clone(), BUILT)))?;
        let current = self.store.lookup(&self.name).map_err(env_err("manifest"))?;
        self.store
            .tag(&format!("{REPOSITORY}:previous"), current)
            .map_err(env_err("tagging"))?;
        let ours = Self::manifest_json(&self.store, &self.name).map_err(AttackError::env)?;
        let theirs = Self::manifest_json(&self.store, &other).map_err(AttackError::env)?;
        let (Some(a), Some(b)) = (ours["layers"].as_array(), theirs["layers"].as_array()) else {
            return Err(AttackError::env("manifests without layers"));
        };
        let keep = a.len().saturating_sub(foreign.min(b.len()));
        let mut mixed: Vec<serde_json::Value> = a[..keep].to_vec();
        mixed.extend_from_slice(&b[keep..]);
        let mut manifest = ours.clone();
        manifest["layers"] = serde_json::Value::Array(mixed);
        if let Some(annotations) = manifest["annotations"].as_object_mut() {
            annotations.remove(delivery_kit::SIGNATURE);
        }
        let digest = self.replace_manifest(&serde_json::to_vec(&manifest).map_err(env_err("manifest"))?, false)?;
        Ok(format!(
            "assembled {digest}: {keep} layers of the image and {} of a second signed image; no signature covers it",
            a.len() - keep
        ))
    }

    fn add_mount(&mut self, path: &str, kind: MountKind) -> Result<String, AttackError> {
        self.emulated_only("adding a mount")?;
        let Some((_, record)) = self.mounted.as_mut() else {
            return Err(AttackError::env("nothing is mounted"));
        };
        let mount_point = record.target.join(path);
        let (fs_type, source, backing) = match kind {
            MountKind::Tmpfs => ("tmpfs", "tmpfs".to_owned(), None),
            MountKind::Bind => ("ext4", "/dev/attacker".to_owned(), None),
            MountKind::UnverifiedErofs => {
                let file = self.dir.path().join("scratch").join("plugins.erofs");
                ("erofs", "/dev/loop4999".to_owned(), Some(file))
            }
        };
        let device = DeviceNumber {
            major: if backing.is_some() { 7 } else { 0 },
            minor: 4999,
        };
        emulated::add_mount(
            record,
            TableEntry {
                id: 0,
                mount_point: mount_point.clone(),
                fs_type: fs_type.to_owned(),
                source,
                device,
                options: vec!["rw".to_owned()],
                super_options: vec!["rw".to_owned()],
                backing,
            },
        )
        .map_err(env_err("adding the mount"))?;
        Ok(format!(
            "mounted {fs_type} at {} inside the container",
            mount_point.display()
        ))
    }

    fn remove_mount(&mut self, path: &str) -> Result<(), AttackError> {
        let Some((_, record)) = self.mounted.as_mut() else {
            return Ok(());
        };
        let mount_point = record.target.join(path);
        if let Some(table) = record.emulated.as_mut() {
            table.retain(|e| e.mount_point != mount_point);
        }
        emulated::save(record).map_err(env_err("removing the mount"))
    }

    fn upperdir(&self) -> Option<PathBuf> {
        self.mounted.as_ref().and_then(|(_, r)| r.upperdir.clone())
    }

    fn write_in_container(&mut self, path: &str, bytes: &[u8]) -> Result<(), AttackError> {
        let view = self
            .view
            .as_ref()
            .ok_or_else(|| AttackError::env("nothing is mounted"))?;
        view.rootfs.write(path, bytes).map_err(|e| {
            if e.raw_os_error() == Some(30) {
                AttackError::Refused {
                    kind: Refusal::ReadOnly,
                    message: format!("writing /{path} in the container: {e}"),
                }
            } else {
                AttackError::env(format!("writing /{path}: {e}"))
            }
        })
    }

    fn read_in_container(&mut self, path: &str) -> Result<Vec<u8>, AttackError> {
        let view = self
            .view
            .as_ref()
            .ok_or_else(|| AttackError::env("nothing is mounted"))?;
        view.rootfs.read(path, 1 << 20).map_err(|e| {
            if e.is_verification_failure() {
                AttackError::Refused {
                    kind: Refusal::HashMismatch,
                    message: format!("reading /{path}: {e}"),
                }
            } else {
                AttackError::env(format!("reading /{path}: {e}"))
            }
        })
    }

    fn read_device(&mut self, index: usize, offset: u64, len: usize) -> Result<Vec<u8>, AttackError> {
        let view = self
            .view
            .as_ref()
            .ok_or_else(|| AttackError::env("nothing is mounted"))?;
        let layer = self.conversion(index)?;
        let name = layer.layer.to_string();
        let mut buf = vec![0u8; len];
        let refused = |message: String| AttackError::Refused {
            kind: Refusal::OutOfRange,
            message,
        };
        match view.devices.iter().find(|(n, _)| *n == name) {
            Some((_, device)) if offset + len as u64 > device.len() => Err(refused(format!(
                "the verified device of layer {index} ends at byte {}: a read of {len} bytes at {offset} is past it",
                device.len()
            ))),
            Some((_, device)) => device
                .read_at(offset, &mut buf)
                .map(|()| buf)
                .map_err(|e| refused(format!("reading the verified device of layer {index} at {offset}: {e}"))),
            None => {
                let file = layer.dir.join(convert::LAYER_FILE);
                let bytes = fs::read(&file).map_err(io(&file))?;
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                Ok(bytes
                    .get(start..)
                    .unwrap_or_default()
                    .iter()
                    .take(len)
                    .copied()
                    .collect())
            }
        }
    }

    fn set_check_at_most_once(&mut self) {
        self.check_at_most_once = true;
    }

    fn drop_caches(&mut self) {
        if let Some(view) = &self.view {
            for (_, device) in &view.devices {
                device.drop_caches();
            }
        }
    }

    fn pinned_layer(&self) -> Option<PathBuf> {
        (self.profile == Profile::Hardened).then(|| self.store.root().join("pinned/mountpoints/layer.erofs"))
    }

    fn replace_pinned(&mut self, path: &str, content: &[u8]) -> Result<String, AttackError> {
        let Some(file) = self.pinned_layer() else {
            return Ok("the profile has no pinned layer".to_owned());
        };
        mount::pinned::ensure(&self.store).map_err(env_err("the pinned layer"))?;
        let mut builder = tar::Builder::new(Vec::new());
        let genuine = mount::pinned::tar();
        let mut archive = tar::Archive::new(&genuine[..]);
        let entries = archive.entries().map_err(env_err("the pinned layer's tar"))?;
        for entry in entries {
            let mut entry = entry.map_err(env_err("the pinned layer's tar"))?;
            let entry_path = entry.path().map_err(env_err("tar"))?.to_string_lossy().into_owned();
            let mut header = entry.header().clone();
            if entry_path.trim_end_matches('/') == path {
                header.set_size(content.len() as u64);
                header.set_cksum();
                builder.append(&header, content).map_err(env_err("tar"))?;
            } else {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data).map_err(env_err("tar"))?;
                builder.append(&header, &data[..]).map_err(env_err("tar"))?;
            }
        }
        let tar = builder.into_inner().map_err(env_err("tar"))?;
        let built = Self::build_layer_file(&tar, &self.scratch_file("pinned.erofs"))?;
        fs::copy(&built.erofs, &file).map_err(io(&file))?;
        Ok(format!(
            "replaced {} with a layer whose /{path} points at the attacker's resolver (root hash {})",
            file.display(),
            built.root_hash
        ))
    }

    fn leak_mounts(&mut self, count: u64) -> Result<String, AttackError> {
        self.emulated_only("leaking mounts")?;
        let (plan, _) = self
            .mounted
            .clone()
            .ok_or_else(|| AttackError::env("nothing is mounted"))?;
        let mut made = Vec::new();
        for i in 0..count.min(8) {
            let target = self.dir.path().join(format!("stopped-{i}"));
            fs::create_dir_all(&target).map_err(io(&target))?;
            let mut leaked = plan.clone();
            leaked.id = mount::record::new_id();
            leaked.state = plan.state.with_file_name(&leaked.id);
            leaked.target = fs::canonicalize(&target).map_err(io(&target))?;
            mount::mount(&self.store, &leaked, Path::new("/nonexistent")).map_err(env_err("leaking a mount"))?;
            made.push(leaked.target.clone());
        }
        let text = made
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        self.leaked = made;
        Ok(format!(
            "left {} mount(s) of a stopped container behind: {text}",
            self.leaked.len()
        ))
    }

    fn release_leaks(&mut self) -> Result<(), AttackError> {
        for target in std::mem::take(&mut self.leaked) {
            match mount::umount(&self.store, &target) {
                Ok(_) | Err(mount::MountError::NotMounted { .. }) => {}
                Err(e) => return Err(AttackError::env(format!("releasing {}: {e}", target.display()))),
            }
        }
        Ok(())
    }
}
