//! Building a small multi-layer image from directories (`veritylab image build`), for demos and tests.
//!
//! Each directory is the whole filesystem as it should look after its layer, the first one at the bottom.
//! A layer holds what [`diff::changes`] says differs from the directory before it: new and changed
//! entries (with their parent directories), `.wh.NAME` whiteouts for deletions, and `.wh..wh..opq` for a
//! directory whose lower content is all gone.
//!
//! Data flow per layer: [`diff::scan`] → [`diff::changes`] → a tar stream (hashed: the `diff_id`) → gzip
//! (hashed: the blob digest) → a temporary file → the output layout's `blobs/sha256/`, checked on the way
//! in. Then the config (`rootfs.diff_ids`, the platform) and the manifest, and last the tag in
//! `index.json`. A new output directory is built beside its final path and renamed into place whole; an
//! existing layout gets its blobs first and its tag last, so a failed build never leaves a tag on an
//! incomplete image.
//!
//! Output is deterministic: entries in a fixed order, every mtime the same (`mtime`, default 0), numeric
//! owners only (no user or group names), a gzip header without name or time. The same directories give
//! the same digests on any machine.

pub(crate) mod diff;

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use self::diff::{Change, Kind, Node, Tree};
use super::digest::Digest;
use super::manifest::{Descriptor, ImageManifest, Platform};
use super::media;
use crate::progress::Event;
use crate::store::{Store, StoreError};
use verity_fuse::ErrorClass;

/// The media type of the layers we write.
pub(crate) const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The platform written into the config and the index entry.
    pub platform: Platform,
    /// The mtime of every tar entry (seconds since the epoch).
    pub mtime: u64,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            platform: Platform::host(),
            mtime: 0,
        }
    }
}

/// A failed build; no tag was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
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
    /// A layer source is not a directory.
    #[error("{}: not a directory (each layer is a directory)", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// A source entry of a type a layer cannot carry here.
    #[error("{}: a {kind} cannot go into an image built here (regular files, directories and symlinks only)", path.display())]
    Unsupported {
        /// The entry.
        path: PathBuf,
        /// Its type.
        kind: &'static str,
    },
    /// A source name that a layer would read as a whiteout.
    #[error("{}: names starting with .wh. are OCI whiteouts and cannot be image content", path.display())]
    WhiteoutName {
        /// The entry.
        path: PathBuf,
    },
    /// A file changed between scanning and writing.
    #[error("{}: changed while the image was being built", path.display())]
    FileChanged {
        /// The file.
        path: PathBuf,
    },
    /// The output exists and is not an image layout.
    #[error("{}: exists and is not an OCI image layout (no oci-layout file); refusing to write into it", path.display())]
    NotALayout {
        /// The output directory.
        path: PathBuf,
    },
    /// No directories were given.
    #[error("no layer directories given")]
    NoLayers,
    /// Writing the output layout failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BuildError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Io { .. } => ErrorClass::Io,
            Self::NotADirectory { .. }
            | Self::Unsupported { .. }
            | Self::WhiteoutName { .. }
            | Self::FileChanged { .. }
            | Self::NotALayout { .. }
            | Self::NoLayers => ErrorClass::BadInput,
            Self::Store(e) => e.class(),
        }
    }
}

/// One layer written.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltLayer {
    /// The directory it came from.
    pub source: PathBuf,
    /// The gzip blob's digest.
    pub digest: Digest,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
    /// The blob's size.
    pub size: u64,
    /// Tar entries (whiteouts included).
    pub entries: usize,
    /// Whiteouts and opaque markers among them.
    pub whiteouts: usize,
}

/// What a build wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// The output layout.
    pub layout: PathBuf,
    /// The tag in its `index.json`.
    pub tag: String,
    /// The manifest's digest.
    pub manifest: Digest,
    /// The config's digest.
    pub config: Digest,
    /// The platform.
    pub platform: String,
    /// The layers, bottom first.
    pub layers: Vec<BuiltLayer>,
}

#[derive(Serialize)]
struct Config<'a> {
    architecture: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    config: serde_json::Map<String, serde_json::Value>,
    rootfs: RootFs,
    history: Vec<History>,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<Digest>,
}

#[derive(Serialize)]
struct History {
    created_by: String,
}

