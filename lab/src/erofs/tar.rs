//! Tar ingestion: a tar stream (plain, gzip or zstd, told apart by its first bytes) fed entry by entry into a
//! [`Builder`], with the OCI layer semantics of `mkfs.erofs --tar --aufs`.
//!
//! - Paths are normalised under the root: leading `/`, `.` and empty components vanish and `..` never climbs
//!   above the root. GNU and PAX long names and link names come through the `tar` crate.
//! - PAX `mtime` (with its fraction), `uid` and `gid` override the header; `SCHILY.xattr.NAME` (raw value) and
//!   `LIBARCHIVE.xattr.NAME` (percent-encoded name, base64 value) become xattrs.
//! - With [`Whiteouts::Aufs`], `.wh.NAME` becomes a character device 0:0 called `NAME` and `.wh..wh..opq` marks
//!   its directory opaque (`trusted.overlay.opaque=y`, or `user.overlay.opaque=y` for userxattr overlays);
//!   other `.wh..wh.*` names (aufs bookkeeping) are dropped.
//! - The stream is read to its very end after the last entry, so a gzip or zstd trailer (and its checksum) is
//!   always checked.

use std::io::{self, BufReader, Read};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// libarchive writes xattr values in base64, with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

use super::writer::{Builder, EntryKind, FileTime, Metadata, Result, WriteError};

/// How whiteouts in the archive are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Whiteouts {
    /// Keep `.wh.*` files as they are.
    #[default]
    Keep,
    /// Convert them as `mkfs.erofs --aufs` does, for an overlayfs lower layer.
    Aufs(OverlayNamespace),
}

/// The xattr namespace overlayfs reads its markers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlayNamespace {
    /// `trusted.overlay.*` (a privileged overlay mount).
    #[default]
    Trusted,
    /// `user.overlay.*` (an overlay mounted with `userxattr`).
    User,
}

impl OverlayNamespace {
    /// Full name of the opaque-directory xattr.
    pub fn opaque_xattr(self) -> &'static [u8] {
        match self {
            Self::Trusted => b"trusted.overlay.opaque",
            Self::User => b"user.overlay.opaque",
        }
    }
}

/// Compression of a tar stream, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// An uncompressed tar.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes of a stream.
    pub(crate) fn detect(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else {
            Self::None
        }
    }
}

/// Normalises a tar path under the root: returns its components (empty for the root itself).
pub(crate) fn normalize(path: &[u8]) -> Vec<Vec<u8>> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            name => parts.push(name.to_vec()),
        }
    }
    parts
}

/// Reads a whole tar stream into `builder`.
pub(crate) fn ingest(builder: &mut Builder, input: impl Read, whiteouts: Whiteouts) -> Result<()> {
    let mut input = input;
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(WriteError::Archive {
                    entry: "start of archive".into(),
                    source,
                });
            }
        }
    }
    let stream = io::Cursor::new(head[..got].to_vec()).chain(input);
    let decoded: Box<dyn Read> = match Compression::detect(&head[..got]) {
        Compression::None => Box::new(stream),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(BufReader::new(stream))),
        Compression::Zstd => {
            Box::new(
                zstd::stream::read::Decoder::new(stream).map_err(|source| WriteError::Archive {
                    entry: "start of archive".into(),
                    source,
                })?,
            )
        }
    };
    let mut archive = tar::Archive::new(decoded);
    let mut last = String::from("start of archive");
    {
        // Raw mode: the `tar` crate splits PAX records at newlines, which corrupts binary xattr values, so
        // PAX and GNU long-name headers are parsed here instead.
        let entries = archive
            .entries()
            .map_err(|source| WriteError::Archive {
                entry: last.clone(),
                source,
            })?
            .raw(true);
        let mut pending = Extensions::default();
        for entry in entries {
            let mut entry = entry.map_err(|source| WriteError::Archive {
                entry: format!("entry after {last}"),
                source,
            })?;
            let kind = entry.header().entry_type();
            if kind.is_pax_local_extensions() {
                let data = read_extension(&mut entry, &last)?;
                pending.pax = parse_pax(&data).ok_or_else(|| WriteError::Pax {
                    entry: format!("extended header after {last}"),
                    key: "(record framing)".into(),
                })?;
                continue;
            }
            if kind.is_pax_global_extensions() {
                // Global defaults: none of the keys this writer reads may be global in practice.
                read_extension(&mut entry, &last)?;
                continue;
            }
            if kind.is_gnu_longname() || kind.is_gnu_longlink() {
                let mut data = read_extension(&mut entry, &last)?;
                let len = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                data.truncate(len);
                if kind.is_gnu_longname() {
                    pending.long_name = Some(data);
                } else {
                    pending.long_link = Some(data);
                }
                continue;
            }
            let ext = std::mem::take(&mut pending);
            let path = ext
                .pax_value(b"path")
                .map(<[u8]>::to_vec)
                .or(ext.long_name.clone())
                .unwrap_or_else(|| entry.header().path_bytes().into_owned());
            last = String::from_utf8_lossy(&path).into_owned();
            add_entry(builder, &mut entry, &path, &ext, &last, whiteouts)?;
        }
    }
    // Read to the end so decompressors check their trailers (a gzip CRC, a zstd checksum).
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|source| WriteError::Archive {
        entry: format!("end of archive after {last}"),
        source,
    })?;
    Ok(())
}

