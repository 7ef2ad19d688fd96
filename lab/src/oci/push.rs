//! Pushing an image: from the store or an image layout to a registry or another image layout.
//!
//! Data flow: the source is always an image layout read through [`Layout`] (the store is one), so every
//! manifest is checked against its descriptor when read and every blob while it streams. The top
//! descriptor is resolved once; an index brings every manifest it lists, which must all be in the source.
//! Blobs go first (config and layers, skipped where the destination has them), then child manifests by
//! digest, then the top manifest under the destination's tag. A registry refuses a manifest whose blobs it
//! lacks, and a layout destination records the tag in `index.json` last, so a push that fails midway never
//! makes a tag point at an incomplete image.

use serde::Serialize;

use super::client::{Client, ClientOptions, RegistryError};
use super::digest::{Digest, VerifyError};
use super::layout::{Layout, LayoutError};
use super::manifest::{self, Descriptor, ImageManifest, Manifest, ManifestError, REF_NAME};
use super::pull::{FROM_INDEX, Limits, Transport};
use super::reference::{LayoutRef, RegistryRef};
use crate::progress::{self, Event, Reader};
use crate::store::{Store, StoreError};
use verity_fuse::ErrorClass;

/// Where a push reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushSource {
    /// An image in a store, by its name (as `veritylab images` lists it).
    Store {
        /// The store's root directory.
        root: std::path::PathBuf,
        /// The image's name.
        name: String,
    },
    /// An image layout directory, by tag (or its only manifest).
    Layout(LayoutRef),
}

/// Where a push writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushDestination {
    /// A registry repository; the manifest goes under the tag (`latest` when none), and a digest in the
    /// reference must be the pushed manifest's.
    Registry(RegistryRef),
    /// An image layout directory (created if missing), under `tag`.
    Layout {
        /// The directory.
        dir: std::path::PathBuf,
        /// The `org.opencontainers.image.ref.name` to record.
        tag: String,
    },
}

impl std::fmt::Display for PushSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushSource::Store { name, .. } => f.write_str(name),
            PushSource::Layout(l) => write!(f, "{}", super::Reference::Layout(l.clone())),
        }
    }
}

impl std::fmt::Display for PushDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushDestination::Registry(r) => write!(f, "{r}"),
            PushDestination::Layout { dir, tag } => write!(f, "oci:{}:{tag}", dir.display()),
        }
    }
}

/// How to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Registry client settings (for a registry destination).
    pub client: ClientOptions,
    /// Size limits on manifests read from the source (blobs are streamed and checked, not limited).
    pub limits: Limits,
}

/// A failed push. Blobs already copied may remain at the destination (content-addressed and checked, so
/// harmless), but the tag is not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// Reading the source layout failed or its content does not match its descriptors.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The store (source or layout destination) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A manifest is unusable.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A manifest is over the size limit.
    #[error("{what}: {source}")]
    Verify {
        /// Which content.
        what: String,
        /// The problem.
        #[source]
        source: VerifyError,
    },
    /// An index lists a manifest the source does not hold (a store keeps one platform of an index).
    #[error("index {index} lists manifest {manifest}, which the source does not hold; push that manifest alone")]
    IncompleteIndex {
        /// The index.
        index: Digest,
        /// The missing manifest.
        manifest: Digest,
    },
    /// An index lists another index.
    #[error("index {index} lists another index {nested}; nested indexes are not supported")]
    NestedIndex {
        /// The outer index.
        index: Digest,
        /// The inner one.
        nested: Digest,
    },
}

impl PushError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Layout(e) => e.class(),
            Self::Store(e) => e.class(),
            Self::Registry(e) => e.class(),
            Self::Manifest(e) => e.class(),
            Self::Verify { source, .. } => source.class(),
            Self::IncompleteIndex { .. } | Self::NestedIndex { .. } => ErrorClass::BadInput,
        }
    }
}

/// One blob of a push.
#[derive(Debug, Clone, Serialize)]
pub struct PushedBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
    /// Whether the destination had it already (not copied).
    pub skipped: bool,
}

/// What a push copied.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// The source, as given.
    pub source: String,
    /// The destination, as given.
    pub destination: String,
    /// How the destination was reached.
    pub transport: Transport,
    /// The digest of the top manifest (or index) now under the destination's tag.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// The image manifests pushed (one, or each one an index lists).
    pub manifests: Vec<Digest>,
    /// Configs and layers, in push order.
    pub blobs: Vec<PushedBlob>,
}

/// The destination side (the client boxed: it is far larger than a store handle).
enum Sink {
    Registry(Box<Client>),
    Layout(Store),
}

