//! The registry of a registry-stage cell: where the publisher pushes the signed image and the node pulls it
//! from, and where a registry-stage attack rewrites a blob.
//!
//! Where `docker-registry` (the CNCF distribution registry, Debian package `docker-registry`) is installed, the
//! cell runs its own: `docker-registry serve CONFIG` on a free `127.0.0.1` port, plain HTTP, with its
//! filesystem storage inside the cell's sandbox. The image and its cosign signature go in with the lab's push
//! code and come back with the real pull code over HTTP. The process is killed when the [`CellRegistry`] is
//! dropped (the runner does that before the leak check). Without `docker-registry` the registry is an OCI
//! image layout directory that the pull code reads.

use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use veritylab::oci::Digest;

/// The registry's executable, looked up on `PATH` (then `/usr/sbin`, `/sbin`).
pub(crate) const BINARY: &str = "docker-registry";
/// The longest wait for a started registry to listen.
pub(crate) const READY_WITHIN: Duration = Duration::from_secs(10);
/// How many ports are tried when the one picked is taken before the registry binds it.
const PORT_ATTEMPTS: usize = 3;
/// The log line distribution prints once its listener is bound (`listening on 127.0.0.1:PORT`).
const LISTENING: &str = "listening on ";

/// Why the cell's registry could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum StartError {
    /// Writing the registry's directory or configuration failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// No free loopback port could be found.
    #[error("finding a free port on 127.0.0.1: {0}")]
    Port(#[source] io::Error),
    /// The executable could not be started.
    #[error("starting {}: {source}", binary.display())]
    Spawn {
        /// The executable.
        binary: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The registry exited before it listened (each of the ports tried).
    #[error("{BINARY} exited ({status}) before it listened on 127.0.0.1:{port}; its log: {log}")]
    Exited {
        /// The last port tried.
        port: u16,
        /// How it exited.
        status: ExitStatus,
        /// The end of its log.
        log: String,
    },
    /// The registry did not listen in time (it was killed).
    #[error("{BINARY} did not listen on 127.0.0.1:{port} within {} s; its log: {log}", READY_WITHIN.as_secs())]
    NotReady {
        /// The port.
        port: u16,
        /// The end of its log.
        log: String,
    },
}

/// A running `docker-registry` on a loopback port; killed (and reaped) on [`LocalRegistry::stop`] or drop.
#[derive(Debug)]
pub(crate) struct LocalRegistry {
    child: Option<Child>,
    pid: u32,
    port: u16,
    dir: PathBuf,
}

impl LocalRegistry {
    /// Starts `binary` with its configuration, log and storage in `dir` (created) and waits, at most
    /// [`READY_WITHIN`], until it says it listens and accepts a connection.
    pub(crate) fn start(binary: &Path, dir: &Path) -> Result<Self, StartError> {
        let io_at = |path: &Path| {
            let path = path.to_owned();
            move |source| StartError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let config = dir.join("config.yml");
            let text = config_text(port, &dir.join("storage"));
            fs::write(&config, text).map_err(io_at(&config))?;
            let log_path = dir.join("registry.log");
            let log = fs::File::create(&log_path).map_err(io_at(&log_path))?;
            let stderr = log.try_clone().map_err(io_at(&log_path))?;
            let child = Command::new(binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(stderr)
                .spawn()
                .map_err(|source| StartError::Spawn {
                    binary: binary.to_owned(),
                    source,
                })?;
            let mut registry = Self {
                pid: child.id(),
                child: Some(child),
                port,
                dir: dir.to_owned(),
            };
            match registry.wait_ready() {
                Ok(()) => return Ok(registry),
                Err(e @ StartError::Exited { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(StartError::Port(io::Error::other("no attempt made"))))
    }

    /// Polls until the registry's log says it listens on our port and the port accepts a connection; kills
    /// it on failure.
    fn wait_ready(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + READY_WITHIN;
        let listening = format!("{LISTENING}127.0.0.1:{}", self.port);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(StartError::Exited {
                    port: self.port,
                    status,
                    log: self.log_tail(),
                });
            }
            let said = fs::read_to_string(self.log_path()).is_ok_and(|log| log.contains(&listening));
            if said && TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(StartError::NotReady {
                    port: self.port,
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry process's id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The root of its filesystem storage.
    pub(crate) fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }

    /// The file holding blob `digest` in the storage: `docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data`.
    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(&hex)
            .join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("registry.log")
    }

    /// The last lines of the registry's log (for error messages).
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
        if tail.is_empty() { "(empty)".to_owned() } else { tail }
    }

    /// Kills the registry and reaps it (SIGKILL, so the wait returns at once); nothing happens when it is
    /// already stopped.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16, StartError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(StartError::Port)
}

/// The registry's configuration: plain HTTP on `127.0.0.1:PORT`, filesystem storage at `storage`, no access
/// log, a random upload secret (so it does not warn), upload purging off (no background work).
fn config_text(port: u16, storage: &Path) -> String {
    let secret = verity_fuse::hex::encode(&rand::random::<[u8; 16]>());
    format!(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    \
         rootdirectory: {}\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: \
         127.0.0.1:{port}\n  secret: {secret}\n",
        yaml_quoted(&storage.display().to_string())
    )
}

/// A YAML single-quoted scalar (the only escape is `''` for `'`).
fn yaml_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The registry a registry-stage cell publishes to.
#[derive(Debug)]
pub(crate) enum CellRegistry {
    /// A `docker-registry` of the cell's own.
    Served(LocalRegistry),
    /// An OCI image layout directory (`docker-registry` is not installed).
    Layout(PathBuf),
}

impl CellRegistry {
    /// The file holding blob `digest` in the registry's storage.
    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        match self {
            CellRegistry::Served(registry) => registry.blob_path(digest),
            CellRegistry::Layout(dir) => dir.join("blobs/sha256").join(digest.hex()),
        }
    }

    /// Which registry this is, for the cell's timeline.
    pub(crate) fn describe(&self) -> String {
        match self {
            CellRegistry::Served(registry) => format!(
                "{BINARY} at {} (pid {}, storage in {})",
                registry.host(),
                registry.pid(),
                registry.storage().display()
            ),
            CellRegistry::Layout(dir) => format!("an OCI layout at {} ({BINARY} is not installed)", dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_binds_loopback_and_quotes_the_storage_path() {
        let text = config_text(5123, Path::new("/tmp/it's here"));
        assert!(text.contains("addr: 127.0.0.1:5123\n"), "{text}");
        assert!(text.contains("rootdirectory: '/tmp/it''s here'\n"), "{text}");
    }

    #[test]
    fn blob_paths_follow_each_storage_layout() {
        let digest = Digest::of(b"blob");
        let hex = digest.hex();
        let layout = CellRegistry::Layout(PathBuf::from("/s/registry"));
        assert_eq!(
            layout.blob_path(&digest),
            PathBuf::from(format!("/s/registry/blobs/sha256/{hex}"))
        );
        let served = LocalRegistry {
            child: None,
            pid: 0,
            port: 1,
            dir: PathBuf::from("/s/registry"),
        };
        assert_eq!(
            served.blob_path(&digest),
            PathBuf::from(format!(
                "/s/registry/storage/docker/registry/v2/blobs/sha256/{}/{hex}/data",
                &hex[..2]
            ))
        );
    }
}
