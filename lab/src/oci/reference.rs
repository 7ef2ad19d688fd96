//! Image references: `HOST[:PORT]/REPO[:TAG][@sha256:HEX]` for a registry, `oci:DIR[:TAG][@sha256:HEX]` for an image
//! layout, `oci-archive:FILE[:TAG]` for an image layout in a tar file. Parsing is a pure function over the text; nothing is looked up.

use std::fmt;
use std::path::PathBuf;

use super::digest::{Digest, DigestError};
use verity_fuse::ErrorClass;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// An image in a registry.
    Registry(RegistryRef),
    /// An image in an OCI image layout directory.
    Layout(LayoutRef),
    /// An image in a tar archive of an OCI image layout (`dir` is the archive file).
    Archive(LayoutRef),
}

impl Reference {
    /// The registry image this names, if it names one.
    pub fn registry(&self) -> Option<&RegistryRef> {
        match self {
            Reference::Registry(r) => Some(r),
            _ => None,
        }
    }
}

/// `HOST[:PORT]/REPO[:TAG][@sha256:HEX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// Host and optional port, as written (`127.0.0.1:5000`, `ghcr.io`).
    pub host: String,
    /// Repository path (`library/alpine`).
    pub repository: String,
    /// Tag, if given.
    pub tag: Option<String>,
    /// Digest, if given; it wins over the tag, which is then only a label.
    pub digest: Option<Digest>,
}

/// `oci:DIR[:TAG]` (or `oci-archive:FILE[:TAG]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutRef {
    /// The layout directory.
    pub dir: PathBuf,
    /// The `org.opencontainers.image.ref.name` to pick; `None` needs a layout with a single manifest.
    pub tag: Option<String>,
    /// The manifest's digest (`@sha256:HEX`); it wins over the tag, which is then only a label.
    pub digest: Option<Digest>,
}

/// Why a reference does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// Empty text.
    #[error("empty image reference")]
    Empty,
    /// A scheme we do not handle yet.
    #[error("image reference {reference:?}: transport {transport:?} is not supported (use HOST/REPO or oci:DIR)")]
    UnsupportedTransport {
        /// The whole reference.
        reference: String,
        /// The part before the first colon.
        transport: String,
    },
    /// No `HOST/` before the repository.
    #[error(
        "image reference {reference:?}: no registry host; write HOST[:PORT]/REPO (for Docker Hub: docker.io/library/NAME)"
    )]
    NoHost {
        /// The whole reference.
        reference: String,
    },
    /// A host, port or repository with characters the distribution spec does not allow.
    #[error("image reference {reference:?}: invalid {field} {value:?}")]
    Invalid {
        /// The whole reference.
        reference: String,
        /// Which part (`host`, `port`, `repository`, `tag`).
        field: &'static str,
        /// The offending part.
        value: String,
    },
    /// A malformed `@digest`.
    #[error("image reference {reference:?}: {source}")]
    Digest {
        /// The whole reference.
        reference: String,
        /// The digest problem.
        #[source]
        source: DigestError,
    },
}

impl ReferenceError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(text: &str) -> Result<Self, ReferenceError> {
        parse(text)
    }
}

/// Parses an image reference.
pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
    if text.is_empty() {
        return Err(ReferenceError::Empty);
    }
    if let Some(rest) = text.strip_prefix("oci:") {
        return parse_layout(text, rest).map(Reference::Layout);
    }
    if let Some(rest) = text.strip_prefix("oci-archive:") {
        return parse_layout(text, rest).map(Reference::Archive);
    }
    if let Some((transport, _)) = text.split_once("://") {
        return Err(unsupported(text, transport));
    }
    if let Some((head, _)) = text.split_once(':') {
        let hostish = head.contains(['/', '.', '[']) || head == "localhost" || looks_like_host_port(text);
        if !hostish {
            return Err(unsupported(text, head));
        }
    }
    parse_registry(text).map(Reference::Registry)
}

fn unsupported(reference: &str, transport: &str) -> ReferenceError {
    ReferenceError::UnsupportedTransport {
        reference: reference.to_owned(),
        transport: transport.to_owned(),
    }
}

/// Whether `text` starts with `NAME:DIGITS/`.
fn looks_like_host_port(text: &str) -> bool {
    let Some((_, rest)) = text.split_once(':') else {
        return false;
    };
    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
    !port.is_empty() && rest[port.len()..].starts_with('/')
}

