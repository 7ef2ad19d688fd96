//! What one layer holds: the difference between the tree below it and the tree it should leave.
//!
//! [`scan`] reads a directory into a [`Tree`] (type, permissions, numeric owner, content hash or link
//! target of every entry, never following symlinks); [`changes`] is a pure function from the lower tree and
//! the upper tree to the [`Change`]s a layer must carry, in the order they are written:
//!
//! - an entry new in the upper tree, or differing in type, content, target, permissions or owner;
//! - every directory above such an entry (so a layer unpacks on its own);
//! - `.wh.NAME` for an entry of the lower tree that is gone (only the topmost one: a deleted directory's
//!   children go with it), and for a directory that became something else;
//! - `.wh..wh..opq` in a directory kept from below whose lower entries are all gone (instead of one
//!   whiteout each).
//!
//! Entries are grouped by directory (parents before children); within a directory, whiteouts and the
//! opaque marker come before the other entries, so an applier that processes them in order never removes
//! something the same layer added.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::BuildError;

/// The prefix OCI layers use for whiteouts.
pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
/// The opaque-directory marker.
pub(crate) const OPAQUE: &str = ".wh..wh..opq";

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A directory.
    Dir,
    /// A regular file of `size` bytes hashing (sha256) to `hash`.
    File {
        /// Its length.
        size: u64,
        /// The sha256 of its content.
        hash: [u8; 32],
    },
    /// A symbolic link to `target`.
    Symlink(PathBuf),
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// Its type and content.
    pub kind: Kind,
    /// Permission bits (with setuid, setgid and sticky).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
}

/// A directory's entries by relative path (the root itself excluded).
pub(crate) type Tree = BTreeMap<PathBuf, Node>;

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// The upper tree's entry at this path, written whole.
    Entry(PathBuf),
    /// A whiteout hiding this path of the lower layers.
    Whiteout(PathBuf),
    /// This directory hides everything the lower layers had in it.
    Opaque(PathBuf),
}

impl Change {
    /// The path in the layer's tar (`dir/.wh.NAME`, `dir/.wh..wh..opq`, or the entry's own).
    pub(crate) fn tar_path(&self) -> PathBuf {
        match self {
            Change::Entry(path) => path.clone(),
            Change::Whiteout(path) => {
                let mut name = OsString::from(WHITEOUT_PREFIX);
                name.push(path.file_name().unwrap_or_default());
                parent(path).join(name)
            }
            Change::Opaque(dir) => dir.join(OPAQUE),
        }
    }
}

/// The parent of a relative path (`""` for the root's entries).
fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// Reads the tree under `root`, hashing every regular file. Sockets, devices and fifos are refused (a
/// demo image has no use for them), as are names starting with `.wh.`, which a layer would read as
/// whiteouts. Hard links are read as separate files.
pub(crate) fn scan(root: &Path) -> Result<Tree, BuildError> {
    let io_err = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| BuildError::Io { what, path, source }
    };
    let meta = fs::metadata(root).map_err(io_err("reading", root))?;
    if !meta.is_dir() {
        return Err(BuildError::NotADirectory { path: root.to_owned() });
    }
    let mut tree = Tree::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = fs::read_dir(&dir).map_err(io_err("listing", &dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err("listing", &dir))?;
            let name = entry.file_name();
            let path = entry.path();
            if name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
                return Err(BuildError::WhiteoutName { path });
            }
            let meta = fs::symlink_metadata(&path).map_err(io_err("reading", &path))?;
            let file_type = meta.file_type();
            let kind = if file_type.is_dir() {
                stack.push(rel.join(&name));
                Kind::Dir
            } else if file_type.is_file() {
                Kind::File {
                    size: meta.len(),
                    hash: hash_file(&path).map_err(io_err("reading", &path))?,
                }
            } else if file_type.is_symlink() {
                Kind::Symlink(fs::read_link(&path).map_err(io_err("reading the link", &path))?)
            } else {
                let kind = if file_type.is_socket() {
                    "socket"
                } else if file_type.is_fifo() {
                    "fifo"
                } else {
                    "device"
                };
                return Err(BuildError::Unsupported { path, kind });
            };
            tree.insert(
                rel.join(&name),
                Node {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: u64::from(meta.uid()),
                    gid: u64::from(meta.gid()),
                },
            );
        }
    }
    Ok(tree)
}

fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

