//! Shared helpers: source trees covering every file type, snapshots of a host tree or an image in one
//! comparable shape, kernel mounts that clean up after themselves, and runners for outside tools.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use veritylab::erofs::hostfs::{self, Special};
use veritylab::erofs::{FileKind, FileTime, Image};
use veritylab::verity_fuse::ReadAt;

/// One entry as both a host tree and an image can describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) kind: char,
    pub(super) perms: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: (i64, u32),
    pub(super) content: Option<[u8; 32]>,
    pub(super) link: Option<Vec<u8>>,
    pub(super) rdev: Option<(u32, u32)>,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For non-directories with several names: the first name in walk order.
    pub(super) hardlink: Option<String>,
}

/// Path ("/" for the root) to entry.
pub(super) type Snapshot = BTreeMap<String, Entry>;

/// What to leave out of a comparison.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ignore {
    pub(super) mtime: bool,
    pub(super) xattrs: bool,
    pub(super) owner_high_bits: bool,
}

/// Drops the fields a comparison should not see.
pub(super) fn strip(mut snap: Snapshot, ignore: Ignore) -> Snapshot {
    for entry in snap.values_mut() {
        if ignore.mtime {
            entry.mtime = (0, 0);
        }
        if ignore.xattrs {
            entry.xattrs.clear();
        }
        if ignore.owner_high_bits {
            entry.uid &= 0xFFFF;
            entry.gid &= 0xFFFF;
        }
    }
    snap
}

fn hash_file(path: &Path) -> [u8; 32] {
    let mut file = fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).unwrap();
    hasher.finalize().into()
}

fn kind_char(ft: fs::FileType) -> char {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        'd'
    } else if ft.is_file() {
        '-'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else {
        's'
    }
}

/// Snapshot of a host tree (through `lstat`, symlinks not followed).
pub(super) fn snapshot_dir(root: &Path) -> Snapshot {
    let mut snap = Snapshot::new();
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    let mut stack = vec![(root.to_path_buf(), String::from("/"))];
    while let Some((path, name)) = stack.pop() {
        let md = fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let mut hardlink = None;
        if !ft.is_dir() && md.nlink() > 1 {
            let first = links.entry((md.dev(), md.ino())).or_insert_with(|| name.clone());
            hardlink = Some(first.clone());
        }
        let kind = kind_char(ft);
        snap.insert(
            name.clone(),
            Entry {
                kind,
                perms: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime: (md.mtime(), md.mtime_nsec() as u32),
                content: ft.is_file().then(|| hash_file(&path)),
                link: ft
                    .is_symlink()
                    .then(|| fs::read_link(&path).unwrap().into_os_string().into_encoded_bytes()),
                rdev: matches!(kind, 'c' | 'b').then(|| hostfs::split_dev(md.rdev())),
                xattrs: hostfs::xattrs(&path).unwrap(),
                hardlink,
            },
        );
        if ft.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&path).unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            for child in names.into_iter().rev() {
                let child_name = if name == "/" {
                    format!("/{}", child.to_string_lossy())
                } else {
                    format!("{name}/{}", child.to_string_lossy())
                };
                stack.push((path.join(&child), child_name));
            }
        }
    }
    snap
}

/// Snapshot of an image through our reader.
pub(super) fn snapshot_image<R: ReadAt>(image: &Image<R>) -> Snapshot {
    let mut snap = Snapshot::new();
    let mut links: HashMap<u64, String> = HashMap::new();
    let root = image.root().unwrap();
    image
        .walk(&root, |rel, inode| -> Result<(), veritylab::erofs::ReadError> {
            let name = format!("/{}", String::from_utf8_lossy(rel));
            let kind = match inode.kind {
                FileKind::File => '-',
                FileKind::Directory => 'd',
                FileKind::Symlink => 'l',
                FileKind::CharDevice => 'c',
                FileKind::BlockDevice => 'b',
                FileKind::Fifo => 'p',
                FileKind::Socket => 's',
            };
            let hardlink = (kind != 'd' && inode.disk.nlink > 1)
                .then(|| links.entry(inode.nid).or_insert_with(|| name.clone()).clone());
            let content = (kind == '-').then(|| {
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; 65536];
                let mut offset = 0;
                loop {
                    let n = image.read_at(inode, offset, &mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    offset += n as u64;
                }
                hasher.finalize().into()
            });
            let mut xattrs = image.xattrs(inode)?;
            xattrs.sort();
            snap.insert(
                name,
                Entry {
                    kind,
                    perms: inode.permissions(),
                    uid: inode.disk.uid,
                    gid: inode.disk.gid,
                    mtime: (inode.disk.mtime as i64, inode.disk.mtime_nsec),
                    content,
                    link: (kind == 'l').then(|| image.read_link(inode).unwrap()),
                    rdev: inode.device(),
                    xattrs,
                    hardlink,
                },
            );
            Ok(())
        })
        .unwrap();
    snap
}

