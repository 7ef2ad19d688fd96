//! [`Merged`]: a stack of EROFS layers seen as one read-only tree, with the kernel overlayfs rules for a
//! read-only stack of lower layers.
//!
//! Layers are given lowest first. A name is looked up from the top layer down, in the layers where its
//! parent directory takes part in the merge:
//!
//! - the first layer that holds the name decides: a whiteout (a character device 0:0, as the converter and
//!   `mkfs.erofs --aufs` store OCI `.wh.NAME` files) hides the name and everything below it; a non-directory
//!   is the entry, whatever lies below;
//! - a directory merges with the directories of the same name in the layers below it, until a layer holds a
//!   whiteout or a non-directory there, or until a directory marked opaque (`<ns>.overlay.opaque=y`, in the
//!   namespace the view was opened with) ends the merge;
//! - the root directories of all layers always merge (overlayfs ignores an opaque root).
//!
//! A merged directory lists the union of its layers' entries, the upper entry winning, whiteouts removed.
//! Metadata, xattrs and data come from the uppermost layer of an entry; the overlay's private xattrs
//! (`<ns>.overlay.*`) are hidden; a merged directory reports one link, as overlayfs does.
//!
//! Not followed, because the converter never writes them: redirects and metacopy (features of writable
//! upper layers), "xwhiteouts" (regular files marked `<ns>.overlay.whiteout` under a directory whose opaque
//! value is `x`, kernels 6.7+), and escaped `<ns>.overlay.overlay.*` xattrs, which are hidden like every
//! other private xattr rather than shown unescaped.
//!
//! Every entry has a stable inode number built from its uppermost layer and its nid there, so the same
//! image stack gives the same numbers in every process. Nodes handed out are remembered, so a FUSE server
//! can turn an inode number back into a node.

use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use verity_fuse::ReadAt;

use super::error::{Result, RootfsError};
use super::{MAX_LAYERS, display_path};
use crate::erofs::format;
use crate::erofs::reader::Xattr;
use crate::erofs::{FileKind, FileTime, Image, Inode, OverlayNamespace, ReadError};

/// Bits of an inode number that hold the nid; the bits above hold the layer index plus one.
const NID_BITS: u32 = 48;

/// An inode of one layer taking part in a merged entry.
#[derive(Debug, Clone)]
struct LayerInode {
    layer: usize,
    inode: Inode,
}

/// An entry of the merged view: a file, or a directory with the layers it merges.
#[derive(Debug, Clone)]
pub struct Node {
    ino: u64,
    path: Arc<[u8]>,
    /// Uppermost first; one element except for a merged directory.
    stack: Arc<[LayerInode]>,
}

impl Node {
    /// The stable inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The kind of file.
    pub fn kind(&self) -> FileKind {
        self.top().inode.kind
    }

    /// The path it was reached by (`/` for the root; for a node found by inode number, the first path).
    pub fn path(&self) -> &[u8] {
        &self.path
    }

    /// The layer its metadata and data come from (0 = the lowest).
    pub fn layer(&self) -> usize {
        self.top().layer
    }

    /// The layers a directory merges, uppermost first (one layer for anything else).
    pub fn layers(&self) -> Vec<usize> {
        self.stack.iter().map(|l| l.layer).collect()
    }

    fn top(&self) -> &LayerInode {
        &self.stack[0]
    }
}

/// What `stat` says about an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The stable inode number.
    pub ino: u64,
    /// The kind of file.
    pub kind: FileKind,
    /// File type and permission bits, as `st_mode`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (of the uppermost layer's inode for a directory).
    pub size: u64,
    /// Link count: 1 for a directory merged from several layers, as overlayfs reports.
    pub nlink: u32,
    /// Modification time.
    pub mtime: FileTime,
    /// `(major, minor)` of a character or block device.
    pub rdev: Option<(u32, u32)>,
    /// The layer the entry comes from (0 = the lowest).
    pub layer: usize,
}

impl Stat {
    /// Permission bits (with set-id and sticky bits).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }

    /// The device number as Linux encodes it in 32 bits (`new_encode_dev`), 0 for anything but a device.
    pub fn rdev_encoded(&self) -> u32 {
        self.rdev.map_or(0, |(major, minor)| format::encode_dev(major, minor))
    }
}

/// One entry of a merged directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: Vec<u8>,
    /// Its stable inode number.
    pub ino: u64,
    /// Its kind.
    pub kind: FileKind,
}

/// A read-only merged view of a layer stack.
pub struct Merged<R> {
    layers: Vec<Image<R>>,
    namespace: OverlayNamespace,
    private_prefix: &'static [u8],
    root: Node,
    nodes: RwLock<HashMap<u64, Node>>,
    listings: RwLock<Listings>,
}

