//! The kernel's error modes and options (REFERENCE.md section 1), each shown on a verified device.

use std::io;

use attacks::tamper::Patched;
use verity_fuse::device::{CorruptionMode, Event, IoErrorMode, Options, State};
use verity_fuse::error::HaltAction;
use verity_fuse::params::VerityParams;
use verity_fuse::{BlockRef, ReadAt, VerifiedDevice, VerityError};

use crate::support::{Built, build, bytes};

const BLOCKS: u64 = 300;

fn image() -> (Vec<u8>, Built) {
    let mut data = bytes(BLOCKS as usize * 4096, 3);
    data[5 * 4096..6 * 4096].fill(0);
    let b = build(&data, VerityParams::new(BLOCKS, vec![0xaa; 32]));
    (data, b)
}

fn device<'a>(
    data: &'a Patched<&'a Vec<u8>>,
    b: &'a Built,
    options: Options,
) -> VerifiedDevice<&'a Patched<&'a Vec<u8>>, &'a Vec<u8>> {
    VerifiedDevice::new(data, &b.hash, b.geometry.clone(), &b.root, options).unwrap()
}

fn read(dev: &impl ReadAt, block: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    dev.read_at(block * 4096, &mut buf).map(|()| buf)
}

fn verity_error(e: io::Error) -> VerityError {
    *e.into_inner().unwrap().downcast::<VerityError>().unwrap()
}

#[test]
fn default_mode_fails_the_read_with_eio_and_turns_status_to_corrupted() {
    let (data, b) = image();
    let tampered = Patched::new(&data);
    tampered.flip_byte(7 * 4096 + 1).unwrap();
    let dev = device(&tampered, &b, Options::default());
    assert_eq!(dev.status().state, State::Verified);
    let e = verity_error(read(&dev, 7).unwrap_err());
    assert_eq!(e.errno(), 5, "EIO");
    assert!(matches!(
        e,
        VerityError::HashMismatch {
            block: BlockRef::Data { block: 7 },
            ..
        }
    ));
    assert_eq!(read(&dev, 8).unwrap(), data[8 * 4096..9 * 4096]);
    let s = dev.status();
    assert_eq!((s.state, s.state.letter(), s.corruptions), (State::Corrupted, 'C', 1));
    assert_eq!(s.first_corrupted, Some(BlockRef::Data { block: 7 }));
    assert_eq!(s.blocks_verified, 1);
}

#[test]
fn ignore_corruption_logs_and_returns_the_data() {
    let (data, b) = image();
    let tampered = Patched::new(&data);
    tampered.flip_byte(7 * 4096).unwrap();
    let options = Options {
        on_corruption: CorruptionMode::Ignore,
        ..Options::default()
    };
    let dev = device(&tampered, &b, options);
    let got = read(&dev, 7).unwrap();
    assert_eq!(got[0], !data[7 * 4096]);
    assert_eq!(dev.status().state, State::Corrupted);
    assert_eq!(
        dev.take_events(),
        vec![Event::Corruption {
            block: BlockRef::Data { block: 7 },
            returned_data: true
        }]
    );
}

#[test]
fn restart_and_panic_on_corruption_halt_the_emulated_machine() {
    for (mode, action) in [
        (CorruptionMode::Restart, HaltAction::Restart),
        (CorruptionMode::Panic, HaltAction::Panic),
    ] {
        let (data, b) = image();
        let tampered = Patched::new(&data);
        tampered.flip_byte(7 * 4096).unwrap();
        let dev = device(
            &tampered,
            &b,
            Options {
                on_corruption: mode,
                ..Options::default()
            },
        );
        assert!(read(&dev, 6).is_ok());
        let cause = BlockRef::Data { block: 7 };
        assert!(
            matches!(verity_error(read(&dev, 7).unwrap_err()), VerityError::Halted { action: a, cause: c } if a == action && c == cause)
        );
        // After the restart or panic nothing is served, not even good blocks.
        assert!(matches!(
            verity_error(read(&dev, 6).unwrap_err()),
            VerityError::Halted { .. }
        ));
        assert_eq!(dev.status().halted, Some(action));
        assert!(dev.take_events().contains(&Event::Halt { action, cause }));
    }
}

