//! Our EROFS layers under real kernel dm-verity (kernel tier, in a VM): each layer, protected by a tree we
//! built, opens with `veritysetup`, mounts from `/dev/mapper/NAME`, and two such layers stack as an overlay
//! with the upper layer's whiteout, opaque directory and replaced file taking effect.

use std::path::Path;

use verity_fuse::params::{Geometry, Placement, VerityParams};
use verity_fuse::tree;
use veritylab::erofs::{self, OverlayNamespace, Whiteouts};

/// A layer tar: `(path, contents)` regular files, directories implied, `.wh.` names as OCI whiteouts.
fn layer_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = ::tar::Builder::new(Vec::new());
    for (path, contents) in entries {
        let mut header = ::tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(::tar::EntryType::Regular);
        builder.append_data(&mut header, path, *contents).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Converts a layer tar with our writer and builds its tree: (image, tree without superblock, root, blocks).
fn protect(dir: &Path, name: &str, tar: &[u8]) -> (Vec<u8>, Vec<u8>, String, u64) {
    let path = dir.join(name);
    let options = erofs::Options {
        inline_data: false,
        ..erofs::Options::default()
    };
    erofs::build_from_tar(&path, tar, options, Whiteouts::Aufs(OverlayNamespace::Trusted)).unwrap();
    let image = std::fs::read(&path).unwrap();
    let blocks = image.len() as u64 / 4096;
    let geometry = Geometry::new(VerityParams::new(blocks, vec![0; 32]), Placement::default()).unwrap();
    let built = tree::build(&image, &geometry, 2, &|_| {}).unwrap();
    (image, built.blocks, built.root.to_hex(), blocks)
}

#[test]
fn our_layers_mount_from_kernel_dm_verity_and_stack_as_an_overlay() {
    const TEST: &str = "erofs::kernel_vm::overlay_on_dm_verity";
    if let Err(reason) = kernel_vm::available() {
        testkit::skip(TEST, &format!("no VM here: {reason}"));
        return;
    }
    testkit::require_tool!("veritysetup");
    testkit::require_tool!("dmsetup");

    let dir = tempfile::tempdir().unwrap();
    let lower = layer_tar(&[
        ("etc/os-release", b"NAME=lower\n"),
        ("etc/keep", b"kept\n"),
        ("bin/tool", b"old tool\n"),
        ("var/cache/a", b"cached a\n"),
        ("var/cache/b", b"cached b\n"),
    ]);
    let upper = layer_tar(&[
        ("etc/.wh.keep", b""),
        ("bin/tool", b"new tool\n"),
        ("var/cache/.wh..wh..opq", b""),
        ("var/cache/c", b"cached c\n"),
    ]);
    let (lower_img, lower_tree, lower_root, lower_blocks) = protect(dir.path(), "lower.erofs", &lower);
    let (upper_img, upper_tree, upper_root, upper_blocks) = protect(dir.path(), "upper.erofs", &upper);
    let salt = "00".repeat(32);
    let open = |image: &str, name: &str, tree: &str, blocks: u64, root: &str| {
        format!(
            "veritysetup open --no-superblock --data-blocks={blocks} --salt={salt} {image} {name} {tree} {root}; \
             mark open-{name} $?"
        )
    };
    let script = format!(
        "mkdir -p /mnt/lower /mnt/upper /mnt/merged\n{}\n{}\n\
         mount -t erofs -o ro /dev/mapper/lower /mnt/lower; mark mount-lower $?\n\
         mount -t erofs -o ro /dev/mapper/upper /mnt/upper; mark mount-upper $?\n\
         mount -t overlay overlay -o lowerdir=/mnt/upper:/mnt/lower /mnt/merged; mark mount-overlay $?\n\
         section tree\ncd /mnt/merged && find . | sort\n\
         section tool\ncat /mnt/merged/bin/tool\n\
         section status\nveritysetup status lower | grep status; veritysetup status upper | grep status\n",
        open("lower.erofs", "lower", "lower.tree", lower_blocks, &lower_root),
        open("upper.erofs", "upper", "upper.tree", upper_blocks, &upper_root),
    );
    let out = kernel_vm::Vm::builder()
        .binary("veritysetup")
        .binary("dmsetup")
        .file("lower.erofs", lower_img)
        .file("lower.tree", lower_tree)
        .file("upper.erofs", upper_img)
        .file("upper.tree", upper_tree)
        .script(&script)
        .run()
        .unwrap_or_else(|e| panic!("VM run failed: {e}"));
    let get = |name: &str| {
        out.section(name)
            .unwrap_or_else(|| panic!("no {name} in:\n{}", out.script_output))
    };
    for step in [
        "open-lower",
        "open-upper",
        "mount-lower",
        "mount-upper",
        "mount-overlay",
    ] {
        assert_eq!(out.mark(step), Some("0"), "{step} failed:\n{}", out.script_output);
    }
    let tree: Vec<&str> = get("tree").lines().collect();
    assert_eq!(
        tree,
        [
            ".",
            "./bin",
            "./bin/tool",
            "./etc",
            "./etc/os-release",
            "./var",
            "./var/cache",
            "./var/cache/c"
        ],
        "the whiteout hides etc/keep and the opaque directory hides var/cache/a and b"
    );
    assert_eq!(get("tool"), "new tool\n");
    assert_eq!(get("status").matches("verified").count(), 2, "{}", get("status"));
}
