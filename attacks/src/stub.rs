//! A stand-in [`Env`] for the attacks' own tests: a container whose files are a map, one layer file on disk,
//! and switches for what the lab would refuse. Every method the tests do not need is a harness error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::env::Trojan;
use crate::{AttackError, DefenceRefusal, Env, LayerFiles, MountKind, Scheme};

/// The stand-in lab.
#[derive(Debug, Default)]
pub(crate) struct Stub {
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

fn no(what: &str) -> AttackError {
    AttackError::env(format!("the stub lab does not {what}"))
}

impl Env for Stub {
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

    fn file_offset(&self, _index: usize, path: &str) -> Result<u64, AttackError> {
        self.offsets.get(path).copied().ok_or_else(|| no("know that file"))
    }

    fn trojan_layer(&mut self, _: usize, _: &str, _: &[u8]) -> Result<Trojan, AttackError> {
        Err(no("build layers"))
    }

    fn build_tree(&mut self, _: &[u8]) -> Result<Trojan, AttackError> {
        Err(no("build trees"))
    }

    fn replay_layer_mount(&mut self, _: usize, _: &Trojan) -> Result<String, AttackError> {
        Err(no("replay mounts"))
    }

    fn release_replay(&mut self) -> Result<(), AttackError> {
        Ok(())
    }

    fn allow_unsigned(&mut self) -> Result<String, AttackError> {
        Err(no("have a policy"))
    }

    fn list_in_container(&mut self, _: &str) -> Result<Vec<String>, AttackError> {
        Err(no("list directories"))
    }

    fn publish_whiteout(&mut self, _: &str, _: &str) -> Result<String, AttackError> {
        Err(no("publish images"))
    }

    fn rewrite_local_metadata(&mut self, _: usize, _: &Trojan) -> Result<(), AttackError> {
        Err(no("keep metadata"))
    }

    fn manifest(&self) -> Result<Vec<u8>, AttackError> {
        Err(no("keep manifests"))
    }

    fn replace_manifest(&mut self, _: &[u8], _: bool) -> Result<String, AttackError> {
        Err(no("keep manifests"))
    }

    fn trojan_root_hash(&mut self, _: usize) -> Result<String, AttackError> {
        Err(no("build layers"))
    }

    fn scheme(&self) -> Scheme {
        Scheme::Cosign
    }

    fn remove_signatures(&mut self) -> Result<String, AttackError> {
        Err(no("sign"))
    }

    fn modify_image(&mut self, _: &str, _: &[u8]) -> Result<String, AttackError> {
        Err(no("keep images"))
    }

    fn sign_with_other_key(&mut self, _: &str, _: &[u8]) -> Result<String, AttackError> {
        Err(no("sign"))
    }

    fn registry_blob(&self, _: &str) -> Result<PathBuf, AttackError> {
        Err(no("run a registry"))
    }

    fn registry_image(&self) -> Result<(String, Vec<String>), AttackError> {
        Err(no("run a registry"))
    }

    fn move_tag(&mut self, _: &str) -> Result<String, AttackError> {
        Err(no("keep tags"))
    }

    fn serve_older(&mut self, _: bool) -> Result<String, AttackError> {
        Err(no("keep images"))
    }

    fn mix_layers(&mut self, _: usize) -> Result<String, AttackError> {
        Err(no("keep images"))
    }

    fn add_mount(&mut self, _: &str, _: MountKind) -> Result<String, AttackError> {
        Err(no("mount"))
    }

    fn mount_at(&self, _: &str) -> Result<Option<String>, AttackError> {
        Ok(None)
    }

    fn remove_mount(&mut self, _: &str) -> Result<(), AttackError> {
        Err(no("mount"))
    }

    fn upperdir(&self) -> Option<PathBuf> {
        None
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

    fn read_device(&mut self, _: usize, _: u64, _: usize) -> Result<Vec<u8>, AttackError> {
        Err(no("open devices"))
    }

    fn set_check_at_most_once(&mut self) {}

    fn drop_caches(&mut self) -> Result<String, AttackError> {
        Ok("nothing cached".to_owned())
    }

    fn pinned_layer(&self) -> Option<PathBuf> {
        None
    }

    fn replace_pinned(&mut self, _: &str, _: &[u8]) -> Result<String, AttackError> {
        Err(no("pin layers"))
    }

    fn leak_mounts(&mut self, _: u64) -> Result<String, AttackError> {
        Err(no("mount"))
    }

    fn leaks_alive(&self) -> Result<Vec<String>, AttackError> {
        Ok(Vec::new())
    }

    fn release_leaks(&mut self) -> Result<(), AttackError> {
        Ok(())
    }
}
