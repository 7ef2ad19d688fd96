//! `oci-archive:FILE[:TAG]`: a tar of an image layout, unpacked into a temporary directory inside the
//! store and then read as a [`super::layout::Layout`], so every blob is still checked against its digest.
//!
//! Only directories and regular files are unpacked (an image layout holds nothing else), each strictly
//! inside the temporary directory; the unpacked size is bounded by the archive's own size.

use std::fs::File;
use std::path::Path;

use crate::store::Store;

/// An `oci-archive:` file that could not be unpacked.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct ArchiveError {
    /// The archive.
    pub path: std::path::PathBuf,
    /// What went wrong.
    pub reason: String,
}

impl ArchiveError {
    /// What kind of failure this is.
    pub fn class(&self) -> verity_fuse::ErrorClass {
        verity_fuse::ErrorClass::BadInput
    }
}

/// Unpacks the archive at `path` into a fresh temporary directory in the store.
pub(crate) fn unpack(path: &Path, store: &Store) -> Result<tempfile::TempDir, ArchiveError> {
    let fail = |reason: String| ArchiveError {
        path: path.to_owned(),
        reason,
    };
    let file = File::open(path).map_err(|e| fail(e.to_string()))?;
    let dir = tempfile::Builder::new()
        .prefix(".tmp")
        .tempdir_in(store.root())
        .map_err(|e| fail(format!("creating a temporary directory in the store: {e}")))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    for entry in archive.entries().map_err(|e| fail(e.to_string()))? {
        let mut entry = entry.map_err(|e| fail(e.to_string()))?;
        let kind = entry.header().entry_type();
        let name = entry.path().map_err(|e| fail(e.to_string()))?.display().to_string();
        if !(kind.is_dir() || kind.is_file()) {
            return Err(fail(format!(
                "entry {name:?} is neither a directory nor a regular file"
            )));
        }
        let inside = entry
            .unpack_in(dir.path())
            .map_err(|e| fail(format!("unpacking {name:?}: {e}")))?;
        if !inside {
            return Err(fail(format!("entry {name:?} points outside the archive")));
        }
    }
    Ok(dir)
}