/// The changes a layer needs to turn `lower` into `upper`, in writing order (see the module docs).
pub(crate) fn changes(lower: &Tree, upper: &Tree) -> Vec<Change> {
    let is_dir = |tree: &Tree, path: &Path| tree.get(path).is_some_and(|n| n.kind == Kind::Dir);
    // Directories kept from below whose lower entries are all gone.
    let mut lower_children: BTreeMap<&Path, bool> = BTreeMap::new();
    for path in lower.keys() {
        let survives = upper.contains_key(path);
        let any = lower_children.entry(parent(path)).or_insert(false);
        *any |= survives;
    }
    let opaque: BTreeSet<&Path> = lower_children
        .iter()
        .filter(|(dir, any)| !dir.as_os_str().is_empty() && !**any && is_dir(lower, dir) && is_dir(upper, dir))
        .map(|(dir, _)| *dir)
        .collect();

    // Sorted by (directory, rank, name): rank 0 opaque marker, 1 whiteouts, 2 entries.
    let mut out: BTreeSet<(PathBuf, u8, OsString)> = BTreeSet::new();
    let add = |out: &mut BTreeSet<_>, change: &Change| {
        let path = change.tar_path();
        let rank = match change {
            Change::Opaque(_) => 0,
            Change::Whiteout(_) => 1,
            Change::Entry(_) => 2,
        };
        let name = path.file_name().unwrap_or(OsStr::new("")).to_owned();
        out.insert((parent(&path).to_owned(), rank, name));
    };
    for (path, node) in upper {
        match lower.get(path) {
            Some(old) if old == node => {}
            Some(old) => {
                if old.kind == Kind::Dir && node.kind != Kind::Dir {
                    add(&mut out, &Change::Whiteout(path.clone()));
                }
                add(&mut out, &Change::Entry(path.clone()));
            }
            None => add(&mut out, &Change::Entry(path.clone())),
        }
    }
    for path in lower.keys() {
        let dir = parent(path);
        let parent_kept = dir.as_os_str().is_empty() || is_dir(upper, dir);
        if !upper.contains_key(path) && parent_kept && !opaque.contains(dir) {
            add(&mut out, &Change::Whiteout(path.clone()));
        }
    }
    for dir in &opaque {
        add(&mut out, &Change::Opaque(dir.to_path_buf()));
    }
    // Every directory above a change, so the layer unpacks on its own.
    let dirs: Vec<PathBuf> = out
        .iter()
        .flat_map(|(dir, _, _)| {
            dir.ancestors()
                .filter(|a| !a.as_os_str().is_empty())
                .map(Path::to_owned)
        })
        .collect();
    for dir in dirs {
        add(&mut out, &Change::Entry(dir));
    }
    out.into_iter()
        .map(|(dir, rank, name)| {
            let path = dir.join(&name);
            match rank {
                0 => Change::Opaque(dir),
                1 => {
                    let hidden = name.as_bytes()[WHITEOUT_PREFIX.len()..].to_vec();
                    Change::Whiteout(dir.join(OsStr::from_bytes(&hidden)))
                }
                _ => Change::Entry(path),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: Kind) -> Node {
        Node {
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    fn file(byte: u8) -> Node {
        node(Kind::File {
            size: 1,
            hash: [byte; 32],
        })
    }

    fn dir() -> Node {
        Node {
            mode: 0o755,
            ..node(Kind::Dir)
        }
    }

    fn tree(entries: &[(&str, Node)]) -> Tree {
        entries.iter().map(|(p, n)| (PathBuf::from(p), n.clone())).collect()
    }

    fn show(changes: &[Change]) -> Vec<String> {
        changes.iter().map(|c| c.tar_path().display().to_string()).collect()
    }

    #[test]
    fn a_first_layer_holds_everything_parents_first() {
        let upper = tree(&[("a", dir()), ("a/b", file(1)), ("c", file(2))]);
        assert_eq!(show(&changes(&Tree::new(), &upper)), ["a", "c", "a/b"]);
    }

    #[test]
    fn changed_and_new_files_come_with_their_directories_and_deletions_become_whiteouts() {
        let lower = tree(&[
            ("etc", dir()),
            ("etc/keep", file(1)),
            ("etc/edit", file(2)),
            ("etc/gone", file(3)),
            ("old", dir()),
            ("old/x", file(4)),
        ]);
        let upper = tree(&[
            ("etc", dir()),
            ("etc/keep", file(1)),
            ("etc/edit", file(9)),
            ("etc/new", file(5)),
        ]);
        assert_eq!(
            show(&changes(&lower, &upper)),
            [".wh.old", "etc", "etc/.wh.gone", "etc/edit", "etc/new"]
        );
    }

    #[test]
    fn a_directory_emptied_of_its_lower_entries_is_opaque_and_type_changes_are_whited_out() {
        let lower = tree(&[
            ("d", dir()),
            ("d/a", file(1)),
            ("d/b", file(2)),
            ("x", dir()),
            ("x/y", file(3)),
        ]);
        let upper = tree(&[("d", dir()), ("d/c", file(3)), ("x", file(4))]);
        assert_eq!(
            show(&changes(&lower, &upper)),
            [".wh.x", "d", "x", "d/.wh..wh..opq", "d/c"]
        );
        let opaque = changes(&lower, &upper);
        assert!(opaque.contains(&Change::Opaque(PathBuf::from("d"))));
        assert!(opaque.contains(&Change::Whiteout(PathBuf::from("x"))));
    }

    #[test]
    fn permission_and_owner_changes_count_and_identical_trees_give_nothing() {
        let lower = tree(&[("f", file(1))]);
        let chmod = tree(&[("f", Node { mode: 0o600, ..file(1) })]);
        assert_eq!(show(&changes(&lower, &chmod)), ["f"]);
        assert!(changes(&lower, &lower).is_empty());
    }
}
