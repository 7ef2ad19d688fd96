//! Conversion: both layouts accepted by `veritysetup verify` with the recorded root hash and offset, the
//! whiteout carried into the EROFS image, and the same layer always giving the same bytes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use veritylab::convert::{self, SIDECAR_FILE, VERITY_FILE, VerityLayout};
use veritylab::erofs::{FileKind, Image};
use veritylab::store::Store;
use veritylab::verity_fuse::source::FileSource;

use super::support::{pull, run, umoci_image};

fn pulled_store(umoci: &Path, work: &Path, name: &str) -> (Store, String) {
    let layout = if work.join("layout").is_dir() {
        work.join("layout")
    } else {
        umoci_image(umoci, work)
    };
    let store = Store::open(&work.join(name)).unwrap();
    let report = pull(&store, &format!("oci:{}:v1", layout.display()), &Default::default()).unwrap();
    (store, report.name)
}

#[test]
fn both_layouts_pass_veritysetup_verify_with_the_recorded_root_hash() {
    let umoci = testkit::require_tool!("umoci");
    let veritysetup = testkit::require_tool!("veritysetup");
    let work = tempfile::tempdir().unwrap();
    let (store, name) = pulled_store(&umoci, work.path(), "store");

    let containerd = convert::convert_image(&store, &name, VerityLayout::Containerd, &|_| {}).unwrap();
    assert_eq!(containerd.layers.len(), 2);
    for layer in &containerd.layers {
        let c = &layer.conversion;
        let erofs = c.dir.join("layer.erofs");
        let sidecar: serde_json::Value = serde_json::from_slice(&fs::read(c.dir.join(SIDECAR_FILE)).unwrap()).unwrap();
        assert_eq!(
            sidecar,
            serde_json::json!({"roothash": c.roothash, "hashoffset": c.hashoffset}),
            "the sidecar holds exactly containerd's two fields"
        );
        for (path, mode) in [
            (c.dir.clone(), 0o755),
            (c.dir.join(SIDECAR_FILE), 0o644),
            (erofs.clone(), 0o644),
        ] {
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                mode,
                "{}",
                path.display()
            );
        }
        assert_eq!(c.hashoffset % 4096, 0);
        assert_eq!(c.hashoffset, c.erofs_size);
        let dump = run(Command::new(&veritysetup)
            .args(["verify", "--debug"])
            .arg(&erofs)
            .arg(&erofs)
            .arg(c.roothash.to_string())
            .arg(format!("--hash-offset={}", c.hashoffset)));
        assert!(dump.contains("Verification of data area succeeded"), "{dump}");
        let dumped = run(Command::new(&veritysetup)
            .arg("dump")
            .arg(&erofs)
            .arg(format!("--hash-offset={}", c.hashoffset)));
        assert!(
            dumped.contains(&format!("Data blocks:     \t{}", c.data_blocks)),
            "{dumped}"
        );
        assert!(
            dumped.contains(&format!("Salt:            \t{}", "0".repeat(64))),
            "{dumped}"
        );
    }

    let separate = convert::convert_image(&store, &name, VerityLayout::Separate, &|_| {}).unwrap();
    for (sep, cd) in separate.layers.iter().zip(&containerd.layers) {
        let c = &sep.conversion;
        assert_eq!(c.roothash, cd.conversion.roothash, "same parameters, same root hash");
        assert_eq!(c.hashoffset, 0);
        assert_eq!(fs::metadata(c.dir.join("layer.erofs")).unwrap().len(), c.erofs_size);
        run(Command::new(&veritysetup)
            .arg("verify")
            .arg(c.dir.join("layer.erofs"))
            .arg(c.dir.join(VERITY_FILE))
            .arg(c.roothash.to_string()));
    }
    // A wrong root hash is refused: the oracle really checks.
    let c = &separate.layers[0].conversion;
    let status = Command::new(&veritysetup)
        .arg("verify")
        .arg(c.dir.join("layer.erofs"))
        .arg(c.dir.join(VERITY_FILE))
        .arg("0".repeat(64))
        .output()
        .unwrap()
        .status;
    assert!(!status.success());
}

#[test]
fn the_second_layer_carries_the_deletion_as_an_overlay_whiteout() {
    let umoci = testkit::require_tool!("umoci");
    let work = tempfile::tempdir().unwrap();
    let (store, name) = pulled_store(&umoci, work.path(), "store");
    let report = convert::convert_image(&store, &name, VerityLayout::Containerd, &|_| {}).unwrap();
    let c = &report.layers[1].conversion;
    let source = FileSource::open(&c.dir.join("layer.erofs")).unwrap();
    let image = Image::open(&source).unwrap();
    let gone = image.lookup(b"/etc/gone").unwrap();
    assert_eq!(gone.kind, FileKind::CharDevice);
    assert_eq!(gone.device(), Some((0, 0)));
    let base = FileSource::open(&report.layers[0].conversion.dir.join("layer.erofs")).unwrap();
    let base = Image::open(&base).unwrap();
    let hello = base.lookup(b"/etc/hello").unwrap();
    assert_eq!(base.read_to_vec(&hello, 1 << 20).unwrap(), b"hello\n");
}

