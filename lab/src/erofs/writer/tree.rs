//! The in-memory metadata tree the writer fills while file data streams into the image.
//!
//! Nodes live in one arena (`Vec<Node>`); directories map names to node indexes, so a hard link is two names
//! pointing at one index and replacing a path only re-points a name. Nothing here holds file data: a regular
//! file keeps where its blocks went and where its tail was spooled.

use std::collections::BTreeMap;

use super::FileTime;

/// Index of a node in the arena.
pub(crate) type NodeId = usize;

/// The root directory's index.
pub(crate) const ROOT: NodeId = 0;

/// Where a regular file's bytes are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileData {
    pub(crate) size: u64,
    /// First block of the data written to the image (meaningless when no full block was written).
    pub(crate) blkaddr: u32,
    /// `Some(offset)` when the tail (size % block size bytes) waits in the tail spool at `offset` to be
    /// inlined after the inode; `None` when every byte, tail included, sits in the data blocks.
    pub(crate) spooled_tail: Option<u64>,
}

/// What a node is.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Directory(BTreeMap<Vec<u8>, NodeId>),
    File(FileData),
    Symlink(Vec<u8>),
    CharDevice(u32),
    BlockDevice(u32),
    Fifo,
    Socket,
}

impl Kind {
    pub(crate) fn is_dir(&self) -> bool {
        matches!(self, Kind::Directory(_))
    }
}

/// Ownership, permissions, time and xattrs of a node.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attrs {
    pub(crate) permissions: u16,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// `None` for directories the input never described (they take the image's build time).
    pub(crate) mtime: Option<FileTime>,
    pub(crate) xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) attrs: Attrs,
    /// Overlay opaque marker (`.wh..wh..opq`), kept apart so a later entry for the directory keeps it.
    pub(crate) opaque: bool,
}

/// Why a tree operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TreeError {
    /// This many leading components name something that is not a directory.
    NotADirectory(usize),
    /// The path does not exist.
    Missing,
}

#[derive(Debug)]
pub(crate) struct Tree {
    pub(crate) nodes: Vec<Node>,
}

impl Tree {
    pub(crate) fn new() -> Self {
        Self {
            nodes: vec![Node {
                kind: Kind::Directory(BTreeMap::new()),
                attrs: Attrs {
                    permissions: 0o755,
                    ..Attrs::default()
                },
                opaque: false,
            }],
        }
    }

    fn children(&self, id: NodeId) -> Option<&BTreeMap<Vec<u8>, NodeId>> {
        match &self.nodes[id].kind {
            Kind::Directory(children) => Some(children),
            _ => None,
        }
    }

    /// Finds the node a path names, without creating anything.
    pub(crate) fn resolve(&self, path: &[Vec<u8>]) -> Result<NodeId, TreeError> {
        let mut cur = ROOT;
        for (depth, name) in path.iter().enumerate() {
            let children = self.children(cur).ok_or(TreeError::NotADirectory(depth))?;
            cur = *children.get(name).ok_or(TreeError::Missing)?;
        }
        Ok(cur)
    }

    /// Finds the directory `path`, creating missing directories (with `None` mtime) on the way.
    pub(crate) fn ensure_dir(&mut self, path: &[Vec<u8>]) -> Result<NodeId, TreeError> {
        let mut cur = ROOT;
        for (depth, name) in path.iter().enumerate() {
            let next = match self.children(cur) {
                None => return Err(TreeError::NotADirectory(depth)),
                Some(children) => children.get(name).copied(),
            };
            cur = match next {
                Some(id) => id,
                None => self.link(
                    cur,
                    name.clone(),
                    Node {
                        kind: Kind::Directory(BTreeMap::new()),
                        attrs: Attrs {
                            permissions: 0o755,
                            ..Attrs::default()
                        },
                        opaque: false,
                    },
                ),
            };
        }
        if self.nodes[cur].kind.is_dir() {
            Ok(cur)
        } else {
            Err(TreeError::NotADirectory(path.len()))
        }
    }

    fn link(&mut self, parent: NodeId, name: Vec<u8>, node: Node) -> NodeId {
        let id = self.nodes.len();
        self.nodes.push(node);
        self.set_child(parent, name, id);
        id
    }

    fn set_child(&mut self, parent: NodeId, name: Vec<u8>, id: NodeId) {
        if let Kind::Directory(children) = &mut self.nodes[parent].kind {
            children.insert(name, id);
        }
    }

    /// Puts `node` at `name` in directory `parent`. A directory over an existing directory only takes its
    /// attributes (the children stay, as `tar -x` does); anything else replaces what was there.
    pub(crate) fn put(&mut self, parent: NodeId, name: Vec<u8>, node: Node) -> NodeId {
        let existing = self.children(parent).and_then(|c| c.get(&name).copied());
        match existing {
            Some(id) if node.kind.is_dir() && self.nodes[id].kind.is_dir() => {
                self.nodes[id].attrs = node.attrs;
                id
            }
            _ => self.link(parent, name, node),
        }
    }

    /// Adds another name for an existing node.
    pub(crate) fn put_link(&mut self, parent: NodeId, name: Vec<u8>, target: NodeId) {
        self.set_child(parent, name, target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Node {
        Node {
            kind: Kind::Fifo,
            attrs: Attrs::default(),
            opaque: false,
        }
    }

    fn p(parts: &[&str]) -> Vec<Vec<u8>> {
        parts.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn missing_parents_are_created_and_files_block_descent() {
        let mut tree = Tree::new();
        let dir = tree.ensure_dir(&p(&["a", "b"])).unwrap();
        let f = tree.put(dir, b"f".to_vec(), file());
        assert_eq!(tree.resolve(&p(&["a", "b", "f"])), Ok(f));
        assert_eq!(
            tree.ensure_dir(&p(&["a", "b", "f", "g"])),
            Err(TreeError::NotADirectory(3))
        );
        assert_eq!(tree.resolve(&p(&["a", "x"])), Err(TreeError::Missing));
    }

    #[test]
    fn a_directory_over_a_directory_keeps_its_children() {
        let mut tree = Tree::new();
        let a = tree.ensure_dir(&p(&["a"])).unwrap();
        tree.put(a, b"f".to_vec(), file());
        let again = tree.put(
            ROOT,
            b"a".to_vec(),
            Node {
                kind: Kind::Directory(BTreeMap::new()),
                attrs: Attrs {
                    permissions: 0o700,
                    ..Attrs::default()
                },
                opaque: false,
            },
        );
        assert_eq!(again, a);
        assert!(tree.resolve(&p(&["a", "f"])).is_ok());
        assert_eq!(tree.nodes[a].attrs.permissions, 0o700);
    }
}
