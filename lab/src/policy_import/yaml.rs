//! Reading policy documents: multi-document YAML (Kyverno, policy-controller) or JSON (containers-policy.json)
//! into untyped trees, under limits that hold against hostile input: the file is read up to
//! [`DOCUMENT_LIMIT`] bytes and refused beyond, and the YAML parser runs with a budget on documents, nodes,
//! nesting depth and alias expansion (an alias bomb is an error, not a gigabyte of memory). Duplicate keys are
//! an error, as they are for the Kubernetes API server's strict decoding: two `required:` keys must not be read
//! one way here and another way by the webhook.

use std::io::Read as _;
use std::path::Path;

use serde_json::Value;

use super::ImportError;

/// The largest policy file read.
pub const DOCUMENT_LIMIT: u64 = 1 << 20;

/// The most documents one file may hold.
const MAX_DOCUMENTS: usize = 64;

/// The most YAML nodes (scalars, sequences, mappings) in one file.
const MAX_NODES: usize = 100_000;

/// The deepest nesting accepted; real policies nest about ten levels.
const MAX_DEPTH: usize = 48;

/// The most alias uses in one file; real policies use none or a handful.
const MAX_ALIASES: usize = 256;

/// Reads `path` into its documents, JSON when the text starts with `{` (after white space), YAML otherwise.
pub(super) fn read(path: &Path) -> Result<Vec<Value>, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(DOCUMENT_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > DOCUMENT_LIMIT {
        return Err(ImportError::TooLarge {
            path: path.to_owned(),
            limit: DOCUMENT_LIMIT,
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| ImportError::Syntax {
        path: path.to_owned(),
        reason: "not UTF-8 text".into(),
    })?;
    parse(&text).map_err(|reason| ImportError::Syntax {
        path: path.to_owned(),
        reason,
    })
}

/// Parses `text` into its documents (empty documents skipped).
pub(super) fn parse(text: &str) -> Result<Vec<Value>, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str::<Value>(text)
            .map(|v| vec![v])
            .map_err(|e| e.to_string());
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: MAX_DOCUMENTS,
            max_nodes: MAX_NODES,
            max_depth: MAX_DEPTH,
            max_aliases: MAX_ALIASES,
            max_reader_input_bytes: Some(DOCUMENT_LIMIT as usize),
        },
    };
    let documents: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| e.to_string().trim_end().to_owned())?;
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_several_documents_and_skips_empty_ones() {
        let docs = parse("a: 1\n---\n---\nb: [x, z]\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["b"][1], "z");
    }

    #[test]
    fn json_is_read_as_json() {
        let docs = parse("  {\"default\": [{\"type\": \"reject\"}]}").unwrap();
        assert_eq!(docs[0]["default"][0]["type"], "reject");
    }

    #[test]
    fn yaml_1_1_booleans_read_as_kubernetes_reads_them() {
        // The API server's YAML reader takes `no` and `on` as booleans: so must this one, or `mutateDigest: no`
        // would mean something else here.
        let docs = parse("a: no\nb: on\nc: \"no\"\n").unwrap();
        assert_eq!(docs[0]["a"], false);
        assert_eq!(docs[0]["b"], true);
        assert_eq!(docs[0]["c"], "no");
    }

    #[test]
    fn duplicate_keys_are_an_error() {
        assert!(parse("required: true\nrequired: false\n").is_err());
    }

    #[test]
    fn an_alias_bomb_is_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = (b'a' + i - 1) as char;
            let name = (b'a' + i) as char;
            text.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let err = parse(&text).unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}1{}", "[".repeat(500), "]".repeat(500));
        assert!(parse(&text).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        for text in ["{", "[", ": :", "\u{0}", "- - - -", "a: !!binary zz", "*x", "&a"] {
            let _ = parse(text);
        }
    }
}
