//! Privileged tier: the converted layers of an umoci image, and of one built from directories, mounted by
//! the kernel as EROFS and stacked as a read-only overlay, show the same tree as `umoci unpack` of the same
//! image.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};
use veritylab::convert::{self, VerityLayout};
use veritylab::store::Store;

use super::build::layer_dirs;
use super::support::{pull, run, umoci_image};

/// A kernel mount undone on drop.
struct Mount(tempfile::TempDir);

impl Mount {
    fn new(args: &[&str], source: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("mount").args(args).arg(source).arg(dir.path()));
        Self(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// Path → (type, mode, uid, gid, content digest or link target); times are left out.
pub(crate) type Tree = BTreeMap<PathBuf, (char, u32, u32, u32, String)>;

/// The [`Tree`] under `root`.
pub(crate) fn tree(root: &Path) -> Tree {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let (kind, content) = if ft.is_dir() {
            stack.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            ('d', String::new())
        } else if ft.is_file() {
            let digest = Sha256::digest(fs::read(&path).unwrap());
            ('-', digest.iter().map(|b| format!("{b:02x}")).collect())
        } else if ft.is_symlink() {
            ('l', fs::read_link(&path).unwrap().display().to_string())
        } else if ft.is_char_device() {
            ('c', meta.rdev().to_string())
        } else {
            ('?', String::new())
        };
        let rel = path.strip_prefix(root).unwrap().to_owned();
        out.insert(rel, (kind, meta.mode() & 0o7777, meta.uid(), meta.gid(), content));
    }
    out
}

/// Pulls `oci:LAYOUT:TAG`, converts it, mounts every layer as kernel EROFS, stacks them as a read-only
/// overlay and returns the overlay's tree beside the tree `umoci unpack` makes of the same image.
fn overlay_and_umoci_trees(umoci: &Path, work: &Path, layout: &Path, tag: &str) -> (Tree, Tree) {
    let image = format!("{}:{tag}", layout.display());
    let bundle = work.join(format!("unpacked-{tag}"));
    run(Command::new(umoci).args(["unpack", "--image", &image]).arg(&bundle));
    let store = Store::open(&work.join("store")).unwrap();
    let name = pull(&store, &format!("oci:{image}"), &Default::default()).unwrap().name;
    let report = convert::convert_image(&store, &name, VerityLayout::Containerd, &|_| {}).unwrap();
    let mounts: Vec<Mount> = report
        .layers
        .iter()
        .map(|l| {
            let image = l.conversion.dir.join("layer.erofs");
            Mount::new(&["-t", "erofs", "-o", "loop,ro"], &image.display().to_string())
        })
        .collect();
    let lowers: Vec<String> = mounts.iter().rev().map(|m| m.path().display().to_string()).collect();
    let overlay = Mount::new(
        &["-t", "overlay", "-o", &format!("ro,lowerdir={}", lowers.join(":"))],
        "overlay",
    );
    let got = tree(overlay.path());
    drop(overlay);
    (got, tree(&bundle.join("rootfs")))
}

#[test]
fn converted_layers_as_a_kernel_overlay_match_umoci_unpack() {
    testkit::require_root!();
    let umoci = testkit::require_tool!("umoci");
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(&umoci, work.path());
    let (got, expected) = overlay_and_umoci_trees(&umoci, work.path(), &layout, "v1");
    assert_eq!(got, expected);
    assert!(
        !got.contains_key(Path::new("etc/gone")),
        "the whiteout hides the deleted file"
    );
}

#[test]
fn an_image_built_from_directories_mounts_as_the_same_tree_as_umoci_unpack_and_its_last_directory() {
    testkit::require_root!();
    let umoci = testkit::require_tool!("umoci");
    let work = tempfile::tempdir().unwrap();
    let dirs = layer_dirs(work.path());
    let layout = work.path().join("built");
    veritylab::oci::build(&dirs, &layout, "v1", &Default::default(), &|_| {}).unwrap();
    let (got, expected) = overlay_and_umoci_trees(&umoci, work.path(), &layout, "v1");
    assert_eq!(got, expected);
    let mut last = tree(&dirs[2]);
    // The roots differ only in their own entry (the source directory's mode and owner).
    last.remove(Path::new(""));
    let mut got = got;
    got.remove(Path::new(""));
    assert_eq!(
        got, last,
        "opaque directories, whiteouts and type changes all resolve as the last directory"
    );
}