/// Largest PAX or GNU long-name header accepted.
const EXTENSION_MAX: u64 = 16 << 20;

/// Extension headers that apply to the next entry.
#[derive(Debug, Default)]
struct Extensions {
    pax: Vec<(Vec<u8>, Vec<u8>)>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl Extensions {
    fn pax_value(&self, key: &[u8]) -> Option<&[u8]> {
        self.pax.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
    }
}

fn read_extension<R: Read>(entry: &mut tar::Entry<'_, R>, last: &str) -> Result<Vec<u8>> {
    let size = entry.size();
    let at = || format!("extended header after {last}");
    if size > EXTENSION_MAX {
        return Err(WriteError::Pax {
            entry: at(),
            key: format!("(header of {size} bytes)"),
        });
    }
    let mut data = Vec::with_capacity(size as usize);
    entry
        .read_to_end(&mut data)
        .map_err(|source| WriteError::Archive { entry: at(), source })?;
    Ok(data)
}

/// Parses PAX records `LEN KEY=VALUE\n`, where LEN counts the whole record; values may hold any byte.
fn parse_pax(mut data: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut records = Vec::new();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..space]).ok()?.parse().ok()?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return None;
        }
        let body = &data[space + 1..len - 1];
        let eq = body.iter().position(|&b| b == b'=')?;
        records.push((body[..eq].to_vec(), body[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Some(records)
}

fn archive_err(entry: &str) -> impl Fn(io::Error) -> WriteError + '_ {
    move |source| WriteError::Archive {
        entry: entry.to_owned(),
        source,
    }
}

fn add_entry<R: Read>(
    builder: &mut Builder,
    entry: &mut tar::Entry<'_, R>,
    raw_path: &[u8],
    ext: &Extensions,
    name: &str,
    whiteouts: Whiteouts,
) -> Result<()> {
    let path = normalize(raw_path);
    let meta = metadata(entry.header(), ext, name)?;
    let header = entry.header();
    let kind_byte = header.entry_type().as_byte();

    if let (Whiteouts::Aufs(_), Some(last)) = (whiteouts, path.last()) {
        if last.as_slice() == b".wh..wh..opq" {
            return builder.set_opaque(name, &path[..path.len() - 1]);
        }
        if last.starts_with(b".wh..wh.") {
            return Ok(());
        }
        if let Some(hidden) = last.strip_prefix(b".wh.") {
            let mut target = path[..path.len() - 1].to_vec();
            target.push(hidden.to_vec());
            let meta = Metadata {
                permissions: 0,
                xattrs: Vec::new(),
                ..meta
            };
            return builder.add(name, &target, meta, EntryKind::CharDevice { major: 0, minor: 0 });
        }
    }

    let device = |h: &tar::Header| -> Result<(u32, u32)> {
        let major = h.device_major().map_err(archive_err(name))?.unwrap_or(0);
        let minor = h.device_minor().map_err(archive_err(name))?.unwrap_or(0);
        Ok((major, minor))
    };
    let link = || {
        ext.pax_value(b"linkpath")
            .map(<[u8]>::to_vec)
            .or(ext.long_link.clone())
            .or_else(|| header.link_name_bytes().map(|l| l.into_owned()))
            .unwrap_or_default()
    };
    match header.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let size = entry.size();
            if let Some(pax_size) = ext.pax_value(b"size")
                && parse_decimal(pax_size) != Some(size)
            {
                return Err(WriteError::Pax {
                    entry: name.to_owned(),
                    key: "size".into(),
                });
            }
            builder.add(name, &path, meta, EntryKind::File { size, data: entry })
        }
        tar::EntryType::Directory => builder.add(name, &path, meta, EntryKind::Directory),
        tar::EntryType::Symlink => builder.add(name, &path, meta, EntryKind::Symlink(link())),
        tar::EntryType::Link => {
            let target = normalize(&link());
            builder.add(name, &path, meta, EntryKind::HardLink(target))
        }
        tar::EntryType::Char => {
            let (major, minor) = device(header)?;
            builder.add(name, &path, meta, EntryKind::CharDevice { major, minor })
        }
        tar::EntryType::Block => {
            let (major, minor) = device(header)?;
            builder.add(name, &path, meta, EntryKind::BlockDevice { major, minor })
        }
        tar::EntryType::Fifo => builder.add(name, &path, meta, EntryKind::Fifo),
        _ => Err(WriteError::EntryType {
            entry: name.to_owned(),
            kind: format!("{:?} ({:?})", header.entry_type(), kind_byte as char),
        }),
    }
}

