//! A typed parser of `/proc/PID/mountinfo`, the kernel's view of a mount namespace.
//!
//! Each line describes one mount (proc(5)); fields are separated by single spaces:
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! |  |  |    |     |     |          |        | |    |         '- super options
//! |  |  |    |     |     |          |        | |    '- mount source
//! |  |  |    |     |     |          |        | '- filesystem type
//! |  |  |    |     |     |          |        '- separator
//! |  |  |    |     |     |          '- optional fields (zero or more)
//! |  |  |    |     |     '- per-mount options
//! |  |  |    |     '- mount point (relative to the reader's root)
//! |  |  |    '- root of the mount within its filesystem
//! |  |  '- major:minor of the filesystem's device (st_dev)
//! |  '- parent mount ID
//! '- mount ID
//! ```
//!
//! The kernel escapes space, tab, newline and backslash (and, in super options, comma) in the path-like
//! fields as a backslash and three octal digits (`\040`), so a raw space always separates fields and a raw
//! newline always ends a line. [`parse`] undoes the escapes, keeps paths as bytes ([`PathBuf`], [`OsString`])
//! and fails with a [`ParseError`] naming the line for anything the kernel would not write. It never panics,
//! whatever the bytes (property tests below and the `mountinfo` fuzz target in `fuzz/`). [`MountInfo`]'s
//! `Display` writes the line back in the kernel's form, so an emulated mount table can be rendered as text and
//! go through the same parser.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::class::ErrorClass;
use crate::identity::MountId;

/// `path` (absolute in a namespace) as reached through `root`: `/` for this process's namespace,
/// `/proc/PID/root` for another process's.
pub fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// The identity of mount `m` of the namespace reached through `root` (see [`under`]): its unique mount id
/// where the kernel has them and `m` is the mount its mount point leads to; its mountinfo id otherwise (a
/// kernel before 6.8, or a mount hidden under another).
pub fn identify(root: &Path, m: &MountInfo) -> MountId {
    match crate::identity::stat(&under(root, &m.mount_point)) {
        Ok(stat) if stat.reusable == m.mount_id => stat.mount,
        _ => MountId::Reusable(m.mount_id),
    }
}

/// The largest mountinfo file [`read`] accepts (a namespace with ~100 000 mounts).
pub const MAX_LEN: u64 = 64 << 20;

/// A device number, as `major:minor` in mountinfo and as `st_dev` of every file on the mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct DeviceNumber {
    /// The major number.
    pub major: u32,
    /// The minor number.
    pub minor: u32,
}

impl DeviceNumber {
    /// Splits an `st_dev` value as Linux encodes it.
    pub fn from_dev(dev: u64) -> Self {
        Self {
            major: (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)) as u32,
            minor: (((dev >> 12) & 0xffff_ff00) | (dev & 0xff)) as u32,
        }
    }
}

impl fmt::Display for DeviceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// One optional field, between the mount options and the `-` separator: the mount's propagation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OptionalField {
    /// `shared:N`: the mount is in peer group N.
    Shared(u64),
    /// `master:N`: the mount is a slave of peer group N.
    Master(u64),
    /// `propagate_from:N`: the dominant peer group the slave receives from (shown when not reachable).
    PropagateFrom(u64),
    /// `unbindable`.
    Unbindable,
    /// A field this parser does not know (proc(5) says readers must ignore them); kept as written.
    Other(String),
}

impl fmt::Display for OptionalField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shared(n) => write!(f, "shared:{n}"),
            Self::Master(n) => write!(f, "master:{n}"),
            Self::PropagateFrom(n) => write!(f, "propagate_from:{n}"),
            Self::Unbindable => f.write_str("unbindable"),
            Self::Other(text) => f.write_str(text),
        }
    }
}

/// A comma-separated option list, each entry `flag` or `key=value`, unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options(pub Vec<OsString>);

impl Options {
    /// True when the list holds the flag `name` (`ro`, `nosuid`, ...).
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|o| o.as_bytes() == name.as_bytes())
    }

    /// The value of `key=value`, if present (the first one, as the kernel takes it).
    pub fn get(&self, key: &str) -> Option<&OsStr> {
        self.0.iter().find_map(|o| {
            let rest = o.as_bytes().strip_prefix(key.as_bytes())?;
            rest.strip_prefix(b"=").map(OsStr::from_bytes)
        })
    }

    /// The entries.
    pub fn iter(&self) -> impl Iterator<Item = &OsStr> {
        self.0.iter().map(OsString::as_os_str)
    }
}

