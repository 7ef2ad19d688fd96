//! Forward error correction against `veritysetup`: parity byte-identical on a grid of roots, sizes and layouts,
//! and each tool repairing (or refusing) what the other formatted.

use std::path::Path;

use verity_fuse::params::{Geometry, Placement, VerityParams};

use crate::support::{bytes, field, ok, tool, verity_fuse};

const UUID: &str = "12345678-9abc-4def-8123-456789abcdef";
const SALT: &str = "e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d";

/// Where the tree and the parity go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// DATA, HASH and FEC files.
    Separate,
    /// The tree inside DATA at --hash-offset, parity in its own file.
    HashInData,
    /// Tree and parity inside DATA (--hash-offset, --fec-device DATA --fec-offset).
    AllInData,
    /// A separate HASH file with the parity after the tree (--fec-device HASH --fec-offset).
    FecInHash,
    /// Parity in its own file after --fec-offset bytes.
    FecOffset,
}

#[derive(Debug, Clone)]
struct Case {
    roots: u32,
    block_size: u32,
    data_len: usize,
    layout: Layout,
    /// Blocks of foreign bytes between the tree and the parity (shared layouts only).
    gap_blocks: u64,
}

fn grid() -> Vec<Case> {
    let layouts = [
        Layout::Separate,
        Layout::HashInData,
        Layout::AllInData,
        Layout::FecInHash,
        Layout::FecOffset,
    ];
    let roots = [2, 8, 24];
    (0..30)
        .map(|i| {
            let block_size = if i % 4 == 3 { 512 } else { 4096 };
            let bs = block_size as usize;
            // One block; a few and a partial one; exactly one round of 253 with roots 2; sizes that are not a
            // multiple of the interleaving; with 512-byte blocks, thousands of blocks over several levels.
            let data_len = match (i / 3) % 5 {
                0 => bs,
                1 => 6 * bs + 100,
                2 => 253 * bs - bs,
                3 => 600 * bs + 7,
                _ => 1337 * bs,
            };
            let layout = layouts[i % layouts.len()];
            Case {
                roots: roots[i % 3],
                block_size,
                data_len,
                layout,
                gap_blocks: if matches!(layout, Layout::AllInData | Layout::FecInHash) {
                    (i as u64 / 5) % 2 * 3
                } else {
                    0
                },
            }
        })
        .collect()
}

/// File names and offsets of a case: (hash file, hash offset, FEC file, FEC offset, length the shared file
/// must have before format so the parity offset is inside it).
struct Plan {
    hash: &'static str,
    hash_offset: u64,
    fec: &'static str,
    fec_offset: u64,
    shared_len: Option<u64>,
}

fn plan(c: &Case) -> Plan {
    let bs = u64::from(c.block_size);
    let data_blocks = c.data_len as u64 / bs;
    let data_end = (c.data_len as u64).div_ceil(bs) * bs;
    let hash_offset = match c.layout {
        Layout::HashInData | Layout::AllInData => data_end,
        _ => 0,
    };
    let mut params = VerityParams::new(data_blocks, vec![]);
    params.data_block_size = c.block_size;
    params.hash_block_size = c.block_size;
    let hash_end = Geometry::new(params, Placement::with_superblock(hash_offset))
        .unwrap()
        .hash_device_size();
    let after_tree = hash_end + c.gap_blocks * bs;
    match c.layout {
        Layout::Separate => Plan {
            hash: "hash",
            hash_offset,
            fec: "fec",
            fec_offset: 0,
            shared_len: None,
        },
        Layout::HashInData => Plan {
            hash: "data",
            hash_offset,
            fec: "fec",
            fec_offset: 0,
            shared_len: None,
        },
        Layout::AllInData => Plan {
            hash: "data",
            hash_offset,
            fec: "data",
            fec_offset: after_tree,
            shared_len: Some(after_tree),
        },
        Layout::FecInHash => Plan {
            hash: "hash",
            hash_offset,
            fec: "hash",
            fec_offset: after_tree,
            shared_len: Some(after_tree),
        },
        Layout::FecOffset => Plan {
            hash: "hash",
            hash_offset,
            fec: "fec",
            fec_offset: 3 * bs,
            shared_len: None,
        },
    }
}

