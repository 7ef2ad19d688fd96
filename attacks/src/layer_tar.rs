//! Layer tars as the attacker writes them: entries owned by root at time 0, so the same content always gives
//! the same bytes (and the same digests and root hashes), and an edit of a stored layer that changes one file
//! leaves every other entry byte for byte as it was.

use std::io::{self, Read};

use crate::AttackError;

/// A tar being written in memory.
pub type Builder = tar::Builder<Vec<u8>>;

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_cksum();
    header
}

/// Appends a regular file at `path` with `mode` and `content`.
pub fn append_file(builder: &mut Builder, path: &str, mode: u32, content: &[u8]) -> io::Result<()> {
    let mut header = header(tar::EntryType::Regular, mode, content.len() as u64);
    builder.append_data(&mut header, path, content)
}

/// Appends a directory at `path` (written with its trailing `/`) with `mode`.
pub fn append_dir(builder: &mut Builder, path: &str, mode: u32) -> io::Result<()> {
    let mut header = header(tar::EntryType::Directory, mode, 0);
    builder.append_data(&mut header, format!("{path}/"), io::empty())
}

/// Appends a symbolic link at `path` pointing at `target`.
pub fn append_symlink(builder: &mut Builder, path: &str, target: &str) -> io::Result<()> {
    let mut header = header(tar::EntryType::Symlink, 0o777, 0);
    header.set_link_name(target)?;
    builder.append_data(&mut header, path, io::empty())
}

/// Appends the OCI whiteout hiding `path` (its last component), exactly as named: `dir/.wh.NAME`.
pub fn append_whiteout(builder: &mut Builder, path: &str) -> io::Result<()> {
    let (dir, base) = path.rsplit_once('/').unwrap_or(("", path));
    let name = if dir.is_empty() {
        format!(".wh.{base}")
    } else {
        format!("{dir}/.wh.{base}")
    };
    append_file(builder, &name, 0o644, &[])
}

/// Finishes `builder`'s tar.
pub fn finish(builder: Builder) -> io::Result<Vec<u8>> {
    builder.into_inner()
}

fn tar_err(e: io::Error) -> AttackError {
    AttackError::env(format!("the layer's tar: {e}"))
}

/// `tar` with the file at `path` given `content` and mode 0755 (added last when absent, after any of its
/// parent directories the tar lacks); every other entry is copied as it was.
pub fn with_file(tar: &[u8], path: &str, content: &[u8]) -> Result<Vec<u8>, AttackError> {
    let mut builder = Builder::new(Vec::new());
    let mut present = Vec::new();
    let mut found = false;
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let name = entry.path().map_err(tar_err)?.to_string_lossy().into_owned();
        if name == path {
            append_file(&mut builder, path, 0o755, content).map_err(tar_err)?;
            found = true;
        } else {
            let mut header = entry.header().clone();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(tar_err)?;
            builder.append_data(&mut header, &name, &data[..]).map_err(tar_err)?;
        }
        present.push(name.trim_end_matches('/').to_owned());
    }
    if !found {
        let dirs: Vec<&str> = path.split('/').collect();
        let mut parent = String::new();
        for part in dirs.split_last().map_or(&[][..], |(_, dirs)| dirs) {
            parent = if parent.is_empty() {
                (*part).to_owned()
            } else {
                format!("{parent}/{part}")
            };
            if !present.contains(&parent) {
                append_dir(&mut builder, &parent, 0o755).map_err(tar_err)?;
                present.push(parent.clone());
            }
        }
        append_file(&mut builder, path, 0o755, content).map_err(tar_err)?;
    }
    finish(builder).map_err(tar_err)
}

/// A tar holding only the file at `path` with `content` (and its parent directories).
pub fn single_file(path: &str, content: &[u8]) -> Result<Vec<u8>, AttackError> {
    let empty = finish(Builder::new(Vec::new())).map_err(tar_err)?;
    with_file(&empty, path, content)
}

/// The content of the regular file at `path` in `tar`, if it holds one.
pub fn file(tar: &[u8], path: &str) -> Result<Option<Vec<u8>>, AttackError> {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        if entry.header().entry_type().is_file() && entry.path().map_err(tar_err)?.to_string_lossy() == path {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(tar_err)?;
            return Ok(Some(data));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut b = Builder::new(Vec::new());
        append_dir(&mut b, "bin", 0o755).unwrap();
        append_file(&mut b, "bin/app", 0o755, b"genuine").unwrap();
        append_symlink(&mut b, "bin/sh", "app").unwrap();
        append_file(&mut b, &format!("{}/f", "d".repeat(120)), 0o644, b"long").unwrap();
        finish(b).unwrap()
    }

    #[test]
    fn replacing_a_file_rewrites_only_its_entry() {
        let tar = sample();
        let edited = with_file(&tar, "bin/app", b"trojan").unwrap();
        assert_eq!(file(&edited, "bin/app").unwrap().unwrap(), b"trojan");
        assert_eq!(with_file(&edited, "bin/app", b"genuine").unwrap(), tar);
        assert_eq!(
            file(&edited, &format!("{}/f", "d".repeat(120))).unwrap().unwrap(),
            b"long"
        );
    }

    #[test]
    fn an_absent_file_comes_last_after_its_missing_parents() {
        let added = single_file("etc/deep/conf", b"x").unwrap();
        let mut b = Builder::new(Vec::new());
        append_dir(&mut b, "etc", 0o755).unwrap();
        append_dir(&mut b, "etc/deep", 0o755).unwrap();
        append_file(&mut b, "etc/deep/conf", 0o755, b"x").unwrap();
        assert_eq!(added, finish(b).unwrap());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(with_file(&[0xff; 700], "a", b"b").is_err());
        assert!(file(&[0x41; 1024], "a").is_err() || file(&[0x41; 1024], "a").unwrap().is_none());
    }
}
