//! Shared helpers: tar layers with OCI whiteouts, their conversion to EROFS (plain and under a verified
//! device), kernel mounts that clean up after themselves, and an OCI layout `umoci` can unpack.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use veritylab::erofs::{self, Options, OverlayNamespace, Whiteouts};
use veritylab::rootfs::{Merged, Snapshot};
use veritylab::verity_fuse::device::Options as DeviceOptions;
use veritylab::verity_fuse::source::FileSource;
use veritylab::verity_fuse::{Geometry, Placement, ReadAt, VerifiedDevice, VerityParams, tree};

/// Fixed modification time of every entry.
pub(super) const T: u64 = 1_650_000_000;

/// An entry of a test layer, written in order.
#[derive(Debug, Clone)]
pub(super) enum Item {
    /// A directory with its mode.
    Dir(String, u32),
    /// A file with mode 0644, owned by root.
    File(String, Vec<u8>),
    /// A file with its mode, uid and gid.
    Owned(String, Vec<u8>, u32, u32, u32),
    /// A symbolic link.
    Symlink(String, String),
    /// A character device.
    Char(String, u32, u32),
    /// A fifo.
    Fifo(String),
    /// A hard link to an earlier file.
    Link(String, String),
    /// A file with extended attributes (carried in a PAX header as `SCHILY.xattr.NAME`).
    Xattrs(String, Vec<u8>, Vec<(String, Vec<u8>)>),
    /// `DIR/.wh.NAME`: hides NAME of the layers below.
    Whiteout(String),
    /// `DIR/.wh..wh..opq`: hides what the layers below hold in DIR.
    Opaque(String),
}

