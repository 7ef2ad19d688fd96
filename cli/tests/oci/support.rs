//! Shared helpers: small multi-layer images made by umoci, a real registry on a free loopback port, and a
//! snapshot of a store's files to show it is unchanged.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use veritylab::oci::{self, PullError, Reference};
use veritylab::oci::{PullOptions, PullReport};
use veritylab::store::Store;

/// Runs a command and panics with its output when it fails.
pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A two-layer umoci image (`layout`, tag `v1`) pushed to a fresh registry: the setup most registry tests share.
pub(crate) struct Seeded {
    /// Scratch directory holding the layout (and whatever the test adds, such as its store).
    pub(crate) work: tempfile::TempDir,
    /// The OCI layout umoci made.
    pub(crate) layout: PathBuf,
    /// The running registry.
    pub(crate) registry: Registry,
}

/// Builds the umoci image and pushes it to a new registry as `repo_tag`; `None` after reporting `test` as
/// skipped (a failure under `VERITYLAB_REQUIRE_ALL=1`) when umoci, skopeo or docker-registry is missing.
pub(crate) fn seeded_registry(test: &str, repo_tag: &str) -> Option<Seeded> {
    let mut tools = Vec::new();
    for tool in ["umoci", "skopeo", "docker-registry"] {
        match testkit::find_tool(tool) {
            Some(path) => tools.push(path),
            None => {
                testkit::skip(test, &format!("`{tool}` is not installed (Debian package {tool})"));
                return None;
            }
        }
    }
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(&tools[0], work.path());
    let registry = Registry::start(&tools[2]);
    registry.push(&tools[1], &layout, "v1", repo_tag);
    Some(Seeded { work, layout, registry })
}

/// Builds `oci:DIR:v1` with umoci from two layers: the first adds files (one spanning several blocks), the
/// second changes one, adds one and deletes `etc/gone` (a whiteout). Returns the layout directory.
pub(crate) fn umoci_image(umoci: &Path, work: &Path) -> PathBuf {
    let layout = work.join("layout");
    let bundle = work.join("bundle");
    run(Command::new(umoci).arg("init").arg("--layout").arg(&layout));
    let image = format!("{}:v1", layout.display());
    run(Command::new(umoci).args(["new", "--image", &image]));
    let unpack = || {
        let _ = fs::remove_dir_all(&bundle);
        run(Command::new(umoci)
            .args(["unpack", "--rootless", "--image", &image])
            .arg(&bundle));
        bundle.join("rootfs")
    };
    let repack = || run(Command::new(umoci).args(["repack", "--image", &image]).arg(&bundle));
    // Layer 1.
    let root = unpack();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("etc/hello"), b"hello\n").unwrap();
    fs::write(root.join("etc/gone"), b"to be deleted\n").unwrap();
    let big: Vec<u8> = (0..40_000u32)
        .flat_map(|i| (i.wrapping_mul(2_654_435_761)).to_le_bytes())
        .collect();
    fs::write(root.join("usr/bin/tool"), &big).unwrap();
    std::os::unix::fs::symlink("tool", root.join("usr/bin/alias")).unwrap();
    repack();
    // Layer 2 (umoci stacks a layer only on a fresh unpack of the new manifest).
    let root = unpack();
    fs::write(root.join("etc/hello"), b"hello again\n").unwrap();
    fs::write(root.join("etc/new"), b"new file\n").unwrap();
    fs::remove_file(root.join("etc/gone")).unwrap();
    repack();
    fs::remove_dir_all(&bundle).unwrap();
    layout
}

/// The umoci-made image of [`umoci_image`] pulled into a store of its own: the setup of the tests that mount
/// it (the emulated mounts, the agent).
pub(crate) struct PulledImage {
    /// The temporary directory holding the layout (`layout/`) and the store (`store/`).
    pub(crate) work: tempfile::TempDir,
    /// umoci.
    pub(crate) umoci: PathBuf,
    /// The layout; the image is its tag `v1`.
    pub(crate) layout: PathBuf,
    /// The store.
    pub(crate) store: Store,
    /// The image's name in the store.
    pub(crate) name: String,
}

