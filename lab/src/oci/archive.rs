//! `oci-archive:FILE[:TAG]`: a tar of an image layout, unpacked into a temporary directory inside the
//! store and then read as a [`super::layout::Layout`], so every blob is still checked against its digest.
//!
//! Only directories and regular files are unpacked (an image layout holds nothing else), each strictly
//! inside the temporary directory; the unpacked size is bounded by the archive's own size.

use std::fs::File;
use std::path::Path;

use super::pull::PullError;
use crate::store::Store;

/// Unpacks the archive at `path` into a fresh temporary directory in the store.
pub fn unpack(path: &Path, store: &Store) -> Result<tempfile::TempDir, PullError> {
    let fail = |reason: String| PullError::Archive {
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
