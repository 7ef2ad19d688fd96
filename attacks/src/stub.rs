//! A stand-in [`Env`] for the attacks' own tests: a real store holding a one-layer image built from the
//! container's files, a container whose files are a map, one layer file on disk, and switches for what the
//! lab would refuse. Every primitive the tests do not need is a harness error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use veritylab::oci::Digest;
use veritylab::oci::manifest::ImageManifest;
use veritylab::sign::Scheme;
use veritylab::store::Store;

use crate::env::{Replayed, Trojan};
use crate::{AttackError, BuildTimes, DefenceRefusal, Env, LayerFiles, MountKind, SigningKey, layer_tar};

/// The image's name in the stub's store.
const IMAGE: &str = "lab.example/stub:v1";

/// The stand-in lab.
pub(crate) struct Stub {
    /// The directory holding the store and the scratch space.
    pub(crate) dir: tempfile::TempDir,
    /// The store.
    pub(crate) store: Store,
    /// The container's files by path.
    pub(crate) files: BTreeMap<String, Vec<u8>>,
    /// Whether a write through the container is refused as on a read-only rootfs.
    pub(crate) read_only: bool,
    /// The one layer file (its data is the whole file, no tree).
    pub(crate) layer: Option<PathBuf>,
    /// Offset of each file's data in the layer file.
    pub(crate) offsets: BTreeMap<String, u64>,
    /// Whether the container reads the layer file (false: it keeps serving what it cached).
    pub(crate) reads_through: bool,
}

impl Default for Stub {
    fn default() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(&dir.path().join("store")).expect("a store");
        Self {
            dir,
            store,
            files: BTreeMap::new(),
            read_only: false,
            layer: None,
            offsets: BTreeMap::new(),
            reads_through: false,
        }
    }
}

impl Stub {
    /// Stores a one-layer image of the container's files as [`Env::image`].
    pub(crate) fn publish(&self) -> Result<(), AttackError> {
        let mut tar = layer_tar::finish(layer_tar::Builder::new(Vec::new())).map_err(AttackError::env)?;
        for (path, content) in &self.files {
            tar = layer_tar::with_file(&tar, path, content)?;
        }
        crate::steps::publish(self, "v1", &[tar]).map(drop)
    }
}

fn no(what: &str) -> AttackError {
    AttackError::env(format!("the stub lab does not {what}"))
}

impl Env for Stub {
    fn store(&self) -> &Store {
        &self.store
    }

    fn image(&self) -> &str {
        IMAGE
    }

    fn scheme(&self) -> Scheme {
        Scheme::Cosign
    }

    fn sign(&mut self, _: &str, _: SigningKey, _: u64) -> Result<Digest, AttackError> {
        Err(no("sign"))
    }

    fn build_times(&self) -> BuildTimes {
        BuildTimes { built: 0, minimum: 0 }
    }

    fn allow_unsigned(&mut self) -> Result<String, AttackError> {
        Err(no("edit its policy"))
    }

    fn registry_manifest(&self) -> Result<ImageManifest, AttackError> {
        Err(no("run a registry"))
    }

    fn registry_blob(&self, _: &Digest) -> Result<PathBuf, AttackError> {
        Err(no("run a registry"))
    }

    fn registry_push(&mut self, _: &str, _: &[Vec<u8>]) -> Result<Digest, AttackError> {
        Err(no("run a registry"))
    }

    fn registry_split_view(&mut self, _: &str, _: &[Vec<u8>]) -> Result<Digest, AttackError> {
        Err(no("run a registry"))
    }

    fn scratch(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    fn layer_count(&self) -> usize {
        usize::from(self.layer.is_some())
    }

    fn layer(&self, index: usize) -> Result<LayerFiles, AttackError> {
        let erofs = self
            .layer
            .clone()
            .filter(|_| index == 0)
            .ok_or_else(|| no("have that layer"))?;
        let size = std::fs::metadata(&erofs).map_err(AttackError::env)?.len();
        Ok(LayerFiles {
            digest: "sha256:stub".to_owned(),
            erofs,
            data_size: size,
            hash_offset: size,
            levels: Vec::new(),
        })
    }

    fn rewrite_local_metadata(&mut self, _: usize, _: &Trojan) -> Result<(), AttackError> {
        Err(no("keep local metadata"))
    }

    fn pinned_layer(&self) -> Option<PathBuf> {
        None
    }

    fn set_check_at_most_once(&mut self) {}

    fn read_device(&mut self, _: usize, _: u64, _: usize) -> Result<Vec<u8>, AttackError> {
        Err(no("open devices"))
    }

    fn drop_caches(&mut self) -> Result<String, AttackError> {
        Ok("nothing cached".to_owned())
    }

    fn write_in_container(&mut self, path: &str, bytes: &[u8]) -> Result<(), AttackError> {
        if self.read_only {
            return Err(AttackError::Refused {
                kind: DefenceRefusal::ReadOnly,
                message: format!("writing /{path}: read-only file system"),
            });
        }
        self.files.insert(path.to_owned(), bytes.to_vec());
        Ok(())
    }

    fn read_in_container(&mut self, path: &str) -> Result<Vec<u8>, AttackError> {
        if self.reads_through
            && let (Some(layer), Some(&at)) = (&self.layer, self.offsets.get(path))
        {
            let bytes = std::fs::read(layer).map_err(AttackError::env)?;
            let len = self.files.get(path).map_or(0, Vec::len);
            let at = usize::try_from(at).map_err(AttackError::env)?;
            return Ok(bytes.get(at..at + len).unwrap_or_default().to_vec());
        }
        self.files.get(path).cloned().ok_or_else(|| no("have that file"))
    }

    fn kernel_signature(&self, _: SigningKey, content: &[u8]) -> Result<Vec<u8>, AttackError> {
        Ok(content.to_vec())
    }

    fn exec_in_container(&mut self, path: &str) -> Result<String, AttackError> {
        let bytes = self.files.get(path).ok_or_else(|| no("have that file"))?;
        Ok(String::from_utf8_lossy(bytes)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned())
    }

    fn list_in_container(&mut self, _: &str) -> Result<Vec<String>, AttackError> {
        Err(no("list directories"))
    }

    fn upperdir(&self) -> Option<PathBuf> {
        None
    }

    fn mount_in_container(&mut self, _: &str, _: MountKind, _: &Path) -> Result<String, AttackError> {
        Err(no("mount"))
    }

    fn unmount_in_container(&mut self, _: &str) -> Result<(), AttackError> {
        Err(no("mount"))
    }

    fn mount_at(&self, _: &str) -> Result<Option<String>, AttackError> {
        Ok(None)
    }

    fn leak_mounts(&mut self, _: u64) -> Result<String, AttackError> {
        Err(no("leak mounts"))
    }

    fn leaks_alive(&self) -> Result<Vec<String>, AttackError> {
        Ok(Vec::new())
    }

    fn release_leaks(&mut self) -> Result<(), AttackError> {
        Ok(())
    }

    fn replay_layer_mount(&mut self, _: usize, _: &Trojan) -> Result<Replayed, AttackError> {
        Err(no("replay mounts"))
    }

    fn release_replay(&mut self) -> Result<(), AttackError> {
        Ok(())
    }

    fn replace_container_process(&mut self, _: &str) -> Result<String, AttackError> {
        Err(no("run a container process to replace"))
    }

    fn container_process(&self) -> Result<String, AttackError> {
        Err(no("run a container process"))
    }

    fn release_replaced_process(&mut self) -> Result<(), AttackError> {
        Ok(())
    }
}
