//! Tar semantics and bad input: escaping paths are normalised under the root; a hard link to an unseen path,
//! a truncated tar, a bad gzip checksum, an over-long name, a file used as a directory: a clear error naming
//! the entry, and no output left behind.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::support::open_image;
use veritylab::erofs::{self, FileKind, Options, OverlayNamespace, Whiteouts, WriteError};

/// A tar entry with a raw (unvalidated) name.
fn raw_entry(builder: &mut tar::Builder<Vec<u8>>, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    h.set_size(data.len() as u64);
    h.set_cksum();
    builder.append(&h, data).unwrap();
}

fn gnu_header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h
}

fn file(builder: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    raw_entry(builder, name.as_bytes(), tar::EntryType::Regular, b"", data);
}

/// Converts `archive` in a fresh directory; returns the result and the names left in that directory.
fn convert(
    archive: &[u8],
    whiteouts: Whiteouts,
) -> (Result<erofs::Summary, WriteError>, Vec<String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.erofs");
    let result = erofs::build_from_tar(&out, archive, Options::default(), whiteouts);
    let left = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    (result, left, dir)
}

#[track_caller]
fn assert_fails_cleanly(archive: &[u8], check: impl Fn(&WriteError) -> bool) {
    let (result, left, _dir) = convert(archive, Whiteouts::Keep);
    let err = result.expect_err("conversion must fail");
    assert!(check(&err), "unexpected error: {err}");
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn escaping_paths_are_normalised_under_the_root() {
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "../../etc/evil", b"1");
    file(&mut b, "/abs/file", b"2");
    file(&mut b, "a/../../../b", b"3");
    raw_entry(&mut b, b"link", tar::EntryType::Link, b"../../etc/evil", b"");
    let (result, _, dir) = convert(&b.into_inner().unwrap(), Whiteouts::Keep);
    result.unwrap();
    let image = open_image(&dir.path().join("out.erofs"));
    for (path, want) in [("/etc/evil", "1"), ("/abs/file", "2"), ("/b", "3"), ("/link", "1")] {
        let inode = image.lookup(path.as_bytes()).unwrap();
        assert_eq!(image.read_to_vec(&inode, 10).unwrap(), want.as_bytes(), "{path}");
    }
    assert_eq!(image.lookup(b"/etc/evil").unwrap().disk.nlink, 2);
}

#[test]
fn hard_link_to_an_unseen_path_fails_naming_the_entry() {
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "a", b"x");
    raw_entry(&mut b, b"b", tar::EntryType::Link, b"not-yet", b"");
    file(&mut b, "not-yet", b"y");
    assert_fails_cleanly(
        &b.into_inner().unwrap(),
        |e| matches!(e, WriteError::HardLinkTarget { entry, target } if entry == "b" && target == "/not-yet"),
    );
}

#[test]
fn hard_link_to_a_directory_fails() {
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, b"d/", tar::EntryType::Directory, b"", b"");
    raw_entry(&mut b, b"l", tar::EntryType::Link, b"d", b"");
    assert_fails_cleanly(&b.into_inner().unwrap(), |e| {
        matches!(e, WriteError::HardLinkToDirectory { .. })
    });
}

#[test]
fn truncated_tar_fails_and_leaves_nothing() {
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "first", b"ok");
    file(&mut b, "big", &vec![7u8; 100_000]);
    let whole = b.into_inner().unwrap();
    let cut = &whole[..512 * 3 + 50_000];
    assert_fails_cleanly(
        cut,
        |e| matches!(e, WriteError::Truncated { entry, .. } | WriteError::Archive { entry, .. } if entry == "big"),
    );
}

#[test]
fn gzip_with_a_bad_checksum_fails_and_leaves_nothing() {
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "f", &vec![1u8; 10_000]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    let mut bytes = gz.finish().unwrap();
    let crc_at = bytes.len() - 8;
    bytes[crc_at] ^= 0xFF;
    assert_fails_cleanly(
        &bytes,
        |e| matches!(e, WriteError::Archive { entry, .. } if entry.contains("end of archive")),
    );
}

#[test]
fn names_longer_than_255_bytes_fail_naming_the_entry() {
    let mut b = tar::Builder::new(Vec::new());
    let name = format!("dir/{}", "n".repeat(256));
    let mut h = gnu_header();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, &name, &b"x"[..]).unwrap();
    assert_fails_cleanly(
        &b.into_inner().unwrap(),
        |e| matches!(e, WriteError::NameTooLong { entry, len: 256 } if *entry == name),
    );
}

#[test]
fn a_file_used_as_a_directory_fails() {
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "f", b"x");
    file(&mut b, "f/g", b"y");
    assert_fails_cleanly(
        &b.into_inner().unwrap(),
        |e| matches!(e, WriteError::ParentNotDirectory { entry, parent } if entry == "f/g" && parent == "/f"),
    );
}

