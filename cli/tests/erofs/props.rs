//! Property test: random trees → tar → our writer → our reader (and the kernel, when root) → the same tree.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sha2::{Digest, Sha256};

use super::support::{Entry, Mount, Snapshot, assert_same, snapshot_dir, snapshot_image};
use veritylab::erofs::{self, Image, Options, Whiteouts};

#[derive(Debug, Clone)]
struct Meta {
    perms: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, u32),
    xattrs: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Clone)]
enum Node {
    File(Meta, Vec<u8>),
    Dir(Meta, BTreeMap<String, Node>),
    Symlink(Meta, String),
    Fifo(Meta),
    CharDevice(Meta, u32, u32),
}

fn meta() -> impl Strategy<Value = Meta> {
    (
        0u32..0o10000,
        prop_oneof![Just(0u32), 1u32..70_000, any::<u32>()],
        prop_oneof![Just(0u32), 1u32..70_000],
        (
            prop_oneof![Just(1_600_000_000i64), 0i64..(1 << 33)],
            prop_oneof![Just(0u32), 0u32..1_000_000_000],
        ),
        btree_map("user\\.[a-z]{1,12}", vec(any::<u8>(), 0..40), 0..3),
    )
        .prop_map(|(perms, uid, gid, mtime, xattrs)| Meta {
            perms,
            uid,
            gid,
            mtime,
            xattrs,
        })
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z0-9][a-z0-9._-]{0,12}",
        1 => "[a-z]{250,255}",
    ]
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(511),
        Just(512),
        Just(513),
        Just(4095),
        Just(4096),
        Just(4097),
        0usize..20_000
    ]
}

/// Special files and symlinks: no `user.*` xattrs (Linux refuses them on such inodes, so the kernel lists
/// them but `getxattr` answers ENODATA).
fn special_meta() -> impl Strategy<Value = Meta> {
    meta().prop_map(|m| Meta {
        xattrs: BTreeMap::new(),
        ..m
    })
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        4 => (meta(), size().prop_flat_map(|n| vec(any::<u8>(), n))).prop_map(|(m, d)| Node::File(m, d)),
        1 => (special_meta(), vec("[a-z_-][a-z._-]{0,15}", 1..48))
            .prop_map(|(m, parts)| Node::Symlink(Meta { perms: 0o777, ..m }, parts.join("/"))),
        1 => special_meta().prop_map(Node::Fifo),
        1 => (special_meta(), 0u32..4096, 0u32..(1 << 20)).prop_map(|(m, a, b)| Node::CharDevice(m, a, b)),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        (meta(), btree_map(name(), inner, 0..8)).prop_map(|(m, c)| Node::Dir(m, c))
    })
}

fn tree() -> impl Strategy<Value = (Meta, BTreeMap<String, Node>, u32, bool)> {
    (
        meta(),
        btree_map(name(), node(), 0..10),
        prop_oneof![Just(4096u32), Just(512)],
        any::<bool>(),
    )
}

fn header(kind: tar::EntryType, m: &Meta, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(m.perms);
    h.set_size(size);
    h.set_mtime(0);
    h
}

fn pax(b: &mut tar::Builder<Vec<u8>>, m: &Meta) {
    let mtime = format!("{}.{:09}", m.mtime.0, m.mtime.1);
    let (uid, gid) = (m.uid.to_string(), m.gid.to_string());
    let mut records: Vec<(String, Vec<u8>)> = vec![
        ("mtime".into(), mtime.into_bytes()),
        ("uid".into(), uid.into_bytes()),
        ("gid".into(), gid.into_bytes()),
    ];
    for (k, v) in &m.xattrs {
        records.push((format!("SCHILY.xattr.{k}"), v.clone()));
    }
    b.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
        .unwrap();
}

