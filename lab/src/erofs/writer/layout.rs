//! Metadata layout: the second half of the writer, run once every entry is in.
//!
//! 1. Order the reachable nodes breadth first from the root (children by name), counting links.
//! 2. Pick the build time and, per inode, compact or extended form, inline tail or not.
//! 3. Give each inode a 32-byte aligned slot in the metadata area (which starts after the file data), so that
//!    an inode, its xattrs and its inline tail never cross a block boundary; nid = slot offset / 32.
//! 4. Give the directory and symlink blocks that are not inlined addresses after the metadata area.
//! 5. Write the metadata area, then those blocks, and return the superblock block for the caller to write.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::tree::{Attrs, Kind, NodeId, ROOT, Tree};
use super::{FileTime, Options, Output, Result, WriteError};
use crate::erofs::format::{
    self, COMPACT_INODE_SIZE, COMPAT_MTIME, COMPAT_SB_CHKSUM, DIRENT_SIZE, Dirent, DiskInode, EXTENDED_INODE_SIZE,
    INODE_SLOT, Layout, Superblock, XATTR_HEADER_SIZE, mode,
};

/// What the caller needs to finish the image.
pub(super) struct Finished {
    pub(super) block0: Vec<u8>,
    pub(super) inodes: u64,
    pub(super) blocks: u64,
    pub(super) build_time: FileTime,
}

/// Per-inode layout decisions.
struct Plan {
    node: NodeId,
    parent: NodeId,
    nlink: u32,
    extended: bool,
    /// Offset of the inode in the metadata area.
    pos: u64,
    /// Bytes of data stored inline after the inode and its xattrs.
    inline_len: u64,
    /// Blocks of directory or symlink data placed after the metadata area, and where.
    late_blocks: u64,
    late_blkaddr: u64,
}

/// Size of the inline xattr body of `attrs`, counting `extra` (a name with a one-byte value) if given.
pub(super) fn xattr_body_size(attrs: &Attrs, extra: Option<&[u8]>) -> usize {
    let entries = attrs
        .xattrs
        .iter()
        .map(|(name, value)| (name.as_slice(), value.len()))
        .chain(extra.map(|name| (name, 1)));
    let mut size = 0;
    for (name, value_len) in entries {
        let suffix = format::xattr_split_name(name).map_or(name.len(), |(_, s)| s.len());
        size += format::xattr_entry_size(suffix, value_len);
    }
    if size == 0 { 0 } else { XATTR_HEADER_SIZE + size }
}

/// The xattrs of a node as stored: its own plus the opaque marker.
fn node_xattrs<'a>(tree: &'a Tree, id: NodeId, opaque_xattr: &'a [u8]) -> Vec<(&'a [u8], &'a [u8])> {
    let node = &tree.nodes[id];
    let mut all: Vec<(&[u8], &[u8])> = node
        .attrs
        .xattrs
        .iter()
        .filter(|(name, _)| !(node.opaque && name.as_slice() == opaque_xattr))
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    if node.opaque {
        all.push((opaque_xattr, b"y"));
    }
    all.sort_by_key(|&(name, _)| format::xattr_split_name(name).map(|(i, s)| (i, s.to_vec())));
    all
}

fn encode_xattrs(xattrs: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
    if xattrs.is_empty() {
        return;
    }
    out.extend_from_slice(&[0u8; XATTR_HEADER_SIZE]);
    for &(name, value) in xattrs {
        // `Builder::attrs` accepted only names with a prefix and lengths that fit.
        let (index, suffix) = format::xattr_split_name(name).unwrap_or((0, name));
        let start = out.len();
        out.push(suffix.len() as u8);
        out.push(index);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(suffix);
        out.extend_from_slice(value);
        let padded = start + format::xattr_entry_size(suffix.len(), value.len());
        out.resize(padded, 0);
    }
}

fn file_type(kind: &Kind) -> u8 {
    match kind {
        Kind::Directory(_) => format::FT_DIR,
        Kind::File(_) => format::FT_REG,
        Kind::Symlink(_) => format::FT_SYMLINK,
        Kind::CharDevice(_) => format::FT_CHR,
        Kind::BlockDevice(_) => format::FT_BLK,
        Kind::Fifo => format::FT_FIFO,
        Kind::Socket => format::FT_SOCK,
    }
}

