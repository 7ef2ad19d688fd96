//! `image build`: layers from directories, read back by umoci (no code of ours) as exactly the last
//! directory's tree; deterministic digests; pushed to the real registry, pulled and converted.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};
use veritylab::convert::{self, VerityLayout};
use veritylab::erofs::{FileKind, Image};
use veritylab::oci::reference::LayoutRef;
use veritylab::oci::{self, BuildError, BuildOptions, PushDestination, PushOptions, PushSource};
use veritylab::store::Store;
use veritylab::verity_fuse::source::FileSource;

use super::support::{Registry, plain_http, pull, run};
use super::upload::registry_ref;

/// Three full trees: a base, then edits, deletions, a type change and an emptied directory, then more.
pub(super) fn layer_dirs(work: &Path) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = (1..=3).map(|i| work.join(format!("l{i}"))).collect();
    let write = |path: PathBuf, bytes: &[u8]| {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    };
    let big: Vec<u8> = (0..300_000u32)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    // Layer 1.
    let d = &dirs[0];
    write(d.join("etc/hello"), b"hello\n");
    write(d.join("etc/gone"), b"to be deleted\n");
    write(d.join("etc/mode"), b"mode changes\n");
    write(d.join("usr/bin/tool"), &big);
    symlink("tool", d.join("usr/bin/alias")).unwrap();
    write(d.join("cache/a"), b"a");
    write(d.join("cache/b"), b"b");
    write(d.join("cache/sub/c"), b"c");
    write(d.join("was_dir/x"), b"x");
    write(d.join("old/tree/deep"), b"deep");
    fs::create_dir_all(d.join("empty")).unwrap();
    // Layer 2: the same tree with changes.
    let d = &dirs[1];
    write(d.join("etc/hello"), b"hello again\n");
    write(d.join("etc/mode"), b"mode changes\n");
    fs::set_permissions(d.join("etc/mode"), fs::Permissions::from_mode(0o600)).unwrap();
    write(d.join("etc/new"), b"new file\n");
    write(d.join("usr/bin/tool"), &big);
    symlink("hello", d.join("usr/bin/alias")).unwrap();
    write(d.join("cache/fresh"), b"only this");
    write(d.join("was_dir"), b"now a file");
    fs::create_dir_all(d.join("empty")).unwrap();
    write(d.join("a-b/-x"), b"sorts before its whiteout");
    // Layer 3: more deletions, and a file back where one was deleted.
    let d = &dirs[2];
    write(d.join("etc/hello"), b"hello again\n");
    write(d.join("etc/gone"), b"back again\n");
    write(d.join("usr/bin/tool"), &big);
    symlink("hello", d.join("usr/bin/alias")).unwrap();
    write(d.join("cache/fresh"), b"only this");
    write(d.join("was_dir"), b"now a file");
    fs::create_dir_all(d.join("empty/now/nested")).unwrap();
    write(d.join("a-b/other"), b"o");
    dirs
}

/// Every entry under `root`: kind, permissions, and content hash or link target.
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {mode:o}")
            } else if meta.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else {
                let hash: String = Sha256::digest(fs::read(&path).unwrap())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("file {mode:o} {hash}")
            };
            out.insert(path.strip_prefix(root).unwrap().to_owned(), what);
        }
    }
    out
}

fn build_quietly(dirs: &[PathBuf], out: &Path, tag: &str) -> Result<oci::BuildReport, BuildError> {
    oci::build(dirs, out, tag, &BuildOptions::default(), &|_| {})
}

#[test]
fn every_prefix_of_the_layers_unpacks_with_umoci_to_its_last_directory() {
    let umoci = testkit::require_tool!("umoci");
    let work = tempfile::tempdir().unwrap();
    let dirs = layer_dirs(work.path());
    let out = work.path().join("out");
    for n in 1..=dirs.len() {
        let tag = format!("v{n}");
        let report = build_quietly(&dirs[..n], &out, &tag).unwrap();
        assert_eq!(report.layers.len(), n);
        let bundle = work.path().join(format!("bundle{n}"));
        run(Command::new(&umoci)
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:{tag}", out.display()))
            .arg(&bundle));
        assert_eq!(tree(&bundle.join("rootfs")), tree(&dirs[n - 1]), "after {n} layers");
    }
    let report = build_quietly(&dirs, &out, "v3").unwrap();
    // Layer 2 deletes etc/gone, old/ (one whiteout for the whole tree) and was_dir/'s content, and
    // empties cache/ (opaque).
    let second = &report.layers[1];
    assert!(second.whiteouts >= 4, "{second:?}");
    assert!(second.entries < 20, "unchanged files stay out of the layer: {second:?}");
}

