//! Pulling an image into the store: resolve the reference once to a manifest digest, pick the platform from
//! an index, fetch every manifest and blob by digest, check each against its descriptor, and only then make
//! the whole set visible in the store and tag it.
//!
//! Data flow: a source (a registry [`Client`] or an image [`Layout`]) → checked bytes or streams →
//! [`Store::stage_bytes`] / [`Store::stage_stream`] (temporary files, verified) → [`Staged::commit`] for all
//! of them → [`Store::tag`]. Any failure before the commit drops the staged files, so the store is unchanged.

use std::collections::BTreeMap;

use serde::Serialize;

use super::archive;
use super::client::{Client, ClientOptions, FetchedManifest, RegistryError};
use super::digest::{Digest, VerifyError};
use super::layout::{Layout, LayoutError};
use super::manifest::{self, Descriptor, ImageManifest, Manifest, ManifestError, Platform};
use super::media::MANIFEST_ACCEPT;
use super::reference::{LayoutRef, Reference};
use crate::progress::{self, Event, Reader};
use crate::store::{Staged, Store, StoreError};
use verity_fuse::ErrorClass;

/// The annotation recording the index an image manifest was picked from.
pub(crate) const FROM_INDEX: &str = "io.veritylab.image.index.digest";

/// Size limits on what a pull accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest or index.
    pub manifest: u64,
    /// Largest image config.
    pub config: u64,
    /// Largest layer.
    pub layer: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            manifest: 4 << 20,
            config: 16 << 20,
            layer: 16 << 30,
        }
    }
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to pick from an index.
    pub platform: Platform,
    /// Registry client settings.
    pub client: ClientOptions,
    /// Size limits.
    pub limits: Limits,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            platform: Platform::host(),
            client: ClientOptions::default(),
            limits: Limits::default(),
        }
    }
}

/// A failed pull; the store is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PullError {
    /// Talking to the registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Reading the image layout failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A manifest is unusable.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The store refused content (a blob not matching its digest lands here) or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A manifest or blob is not what its descriptor promised.
    #[error("{what}: {source}")]
    Verify {
        /// Which content.
        what: String,
        /// The mismatch.
        #[source]
        source: VerifyError,
    },
    /// An `oci-archive:` file could not be unpacked.
    #[error("{}: {reason}", path.display())]
    Archive {
        /// The archive.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An index entry for our platform is itself an index.
    #[error("index {index} points to another index {nested} for the platform; nested indexes are not supported")]
    NestedIndex {
        /// The outer index.
        index: Digest,
        /// The inner one.
        nested: Digest,
    },
}

impl From<super::archive::ArchiveError> for PullError {
    fn from(e: super::archive::ArchiveError) -> Self {
        PullError::Archive {
            path: e.path,
            reason: e.reason,
        }
    }
}

impl PullError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Registry(e) => e.class(),
            Self::Layout(e) => e.class(),
            Self::Manifest(e) => e.class(),
            Self::Store(e) => e.class(),
            Self::Verify { source, .. } => source.class(),
            Self::Archive { .. } | Self::NestedIndex { .. } => ErrorClass::BadInput,
        }
    }
}

/// How the image was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// HTTPS to a registry.
    Https,
    /// Plain HTTP to a loopback registry (`--plain-http`).
    PlainHttp,
    /// An image layout on disk.
    OciLayout,
    /// A tar archive of an image layout.
    OciArchive,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Https => "https",
            Transport::PlainHttp => "plain HTTP (loopback registry, --plain-http: no TLS)",
            Transport::OciLayout => "OCI image layout",
            Transport::OciArchive => "OCI image layout archive",
        })
    }
}

/// One layer of a pulled image.
#[derive(Debug, Clone, Serialize)]
pub struct PulledLayer {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
    /// Whether it was already in the store.
    pub reused: bool,
}

/// What a pull stored.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// The name it is tagged with in the store.
    pub name: String,
    /// How it was reached.
    pub transport: Transport,
    /// The digest the reference resolved to (an index or a manifest).
    pub resolved: Digest,
    /// The image manifest's digest.
    pub manifest: Digest,
    /// The platform picked from an index, if there was one.
    pub platform: Option<String>,
    /// The config's digest.
    pub config: Digest,
    /// The layers, base first.
    pub layers: Vec<PulledLayer>,
}

