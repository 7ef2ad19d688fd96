//! The modules of `lab/src` depend on each other one way: a test over the source that builds the module
//! dependency graph from every `crate::` and `super::` path (outside comments and `#[cfg(test)]` modules) and
//! fails on a cycle, between top-level modules and between the submodules of each.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path of a source file relative to `src`: `oci/pull.rs` → `["oci", "pull"]`, `oci/mod.rs` → `["oci"]`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its `#[cfg(test)]` modules.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            // Skips the item that follows, up to its closing brace at the same indentation.
            let indent = line.len() - trimmed.len();
            for next in lines.by_ref() {
                if next.len() - next.trim_start().len() == indent && next.trim_start().starts_with('}') {
                    break;
                }
            }
            continue;
        }
        let without_comment = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push_str(without_comment);
        out.push('\n');
    }
    out
}

/// The module paths a piece of code names: `crate::a::b`, `super::x` (relative to `module`), and each
/// member of a `crate::{a, b::c}` or `super::{x, y}` group.
fn references(code: &str, module: &[String]) -> BTreeSet<Vec<String>> {
    // `super` is the parent: the crate root in `oci/mod.rs` (module `oci`), `oci` in `oci/pull.rs`.
    let super_base = module[..module.len() - 1].to_vec();
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", super_base)] {
        let mut from = 0;
        while let Some(at) = code[from..].find(prefix) {
            let start = from + at;
            from = start + prefix.len();
            if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
                continue;
            }
            let rest = &code[from..];
            let paths: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end].split(',').map(|p| p.trim().to_owned()).collect()
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                vec![rest[..end].to_owned()]
            };
            for path in paths {
                let mut full = base.clone();
                full.extend(
                    path.split("::")
                        .filter(|s| !s.is_empty() && *s != "self")
                        .map(str::to_owned),
                );
                found.insert(full);
            }
        }
    }
    found
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The edges between modules at `depth` (1: top-level modules; 2: the submodules of one top-level module).
fn graph(src: &Path, depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        let module = module_of(relative);
        if module.is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for target in references(&code(&text), &module) {
            let (from, to) = if depth == 1 {
                (module[..1].join("::"), target.first().cloned().unwrap_or_default())
            } else {
                // Submodule edges only within one top-level module.
                if module.len() < 2 || target.len() < 2 || target[0] != module[0] {
                    continue;
                }
                (module[..2].join("::"), target[..2].join("::"))
            };
            if !to.is_empty() && from != to && module_exists(src, &to) {
                edges.entry(from).or_default().insert(to);
            }
        }
    }
    edges
}

/// Whether `path` (`oci::pull`) names a module of the crate (and not an item re-exported at the root).
fn module_exists(src: &Path, path: &str) -> bool {
    let relative: std::path::PathBuf = path.split("::").collect();
    src.join(&relative).with_extension("rs").is_file() || src.join(&relative).join("mod.rs").is_file()
}

/// Every cycle in `edges` (one per set of modules), each as the modules along it back to the first.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    /// A path from `from` to `to` along `edges`, not through `seen`.
    fn path(
        from: &str,
        to: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        seen: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        for next in edges.get(from).into_iter().flatten() {
            if next == to {
                return Some(vec![to.to_owned()]);
            }
            if seen.insert(next.clone())
                && let Some(mut rest) = path(next, to, edges, seen)
            {
                rest.insert(0, next.clone());
                return Some(rest);
            }
        }
        None
    }
    let mut found: BTreeMap<BTreeSet<String>, Vec<String>> = BTreeMap::new();
    for node in edges.keys() {
        if let Some(rest) = path(node, node, edges, &mut BTreeSet::new()) {
            let mut cycle = vec![node.clone()];
            cycle.extend(rest);
            found.entry(cycle.iter().cloned().collect()).or_insert(cycle);
        }
    }
    found.into_values().collect()
}

#[test]
fn lab_modules_have_no_dependency_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab/src");
    for depth in [1, 2] {
        let edges = graph(&src, depth);
        assert!(edges.len() > 3, "the graph was read: {edges:?}");
        let found: Vec<String> = cycles(&edges).iter().map(|c| c.join(" -> ")).collect();
        assert!(found.is_empty(), "module cycles: {}", found.join("; "));
    }
}

#[test]
fn the_graph_reader_sees_paths_groups_and_super() {
    let module = vec!["oci".to_owned(), "pull".to_owned()];
    let text = "use crate::store::Store;\nuse super::{archive, digest::Digest};\n// crate::audit\nlet x = crate::mount::dm::f();\n#[cfg(test)]\nmod tests {\n    use crate::cli;\n}\n";
    let found = references(&code(text), &module);
    let names: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        names,
        ["mount::dm::f", "oci::archive", "oci::digest::Digest", "store::Store"]
    );
    let mut edges = BTreeMap::new();
    edges.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    edges.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(cycles(&edges), [["a", "b", "a"]]);
    edges.remove("b");
    assert!(cycles(&edges).is_empty());
}