fn parse_layout(text: &str, rest: &str) -> Result<LayoutRef, ReferenceError> {
    let (rest, digest) = match rest.rsplit_once('@') {
        Some((before, digest)) if digest.starts_with("sha256:") => {
            let digest = digest.parse::<Digest>().map_err(|source| ReferenceError::Digest {
                reference: text.to_owned(),
                source,
            })?;
            (before, Some(digest))
        }
        _ => (rest, None),
    };
    let (dir, tag) = match rest.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') => (dir, Some(tag)),
        _ => (rest, None),
    };
    if dir.is_empty() {
        return Err(invalid(text, "directory", dir));
    }
    if let Some(tag) = tag
        && !valid_layout_tag(tag)
    {
        return Err(invalid(text, "tag", tag));
    }
    Ok(LayoutRef {
        dir: PathBuf::from(dir),
        tag: tag.map(str::to_owned),
        digest,
    })
}

fn parse_registry(text: &str) -> Result<RegistryRef, ReferenceError> {
    let (name_tag, digest) = match text.split_once('@') {
        Some((name, digest)) => {
            let digest = digest.parse::<Digest>().map_err(|source| ReferenceError::Digest {
                reference: text.to_owned(),
                source,
            })?;
            (name, Some(digest))
        }
        None => (text, None),
    };
    let Some((host, path)) = name_tag.split_once('/') else {
        return Err(ReferenceError::NoHost {
            reference: text.to_owned(),
        });
    };
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return Err(ReferenceError::NoHost {
            reference: text.to_owned(),
        });
    }
    check_host(text, host)?;
    let (repository, tag) = match path.rsplit_once(':') {
        Some((repo, tag)) => (repo, Some(tag)),
        None => (path, None),
    };
    if !valid_repository(repository) {
        return Err(invalid(text, "repository", repository));
    }
    if let Some(tag) = tag
        && !valid_tag(tag)
    {
        return Err(invalid(text, "tag", tag));
    }
    Ok(RegistryRef {
        host: host.to_owned(),
        repository: repository.to_owned(),
        tag: tag.map(str::to_owned),
        digest,
    })
}

fn invalid(reference: &str, field: &'static str, value: &str) -> ReferenceError {
    ReferenceError::Invalid {
        reference: reference.to_owned(),
        field,
        value: value.to_owned(),
    }
}

fn check_host(text: &str, host: &str) -> Result<(), ReferenceError> {
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(|| invalid(text, "host", host))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid(text, "host", host));
        }
        (None, after.strip_prefix(':'))
    } else {
        match host.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    if let Some(name) = name {
        let ok = !name.is_empty()
            && name
                .split('.')
                .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !ok {
            return Err(invalid(text, "host", host));
        }
    }
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(invalid(text, "port", port));
    }
    Ok(())
}

/// Path components of lower-case alphanumerics joined by `.`, `_`, `__` or `-`s (distribution spec).
fn valid_repository(repo: &str) -> bool {
    !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|component| {
            let bytes = component.as_bytes();
            !bytes.is_empty()
                && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
                && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
                && !component.contains("..")
                && !component.contains("___")
        })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    (1..=128).contains(&bytes.len())
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// An image layout's `ref.name` may also hold `/`, `:`, `@` and `+`; we only refuse control characters.
fn valid_layout_tag(tag: &str) -> bool {
    !tag.is_empty() && tag.len() <= 255 && !tag.chars().any(char::is_control)
}