/// Where a pull reads from.
enum Source {
    Registry(Client, String),
    Layout(Layout, LayoutRef),
}

impl Source {
    /// The manifest the reference names, by tag (resolved here, once) or digest.
    fn resolve(&mut self, limits: &Limits) -> Result<FetchedManifest, PullError> {
        match self {
            Source::Registry(client, reference) => Ok(client.manifest(reference, MANIFEST_ACCEPT, limits.manifest)?),
            Source::Layout(layout, reference) => {
                let descriptor = layout.resolve_ref(reference, limits.manifest)?;
                let bytes = layout.read(&descriptor, limits.manifest)?;
                Ok(FetchedManifest {
                    digest: descriptor.digest,
                    media_type: descriptor.media_type,
                    bytes,
                })
            }
        }
    }

    /// A manifest by its descriptor, checked against digest and size.
    fn manifest(&mut self, descriptor: &Descriptor, limits: &Limits) -> Result<FetchedManifest, PullError> {
        if descriptor.size > limits.manifest {
            return Err(PullError::Verify {
                what: format!("manifest {}", descriptor.digest),
                source: VerifyError::TooLarge {
                    digest: descriptor.digest,
                    size: descriptor.size,
                    limit: limits.manifest,
                    what: "manifest",
                },
            });
        }
        let fetched = match self {
            Source::Registry(client, _) => {
                let mut fetched = client.manifest(&descriptor.digest.to_string(), MANIFEST_ACCEPT, limits.manifest)?;
                fetched.media_type.clone_from(&descriptor.media_type);
                fetched
            }
            Source::Layout(layout, _) => FetchedManifest {
                digest: descriptor.digest,
                media_type: descriptor.media_type.clone(),
                bytes: layout.read(descriptor, limits.manifest)?,
            },
        };
        descriptor
            .digest
            .verify(descriptor.size, &fetched.bytes)
            .map_err(|source| PullError::Verify {
                what: format!("manifest {}", descriptor.digest),
                source,
            })?;
        Ok(fetched)
    }

