//! The fuzz targets as ordinary tests: each target's check runs over seed inputs (images from our writer and
//! from `mkfs.erofs`, this process's mountinfo, OCI documents and references), over the local corpus in
//! `fuzz/corpus/<target>/` when there is one, and over a few thousand mutations of the seeds. The mutations
//! come from a fixed random seed, so a failure repeats; `VERITYLAB_FUZZ_ROUNDS` sets how many (default 10,000).
//! A panicking input is written to the target's scratch directory and named in the failure.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use veritylab::erofs::{self, Image, OverlayNamespace, Whiteouts};
use veritylab::oci::{Digest, manifest, media};
use veritylab_fuzz::MEDIA_TYPES;

/// Mutated inputs per target unless `VERITYLAB_FUZZ_ROUNDS` says otherwise.
const ROUNDS: u64 = 10_000;

fn rounds() -> u64 {
    std::env::var("VERITYLAB_FUZZ_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS)
}

/// The files of `fuzz/corpus/<target>/`, if that directory exists (corpora are local, never committed).
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries.filter_map(|e| fs::read(e.ok()?.path()).ok()).collect()
}

/// Changes a few bytes of `input` the way a fuzzer's mutators do: bit flips, boundary values written as
/// 1, 2 or 4 little-endian bytes, truncation, a copied chunk, inserted random bytes.
fn mutate(rng: &mut StdRng, input: &mut Vec<u8>) {
    const BOUNDARIES: [u32; 8] = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff];
    for _ in 0..rng.random_range(1..=8) {
        if input.is_empty() {
            input.push(rng.random());
            continue;
        }
        let at = rng.random_range(0..input.len());
        match rng.random_range(0..6) {
            0 => input[at] ^= 1 << rng.random_range(0..8),
            1 => {
                let value = BOUNDARIES[rng.random_range(0..BOUNDARIES.len())].to_le_bytes();
                let width = [1, 2, 4][rng.random_range(0..3)];
                let end = (at + width).min(input.len());
                input[at..end].copy_from_slice(&value[..end - at]);
            }
            2 => input.truncate(at),
            3 => {
                let len = rng.random_range(1..=64).min(input.len() - at);
                let chunk = input[at..at + len].to_vec();
                let to = rng.random_range(0..=input.len());
                input.splice(to..to, chunk);
            }
            4 => {
                let bytes: Vec<u8> = (0..rng.random_range(1..=16)).map(|_| rng.random()).collect();
                input.splice(at..at, bytes);
            }
            _ => input[at] = rng.random(),
        }
    }
}

/// Runs `check` over every seed, the local corpus and [`rounds`] mutations (one in ten purely random bytes).
fn replay(target: &str, seeds: &[Vec<u8>], check: fn(&[u8])) {
    assert!(!seeds.is_empty(), "{target}: no seeds");
    let run = |input: &[u8], what: &str| {
        if panic::catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
            let saved = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("crash-{target}"));
            let note = match fs::write(&saved, input) {
                Ok(()) => format!("written to {}", saved.display()),
                Err(e) => format!("not saved ({e})"),
            };
            panic!(
                "{target}: {what} ({} bytes) breaks an invariant; the input is {note}",
                input.len()
            );
        }
    };
    for (i, seed) in seeds.iter().enumerate() {
        run(seed, &format!("seed {i}"));
    }
    for (i, input) in corpus(target).iter().enumerate() {
        run(input, &format!("corpus file {i}"));
    }
    let mut rng = StdRng::seed_from_u64(0x7665_7269_7479);
    for round in 0..rounds() {
        let input = if round % 10 == 9 {
            (0..rng.random_range(0..4096)).map(|_| rng.random()).collect()
        } else {
            let mut input = seeds[rng.random_range(0..seeds.len())].clone();
            mutate(&mut rng, &mut input);
            input
        };
        run(&input, &format!("mutation round {round}"));
    }
}

/// A small tree with every file kind our writer stores, files of awkward sizes and an xattr.
fn sample_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/sub")).unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    for size in [0usize, 100, 4095, 4097, 9000] {
        fs::write(root.join(format!("etc/sub/file-{size}")), vec![b'x'; size]).unwrap();
    }
    std::os::unix::fs::symlink("../etc/passwd", root.join("etc/sub/link")).unwrap();
    std::os::unix::fs::symlink("t".repeat(300), root.join("long-link")).unwrap();
    fs::hard_link(root.join("etc/passwd"), root.join("etc/hard")).unwrap();
    erofs::hostfs::set_xattr(&root.join("etc"), b"user.lab", b"seed").unwrap();
}

/// Images of [`sample_tree`] from our writer: default options, no inline data, 512-byte blocks.
fn writer_images() -> Vec<Vec<u8>> {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    sample_tree(&src);
    let variants = [
        erofs::Options::default(),
        erofs::Options {
            inline_data: false,
            ..erofs::Options::default()
        },
        erofs::Options {
            block_size: 512,
            ..erofs::Options::default()
        },
    ];
    variants
        .into_iter()
        .enumerate()
        .map(|(i, options)| {
            let image = work.path().join(format!("{i}.erofs"));
            erofs::build_from_dir(&image, &src, options).unwrap();
            fs::read(image).unwrap()
        })
        .collect()
}