fn format_args(c: &Case, p: &Plan) -> Vec<String> {
    let mut a = vec![
        "format".to_owned(),
        format!("--data-block-size={}", c.block_size),
        format!("--hash-block-size={}", c.block_size),
        format!("--salt={SALT}"),
        format!("--uuid={UUID}"),
        format!("--fec-device={}", p.fec),
        format!("--fec-roots={}", c.roots),
        format!("--data-blocks={}", c.data_len / c.block_size as usize),
    ];
    if p.hash_offset > 0 {
        a.push(format!("--hash-offset={}", p.hash_offset));
    }
    if p.fec_offset > 0 {
        a.push(format!("--fec-offset={}", p.fec_offset));
    }
    a.extend(["data".to_owned(), p.hash.to_owned()]);
    a
}

/// Formats case `c` in `dir` with one tool; returns the root hash, the hash-device bytes and the parity.
fn format(dir: &Path, c: &Case, veritysetup: Option<&Path>) -> (String, Vec<u8>, Vec<u8>) {
    let p = plan(c);
    let data = bytes(c.data_len, c.data_len as u64 ^ u64::from(c.roots));
    std::fs::write(dir.join("data"), &data).unwrap();
    if let Some(len) = p.shared_len {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(p.fec))
            .unwrap();
        file.set_len(len).unwrap();
    }
    let args = format_args(c, &p);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = match veritysetup {
        Some(v) => ok(tool(v, dir, &args), &format!("veritysetup {args:?}")),
        None => ok(verity_fuse(dir, &args), &format!("verity-fuse {args:?}")),
    };
    let fec = std::fs::read(dir.join(p.fec)).unwrap();
    (
        field(&out, "Root hash"),
        std::fs::read(dir.join(p.hash)).unwrap(),
        fec[p.fec_offset as usize..].to_vec(),
    )
}

#[test]
fn parity_is_byte_identical_to_veritysetups_for_every_roots_size_and_layout() {
    let veritysetup = testkit::require_tool!("veritysetup");
    for c in grid() {
        let ours = tempfile::tempdir().unwrap();
        let theirs = tempfile::tempdir().unwrap();
        let (our_root, our_hash, our_fec) = format(ours.path(), &c, None);
        let (their_root, their_hash, their_fec) = format(theirs.path(), &c, Some(&veritysetup));
        assert_eq!(our_root, their_root, "root hash differs for {c:?}");
        assert!(our_hash == their_hash, "hash device differs for {c:?}");
        if c.data_len == c.block_size as usize && c.layout == Layout::HashInData {
            // veritysetup 2.6.1 computes the parity before it writes the superblock: with one data block
            // there is no tree, the shared file still ends at the data, and its count of covered hash blocks
            // wraps around to an empty parity. Ours covers the data block.
            assert!(their_fec.is_empty() && our_fec.len() == c.roots as usize * c.block_size as usize);
            continue;
        }
        assert_eq!(our_fec.len(), their_fec.len(), "parity size differs for {c:?}");
        assert!(our_fec == their_fec, "parity differs for {c:?}");
    }
}

#[test]
fn the_grid_covers_roots_layouts_and_sizes_off_the_interleaving() {
    let cases = grid();
    for roots in [2, 8, 24] {
        for layout in [
            Layout::Separate,
            Layout::HashInData,
            Layout::AllInData,
            Layout::FecInHash,
            Layout::FecOffset,
        ] {
            assert!(
                cases.iter().any(|c| c.roots == roots && c.layout == layout),
                "{roots} {layout:?}"
            );
        }
    }
    // Covered blocks (data plus tree) that are not a multiple of 255 - roots.
    assert!(cases.iter().any(|c| {
        let blocks = c.data_len as u64 / u64::from(c.block_size);
        blocks > 255 && !blocks.is_multiple_of(255 - u64::from(c.roots))
    }));
    assert!(cases.iter().any(|c| c.gap_blocks > 0 && c.layout == Layout::AllInData));
    assert!(cases.iter().any(|c| c.data_len % c.block_size as usize != 0));
}