/// Builds an image from `dirs` (bottom layer first) into the image layout `out`, tagged `tag`.
pub fn build(
    dirs: &[PathBuf],
    out: &Path,
    tag: &str,
    options: &BuildOptions,
    progress: &dyn Fn(Event<'_>),
) -> Result<BuildReport, BuildError> {
    if dirs.is_empty() {
        return Err(BuildError::NoLayers);
    }
    let io_err = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| BuildError::Io { what, path, source }
    };
    // A new output is built beside its final path and renamed into place whole.
    let fresh = match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() && !out.join("oci-layout").is_file() {
                return Err(BuildError::NotALayout { path: out.to_owned() });
            }
            None
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = match out.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            Some(
                tempfile::Builder::new()
                    .prefix(".tmp")
                    .tempdir_in(parent)
                    .map_err(io_err("creating a temporary directory in", parent))?,
            )
        }
        Err(e) => return Err(io_err("reading", out)(e)),
    };
    let target = fresh.as_ref().map_or(out, |t| t.path());
    let store = Store::open(target)?;

    let mut lower = Tree::new();
    let mut layers = Vec::with_capacity(dirs.len());
    for (i, dir) in dirs.iter().enumerate() {
        let upper = diff::scan(dir)?;
        let changes = diff::changes(&lower, &upper);
        let layer = write_layer(&store, target, dir, &upper, &changes, options.mtime)?;
        progress(Event::Step(&format!(
            "layer {}/{}: {} ({} entries, {} whiteouts) from {}",
            i + 1,
            dirs.len(),
            layer.digest,
            layer.entries,
            layer.whiteouts,
            dir.display()
        )));
        layers.push(layer);
        lower = upper;
    }

    let blobs: Vec<(Descriptor, Digest)> = layers
        .iter()
        .map(|l| (descriptor(LAYER_MEDIA_TYPE, l.digest, l.size), l.diff_id))
        .collect();
    let platform = &options.platform;
    let (manifest_digest, config_digest) = store_image(&store, tag, platform, &blobs, "veritylab image build")?;
    drop(store);
    if let Some(fresh) = fresh {
        // The store's lock files mean nothing in a layout no process has open yet.
        for lock in [".lock", ".index.lock"] {
            let _ = std::fs::remove_file(fresh.path().join(lock));
        }
        let tmp = fresh.keep();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
            .and_then(|()| std::fs::rename(&tmp, out))
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&tmp);
                io_err("renaming the new layout into", out)(e)
            })?;
    }
    Ok(BuildReport {
        layout: out.to_owned(),
        tag: tag.to_owned(),
        manifest: manifest_digest,
        config: config_digest,
        platform: platform.to_string(),
        layers,
    })
}

/// Stores uncompressed layer tars (bottom first) as an image in `store`, with their config and manifest, and
/// tags it `tag`; returns the manifest's descriptor as tagged. Each tar is its own `diff_id`.
pub fn store_tars(store: &Store, tag: &str, platform: &Platform, tars: &[Vec<u8>]) -> Result<Descriptor, StoreError> {
    let mut blobs = Vec::with_capacity(tars.len());
    for tar in tars {
        let digest = Digest::of(tar);
        store.put_bytes(&digest, tar.len() as u64, tar)?;
        blobs.push((descriptor(media::OCI_LAYER, digest, tar.len() as u64), digest));
    }
    store_image(store, tag, platform, &blobs, "veritylab store-tars")?;
    store.lookup(tag)
}

/// Writes the config and the manifest of an image of `layers` (each blob's descriptor and `diff_id`) into
/// `store` and, last, its tag; returns the manifest's and the config's digests.
fn store_image(
    store: &Store,
    tag: &str,
    platform: &Platform,
    layers: &[(Descriptor, Digest)],
    history: &str,
) -> Result<(Digest, Digest), StoreError> {
    let config = Config {
        architecture: &platform.architecture,
        os: &platform.os,
        variant: platform.variant.as_deref(),
        config: serde_json::Map::new(),
        rootfs: RootFs {
            kind: "layers",
            diff_ids: layers.iter().map(|(_, diff_id)| *diff_id).collect(),
        },
        history: (1..=layers.len())
            .map(|i| History {
                created_by: format!("{history}: layer {i}"),
            })
            .collect(),
    };
    let config_bytes = to_json(&config);
    let config_digest = Digest::of(&config_bytes);
    store.put_bytes(&config_digest, config_bytes.len() as u64, &config_bytes)?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.to_owned()),
        config: descriptor(media::OCI_CONFIG, config_digest, config_bytes.len() as u64),
        layers: layers.iter().map(|(blob, _)| blob.clone()).collect(),
        annotations: Default::default(),
    };
    let manifest_bytes = to_json(&manifest);
    let manifest_digest = Digest::of(&manifest_bytes);
    store.put_bytes(&manifest_digest, manifest_bytes.len() as u64, &manifest_bytes)?;
    let top = Descriptor {
        platform: Some(platform.clone()),
        ..descriptor(media::OCI_MANIFEST, manifest_digest, manifest_bytes.len() as u64)
    };
    store.tag(tag, top)?;
    Ok((manifest_digest, config_digest))
}

