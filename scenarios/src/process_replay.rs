//! The host side of `container-pid-replay` on the `runc` backend: the container's process killed and its pid
//! handed to a decoy in the container's mount namespace, as a root attacker on the node can (`ns_last_pid`
//! chooses the next pid the kernel gives out).

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use attacks::AttackError;
use veritylab::container::Container;

use super::sandbox::RUNC_SCRATCH;

/// How long each wait of the replay may take.
const WAIT: Duration = Duration::from_secs(10);
/// How many times a decoy is started before the pid is given up (another process may take it first).
const TRIES: usize = 50;

/// The attacker's processes: the one keeping the container's namespace and the decoy; both are killed and
/// reaped when this is dropped.
#[derive(Debug)]
pub(crate) struct Replaced {
    processes: Vec<Child>,
}

impl Drop for Replaced {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Replaces `container`'s process by a decoy running the container's busybox `sleep` with the argument
/// `mark`, at the same pid and in the same mount namespace; returns what was done.
pub(crate) fn replace(container: &Container, mark: &str) -> Result<(String, Replaced), AttackError> {
    let init = container
        .init
        .ok_or_else(|| AttackError::env("the container has no process"))?
        .pid;
    let mut replaced = Replaced { processes: Vec::new() };
    let keeper = spawn_in(init, "100000")?;
    let keeper_pid = keeper.id();
    replaced.processes.push(keeper);
    wait_for(&format!("pid {keeper_pid} to enter the container's namespace"), || {
        namespace(keeper_pid) == namespace(init) && command_line(keeper_pid).is_ok_and(|c| c.contains("sleep"))
    })?;
    let wanted = namespace(init);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(init as i32).ok_or_else(|| AttackError::env("pid 0"))?,
        rustix::process::Signal::KILL,
    )
    .map_err(|e| AttackError::env(format!("killing the container's process {init}: {e}")))?;
    wait_for(&format!("process {init} to be reaped"), || {
        !Path::new(&format!("/proc/{init}")).exists()
    })?;
    let mut decoy = None;
    for _ in 0..TRIES {
        fs::write("/proc/sys/kernel/ns_last_pid", (init - 1).to_string())
            .map_err(|e| AttackError::env(format!("choosing the next pid (ns_last_pid): {e}")))?;
        let mut child = spawn_in(keeper_pid, mark)?;
        if child.id() == init {
            decoy = Some(child);
            break;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let decoy = decoy.ok_or_else(|| AttackError::env(format!("pid {init} was taken by others {TRIES} times")))?;
    replaced.processes.push(decoy);
    wait_for(&format!("the decoy {init} to enter the container's namespace"), || {
        namespace(init) == wanted && command_line(init).is_ok_and(|c| c.contains(mark))
    })?;
    Ok((
        format!(
            "killed the container's process {init} (its namespace kept by pid {keeper_pid}) and started a decoy \
             with the same pid in the same mount namespace {}",
            wanted.unwrap_or_default()
        ),
        replaced,
    ))
}

/// The command line of `pid`, its arguments joined by spaces.
pub(crate) fn command_line(pid: u32) -> Result<String, AttackError> {
    let raw = fs::read(format!("/proc/{pid}/cmdline"))
        .map_err(|e| AttackError::env(format!("reading the command line of {pid}: {e}")))?;
    Ok(raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" "))
}

/// `nsenter -t PID -m -- busybox sleep ARG`: a process in `pid`'s mount namespace, running the busybox of the
/// runner's scratch volume there.
fn spawn_in(pid: u32, arg: &str) -> Result<Child, AttackError> {
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "--"])
        .arg(format!("{RUNC_SCRATCH}/busybox"))
        .args(["sleep", arg])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| AttackError::env(format!("starting nsenter: {e}")))
}

fn namespace(pid: u32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|l| l.to_string_lossy().into_owned())
}

fn wait_for(what: &str, done: impl Fn() -> bool) -> Result<(), AttackError> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > WAIT {
            return Err(AttackError::env(format!("waited {WAIT:?} for {what}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