/// `dir` + `name`, where `dir` is empty for the top level.
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// A tar stream of the items.
pub(super) fn tar_layer(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(T);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(0);
        header.set_mode(0o644);
        let (path, data): (String, &[u8]) = match item {
            Item::Dir(path, mode) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                (format!("{path}/"), &[])
            }
            Item::File(path, data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                (path.clone(), data)
            }
            Item::Owned(path, data, mode, uid, gid) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                header.set_mode(*mode);
                header.set_uid((*uid).into());
                header.set_gid((*gid).into());
                (path.clone(), data)
            }
            Item::Symlink(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_link_name(target).unwrap();
                header.set_mode(0o777);
                (path.clone(), &[])
            }
            Item::Char(path, major, minor) => {
                header.set_entry_type(tar::EntryType::Char);
                header.set_device_major(*major).unwrap();
                header.set_device_minor(*minor).unwrap();
                header.set_mode(0o666);
                (path.clone(), &[])
            }
            Item::Fifo(path) => {
                header.set_entry_type(tar::EntryType::Fifo);
                (path.clone(), &[])
            }
            Item::Xattrs(path, data, xattrs) => {
                let keys: Vec<String> = xattrs.iter().map(|(name, _)| format!("SCHILY.xattr.{name}")).collect();
                builder
                    .append_pax_extensions(keys.iter().map(String::as_str).zip(xattrs.iter().map(|(_, v)| &v[..])))
                    .unwrap();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                (path.clone(), data)
            }
            Item::Link(path, target) => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_link_name(target).unwrap();
                (path.clone(), &[])
            }
            Item::Whiteout(path) => {
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
                header.set_entry_type(tar::EntryType::Regular);
                (join(dir, &format!(".wh.{name}")), &[])
            }
            Item::Opaque(dir) => {
                header.set_entry_type(tar::EntryType::Regular);
                (join(dir, ".wh..wh..opq"), &[])
            }
        };
        header.set_path(&path).unwrap();
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Converts a tar layer to an EROFS image file at `out` as `veritylab convert` does (whiteouts for a
/// privileged overlay).
pub(super) fn convert(tar: &[u8], out: &Path) {
    erofs::build_from_tar(out, tar, Options::default(), Whiteouts::Aufs(OverlayNamespace::Trusted)).unwrap();
}

/// A layer's dm-verity tree, built before any tampering.
pub(super) struct LayerTree {
    geometry: Geometry,
    blocks: Arc<Vec<u8>>,
    root: Vec<u8>,
}

impl LayerTree {
    /// The tree of `image` (a whole number of 4096-byte blocks) as it is now.
    fn build(image: &Path) -> Self {
        let data = fs::read(image).unwrap();
        assert_eq!(data.len() % 4096, 0, "our images are whole blocks");
        let geometry = Geometry::new(
            VerityParams::new(data.len() as u64 / 4096, vec![0; 32]),
            Placement::default(),
        )
        .unwrap();
        let built = tree::build(&data, &geometry, 1, &|_| {}).unwrap();
        Self {
            geometry,
            blocks: Arc::new(built.blocks),
            root: built.root.as_bytes().to_vec(),
        }
    }

    /// A verified device over the image file as it is on disk now, checked against this tree.
    pub(super) fn device(&self, image: &Path) -> Arc<dyn ReadAt> {
        let device = VerifiedDevice::new(
            FileSource::open(image).unwrap(),
            self.blocks.clone(),
            self.geometry.clone(),
            &self.root,
            DeviceOptions::default(),
        )
        .unwrap();
        Arc::new(device)
    }
}

/// Layer files converted from tars, in a temporary directory, lowest first, with their trees.
pub(super) struct Layers {
    pub(super) dir: tempfile::TempDir,
    pub(super) tars: Vec<Vec<u8>>,
    pub(super) images: Vec<PathBuf>,
    pub(super) trees: Vec<LayerTree>,
}

impl Layers {
    /// Converts each layer (lowest first) and builds its tree.
    pub(super) fn new(layers: &[Vec<Item>]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut tars = Vec::new();
        let mut images = Vec::new();
        let mut trees = Vec::new();
        for (i, items) in layers.iter().enumerate() {
            let tar = tar_layer(items);
            let image = dir.path().join(format!("layer{i}.erofs"));
            convert(&tar, &image);
            trees.push(LayerTree::build(&image));
            tars.push(tar);
            images.push(image);
        }
        Self {
            dir,
            tars,
            images,
            trees,
        }
    }

    /// The merged view over the plain image files (the unverified `erofs` profile).
    pub(super) fn plain(&self) -> Merged<FileSource> {
        let sources = self.images.iter().map(|p| FileSource::open(p).unwrap()).collect();
        Merged::from_sources(sources, OverlayNamespace::Trusted).unwrap()
    }

    /// The merged view with every layer file read through a verified device checked against the tree
    /// built when the layer was made.
    pub(super) fn verified(&self) -> Merged<Arc<dyn ReadAt>> {
        let sources = self.trees.iter().zip(&self.images).map(|(t, p)| t.device(p)).collect();
        Merged::from_sources(sources, OverlayNamespace::Trusted).unwrap()
    }
}

/// Runs a command, panicking with its output if it fails.
#[track_caller]
pub(super) fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(super) use crate::erofs::support::Mount;

/// Asserts two snapshots are equal, printing only the differences.
#[track_caller]
pub(super) fn assert_same(what: &str, expected: &Snapshot, actual: &Snapshot) {
    let diffs = expected.diff(actual);
    assert!(
        diffs.is_empty(),
        "{what}: {} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes an OCI image layout at `layout` holding one image tagged `tag` whose layers are `tars`
/// (uncompressed, lowest first).
pub(super) fn oci_layout(layout: &Path, tag: &str, tars: &[Vec<u8>]) {
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = sha256_hex(bytes);
        fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let layers: Vec<(String, usize)> = tars.iter().map(|t| put(t)).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.0.clone()).collect::<Vec<_>>()},
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": layers.iter().map(|(digest, size)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size,
        })).collect::<Vec<_>>(),
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

fn d(path: &str) -> Item {
    Item::Dir(path.into(), 0o755)
}

