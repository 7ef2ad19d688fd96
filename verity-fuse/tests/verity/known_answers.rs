//! The known-answer root hashes of cryptsetup's `tests/verity-compat-test` (REFERENCE.md section 1).

use verity_fuse::hex;
use verity_fuse::params::{Geometry, HashType, Placement, VerityParams};
use verity_fuse::{Algorithm, tree};

const SALT: &str = "e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d";

fn root(block_size: u32, algorithm: Algorithm, hash_type: HashType, salt: &str) -> String {
    let data = vec![0u8; 8 << 20];
    let params = VerityParams {
        hash_type,
        algorithm,
        data_block_size: block_size,
        hash_block_size: block_size,
        data_blocks: (8 << 20) / u64::from(block_size),
        salt: hex::decode("salt", salt).unwrap(),
    };
    let geometry = Geometry::new(params, Placement::with_superblock(0)).unwrap();
    tree::build(&data, &geometry, 2, &|_| {}).unwrap().root.to_hex()
}

#[test]
fn sha256_512_byte_blocks_type_1() {
    assert_eq!(
        root(512, Algorithm::Sha256, HashType::Normal, SALT),
        "9de18652fe74edfb9b805aaed72ae2aa48f94333f1ba5c452ac33b1c39325174"
    );
}

#[test]
fn sha256_4096_byte_blocks_type_1() {
    assert_eq!(
        root(4096, Algorithm::Sha256, HashType::Normal, SALT),
        "e522df0f97da4febb882ac40f30b37dc0b444bf6df418929463fa25280f09d5c"
    );
}

#[test]
fn sha256_4096_byte_blocks_type_0() {
    assert_eq!(
        root(4096, Algorithm::Sha256, HashType::ChromeOs, SALT),
        "cbbf4ebd004ef65e29b935bb635a39cf754d677f3fa10b0126da725bbdf10f7d"
    );
}

#[test]
fn sha256_4096_byte_blocks_type_1_without_salt() {
    assert_eq!(
        root(4096, Algorithm::Sha256, HashType::Normal, ""),
        "ef29c902d87350f1da4bfa536e16cebc162a909bf89abe448b81ec500d4fb9bf"
    );
}

#[test]
fn sha1_1024_byte_blocks_type_1() {
    assert_eq!(
        root(1024, Algorithm::Sha1, HashType::Normal, SALT),
        "d0e9163ca8844aaa2e88fe5265a8c5d9ee494a99"
    );
}

#[test]
fn sha1_1024_byte_blocks_type_1_short_salt() {
    assert_eq!(
        root(1024, Algorithm::Sha1, HashType::Normal, "dadada"),
        "73509e8e868be6b8ac939817a98a3d35121413b2"
    );
}
