//! Driving `runc` (Debian package `runc`): every call bounded in time, its own state under the store.
//!
//! `create` runs inside the mount's namespace (`nsenter -t HOLDER -m`), where the rootfs overlay is, so the
//! container's namespace is cloned from it; `start`, `kill`, `delete` and `state` work on runc's state
//! directory and need no namespace. runc's own messages go to a log file (`--log`) that errors quote.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use verity_fuse::sys::find_tool;

use super::ContainerError;

/// How long one runc call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The runc executable and the state directory it keeps its containers in.
#[derive(Debug, Clone)]
pub(crate) struct Runc {
    runc: PathBuf,
    nsenter: PathBuf,
    root: PathBuf,
    log: PathBuf,
}

/// Where the container's standard streams go.
pub(crate) enum Streams {
    /// The caller's (a foreground run).
    Inherit,
    /// A log file (a detached run): stdin from /dev/null.
    Log(PathBuf),
}

impl Runc {
    /// runc with its state under `root`, logging to `log`; unavailable when runc or nsenter is missing.
    pub(crate) fn find(root: &Path, log: &Path) -> Result<Self, ContainerError> {
        let runc = find_tool("runc").ok_or(ContainerError::RuncMissing)?;
        let nsenter = find_tool("nsenter").ok_or_else(|| ContainerError::Unavailable {
            reason: "nsenter(1) from util-linux is missing".to_owned(),
        })?;
        Ok(Self {
            runc,
            nsenter,
            root: root.to_owned(),
            log: log.to_owned(),
        })
    }

    /// runc with its state directory and log; its stderr (which repeats the log) is dropped.
    fn base(&self) -> Command {
        let mut command = Command::new(&self.runc);
        command
            .arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// `runc create` of the bundle `bundle` as `name`, inside the namespace of `holder`; the init process's
    /// pid is written to `pid_file`.
    pub(crate) fn create(
        &self,
        holder: u32,
        bundle: &Path,
        name: &str,
        pid_file: &Path,
        streams: &Streams,
    ) -> Result<(), ContainerError> {
        let mut command = Command::new(&self.nsenter);
        command
            .args(["-t", &holder.to_string(), "-m", "--"])
            .arg(&self.runc)
            .arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(name);
        match streams {
            Streams::Inherit => {}
            Streams::Log(path) => {
                let open = || {
                    fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| ContainerError::Io {
                            what: format!("opening {}", path.display()),
                            source: e,
                        })
                };
                command.stdin(Stdio::null()).stdout(open()?).stderr(open()?);
            }
        }
        self.call(command, "create")
    }

    /// `runc start NAME`.
    pub(crate) fn start(&self, name: &str) -> Result<(), ContainerError> {
        let mut command = self.base();
        command.args(["start", name]);
        self.call(command, "start")
    }

    /// `runc kill NAME KILL`; a container already stopped is no error.
    pub(crate) fn kill(&self, name: &str) {
        let mut command = self.base();
        command.args(["kill", name, "KILL"]);
        let _ = self.call(command, "kill");
    }

    /// `runc delete --force NAME`; a container runc does not know is no error.
    pub(crate) fn delete(&self, name: &str) -> Result<(), ContainerError> {
        if !self.root.join(name).exists() {
            return Ok(());
        }
        let mut command = self.base();
        command.args(["delete", "--force", name]);
        self.call(command, "delete")
    }

    fn call(&self, mut command: Command, what: &'static str) -> Result<(), ContainerError> {
        let mut child = command.stdin(Stdio::null()).spawn().map_err(|e| ContainerError::Io {
            what: format!("starting runc {what}"),
            source: e,
        })?;
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(ContainerError::Runc {
                        what,
                        message: format!("{status}: {}", last_error(&self.log)),
                    });
                }
                Ok(None) if started.elapsed() > CALL_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ContainerError::Runc {
                        what,
                        message: format!("no answer within {CALL_TIMEOUT:?}"),
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    return Err(ContainerError::Io {
                        what: format!("waiting for runc {what}"),
                        source: e,
                    });
                }
            }
        }
    }
}

/// The last error runc logged (its text log's `msg="..."` of the last line at level error), or the last line.
fn last_error(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("level=error"))
        .or(text.lines().last())
        .unwrap_or("");
    match line.split_once("msg=") {
        Some((_, msg)) => msg.trim().trim_matches('"').replace("\\\"", "\"").replace("\\n", " "),
        None => line.trim().to_owned(),
    }
}