/// Builds and pulls [`PulledImage`]; without umoci, reports `test` as skipped (saying why) and returns `None`.
pub(crate) fn pulled_umoci_image(test: &str) -> Option<PulledImage> {
    let Some(umoci) = testkit::find_tool("umoci") else {
        testkit::skip(test, "umoci is not installed (see .ci/run)");
        return None;
    };
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(&umoci, work.path());
    let store = Store::open(&work.path().join("store")).unwrap();
    let name = pull(&store, &format!("oci:{}:v1", layout.display()), &Default::default())
        .unwrap()
        .name;
    Some(PulledImage {
        work,
        umoci,
        layout,
        store,
        name,
    })
}

/// The manifest digest umoci's `index.json` records for `tag`.
pub(super) fn layout_manifest_digest(layout: &Path, tag: &str) -> String {
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A `docker-registry` serving plain HTTP on a free loopback port from a temporary root; killed on drop.
pub(crate) struct Registry {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
}

impl Registry {
    /// Starts the registry and waits (at most 10 s) until it accepts connections.
    pub(crate) fn start(binary: &Path) -> Self {
        Self::start_with(binary, None, &mut free_port)
    }

    /// Starts the registry with basic auth for the user `lab`, password `secret`.
    pub(super) fn start_with_basic_auth(binary: &Path) -> Self {
        // bcrypt at cost 4 (the registry checks it on every request; cost 12 would take 0.3 s each).
        Self::start_with(
            binary,
            Some("lab:$2b$04$cnF6ZUlzL9vYWVNLpi7DFeBKa.SQ7aepXMCTX1wPEcNG3usdGf4IK\n"),
            &mut free_port,
        )
    }

    /// Starts the registry on the ports `next_port` names, as [`Registry::start`] does with free ones.
    pub(super) fn start_on(binary: &Path, next_port: &mut dyn FnMut() -> u16) -> Self {
        Self::start_with(binary, None, next_port)
    }

    /// Starts the registry on a port from `next_port` and waits (at most 10 s) until its log says it listens
    /// there and the port accepts a connection. A port taken by another process before the registry binds it
    /// makes the registry exit; the next port is tried then (5 at most).
    fn start_with(binary: &Path, htpasswd: Option<&str>, next_port: &mut dyn FnMut() -> u16) -> Self {
        let root = tempfile::tempdir().unwrap();
        let config = root.path().join("config.yml");
        let log_path = root.path().join("registry.log");
        let auth = htpasswd.map(|line| {
            let path = root.path().join("htpasswd");
            fs::write(&path, line).unwrap();
            format!(
                "auth:\n  htpasswd:\n    realm: veritylab\n    path: {}\n",
                path.display()
            )
        });
        for _ in 0..5 {
            let port = next_port();
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{}",
                    root.path().join("data").display(),
                    auth.as_deref().unwrap_or_default()
                ),
            )
            .unwrap();
            let log = fs::File::create(&log_path).unwrap();
            let mut child = Command::new(binary)
                .arg("serve")
                .arg(&config)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let listening = format!("listening on 127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() {
                let said = fs::read_to_string(&log_path).is_ok_and(|log| log.contains(&listening));
                if said && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port, root };
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "docker-registry did not listen on port {port} within 10 s: {}",
                        fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!(
            "docker-registry exited before listening on each of 5 ports: {}",
            fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes `oci:LAYOUT:TAG` to `REPO_TAG` in this registry with skopeo.
    pub(crate) fn push(&self, skopeo: &Path, layout: &Path, tag: &str, repo_tag: &str) {
        self.push_as(skopeo, layout, tag, repo_tag, None);
    }

    /// [`Registry::push`] with `USER:PASSWORD` credentials.
    pub(super) fn push_as(&self, skopeo: &Path, layout: &Path, tag: &str, repo_tag: &str, creds: Option<&str>) {
        let mut cmd = Command::new(skopeo);
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(creds) = creds {
            cmd.args(["--dest-creds", creds]);
        }
        run(cmd.args([
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker://{}/{repo_tag}", self.host()),
        ]));
    }

    /// Where the registry keeps a blob's bytes.
    pub(super) fn blob_data(&self, hex: &str) -> PathBuf {
        self.root
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// A loopback port that was free a moment ago (another process may take it before the registry binds it).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pull options for a loopback registry over plain HTTP, with quick retries.
pub(crate) fn plain_http() -> PullOptions {
    let mut options = PullOptions::default();
    options.client.plain_http = true;
    options.client.backoff = Duration::from_millis(10);
    options
}

/// Pulls `reference` with `options`.
pub(crate) fn pull(store: &Store, reference: &str, options: &PullOptions) -> Result<PullReport, PullError> {
    let reference: Reference = reference.parse().unwrap();
    oci::pull(&reference, store, options, &|_| {})
}

/// Every file under `dir` with the sha256 of its content, to compare a store before and after.
pub(super) fn snapshot(dir: &Path) -> BTreeMap<PathBuf, [u8; 32]> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
                out.insert(path.strip_prefix(dir).unwrap().to_owned(), [0; 32]);
            } else {
                let hash = Sha256::digest(fs::read(&path).unwrap()).into();
                out.insert(path.strip_prefix(dir).unwrap().to_owned(), hash);
            }
        }
    }
    out
}