fn type_bits(kind: &Kind) -> u16 {
    match kind {
        Kind::Directory(_) => mode::S_IFDIR,
        Kind::File(_) => mode::S_IFREG,
        Kind::Symlink(_) => mode::S_IFLNK,
        Kind::CharDevice(_) => mode::S_IFCHR,
        Kind::BlockDevice(_) => mode::S_IFBLK,
        Kind::Fifo => mode::S_IFIFO,
        Kind::Socket => mode::S_IFSOCK,
    }
}

/// Encodes a directory's blocks: entries sorted by name, `.` and `..` included, each block holding as many
/// whole entries as fit; every block but the last padded to the block size.
fn dir_bytes(tree: &Tree, id: NodeId, parent: NodeId, nids: &[u64], bs: usize) -> Vec<u8> {
    let Kind::Directory(children) = &tree.nodes[id].kind else {
        return Vec::new();
    };
    let mut entries: Vec<(&[u8], u64, u8)> = Vec::with_capacity(children.len() + 2);
    entries.push((b".", nids[id], format::FT_DIR));
    entries.push((b"..", nids[parent], format::FT_DIR));
    for (name, &child) in children {
        entries.push((name, nids[child], file_type(&tree.nodes[child].kind)));
    }
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    let mut rest = entries.as_slice();
    while !rest.is_empty() {
        let mut used = 0;
        let mut count = 0;
        for entry in rest {
            let need = DIRENT_SIZE + entry.0.len();
            if used + need > bs {
                break;
            }
            used += need;
            count += 1;
        }
        let (block, tail) = rest.split_at(count);
        if !out.is_empty() {
            let padded = out.len().next_multiple_of(bs);
            out.resize(padded, 0);
        }
        let mut nameoff = DIRENT_SIZE * block.len();
        for &(name, nid, ft) in block {
            Dirent {
                nid,
                nameoff: nameoff as u16,
                file_type: ft,
            }
            .encode(&mut out);
            nameoff += name.len();
        }
        for &(name, _, _) in block {
            out.extend_from_slice(name);
        }
        rest = tail;
    }
    out
}