#[test]
fn the_same_layer_always_converts_to_the_same_bytes() {
    let umoci = testkit::require_tool!("umoci");
    let work = tempfile::tempdir().unwrap();
    let (a, name) = pulled_store(&umoci, work.path(), "a");
    let (b, _) = pulled_store(&umoci, work.path(), "b");
    let first = convert::convert_image(&a, &name, VerityLayout::Containerd, &|_| {}).unwrap();
    let second = convert::convert_image(&b, &name, VerityLayout::Containerd, &|_| {}).unwrap();
    for (x, y) in first.layers.iter().zip(&second.layers) {
        assert_eq!(x.conversion.roothash, y.conversion.roothash);
        assert_eq!(
            fs::read(x.conversion.dir.join("layer.erofs")).unwrap(),
            fs::read(y.conversion.dir.join("layer.erofs")).unwrap()
        );
    }
    let again = convert::convert_image(&a, &name, VerityLayout::Containerd, &|_| {}).unwrap();
    assert!(again.layers.iter().all(|l| l.reused));
    assert_eq!(again.layers[0].conversion, first.layers[0].conversion);
}

#[test]
fn fec_parity_is_veritysetups_and_repairs_what_veritysetup_verify_repairs() {
    let umoci = testkit::require_tool!("umoci");
    let veritysetup = testkit::require_tool!("veritysetup");
    let work = tempfile::tempdir().unwrap();
    let (store, name) = pulled_store(&umoci, work.path(), "store");
    for (layout, roots) in [(VerityLayout::Containerd, 2u32), (VerityLayout::Separate, 8)] {
        let report = convert::convert_image_with(&store, &name, layout, Some(roots), &|_| {}).unwrap();
        for layer in &report.layers {
            let c = &layer.conversion;
            let fec = c.fec.expect("the record names the parity");
            assert_eq!(fec.roots, roots);
            let ours = fs::read(c.dir.join(convert::FEC_FILE)).unwrap();
            // veritysetup's own parity over a copy of the same data and tree, in a file of its own.
            let copy = work.path().join(format!("copy-{}", layout.name()));
            fs::create_dir_all(&copy).unwrap();
            let (data, hash) = (copy.join("data"), copy.join("hash"));
            fs::copy(c.dir.join("layer.erofs"), &data).unwrap();
            fs::copy(convert::fec::hash_file(c), &hash).unwrap();
            let theirs = copy.join("fec");
            let _ = fs::remove_file(&theirs);
            let (hash_arg, offset) = match layout {
                VerityLayout::Containerd => (&data, c.hashoffset),
                VerityLayout::Separate => (&hash, 0),
            };
            let out = run(Command::new(&veritysetup)
                .arg("format")
                .arg(&data)
                .arg(hash_arg)
                .arg(format!("--hash-offset={offset}"))
                .arg(format!("--salt={}", c.salt))
                .arg(format!("--data-blocks={}", c.data_blocks))
                .arg(format!("--fec-device={}", theirs.display()))
                .arg(format!("--fec-roots={roots}")));
            assert!(out.contains(&c.roothash.to_string()), "same tree: {out}");
            assert!(
                ours == fs::read(&theirs).unwrap(),
                "parity byte-identical to veritysetup's"
            );
            // One byte of the copy's data flipped: veritysetup repairs it from our parity.
            let mut bytes = fs::read(&data).unwrap();
            bytes[100] ^= 0x20;
            fs::write(&data, bytes).unwrap();
            let verify = |fec: &Path| {
                Command::new(&veritysetup)
                    .arg("verify")
                    .arg(&data)
                    .arg(hash_arg)
                    .arg(c.roothash.to_string())
                    .arg(format!("--hash-offset={offset}"))
                    .arg(format!("--fec-device={}", fec.display()))
                    .arg(format!("--fec-roots={roots}"))
                    .status()
                    .unwrap()
            };
            assert!(
                verify(&c.dir.join(convert::FEC_FILE)).success(),
                "repaired from our parity"
            );
            let without = Command::new(&veritysetup)
                .arg("verify")
                .arg(&data)
                .arg(hash_arg)
                .arg(c.roothash.to_string())
                .arg(format!("--hash-offset={offset}"))
                .status()
                .unwrap();
            assert!(!without.success(), "without parity the flipped byte fails verification");
        }
    }
    // Converting again with other roots replaces the parity and the record; bad roots are refused.
    let again = convert::convert_image_with(&store, &name, VerityLayout::Containerd, Some(4), &|_| {}).unwrap();
    assert_eq!(again.layers[0].conversion.fec.map(|f| f.roots), Some(4));
    let recorded = convert::existing(&store, &again.layers[0].conversion.layer, VerityLayout::Containerd)
        .unwrap()
        .unwrap();
    assert_eq!(recorded.fec, again.layers[0].conversion.fec);
    let error = convert::convert_image_with(&store, &name, VerityLayout::Containerd, Some(30), &|_| {}).unwrap_err();
    assert_eq!(error.class(), veritylab::verity_fuse::ErrorClass::BadInput, "{error}");
    assert!(
        error
            .to_string()
            .contains(&again.layers[0].conversion.layer.to_string()),
        "{error}"
    );
}