fn expected_entry(kind: char, m: &Meta) -> Entry {
    Entry {
        kind,
        perms: m.perms,
        uid: m.uid,
        gid: m.gid,
        mtime: m.mtime,
        content: None,
        link: None,
        rdev: None,
        xattrs: m
            .xattrs
            .iter()
            .map(|(k, v)| (k.clone().into_bytes(), v.clone()))
            .collect(),
        hardlink: None,
    }
}

fn emit(b: &mut tar::Builder<Vec<u8>>, snap: &mut Snapshot, path: &str, node: &Node) {
    let key = format!("/{path}");
    match node {
        Node::File(m, data) => {
            pax(b, m);
            let mut h = header(tar::EntryType::Regular, m, data.len() as u64);
            b.append_data(&mut h, path, data.as_slice()).unwrap();
            let mut e = expected_entry('-', m);
            e.content = Some(Sha256::digest(data).into());
            snap.insert(key, e);
        }
        Node::Symlink(m, target) => {
            pax(b, m);
            let mut h = header(tar::EntryType::Symlink, m, 0);
            b.append_link(&mut h, path, target).unwrap();
            let mut e = expected_entry('l', m);
            e.link = Some(target.clone().into_bytes());
            snap.insert(key, e);
        }
        Node::Fifo(m) => {
            pax(b, m);
            let mut h = header(tar::EntryType::Fifo, m, 0);
            b.append_data(&mut h, path, &[][..]).unwrap();
            snap.insert(key, expected_entry('p', m));
        }
        Node::CharDevice(m, major, minor) => {
            pax(b, m);
            let mut h = header(tar::EntryType::Char, m, 0);
            h.set_device_major(*major).unwrap();
            h.set_device_minor(*minor).unwrap();
            b.append_data(&mut h, path, &[][..]).unwrap();
            let mut e = expected_entry('c', m);
            e.rdev = Some((*major, *minor));
            snap.insert(key, e);
        }
        Node::Dir(m, children) => {
            pax(b, m);
            let mut h = header(tar::EntryType::Directory, m, 0);
            b.append_data(&mut h, format!("{path}/"), &[][..]).unwrap();
            snap.insert(key, expected_entry('d', m));
            for (name, child) in children {
                emit(b, snap, &format!("{path}/{name}"), child);
            }
        }
    }
}

/// Builds the tar and the snapshot our image must show.
fn archive(root: &Meta, children: &BTreeMap<String, Node>) -> (Vec<u8>, Snapshot) {
    let mut b = tar::Builder::new(Vec::new());
    let mut snap = Snapshot::new();
    pax(&mut b, root);
    let mut h = header(tar::EntryType::Directory, root, 0);
    b.append_data(&mut h, "./", &[][..]).unwrap();
    snap.insert("/".into(), expected_entry('d', root));
    for (name, child) in children {
        emit(&mut b, &mut snap, name, child);
    }
    (b.into_inner().unwrap(), snap)
}

fn check(case: (Meta, BTreeMap<String, Node>, u32, bool), kernel: bool) -> Result<(), TestCaseError> {
    let (root, children, block_size, inline_data) = case;
    let (tar, expected) = archive(&root, &children);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.erofs");
    let opts = Options {
        block_size,
        inline_data,
        ..Options::default()
    };
    erofs::build_from_tar(&out, tar.as_slice(), opts, Whiteouts::Keep).unwrap();
    let image = Image::open(std::fs::read(&out).unwrap()).unwrap();
    assert_same(&expected, &snapshot_image(&image));
    if kernel {
        let mount = Mount::erofs(&out);
        assert_same(&expected, &snapshot_dir(mount.path()));
    }
    Ok(())
}

#[test]
fn random_trees_round_trip_through_our_reader() {
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    runner.run(&tree(), |case| check(case, false)).unwrap();
}

#[test]
fn random_trees_round_trip_through_the_kernel() {
    testkit::require_root!();
    let mut runner = TestRunner::new(Config {
        cases: 16,
        ..Config::default()
    });
    runner.run(&tree(), |case| check(case, true)).unwrap();
}
