//! Running a host command with a wall-clock limit: the child is killed when the limit passes, so no wait
//! in the harness is unbounded.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::VmError;

/// How often a running child is polled.
const POLL: Duration = Duration::from_millis(20);

/// What a bounded run produced.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The exit status, or `None` when the child was killed at the time limit.
    pub(crate) status: Option<ExitStatus>,
    /// Everything written to stdout.
    pub(crate) stdout: Vec<u8>,
    /// Everything written to stderr.
    pub(crate) stderr: Vec<u8>,
    /// Wall-clock time from spawn to exit (or kill).
    pub(crate) elapsed: Duration,
}

impl Finished {
    /// Whether the child exited with status 0.
    pub(crate) fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Status and stderr, for error messages.
    pub(crate) fn describe(&self) -> String {
        let status = self
            .status
            .map_or_else(|| "killed at the time limit".to_owned(), |s| s.to_string());
        format!("{status}: {}", String::from_utf8_lossy(&self.stderr).trim())
    }
}

/// Runs `command` with stdin closed and stdout/stderr captured, killing it after `limit`.
pub(crate) fn run(command: &mut Command, limit: Duration) -> Result<Finished, VmError> {
    let what = format!("{:?}", command.get_program());
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(VmError::io(format!("starting {what}")))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_until(&mut child, started + limit).map_err(VmError::io(format!("waiting for {what}")))?;
    let elapsed = started.elapsed();
    // The pipes close when the child is gone, so both readers finish.
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    Ok(Finished {
        status,
        stdout,
        stderr,
        elapsed,
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error ends the capture; what was read so far is kept.
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Polls `child` until it exits or `deadline` passes; then kills and reaps it and returns `None`.
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        thread::sleep(POLL.min(deadline - now));
    }
}
