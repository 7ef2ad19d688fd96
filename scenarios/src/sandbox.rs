//! One cell's sandbox: its own store, registry and keys in a temporary directory, the pipeline's steps on
//! them, and the [`attacks::Env`] through which an attack touches them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use attacks::env::Trojan;
use attacks::{AttackError, DefenceRefusal, LayerFiles, MountKind, Scheme as AttackScheme};
use p256::ecdsa::SigningKey;
use verity_fuse::fuse::StatusReport;

use super::cell_registry::CellRegistry;
use super::image;
use super::schema::{EntryKind, EntrySpec, LayerSpec};
use veritylab::convert::{self, LayerConversion, VerityLayout, verity};
use veritylab::erofs::{self, FileTime as ErofsTime, OverlayNamespace, Whiteouts};
use veritylab::mount::emulated::{self, Devices, Layers, Rootfs, TableEntry};
use veritylab::mount::{self, MountError, Plan, Record};
use veritylab::mountinfo::DeviceNumber;
use veritylab::oci::manifest::Descriptor;
use veritylab::oci::push::{self, PushDestination, PushOptions, PushSource};
use veritylab::oci::{Digest, media};
use veritylab::profile::{Backend, Profile};
use veritylab::rootfs::{Snapshot, SnapshotError};
use veritylab::sign::image::{SignOptions, SignReport, sign_image};
use veritylab::sign::keys::{self, PublicKey};
use veritylab::sign::timestamp::BuildTimestamp;
use veritylab::sign::{Scheme, cosign, delivery_kit};
use veritylab::store::{Store, write_atomically};

/// The repository every scenario image is published under (a name only: nothing is contacted).
pub const REPOSITORY: &str = "lab.example/veritylab/app";
/// The build time of the image under test; the rollback floor sits 30 days before it.
pub const BUILT: u64 = 1_800_000_000;
/// The policy's minimum build timestamp for the repository (the hardened profile's rollback floor).
pub const MINIMUM: u64 = BUILT - 30 * 86_400;

/// The running container, as the runner reaches it.
pub enum Container {
    /// The emulated backend: the rootfs and the verified devices, in this process.
    Emulated {
        /// The rootfs as the container reads it.
        rootfs: Box<Rootfs>,
        /// The verified devices, by layer name.
        devices: Devices,
    },
    /// A real mount (kernel or fuse backend), through the holder's `/proc/PID/root`.
    Real {
        /// The rootfs.
        root: PathBuf,
        /// Each verified device's FUSE directory (holding `device` and `status`), by layer name.
        devices: Vec<(String, PathBuf)>,
        /// Each kernel dm-verity mapping (on hosts with device-mapper), by layer name.
        mappings: Vec<(String, mount::dm::Mapping)>,
    },
}

impl Container {
    /// Reads every entry of the rootfs as the container would.
    pub fn snapshot(&self) -> Result<Snapshot, SnapshotError> {
        match self {
            Container::Emulated { rootfs, .. } => Snapshot::of_merged(&rootfs.merged),
            Container::Real { root, .. } => Snapshot::of_dir(root),
        }
    }

    /// The status of each verified device now.
    pub fn statuses(&self) -> Vec<(String, StatusReport)> {
        match self {
            Container::Emulated { devices, .. } => devices
                .iter()
                .map(|(name, device)| (name.clone(), StatusReport::of(device)))
                .collect(),
            Container::Real { devices, mappings, .. } => devices
                .iter()
                .filter_map(|(name, dir)| {
                    let bytes = fs::read(dir.join(verity_fuse::fuse::STATUS_FILE)).ok()?;
                    Some((name.clone(), serde_json::from_slice(&bytes).ok()?))
                })
                .chain(
                    mappings
                        .iter()
                        .filter_map(|(name, m)| Some((name.clone(), mount::dm::status_report(m)?))),
                )
                .collect(),
        }
    }
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
    /// The registry the node pulls from (a `docker-registry` of the cell's own, or an OCI layout where that is
    /// not installed), for registry-stage attacks; the runner drops it (stopping the registry) before the
    /// leak check.
    pub registry: Option<CellRegistry>,
    /// Open verified devices with `check_at_most_once`.
    pub check_at_most_once: bool,
    /// The converted layers, base first.
    pub conversions: Vec<LayerConversion>,
    /// The mount's plan and record, once mounted.
    pub mounted: Option<(Plan, Record)>,
    /// The container, once mounted.
    pub container: Option<Container>,
    /// The `veritylab` executable that holds kernel and FUSE mounts.
    pub exe: PathBuf,
    /// Mounts of a stopped container the attack left behind.
    pub leaked: Vec<Leak>,
    /// The loop device a replayed layer mount uses, to detach on revert.
    pub replayed: Option<PathBuf>,
    /// Whether the node's policy requires a signature for the image's repository (an attacker may edit it).
    pub policy_requires_signature: bool,
}

