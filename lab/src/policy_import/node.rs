//! A cursor over one parsed document that knows its path (`spec.rules[0].verifyImages[1]`) and which fields of
//! each mapping were read. An importer reads the fields it understands with [`Fields::take`]; whatever is left
//! is listed as not enforced by [`Fields::finish`], so no field of a real policy is ever dropped unnoticed.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{NotEnforced, Problem};

/// One value and where it sits in its document.
#[derive(Debug, Clone)]
pub(super) struct Node<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Node<'a> {
    /// The document's root.
    pub(super) fn root(value: &'a Value) -> Self {
        Self {
            value,
            path: String::new(),
        }
    }

    /// The `spec` of a Kubernetes document (`apiVersion`, `kind` and `metadata` beside it are read by the
    /// caller's dispatch; any other top-level field is listed).
    pub(super) fn spec(document: &'a Value, not_enforced: &mut Vec<NotEnforced>) -> Result<Self, Problem> {
        let mut root = Node::root(document).fields()?;
        for known in ["apiVersion", "kind", "metadata"] {
            root.ignore(known);
        }
        let spec = root
            .take("spec")
            .ok_or_else(|| Node::root(document).problem("no spec"))?;
        root.finish(not_enforced);
        Ok(spec)
    }

    /// The path from the document's root ("" for the root itself).
    pub(super) fn path(&self) -> &str {
        &self.path
    }

    /// The raw value.
    pub(super) fn value(&self) -> &'a Value {
        self.value
    }

    /// A problem at this node.
    pub(super) fn problem(&self, reason: impl Into<String>) -> Problem {
        Problem {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// This node as a string.
    pub(super) fn str(&self) -> Result<&'a str, Problem> {
        self.value
            .as_str()
            .ok_or_else(|| self.problem(format!("expected a string, found {}", kind(self.value))))
    }

    /// This node as a boolean (the reader takes YAML 1.1's `yes`/`no`/`on`/`off` as booleans, as the
    /// Kubernetes API server does; a quoted string is refused).
    pub(super) fn bool(&self) -> Result<bool, Problem> {
        self.value
            .as_bool()
            .ok_or_else(|| self.problem(format!("expected true or false, found {}", kind(self.value))))
    }

    /// This node as a non-negative integer.
    pub(super) fn count(&self) -> Result<u64, Problem> {
        self.value
            .as_u64()
            .ok_or_else(|| self.problem(format!("expected a non-negative integer, found {}", kind(self.value))))
    }

    /// This node's mapping, to read field by field.
    pub(super) fn fields(&self) -> Result<Fields<'a>, Problem> {
        match self.value {
            Value::Object(map) => Ok(Fields {
                map,
                path: self.path.clone(),
                taken: BTreeSet::new(),
            }),
            other => Err(self.problem(format!("expected a mapping, found {}", kind(other)))),
        }
    }

    /// This node's items, or a problem when it is not a sequence.
    pub(super) fn items(&self) -> Result<Vec<Node<'a>>, Problem> {
        match self.value {
            Value::Array(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Node {
                    value,
                    path: format!("{}[{i}]", self.path),
                })
                .collect()),
            other => Err(self.problem(format!("expected a list, found {}", kind(other)))),
        }
    }

    /// The entries of this mapping, in key order, each with its path.
    pub(super) fn entries(&self) -> Result<Vec<(String, Node<'a>)>, Problem> {
        match self.value {
            Value::Object(map) => Ok(map
                .iter()
                .map(|(key, value)| {
                    let path = if self.path.is_empty() {
                        format!("{key:?}")
                    } else {
                        format!("{}[{key:?}]", self.path)
                    };
                    (key.clone(), Node { value, path })
                })
                .collect()),
            other => Err(self.problem(format!("expected a mapping, found {}", kind(other)))),
        }
    }

    /// The strings of a list of strings.
    pub(super) fn strings(&self) -> Result<Vec<String>, Problem> {
        self.items()?.iter().map(|n| n.str().map(str::to_owned)).collect()
    }
}

/// The fields of one mapping, with those read so far.
#[derive(Debug)]
pub(super) struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: String,
    taken: BTreeSet<&'static str>,
}

impl<'a> Fields<'a> {
    /// The path of a field of this mapping.
    pub(super) fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Reads field `key`, marking it understood; `None` when absent or null.
    pub(super) fn take(&mut self, key: &'static str) -> Option<Node<'a>> {
        self.taken.insert(key);
        self.map.get(key).filter(|v| !v.is_null()).map(|value| Node {
            value,
            path: self.child_path(key),
        })
    }

    /// Marks `key` understood without reading it (a field that changes nothing the lab decides, such as
    /// `metadata.labels`).
    pub(super) fn ignore(&mut self, key: &'static str) {
        self.taken.insert(key);
    }

    /// Lists every field not read as not enforced, as a field veritylab does not know; says whether there
    /// was any.
    pub(super) fn finish(self, not_enforced: &mut Vec<NotEnforced>) -> bool {
        let before = not_enforced.len();
        for (key, value) in self.map {
            if !self.taken.contains(key.as_str()) && !value.is_null() {
                not_enforced.push(NotEnforced {
                    path: self.child_path(key),
                    what: "a field veritylab does not know; its meaning is not enforced".to_owned(),
                });
            }
        }
        not_enforced.len() > before
    }
}

/// How a value is named in messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
