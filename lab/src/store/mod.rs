//! The content store: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) plus per-layer
//! conversion output under `layers/sha256/<hex>/<layout>/`.
//!
//! Every write is atomic. A blob is streamed into a temporary file inside `blobs/sha256/`, hashed on the
//! way, and renamed to its digest only once digest and size match; `index.json` is rewritten through a
//! temporary file and a rename under an exclusive lock; a conversion is built in a temporary directory and
//! renamed into place whole. An interrupted pull or convert therefore leaves only temporary files (named
//! `.tmp*`, never read) and restarts cleanly.
//!
//! Stale temporaries are removed by [`Store::open`]: every open store holds a shared lock on `.lock` in the
//! store root for as long as it lives (temporaries are only written through an open store), and `open`
//! first tries that lock exclusively without waiting. It gets it only when no other process has the store
//! open, and then every `.tmp*` in the root, in `blobs/sha256/` and in `layers/sha256/<hex>/` belongs to a
//! process that is gone, so it removes them before it takes its shared lock. While another process has
//! the store open, nothing is removed (the next open after it ends cleans up).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::oci::digest::{Digest, HashingReader, VerifyError};
use crate::oci::manifest::{Descriptor, Index, REF_NAME};
use crate::oci::media;

/// The `oci-layout` file's content.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The largest `index.json` we read.
const INDEX_LIMIT: u64 = 16 << 20;

