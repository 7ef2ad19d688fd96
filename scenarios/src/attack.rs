//! The catalogue of known attacks: each attack's name, what it does and the parameters it takes.
//!
//! This table is the one place attack names and parameters are declared: scenario validation checks a file's
//! `[attack]` against it, `scenario list` shows its summaries, and the runner looks up the implementation
//! by the same name. Adding an attack means adding an entry here and its implementation; adding a scenario
//! that reuses an attack needs only a TOML file.

use std::fmt;

/// The type of an attack parameter's value in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "type", content = "choices")]
pub enum ParamType {
    /// A non-negative integer.
    Integer,
    /// Any string.
    String,
    /// A path relative to the image's root (no leading `/`, no `..`).
    Path,
    /// A boolean.
    Bool,
    /// Lowercase hexadecimal with an even number of digits.
    Hex,
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamType::Integer => f.write_str("a non-negative integer"),
            ParamType::String => f.write_str("a string"),
            ParamType::Path => f.write_str("a relative path"),
            ParamType::Bool => f.write_str("a boolean"),
            ParamType::Hex => f.write_str("a hex string"),
            ParamType::Choice(choices) => write!(f, "one of {}", choices.join(", ")),
        }
    }
}

/// One parameter an attack takes.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ParamSpec {
    /// The key under `[attack.params]`.
    pub name: &'static str,
    /// The value's type.
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// Whether a scenario must give it.
    pub required: bool,
    /// What it means, and its default when optional.
    pub doc: &'static str,
}

/// A known attack.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct AttackSpec {
    /// Its kebab-case name, as scenario files write it.
    pub name: &'static str,
    /// One line saying what the attacker does.
    pub summary: &'static str,
    /// The parameters it takes.
    pub params: &'static [ParamSpec],
}

impl AttackSpec {
    /// The parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// Looks an attack up by name.
pub fn find(name: &str) -> Option<&'static AttackSpec> {
    ATTACKS.iter().find(|a| a.name == name)
}

const fn opt(name: &'static str, ty: ParamType, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        required: false,
        doc,
    }
}

const fn req(name: &'static str, ty: ParamType, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        required: true,
        doc,
    }
}

const LAYER: ParamSpec = opt(
    "layer",
    ParamType::Integer,
    "layer index in manifest order, 0 = base (default: the top layer)",
);
const SCHEME: ParamSpec = opt(
    "scheme",
    ParamType::Choice(&["cosign", "delivery-kit"]),
    "signature scheme the image is signed with (default: cosign)",
);
const TROJAN_PATH: ParamSpec = opt(
    "path",
    ParamType::Path,
    "file the attacker's copy changes (default: bin/app)",
);
const TROJAN_CONTENT: ParamSpec = opt(
    "content",
    ParamType::String,
    "the attacker's content for that file (default: a marker script)",
);