fn metadata(header: &tar::Header, ext: &Extensions, name: &str) -> Result<Metadata> {
    let mode = header.mode().map_err(archive_err(name))?;
    // A header field that PAX overrides is not parsed: writers may leave it empty or out of range.
    let pax_or = |key: &[u8], from_header: &dyn Fn() -> io::Result<u64>| -> Result<u64> {
        match ext.pax_value(key) {
            Some(value) => parse_decimal(value).ok_or_else(|| WriteError::Pax {
                entry: name.to_owned(),
                key: String::from_utf8_lossy(key).into_owned(),
            }),
            None => from_header().map_err(archive_err(name)),
        }
    };
    let uid = pax_or(b"uid", &|| header.uid())?;
    let gid = pax_or(b"gid", &|| header.gid())?;
    let mtime = match ext.pax_value(b"mtime") {
        Some(value) => parse_pax_time(value).ok_or_else(|| WriteError::Pax {
            entry: name.to_owned(),
            key: "mtime".into(),
        })?,
        None => FileTime {
            secs: i64::try_from(header.mtime().map_err(archive_err(name))?).unwrap_or(i64::MAX),
            nanos: 0,
        },
    };
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (key, value) in &ext.pax {
        let bad = || WriteError::Pax {
            entry: name.to_owned(),
            key: String::from_utf8_lossy(key).into_owned(),
        };
        if let Some(xname) = key.strip_prefix(b"SCHILY.xattr.") {
            set_xattr(&mut xattrs, xname.to_vec(), value.clone());
        } else if let Some(encoded) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
            let xname = percent_decode(encoded).ok_or_else(bad)?;
            let xvalue = BASE64.decode(value.trim_ascii()).map_err(|_| bad())?;
            set_xattr(&mut xattrs, xname, xvalue);
        }
    }
    let id = |v: u64, key: &str| {
        u32::try_from(v).map_err(|_| WriteError::Pax {
            entry: name.to_owned(),
            key: key.to_owned(),
        })
    };
    Ok(Metadata {
        permissions: (mode & 0o7777) as u16,
        uid: id(uid, "uid")?,
        gid: id(gid, "gid")?,
        mtime,
        xattrs,
    })
}

fn set_xattr(xattrs: &mut Vec<(Vec<u8>, Vec<u8>)>, name: Vec<u8>, value: Vec<u8>) {
    xattrs.retain(|(n, _)| *n != name);
    xattrs.push((name, value));
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// Parses a PAX time: `[-]SECONDS[.FRACTION]`.
fn parse_pax_time(v: &[u8]) -> Option<FileTime> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut nanos: u32 = 0;
    for (i, digit) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(digit - b'0') * 10u32.pow(8 - i as u32);
    }
    Some(if !negative {
        FileTime { secs, nanos }
    } else if nanos == 0 {
        FileTime { secs: -secs, nanos: 0 }
    } else {
        FileTime {
            secs: -secs - 1,
            nanos: 1_000_000_000 - nanos,
        }
    })
}

fn percent_decode(v: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            let hex = std::str::from_utf8(v.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_root() {
        let p = |s: &str| normalize(s.as_bytes());
        assert_eq!(p("../../etc/passwd"), p("etc/passwd"));
        assert_eq!(p("/abs/./x//y/"), p("abs/x/y"));
        assert_eq!(p("a/../../b"), p("b"));
        assert!(p("./").is_empty());
    }

    #[test]
    fn pax_times_keep_nanoseconds() {
        let t = |s: &str| parse_pax_time(s.as_bytes());
        assert_eq!(
            t("1700000000.123456789"),
            Some(FileTime {
                secs: 1_700_000_000,
                nanos: 123_456_789
            })
        );
        assert_eq!(
            t("12.5"),
            Some(FileTime {
                secs: 12,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            t("-1.25"),
            Some(FileTime {
                secs: -2,
                nanos: 750_000_000
            })
        );
        assert_eq!(t("x"), None);
        assert_eq!(t("1.x"), None);
    }

    #[test]
    fn compression_is_detected_from_magic_bytes() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(Compression::detect(b"ustar"), Compression::None);
    }

    #[test]
    fn pax_records_keep_binary_values() {
        let data = b"22 SCHILY.xattr.a=\n\0x\n11 path=ab\n";
        let records = parse_pax(data).unwrap();
        assert_eq!(records[0], (b"SCHILY.xattr.a".to_vec(), b"\n\0x".to_vec()));
        assert_eq!(records[1], (b"path".to_vec(), b"ab".to_vec()));
        assert_eq!(parse_pax(b"99 path=x\n"), None);
        assert_eq!(parse_pax(b"5 x\n"), None);
    }

    #[test]
    fn libarchive_names_are_percent_decoded() {
        assert_eq!(percent_decode(b"user.a%3Db").as_deref(), Some(&b"user.a=b"[..]));
        assert_eq!(percent_decode(b"bad%4"), None);
    }
}