/// The build time: the fixed one, or the most common modification time (ties: the earliest).
fn pick_build_time(opts: &Options, tree: &Tree, order: &[Plan]) -> FileTime {
    if let Some(fixed) = opts.build_time {
        return fixed;
    }
    let mut counts: HashMap<FileTime, u64> = HashMap::new();
    for plan in order {
        if let Some(t) = tree.nodes[plan.node].attrs.mtime {
            *counts.entry(t).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map_or(FileTime::default(), |(t, _)| t)
}

/// Breadth-first order of the reachable nodes with each node's parent and link count.
fn order_nodes(tree: &Tree) -> Result<Vec<Plan>> {
    let mut seen: Vec<Option<usize>> = vec![None; tree.nodes.len()];
    let mut order = Vec::new();
    let mut queue = VecDeque::from([(ROOT, ROOT)]);
    seen[ROOT] = Some(0);
    order.push(new_plan(ROOT, ROOT));
    while let Some((id, _)) = queue.pop_front() {
        let Kind::Directory(children) = &tree.nodes[id].kind else {
            continue;
        };
        for &child in children.values() {
            match seen[child] {
                Some(at) => order[at].nlink += 1,
                None => {
                    seen[child] = Some(order.len());
                    order.push(new_plan(child, id));
                    if tree.nodes[child].kind.is_dir() {
                        queue.push_back((child, id));
                        let at = seen[id].unwrap_or(0);
                        order[at].nlink += 1;
                    }
                }
            }
        }
    }
    if order.len() as u64 > u64::from(u32::MAX) {
        return Err(WriteError::TooManyInodes {
            inodes: order.len() as u64,
        });
    }
    Ok(order)
}

fn new_plan(node: NodeId, parent: NodeId) -> Plan {
    Plan {
        node,
        parent,
        // Directories start at 2 (`.` and the parent's entry) and gain one per subdirectory; other nodes
        // start at 1 and gain one per extra name.
        nlink: 0,
        extended: false,
        pos: 0,
        inline_len: 0,
        late_blocks: 0,
        late_blkaddr: 0,
    }
}

/// Runs the layout and writes the metadata area and late blocks to `out` (positioned at the end of the data
/// area). Returns the superblock block.
pub(super) fn write_metadata(
    opts: &Options,
    tree: &Tree,
    tails: &File,
    opaque_xattr: &[u8],
    out: &mut Output,
) -> Result<Finished> {
    let bs = u64::from(opts.block_size);
    let mut order = order_nodes(tree)?;
    for plan in &mut order {
        plan.nlink += if tree.nodes[plan.node].kind.is_dir() { 2 } else { 1 };
    }
    let build_time = pick_build_time(opts, tree, &order);
    let meta_blkaddr = out.pos / bs;

    // Provisional nids (all zero) give the same directory sizes as the real ones.
    let zero_nids = vec![0u64; tree.nodes.len()];
    // nid 0 is never used: readdir(3) drops entries whose inode number is 0.
    let mut cursor = INODE_SLOT;
    for plan in &mut order {
        let node = &tree.nodes[plan.node];
        let attrs = &node.attrs;
        let mtime = attrs.mtime.unwrap_or(build_time);
        let data_len = match &node.kind {
            Kind::File(data) => data.size,
            Kind::Directory(_) => dir_bytes(tree, plan.node, plan.parent, &zero_nids, bs as usize).len() as u64,
            Kind::Symlink(target) => target.len() as u64,
            _ => 0,
        };
        plan.extended = mtime != build_time
            || attrs.uid > 0xFFFF
            || attrs.gid > 0xFFFF
            || plan.nlink > 0xFFFF
            || data_len > u64::from(u32::MAX);
        let isize = if plan.extended {
            EXTENDED_INODE_SIZE
        } else {
            COMPACT_INODE_SIZE
        } as u64;
        let xsize = xattr_body_size_of(&node_xattrs(tree, plan.node, opaque_xattr)) as u64;
        let tail = data_len % bs;
        match &node.kind {
            Kind::File(data) => {
                plan.inline_len = if data.spooled_tail.is_some() { tail } else { 0 };
            }
            Kind::Directory(_) | Kind::Symlink(_) => {
                let inline = opts.inline_data && tail > 0 && isize + xsize + tail <= bs;
                plan.inline_len = if inline { tail } else { 0 };
                plan.late_blocks = (data_len - plan.inline_len).div_ceil(bs);
            }
            _ => {}
        }
        let total = isize + xsize + plan.inline_len;
        let mut pos = cursor.next_multiple_of(INODE_SLOT);
        if pos % bs + total > bs {
            pos = pos.next_multiple_of(bs);
        }
        plan.pos = pos;
        cursor = pos + total;
    }
    let meta_blocks = cursor.div_ceil(bs);
    let mut next_late = meta_blkaddr + meta_blocks;
    for plan in &mut order {
        if plan.late_blocks > 0 {
            plan.late_blkaddr = next_late;
            next_late += plan.late_blocks;
        }
    }
    let blocks = next_late;
    if blocks > u64::from(u32::MAX) {
        return Err(WriteError::TooManyBlocks { blocks });
    }
    let root_nid = order[0].pos / INODE_SLOT;
    let mut nids = vec![0u64; tree.nodes.len()];
    for plan in &order {
        nids[plan.node] = plan.pos / INODE_SLOT;
    }

    // The metadata area.
    let meta_start = out.pos;
    let mut buf = Vec::with_capacity(bs as usize);
    for (index, plan) in order.iter().enumerate() {
        let node = &tree.nodes[plan.node];
        let attrs = &node.attrs;
        let mtime = attrs.mtime.unwrap_or(build_time);
        buf.clear();
        let xattrs = node_xattrs(tree, plan.node, opaque_xattr);
        let mut inline = Vec::new();
        let (layout_size, u) = match &node.kind {
            Kind::File(data) => {
                if let Some(at) = data.spooled_tail {
                    inline = vec![0u8; plan.inline_len as usize];
                    tails.read_exact_at(&mut inline, at).map_err(WriteError::Output)?;
                }
                let has_blocks = data.size >= bs || (data.size > 0 && data.spooled_tail.is_none());
                (data.size, if has_blocks { data.blkaddr } else { 0 })
            }
            Kind::Directory(_) => {
                let bytes = dir_bytes(tree, plan.node, plan.parent, &nids, bs as usize);
                inline = bytes[bytes.len() - plan.inline_len as usize..].to_vec();
                (bytes.len() as u64, plan.late_blkaddr as u32)
            }
            Kind::Symlink(target) => {
                inline = target[target.len() - plan.inline_len as usize..].to_vec();
                (target.len() as u64, plan.late_blkaddr as u32)
            }
            Kind::CharDevice(rdev) | Kind::BlockDevice(rdev) => (0, *rdev),
            Kind::Fifo | Kind::Socket => (0, 0),
        };
        let layout = if plan.inline_len > 0 {
            Layout::FlatInline
        } else {
            Layout::FlatPlain
        };
        DiskInode {
            extended: plan.extended,
            layout_bits: layout.bits(),
            xattr_icount: xattr_icount(&xattrs),
            mode: type_bits(&node.kind) | attrs.permissions,
            nlink: plan.nlink,
            size: layout_size,
            u,
            ino: index as u32 + 1,
            uid: attrs.uid,
            gid: attrs.gid,
            mtime: mtime.secs as u64,
            mtime_nsec: mtime.nanos,
        }
        .encode(&mut buf);
        encode_xattrs(&xattrs, &mut buf);
        buf.extend_from_slice(&inline);
        out.zeros(meta_start + plan.pos - out.pos)?;
        out.write(&buf)?;
    }
    out.pad_to(bs)?;

    // Directory and symlink blocks that were not inlined.
    for plan in order.iter().filter(|p| p.late_blocks > 0) {
        let node = &tree.nodes[plan.node];
        let bytes = match &node.kind {
            Kind::Directory(_) => dir_bytes(tree, plan.node, plan.parent, &nids, bs as usize),
            Kind::Symlink(target) => target.clone(),
            _ => Vec::new(),
        };
        out.write(&bytes[..bytes.len() - plan.inline_len as usize])?;
        out.pad_to(bs)?;
    }

    let mut sb = Superblock {
        feature_compat: COMPAT_MTIME,
        blkszbits: opts.block_size.trailing_zeros() as u8,
        root_nid: u16::try_from(root_nid).unwrap_or(0),
        inos: order.len() as u64,
        build_time: build_time.secs as u64,
        build_time_nsec: build_time.nanos,
        blocks: blocks as u32,
        meta_blkaddr: meta_blkaddr as u32,
        uuid: opts.uuid,
        ..Superblock::default()
    };
    let block0_len = (format::SUPERBLOCK_OFFSET + Superblock::SIZE as u64).next_multiple_of(bs);
    let mut block0 = vec![0u8; block0_len as usize];
    let sb_at = format::SUPERBLOCK_OFFSET as usize;
    if bs > format::SUPERBLOCK_OFFSET {
        sb.feature_compat |= COMPAT_SB_CHKSUM;
        block0[sb_at..sb_at + Superblock::SIZE].copy_from_slice(&sb.to_bytes());
        sb.checksum = format::superblock_checksum(&block0).unwrap_or(0);
    }
    block0[sb_at..sb_at + Superblock::SIZE].copy_from_slice(&sb.to_bytes());
    Ok(Finished {
        block0,
        inodes: order.len() as u64,
        blocks,
        build_time,
    })
}

fn xattr_body_size_of(xattrs: &[(&[u8], &[u8])]) -> usize {
    let mut buf = Vec::new();
    encode_xattrs(xattrs, &mut buf);
    buf.len()
}

fn xattr_icount(xattrs: &[(&[u8], &[u8])]) -> u16 {
    match xattr_body_size_of(xattrs) {
        0 => 0,
        size => ((size - XATTR_HEADER_SIZE) / 4 + 1) as u16,
    }
}