/// A source whose reads past `fail_from` fail, like a dying disk.
struct FailingFrom<'a>(&'a Vec<u8>, u64);

impl ReadAt for FailingFrom<'_> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset + buf.len() as u64 > self.1 {
            return Err(io::Error::other("medium error"));
        }
        self.0.as_slice().read_at(offset, buf)
    }
}

#[test]
fn io_errors_fail_with_eio_or_halt_under_restart_and_panic_on_error() {
    let (data, b) = image();
    let dying = FailingFrom(&data, 10 * 4096);
    let dev = VerifiedDevice::new(&dying, &b.hash, b.geometry.clone(), &b.root, Options::default()).unwrap();
    let mut buf = vec![0u8; 4096];
    assert!(matches!(dev.read_block(10, &mut buf), Err(VerityError::Io { .. })));
    assert!(dev.read_block(9, &mut buf).is_ok());
    assert_eq!(dev.status().io_errors, 1);
    assert_eq!(dev.status().state, State::Verified, "an I/O error is not a corruption");
    for (mode, action) in [
        (IoErrorMode::Restart, HaltAction::Restart),
        (IoErrorMode::Panic, HaltAction::Panic),
    ] {
        let options = Options {
            on_io_error: mode,
            ..Options::default()
        };
        let dev = VerifiedDevice::new(&dying, &b.hash, b.geometry.clone(), &b.root, options).unwrap();
        assert!(matches!(dev.read_block(10, &mut buf), Err(VerityError::Halted { action: a, .. }) if a == action));
        assert!(dev.read_block(9, &mut buf).is_err());
    }
}

#[test]
fn ignore_zero_blocks_returns_zeroes_for_zero_blocks_without_reading_them() {
    let (data, b) = image();
    let tampered = Patched::new(&data);
    // Block 5 is a zero block in the tree; whatever the disk now holds is not read.
    tampered.patch(5 * 4096, b"not zero any more");
    let dev = device(
        &tampered,
        &b,
        Options {
            ignore_zero_blocks: true,
            ..Options::default()
        },
    );
    assert_eq!(read(&dev, 5).unwrap(), vec![0u8; 4096]);
    assert_eq!(dev.status().zero_blocks, 1);
    assert_eq!(dev.status().state, State::Verified);
    let strict = device(&tampered, &b, Options::default());
    assert!(read(&strict, 5).is_err(), "without the option the change is caught");
}

#[test]
fn check_at_most_once_misses_tampering_after_the_first_read() {
    let (data, b) = image();
    let tampered = Patched::new(&data);
    let dev = device(
        &tampered,
        &b,
        Options {
            check_at_most_once: true,
            ..Options::default()
        },
    );
    assert!(read(&dev, 3).is_ok());
    tampered.flip_byte(3 * 4096).unwrap();
    tampered.flip_byte(4 * 4096).unwrap();
    assert_eq!(
        read(&dev, 3).unwrap()[0],
        !data[3 * 4096],
        "tampered data served unchecked"
    );
    assert_eq!(dev.status().unchecked_reads, 1);
    assert!(read(&dev, 4).is_err(), "a block never read before is still checked");
}

#[test]
fn a_wrong_root_hash_opens_but_every_read_fails() {
    let (data, b) = image();
    let mut root = b.root.clone();
    root[0] ^= 1;
    let clean = Patched::new(&data);
    let dev = VerifiedDevice::new(&clean, &b.hash, b.geometry.clone(), &root, Options::default()).unwrap();
    let top = b.geometry.levels.last().unwrap().first_block;
    assert!(matches!(
        verity_error(read(&dev, 0).unwrap_err()),
        VerityError::HashMismatch { block: BlockRef::Hash { block, .. }, .. } if block == top
    ));
    assert_eq!(dev.status().state, State::Corrupted);
}

