//! Paths inside a rootfs seen from outside it: each symbolic link is followed relative to the rootfs, so an
//! absolute link (`/bin/sh -> /bin/busybox`) never leads to the host's file of that name.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// How many symbolic links one resolution follows before it gives up (as the kernel's `ELOOP`).
const MAX_LINKS: usize = 40;

/// The host path of `path` (absolute in the container) under `root`, links followed inside `root`; `None`
/// when a component is missing or the links loop.
pub(crate) fn resolve(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut resolved = PathBuf::from("/");
    let mut links = 0usize;
    let mut queue: Vec<std::ffi::OsString> = Vec::new();
    let push_components = |queue: &mut Vec<std::ffi::OsString>, p: &Path| {
        let mut parts: Vec<std::ffi::OsString> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_owned()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        parts.reverse();
        queue.extend(parts);
    };
    push_components(&mut queue, path);
    while let Some(part) = queue.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let host = root.join(candidate.strip_prefix("/").unwrap_or(&candidate));
        let meta = fs::symlink_metadata(&host).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return None;
            }
            let target = fs::read_link(&host).ok()?;
            if target.is_absolute() {
                resolved = PathBuf::from("/");
            }
            push_components(&mut queue, &target);
        } else {
            resolved = candidate;
        }
    }
    Some(root.join(resolved.strip_prefix("/").unwrap_or(&resolved)))
}

/// The executable `program` names in the rootfs at `root`: a path with a slash as is (relative to `cwd`),
/// else the first match on the `PATH` of `env`. `None` when nothing executable is found.
pub(crate) fn executable(root: &Path, program: &str, cwd: &str, env: &[String]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_executable = |p: &Path| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![Path::new(cwd).join(program)]
    } else {
        env.iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or_default()
            .split(':')
            .filter(|dir| dir.starts_with('/'))
            .map(|dir| Path::new(dir).join(program))
            .collect()
    };
    candidates
        .into_iter()
        .filter_map(|c| resolve(root, &c))
        .find(|host| is_executable(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_followed_inside_the_root() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/busybox"), b"x").unwrap();
        fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("/bin/busybox", root.join("bin/sh")).unwrap();
        std::os::unix::fs::symlink("../../../../bin/busybox", root.join("bin/up")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("bin/loop")).unwrap();
        assert_eq!(resolve(root, Path::new("/bin/sh")), Some(root.join("bin/busybox")));
        assert_eq!(resolve(root, Path::new("/bin/up")), Some(root.join("bin/busybox")));
        assert_eq!(resolve(root, Path::new("/bin/loop")), None);
        let env = ["PATH=/usr/bin:/bin".to_owned()];
        assert_eq!(executable(root, "sh", "/", &env), Some(root.join("bin/busybox")));
        assert_eq!(executable(root, "/bin/sh", "/", &env), Some(root.join("bin/busybox")));
        assert_eq!(executable(root, "nope", "/", &env), None);
    }
}