fn descriptor(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest,
        size,
        platform: None,
        annotations: Default::default(),
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Writes one layer's tar.gz into a temporary file in `dir`, then into the store.
fn write_layer(
    store: &Store,
    dir: &Path,
    source: &Path,
    upper: &Tree,
    changes: &[Change],
    mtime: u64,
) -> Result<BuiltLayer, BuildError> {
    let io_err = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| BuildError::Io { what, path, source }
    };
    let file = tempfile::tempfile_in(dir).map_err(io_err("creating a temporary file in", dir))?;
    let gz = flate2::GzBuilder::new().write(
        HashWriter::new(BufWriter::with_capacity(1 << 20, file)),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(HashWriter::new(gz));
    let mut whiteouts = 0;
    let writing = |e| io_err("writing the layer of", source)(e);
    for change in changes {
        let path = change.tar_path();
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime);
        match change {
            Change::Whiteout(_) | Change::Opaque(_) => {
                whiteouts += 1;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(0);
                header.set_uid(0);
                header.set_gid(0);
                tar.append_data(&mut header, &path, io::empty()).map_err(writing)?;
            }
            Change::Entry(rel) => {
                let Some(node) = upper.get(rel) else {
                    continue;
                };
                set_owner(&mut header, node);
                let full = source.join(rel);
                match &node.kind {
                    Kind::Dir => {
                        header.set_entry_type(tar::EntryType::Directory);
                        header.set_size(0);
                        tar.append_data(&mut header, &path, io::empty()).map_err(writing)?;
                    }
                    Kind::Symlink(target) => {
                        header.set_entry_type(tar::EntryType::Symlink);
                        header.set_size(0);
                        tar.append_link(&mut header, &path, target).map_err(writing)?;
                    }
                    Kind::File { size, hash } => {
                        header.set_entry_type(tar::EntryType::Regular);
                        header.set_size(*size);
                        let file = File::open(&full).map_err(io_err("opening", &full))?;
                        let mut checked = CheckedReader {
                            inner: file.take(*size),
                            hasher: Sha256::new(),
                            read: 0,
                        };
                        tar.append_data(&mut header, &path, &mut checked).map_err(writing)?;
                        let found: [u8; 32] = checked.hasher.finalize().into();
                        if checked.read != *size || found != *hash {
                            return Err(BuildError::FileChanged { path: full });
                        }
                    }
                }
            }
        }
    }
    let (gz, diff_id, _) = tar.into_inner().map_err(writing)?.finish();
    let (buffered, digest, size) = gz.finish().map_err(writing)?.finish();
    let mut file = buffered
        .into_inner()
        .map_err(|e| io_err("writing the layer of", source)(e.into_error()))?;
    file.rewind().map_err(writing)?;
    store.put_stream(&digest, size, io::BufReader::new(file))?;
    Ok(BuiltLayer {
        source: source.to_owned(),
        digest,
        diff_id,
        size,
        entries: changes.len(),
        whiteouts,
    })
}

fn set_owner(header: &mut tar::Header, node: &Node) {
    header.set_mode(node.mode);
    header.set_uid(node.uid);
    header.set_gid(node.gid);
}

/// A reader that hashes and counts what it passes on.
struct CheckedReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> Read for CheckedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The inner writer, the digest and the length of everything written.
    fn finish(self) -> (W, Digest, u64) {
        let hash: [u8; 32] = self.hasher.finalize().into();
        (self.inner, Digest::from_bytes(hash), self.written)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