/// Every attack the lab knows, in catalogue order.
pub const ATTACKS: &[AttackSpec] = &[
    AttackSpec {
        name: "host-layer-swap",
        summary: "replace a layer's files on the node disk with a trojaned copy, keeping its metadata",
        params: &[LAYER, TROJAN_PATH, TROJAN_CONTENT],
    },
    AttackSpec {
        name: "layer-byte-flip",
        summary: "flip one byte of a file's data inside a stored layer",
        params: &[
            LAYER,
            req("path", ParamType::Path, "file whose data gets the flipped byte"),
            opt(
                "offset",
                ParamType::Integer,
                "byte offset inside that file (default: 0)",
            ),
        ],
    },
    AttackSpec {
        name: "hash-tree-byte-flip",
        summary: "flip one byte in a layer's dm-verity hash tree",
        params: &[
            LAYER,
            opt(
                "level",
                ParamType::Integer,
                "tree level, 0 = the level that hashes data blocks (default: 0)",
            ),
            opt(
                "offset",
                ParamType::Integer,
                "byte offset inside that level (default: 0)",
            ),
        ],
    },
    AttackSpec {
        name: "layer-and-tree-replace",
        summary: "replace a layer and its hash tree with a trojaned copy and its new root hash in local metadata",
        params: &[LAYER, TROJAN_PATH, TROJAN_CONTENT],
    },
    AttackSpec {
        name: "root-hash-annotation",
        summary: "change a layer descriptor's root-hash annotation in the manifest, keeping the original signature",
        params: &[
            LAYER,
            SCHEME,
            opt(
                "root-hash",
                ParamType::Hex,
                "the new root hash (default: that of a trojaned copy of the layer)",
            ),
        ],
    },
    AttackSpec {
        name: "signature-stripped",
        summary: "serve a modified image with its signature deleted",
        params: &[SCHEME],
    },
    AttackSpec {
        name: "signature-other-key",
        summary: "serve a modified image signed with a key the node does not trust",
        params: &[SCHEME],
    },
    AttackSpec {
        name: "registry-blob-substitution",
        summary: "make the registry serve other bytes for a blob than its digest names",
        params: &[
            opt(
                "blob",
                ParamType::Choice(&["layer", "config"]),
                "which blob is substituted (default: layer)",
            ),
            LAYER,
        ],
    },
    AttackSpec {
        name: "tag-moved-after-verify",
        summary: "move the tag to the attacker's image between signature verification and pull (TOCTOU)",
        params: &[opt("tag", ParamType::String, "the tag that moves (default: v1)")],
    },
    AttackSpec {
        name: "rollback",
        summary: "serve an older, correctly signed image of the same repository",
        params: &[opt(
            "within-window",
            ParamType::Bool,
            "whether the older image's build timestamp still meets the policy's minimum (default: false)",
        )],
    },
    AttackSpec {
        name: "mixed-layers",
        summary: "assemble an image from the layers of two correctly signed images",
        params: &[opt(
            "foreign-layers",
            ParamType::Integer,
            "layers taken from the second image (default: 1)",
        )],
    },
    AttackSpec {
        name: "overmount",
        summary: "mount over a path inside the running container's rootfs, in its mount namespace",
        params: &[
            req("path", ParamType::Path, "the path covered"),
            opt(
                "fs",
                ParamType::Choice(&["tmpfs", "bind"]),
                "what is mounted over it (default: tmpfs)",
            ),
        ],
    },
    AttackSpec {
        name: "upperdir-write",
        summary: "write a file into the container's overlay upperdir from the host",
        params: &[
            req("path", ParamType::Path, "the file written"),
            opt("content", ParamType::String, "its content (default: a marker script)"),
        ],
    },
    AttackSpec {
        name: "extra-mount",
        summary: "add a mount that is not on a verified device inside the container",
        params: &[
            req("path", ParamType::Path, "where it is mounted"),
            opt(
                "fs",
                ParamType::Choice(&["tmpfs", "unverified-erofs"]),
                "what is mounted (default: unverified-erofs)",
            ),
        ],
    },
    AttackSpec {
        name: "pinned-layer-replace",
        summary: "replace the pinned standard-mountpoints layer with one that changes a file",
        params: &[opt(
            "path",
            ParamType::Path,
            "file the replacement changes (default: etc/resolv.conf)",
        )],
    },
    AttackSpec {
        name: "unverified-tail",
        summary: "append data past the data blocks the hash tree covers and read for it through the verified device",
        params: &[
            LAYER,
            opt("bytes", ParamType::Integer, "bytes appended (default: 4096)"),
        ],
    },
    AttackSpec {
        name: "check-at-most-once-tamper",
        summary: "under check_at_most_once, change a block on disk after its first verified read",
        params: &[
            LAYER,
            req(
                "path",
                ParamType::Path,
                "file whose data block is changed after it was read once",
            ),
        ],
    },
    AttackSpec {
        name: "malformed-erofs",
        summary: "hand the EROFS reader a crafted image with consistent verity metadata",
        params: &[opt(
            "field",
            ParamType::Choice(&[
                "dirent-nameoff",
                "inode-size",
                "root-nid",
                "xattr-count",
                "superblock-blocks",
            ]),
            "which structure is malformed (default: dirent-nameoff)",
        )],
    },
    AttackSpec {
        name: "leaked-mounts",
        summary: "keep a process in a stopped container's mount namespace so its mounts stay pinned",
        params: &[opt("mounts", ParamType::Integer, "mounts left behind (default: 1)")],
    },
    AttackSpec {
        name: "audit-identity-replay",
        summary: "replace a layer's mount and the rootfs in the running container by ones made alike over a trojaned \
                  copy, on the same loop device, mount ids and device numbers",
        params: &[LAYER, TROJAN_PATH, TROJAN_CONTENT],
    },
    AttackSpec {
        name: "corruption-then-restore",
        summary: "change a byte of a stored layer while the container runs, let it read the file, then put the byte \
                  back",
        params: &[
            LAYER,
            req(
                "path",
                ParamType::Path,
                "file whose first data byte is changed and restored",
            ),
        ],
    },
    AttackSpec {
        name: "tag-race-at-mount",
        summary: "move the tag between signature check and mount to the signed layers in another order, unsigned",
        params: &[
            opt(
                "path",
                ParamType::Path,
                "a file a later layer changes (default: bin/app)",
            ),
            req(
                "content",
                ParamType::String,
                "that file as the base layer has it: what the container shows when the race is won",
            ),
        ],
    },
    AttackSpec {
        name: "self-declared-root-hash",
        summary: "trojan a layer, declare its root hash in an unsigned manifest and edit the policy to allow unsigned images",
        params: &[LAYER, TROJAN_PATH, TROJAN_CONTENT],
    },
    AttackSpec {
        name: "consistent-layer-replace",
        summary: "while the container runs, rename a trojaned layer, its sidecar and its conversion record into place, all consistent",
        params: &[LAYER, TROJAN_PATH, TROJAN_CONTENT],
    },
    AttackSpec {
        name: "malformed-whiteout",
        summary: "ship, signed, a layer whose whiteout hides an empty name, `.` or `..` (`.wh.`, `.wh..`, `.wh...`)",
        params: &[
            req("dir", ParamType::Path, "the directory holding the whiteout"),
            opt(
                "hidden",
                ParamType::String,
                "the name the whiteout hides: \"\", \".\" or \"..\" (default: \".\")",
            ),
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_kebab_case_and_params_unique() {
        let mut names: Vec<_> = ATTACKS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ATTACKS.len());
        for attack in ATTACKS {
            assert!(
                attack.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{}",
                attack.name
            );
            let mut params: Vec<_> = attack.params.iter().map(|p| p.name).collect();
            params.sort_unstable();
            params.dedup();
            assert_eq!(params.len(), attack.params.len(), "{}", attack.name);
        }
    }
}