/// A store failure, naming the path or digest involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading a blob's content from its source failed.
    #[error("reading {digest}: {source}")]
    Read {
        /// The blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Content does not match its descriptor; nothing was stored.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// `index.json` does not parse.
    #[error("{}: {source}", path.display())]
    IndexJson {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The directory is not an image layout we can use.
    #[error("{}: {reason}", path.display())]
    Layout {
        /// The store root.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// This user has no default store directory.
    #[error("no default store for this user: {reason} (pass --store DIR or set XDG_DATA_HOME)")]
    NoDefaultDir {
        /// Why there is none.
        reason: String,
    },
    /// No image of that name in the store.
    #[error("no image named {name:?} in the store {} (pull it first)", store.display())]
    NotFound {
        /// The name asked for.
        name: String,
        /// The store root.
        store: PathBuf,
    },
}

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// A checked blob in a temporary file, waiting to be renamed to its digest (dropped: deleted).
#[derive(Debug)]
pub struct Staged {
    tmp: Option<tempfile::NamedTempFile>,
    path: PathBuf,
}

impl Staged {
    /// Makes the blob visible under its digest.
    pub fn commit(self) -> Result<()> {
        match self.tmp {
            None => Ok(()),
            Some(tmp) => {
                let path = self.path;
                tmp.persist(&path)
                    .map_err(|e| io_err("renaming into", &path)(e.error))?;
                Ok(())
            }
        }
    }
}

/// An opened store (holding the store's shared lock while any clone of it lives).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    _lock: std::sync::Arc<File>,
    stale_removed: usize,
}

/// The default store directory: `/var/lib/veritylab` as root, else `$XDG_DATA_HOME/veritylab` or
/// `$HOME/.local/share/veritylab`. A normal user with neither variable set, or whose `HOME` is not a
/// directory (`nobody`'s is `/nonexistent`), has no default: the error says to pass `--store`.
pub fn default_dir() -> Result<PathBuf> {
    if verity_fuse::sys::is_root() {
        return Ok(PathBuf::from("/var/lib/veritylab"));
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(data).join("veritylab"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()).map(PathBuf::from) {
        Some(home) if home.is_dir() => Ok(home.join(".local/share/veritylab")),
        Some(home) => Err(StoreError::NoDefaultDir {
            reason: format!("HOME ({}) is not a directory", home.display()),
        }),
        None => Err(StoreError::NoDefaultDir {
            reason: "neither XDG_DATA_HOME nor HOME is set".to_owned(),
        }),
    }
}

impl Store {
    /// Opens the store at `root`, creating an empty image layout there if it has none. `layers/` appears
    /// with the first conversion, so a `Store` is also how plain image layouts are written (the `oci:`
    /// destinations of push and image build).
    pub fn open(root: &Path) -> Result<Self> {
        let blob_dir = root.join("blobs/sha256");
        fs::create_dir_all(&blob_dir).map_err(io_err("creating", &blob_dir))?;
        let lock_path = root.join(".lock");
        let lock = File::options()
            .create(true)
            .append(true)
            .open(&lock_path)
            .map_err(io_err("opening", &lock_path))?;
        let locking = |e: rustix::io::Errno| io_err("locking", &lock_path)(e.into());
        let alone = rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok();
        let stale_removed = if alone { remove_stale(root) } else { 0 };
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockShared).map_err(locking)?;
        let store = Self {
            root: root.to_owned(),
            _lock: std::sync::Arc::new(lock),
            stale_removed,
        };
        let layout = root.join("oci-layout");
        match fs::read(&layout) {
            Ok(bytes) => {
                let version = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("imageLayoutVersion")?.as_str().map(str::to_owned));
                if version.as_deref() != Some("1.0.0") {
                    return Err(StoreError::Layout {
                        path: root.to_owned(),
                        reason: "oci-layout is not {\"imageLayoutVersion\":\"1.0.0\"}".to_owned(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => write_atomically(&layout, OCI_LAYOUT)?,
            Err(e) => return Err(io_err("reading", &layout)(e)),
        }
        let index = store.index_path();
        if !index.exists() {
            let empty = Index {
                schema_version: 2,
                media_type: Some(media::OCI_INDEX.to_owned()),
                manifests: Vec::new(),
                annotations: Default::default(),
            };
            write_atomically(&index, &to_json(&empty))?;
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many stale temporary files and directories [`Store::open`] removed.
    pub fn stale_removed(&self) -> usize {
        self.stale_removed
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// Where a blob lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    /// Whether the blob is stored with the given size.
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Stores bytes after checking them against `digest` and `size`.
    pub fn put_bytes(&self, digest: &Digest, size: u64, bytes: &[u8]) -> Result<()> {
        self.stage_bytes(digest, size, bytes)?.commit()
    }

    /// Streams a blob from `source` into the store; it appears under its digest only if exactly `size`
    /// bytes arrived and they hash to `digest`.
    pub fn put_stream(&self, digest: &Digest, size: u64, source: impl Read) -> Result<()> {
        self.stage_stream(digest, size, source)?.commit()
    }

    /// Checks bytes against `digest` and `size` and writes them to a temporary file, not yet visible.
    pub fn stage_bytes(&self, digest: &Digest, size: u64, bytes: &[u8]) -> Result<Staged> {
        digest.verify(size, bytes)?;
        self.stage_stream(digest, size, bytes)
    }

    /// Streams a blob into a temporary file while hashing it; it is returned only if exactly `size` bytes
    /// arrived and they hash to `digest`, and becomes visible with [`Staged::commit`]. A blob already stored
    /// is not read again.
    pub fn stage_stream(&self, digest: &Digest, size: u64, source: impl Read) -> Result<Staged> {
        let path = self.blob_path(digest);
        if self.has_blob(digest, size) {
            return Ok(Staged { tmp: None, path });
        }
        let dir = self.blob_dir();
        let tmp = tempfile::Builder::new()
            .prefix(".tmp")
            .tempfile_in(&dir)
            .map_err(io_err("creating a temporary file in", &dir))?;
        let mut reader = HashingReader::new(source, size);
        let mut writer = io::BufWriter::with_capacity(1 << 20, tmp.as_file());
        if let Err(source) = io::copy(&mut reader, &mut writer) {
            if reader.bytes_read() > size {
                return Err(VerifyError::SizeMismatch {
                    digest: *digest,
                    expected: size,
                    found: reader.bytes_read(),
                }
                .into());
            }
            return Err(StoreError::Read {
                digest: *digest,
                source,
            });
        }
        writer.flush().map_err(io_err("writing", tmp.path()))?;
        drop(writer);
        reader.finish(digest, size).map_err(|source| StoreError::Read {
            digest: *digest,
            source,
        })??;
        readable(tmp.as_file(), tmp.path())?;
        tmp.as_file().sync_all().map_err(io_err("syncing", tmp.path()))?;
        Ok(Staged { tmp: Some(tmp), path })
    }

    /// Reads a stored blob of at most `limit` bytes, checking it against its digest again.
    pub fn read_blob(&self, digest: &Digest, size: u64, limit: u64, what: &'static str) -> Result<Vec<u8>> {
        if size > limit {
            return Err(VerifyError::TooLarge {
                digest: *digest,
                size,
                limit,
                what,
            }
            .into());
        }
        let path = self.blob_path(digest);
        let bytes = read_limited(&path, limit)?;
        digest.verify(size, &bytes)?;
        Ok(bytes)
    }

    /// Opens a stored blob for reading (the caller checks the digest as it reads).
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(io_err("opening", &path))
    }

    /// The store's `index.json`.
    pub fn index(&self) -> Result<Index> {
        let path = self.index_path();
        let bytes = read_limited(&path, INDEX_LIMIT)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::IndexJson { path, source })
    }

    /// Records `descriptor` under `name` (its `org.opencontainers.image.ref.name`), replacing an older
    /// entry of the same name. The referenced blob must be stored already.
    pub fn tag(&self, name: &str, mut descriptor: Descriptor) -> Result<()> {
        if !self.has_blob(&descriptor.digest, descriptor.size) {
            return Err(StoreError::Layout {
                path: self.root.clone(),
                reason: format!("refusing to tag {name}: blob {} is not stored", descriptor.digest),
            });
        }
        let lock_path = self.root.join(".index.lock");
        let lock = File::create(&lock_path).map_err(io_err("creating", &lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err("locking", &lock_path)(e.into()))?;
        let mut index = self.index()?;
        index
            .manifests
            .retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(name));
        descriptor.annotations.insert(REF_NAME.to_owned(), name.to_owned());
        index.manifests.push(descriptor);
        write_atomically(&self.index_path(), &to_json(&index))
    }

    /// Removes the entry recorded under `name`, if any; says whether there was one. The blobs stay.
    pub fn untag(&self, name: &str) -> Result<bool> {
        let lock_path = self.root.join(".index.lock");
        let lock = File::create(&lock_path).map_err(io_err("creating", &lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err("locking", &lock_path)(e.into()))?;
        let mut index = self.index()?;
        let before = index.manifests.len();
        index
            .manifests
            .retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(name));
        if index.manifests.len() == before {
            return Ok(false);
        }
        write_atomically(&self.index_path(), &to_json(&index))?;
        Ok(true)
    }

    /// Images in the store: name and descriptor, in `index.json` order.
    pub fn images(&self) -> Result<Vec<(String, Descriptor)>> {
        Ok(self
            .index()?
            .manifests
            .into_iter()
            .filter_map(|d| Some((d.annotations.get(REF_NAME)?.clone(), d)))
            .collect())
    }

    /// The descriptor stored under `name`.
    pub fn lookup(&self, name: &str) -> Result<Descriptor> {
        self.images()?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
            .ok_or_else(|| StoreError::NotFound {
                name: name.to_owned(),
                store: self.root.clone(),
            })
    }

    /// The directory holding a layer's conversion in `layout` (present only once complete).
    pub fn layer_dir(&self, layer: &Digest, layout: &str) -> PathBuf {
        self.root.join("layers/sha256").join(layer.hex()).join(layout)
    }

    /// A fresh temporary directory beside `final_dir`, to be renamed onto it when complete.
    pub fn temp_dir_for(&self, final_dir: &Path) -> Result<tempfile::TempDir> {
        let parent = final_dir.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        tempfile::Builder::new()
            .prefix(".tmp")
            .tempdir_in(parent)
            .map_err(io_err("creating a temporary directory in", parent))
    }
}

/// Removes every `.tmp*` entry of the root, `blobs/sha256/` and `layers/sha256/<hex>/`; only called with
/// the store's lock held exclusively, so none belongs to a live process. Returns how many went.
fn remove_stale(root: &Path) -> usize {
    let mut dirs = vec![root.to_owned(), root.join("blobs/sha256")];
    if let Ok(layers) = fs::read_dir(root.join("layers/sha256")) {
        dirs.extend(layers.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    let mut removed = 0;
    for dir in dirs {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_name().as_encoded_bytes().starts_with(b".tmp") {
                continue;
            }
            let path = entry.path();
            let gone = match entry.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            if gone.is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Reads a whole file of at most `limit` bytes.
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(io_err("opening", path))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("reading", path))?;
    if bytes.len() as u64 > limit {
        return Err(StoreError::Layout {
            path: path.to_owned(),
            reason: format!("larger than the limit of {limit} bytes"),
        });
    }
    Ok(bytes)
}

/// Makes a finished file world-readable (`0644`; temporary files start as `0600`), as image layouts are.
pub fn readable(file: &File, path: &Path) -> Result<()> {
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(io_err("setting permissions of", path))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err("creating a temporary file in", dir))?;
    tmp.write_all(bytes).map_err(io_err("writing", tmp.path()))?;
    readable(tmp.as_file(), tmp.path())?;
    tmp.as_file().sync_all().map_err(io_err("syncing", tmp.path()))?;
    tmp.persist(path).map_err(|e| io_err("renaming into", path)(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_store_is_an_empty_image_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(fs::read(dir.path().join("oci-layout")).unwrap(), OCI_LAYOUT);
        assert!(store.index().unwrap().manifests.is_empty());
        Store::open(dir.path()).unwrap();
    }

    #[test]
    fn blobs_appear_only_when_they_match_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"layer bytes");
        let err = store.put_stream(&d, 11, &b"layer bytez"[..]).unwrap_err();
        assert!(
            matches!(err, StoreError::Verify(VerifyError::DigestMismatch { .. })),
            "{err}"
        );
        let err = store.put_stream(&d, 11, &b"layer bytes and more"[..]).unwrap_err();
        assert!(
            matches!(err, StoreError::Verify(VerifyError::SizeMismatch { .. })),
            "{err}"
        );
        let err = store.put_bytes(&d, 11, b"layer").unwrap_err();
        assert!(
            matches!(err, StoreError::Verify(VerifyError::SizeMismatch { .. })),
            "{err}"
        );
        assert!(entries(&store.blob_dir()).is_empty(), "nothing left behind");
        store.put_stream(&d, 11, &b"layer bytes"[..]).unwrap();
        assert_eq!(entries(&store.blob_dir()), vec![d.hex()]);
        let mode = fs::metadata(store.blob_path(&d)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(store.read_blob(&d, 11, 100, "blob").unwrap(), b"layer bytes");
        assert!(store.read_blob(&d, 11, 5, "blob").is_err());
    }

    #[test]
    fn tags_replace_older_entries_of_the_same_name_and_untag_removes_only_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let descriptor = |content: &[u8]| {
            let digest = Digest::of(content);
            store.put_bytes(&digest, content.len() as u64, content).unwrap();
            Descriptor {
                media_type: media::OCI_MANIFEST.to_owned(),
                digest,
                size: content.len() as u64,
                platform: None,
                annotations: Default::default(),
            }
        };
        store.tag("example.com/a:1", descriptor(b"one")).unwrap();
        store.tag("example.com/b:1", descriptor(b"two")).unwrap();
        store.tag("example.com/a:1", descriptor(b"three")).unwrap();
        let images = store.images().unwrap();
        let names: Vec<&str> = images.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["example.com/b:1", "example.com/a:1"]);
        assert_eq!(store.lookup("example.com/a:1").unwrap().digest, Digest::of(b"three"));
        assert!(matches!(store.lookup("nope"), Err(StoreError::NotFound { .. })));
        let unstored = Descriptor {
            digest: Digest::of(b"never stored"),
            ..descriptor(b"one")
        };
        assert!(store.tag("x", unstored).is_err());
        assert!(store.untag("example.com/b:1").unwrap());
        assert!(!store.untag("example.com/b:1").unwrap());
        let names: Vec<String> = store.images().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["example.com/a:1"]);
        assert!(store.has_blob(&Digest::of(b"two"), 3), "untag keeps the blob");
    }

    #[test]
    fn opening_a_store_no_one_else_has_open_removes_stale_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"kept");
        store.put_bytes(&d, 4, b"kept").unwrap();
        drop(store);
        let layer_dir = dir.path().join("layers/sha256").join(d.hex());
        fs::create_dir_all(layer_dir.join(".tmpconv/inner")).unwrap();
        fs::write(layer_dir.join(".tmpconv/inner/layer.erofs"), b"half").unwrap();
        fs::write(dir.path().join("blobs/sha256/.tmpblob"), b"half a blob").unwrap();
        fs::write(dir.path().join(".tmpindex"), b"{").unwrap();
        fs::create_dir_all(dir.path().join(".tmparchive/blobs")).unwrap();

        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.stale_removed(), 4);
        assert_eq!(entries(&store.blob_dir()), vec![d.hex()]);
        assert!(fs::read_dir(&layer_dir).unwrap().next().is_none());
        assert!(!dir.path().join(".tmpindex").exists());
        assert!(!dir.path().join(".tmparchive").exists());
        assert_eq!(store.read_blob(&d, 4, 4, "blob").unwrap(), b"kept");
    }

    #[test]
    fn temporaries_of_a_store_open_elsewhere_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"in flight");
        let staged = writer.stage_bytes(&d, 9, b"in flight").unwrap();
        let other = Store::open(dir.path()).unwrap();
        assert_eq!(other.stale_removed(), 0);
        assert_eq!(
            entries(&writer.blob_dir()).len(),
            1,
            "the staged temporary is still there"
        );
        staged.commit().unwrap();
        assert!(other.has_blob(&d, 9));
        // A temporary left by a writer that is gone, while the store is still open elsewhere: kept for now.
        fs::write(dir.path().join("blobs/sha256/.tmpleft"), b"x").unwrap();
        drop(writer);
        assert_eq!(Store::open(dir.path()).unwrap().stale_removed(), 0);
        drop(other);
        assert_eq!(Store::open(dir.path()).unwrap().stale_removed(), 1);
        assert_eq!(entries(&dir.path().join("blobs/sha256")), vec![d.hex()]);
    }
}