#[test]
fn the_same_directories_give_the_same_digests_with_no_host_names_or_times() {
    let work = tempfile::tempdir().unwrap();
    let dirs = layer_dirs(work.path());
    let a = build_quietly(&dirs, &work.path().join("a"), "v1").unwrap();
    // New mtimes on every source file change nothing.
    for dir in &dirs {
        for (path, _) in tree(dir) {
            let full = dir.join(&path);
            if !fs::symlink_metadata(&full).unwrap().is_symlink() {
                fs::File::options()
                    .append(true)
                    .open(&full)
                    .map(|f| f.set_modified(std::time::SystemTime::now()))
                    .ok();
            }
        }
    }
    let b = build_quietly(&dirs, &work.path().join("b"), "v1").unwrap();
    assert_eq!(a.manifest, b.manifest);
    assert_eq!(
        a.layers.iter().map(|l| l.digest).collect::<Vec<_>>(),
        b.layers.iter().map(|l| l.digest).collect::<Vec<_>>()
    );
    for layer in &a.layers {
        let blob = fs::File::open(work.path().join("a/blobs/sha256").join(layer.digest.hex())).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            assert_eq!(header.mtime().unwrap(), 0);
            assert_eq!(header.username().unwrap(), Some(""));
            assert_eq!(header.groupname().unwrap(), Some(""));
        }
    }
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(work.path().join("a/blobs/sha256").join(a.config.hex())).unwrap()).unwrap();
    assert_eq!(config["os"], "linux");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    assert_eq!(config["rootfs"]["diff_ids"][0], a.layers[0].diff_id.to_string());
}

#[test]
fn a_built_image_pushes_pulls_and_converts_with_its_whiteouts() {
    let registry_bin = testkit::require_tool!("docker-registry");
    let work = tempfile::tempdir().unwrap();
    let dirs = layer_dirs(work.path());
    let out = work.path().join("out");
    let built = build_quietly(&dirs[..2], &out, "v1").unwrap();
    let registry = Registry::start(&registry_bin);
    let mut options = PushOptions::default();
    options.client.plain_http = true;
    let source = PushSource::Layout(LayoutRef {
        dir: out.clone(),
        tag: Some("v1".into()),
        digest: None,
    });
    let destination = PushDestination::Registry(registry_ref(&registry.host(), "lab/built:v1"));
    oci::push(&source, &destination, &options, &|_| {}).unwrap();

    let store = Store::open(&work.path().join("store")).unwrap();
    let pulled = pull(&store, &format!("{}/lab/built:v1", registry.host()), &plain_http()).unwrap();
    assert_eq!(pulled.manifest, built.manifest);
    let converted = convert::convert_image(&store, &pulled.name, VerityLayout::Containerd, &|_| {}).unwrap();
    assert_eq!(converted.layers.len(), 2);
    let top = FileSource::open(&converted.layers[1].conversion.dir.join("layer.erofs")).unwrap();
    let top = Image::open(&top).unwrap();
    let gone = top.lookup(b"/etc/gone").unwrap();
    assert_eq!((gone.kind, gone.device()), (FileKind::CharDevice, Some((0, 0))));
    let cache = top.lookup(b"/cache").unwrap();
    let xattrs = top.xattrs(&cache).unwrap();
    assert!(
        xattrs
            .iter()
            .any(|(name, value)| name.as_slice() == b"trusted.overlay.opaque" && value.as_slice() == b"y"),
        "the opaque marker becomes overlayfs' opaque xattr: {xattrs:?}"
    );
}

#[test]
fn whiteout_names_other_file_types_and_foreign_directories_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join(".wh.sneaky"), b"").unwrap();
    let out = work.path().join("out");
    let err = build_quietly(std::slice::from_ref(&src), &out, "v1").unwrap_err();
    assert!(matches!(err, BuildError::WhiteoutName { .. }), "{err}");
    assert!(!out.exists(), "a failed build leaves no output");
    let leftovers: Vec<_> = fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    fs::remove_file(src.join(".wh.sneaky")).unwrap();
    let socket = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    let err = build_quietly(std::slice::from_ref(&src), &out, "v1").unwrap_err();
    assert!(matches!(err, BuildError::Unsupported { kind: "socket", .. }), "{err}");
    drop(socket);
    fs::remove_file(src.join("sock")).unwrap();

    let foreign = work.path().join("foreign");
    fs::create_dir_all(&foreign).unwrap();
    fs::write(foreign.join("precious"), b"keep").unwrap();
    let err = build_quietly(std::slice::from_ref(&src), &foreign, "v1").unwrap_err();
    assert!(matches!(err, BuildError::NotALayout { .. }), "{err}");
    assert_eq!(fs::read_dir(&foreign).unwrap().count(), 1);

    let veritylab = Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args(["image", "build"])
        .arg(&src)
        .args(["--tag", "127.0.0.1:5000/lab/x:v1"])
        .output()
        .unwrap();
    assert_eq!(veritylab.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&veritylab.stderr).contains("oci:OUT:TAG"));
    let json = run(Command::new(env!("CARGO_BIN_EXE_veritylab"))
        .args(["image", "build"])
        .arg(&src)
        .arg("--tag")
        .arg(format!("oci:{}:v1", out.display()))
        .arg("--json"));
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["layers"].as_array().unwrap().len(), 1);
    assert_eq!(report["tag"], "v1");
}
