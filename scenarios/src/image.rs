//! The images scenarios are staged on: the embedded sample image and inline-built layers, as tar bytes.

use attacks::layer_tar;

use super::schema::{EntryKind, EntrySpec, ImageSpec, LayerSpec};

/// The sample image `veritylab demo` builds: an application layer and a configuration layer.
pub(crate) fn sample() -> Vec<LayerSpec> {
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
pub(crate) fn layers(spec: &ImageSpec) -> Option<Vec<LayerSpec>> {
    match spec {
        ImageSpec::Sample => Some(sample()),
        ImageSpec::Build { layers } => Some(layers.clone()),
        ImageSpec::Pull { .. } => None,
    }
}

/// An uncompressed tar of `layer`'s entries (owned by root, time 0), written with [`attacks::layer_tar`] as the
/// attacks write theirs.
pub(crate) fn tar(layer: &LayerSpec) -> std::io::Result<Vec<u8>> {
    let mut builder = layer_tar::Builder::new(Vec::new());
    for entry in &layer.files {
        match &entry.kind {
            EntryKind::File { content } => {
                layer_tar::append_file(
                    &mut builder,
                    &entry.path,
                    entry.mode.unwrap_or(0o644),
                    content.as_bytes(),
                )?;
            }
            EntryKind::Dir => layer_tar::append_dir(&mut builder, &entry.path, entry.mode.unwrap_or(0o755))?,
            EntryKind::Symlink { target } => layer_tar::append_symlink(&mut builder, &entry.path, target)?,
            EntryKind::Whiteout => layer_tar::append_whiteout(&mut builder, &entry.path)?,
        }
    }
    layer_tar::finish(builder)
}