/// One mount, from one line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Unique ID of the mount (may be reused after umount).
    pub mount_id: u64,
    /// ID of the parent mount (itself for the root of the namespace's tree).
    pub parent_id: u64,
    /// `st_dev` of files on this mount.
    pub device: DeviceNumber,
    /// The directory of the filesystem that forms the root of this mount (`/` unless a bind mount of a subtree).
    pub root: PathBuf,
    /// Where it is mounted, relative to the reading process's root.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`/`ro`, `nosuid`, `relatime`, ...).
    pub mount_options: Options,
    /// Propagation fields, in order.
    pub optional: Vec<OptionalField>,
    /// Filesystem type, `type` or `type.subtype` (`fuse.verity-fuse`).
    pub fs_type: OsString,
    /// Filesystem-specific source (`/dev/loop3`, a FUSE fs name, `overlay`, empty when the mounter gave none).
    /// Chosen by whoever mounted: never proof of what the device is (match on [`MountInfo::device`]).
    pub source: OsString,
    /// Per-superblock options (`ro`/`rw` of the filesystem, then its own options such as `lowerdir=`).
    pub super_options: Options,
}

impl MountInfo {
    /// True when the mount or its superblock is read-only.
    pub fn is_read_only(&self) -> bool {
        self.mount_options.has("ro") || self.super_options.has("ro")
    }

    /// The peer group this mount shares events with, if any.
    pub fn shared(&self) -> Option<u64> {
        self.optional.iter().find_map(|f| match f {
            OptionalField::Shared(n) => Some(*n),
            _ => None,
        })
    }

    /// The peer group this mount is a slave of, if any.
    pub fn master(&self) -> Option<u64> {
        self.optional.iter().find_map(|f| match f {
            OptionalField::Master(n) => Some(*n),
            _ => None,
        })
    }
}

/// Writes the line as the kernel does (without the newline), escaping what the kernel escapes; bytes outside
/// ASCII, which the kernel writes raw, are escaped too so that the text is UTF-8. It parses back to `self`.
impl fmt::Display for MountInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.mount_id,
            self.parent_id,
            self.device,
            Escaped(self.root.as_os_str().as_bytes(), PATH_SPECIALS),
            Escaped(self.mount_point.as_os_str().as_bytes(), PATH_SPECIALS),
            EscapedOptions(&self.mount_options),
        )?;
        for field in &self.optional {
            write!(f, " {field}")?;
        }
        write!(
            f,
            " - {} {} {}",
            Escaped(self.fs_type.as_bytes(), PATH_SPECIALS),
            Escaped(self.source.as_bytes(), PATH_SPECIALS),
            EscapedOptions(&self.super_options),
        )
    }
}

/// Bytes the kernel escapes in paths, the type and the source.
const PATH_SPECIALS: &[u8] = b" \t\n\\";
/// Bytes the kernel escapes in option values (`seq_show_option`).
const OPTION_SPECIALS: &[u8] = b", \t\n\\";

struct Escaped<'a>(&'a [u8], &'static [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            if self.1.contains(&b) {
                write!(f, "\\{b:03o}")?;
            } else {
                match char::from_u32(u32::from(b)).filter(char::is_ascii) {
                    Some(c) => write!(f, "{c}")?,
                    None => write!(f, "\\{b:03o}")?,
                }
            }
        }
        Ok(())
    }
}

struct EscapedOptions<'a>(&'a Options);

impl fmt::Display for EscapedOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, option) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", Escaped(option.as_bytes(), OPTION_SPECIALS))?;
        }
        Ok(())
    }
}

/// Which field of a line an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// Mount ID.
    MountId,
    /// Parent ID.
    ParentId,
    /// `major:minor`.
    Device,
    /// Root.
    Root,
    /// Mount point.
    MountPoint,
    /// Mount options.
    MountOptions,
    /// An optional field.
    Optional,
    /// Filesystem type.
    FsType,
    /// Source.
    Source,
    /// Super options.
    SuperOptions,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MountId => "mount ID",
            Self::ParentId => "parent ID",
            Self::Device => "major:minor",
            Self::Root => "root",
            Self::MountPoint => "mount point",
            Self::MountOptions => "mount options",
            Self::Optional => "optional field",
            Self::FsType => "filesystem type",
            Self::Source => "source",
            Self::SuperOptions => "super options",
        })
    }
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// Fewer than the six fields before the optional ones.
    #[error("only {found} fields before the \"-\" separator, need at least 6")]
    TooFewFields {
        /// Fields found.
        found: usize,
    },
    /// No `-` field after the mount options.
    #[error("no \"-\" separator after the mount options")]
    NoSeparator,
    /// Not exactly type, source and super options after the separator.
    #[error("{found} fields after the \"-\" separator, expected 3 (type, source, super options)")]
    AfterSeparator {
        /// Fields found.
        found: usize,
    },
    /// A number field is not a decimal number.
    #[error("{field} {text:?} is not a decimal number")]
    Number {
        /// The field.
        field: Field,
        /// Its text (at most 64 bytes, lossy).
        text: String,
    },
    /// A field that may not be empty is.
    #[error("{field} is empty")]
    Empty {
        /// The field.
        field: Field,
    },
    /// A backslash not followed by three octal digits of a byte value.
    #[error("{field} has a bad escape at byte {offset} (a backslash must start \\ooo, at most \\377)")]
    Escape {
        /// The field.
        field: Field,
        /// Byte offset of the backslash in the field.
        offset: usize,
    },
    /// An optional field with a tag we know but a bad value (`shared:x`).
    #[error("optional field {text:?} has no valid peer group number")]
    OptionalField {
        /// The field (at most 64 bytes, lossy).
        text: String,
    },
}

