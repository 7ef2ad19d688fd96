//! The `emulated` backend: the merged view used in process, with no mount at all.
//!
//! Path-based calls (`metadata`, `list`, `read_file`, `read_link_at`, `open_file`) wrap the node-based API
//! of [`Merged`], and [`File`] reads a regular file through `std::io::Read` and `Seek`. An error from the
//! view travels inside the `io::Error` (downcast it to [`RootfsError`]), so a verification failure stays
//! recognisable.

use std::io::{self, Read, Seek, SeekFrom};

use verity_fuse::ReadAt;

use super::display_path;
use super::error::{Result, RootfsError};
use super::merge::{Entry, Merged, Node, Stat};
use crate::erofs::FileKind;

impl<R: ReadAt> Merged<R> {
    /// `lstat` of a path.
    pub fn metadata(&self, path: &[u8]) -> Result<Stat> {
        Ok(self.stat(&self.lookup(path)?))
    }

    /// The entries of the directory at `path`, sorted by name.
    pub fn list(&self, path: &[u8]) -> Result<Vec<Entry>> {
        self.read_dir(&self.lookup(path)?)
    }

    /// The target of the symbolic link at `path`.
    pub fn read_link_at(&self, path: &[u8]) -> Result<Vec<u8>> {
        self.read_link(&self.lookup(path)?)
    }

    /// The whole regular file at `path`, refusing files larger than `limit` bytes.
    pub fn read_file(&self, path: &[u8], limit: u64) -> Result<Vec<u8>> {
        let file = self.open_file(path)?;
        if file.size > limit {
            return Err(RootfsError::TooLarge {
                path: display_path(path),
                size: file.size,
                limit,
            });
        }
        let mut out = vec![0u8; usize::try_from(file.size).unwrap_or(0)];
        let mut done = 0;
        while done < out.len() {
            let n = file.read_at(done as u64, &mut out[done..])?;
            if n == 0 {
                break;
            }
            done += n;
        }
        out.truncate(done);
        Ok(out)
    }

    /// Opens the regular file at `path` for reading (symlinks are not followed).
    pub fn open_file(&self, path: &[u8]) -> Result<File<'_, R>> {
        let node = self.lookup(path)?;
        match node.kind() {
            FileKind::File => Ok(File {
                size: self.stat(&node).size,
                view: self,
                node,
                pos: 0,
            }),
            FileKind::Directory => Err(RootfsError::IsADirectory {
                path: display_path(path),
            }),
            _ => Err(RootfsError::NotAFile {
                path: display_path(path),
            }),
        }
    }
}

/// A regular file of a merged view opened for reading.
#[derive(Debug)]
pub struct File<'a, R> {
    view: &'a Merged<R>,
    node: Node,
    size: u64,
    pos: u64,
}

impl<R: ReadAt> File<'_, R> {
    /// Its node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads at `offset` without moving the position; returns how many bytes were read (0 at the end).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.view.read_at(&self.node, offset, buf)
    }
}

impl<R: ReadAt> Read for File<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.view.read_at(&self.node, self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: ReadAt> Seek for File<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        match target {
            Some(at) => {
                self.pos = at;
                Ok(at)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )),
        }
    }
}