/// Adds an OCI index tagged `tag` to `layout` whose entries all point at `manifest`, one per platform.
pub(super) fn add_index(layout: &Path, manifest: &str, tag: &str, platforms: &[&str]) -> String {
    let size = fs::metadata(layout.join("blobs/sha256").join(&manifest[7..]))
        .unwrap()
        .len();
    let entries: Vec<serde_json::Value> = platforms
        .iter()
        .map(|p| {
            let (os, arch) = p.split_once('/').unwrap();
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest,
                "size": size,
                "platform": {"os": os, "architecture": arch},
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    add_blob_tagged(
        layout,
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&index).unwrap(),
        tag,
    )
}

/// Stores `bytes` as a blob of `layout` and tags it in its `index.json`; returns the digest.
pub(super) fn add_blob_tagged(layout: &Path, media_type: &str, bytes: &[u8], tag: &str) -> String {
    let hex: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    let path = layout.join("index.json");
    let mut top: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    top["manifests"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": media_type,
        "digest": format!("sha256:{hex}"),
        "size": bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }));
    fs::write(&path, serde_json::to_vec(&top).unwrap()).unwrap();
    format!("sha256:{hex}")
}

/// Not a registry: a loopback socket answering each request with `respond(path)` (a whole HTTP response),
/// for answers a real registry cannot be made to give. Returns the host and a request counter.
pub(super) fn canned_server(
    respond: impl Fn(&str) -> Vec<u8> + Send + 'static,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::Read;
    use std::sync::atomic::Ordering;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(&respond(&path));
        }
    });
    (host, count)
}

/// The head of an HTTP request, as the tests' fake servers and proxies read it.
pub(crate) struct RequestHead {
    /// The method.
    pub(crate) method: String,
    /// The request target.
    pub(crate) path: String,
    /// The header lines.
    lines: Vec<String>,
}

impl RequestHead {
    /// Reads a request line and headers up to the blank line; `None` for a connection without a request.
    pub(crate) fn read(reader: &mut impl std::io::BufRead) -> Option<Self> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            lines.push(line.trim_end().to_owned());
        }
        let mut first = lines.first()?.split(' ');
        let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
        Some(Self { method, path, lines })
    }

    /// The value of header `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.lines
            .iter()
            .skip(1)
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.trim().to_owned())
    }
}