/// A merged directory's entries, sorted by name.
type Listing = Arc<[(Vec<u8>, Node)]>;

/// Merged directory listings already computed, by directory inode number. Directory contents never change,
/// and each listing holds only bytes that passed verification when it was built (as the kernel's dentry
/// cache does); the cache is emptied once it holds [`LISTING_CACHE_ENTRIES`] entries.
#[derive(Default)]
struct Listings {
    by_dir: HashMap<u64, Listing>,
    entries: usize,
}

/// Most directory entries the listing cache holds before it starts over.
const LISTING_CACHE_ENTRIES: usize = 1 << 20;

impl<R> std::fmt::Debug for Merged<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merged")
            .field("layers", &self.layers.len())
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl<R: ReadAt> Merged<R> {
    /// Opens each source as an EROFS image and merges them, lowest layer first.
    pub fn from_sources(sources: Vec<R>, namespace: OverlayNamespace) -> Result<Self> {
        let images = sources
            .into_iter()
            .enumerate()
            .map(|(layer, src)| Image::open(src).map_err(|err| RootfsError::from_layer(layer, b"/", err)))
            .collect::<Result<Vec<_>>>()?;
        Self::new(images, namespace)
    }

    /// Merges opened images, lowest layer first, reading overlay markers from `namespace`.
    pub fn new(layers: Vec<Image<R>>, namespace: OverlayNamespace) -> Result<Self> {
        if layers.is_empty() {
            return Err(RootfsError::NoLayers);
        }
        if layers.len() > MAX_LAYERS {
            return Err(RootfsError::TooManyLayers { count: layers.len() });
        }
        let mut stack = Vec::with_capacity(layers.len());
        for (layer, image) in layers.iter().enumerate().rev() {
            let inode = image.root().map_err(|err| RootfsError::from_layer(layer, b"/", err))?;
            stack.push(LayerInode { layer, inode });
        }
        let top = &stack[0];
        let ino = encode_ino(top.layer, top.inode.nid).map_err(|err| RootfsError::from_layer(top.layer, b"/", err))?;
        let root = Node {
            ino,
            path: Arc::from(&b"/"[..]),
            stack: Arc::from(stack),
        };
        let private_prefix: &'static [u8] = match namespace {
            OverlayNamespace::Trusted => b"trusted.overlay.",
            OverlayNamespace::User => b"user.overlay.",
        };
        Ok(Self {
            nodes: RwLock::new(HashMap::from([(root.ino, root.clone())])),
            listings: RwLock::new(Listings::default()),
            layers,
            namespace,
            private_prefix,
            root,
        })
    }

    /// The layer images, lowest first.
    pub fn layers(&self) -> &[Image<R>] {
        &self.layers
    }

    /// The namespace overlay markers are read from.
    pub fn namespace(&self) -> OverlayNamespace {
        self.namespace
    }

    /// The root directory.
    pub fn root(&self) -> Node {
        self.root.clone()
    }

    /// The node with inode number `ino`, if this view handed it out (by a lookup or as the root).
    pub fn node(&self, ino: u64) -> Result<Node> {
        self.nodes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&ino)
            .cloned()
            .ok_or(RootfsError::StaleInode { ino })
    }

    /// Looks a path up from the root without following symlinks. Empty and `.` components are skipped and
    /// `..` goes back one component (never above the root).
    pub fn lookup(&self, path: &[u8]) -> Result<Node> {
        let mut parts: Vec<&[u8]> = Vec::new();
        for part in path.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    parts.pop();
                }
                name => parts.push(name),
            }
        }
        let mut cur = self.root();
        for name in parts {
            cur = self.child(&cur, name)?.ok_or_else(|| RootfsError::NotFound {
                path: display_path(path),
            })?;
        }
        Ok(cur)
    }

    /// Looks `name` up in the directory `dir`: `None` when it does not exist or is whited out. `.` is `dir`
    /// itself and `..` its parent (the root's parent is the root).
    pub fn child(&self, dir: &Node, name: &[u8]) -> Result<Option<Node>> {
        if dir.kind() != FileKind::Directory {
            return Err(RootfsError::NotADirectory {
                path: display_path(&dir.path),
            });
        }
        match name {
            b"" => return Ok(None),
            b"." => return Ok(Some(dir.clone())),
            b".." => return self.lookup(&child_path(&dir.path, b"..")).map(Some),
            _ if name.contains(&b'/') => return Ok(None),
            _ => {}
        }
        // From the directory's listing when it can be built; a listing fails as a whole on any unreadable
        // entry, so then the name is looked up alone and only its own errors count.
        if let Ok(listing) = self.listing(dir) {
            return Ok(listing
                .binary_search_by(|(entry, _)| entry.as_slice().cmp(name))
                .ok()
                .map(|i| listing[i].1.clone()));
        }
        let path = child_path(&dir.path, name);
        let mut found: Vec<LayerInode> = Vec::new();
        for parent in dir.stack.iter() {
            let layer = parent.layer;
            let err = |e| RootfsError::from_layer(layer, &path, e);
            let image = &self.layers[layer];
            let Some(entry) = image
                .read_dir(&parent.inode)
                .map_err(err)?
                .into_iter()
                .find(|e| e.name == name)
            else {
                continue;
            };
            let inode = image.inode(entry.nid).map_err(err)?;
            if !self.step(layer, inode, &mut found).map_err(err)? {
                break;
            }
        }
        self.node_of(path, found)
    }

    /// The entries of a directory, sorted by name, without `.` and `..`.
    pub fn read_dir(&self, dir: &Node) -> Result<Vec<Entry>> {
        Ok(self
            .listing(dir)?
            .iter()
            .map(|(name, node)| Entry {
                name: name.clone(),
                ino: node.ino,
                kind: node.kind(),
            })
            .collect())
    }

    /// The entries of a directory as nodes, sorted by name.
    pub fn children(&self, dir: &Node) -> Result<Vec<(Vec<u8>, Node)>> {
        Ok(self.listing(dir)?.to_vec())
    }

    /// The cached listing of a directory, built on first use.
    fn listing(&self, dir: &Node) -> Result<Listing> {
        if let Some(listing) = self
            .listings
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .by_dir
            .get(&dir.ino)
        {
            return Ok(listing.clone());
        }
        let listing: Listing = Arc::from(self.build_listing(dir)?);
        let mut cache = self.listings.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.entries + listing.len() > LISTING_CACHE_ENTRIES {
            *cache = Listings::default();
        }
        cache.entries += listing.len();
        Ok(cache.by_dir.entry(dir.ino).or_insert(listing).clone())
    }

    /// One pass over each merged layer's directory.
    fn build_listing(&self, dir: &Node) -> Result<Vec<(Vec<u8>, Node)>> {
        if dir.kind() != FileKind::Directory {
            return Err(RootfsError::NotADirectory {
                path: display_path(&dir.path),
            });
        }
        /// What the layers seen so far make of one name.
        #[derive(Default)]
        struct Merge {
            found: Vec<LayerInode>,
            settled: bool,
            last_layer: Option<usize>,
        }
        let mut names: BTreeMap<Vec<u8>, Merge> = BTreeMap::new();
        for parent in dir.stack.iter() {
            let layer = parent.layer;
            let err = |e| RootfsError::from_layer(layer, &dir.path, e);
            let image = &self.layers[layer];
            for entry in image.read_dir(&parent.inode).map_err(err)? {
                if entry.name == b"." || entry.name == b".." {
                    continue;
                }
                let merge = names.entry(entry.name).or_default();
                // A name a layer lists twice counts once, as `child` finds only the first.
                if merge.settled || merge.last_layer == Some(layer) {
                    continue;
                }
                merge.last_layer = Some(layer);
                let inode = image.inode(entry.nid).map_err(err)?;
                merge.settled = !self.step(layer, inode, &mut merge.found).map_err(err)?;
            }
        }
        let mut out = Vec::with_capacity(names.len());
        for (name, merge) in names {
            if let Some(node) = self.node_of(child_path(&dir.path, &name), merge.found)? {
                out.push((name, node));
            }
        }
        Ok(out)
    }

    /// What `stat` reports for a node.
    pub fn stat(&self, node: &Node) -> Stat {
        let top = node.top();
        let disk = &top.inode.disk;
        let merged_dir = top.inode.kind == FileKind::Directory && node.stack.len() > 1;
        Stat {
            ino: node.ino,
            kind: top.inode.kind,
            mode: u32::from(disk.mode),
            uid: disk.uid,
            gid: disk.gid,
            size: disk.size,
            nlink: if merged_dir { 1 } else { disk.nlink },
            mtime: FileTime {
                secs: i64::try_from(disk.mtime).unwrap_or(i64::MAX),
                nanos: disk.mtime_nsec,
            },
            rdev: top.inode.device(),
            layer: top.layer,
        }
    }

    /// Reads up to `buf.len()` bytes of a regular file at `offset`; returns how many were read (0 at the end).
    pub fn read_at(&self, node: &Node, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let top = node.top();
        match top.inode.kind {
            FileKind::File => self.layers[top.layer]
                .read_at(&top.inode, offset, buf)
                .map_err(|e| RootfsError::from_layer(top.layer, &node.path, e)),
            FileKind::Directory => Err(RootfsError::IsADirectory {
                path: display_path(&node.path),
            }),
            // Devices, fifos and sockets hold no data in the image; symlinks are read with `read_link`.
            _ => Err(RootfsError::NotAFile {
                path: display_path(&node.path),
            }),
        }
    }

    /// The target of a symbolic link.
    pub fn read_link(&self, node: &Node) -> Result<Vec<u8>> {
        let top = node.top();
        if top.inode.kind != FileKind::Symlink {
            return Err(RootfsError::NotASymlink {
                path: display_path(&node.path),
            });
        }
        self.layers[top.layer]
            .read_link(&top.inode)
            .map_err(|e| RootfsError::from_layer(top.layer, &node.path, e))
    }

    /// The extended attributes of a node, sorted by name, without the overlay's private ones.
    pub fn xattrs(&self, node: &Node) -> Result<Vec<Xattr>> {
        let top = node.top();
        let mut all = self.layers[top.layer]
            .xattrs(&top.inode)
            .map_err(|e| RootfsError::from_layer(top.layer, &node.path, e))?;
        all.retain(|(name, _)| !name.starts_with(self.private_prefix));
        all.sort();
        all.dedup_by(|a, b| a.0 == b.0);
        Ok(all)
    }

    /// One extended attribute (`None` when the node has no such visible attribute).
    pub fn xattr(&self, node: &Node, name: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.xattrs(node)?.into_iter().find(|(n, _)| n == name).map(|(_, v)| v))
    }

    /// Visits every node depth first, children in name order, starting with the root. A directory reached
    /// twice (only a malformed layer can link one twice) is a [`RootfsError::Cycle`].
    pub fn walk<E: From<RootfsError>>(&self, mut visit: impl FnMut(&Node) -> Result<(), E>) -> Result<(), E> {
        let mut seen = HashSet::new();
        let mut stack = vec![self.root()];
        while let Some(node) = stack.pop() {
            visit(&node)?;
            if node.kind() != FileKind::Directory {
                continue;
            }
            if !seen.insert(node.ino) {
                return Err(RootfsError::Cycle {
                    path: display_path(&node.path),
                }
                .into());
            }
            stack.extend(self.listing(&node)?.iter().rev().map(|(_, child)| child.clone()));
        }
        Ok(())
    }

    /// One layer's inode for a name, uppermost layers first: adds it to `found` when it takes part in the
    /// entry and says whether lower layers still may (the overlay rules of the module docs).
    fn step(&self, layer: usize, inode: Inode, found: &mut Vec<LayerInode>) -> std::result::Result<bool, ReadError> {
        if is_whiteout(&inode) {
            return Ok(false);
        }
        let is_dir = inode.kind == FileKind::Directory;
        if !found.is_empty() && !is_dir {
            // A non-directory below a directory ends the merge and stays hidden.
            return Ok(false);
        }
        let opaque = is_dir && self.is_opaque(&self.layers[layer], &inode)?;
        found.push(LayerInode { layer, inode });
        Ok(is_dir && !opaque)
    }

    /// The node of the layer inodes found for `path` (`None` when none were: absent or whited out).
    fn node_of(&self, path: Vec<u8>, found: Vec<LayerInode>) -> Result<Option<Node>> {
        let Some(top) = found.first() else {
            return Ok(None);
        };
        let ino = encode_ino(top.layer, top.inode.nid).map_err(|e| RootfsError::from_layer(top.layer, &path, e))?;
        let node = Node {
            ino,
            path: Arc::from(path),
            stack: Arc::from(found),
        };
        Ok(Some(self.remember(node)))
    }

    fn is_opaque(&self, image: &Image<R>, dir: &Inode) -> std::result::Result<bool, ReadError> {
        let name = self.namespace.opaque_xattr();
        Ok(image.xattrs(dir)?.iter().any(|(n, v)| n == name && v == b"y"))
    }

    /// Records a node under its inode number (the first node recorded for a number stays: another name of
    /// a hard-linked file resolves to the first) and returns it as reached.
    fn remember(&self, node: Node) -> Node {
        let mut nodes = self.nodes.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        nodes.entry(node.ino).or_insert_with(|| node.clone());
        node
    }
}

/// Whether an inode is an overlayfs whiteout: a character device 0:0.
pub(crate) fn is_whiteout(inode: &Inode) -> bool {
    inode.kind == FileKind::CharDevice && inode.device() == Some((0, 0))
}

/// The inode number of `nid` in `layer`: the layer index plus one above the nid's 48 bits, so no number is
/// 0 or FUSE's root number 1.
fn encode_ino(layer: usize, nid: u64) -> std::result::Result<u64, ReadError> {
    if nid >> NID_BITS != 0 {
        return Err(ReadError::InodeOutOfRange { nid });
    }
    Ok(((layer as u64 + 1) << NID_BITS) | nid)
}

fn child_path(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = dir.to_vec();
    if path.last() != Some(&b'/') {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}
