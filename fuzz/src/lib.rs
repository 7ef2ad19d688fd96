//! The fuzz targets' checks, as plain functions over bytes: the `fuzz_targets/` binaries hand them libFuzzer's
//! inputs, and `tests/replay.rs` runs them over seed inputs and thousands of mutations on every `cargo test`
//! (stable toolchain, no libFuzzer), so the invariants are exercised in CI without nightly.
//!
//! Each function returns normally for any input and panics only when an invariant breaks (which libFuzzer
//! reports as a crash, and a test as a failure).

use veritylab::erofs::{FileKind, Image, OverlayNamespace, ReadError};
use veritylab::mountinfo;
use veritylab::oci::manifest::{self, Manifest, Platform};
use veritylab::oci::{Digest, media, reference};
use veritylab::rootfs::{Merged, RootfsError};

/// Stops a walk once its budget is spent or a read fails.
#[derive(Debug)]
enum Stop {
    Budget,
    Read,
}

impl From<ReadError> for Stop {
    fn from(_: ReadError) -> Self {
        Stop::Read
    }
}

impl From<RootfsError> for Stop {
    fn from(_: RootfsError) -> Self {
        Stop::Read
    }
}

/// Nodes a walk visits at most, and bytes read per file, so one input stays quick whatever sizes it claims.
const WALK_BUDGET: u32 = 4096;
const READ_LIMIT: u64 = 65536;

/// The EROFS reader (`veritylab::erofs::Image`) over arbitrary bytes.
///
/// Invariants:
/// - `Image::open`, `inode`, `read_dir`, `read_at`, `read_link`, `xattrs`, `lookup` and `walk` never panic,
///   never read outside the input (every read goes through `ReadAt`, which refuses out-of-range reads) and
///   always return, whatever the bytes: malformed images yield `ReadError`s.
/// - `walk` terminates on directory cycles (it reports `ReadError::Cycle`).
/// - Work is bounded: the walk stops after 4096 inodes and reads at most 64 KiB per file, so a huge sparse
///   size cannot make one input slow.
pub fn erofs_reader(data: &[u8]) {
    let Ok(image) = Image::open(data) else {
        return;
    };
    let _ = image.lookup(b"/a/b/../c");
    let Ok(root) = image.root() else {
        return;
    };
    let mut budget = WALK_BUDGET;
    let mut buf = vec![0u8; 4096];
    let _ = image.walk(&root, |_, inode| -> Result<(), Stop> {
        budget = budget.checked_sub(1).ok_or(Stop::Budget)?;
        let _ = image.xattrs(inode);
        match inode.kind {
            FileKind::File => {
                let mut offset = 0u64;
                while offset < READ_LIMIT {
                    match image.read_at(inode, offset, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => offset += n as u64,
                    }
                }
            }
            FileKind::Symlink => {
                let _ = image.read_link(inode);
            }
            _ => {}
        }
        Ok(())
    });
}

/// The mountinfo parser (`veritylab::mountinfo::parse`) over arbitrary bytes.
///
/// Invariants:
/// - `mountinfo::parse` never panics and always returns, whatever the bytes: malformed lines yield a
///   `ParseError` naming the line.
/// - Every mount it returns renders back (`Display`) to a line that parses to the same mount.
pub fn mountinfo(data: &[u8]) {
    let Ok(mounts) = mountinfo::parse(data) else {
        return;
    };
    for mount in mounts {
        let line = mount.to_string();
        assert_eq!(mountinfo::parse_line(line.as_bytes()).as_ref(), Ok(&mount), "{line:?}");
    }
}