/// One stopped container's mount left behind by [`attacks::Env::leak_mounts`].
#[derive(Debug)]
pub struct Leak {
    /// The mount's target.
    pub target: PathBuf,
    /// Its id.
    pub id: String,
    /// The process still in its namespace after its holder was killed (kernel and fuse backends).
    pub squatter: Option<std::process::Child>,
}

fn env_err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> AttackError + '_ {
    move |e| AttackError::env(format!("{what}: {e}"))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> AttackError + '_ {
    move |e| AttackError::env(format!("{}: {e}", path.display()))
}

impl Sandbox {
    /// A fresh sandbox for one cell.
    pub fn new(
        profile: Profile,
        backend: Backend,
        layers: Vec<LayerSpec>,
        scheme: Scheme,
        exe: &Path,
    ) -> Result<Self, String> {
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
            container: None,
            exe: exe.to_owned(),
            leaked: Vec::new(),
            replayed: None,
            policy_requires_signature: true,
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

    /// Signs `name` in `store` with `key`, built at `built`; returns what was signed.
    pub fn sign(&self, store: &Store, name: &str, key: &SigningKey, built: u64) -> Result<SignReport, String> {
        let options = SignOptions {
            key: key.clone(),
            scheme: self.scheme,
            root_hash_key: None,
            tag: None,
            built: BuildTimestamp(built),
            layout: VerityLayout::Containerd,
        };
        sign_image(store, name, &options, &|_| {}).map_err(|e| format!("signing {name}: {e}"))
    }

    /// Removes the tag `name` from `store`'s index.
    pub fn untag(store: &Store, name: &str) -> Result<bool, String> {
        store.untag(name).map_err(|e| e.to_string())
    }

    /// The stored manifest of `name` as JSON.
    pub fn manifest_json(store: &Store, name: &str) -> Result<serde_json::Value, String> {
        let d = store.lookup(name).map_err(|e| e.to_string())?;
        let bytes = fs::read(store.blob_path(&d.digest)).map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }

    /// Copies the image `name` (manifest, config, layers) from `from` into the image layout at `dir`, tagged
    /// `tag`, with the lab's own push (the registry of a cell without `docker-registry`; the signature stays in
    /// `from`).
    pub fn export(from: &Store, name: &str, dir: &Path, tag: &str) -> Result<(), String> {
        let source = PushSource::Store {
            root: from.root().to_owned(),
            name: name.to_owned(),
        };
        let destination = PushDestination::Layout {
            dir: dir.to_owned(),
            tag: tag.to_owned(),
        };
        push::push(&source, &destination, &PushOptions::default(), &|_| {})
            .map(drop)
            .map_err(|e| format!("exporting {name} to {}: {e}", dir.display()))
    }

    /// The trusted root hashes of the mounted layers, by layer name (for the audit).
    pub fn trusted(&self) -> BTreeMap<String, String> {
        self.mounted
            .iter()
            .flat_map(|(plan, _)| &plan.layers)
            .filter_map(|l| Some((l.name.clone(), l.root_hash?.to_string())))
            .collect()
    }

    /// Opens the container `record` mounted: in process for the emulated backend (the layers opened as the
    /// plan says), through the holder's namespace otherwise.
    pub fn open_container(&self, plan: &Plan, record: &Record) -> Result<Container, MountError> {
        if record.backend == Backend::Emulated {
            let (merged, devices) = Layers::open(plan)?.merge(plan)?;
            return Ok(Container::Emulated {
                rootfs: Box::new(Rootfs {
                    merged,
                    upper: record.upperdir.clone(),
                    read_only: plan.read_only(),
                }),
                devices,
            });
        }
        Ok(Container::Real {
            root: record.in_namespace(&record.target),
            devices: record
                .layers
                .iter()
                .filter_map(|l| Some((l.name.clone(), record.in_namespace(l.device_dir.as_ref()?))))
                .collect(),
            mappings: record
                .layers
                .iter()
                .filter_map(|l| Some((l.name.clone(), l.dm.clone()?)))
                .collect(),
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

    /// Runs `mount args` inside the container's mount namespace.
    pub(super) fn mount_inside(&self, args: &[&std::ffi::OsStr]) -> Result<(), AttackError> {
        let holder = self
            .mounted
            .as_ref()
            .and_then(|(_, r)| r.holder)
            .ok_or_else(|| AttackError::env("the mount has no holder"))?;
        let mut all: Vec<std::ffi::OsString> = vec!["-t".into(), holder.to_string().into(), "-m".into(), "--".into()];
        all.extend(args.iter().map(|a| a.to_os_string()));
        verity_fuse::sys::run_tool("nsenter", "util-linux", all)
            .map(drop)
            .map_err(env_err("inside the container's namespace"))
    }

    /// The attacker's files for a mount of `kind`: a directory, or an EROFS image of it.
    fn attacker_files(&self, kind: MountKind) -> Result<PathBuf, AttackError> {
        let dir = self.scratch_file("plugins");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let plugin = dir.join("plugin.so");
        fs::write(&plugin, attacks::TROJAN).map_err(io(&plugin))?;
        if kind != MountKind::UnverifiedErofs {
            return Ok(dir);
        }
        let image = self.scratch_file("plugins.erofs");
        let tar = image::tar(&image::with_file(
            &LayerSpec { files: Vec::new() },
            "plugin.so",
            attacks::TROJAN.as_bytes(),
        ));
        Self::build_layer_file(&tar, &image)?;
        Ok(image)
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

    fn modify_image(&mut self, path: &str, content: &[u8]) -> Result<String, AttackError> {
        let mut layers = self.layers.clone();
        layers.push(image::with_file(&LayerSpec { files: Vec::new() }, path, content));
        let modified = self.variant(&format!("{REPOSITORY}:modified"), &layers, None)?;
        self.retag(modified.clone())?;
        Ok(format!(
            "{} now names the modified image {} (/{path} changed by an added layer), unsigned",
            self.name, modified.digest
        ))
    }

    fn sign_with_other_key(&mut self, path: &str, content: &[u8]) -> Result<String, AttackError> {
        let modified = self.modify_image(path, content)?;
        let other = keys::generate();
        let signed = self
            .sign(&self.store, &self.name, &other, BUILT)
            .map_err(AttackError::env)?;
        Ok(format!(
            "{modified}; signed it as {} with a key the node does not trust",
            signed.manifest.digest
        ))
    }

    fn registry_blob(&self, digest: &str) -> Result<PathBuf, AttackError> {
        let registry = self
            .registry
            .as_ref()
            .ok_or_else(|| AttackError::env("this cell has no registry"))?;
        let digest: Digest = digest.parse().map_err(env_err(digest))?;
        Ok(registry.blob_path(&digest))
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
            *top = image::with_file(
                top,
                attacks::rollback::VERSION_FILE,
                attacks::rollback::OLDER_VERSION.as_bytes(),
            );
        }
        let older = self.variant(&format!("{REPOSITORY}:old"), &layers, Some((&self.key.clone(), built)))?;
        self.retag(older.clone())?;
        Ok(format!(
            "serving the older signed build {} (built {}) in place of the current one",
            older.digest,
            crate::results::rfc3339_utc(built)
        ))
    }

    fn mix_layers(&mut self, foreign: usize) -> Result<String, AttackError> {
        let mut second = self.layers.clone();
        for layer in &mut second {
            *layer = image::with_file(
                layer,
                attacks::mixed_layers::FOREIGN_FILE,
                attacks::mixed_layers::FOREIGN_CONTENT.as_bytes(),
            );
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
        if self.backend != Backend::Emulated {
            let target = self
                .mounted
                .as_ref()
                .map(|(_, r)| r.target.join(path))
                .ok_or_else(|| AttackError::env("nothing is mounted"))?;
            let files = self.attacker_files(kind)?;
            let (fs_type, options, source) = match kind {
                MountKind::Tmpfs => ("tmpfs", "rw", Path::new("tmpfs").to_owned()),
                MountKind::Bind => ("none", "bind", files),
                MountKind::UnverifiedErofs => ("erofs", "ro,loop", files),
            };
            self.mount_inside(&[
                "mount".as_ref(),
                "-t".as_ref(),
                fs_type.as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                source.as_os_str(),
                target.as_os_str(),
            ])?;
            return Ok(format!(
                "mounted {} ({fs_type}) at {} inside the container",
                source.display(),
                target.display()
            ));
        }
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
                unique: None,
                backing_file: None,
            },
        )
        .map_err(env_err("adding the mount"))?;
        Ok(format!(
            "mounted {fs_type} at {} inside the container",
            mount_point.display()
        ))
    }

    fn mount_at(&self, path: &str) -> Result<Option<String>, AttackError> {
        let (_, record) = self
            .mounted
            .as_ref()
            .ok_or_else(|| AttackError::env("nothing is mounted"))?;
        if path.is_empty() {
            return Ok(None);
        }
        let at = record.target.join(path);
        match &self.container {
            Some(Container::Emulated { .. }) => {
                let table = emulated::Table::new(record);
                let device = veritylab::audit::View::file_at(&table, &at).map(|(file, _)| DeviceNumber {
                    major: file.major,
                    minor: file.minor,
                });
                if device == record.overlay_dev {
                    return Ok(None);
                }
                let entry = record
                    .emulated
                    .iter()
                    .flatten()
                    .filter(|e| at.starts_with(&e.mount_point))
                    .max_by_key(|e| e.mount_point.components().count());
                Ok(entry.map(|e| format!("{} {:?} on device {}", e.fs_type, e.source, e.device)))
            }
            Some(Container::Real { root, .. }) => {
                use std::os::unix::fs::MetadataExt;
                let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).map_err(io(p));
                let inside = root.join(path);
                let (root_dev, path_dev) = (dev(root)?, dev(&inside)?);
                if root_dev == path_dev {
                    return Ok(None);
                }
                let device = DeviceNumber::from_dev(path_dev);
                let described = record
                    .holder
                    .and_then(|pid| veritylab::mountinfo::read(pid).ok())
                    .unwrap_or_default()
                    .into_iter()
                    .rfind(|m| m.mount_point == at)
                    .map(|m| format!("{} {:?}", m.fs_type.to_string_lossy(), m.source.to_string_lossy()));
                Ok(Some(format!(
                    "{} on device {device}",
                    described.unwrap_or_else(|| "a filesystem".to_owned())
                )))
            }
            None => Err(AttackError::env("nothing is mounted")),
        }
    }

    fn remove_mount(&mut self, path: &str) -> Result<(), AttackError> {
        let Some((_, record)) = self.mounted.as_mut() else {
            return Ok(());
        };
        let mount_point = record.target.join(path);
        if self.backend != Backend::Emulated {
            return self.mount_inside(&["umount".as_ref(), mount_point.as_os_str()]);
        }
        if let Some(table) = record.emulated.as_mut() {
            table.retain(|e| e.mount_point != mount_point);
        }
        emulated::save(record).map_err(env_err("removing the mount"))
    }

    fn upperdir(&self) -> Option<PathBuf> {
        self.mounted.as_ref().and_then(|(_, r)| r.upperdir.clone())
    }

    fn write_in_container(&mut self, path: &str, bytes: &[u8]) -> Result<(), AttackError> {
        let written = match &self.container {
            Some(Container::Emulated { rootfs, .. }) => rootfs.write(path, bytes),
            Some(Container::Real { root, .. }) => fs::write(root.join(path.trim_start_matches('/')), bytes),
            None => return Err(AttackError::env("nothing is mounted")),
        };
        written.map_err(|e| {
            if e.raw_os_error() == Some(30) {
                AttackError::Refused {
                    kind: DefenceRefusal::ReadOnly,
                    message: format!("writing /{path} in the container: {e}"),
                }
            } else {
                AttackError::env(format!("writing /{path}: {e}"))
            }
        })
    }

    fn read_in_container(&mut self, path: &str) -> Result<Vec<u8>, AttackError> {
        let read = match &self.container {
            Some(Container::Emulated { rootfs, .. }) => rootfs
                .read(path, 1 << 20)
                .map_err(|e| (e.is_verification_failure(), e.to_string())),
            Some(Container::Real { root, .. }) => fs::read(root.join(path.trim_start_matches('/'))).map_err(|e| {
                (
                    e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()),
                    e.to_string(),
                )
            }),
            None => return Err(AttackError::env("nothing is mounted")),
        };
        read.map_err(|(verification, e)| {
            if verification {
                AttackError::Refused {
                    kind: DefenceRefusal::HashMismatch,
                    message: format!("reading /{path}: {e}"),
                }
            } else {
                AttackError::env(format!("reading /{path}: {e}"))
            }
        })
    }

    fn list_in_container(&mut self, path: &str) -> Result<Vec<String>, AttackError> {
        let rel = path.trim_start_matches('/');
        let names = match &self.container {
            Some(Container::Emulated { rootfs, .. }) => rootfs
                .merged
                .list(rel.as_bytes())
                .map_err(env_err("listing in the container"))?
                .into_iter()
                .map(|e| String::from_utf8_lossy(&e.name).into_owned())
                .collect(),
            Some(Container::Real { root, .. }) => {
                let dir = root.join(rel);
                fs::read_dir(&dir)
                    .map_err(io(&dir))?
                    .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(io(&dir))?
            }
            None => return Err(AttackError::env("nothing is mounted")),
        };
        Ok(names.into_iter().filter(|n| n != "." && n != "..").collect())
    }

    fn publish_whiteout(&mut self, dir: &str, hidden: &str) -> Result<String, AttackError> {
        let mut layers = self.layers.clone();
        layers.push(LayerSpec {
            files: vec![EntrySpec {
                path: format!("{dir}/{hidden}"),
                kind: EntryKind::Whiteout,
                mode: None,
            }],
        });
        let published = self.variant(&format!("{REPOSITORY}:whiteout"), &layers, None)?;
        self.retag(published.clone())?;
        // The publisher signs with the trusted key, as its pipeline would; the signer converts each layer to
        // find its root hash, so it may refuse the layer, and then the image ships unsigned.
        let signed = match self.sign(&self.store, &self.name, &self.key, BUILT) {
            Ok(report) => format!("signed with the trusted key as {}", report.manifest.digest),
            Err(refused) => format!("unsigned: the publisher's `veritylab sign` refused it ({refused})"),
        };
        Ok(format!(
            "{} now names {}, whose top layer holds the whiteout {dir}/.wh.{hidden}; {signed}",
            self.name, published.digest
        ))
    }

    fn read_device(&mut self, index: usize, offset: u64, len: usize) -> Result<Vec<u8>, AttackError> {
        let layer = self.conversion(index)?;
        let name = layer.layer.to_string();
        let mut buf = vec![0u8; len];
        match &self.container {
            Some(Container::Emulated { devices, .. }) => {
                if let Some((_, device)) = devices.iter().find(|(n, _)| *n == name) {
                    return device
                        .read_verified(offset, &mut buf)
                        .map(|()| buf)
                        .map_err(|e| device_refusal(index, offset, e));
                }
            }
            Some(Container::Real { devices, mappings, .. }) => {
                let device_file = devices
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, dir)| dir.join(verity_fuse::fuse::DEVICE_FILE))
                    .or_else(|| mappings.iter().find(|(n, _)| *n == name).map(|(_, m)| m.path()));
                if let Some(path) = device_file {
                    let file = fs::File::open(&path).map_err(io(&path))?;
                    let size = file.metadata().map_err(io(&path))?.len();
                    let mut read = 0;
                    while read < len {
                        match std::os::unix::fs::FileExt::read_at(&file, &mut buf[read..], offset + read as u64) {
                            Ok(0) => break,
                            Ok(n) => read += n,
                            Err(e) if e.raw_os_error() == Some(veritylab::rootfs::error::EIO) => {
                                return Err(AttackError::Refused {
                                    kind: DefenceRefusal::HashMismatch,
                                    message: format!("reading the verified device of layer {index} at {offset}: {e}"),
                                });
                            }
                            Err(e) => return Err(io(&path)(e)),
                        }
                    }
                    // The device ends where the tree's data blocks end: a read there meets end of file.
                    if read < len {
                        return Err(AttackError::Refused {
                            kind: DefenceRefusal::OutOfRange,
                            message: format!(
                                "the verified device of layer {index} ends at byte {size}: a read of {len} bytes at \
                                 {offset} returned {read}"
                            ),
                        });
                    }
                    return Ok(buf);
                }
            }
            None => return Err(AttackError::env("nothing is mounted")),
        }
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

