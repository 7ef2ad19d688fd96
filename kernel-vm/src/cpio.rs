//! The `newc` cpio format the kernel unpacks as an initramfs, written from entries in memory.
//!
//! Each entry is a 110-byte ASCII header, the NUL-terminated path, padding to a 4-byte boundary, the body
//! (file bytes or symlink target) and padding again; a `TRAILER!!!` entry ends the archive:
//!
//! ```text
//! "070701" ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
//!  6 bytes  13 fields of 8 upper-case hex digits each
//! ```
//!
//! Owners are root, times are zero, so the same entries always give the same bytes.

/// What an archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A directory.
    Dir,
    /// A regular file with these contents.
    File(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(String),
    /// A character device node with this major and minor number.
    CharDevice(u32, u32),
}

/// One archive entry: a path without leading `/`, permission bits and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Path inside the archive, relative (`bin/busybox`).
    pub path: String,
    /// Permission bits (`0o755`); the file type bits come from `kind`.
    pub perm: u32,
    /// The entry's type and body.
    pub kind: Kind,
}

const MAGIC: &[u8; 6] = b"070701";
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Serialises `entries` in order, followed by the trailer. Parents must come before their children.
pub(crate) fn write(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let (type_bits, body, nlink, rdev): (u32, &[u8], u32, (u32, u32)) = match &entry.kind {
            Kind::Dir => (S_IFDIR, &[], 2, (0, 0)),
            Kind::File(bytes) => (S_IFREG, bytes, 1, (0, 0)),
            Kind::Symlink(target) => (S_IFLNK, target.as_bytes(), 1, (0, 0)),
            Kind::CharDevice(major, minor) => (S_IFCHR, &[], 1, (*major, *minor)),
        };
        let ino = u32::try_from(index + 1).unwrap_or(u32::MAX);
        push_entry(
            &mut out,
            ino,
            type_bits | (entry.perm & 0o7777),
            nlink,
            rdev,
            &entry.path,
            body,
        );
    }
    push_entry(&mut out, 0, 0, 1, (0, 0), "TRAILER!!!", &[]);
    out
}

fn push_entry(out: &mut Vec<u8>, ino: u32, mode: u32, nlink: u32, rdev: (u32, u32), name: &str, body: &[u8]) {
    let size = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let namesize = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
    let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0];
    out.extend_from_slice(MAGIC);
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(body);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER_LEN: usize = 110;

    fn field(header: &[u8], index: usize) -> u32 {
        let start = 6 + 8 * index;
        u32::from_str_radix(std::str::from_utf8(&header[start..start + 8]).unwrap(), 16).unwrap()
    }

    #[test]
    fn file_entry_layout() {
        let archive = write(&[Entry {
            path: "init".into(),
            perm: 0o755,
            kind: Kind::File(b"#!/bin/sh\n".to_vec()),
        }]);
        assert_eq!(&archive[..6], MAGIC);
        assert_eq!(field(&archive, 1), S_IFREG | 0o755);
        assert_eq!(field(&archive, 6), 10);
        assert_eq!(field(&archive, 11), 5);
        // Header (110) + "init\0" (5) = 115, padded to 116; body 10 padded to 12.
        assert_eq!(&archive[HEADER_LEN..HEADER_LEN + 5], b"init\0");
        assert_eq!(&archive[116..126], b"#!/bin/sh\n");
        assert_eq!(&archive[128..134], MAGIC);
        assert_eq!(archive.len() % 4, 0);
        let trailer = &archive[128..];
        assert_eq!(&trailer[HEADER_LEN..HEADER_LEN + 10], b"TRAILER!!!");
    }

    #[test]
    fn device_and_symlink_entries() {
        let archive = write(&[
            Entry {
                path: "dev/console".into(),
                perm: 0o600,
                kind: Kind::CharDevice(5, 1),
            },
            Entry {
                path: "bin/sh".into(),
                perm: 0o777,
                kind: Kind::Symlink("busybox".into()),
            },
        ]);
        assert_eq!(field(&archive, 1), S_IFCHR | 0o600);
        assert_eq!((field(&archive, 9), field(&archive, 10)), (5, 1));
        let second = (HEADER_LEN + "dev/console\0".len()).next_multiple_of(4);
        assert_eq!(field(&archive[second..], 1), S_IFLNK | 0o777);
        assert_eq!(field(&archive[second..], 6), 7);
    }

    #[test]
    fn same_entries_same_bytes() {
        let entries = [Entry {
            path: "data".into(),
            perm: 0o644,
            kind: Kind::File(vec![7; 1000]),
        }];
        assert_eq!(write(&entries), write(&entries));
    }
}