/// The media types [`oci_manifest`]'s first input byte picks from: each manifest and index type we accept,
/// and one we refuse.
pub const MEDIA_TYPES: [&str; 5] = [
    media::OCI_MANIFEST,
    media::OCI_INDEX,
    media::DOCKER_MANIFEST,
    media::DOCKER_LIST,
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// The OCI manifest and index parser, platform selection, digests and image references over arbitrary bytes.
///
/// The first byte picks the media type the document is parsed as ([`MEDIA_TYPES`]); the rest is the document.
/// The same bytes, read as text, are also parsed as a digest and as an image reference.
///
/// Invariants:
/// - `manifest::parse`, `embedded_media_type`, `Index::select`, `Digest::from_str` and `reference::parse`
///   never panic and always return, whatever the bytes.
/// - A document that parses serialises back to JSON that parses to the same value (nothing we keep is lost
///   or changed on the way).
/// - A reference that parses displays as text that parses to the same reference.
pub fn oci_manifest(data: &[u8]) {
    let Some((&pick, doc)) = data.split_first() else {
        return;
    };
    let media_type = MEDIA_TYPES[usize::from(pick) % MEDIA_TYPES.len()];
    let digest = Digest::of(doc);
    let _ = manifest::embedded_media_type(doc);
    if let Ok(parsed) = manifest::parse(&digest, media_type, doc) {
        let again = match &parsed {
            Manifest::Image(image) => serde_json::to_vec(image),
            Manifest::Index(index) => serde_json::to_vec(index),
        }
        .expect("a parsed manifest serialises");
        let reparsed = manifest::parse(&Digest::of(&again), media_type, &again).expect("its JSON parses again");
        assert_eq!(parsed, reparsed, "the round trip changed the manifest");
        if let Manifest::Index(index) = &parsed {
            for platform in ["linux/amd64", "linux/arm64/v8", "windows/amd64"] {
                let platform: Platform = platform.parse().expect("a valid platform");
                let _ = index.select(&digest, &platform);
            }
        }
    }
    let text = String::from_utf8_lossy(doc);
    let _ = text.parse::<Digest>();
    if let Ok(parsed) = reference::parse(&text) {
        let shown = parsed.to_string();
        assert_eq!(
            reference::parse(&shown).ok(),
            Some(parsed),
            "{text:?} displays as {shown:?}"
        );
    }
}

/// The merged rootfs view (`veritylab::rootfs::Merged`) over two arbitrary layer images.
///
/// The input's first two bytes (little-endian) say where the lower image ends; the rest is the upper image
/// ([`rootfs_merge_input`] builds such an input).
///
/// Invariants:
/// - `Merged::from_sources`, `lookup`, `child`, `read_dir`, `stat`, `read_at`, `read_link`, `xattrs`, `node`
///   and `walk` never panic and always return, whatever the bytes: malformed layers yield `RootfsError`s.
/// - `walk` terminates on directories linked into themselves, across layers too (`RootfsError::Cycle`).
/// - Work is bounded: the walk stops after 4096 nodes and reads at most 64 KiB per file.
pub fn rootfs_merge(data: &[u8]) {
    let Some((split, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let at = usize::from(u16::from_le_bytes(*split)).min(rest.len());
    let (lower, upper) = rest.split_at(at);
    let Ok(view) = Merged::from_sources(vec![lower, upper], OverlayNamespace::Trusted) else {
        return;
    };
    for path in [&b"/a/b/../c"[..], b"/etc/passwd", b"/x"] {
        if let Ok(node) = view.lookup(path) {
            let _ = view.node(node.ino());
            let _ = view.child(&node, b"..");
        }
    }
    let mut budget = WALK_BUDGET;
    let mut buf = vec![0u8; 4096];
    let _ = view.walk(|node| -> Result<(), Stop> {
        budget = budget.checked_sub(1).ok_or(Stop::Budget)?;
        let _ = view.stat(node);
        let _ = view.xattrs(node);
        match node.kind() {
            FileKind::File => {
                let mut offset = 0u64;
                while offset < READ_LIMIT {
                    match view.read_at(node, offset, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => offset += n as u64,
                    }
                }
            }
            FileKind::Symlink => {
                let _ = view.read_link(node);
            }
            _ => {}
        }
        Ok(())
    });
}

/// A [`rootfs_merge`] input from a lower and an upper image (the lower one cut at 65535 bytes).
pub fn rootfs_merge_input(lower: &[u8], upper: &[u8]) -> Vec<u8> {
    let lower = &lower[..lower.len().min(usize::from(u16::MAX))];
    let mut input = u16::try_from(lower.len()).unwrap_or(u16::MAX).to_le_bytes().to_vec();
    input.extend_from_slice(lower);
    input.extend_from_slice(upper);
    input
}

/// The policy importer (`veritylab::policy_import`) over arbitrary bytes read as a Kyverno, policy-controller
/// or containers-policy.json file.
///
/// Invariants:
/// - `import_str` never panics and always returns, whatever the text (YAML limits hold: alias bombs and deep
///   nesting are errors, not memory).
/// - A policy it imports prints as TOML that reads back to the same policy.
pub fn policy_import(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(imported) = veritylab::policy_import::import_str("fuzz.yaml", text, false) else {
        return;
    };
    let toml = imported.policy.to_toml().expect("an imported policy prints as TOML");
    let back: veritylab::sign::PolicyFile = toml::from_str(&toml).expect("the printed TOML parses");
    assert_eq!(back, imported.policy, "the printed TOML reads back to the same policy");
}
