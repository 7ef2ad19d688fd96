//! Tampering wrappers: a source whose bytes differ from the inner one at chosen places.
//!
//! [`Patched`] overlays byte patches on any [`ReadAt`]; reads see the patched bytes and nothing else changes.
//! The patches can be changed while readers hold the source, which stages tampering after a first read.

use std::io;
use std::sync::RwLock;

use verity_fuse::ReadAt;
use verity_fuse::source::check_range;

/// One byte range replaced by other bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    /// Offset of the first replaced byte.
    pub offset: u64,
    /// The bytes seen there instead.
    pub bytes: Vec<u8>,
}

/// A source with patches applied over an inner source.
#[derive(Debug)]
pub struct Patched<R> {
    inner: R,
    patches: RwLock<Vec<Patch>>,
}

impl<R: ReadAt> Patched<R> {
    /// A source that reads exactly as `inner` until patches are added.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            patches: RwLock::new(Vec::new()),
        }
    }

    /// Replaces the bytes at `offset` with `bytes` for every later read.
    pub fn patch(&self, offset: u64, bytes: &[u8]) {
        self.patches.write().unwrap_or_else(|e| e.into_inner()).push(Patch {
            offset,
            bytes: bytes.to_vec(),
        });
    }

    /// Flips every bit of the byte at `offset` (the classic one-byte corruption).
    pub fn flip_byte(&self, offset: u64) -> io::Result<()> {
        let mut byte = [0u8];
        self.read_at(offset, &mut byte)?;
        self.patch(offset, &[!byte[0]]);
        Ok(())
    }

    /// Removes every patch: reads see the inner source again.
    pub fn restore(&self) {
        self.patches.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl<R: ReadAt> ReadAt for Patched<R> {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(self.len(), offset, buf.len())?;
        self.inner.read_at(offset, buf)?;
        let end = offset + buf.len() as u64;
        for patch in self.patches.read().unwrap_or_else(|e| e.into_inner()).iter() {
            let p_end = patch.offset.saturating_add(patch.bytes.len() as u64);
            let lo = patch.offset.max(offset);
            let hi = p_end.min(end);
            if lo < hi {
                let src = &patch.bytes[(lo - patch.offset) as usize..(hi - patch.offset) as usize];
                buf[(lo - offset) as usize..(hi - offset) as usize].copy_from_slice(src);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_show_only_where_they_overlap_a_read() {
        let data = vec![0u8; 16];
        let p = Patched::new(&data);
        p.patch(4, &[1, 2, 3]);
        let mut buf = [9u8; 4];
        p.read_at(5, &mut buf).unwrap();
        assert_eq!(buf, [2, 3, 0, 0]);
        p.flip_byte(0).unwrap();
        let mut one = [0u8];
        p.read_at(0, &mut one).unwrap();
        assert_eq!(one, [0xff]);
        p.restore();
        p.read_at(0, &mut one).unwrap();
        assert_eq!(one, [0]);
    }
}