fn f(path: &str, data: &str) -> Item {
    Item::File(path.into(), data.as_bytes().to_vec())
}

/// Bytes of `len` that occur nowhere else in the fixture (a marker plus a counter pattern).
pub(super) fn unique_data(marker: &[u8; 8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0u32;
    while out.len() < len {
        out.extend_from_slice(marker);
        out.extend_from_slice(&i.to_le_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// Three layers covering every overlay rule: whiteouts of files and directories, opaque directories, a
/// file over a directory and a directory over a file, a directory merged from all three layers, a whiteout
/// in a directory only one layer holds, and every file type.
pub(super) fn fixture() -> Vec<Vec<Item>> {
    let lowest = vec![
        d("."),
        d("a"),
        f("a/x", "lower x"),
        f("a/y", "lower y"),
        d("b"),
        f("b/z", "lower z"),
        d("b/sub"),
        f("b/sub/w", "lower w"),
        f("c", "lower c"),
        d("d"),
        f("d/e", "lower e"),
        d("e"),
        f("e/f", "under a file"),
        f("g", "becomes a dir"),
        d("m"),
        f("m/one", "one"),
        f("m/keep", "kept from the lowest layer"),
        Item::Symlink("link".into(), "a/y".into()),
        d("dev"),
        Item::Char("dev/null".into(), 1, 3),
        Item::Fifo("fifo".into()),
        Item::Owned("owned".into(), b"owned by 1000".to_vec(), 0o640, 1000, 1001),
        Item::Link("owned-link".into(), "owned".into()),
        Item::Owned("setuid".into(), b"#!/bin/sh\n".to_vec(), 0o4755, 0, 0),
        d("h"),
        Item::Whiteout("h/ghost".into()),
        f("h/real", "real"),
        d("big"),
        Item::File("big/data".into(), unique_data(b"BIGDATA!", 3 * 4096 + 100)),
        Item::File("big/other".into(), unique_data(b"OTHERDAT", 2 * 4096)),
    ];
    let middle = vec![
        d("."),
        d("m"),
        f("m/two", "two"),
        d("a"),
        Item::Whiteout("a/x".into()),
        d("b"),
        Item::Opaque("b".into()),
        f("b/new", "middle new"),
        f("e", "a file over a directory"),
        d("g"),
        f("g/inside", "a directory over a file"),
        Item::Dir("x".into(), 0o700),
        f("x/only", "only in the middle"),
    ];
    let top = vec![
        d("."),
        d("m"),
        f("m/three", "three"),
        Item::Whiteout("m/one".into()),
        Item::Whiteout("c".into()),
        Item::Whiteout("d".into()),
        f("f", "upper f"),
        d("a"),
        f("a/y", "upper y"),
        Item::Xattrs(
            "tagged".into(),
            b"with xattrs".to_vec(),
            vec![
                ("user.label".into(), b"top".to_vec()),
                ("trusted.overlay.origin".into(), b"private to the overlay".to_vec()),
            ],
        ),
        Item::Dir("n".into(), 0o750),
        Item::Opaque("n".into()),
        f("n/fresh", "opaque over nothing"),
        Item::Symlink("dangling".into(), "/no/such/target".into()),
    ];
    vec![lowest, middle, top]
}

/// The paths the fixture's merged tree holds.
pub(super) const FIXTURE_PATHS: &[&str] = &[
    "/",
    "/a",
    "/a/y",
    "/b",
    "/b/new",
    "/big",
    "/big/data",
    "/big/other",
    "/dangling",
    "/dev",
    "/dev/null",
    "/e",
    "/f",
    "/fifo",
    "/g",
    "/g/inside",
    "/h",
    "/h/real",
    "/link",
    "/m",
    "/m/keep",
    "/m/three",
    "/m/two",
    "/n",
    "/n/fresh",
    "/owned",
    "/owned-link",
    "/setuid",
    "/tagged",
    "/x",
    "/x/only",
];