/// An upper layer for the merge: a whiteout over `etc/passwd`, an opaque `etc/sub`, a new file.
fn upper_layer() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], kind: tar::EntryType| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(data.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        tar.append_data(&mut header, path, data).unwrap();
    };
    add("etc/", b"", tar::EntryType::Directory);
    add("etc/.wh.passwd", b"", tar::EntryType::Regular);
    add("etc/sub/", b"", tar::EntryType::Directory);
    add("etc/sub/.wh..wh..opq", b"", tar::EntryType::Regular);
    add("etc/sub/new", b"from the upper layer\n", tar::EntryType::Regular);
    let bytes = tar.into_inner().unwrap();
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("upper.erofs");
    erofs::build_from_tar(
        &image,
        &bytes[..],
        erofs::Options::default(),
        Whiteouts::Aufs(OverlayNamespace::Trusted),
    )
    .unwrap();
    fs::read(image).unwrap()
}

#[test]
fn erofs_reader_over_our_images_and_their_mutations() {
    let seeds = writer_images();
    for seed in &seeds {
        assert!(Image::open(&seed[..]).is_ok(), "a seed opens");
    }
    replay("erofs_reader", &seeds, veritylab_fuzz::erofs_reader);
}

#[test]
fn erofs_reader_over_mkfs_erofs_images_and_their_mutations() {
    let mkfs = testkit::require_tool!("mkfs.erofs");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    sample_tree(&src);
    let mut seeds = Vec::new();
    for (i, args) in [&[][..], &["-Enoinline_data"]].iter().enumerate() {
        let image = work.path().join(format!("{i}.erofs"));
        let out = Command::new(&mkfs)
            .arg("--quiet")
            .args(*args)
            .arg(&image)
            .arg(&src)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mkfs.erofs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        seeds.push(fs::read(image).unwrap());
    }
    replay("erofs_reader", &seeds, veritylab_fuzz::erofs_reader);
}

#[test]
fn mountinfo_over_this_process_mounts_and_their_mutations() {
    let mut seeds = vec![fs::read("/proc/self/mountinfo").unwrap()];
    seeds.push(
        b"36 35 98:0 /mnt1 /mnt\\040with\\011tab rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
          37 36 0:45 / /run/lab rw shared:2 propagation_from:3 unbindable - overlay overlay \
          ro,lowerdir=/a:/b,upperdir=/c\\134d\n"
            .to_vec(),
    );
    for seed in &seeds {
        assert!(veritylab::mountinfo::parse(seed).is_ok(), "a seed parses");
    }
    replay("mountinfo", &seeds, veritylab_fuzz::mountinfo);
}

#[test]
fn oci_manifest_over_documents_and_references_and_their_mutations() {
    let digest = |text: &str| Digest::of(text.as_bytes()).to_string();
    let image = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":7,"annotations":{{"org.veritylab.dm-verity.root-hash":"{}"}}}}],"annotations":{{"org.veritylab.build-timestamp":"2026-11-01T00:00:00Z"}}}}"#,
        media::OCI_MANIFEST,
        digest("{}"),
        digest("layer"),
        "ab".repeat(32)
    );
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{}","size":9,"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{}","digest":"{}","size":9,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#,
        media::OCI_INDEX,
        media::OCI_MANIFEST,
        digest("one"),
        media::OCI_MANIFEST,
        digest("two")
    );
    let pick = |media_type: &str| MEDIA_TYPES.iter().position(|m| *m == media_type).unwrap() as u8;
    let mut seeds = Vec::new();
    for (media_type, doc) in [(media::OCI_MANIFEST, &image), (media::OCI_INDEX, &index)] {
        let parsed = manifest::parse(&Digest::of(doc.as_bytes()), media_type, doc.as_bytes());
        assert!(parsed.is_ok(), "a seed parses: {parsed:?}");
        seeds.push([&[pick(media_type)][..], doc.as_bytes()].concat());
    }
    for reference in [
        "127.0.0.1:5000/lab/demo:v1".to_owned(),
        format!("registry.example.com/a/b@{}", digest("x")),
        "oci:/tmp/layout:v1".to_owned(),
        "oci-archive:image.tar:latest".to_owned(),
        digest("plain digest"),
    ] {
        seeds.push([&[0u8][..], reference.as_bytes()].concat());
    }
    replay("oci_manifest", &seeds, veritylab_fuzz::oci_manifest);
}

#[test]
fn policy_import_over_the_example_policies_and_their_mutations() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/policies");
    let seeds: Vec<Vec<u8>> = [
        "kyverno-verify-images.yaml",
        "cluster-image-policy.yaml",
        "containers-policy.json",
    ]
    .iter()
    .map(|name| fs::read(dir.join(name)).unwrap())
    .collect();
    for seed in &seeds {
        let text = std::str::from_utf8(seed).unwrap();
        assert!(
            veritylab::policy_import::import_str("seed", text, false).is_ok(),
            "a seed imports"
        );
    }
    replay("policy_import", &seeds, veritylab_fuzz::policy_import);
}

#[test]
fn rootfs_merge_over_two_layers_and_their_mutations() {
    let lowers = writer_images();
    let upper = upper_layer();
    let seeds: Vec<Vec<u8>> = lowers
        .iter()
        .map(|lower| veritylab_fuzz::rootfs_merge_input(lower, &upper))
        .collect();
    replay("rootfs_merge", &seeds, veritylab_fuzz::rootfs_merge);
}