    /// Streams a blob into a staged file in the store.
    fn stage_blob(
        &mut self,
        store: &Store,
        descriptor: &Descriptor,
        limit: u64,
        progress: &dyn Fn(Event<'_>),
    ) -> Result<Staged, PullError> {
        if descriptor.size > limit {
            return Err(PullError::Verify {
                what: format!("blob {}", descriptor.digest),
                source: VerifyError::TooLarge {
                    digest: descriptor.digest,
                    size: descriptor.size,
                    limit,
                    what: "blob",
                },
            });
        }
        if store.has_blob(&descriptor.digest, descriptor.size) {
            return Ok(store.stage_stream(&descriptor.digest, descriptor.size, std::io::empty())?);
        }
        let staged = match self {
            Source::Registry(client, _) => {
                let stream = client.blob(&descriptor.digest)?;
                store.stage_stream(&descriptor.digest, descriptor.size, Reader::new(stream, progress))?
            }
            Source::Layout(layout, _) => {
                let file = layout.open(&descriptor.digest)?;
                let stream = Reader::new(std::io::BufReader::new(file), progress);
                store.stage_stream(&descriptor.digest, descriptor.size, stream)?
            }
        };
        Ok(staged)
    }
}

/// The name a reference is stored under: `HOST/REPO:TAG` (or `@DIGEST`, or `:latest`), or
/// `oci:ABSOLUTE_DIR[:TAG]`.
pub(crate) fn store_name(reference: &Reference) -> String {
    match reference {
        Reference::Registry(r) => match (&r.tag, &r.digest) {
            (Some(tag), _) => format!("{}/{}:{tag}", r.host, r.repository),
            (None, Some(digest)) => format!("{}/{}@{digest}", r.host, r.repository),
            (None, None) => format!("{}/{}:latest", r.host, r.repository),
        },
        Reference::Layout(l) | Reference::Archive(l) => {
            let transport = if matches!(reference, Reference::Layout(_)) {
                "oci"
            } else {
                "oci-archive"
            };
            let dir = std::path::absolute(&l.dir).unwrap_or_else(|_| l.dir.clone());
            let mut name = format!("{transport}:{}", dir.display());
            if let Some(tag) = &l.tag {
                name.push(':');
                name.push_str(tag);
            }
            if let Some(digest) = &l.digest {
                name.push('@');
                name.push_str(&digest.to_string());
            }
            name
        }
    }
}

/// Pulls `reference` into `store`; `progress` hears about each step and the bytes of each layer.
pub fn pull(
    reference: &Reference,
    store: &Store,
    options: &PullOptions,
    progress: &dyn Fn(Event<'_>),
) -> Result<PullReport, PullError> {
    // An archive is unpacked into a temporary directory in the store, removed when the pull ends.
    let mut unpacked = None;
    let (mut source, transport) = match reference {
        Reference::Registry(r) => {
            let client = Client::new(r, options.client.clone())?;
            let transport = if client.plain_http() {
                Transport::PlainHttp
            } else {
                Transport::Https
            };
            (Source::Registry(client, r.manifest_reference()), transport)
        }
        Reference::Layout(l) => (Source::Layout(Layout::new(&l.dir), l.clone()), Transport::OciLayout),
        Reference::Archive(l) => {
            let dir = archive::unpack(&l.dir, store)?;
            let layout = Layout::new(dir.path());
            unpacked = Some(dir);
            (Source::Layout(layout, l.clone()), Transport::OciArchive)
        }
    };
    let limits = &options.limits;
    let top = source.resolve(limits)?;
    progress(Event::Step(&format!("resolved {reference} to {}", top.digest)));
    let mut staged = Vec::new();
    let (image, image_descriptor, platform) = match manifest::parse(&top.digest, &top.media_type, &top.bytes)? {
        Manifest::Image(image) => {
            let descriptor = Descriptor {
                media_type: top.media_type.clone(),
                digest: top.digest,
                size: top.bytes.len() as u64,
                platform: None,
                annotations: BTreeMap::new(),
            };
            (image, descriptor, None)
        }
        Manifest::Index(index) => {
            let entry = index.select(&top.digest, &options.platform)?.clone();
            let child = source.manifest(&entry, limits)?;
            let image = match manifest::parse(&child.digest, &entry.media_type, &child.bytes)? {
                Manifest::Image(image) => image,
                Manifest::Index(_) => {
                    return Err(PullError::NestedIndex {
                        index: top.digest,
                        nested: entry.digest,
                    });
                }
            };
            staged.push(store.stage_bytes(&top.digest, top.bytes.len() as u64, &top.bytes)?);
            staged.push(store.stage_bytes(&child.digest, entry.size, &child.bytes)?);
            let platform = entry.platform.as_ref().map(Platform::to_string);
            let descriptor = Descriptor {
                annotations: BTreeMap::from([(FROM_INDEX.to_owned(), top.digest.to_string())]),
                ..entry
            };
            (image, descriptor, platform)
        }
    };
    if staged.is_empty() {
        staged.push(store.stage_bytes(&top.digest, top.bytes.len() as u64, &top.bytes)?);
    }
    let layers = fetch_image(&mut source, store, &image, limits, &mut staged, progress)?;
    for blob in staged {
        blob.commit()?;
    }
    let name = store_name(reference);
    store.tag(&name, image_descriptor.clone())?;
    drop(unpacked);
    Ok(PullReport {
        name,
        transport,
        resolved: top.digest,
        manifest: image_descriptor.digest,
        platform,
        config: image.config.digest,
        layers,
    })
}

/// Stages the config and every layer of `image`.
fn fetch_image(
    source: &mut Source,
    store: &Store,
    image: &ImageManifest,
    limits: &Limits,
    staged: &mut Vec<Staged>,
    progress: &dyn Fn(Event<'_>),
) -> Result<Vec<PulledLayer>, PullError> {
    staged.push(source.stage_blob(store, &image.config, limits.config, &|_| {})?);
    let count = image.layers.len();
    let mut layers = Vec::with_capacity(count);
    for (i, layer) in image.layers.iter().enumerate() {
        let reused = store.has_blob(&layer.digest, layer.size);
        let label = format!("layer {}/{count} {}", i + 1, layer.digest.short());
        if reused {
            progress(Event::Step(&format!("{label}: already stored")));
        }
        let blob = progress::task(progress, &format!("pulling {label}"), layer.size, || {
            source.stage_blob(store, layer, limits.layer, progress)
        })?;
        staged.push(blob);
        layers.push(PulledLayer {
            digest: layer.digest,
            size: layer.size,
            media_type: layer.media_type.clone(),
            reused,
        });
    }
    Ok(layers)
}