#[test]
fn tar_semantics_replacement_parents_long_names_pax_and_compression() {
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "x/y/replaced", b"old");
    file(&mut b, "x/y/replaced", b"new");
    raw_entry(&mut b, b"dir-then-file", tar::EntryType::Directory, b"", b"");
    file(&mut b, "dir-then-file/child", b"c");
    file(&mut b, "dir-then-file", b"now a file");
    let long = format!("deep/{}/{}", "a".repeat(200), "b".repeat(200));
    let mut h = gnu_header();
    h.set_size(4);
    h.set_mode(0o600);
    b.append_data(&mut h, &long, &b"long"[..]).unwrap();
    let mut h = gnu_header();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "longlink", "t".repeat(300)).unwrap();
    b.append_pax_extensions([
        ("mtime", &b"1700000000.123456789"[..]),
        ("uid", &b"3000000"[..]),
        ("gid", &b"4000000"[..]),
        ("SCHILY.xattr.user.schily", &b"raw\0value"[..]),
        ("LIBARCHIVE.xattr.user.lib%3Darchive", &b"aGVsbG8"[..]),
    ])
    .unwrap();
    file(&mut b, "pax", b"p");
    file(&mut b, ".wh.kept", b"");
    let plain = b.into_inner().unwrap();

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gzip = gz.finish().unwrap();
    let zstd = zstd::encode_all(&plain[..], 3).unwrap();

    let mut images = Vec::new();
    for archive in [&plain, &gzip, &zstd] {
        let (result, _, dir) = convert(archive, Whiteouts::Keep);
        result.unwrap();
        let bytes = fs::read(dir.path().join("out.erofs")).unwrap();
        images.push(bytes);
    }
    assert_eq!(images[0], images[1], "gzip input gives the same image");
    assert_eq!(images[0], images[2], "zstd input gives the same image");

    let image = erofs::Image::open(images.swap_remove(0)).unwrap();
    let read = |p: &str| {
        let inode = image.lookup(p.as_bytes()).unwrap();
        image.read_to_vec(&inode, 1 << 20).unwrap()
    };
    assert_eq!(read("/x/y/replaced"), b"new");
    assert_eq!(read("/dir-then-file"), b"now a file");
    assert_eq!(read(&format!("/{long}")), b"long");
    let link = image.lookup(b"/longlink").unwrap();
    assert_eq!(image.read_link(&link).unwrap(), "t".repeat(300).as_bytes());
    let pax = image.lookup(b"/pax").unwrap();
    assert_eq!((pax.disk.mtime, pax.disk.mtime_nsec), (1_700_000_000, 123_456_789));
    assert_eq!((pax.disk.uid, pax.disk.gid), (3_000_000, 4_000_000));
    assert_eq!(
        image.xattrs(&pax).unwrap(),
        [
            (b"user.lib=archive".to_vec(), b"hello".to_vec()),
            (b"user.schily".to_vec(), b"raw\0value".to_vec())
        ]
    );
    assert_eq!(image.lookup(b"/.wh.kept").unwrap().kind, FileKind::File);
    let parent = image.lookup(b"/x/y").unwrap();
    assert_eq!(parent.kind, FileKind::Directory);
    assert_eq!(parent.permissions(), 0o755);
}

#[test]
fn aufs_whiteouts_become_devices_and_opaque_xattrs() {
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "d/.wh..wh..opq", b"");
    file(&mut b, "d/.wh.gone", b"");
    file(&mut b, ".wh..wh.plnk", b"");
    let archive = b.into_inner().unwrap();
    for (ns, name) in [
        (OverlayNamespace::Trusted, &b"trusted.overlay.opaque"[..]),
        (OverlayNamespace::User, &b"user.overlay.opaque"[..]),
    ] {
        let (result, _, dir) = convert(&archive, Whiteouts::Aufs(ns));
        result.unwrap();
        let image = open_image(&dir.path().join("out.erofs"));
        let d = image.lookup(b"/d").unwrap();
        assert_eq!(image.xattrs(&d).unwrap(), [(name.to_vec(), b"y".to_vec())]);
        let gone = image.lookup(b"/d/gone").unwrap();
        assert_eq!((gone.kind, gone.device()), (FileKind::CharDevice, Some((0, 0))));
        let root = image.root().unwrap();
        let names: Vec<Vec<u8>> = image.read_dir(&root).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, [b".".to_vec(), b"..".to_vec(), b"d".to_vec()]);
    }
}

/// A whiteout must hide a real name: `.wh.` (nothing), `.wh..` and `.wh...` would become entries named ``, `.`
/// and `..`, which `fsck.erofs` rejects and the kernel cannot list. Each is refused naming the tar entry.
#[test]
fn whiteouts_of_empty_dot_and_dotdot_names_are_refused_naming_the_entry() {
    for (entry, hidden) in [("d/.wh.", ""), ("d/.wh..", "."), ("d/.wh...", ".."), (".wh..", ".")] {
        let mut b = tar::Builder::new(Vec::new());
        file(&mut b, "d/kept", b"x");
        raw_entry(&mut b, entry.as_bytes(), tar::EntryType::Regular, b"", b"");
        let archive = b.into_inner().unwrap();
        for ns in [OverlayNamespace::Trusted, OverlayNamespace::User] {
            let (result, left, _dir) = convert(&archive, Whiteouts::Aufs(ns));
            let err = result.expect_err(&format!("whiteout {entry:?} must be refused"));
            assert!(
                matches!(&err, WriteError::InvalidName { entry: e, name, .. } if e == entry && name == hidden),
                "{entry}: unexpected error: {err}"
            );
            assert!(err.to_string().contains(entry), "{err}");
            assert!(left.is_empty(), "left behind: {left:?}");
        }
    }
}

/// A name holding a NUL byte cannot be looked up through the kernel: refused, as in a whiteout.
#[test]
fn names_with_a_nul_byte_are_refused() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = gnu_header();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_pax_extensions([("path", &b"dir/a\0b"[..])]).unwrap();
    h.set_path("placeholder").unwrap();
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    assert_fails_cleanly(
        &b.into_inner().unwrap(),
        |e| matches!(e, WriteError::InvalidName { name, .. } if name == "a\u{0}b"),
    );
}

#[test]
fn output_in_a_missing_directory_is_a_create_error() {
    let err = erofs::build_from_tar(
        Path::new("/nonexistent-dir/x.erofs"),
        &[][..],
        Options::default(),
        Whiteouts::Keep,
    )
    .unwrap_err();
    assert!(matches!(err, WriteError::Create { .. }), "{err}");
}