/// Opens an image file with our reader.
pub(super) fn open_image(path: &Path) -> Image<Vec<u8>> {
    Image::open(fs::read(path).unwrap()).unwrap()
}

/// Asserts two snapshots are equal, printing only the differing paths.
#[track_caller]
pub(super) fn assert_same(expected: &Snapshot, actual: &Snapshot) {
    let mut diffs = Vec::new();
    for (path, want) in expected {
        match actual.get(path) {
            None => diffs.push(format!("missing {path}")),
            Some(got) if got != want => diffs.push(format!("{path}:\n  want {want:?}\n  got  {got:?}")),
            _ => {}
        }
    }
    for path in actual.keys().filter(|p| !expected.contains_key(*p)) {
        diffs.push(format!("unexpected {path}"));
    }
    assert!(diffs.is_empty(), "{} differences:\n{}", diffs.len(), diffs.join("\n"));
}

/// Runs a command, panicking with its output if it fails.
#[track_caller]
pub(super) fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A kernel mount removed on drop.
pub(crate) struct Mount {
    pub(super) dir: tempfile::TempDir,
}

impl Mount {
    /// `mount -t erofs -o loop,ro IMAGE DIR`.
    pub(crate) fn erofs(image: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("mount")
            .args(["-t", "erofs", "-o", "loop,ro"])
            .arg(image)
            .arg(dir.path()));
        Self { dir }
    }

    /// `mount -t overlay -o ro,lowerdir=A:B[,userxattr] overlay DIR` (first lowerdir on top).
    pub(super) fn overlay_with(lowers: &[&Path], userxattr: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let extra = if userxattr { ",userxattr" } else { "" };
        run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("ro,lowerdir={}{extra}", lower.join(":")))
            .arg(dir.path()));
        Self { dir }
    }

    /// A read-only overlay of `lowers` given lowest first.
    pub(crate) fn overlay(lowers: &[&Path]) -> Self {
        let top_first: Vec<&Path> = lowers.iter().rev().copied().collect();
        Self::overlay_with(&top_first, false)
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Sets a timestamp on a path without following symlinks.
pub(super) fn touch(path: &Path, secs: i64, nanos: u32) {
    hostfs::set_mtime(path, FileTime { secs, nanos }).unwrap();
}

/// What a generated tree may contain.
#[derive(Debug, Clone, Copy)]
pub(super) struct TreeSpec {
    /// Device nodes, other owners, trusted.* xattrs (needs root).
    pub(super) privileged: bool,
    /// A socket node (tar cannot carry one).
    pub(super) socket: bool,
    /// Length of the longest names (255 is the EROFS limit; mkfs.erofs 1.5 fails on 255).
    pub(super) longest_name: usize,
}

/// Builds a tree with every file type and the awkward sizes, names, modes, times and xattrs.
pub(super) fn make_tree(root: &Path, spec: TreeSpec) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut data = |n: usize| -> Vec<u8> { (0..n).map(|_| rng.random()).collect() };
    fs::create_dir_all(root.join("dir/sub/deeper")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::create_dir_all(root.join("many")).unwrap();
    for size in [0usize, 1, 100, 4031, 4095, 4096, 4097, 8191, 70_000] {
        fs::write(root.join(format!("file-{size}")), data(size)).unwrap();
    }
    fs::write(root.join("dir/sub/deeper/leaf"), b"leaf\n").unwrap();
    for i in 0..300 {
        fs::write(
            root.join(format!("many/entry-with-a-longish-name-{i:04}")),
            format!("{i}"),
        )
        .unwrap();
    }
    let long = "L".repeat(spec.longest_name);
    fs::write(root.join(&long), b"long name").unwrap();
    fs::create_dir(root.join("dir").join("d".repeat(spec.longest_name))).unwrap();
    std::os::unix::fs::symlink("file-100", root.join("link-short")).unwrap();
    std::os::unix::fs::symlink("t".repeat(600), root.join("link-600")).unwrap();
    std::os::unix::fs::symlink(format!("/{}", "x/".repeat(1500)), root.join("link-3001")).unwrap();
    std::os::unix::fs::symlink("dir/sub", root.join("dir/link-to-dir")).unwrap();
    fs::write(root.join("hard-a"), data(5000)).unwrap();
    fs::hard_link(root.join("hard-a"), root.join("hard-b")).unwrap();
    fs::hard_link(root.join("hard-a"), root.join("dir/hard-c")).unwrap();
    hostfs::mknod(&root.join("fifo"), Special::Fifo, 0o640).unwrap();
    if spec.socket {
        hostfs::mknod(&root.join("socket"), Special::Socket, 0o755).unwrap();
    }
    hostfs::set_xattr(&root.join("file-100"), b"user.one", b"1").unwrap();
    hostfs::set_xattr(&root.join("file-100"), b"user.empty", b"").unwrap();
    hostfs::set_xattr(&root.join("dir"), b"user.dir", &data(300)).unwrap();
    hostfs::set_xattr(&root.join("file-4031"), b"user.big", &data(350)).unwrap();
    // Only root can read a mode-0 file back (to tar it or to feed mkfs.erofs).
    let unreadable = if spec.privileged { 0o000 } else { 0o400 };
    for (name, mode) in [("file-0", 0o4755), ("file-1", 0o2711), ("file-4095", unreadable)] {
        fs::set_permissions(root.join(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::set_permissions(root.join("empty-dir"), fs::Permissions::from_mode(0o1777)).unwrap();
    if spec.privileged {
        hostfs::mknod(&root.join("null"), Special::CharDevice(1, 3), 0o666).unwrap();
        hostfs::mknod(&root.join("big-dev"), Special::CharDevice(4000, 1 << 19), 0o600).unwrap();
        hostfs::mknod(&root.join("disk"), Special::BlockDevice(8, 17), 0o660).unwrap();
        hostfs::set_xattr(&root.join("dir/sub"), b"trusted.overlay.opaque", b"y").unwrap();
        hostfs::set_xattr(&root.join("file-1"), b"security.test", b"label").unwrap();
        std::os::unix::fs::lchown(root.join("file-4096"), Some(1000), Some(1001)).unwrap();
        std::os::unix::fs::lchown(root.join("file-4097"), Some(70000), Some(80000)).unwrap();
        std::os::unix::fs::lchown(root.join("link-short"), Some(5), Some(6)).unwrap();
        // chown clears set-id bits: restore them.
        fs::set_permissions(root.join("file-0"), fs::Permissions::from_mode(0o4755)).unwrap();
    }
    // Times last, deepest first, so directory times stick.
    let mut all: Vec<PathBuf> = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        all.push(p.clone());
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    all.sort();
    for (i, p) in all.iter().rev().enumerate() {
        let secs = if i % 3 == 0 {
            1_700_000_000
        } else {
            1_600_000_000 + i as i64
        };
        touch(p, secs, (i as u32 * 7919) % 1_000_000_000);
    }
    touch(&root.join("file-8191"), 5_000_000_000, 1);
}

/// `tar --format=posix --xattrs` of a directory's contents (GNU tar), to `out`, in the order `readdir` gives.
pub(super) fn gnu_tar(tar: &Path, src: &Path, out: &Path) {
    gnu_tar_with(tar, &[], src, out);
}

/// [`gnu_tar`] with the entries sorted by name (`--sort=name`), the order a directory input is read in.
pub(super) fn gnu_tar_sorted(tar: &Path, src: &Path, out: &Path) {
    gnu_tar_with(tar, &["--sort=name"], src, out);
}

fn gnu_tar_with(tar: &Path, extra: &[&str], src: &Path, out: &Path) {
    run(Command::new(tar)
        .args(extra)
        .args([
            "--format=posix",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-C",
        ])
        .arg(src)
        .arg("-cf")
        .arg(out)
        .arg("."));
}

/// Host directories the EROFS tests convert as real-world trees, with the Debian package that provides each.
const SYSTEM_DIRECTORIES: [(&str, &str); 2] = [("/etc", "base-files"), ("/usr/share/zoneinfo", "tzdata")];

/// The host directories the EROFS tests convert, or `None` after reporting `test` as skipped (a failure under
/// `VERITYLAB_REQUIRE_ALL=1`) when one is missing.
pub(super) fn system_directories(test: &str) -> Option<Vec<&'static Path>> {
    let mut dirs = Vec::new();
    for (dir, package) in SYSTEM_DIRECTORIES {
        if !Path::new(dir).is_dir() {
            testkit::skip(
                test,
                &format!("{dir} is missing (Debian package {package}; see .ci/run)"),
            );
            return None;
        }
        dirs.push(Path::new(dir));
    }
    Some(dirs)
}

/// The `veritylab` binary.
pub(super) fn veritylab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veritylab"))
}