impl LineError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// A malformed mountinfo line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mountinfo line {line}: {error}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub error: LineError,
}

impl ParseError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// Reading mountinfo failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be read (the process is gone, or no permission).
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_LEN`].
    #[error("{} is larger than {MAX_LEN} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A line is malformed.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: ParseError,
    },
}

impl ReadError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Io { .. } => ErrorClass::Io,
            Self::TooLarge { .. } | Self::Parse { .. } => ErrorClass::BadInput,
        }
    }
}

/// Parses a whole mountinfo file. Lines end with `\n`; the text after the last one, if any, is a line too.
pub fn parse(text: &[u8]) -> Result<Vec<MountInfo>, ParseError> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| parse_line(line).map_err(|error| ParseError { line: i + 1, error }))
        .collect()
}

/// Parses one line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<MountInfo, LineError> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let separator = fields
        .iter()
        .skip(6)
        .position(|f| *f == b"-")
        .map(|p| p + 6)
        .ok_or(if fields.len() < 6 {
            LineError::TooFewFields { found: fields.len() }
        } else {
            LineError::NoSeparator
        })?;
    let after = &fields[separator + 1..];
    if after.len() != 3 {
        return Err(LineError::AfterSeparator { found: after.len() });
    }
    Ok(MountInfo {
        mount_id: number(fields[0], Field::MountId)?,
        parent_id: number(fields[1], Field::ParentId)?,
        device: device(fields[2])?,
        root: PathBuf::from(OsString::from_vec(path(fields[3], Field::Root)?)),
        mount_point: PathBuf::from(OsString::from_vec(path(fields[4], Field::MountPoint)?)),
        mount_options: options(fields[5], Field::MountOptions)?,
        optional: fields[6..separator]
            .iter()
            .map(|f| optional(f))
            .collect::<Result<_, _>>()?,
        fs_type: OsString::from_vec(path(after[0], Field::FsType)?),
        source: OsString::from_vec(unescape(after[1], Field::Source)?),
        super_options: options(after[2], Field::SuperOptions)?,
    })
}

/// The mounts in `/proc/PID/mountinfo` (the mount namespace of `pid`, seen from its root).
pub fn read(pid: u32) -> Result<Vec<MountInfo>, ReadError> {
    read_path(&PathBuf::from(format!("/proc/{pid}/mountinfo")))
}

/// The mounts in `/proc/self/mountinfo`.
pub fn read_self() -> Result<Vec<MountInfo>, ReadError> {
    read_path(Path::new("/proc/self/mountinfo"))
}

/// The mounts in a mountinfo file at `path`, read whole at once (the kernel gives a consistent snapshot only
/// to a single read pass, so the file is read to its end before parsing).
pub fn read_path(path: &Path) -> Result<Vec<MountInfo>, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = Vec::new();
    file.take(MAX_LEN + 1).read_to_end(&mut text).map_err(io)?;
    if text.len() as u64 > MAX_LEN {
        return Err(ReadError::TooLarge { path: path.to_owned() });
    }
    parse(&text).map_err(|source| ReadError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Undoes the kernel's octal escapes: `\ooo` (three octal digits, at most `\377`) becomes that byte. A
/// backslash starting anything else is an error, since the kernel escapes every backslash it writes.
pub fn unescape(field: &[u8], which: Field) -> Result<Vec<u8>, LineError> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while let Some(&b) = field.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let byte = field
            .get(i + 1..i + 4)
            .and_then(|digits| {
                digits.iter().try_fold(0u16, |acc, d| {
                    (b'0'..=b'7').contains(d).then(|| acc * 8 + u16::from(d - b'0'))
                })
            })
            .and_then(|v| u8::try_from(v).ok())
            .ok_or(LineError::Escape {
                field: which,
                offset: i,
            })?;
        out.push(byte);
        i += 4;
    }
    Ok(out)
}

fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned()
}

fn number(text: &[u8], field: Field) -> Result<u64, LineError> {
    let bad = || LineError::Number {
        field,
        text: shown(text),
    };
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(bad)
}

fn device(text: &[u8]) -> Result<DeviceNumber, LineError> {
    let colon = text.iter().position(|&b| b == b':').ok_or(LineError::Number {
        field: Field::Device,
        text: shown(text),
    })?;
    let part = |bytes| {
        number(bytes, Field::Device)
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(LineError::Number {
                field: Field::Device,
                text: shown(text),
            })
    };
    Ok(DeviceNumber {
        major: part(&text[..colon])?,
        minor: part(&text[colon + 1..])?,
    })
}

fn path(text: &[u8], field: Field) -> Result<Vec<u8>, LineError> {
    if text.is_empty() {
        return Err(LineError::Empty { field });
    }
    unescape(text, field)
}

fn options(text: &[u8], field: Field) -> Result<Options, LineError> {
    if text.is_empty() {
        return Ok(Options::default());
    }
    text.split(|&b| b == b',')
        .map(|o| unescape(o, field).map(OsString::from_vec))
        .collect::<Result<_, _>>()
        .map(Options)
}

fn optional(text: &[u8]) -> Result<OptionalField, LineError> {
    let group =
        |value: &[u8]| number(value, Field::Optional).map_err(|_| LineError::OptionalField { text: shown(text) });
    if text.is_empty() {
        return Err(LineError::Empty { field: Field::Optional });
    }
    Ok(match text {
        b"unbindable" => OptionalField::Unbindable,
        _ => {
            if let Some(n) = text.strip_prefix(b"shared:") {
                OptionalField::Shared(group(n)?)
            } else if let Some(n) = text.strip_prefix(b"master:") {
                OptionalField::Master(group(n)?)
            } else if let Some(n) = text.strip_prefix(b"propagate_from:") {
                OptionalField::PropagateFrom(group(n)?)
            } else {
                OptionalField::Other(
                    String::from_utf8(text.to_vec()).map_err(|_| LineError::OptionalField { text: shown(text) })?,
                )
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
40 22 0:35 / /a\\040b\\011c\\012d\\134e ro,relatime shared:9 master:2 propagate_from:3 unbindable - tmpfs my\\040src rw,size=1024k
41 22 0:36 / /merged ro - overlay overlay ro,lowerdir=/l1:/l2,redirect_dir=nofollow,uuid=null
42 22 0:37 / /empty rw - tmpfs  rw
";

    #[test]
    fn parses_every_field_of_the_proc5_example_and_friends() {
        let mounts = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(mounts.len(), 5);
        let m = &mounts[1];
        assert_eq!((m.mount_id, m.parent_id), (36, 35));
        assert_eq!(m.device, DeviceNumber { major: 98, minor: 0 });
        assert_eq!(m.root, Path::new("/mnt1"));
        assert_eq!(m.mount_point, Path::new("/mnt2"));
        assert!(m.mount_options.has("noatime") && !m.is_read_only());
        assert_eq!(m.optional, vec![OptionalField::Master(1)]);
        assert_eq!(m.master(), Some(1));
        assert_eq!(m.fs_type, "ext3");
        assert_eq!(m.source, "/dev/root");
        assert_eq!(m.super_options.get("errors"), Some(OsStr::new("continue")));

        let escaped = &mounts[2];
        assert_eq!(escaped.mount_point, Path::new("/a b\tc\nd\\e"));
        assert_eq!(escaped.source, "my src");
        assert_eq!(
            escaped.optional,
            vec![
                OptionalField::Shared(9),
                OptionalField::Master(2),
                OptionalField::PropagateFrom(3),
                OptionalField::Unbindable
            ]
        );
        assert!(escaped.is_read_only());
        assert_eq!(mounts[3].super_options.get("lowerdir"), Some(OsStr::new("/l1:/l2")));
        assert_eq!(
            mounts[4].source, "",
            "an empty source is two spaces, as the kernel prints it"
        );
    }

    #[test]
    fn display_writes_the_line_back_as_the_kernel_wrote_it() {
        for line in SAMPLE.lines() {
            assert_eq!(parse_line(line.as_bytes()).unwrap().to_string(), line);
        }
    }

    #[test]
    fn errors_name_the_line_and_what_is_wrong() {
        let cases: &[(&str, LineError)] = &[
            ("1 2 0:1 / /x rw", LineError::NoSeparator),
            ("1 2 0:1 /", LineError::TooFewFields { found: 4 }),
            ("1 2 0:1 / /x rw - tmpfs", LineError::AfterSeparator { found: 1 }),
            ("1 2 0:1 / /x rw - tmpfs a b c", LineError::AfterSeparator { found: 4 }),
            (
                "x 2 0:1 / /x rw - tmpfs a rw",
                LineError::Number {
                    field: Field::MountId,
                    text: "x".into(),
                },
            ),
            (
                "1 2 0-1 / /x rw - tmpfs a rw",
                LineError::Number {
                    field: Field::Device,
                    text: "0-1".into(),
                },
            ),
            (
                "1 2 0:1 / /x\\04 rw - tmpfs a rw",
                LineError::Escape {
                    field: Field::MountPoint,
                    offset: 2,
                },
            ),
            (
                "1 2 0:1 / /x\\400 rw - tmpfs a rw",
                LineError::Escape {
                    field: Field::MountPoint,
                    offset: 2,
                },
            ),
            (
                "1 2 0:1 /  rw - tmpfs a rw",
                LineError::Empty {
                    field: Field::MountPoint,
                },
            ),
            (
                "1 2 0:1 / /x rw shared:x - tmpfs a rw",
                LineError::OptionalField {
                    text: "shared:x".into(),
                },
            ),
            (
                "1 2 0:1 / /x rw  - tmpfs a rw",
                LineError::Empty { field: Field::Optional },
            ),
        ];
        for (line, expected) in cases {
            let text = format!("22 1 0:21 / /sys rw - sysfs sysfs rw\n{line}\n");
            let err = parse(text.as_bytes()).unwrap_err();
            assert_eq!(err.line, 2, "{line}");
            assert_eq!(&err.error, expected, "{line}");
        }
    }

    #[test]
    fn device_numbers_split_st_dev_as_linux_does() {
        let dev = rustix::fs::makedev(259, 1_048_577);
        assert_eq!(
            DeviceNumber::from_dev(dev),
            DeviceNumber {
                major: 259,
                minor: 1_048_577
            }
        );
    }

    fn bytes_without(excluded: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            any::<u8>().prop_filter("excluded", move |b| !excluded.contains(b)),
            1..24,
        )
    }

    fn mount() -> impl Strategy<Value = MountInfo> {
        let path = || any::<Vec<u8>>().prop_map(|b| PathBuf::from(OsString::from_vec([b"/".as_slice(), &b].concat())));
        let opts = || {
            proptest::collection::vec(bytes_without(b","), 0..4)
                .prop_map(|v| Options(v.into_iter().map(OsString::from_vec).collect()))
        };
        let optional = prop_oneof![
            any::<u64>().prop_map(OptionalField::Shared),
            any::<u64>().prop_map(OptionalField::Master),
            any::<u64>().prop_map(OptionalField::PropagateFrom),
            Just(OptionalField::Unbindable),
            "[a-z_]{1,8}"
                .prop_filter("known tags", |s| s != "unbindable")
                .prop_map(OptionalField::Other),
        ];
        (
            (any::<u64>(), any::<u64>(), any::<(u32, u32)>(), path(), path()),
            (
                opts(),
                proptest::collection::vec(optional, 0..4),
                bytes_without(b""),
                any::<Vec<u8>>(),
                opts(),
            ),
        )
            .prop_filter("an empty option list has no entry", |(_, (mo, _, _, _, so))| {
                !(mo.0.len() == 1 && mo.0[0].is_empty() || so.0.len() == 1 && so.0[0].is_empty())
            })
            .prop_map(
                |((id, parent, (major, minor), root, mount_point), (mo, optional, ty, source, so))| MountInfo {
                    mount_id: id,
                    parent_id: parent,
                    device: DeviceNumber { major, minor },
                    root,
                    mount_point,
                    mount_options: mo,
                    optional,
                    fs_type: OsString::from_vec(ty),
                    source: OsString::from_vec(source),
                    super_options: so,
                },
            )
    }

    proptest! {
        #[test]
        fn rendered_lines_parse_back_to_the_same_mount(m in mount()) {
            let line = m.to_string();
            prop_assert!(!line.contains('\n'));
            prop_assert_eq!(parse_line(line.as_bytes()).unwrap(), m);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn mutated_lines_never_panic(m in mount(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut line = m.to_string().into_bytes();
            let i = at.index(line.len());
            line[i] = byte;
            let _ = parse(&line);
        }
    }
}