impl RegistryRef {
    /// What to ask the registry for: the digest when given, else the tag, else `latest`.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The host actually contacted (`docker.io` is served by `registry-1.docker.io`).
    pub fn api_host(&self) -> &str {
        if self.host == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.host
        }
    }

    /// Whether the host is a loopback address (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn is_loopback(&self) -> bool {
        let name = match self.host.strip_prefix('[') {
            Some(v6) => v6.split_once(']').map_or(v6, |(addr, _)| addr),
            None => self.host.split_once(':').map_or(self.host.as_str(), |(name, _)| name),
        };
        name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Registry(r) => r.fmt(f),
            Reference::Layout(l) | Reference::Archive(l) => {
                let transport = if matches!(self, Reference::Layout(_)) {
                    "oci"
                } else {
                    "oci-archive"
                };
                write!(f, "{transport}:{}", l.dir.display())?;
                if let Some(tag) = &l.tag {
                    write!(f, ":{tag}")?;
                }
                if let Some(digest) = &l.digest {
                    write!(f, "@{digest}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn registry(text: &str) -> RegistryRef {
        match parse(text).unwrap() {
            Reference::Registry(r) => r,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn registry_references_split_into_host_repository_tag_and_digest() {
        let r = registry("127.0.0.1:5000/lab/busybox:v1");
        assert_eq!(
            (r.host.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "lab/busybox", Some("v1"))
        );
        assert!(r.is_loopback());
        let r = registry(&format!("ghcr.io/org/img@sha256:{HEX}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.unwrap().hex(), HEX);
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
        assert!(!r.is_loopback());
        let r = registry(&format!("localhost/a:t@sha256:{HEX}"));
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
        assert_eq!(registry("[::1]:5000/x").host, "[::1]:5000");
        assert!(registry("[::1]:5000/x").is_loopback());
        assert_eq!(registry("docker.io/library/alpine").manifest_reference(), "latest");
        assert_eq!(registry("docker.io/library/alpine").api_host(), "registry-1.docker.io");
    }

    #[test]
    fn registry_references_display_as_written() {
        for text in ["127.0.0.1:5000/lab/busybox:v1", "example.com/a/b", "localhost/x:y"] {
            assert_eq!(registry(text).to_string(), text);
        }
    }

    #[test]
    fn layout_references_take_an_optional_tag() {
        assert_eq!(
            parse("oci:/tmp/img:v1").unwrap(),
            Reference::Layout(LayoutRef {
                dir: "/tmp/img".into(),
                tag: Some("v1".into()),
                digest: None
            })
        );
        assert_eq!(
            parse("oci:/tmp/img").unwrap(),
            Reference::Layout(LayoutRef {
                dir: "/tmp/img".into(),
                tag: None,
                digest: None
            })
        );
        assert_eq!(
            parse("oci:rel/dir").unwrap(),
            Reference::Layout(LayoutRef {
                dir: "rel/dir".into(),
                tag: None,
                digest: None
            })
        );
    }

    #[test]
    fn layout_references_take_an_optional_digest_that_wins_over_the_tag() {
        let digest = Digest::of(b"m");
        let text = format!("oci:/tmp/img:v1@{digest}");
        let parsed = parse(&text).unwrap();
        assert_eq!(
            parsed,
            Reference::Layout(LayoutRef {
                dir: "/tmp/img".into(),
                tag: Some("v1".into()),
                digest: Some(digest),
            })
        );
        assert_eq!(parsed.to_string(), text);
        assert_eq!(
            parse(&format!("oci:/tmp/img@{digest}")).unwrap(),
            Reference::Layout(LayoutRef {
                dir: "/tmp/img".into(),
                tag: None,
                digest: Some(digest),
            })
        );
        assert!(matches!(
            parse("oci:/tmp/img@sha256:abc"),
            Err(ReferenceError::Digest { .. })
        ));
        assert_eq!(
            parse("oci:/home/a@b/img:v1").unwrap(),
            Reference::Layout(LayoutRef {
                dir: "/home/a@b/img".into(),
                tag: Some("v1".into()),
                digest: None,
            })
        );
    }

    #[test]
    fn archive_references_take_an_optional_tag_and_display_as_written() {
        let archive = parse("oci-archive:/tmp/img.tar:v1").unwrap();
        assert_eq!(
            archive,
            Reference::Archive(LayoutRef {
                dir: "/tmp/img.tar".into(),
                tag: Some("v1".into()),
                digest: None
            })
        );
        assert_eq!(archive.to_string(), "oci-archive:/tmp/img.tar:v1");
        assert_eq!(parse("oci:/tmp/img:v1").unwrap().to_string(), "oci:/tmp/img:v1");
    }

    #[test]
    fn bad_references_name_the_part() {
        assert_eq!(parse(""), Err(ReferenceError::Empty));
        assert!(matches!(parse("alpine"), Err(ReferenceError::NoHost { .. })));
        assert!(matches!(parse("library/alpine:3"), Err(ReferenceError::NoHost { .. })));
        assert!(matches!(
            parse("docker-archive:/tmp/x.tar"),
            Err(ReferenceError::UnsupportedTransport { .. })
        ));
        assert!(matches!(
            parse("docker://example.com/a"),
            Err(ReferenceError::UnsupportedTransport { .. })
        ));
        assert!(matches!(
            parse("example.com/Upper"),
            Err(ReferenceError::Invalid {
                field: "repository",
                ..
            })
        ));
        assert!(matches!(
            parse("example.com:99999/a"),
            Err(ReferenceError::Invalid { field: "port", .. })
        ));
        assert!(matches!(
            parse("example.com/a:-bad"),
            Err(ReferenceError::Invalid { field: "tag", .. })
        ));
        assert!(matches!(
            parse("example.com/a@sha256:abc"),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(parse("oci::tag"), Err(ReferenceError::Invalid { .. })));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,80}") {
            let _ = parse(&text);
        }
    }
}