    fn allow_unsigned(&mut self) -> Result<String, AttackError> {
        self.policy_requires_signature = false;
        Ok(format!(
            "the node's policy rule for {REPOSITORY} now says require_signature = false"
        ))
    }

    fn set_check_at_most_once(&mut self) {
        self.check_at_most_once = true;
    }

    fn drop_caches(&mut self) -> Result<String, AttackError> {
        match &self.container {
            Some(Container::Emulated { devices, .. }) => {
                for (_, device) in devices {
                    device.drop_caches();
                }
                Ok(format!("dropped the caches of {} verified devices", devices.len()))
            }
            // The page cache over the rootfs, the EROFS mounts and the devices: what memory pressure evicts.
            Some(Container::Real { .. }) => {
                let knob = Path::new("/proc/sys/vm/drop_caches");
                fs::write(knob, "3").map_err(io(knob))?;
                Ok("dropped the page cache (3 > /proc/sys/vm/drop_caches)".to_owned())
            }
            None => Err(AttackError::env("nothing is mounted")),
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
        let (plan, _) = self
            .mounted
            .clone()
            .ok_or_else(|| AttackError::env("nothing is mounted"))?;
        for i in 0..count.min(8) {
            let target = self.dir.path().join(format!("stopped-{i}"));
            fs::create_dir_all(&target).map_err(io(&target))?;
            let mut leaked = plan.clone();
            leaked.id = mount::record::new_id();
            leaked.state = plan.state.with_file_name(&leaked.id);
            leaked.target = fs::canonicalize(&target).map_err(io(&target))?;
            let record = mount::mount(&self.store, &leaked, &self.exe).map_err(env_err("leaking a mount"))?;
            let mut leak = Leak {
                target: record.target.clone(),
                id: record.id.clone(),
                squatter: None,
            };
            let stopped = if record.backend == Backend::Emulated {
                stop_emulated(record)
            } else {
                stop_leaving_a_squatter(&record).map(|child| leak.squatter = Some(child))
            };
            self.leaked.push(leak);
            stopped?;
        }
        let text = self
            .leaked
            .iter()
            .map(|l| match &l.squatter {
                Some(child) => format!("{} (its namespace kept by pid {})", l.target.display(), child.id()),
                None => format!("{} (its process gone, its record left)", l.target.display()),
            })
            .collect::<Vec<_>>()
            .join(", ");
        Ok(format!(
            "stopped {} container(s) whose mounts stay: {text}",
            self.leaked.len()
        ))
    }

    fn replay_layer_mount(&mut self, index: usize, trojan: &Trojan) -> Result<String, AttackError> {
        let (done, device) = super::replay::replay(self, index, trojan)?;
        self.replayed = device;
        Ok(done)
    }

    fn release_replay(&mut self) -> Result<(), AttackError> {
        match self.replayed.take() {
            Some(device) => super::replay::release(&device),
            None => Ok(()),
        }
    }

    fn leaks_alive(&self) -> Result<Vec<String>, AttackError> {
        let mut alive = Vec::new();
        for leak in &self.leaked {
            match &leak.squatter {
                Some(child) => {
                    let mounts = veritylab::mountinfo::read(child.id()).unwrap_or_default();
                    if let Some(m) = mounts.iter().find(|m| m.mount_point == leak.target) {
                        alive.push(format!(
                            "{} {} still mounted in the namespace pid {} keeps",
                            m.fs_type.to_string_lossy(),
                            leak.target.display(),
                            child.id()
                        ));
                    }
                }
                None => {
                    if mount::record::find(&self.store, &leak.target)
                        .map_err(env_err("mount records"))?
                        .is_some()
                    {
                        alive.push(format!(
                            "the mount {} at {} is still recorded",
                            leak.id,
                            leak.target.display()
                        ));
                    }
                }
            }
        }
        Ok(alive)
    }

    fn release_leaks(&mut self) -> Result<(), AttackError> {
        for mut leak in std::mem::take(&mut self.leaked) {
            if let Some(child) = leak.squatter.as_mut() {
                // Killing the last process in the namespace takes its mounts with it.
                let _ = child.kill();
                child.wait().map_err(env_err("reaping the squatter"))?;
            }
            match mount::umount(&self.store, &leak.target) {
                Ok(_) | Err(mount::MountError::NotMounted { .. }) => {}
                Err(e) => return Err(AttackError::env(format!("releasing {}: {e}", leak.target.display()))),
            }
        }
        Ok(())
    }
}

/// Stops an emulated container without taking its mount down: its record is made to name a process that has
/// exited (a thread of ours, gone once joined), as a killed container's would.
fn stop_emulated(mut record: Record) -> Result<(), AttackError> {
    let gone = std::thread::spawn(|| {
        fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|l| l.file_name()?.to_str()?.parse::<u32>().ok())
    })
    .join()
    .map_err(|_| AttackError::env("the stand-in container process panicked"))?
    .ok_or_else(|| AttackError::env("/proc/thread-self does not name a thread"))?;
    record.holder = Some(gone);
    emulated::save(&record).map_err(env_err("stopping the emulated container"))
}