impl Sink {
    fn put_blob(
        &mut self,
        source: &Layout,
        descriptor: &Descriptor,
        progress: &dyn Fn(Event<'_>),
    ) -> Result<bool, PushError> {
        match self {
            Sink::Registry(client) => {
                if client.blob_exists(&descriptor.digest)? {
                    return Ok(true);
                }
                let file = Reader::new(std::io::BufReader::new(source.open(&descriptor.digest)?), progress);
                client.put_blob(&descriptor.digest, descriptor.size, file)?;
                Ok(false)
            }
            Sink::Layout(store) => {
                if store.has_blob(&descriptor.digest, descriptor.size) {
                    return Ok(true);
                }
                let file = Reader::new(std::io::BufReader::new(source.open(&descriptor.digest)?), progress);
                store.put_stream(&descriptor.digest, descriptor.size, file)?;
                Ok(false)
            }
        }
    }

    /// Stores a manifest by its digest.
    fn put_manifest(&mut self, descriptor: &Descriptor, bytes: &[u8]) -> Result<(), PushError> {
        match self {
            Sink::Registry(client) => {
                client.put_manifest(&descriptor.digest.to_string(), &descriptor.media_type, bytes)?;
            }
            Sink::Layout(store) => store.put_bytes(&descriptor.digest, descriptor.size, bytes)?,
        }
        Ok(())
    }
}

/// Pushes `source` to `destination`.
pub fn push(
    source: &PushSource,
    destination: &PushDestination,
    options: &PushOptions,
    progress: &dyn Fn(Event<'_>),
) -> Result<PushReport, PushError> {
    let limit = options.limits.manifest;
    let (layout, top) = match source {
        PushSource::Store { root, name } => {
            let layout = Layout::new(root);
            let top = layout.resolve(Some(name), limit.max(16 << 20))?;
            (layout, top)
        }
        PushSource::Layout(l) => {
            let layout = Layout::new(&l.dir);
            let top = layout.resolve_ref(l, limit.max(16 << 20))?;
            (layout, top)
        }
    };
    // The copy carries no annotations of where it came from.
    let top = Descriptor {
        annotations: top
            .annotations
            .into_iter()
            .filter(|(k, _)| k != REF_NAME && k != FROM_INDEX)
            .collect(),
        ..top
    };
    let (mut sink, transport, tag) = match destination {
        PushDestination::Registry(r) => {
            let client = Client::new(r, options.client.clone())?;
            let transport = if client.plain_http() {
                Transport::PlainHttp
            } else {
                Transport::Https
            };
            let tag = r.tag.clone().unwrap_or_else(|| "latest".to_owned());
            (Sink::Registry(Box::new(client)), transport, tag)
        }
        PushDestination::Layout { dir, tag } => (Sink::Layout(Store::open(dir)?), Transport::OciLayout, tag.clone()),
    };
    let top_bytes = read_manifest(&layout, &top, limit)?;
    if let PushDestination::Registry(RegistryRef {
        digest: Some(expected), ..
    }) = destination
        && *expected != top.digest
    {
        return Err(PushError::Verify {
            what: format!("destination {destination}"),
            source: VerifyError::DigestMismatch {
                expected: *expected,
                found: top.digest,
            },
        });
    }
    progress(Event::Step(&format!(
        "pushing {} ({}) to {destination}",
        top.digest, top.media_type
    )));
    let mut report = PushReport {
        source: source.to_string(),
        destination: destination.to_string(),
        transport,
        digest: top.digest,
        media_type: top.media_type.clone(),
        manifests: Vec::new(),
        blobs: Vec::new(),
    };
    match manifest::parse(&top.digest, &top.media_type, &top_bytes)? {
        Manifest::Image(image) => {
            push_blobs(&mut sink, &layout, &image, &mut report, progress)?;
            report.manifests.push(top.digest);
        }
        Manifest::Index(index) => {
            for entry in &index.manifests {
                if layout.open(&entry.digest).is_err() {
                    return Err(PushError::IncompleteIndex {
                        index: top.digest,
                        manifest: entry.digest,
                    });
                }
                let bytes = read_manifest(&layout, entry, limit)?;
                let image = match manifest::parse(&entry.digest, &entry.media_type, &bytes)? {
                    Manifest::Image(image) => image,
                    Manifest::Index(_) => {
                        return Err(PushError::NestedIndex {
                            index: top.digest,
                            nested: entry.digest,
                        });
                    }
                };
                push_blobs(&mut sink, &layout, &image, &mut report, progress)?;
                sink.put_manifest(entry, &bytes)?;
                report.manifests.push(entry.digest);
            }
        }
    }
    match &mut sink {
        Sink::Registry(client) => {
            client.put_manifest(&tag, &top.media_type, &top_bytes)?;
        }
        Sink::Layout(store) => {
            store.put_bytes(&top.digest, top.size, &top_bytes)?;
            store.tag(&tag, top.clone())?;
        }
    }
    Ok(report)
}

fn read_manifest(layout: &Layout, descriptor: &Descriptor, limit: u64) -> Result<Vec<u8>, PushError> {
    if descriptor.size > limit {
        return Err(PushError::Verify {
            what: format!("manifest {}", descriptor.digest),
            source: VerifyError::TooLarge {
                digest: descriptor.digest,
                size: descriptor.size,
                limit,
                what: "manifest",
            },
        });
    }
    Ok(layout.read(descriptor, limit)?)
}

fn push_blobs(
    sink: &mut Sink,
    layout: &Layout,
    image: &ImageManifest,
    report: &mut PushReport,
    progress: &dyn Fn(Event<'_>),
) -> Result<(), PushError> {
    for descriptor in std::iter::once(&image.config).chain(&image.layers) {
        let label = format!("pushing {}", descriptor.digest.short());
        let skipped = progress::task(progress, &label, descriptor.size, || {
            sink.put_blob(layout, descriptor, progress)
        })?;
        if skipped {
            progress(Event::Step(&format!("{label}: already there")));
        }
        report.blobs.push(PushedBlob {
            digest: descriptor.digest,
            size: descriptor.size,
            media_type: descriptor.media_type.clone(),
            skipped,
        });
    }
    Ok(())
}