/// A formatted image for the repair tests: 2000 blocks of 4096 bytes, separate hash and FEC files.
struct Image {
    dir: tempfile::TempDir,
    root: String,
    roots: u32,
    /// Codeword rounds: blocks `n, n + rounds, …` share codewords.
    rounds: u64,
}

const BLOCKS: u64 = 2000;

fn image(roots: u32, veritysetup: Option<&Path>) -> Image {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data"), bytes(BLOCKS as usize * 4096, 7)).unwrap();
    let args = [
        "format",
        "--salt",
        SALT,
        "--uuid",
        UUID,
        "--fec-device",
        "fec",
        "--fec-roots",
        &roots.to_string(),
        "data",
        "hash",
    ];
    let out = match veritysetup {
        Some(v) => ok(tool(v, dir.path(), &args), "veritysetup format"),
        None => ok(verity_fuse(dir.path(), &args), "verity-fuse format"),
    };
    // The data blocks and the tree (16 leaves, 1 top block) are covered.
    let tree = Geometry::new(VerityParams::new(BLOCKS, vec![]), Placement::with_superblock(0))
        .unwrap()
        .tree_blocks();
    assert_eq!(tree, 17);
    Image {
        root: field(&out, "Root hash"),
        dir,
        roots,
        rounds: (BLOCKS + tree).div_ceil(255 - u64::from(roots)),
    }
}

impl Image {
    /// Overwrites whole `blocks` of `file` with other bytes.
    fn damage(&self, file: &str, blocks: &[u64]) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.path().join(file))
            .unwrap();
        for &b in blocks {
            f.write_all_at(&bytes(4096, 1000 + b), b * 4096).unwrap();
        }
    }

    /// Runs verify with one tool; returns (exit code, stdout + stderr).
    fn verify(&self, veritysetup: Option<&Path>) -> (i32, String) {
        let roots = self.roots.to_string();
        let args = [
            "verify",
            "--fec-device",
            "fec",
            "--fec-roots",
            &roots,
            "data",
            "hash",
            &self.root,
        ];
        let out = match veritysetup {
            Some(v) => tool(v, self.dir.path(), &args),
            None => verity_fuse(self.dir.path(), &args),
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap(), text)
    }
}

/// `n` blocks of one round (so every codeword of that round loses `n` symbols).
fn same_round(image: &Image, first: u64, n: u64) -> Vec<u64> {
    (0..n).map(|i| first + i * image.rounds).collect()
}

#[test]
fn each_tool_repairs_what_the_other_formatted_and_both_refuse_too_much_damage() {
    let veritysetup = testkit::require_tool!("veritysetup");
    for roots in [2, 8, 24] {
        let capacity = u64::from(roots / 2);
        for (formatter, checker) in [(None, Some(veritysetup.as_path())), (Some(veritysetup.as_path()), None)] {
            let image = image(roots, formatter);
            let (code, text) = image.verify(checker);
            assert_eq!(code, 0, "clean image, roots {roots}: {text}");
            // As many whole blocks of one round as the parity can correct, plus a run of consecutive blocks
            // over every other round.
            let mut blocks = same_round(&image, 5, capacity);
            let run_start = 1000 - 1000 % image.rounds + 5 % image.rounds + 1;
            blocks.extend(run_start..run_start + image.rounds - 1);
            blocks.sort();
            blocks.dedup();
            image.damage("data", &blocks);
            let (code, text) = image.verify(checker);
            assert_eq!(code, 0, "roots {roots}, {blocks:?} damaged: {text}");
            assert!(text.contains("repairable errors"), "{text}");
            if checker.is_none() {
                for b in &blocks {
                    assert!(text.contains(&format!("data block {b}")), "{b} not named: {text}");
                }
            }
            // One block more than the parity corrects in one round: both refuse.
            image.damage("data", &same_round(&image, 5, capacity + 1));
            let (code, text) = image.verify(checker);
            assert_eq!(code, 2, "roots {roots}, beyond capacity: {text}");
            assert!(text.contains("cannot be repaired"), "{text}");
        }
    }
}

