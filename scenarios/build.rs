//! Embeds the repository's `scenarios/*.toml` into the `veritylab` binary, so `veritylab scenario` works
//! wherever the binary is installed (`--dir` reads another folder instead).

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    // The catalogue files share the crate's folder with its manifest, which is no scenario.
    let dir = Path::new(&manifest_dir);
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml") && !p.ends_with("Cargo.toml") && p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = String::from(
        "/// The embedded scenario files: (file name, TOML text), sorted by name.\n\
         pub(super) static SCENARIOS: &[(&str, &str)] = &[\n",
    );
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("scenario file names are UTF-8");
        let absolute = path.canonicalize().expect("scenario file exists");
        writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            absolute.display().to_string()
        )
        .expect("write to String");
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_scenarios.rs");
    std::fs::write(target, out).expect("write embedded_scenarios.rs");
}
