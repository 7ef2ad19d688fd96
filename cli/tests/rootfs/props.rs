//! Property tests: random layer stacks against a small reference model of overlayfs's rules (and, as root,
//! against the kernel's overlay itself), and malformed layers that must never make the view panic.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sha2::{Digest, Sha256};

use super::support::{Item, Layers, Mount};
use veritylab::erofs::OverlayNamespace;
use veritylab::rootfs::Kind;
use veritylab::rootfs::{Merged, Snapshot};

/// An entry of one generated layer.
#[derive(Debug, Clone)]
enum Gen {
    File(Vec<u8>),
    Symlink(String),
    Whiteout,
    Dir {
        children: BTreeMap<String, Gen>,
        opaque: bool,
    },
}

/// A generated layer: the root's children, and whether the root itself is marked opaque.
#[derive(Debug, Clone)]
struct GenLayer {
    root: BTreeMap<String, Gen>,
    root_opaque: bool,
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![Just("a".to_owned()), Just("b".to_owned()), Just("c".to_owned())]
}

fn gen_node() -> impl Strategy<Value = Gen> {
    let leaf = prop_oneof![
        3 => prop_oneof![vec(any::<u8>(), 0..20), vec(any::<u8>(), 4090..4200)].prop_map(Gen::File),
        1 => "/?[a-c]{1,3}(/[a-c]{1,3}){0,2}".prop_map(Gen::Symlink),
        2 => Just(Gen::Whiteout),
    ];
    leaf.prop_recursive(3, 32, 3, |inner| {
        (btree_map(name(), inner, 0..4), prop::bool::weighted(0.25))
            .prop_map(|(children, opaque)| Gen::Dir { children, opaque })
    })
}

fn gen_layer() -> impl Strategy<Value = GenLayer> {
    (btree_map(name(), gen_node(), 0..4), prop::bool::weighted(0.1))
        .prop_map(|(root, root_opaque)| GenLayer { root, root_opaque })
}

fn stack() -> impl Strategy<Value = Vec<GenLayer>> {
    vec(gen_layer(), 1..5)
}

/// The tar items of a generated layer.
fn items(layer: &GenLayer) -> Vec<Item> {
    fn add(dir: &str, children: &BTreeMap<String, Gen>, out: &mut Vec<Item>) {
        for (name, node) in children {
            let path = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            match node {
                Gen::File(data) => out.push(Item::File(path, data.clone())),
                Gen::Symlink(target) => out.push(Item::Symlink(path, target.clone())),
                Gen::Whiteout => out.push(Item::Whiteout(path)),
                Gen::Dir { children, opaque } => {
                    out.push(Item::Dir(path.clone(), 0o755));
                    if *opaque {
                        out.push(Item::Opaque(path.clone()));
                    }
                    add(&path, children, out);
                }
            }
        }
    }
    let mut out = vec![Item::Dir(".".into(), 0o755)];
    if layer.root_opaque {
        out.push(Item::Opaque(String::new()));
    }
    add("", &layer.root, &mut out);
    out
}

/// What the reference model says a path holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    File(Vec<u8>),
    Symlink(String),
    Dir,
}

/// The overlay rules, directly over the generated trees: `dirs` are the directories that merge, uppermost
/// first. The first layer to hold a name decides it: a whiteout hides it, a file or symlink is it, a
/// directory merges with the directories below until a whiteout, a non-directory or an opaque directory.
fn model(dirs: &[&BTreeMap<String, Gen>], prefix: &str, out: &mut BTreeMap<String, Seen>) {
    let mut names: Vec<&String> = dirs.iter().flat_map(|d| d.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let path = format!("{prefix}/{name}");
        let mut merged: Vec<&BTreeMap<String, Gen>> = Vec::new();
        for dir in dirs {
            match dir.get(name) {
                None => continue,
                Some(Gen::Whiteout) => break,
                Some(Gen::File(data)) => {
                    if merged.is_empty() {
                        out.insert(path.clone(), Seen::File(data.clone()));
                    }
                    break;
                }
                Some(Gen::Symlink(target)) => {
                    if merged.is_empty() {
                        out.insert(path.clone(), Seen::Symlink(target.clone()));
                    }
                    break;
                }
                Some(Gen::Dir { children, opaque }) => {
                    merged.push(children);
                    if *opaque {
                        break;
                    }
                }
            }
        }
        if !merged.is_empty() {
            out.insert(path.clone(), Seen::Dir);
            model(&merged, &path, out);
        }
    }
}

/// The model's tree of a stack given lowest first (the roots always merge; an opaque root is ignored).
fn expected(stack: &[GenLayer]) -> BTreeMap<String, Seen> {
    let roots: Vec<&BTreeMap<String, Gen>> = stack.iter().rev().map(|l| &l.root).collect();
    let mut out = BTreeMap::from([("/".to_owned(), Seen::Dir)]);
    model(&roots, "", &mut out);
    out
}