#[test]
fn a_damaged_tree_block_is_repaired_by_both_tools() {
    let veritysetup = testkit::require_tool!("veritysetup");
    for (formatter, checker) in [(None, Some(veritysetup.as_path())), (Some(veritysetup.as_path()), None)] {
        let image = image(8, formatter);
        // Hash file: superblock block 0, top block 1, leaves 2..=17.
        image.damage("hash", &[3]);
        let (code, text) = image.verify(checker);
        assert_eq!(code, 0, "{text}");
        if checker.is_none() {
            assert!(text.contains("hash block 3 (tree level 0)"), "{text}");
        }
    }
}

#[test]
fn bad_fec_parameters_are_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data"), bytes(20 * 4096, 3)).unwrap();
    for (args, message) in [
        (vec!["--fec-roots", "1"], "outside 2..=24"),
        (vec!["--fec-roots", "25"], "outside 2..=24"),
        (vec!["--fec-offset", "100"], "not a multiple"),
        (vec!["--hash-block-size", "1024"], "equal data and hash block sizes"),
    ] {
        let mut all = vec!["format", "--fec-device", "fec"];
        all.extend(&args);
        all.extend(["data", "hash"]);
        let out = verity_fuse(dir.path(), &all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(!dir.path().join("hash").exists() && !dir.path().join("fec").exists());
    }
    // Parity inside the hash file must start after the tree.
    let out = verity_fuse(
        dir.path(),
        &["format", "--fec-device", "hash", "--fec-offset", "4096", "data", "hash"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("overlaps the hash area"));
    // A parity file cut short is refused by verify with a typed message, not a panic.
    let out = verity_fuse(dir.path(), &["format", "--fec-device", "fec", "data", "hash"]);
    let root = field(&ok(out, "format"), "Root hash");
    let fec = std::fs::read(dir.path().join("fec")).unwrap();
    std::fs::write(dir.path().join("fec"), &fec[..fec.len() - 1]).unwrap();
    let out = verity_fuse(dir.path(), &["verify", "--fec-device", "fec", "data", "hash", &root]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("too small"));
}

mod device {
    //! The verified device with parity: corrected blocks are served only once they match the tree.

    use proptest::prelude::*;
    use verity_fuse::ReadAt;
    use verity_fuse::device::{Options, VerifiedDevice};
    use verity_fuse::error::{BlockRef, VerityError};
    use verity_fuse::fec::{self, FecLayout, FecParams, covered_blocks};
    use verity_fuse::params::VerityParams;

    use crate::support::{Built, build, bytes};

    /// A device image: data, tree (at offset 0 of the hash device, no superblock) and parity.
    struct Fixture {
        data: Vec<u8>,
        built: Built,
        params: FecParams,
        parity: Vec<u8>,
        rounds: u64,
    }

    fn fixture(blocks: u64, roots: u32) -> Fixture {
        let data = bytes(blocks as usize * 4096, blocks ^ u64::from(roots));
        let built = build(&data, VerityParams::new(blocks, vec![7; 32]));
        let params = FecParams {
            roots,
            blocks: covered_blocks(&built.geometry, built.hash.len() as u64),
            offset: 0,
        };
        let layout = FecLayout::new(&built.geometry, params).unwrap();
        let parity = fec::encode(&layout, &data, &built.hash, 2).unwrap();
        Fixture {
            rounds: layout.rounds,
            data,
            built,
            params,
            parity,
        }
    }

    type Device = VerifiedDevice<Vec<u8>, Vec<u8>>;

    impl Fixture {
        fn device(&self, data: Vec<u8>, hash: Vec<u8>) -> Device {
            VerifiedDevice::new(
                data,
                hash,
                self.built.geometry.clone(),
                &self.built.root,
                Options::default(),
            )
            .unwrap()
            .with_fec(self.params, Box::new(self.parity.clone()))
            .unwrap()
        }

        fn damaged(&self, blocks: &[u64]) -> Vec<u8> {
            let mut data = self.data.clone();
            for &b in blocks {
                let at = b as usize * 4096;
                data[at..at + 4096].copy_from_slice(&bytes(4096, 99 + b));
            }
            data
        }
    }

    fn read_all(device: &Device) -> Result<Vec<u8>, VerityError> {
        let mut out = vec![0u8; device.len() as usize];
        device.read_verified(0, &mut out)?;
        Ok(out)
    }

    #[test]
    fn damaged_data_is_served_corrected_and_counted() {
        let f = fixture(600, 8);
        // Four whole blocks of one round (the most 8 roots correct without erasures) and a run of blocks.
        let mut blocks: Vec<u64> = (0..4).map(|i| 3 + i * f.rounds).collect();
        blocks.extend(301..304);
        let device = f.device(f.damaged(&blocks), f.built.hash.clone());
        assert!(read_all(&device).unwrap() == f.data);
        let status = device.status();
        assert_eq!(status.fec_corrected, blocks.len() as u64);
        assert_eq!(status.fec_uncorrectable, 0);
        assert_eq!(
            status.corruptions, 0,
            "a corrected block is not a corruption, as in the kernel"
        );
        let mut one = vec![0u8; 4096];
        device.read_block(3, &mut one).unwrap();
        assert!(one == f.data[3 * 4096..4 * 4096]);
    }

    #[test]
    fn damaged_hash_blocks_are_corrected_before_they_are_trusted() {
        let f = fixture(600, 2);
        let mut hash = f.built.hash.clone();
        // The top block and a leaf of another round (no superblock: the tree starts at block 0; covered
        // blocks 600 and 602 of 3 rounds).
        assert_eq!(f.rounds, 3);
        for b in [0usize, 2] {
            hash[b * 4096..(b + 1) * 4096].fill(0xEE);
        }
        let device = f.device(f.data.clone(), hash);
        assert!(read_all(&device).unwrap() == f.data);
        assert_eq!(device.status().fec_corrected, 2);
    }

    #[test]
    fn erasures_located_by_the_tree_double_what_roots_correct_as_the_kernel_does() {
        // Two blocks of one round with 2 roots: beyond error correction (one per codeword), within erasure
        // correction once the tree names both blocks as wrong.
        let f = fixture(600, 2);
        let device = f.device(f.damaged(&[10, 10 + f.rounds]), f.built.hash.clone());
        assert!(read_all(&device).unwrap() == f.data);
        assert_eq!(device.status().fec_corrected, 2);
    }

    #[test]
    fn damage_beyond_the_parity_is_refused_as_corruption() {
        let f = fixture(600, 2);
        let device = f.device(f.damaged(&[10, 10 + f.rounds, 10 + 2 * f.rounds]), f.built.hash.clone());
        let err = read_all(&device).unwrap_err();
        assert!(
            matches!(
                err,
                VerityError::HashMismatch {
                    block: BlockRef::Data { block: 10 },
                    ..
                }
            ),
            "{err}"
        );
        let status = device.status();
        assert_eq!(status.fec_uncorrectable, 1);
        assert_eq!(status.corruptions, 1);
    }

    #[test]
    fn a_short_parity_device_or_bad_roots_are_refused_at_setup() {
        let f = fixture(20, 2);
        let device = || {
            VerifiedDevice::new(
                f.data.clone(),
                f.built.hash.clone(),
                f.built.geometry.clone(),
                &f.built.root,
                Options::default(),
            )
            .unwrap()
        };
        let short = f.parity[..f.parity.len() - 1].to_vec();
        let err = device().with_fec(f.params, Box::new(short)).err().unwrap();
        assert!(err.to_string().contains("too small"), "{err}");
        for roots in [0, 1, 25, 200] {
            let params = FecParams { roots, ..f.params };
            let err = device().with_fec(params, Box::new(f.parity.clone())).err().unwrap();
            assert!(err.to_string().contains("outside 2..=24"), "{err}");
        }
        let params = FecParams {
            blocks: f.params.blocks + 1000,
            ..f.params
        };
        assert!(device().with_fec(params, Box::new(f.parity.clone())).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Random byte damage over random blocks: whatever the parity can or cannot do, every read returns
        /// either exactly the original bytes or an error; never other bytes.
        #[test]
        fn reads_are_original_bytes_or_refused(
            roots in prop::sample::select(vec![2u32, 4, 8, 24]),
            damage in prop::collection::vec((0u64..300, 0usize..4096, 1u8..=255), 1..40),
        ) {
            let f = fixture(300, roots);
            let mut data = f.data.clone();
            for &(block, at, x) in &damage {
                data[block as usize * 4096 + at] ^= x;
            }
            let device = f.device(data, f.built.hash.clone());
            for block in 0..300u64 {
                let mut out = vec![0u8; 4096];
                if device.read_block(block, &mut out).is_ok() {
                    prop_assert!(out == f.data[block as usize * 4096..(block as usize + 1) * 4096]);
                }
            }
        }

        /// Damage within the parity's capacity (at most roots/2 blocks per round) always reads back whole.
        #[test]
        fn damage_within_capacity_always_repairs(
            roots in prop::sample::select(vec![2u32, 8, 24]),
            seed in any::<u64>(),
        ) {
            let f = fixture(300, roots);
            let per_round = u64::from(roots / 2);
            let mut blocks = Vec::new();
            for n in 0..f.rounds {
                for k in 0..per_round {
                    let b = n + ((seed >> (k % 60)) % 40 + k * 41) % (300 / f.rounds) * f.rounds;
                    if b < 300 && !blocks.contains(&b) {
                        blocks.push(b);
                    }
                }
            }
            let device = f.device(f.damaged(&blocks), f.built.hash.clone());
            prop_assert!(read_all(&device).unwrap() == f.data);
            prop_assert_eq!(device.status().fec_corrected, blocks.len() as u64);
        }
    }
}

#[test]
fn data_blocks_short_of_a_larger_data_file_give_veritysetups_tree_and_parity() {
    let veritysetup = testkit::require_tool!("veritysetup");
    let mut outputs = Vec::new();
    for checker in [None, Some(veritysetup.as_path())] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data"), bytes(100 * 4096 + 5, 41)).unwrap();
        let args = [
            "format",
            "--salt",
            SALT,
            "--uuid",
            UUID,
            "--data-blocks",
            "60",
            "--fec-device",
            "fec",
            "--fec-roots",
            "8",
            "data",
            "hash",
        ];
        let out = match checker {
            Some(v) => ok(tool(v, dir.path(), &args), "veritysetup format"),
            None => ok(verity_fuse(dir.path(), &args), "verity-fuse format"),
        };
        assert_eq!(field(&out, "Data blocks"), "60");
        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        outputs.push((field(&out, "Root hash"), read("hash"), read("fec")));
    }
    assert!(outputs[0] == outputs[1], "tree or parity differs with --data-blocks");
}

#[test]
fn a_tree_past_4_gib_in_a_sparse_data_file_matches_veritysetups() {
    let veritysetup = testkit::require_tool!("veritysetup");
    const OFFSET: u64 = (9 << 29) + 4096; // 4.5 GiB and a block: past every 32-bit offset
    let mut outputs = Vec::new();
    for checker in [None, Some(veritysetup.as_path())] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        std::fs::write(&path, bytes(64 * 4096, 43)).unwrap();
        let offset = OFFSET.to_string();
        let args = [
            "format",
            "--salt",
            SALT,
            "--uuid",
            UUID,
            "--data-blocks",
            "64",
            "--hash-offset",
            &offset,
            "data",
            "data",
        ];
        let out = match checker {
            Some(v) => ok(tool(v, dir.path(), &args), "veritysetup format"),
            None => ok(verity_fuse(dir.path(), &args), "verity-fuse format"),
        };
        let root = field(&out, "Root hash");
        let file = std::fs::File::open(&path).unwrap();
        let len = file.metadata().unwrap().len();
        let mut tail = vec![0u8; (len - OFFSET) as usize];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut tail, OFFSET).unwrap();
        // The other tool verifies what this one wrote.
        let verify = ["verify", "--hash-offset", &offset, "data", "data", &root];
        match checker {
            Some(_) => ok(verity_fuse(dir.path(), &verify), "verity-fuse verify"),
            None => ok(tool(&veritysetup, dir.path(), &verify), "veritysetup verify"),
        };
        outputs.push((root, len, tail));
    }
    assert!(outputs[0] == outputs[1], "tree past 4 GiB differs");
}
