//! The one read trait every block-like thing in veritylab implements.
//!
//! A [`ReadAt`] is a fixed-length run of bytes that can be read at any offset: a file, a byte buffer, a window
//! into another source, or a [`crate::device::VerifiedDevice`] that checks every block before returning it.
//! Attacks are tampering wrappers over the same trait, so the verifier cannot tell a test from reality.
//!
//! Reads are exact: a read that reaches past [`ReadAt::len`] fails with [`std::io::ErrorKind::UnexpectedEof`]
//! and fills nothing the caller may rely on.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// A fixed-length byte source readable at arbitrary offsets from several threads at once.
pub trait ReadAt: Send + Sync {
    /// Length of the source in bytes.
    fn len(&self) -> u64;

    /// Whether the source holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset..offset + buf.len()`; fails if that range is not entirely inside
    /// the source.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Hints that `len` bytes at `offset` will be read soon, so a source backed by storage can start
    /// fetching them while the caller works on what it already has. Only a hint: nothing is checked or
    /// returned, and the default does nothing.
    fn prefetch(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }
}

/// Checks that `offset..offset + len` lies inside a source of `size` bytes.
pub fn check_range(size: u64, offset: u64, len: usize) -> io::Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("read of {len} bytes at offset {offset} passes the end ({size} bytes)"),
        )),
    }
}

impl ReadAt for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(ReadAt::len(self), offset, buf.len())?;
        let start = offset as usize;
        buf.copy_from_slice(&self[start..start + buf.len()]);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn len(&self) -> u64 {
        ReadAt::len(self.as_slice())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_at(offset, buf)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }

    fn prefetch(&self, offset: u64, len: u64) {
        (**self).prefetch(offset, len)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }

    fn prefetch(&self, offset: u64, len: u64) {
        (**self).prefetch(offset, len)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Box<T> {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }

    fn prefetch(&self, offset: u64, len: u64) {
        (**self).prefetch(offset, len)
    }
}

/// A file read with `pread`. The length is taken when the file is opened; a file that shrinks afterwards
/// makes reads past its new end fail rather than return short data.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    /// Opens `path` read-only.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        Self::new(file)
    }

    /// Wraps an open file, taking its current length.
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }
}

impl ReadAt for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(self.len, offset, buf.len())?;
        self.file.read_exact_at(buf, offset)
    }

    /// Asks the kernel to start reading the range into the page cache (`POSIX_FADV_WILLNEED`).
    fn prefetch(&self, offset: u64, len: u64) {
        let len = len.min(self.len.saturating_sub(offset));
        if let Some(len) = std::num::NonZeroU64::new(len) {
            // A failed hint costs only the overlap it would have given: the read that follows still happens.
            let _ = rustix::fs::fadvise(&self.file, offset, Some(len), rustix::fs::Advice::WillNeed);
        }
    }
}

/// A window `offset..offset + len` of another source, seen as a source of its own.
#[derive(Debug, Clone)]
pub struct Window<R> {
    inner: R,
    offset: u64,
    len: u64,
}

impl<R: ReadAt> Window<R> {
    /// The bytes of `inner` from `offset` for `len` bytes; fails if the window is not inside `inner`.
    pub fn new(inner: R, offset: u64, len: u64) -> io::Result<Self> {
        let end = offset.checked_add(len);
        if end.is_none_or(|end| end > inner.len()) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("window {offset}+{len} passes the end of a {}-byte source", inner.len()),
            ));
        }
        Ok(Self { inner, offset, len })
    }

    /// The bytes of `inner` from `offset` to its end.
    pub fn from_offset(inner: R, offset: u64) -> io::Result<Self> {
        let len = inner.len().checked_sub(offset).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("offset {offset} passes the end of a {}-byte source", inner.len()),
            )
        })?;
        Ok(Self { inner, offset, len })
    }
}

impl<R: ReadAt> ReadAt for Window<R> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(self.len, offset, buf.len())?;
        self.inner.read_at(self.offset + offset, buf)
    }

    fn prefetch(&self, offset: u64, len: u64) {
        let len = len.min(self.len.saturating_sub(offset));
        if len > 0 {
            self.inner.prefetch(self.offset + offset, len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_read_exactly_inside_and_fail_past_the_end() {
        let data: Vec<u8> = (0..100).collect();
        let mut buf = [0u8; 10];
        data.read_at(90, &mut buf).unwrap();
        assert_eq!(buf[0], 90);
        let err = data.read_at(91, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(data.read_at(u64::MAX, &mut buf).is_err());
    }

    #[test]
    fn windows_shift_offsets_and_bound_length() {
        let data: Vec<u8> = (0..100).collect();
        let w = Window::new(&data, 10, 20).unwrap();
        let mut buf = [0u8; 5];
        w.read_at(15, &mut buf).unwrap();
        assert_eq!(buf, [25, 26, 27, 28, 29]);
        assert!(w.read_at(16, &mut buf).is_err());
        assert!(Window::new(&data, 90, 11).is_err());
        assert!(Window::from_offset(&data, 101).is_err());
    }
}