/// The part of a snapshot the model speaks about.
fn project(snapshot: &Snapshot) -> BTreeMap<String, (Kind, Option<String>)> {
    snapshot
        .entries
        .iter()
        .map(|e| (e.path.clone(), (e.kind, e.sha256.clone())))
        .collect()
}

fn model_projection(model: &BTreeMap<String, Seen>) -> BTreeMap<String, (Kind, Option<String>)> {
    let hex = |b: &[u8]| -> String { Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect() };
    model
        .iter()
        .map(|(path, seen)| {
            let value = match seen {
                Seen::File(data) => (Kind::File, Some(hex(data))),
                Seen::Symlink(target) => (Kind::Symlink, Some(hex(target.as_bytes()))),
                Seen::Dir => (Kind::Dir, None),
            };
            (path.clone(), value)
        })
        .collect()
}

fn layers_of(stack: &[GenLayer]) -> Layers {
    let items: Vec<Vec<Item>> = stack.iter().map(items).collect();
    Layers::new(&items)
}

#[test]
fn random_stacks_merge_as_the_reference_model_says() {
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&stack(), |stack| {
            let layers = layers_of(&stack);
            let view = layers.plain();
            let got = project(&Snapshot::of_merged(&view).unwrap());
            prop_assert_eq!(got, model_projection(&expected(&stack)));
            // Every listed name resolves, and every lookup agrees with the listing's inode number.
            view.walk(|node| -> Result<(), veritylab::rootfs::RootfsError> {
                if node.kind() == veritylab::erofs::FileKind::Directory {
                    for entry in view.read_dir(node)? {
                        let child = view.child(node, &entry.name)?.expect("listed names resolve");
                        assert_eq!(child.ino(), entry.ino);
                    }
                }
                Ok(())
            })
            .unwrap();
            Ok(())
        })
        .unwrap();
}

#[test]
fn random_stacks_merge_as_the_kernel_overlay_does() {
    testkit::require_root!();
    let mut runner = TestRunner::new(Config {
        cases: 16,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&stack(), |stack| {
            // overlayfs needs two lower layers when it has no upper one.
            if stack.len() < 2 {
                return Ok(());
            }
            let layers = layers_of(&stack);
            let ours = Snapshot::of_merged(&layers.plain()).unwrap();
            let mounts: Vec<Mount> = layers.images.iter().map(|image| Mount::erofs(image)).collect();
            let lowers: Vec<&std::path::Path> = mounts.iter().map(Mount::path).collect();
            let overlay = Mount::overlay(&lowers);
            let kernel = Snapshot::of_dir(overlay.path()).unwrap();
            let diffs = kernel.diff(&ours);
            prop_assert!(diffs.is_empty(), "{}", diffs.join("\n"));
            Ok(())
        })
        .unwrap();
}

/// Bytes changed at random places of one layer image.
#[derive(Debug, Clone)]
struct Damage {
    layer: usize,
    edits: Vec<(prop::sample::Index, u8)>,
    truncate: Option<prop::sample::Index>,
}

fn damage() -> impl Strategy<Value = Damage> {
    (
        0usize..4,
        vec((any::<prop::sample::Index>(), any::<u8>()), 1..24),
        prop::option::weighted(0.1, any::<prop::sample::Index>()),
    )
        .prop_map(|(layer, edits, truncate)| Damage { layer, edits, truncate })
}

#[test]
fn malformed_layers_never_panic() {
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(stack(), damage()), |(stack, damage)| {
            let layers = layers_of(&stack);
            let mut images: Vec<Vec<u8>> = layers.images.iter().map(|p| std::fs::read(p).unwrap()).collect();
            let target = damage.layer % images.len();
            let image = &mut images[target];
            // Most edits land in the metadata (superblock, inodes, directories) at the start of the image.
            let meta_end = image.len().min(3 * 4096);
            for (at, value) in &damage.edits {
                let i = at.index(meta_end);
                image[i] = *value;
            }
            if let Some(at) = damage.truncate {
                let len = at.index(image.len());
                image.truncate(len);
            }
            if let Ok(view) = Merged::from_sources(images, OverlayNamespace::Trusted) {
                let _ = Snapshot::of_merged(&view);
                for path in ["/a", "/a/b", "/b/c/a", "/c/../a", "/a/b/c"] {
                    if let Ok(node) = view.lookup(path.as_bytes()) {
                        let _ = view.read_dir(&node);
                        let _ = view.read_link(&node);
                        let _ = view.xattrs(&node);
                        let mut buf = [0u8; 64];
                        let _ = view.read_at(&node, 0, &mut buf);
                        let _ = view.node(node.ino());
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}
