//! The images scenarios are staged on: the embedded sample image and inline-built layers, as tar bytes.

use super::schema::{EntryKind, EntrySpec, ImageSpec, LayerSpec};

/// The sample image `veritylab demo` builds: an application layer and a configuration layer.
pub fn sample() -> Vec<LayerSpec> {
    let file = |path: &str, content: &str, mode: u32| EntrySpec {
        path: path.to_owned(),
        kind: EntryKind::File {
            content: content.to_owned(),
        },
        mode: Some(mode),
    };
    let dir = |path: &str| EntrySpec {
        path: path.to_owned(),
        kind: EntryKind::Dir,
        mode: None,
    };
    vec![
        LayerSpec {
            files: vec![
                dir("bin"),
                file("bin/app", "#!/bin/sh\necho 'genuine app'\n", 0o755),
                dir("etc"),
                file("etc/motd", "Welcome to the genuine image.\n", 0o644),
                dir("usr"),
                dir("usr/share"),
                dir("usr/share/app"),
                file("usr/share/app/data.txt", &"genuine data block\n".repeat(600), 0o644),
            ],
        },
        LayerSpec {
            files: vec![
                dir("etc"),
                file("etc/app.conf", "mode = production\nlisten = 127.0.0.1:8080\n", 0o644),
            ],
        },
    ]
}

/// The layers of `spec`, or `None` for an image to pull.
pub fn layers(spec: &ImageSpec) -> Option<Vec<LayerSpec>> {
    match spec {
        ImageSpec::Sample => Some(sample()),
        ImageSpec::Build { layers } => Some(layers.clone()),
        ImageSpec::Pull { .. } => None,
    }
}

/// An uncompressed tar of `layer`'s entries (owned by root, time 0).
pub fn tar(layer: &LayerSpec) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in &layer.files {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let (name, data): (String, &[u8]) = match &entry.kind {
            EntryKind::File { content } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(entry.mode.unwrap_or(0o644));
                header.set_size(content.len() as u64);
                (entry.path.clone(), content.as_bytes())
            }
            EntryKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(entry.mode.unwrap_or(0o755));
                header.set_size(0);
                (format!("{}/", entry.path), &[])
            }
            EntryKind::Symlink { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                let _ = header.set_link_name(target);
                (entry.path.clone(), &[])
            }
            EntryKind::Whiteout => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(0);
                let (dir, base) = entry.path.rsplit_once('/').unwrap_or(("", &entry.path));
                let name = if dir.is_empty() {
                    format!(".wh.{base}")
                } else {
                    format!("{dir}/.wh.{base}")
                };
                (name, &[])
            }
        };
        header.set_cksum();
        builder
            .append_data(&mut header, name, data)
            .expect("appending to a Vec cannot fail");
    }
    builder.into_inner().expect("finishing a Vec cannot fail")
}

/// `layer` with the file at `path` set to `content` (added when absent, with its parent directories).
pub fn with_file(layer: &LayerSpec, path: &str, content: &[u8]) -> LayerSpec {
    let mut out = layer.clone();
    let content = String::from_utf8_lossy(content).into_owned();
    let mut found = false;
    for entry in &mut out.files {
        if entry.path == path {
            entry.kind = EntryKind::File {
                content: content.clone(),
            };
            entry.mode = Some(0o755);
            found = true;
        }
    }
    if !found {
        let mut parent = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, dirs)| dirs)
        {
            parent = if parent.is_empty() {
                (*part).to_owned()
            } else {
                format!("{parent}/{part}")
            };
            if !out.files.iter().any(|e| e.path == parent) {
                out.files.push(EntrySpec {
                    path: parent.clone(),
                    kind: EntryKind::Dir,
                    mode: None,
                });
            }
        }
        out.files.push(EntrySpec {
            path: path.to_owned(),
            kind: EntryKind::File { content },
            mode: Some(0o755),
        });
    }
    out
}
