//! One flipped byte anywhere in the data or the tree is caught on read and by `check`, names the right
//! block, and leaves every unaffected block readable. Exhaustive on small images, random in a property test.

use attacks::tamper::Patched;
use proptest::prelude::*;
use verity_fuse::device::Options;
use verity_fuse::params::{HashType, VerityParams};
use verity_fuse::{Algorithm, BlockRef, Digest, VerifiedDevice, VerityError, tree};

use crate::support::{Built, build, bytes};

/// The data blocks whose verification depends on the hash block at absolute number `hash_block`.
fn data_blocks_under(b: &Built, hash_block: u64) -> std::ops::Range<u64> {
    let g = &b.geometry;
    let level = g
        .levels
        .iter()
        .position(|l| (l.first_block..l.first_block + l.blocks).contains(&hash_block))
        .unwrap();
    let index = hash_block - g.levels[level].first_block;
    let span = 1u64 << (g.hashes_per_block_bits as u64 * (level as u64 + 1));
    index * span..((index + 1) * span).min(g.params.data_blocks)
}

/// Reads every data block through a fresh device and returns the blocks that failed, with their error.
fn failing_reads(data: &Patched<&Vec<u8>>, hash: &Patched<&Vec<u8>>, b: &Built) -> Vec<(u64, VerityError)> {
    let device = VerifiedDevice::new(data, hash, b.geometry.clone(), &b.root, Options::default()).unwrap();
    let mut block = vec![0u8; b.geometry.data_block_size()];
    (0..b.geometry.params.data_blocks)
        .filter_map(|i| device.read_block(i, &mut block).err().map(|e| (i, e)))
        .collect()
}

fn named(e: &VerityError) -> BlockRef {
    match e {
        VerityError::HashMismatch { block, .. } => *block,
        other => panic!("expected a hash mismatch, got {other}"),
    }
}

fn check_flip_in_data(data: &Vec<u8>, b: &Built, offset: u64) {
    let block = offset / b.geometry.data_block_size() as u64;
    let tampered = Patched::new(data);
    tampered.flip_byte(offset).unwrap();
    let hash = Patched::new(&b.hash);
    let failed = failing_reads(&tampered, &hash, b);
    assert_eq!(failed.len(), 1, "flip at {offset}");
    assert_eq!(failed[0].0, block);
    assert_eq!(named(&failed[0].1), BlockRef::Data { block });
    let root = Digest::from_slice(&b.root).unwrap();
    let err = tree::check(&tampered, &hash, &b.geometry, &root, 2).unwrap_err();
    assert_eq!(named(&err), BlockRef::Data { block });
}

fn check_flip_in_tree(data: &Vec<u8>, b: &Built, offset: u64) {
    let hbs = b.geometry.hash_block_size() as u64;
    let hash_block = offset / hbs;
    let tampered = Patched::new(&b.hash);
    tampered.flip_byte(offset).unwrap();
    let clean = Patched::new(data);
    let failed = failing_reads(&clean, &tampered, b);
    let expected: Vec<u64> = data_blocks_under(b, hash_block).collect();
    let got: Vec<u64> = failed.iter().map(|(i, _)| *i).collect();
    assert_eq!(got, expected, "flip at hash offset {offset}");
    let level = b
        .geometry
        .levels
        .iter()
        .position(|l| l.first_block <= hash_block && hash_block < l.first_block + l.blocks)
        .unwrap();
    for (_, e) in &failed {
        assert_eq!(
            named(e),
            BlockRef::Hash {
                level,
                block: hash_block
            }
        );
    }
    let root = Digest::from_slice(&b.root).unwrap();
    let err = tree::check(&clean, &tampered, &b.geometry, &root, 2).unwrap_err();
    assert_eq!(
        named(&err),
        BlockRef::Hash {
            level,
            block: hash_block
        }
    );
}

fn small_params() -> Vec<VerityParams> {
    let mut a = VerityParams::new(40, vec![1, 2, 3]);
    a.data_block_size = 512;
    a.hash_block_size = 512;
    let mut b = a.clone();
    b.hash_type = HashType::ChromeOs;
    b.algorithm = Algorithm::Sha1;
    b.data_blocks = 70;
    let mut c = VerityParams::new(5, vec![]);
    c.algorithm = Algorithm::Sha512;
    vec![a, b, c]
}

#[test]
fn every_data_block_flipped_in_turn_fails_alone_and_names_itself() {
    for params in small_params() {
        let data = bytes(params.data_blocks as usize * params.data_block_size as usize, 7);
        let b = build(&data, params.clone());
        let dbs = params.data_block_size as u64;
        for block in 0..params.data_blocks {
            check_flip_in_data(&data, &b, block * dbs + (block * 37) % dbs);
        }
    }
}

#[test]
fn every_hash_block_flipped_in_turn_fails_the_blocks_beneath_it() {
    for params in small_params() {
        let data = bytes(params.data_blocks as usize * params.data_block_size as usize, 9);
        let b = build(&data, params.clone());
        let hbs = params.hash_block_size as u64;
        for hash_block in 0..b.geometry.tree_blocks() {
            // Once at a digest, once in the block's unused tail (it is hashed too).
            check_flip_in_tree(&data, &b, hash_block * hbs + (hash_block * 13) % 16);
            check_flip_in_tree(&data, &b, hash_block * hbs + hbs - 1);
        }
    }
}

fn arb_params() -> impl Strategy<Value = VerityParams> {
    (
        prop::sample::select(vec![512u32, 1024, 4096]),
        prop::sample::select(vec![512u32, 1024, 4096]),
        prop::sample::select(Algorithm::ALL.to_vec()),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..40),
        1u64..200,
    )
        .prop_map(|(dbs, hbs, algorithm, type1, salt, blocks)| VerityParams {
            hash_type: if type1 { HashType::Normal } else { HashType::ChromeOs },
            algorithm,
            data_block_size: dbs,
            hash_block_size: hbs,
            data_blocks: blocks,
            salt,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_images_read_clean_and_any_flip_is_caught(params in arb_params(), seed in any::<u64>(), pos in any::<u64>(), in_tree in any::<bool>()) {
        let data = bytes(params.data_blocks as usize * params.data_block_size as usize, seed);
        let b = build(&data, params);
        let clean_data = Patched::new(&data);
        let clean_hash = Patched::new(&b.hash);
        prop_assert!(failing_reads(&clean_data, &clean_hash, &b).is_empty(), "false positive");
        let root = Digest::from_slice(&b.root).unwrap();
        prop_assert!(tree::check(&clean_data, &clean_hash, &b.geometry, &root, 2).is_ok());
        if in_tree && !b.hash.is_empty() {
            check_flip_in_tree(&data, &b, pos % b.hash.len() as u64);
        } else {
            check_flip_in_data(&data, &b, pos % data.len() as u64);
        }
    }
}