#[test]
fn the_unverified_tail_past_data_blocks_is_not_reachable() {
    let (mut data, _) = image();
    data.extend_from_slice(b"appended after format");
    let b = build(&data, VerityParams::new(BLOCKS, vec![]));
    let clean = Patched::new(&data);
    let dev = device(&clean, &b, Options::default());
    assert_eq!(dev.len(), BLOCKS * 4096);
    let mut buf = [0u8; 8];
    assert!(matches!(
        dev.read_verified(BLOCKS * 4096, &mut buf),
        Err(VerityError::OutOfRange { .. })
    ));
    assert!(dev.read_verified(BLOCKS * 4096 - 8, &mut buf).is_ok());
}

#[test]
fn unaligned_reads_span_blocks_and_the_hash_cache_stays_bounded() {
    let (data, b) = image();
    let clean = Patched::new(&data);
    let dev = device(
        &clean,
        &b,
        Options {
            cache_blocks: 2,
            ..Options::default()
        },
    );
    let mut buf = vec![0u8; 3 * 4096 + 100];
    dev.read_at(4096 * 100 - 50, &mut buf).unwrap();
    assert_eq!(buf, data[4096 * 100 - 50..4096 * 103 + 50]);
    let mut all = vec![0u8; data.len()];
    dev.read_at(0, &mut all).unwrap();
    assert_eq!(all, data);
    assert!(dev.cached_hash_blocks() <= 2);
    assert_eq!(dev.status().blocks_verified, 5 + BLOCKS);
}

#[test]
fn a_hash_block_cached_before_tampering_keeps_serving_its_verified_copy() {
    let (data, b) = image();
    let hash = Patched::new(&b.hash);
    let clean = Patched::new(&data);
    let dev = VerifiedDevice::new(&clean, &hash, b.geometry.clone(), &b.root, Options::default()).unwrap();
    assert!(read(&dev, 0).is_ok());
    let leaf = b.geometry.levels[0].first_block;
    hash.flip_byte(leaf * 4096 + 40).unwrap();
    assert!(read(&dev, 1).is_ok(), "verified copy in the cache, as with dm-bufio");
    dev.drop_caches();
    assert!(read(&dev, 1).is_err(), "re-read from disk after the cache is dropped");
}

#[test]
fn large_reads_hashed_in_two_halves_fail_as_a_whole_naming_the_first_bad_block() {
    let (data, b) = image();
    let span = 0..200 * 4096;
    let clean = VerifiedDevice::new(&data, &b.hash, b.geometry.clone(), &b.root, Options::default()).unwrap();
    let mut buf = vec![0u8; span.len()];
    clean.read_verified(0, &mut buf).unwrap();
    assert!(buf == data[span.clone()]);
    assert_eq!(clean.status().blocks_verified, 200);
    for flipped in [vec![20], vec![150], vec![199], vec![150, 20]] {
        let tampered = Patched::new(&data);
        for block in &flipped {
            tampered.flip_byte(block * 4096 + 7).unwrap();
        }
        let dev = device(&tampered, &b, Options::default());
        let first = *flipped.iter().min().unwrap();
        match dev.read_verified(0, &mut buf) {
            Err(VerityError::HashMismatch { block, .. }) => assert_eq!(block, BlockRef::Data { block: first }),
            other => panic!("blocks {flipped:?} flipped: expected a mismatch, got {other:?}"),
        }
        assert!(dev.read_verified(0, &mut buf[..first as usize * 4096]).is_ok());
    }
    // A read error in the second half fails the read once, naming the first block of that half.
    let dying = FailingFrom(&data, 150 * 4096);
    let dev = VerifiedDevice::new(&dying, &b.hash, b.geometry.clone(), &b.root, Options::default()).unwrap();
    match dev.read_verified(0, &mut buf) {
        Err(VerityError::Io { offset, .. }) => assert_eq!(offset, 100 * 4096),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert_eq!(dev.status().io_errors, 1);
    assert!(dev.read_verified(0, &mut buf[..150 * 4096]).is_ok());
}