/// Stops a kernel or fuse container the way the seed design's leak happens: a process enters its mount
/// namespace, then the holder is killed (no teardown), so the namespace and every mount in it stay alive,
/// held by that process alone. Returns the process.
fn stop_leaving_a_squatter(record: &Record) -> Result<std::process::Child, AttackError> {
    let holder = record
        .holder
        .ok_or_else(|| AttackError::env("the leaked mount has no holder"))?;
    let namespace = record
        .namespace
        .clone()
        .ok_or_else(|| AttackError::env("the leaked mount's namespace is not recorded"))?;
    let mut child = std::process::Command::new("nsenter")
        .args(["-t", &holder.to_string(), "-m", "--", "sleep", "600"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(env_err("starting a process in the container's namespace"))?;
    let pid = child.id();
    let entered = || {
        fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|l| l.to_string_lossy() == namespace)
            && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == "sleep")
    };
    if !wait_for(entered) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(AttackError::env(format!(
            "pid {pid} did not enter the namespace {namespace}"
        )));
    }
    let killed = rustix::process::Pid::from_raw(i32::try_from(holder).unwrap_or(0))
        .ok_or_else(|| AttackError::env("no holder pid"))
        .and_then(|p| {
            rustix::process::kill_process(p, rustix::process::Signal::KILL).map_err(env_err("killing the holder"))
        });
    if let Err(e) = killed.and_then(|()| {
        if wait_for(|| !record.holder_alive()) {
            Ok(())
        } else {
            Err(AttackError::env(format!("the holder {holder} outlived SIGKILL")))
        }
    }) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok(child)
}

/// Polls `done` every 20 ms for at most five seconds.
fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..250 {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    done()
}

/// A verified device's refusal of a read, by its typed error: past its end is the bounds check, a block that
/// fails verification (or a device halted by one) is a hash mismatch, anything else the harness's.
pub fn device_refusal(index: usize, offset: u64, e: verity_fuse::VerityError) -> AttackError {
    use verity_fuse::VerityError as V;
    let message = format!("reading the verified device of layer {index} at {offset}: {e}");
    match e {
        V::OutOfRange { .. } => AttackError::Refused {
            kind: DefenceRefusal::OutOfRange,
            message,
        },
        V::HashMismatch { .. } | V::NonZeroPadding { .. } | V::Halted { .. } => AttackError::Refused {
            kind: DefenceRefusal::HashMismatch,
            message,
        },
        _ => AttackError::env(message),
    }
}
