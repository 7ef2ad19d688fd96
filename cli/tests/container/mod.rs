//! Privileged tier: real containers under runc. `veritylab run` of an image pulled from a real registry
//! under each profile, the container mount audit against staged mount attacks, `stop` counted clean, the
//! cleanup of a namespace a squatter still holds after the container stopped, and bad input refused with
//! nothing left mounted or running.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use crate::mount::fuse::{ok, veritylab};
use crate::oci::support::{Registry, plain_http, pull, run};

/// A store holding the busybox image (tags `v1`, and `ghost` whose config names a user the image lacks),
/// a key that signed it, and the registry it came from.
struct Lab {
    work: tempfile::TempDir,
    store: PathBuf,
    image: String,
    ghost: String,
    key: PathBuf,
    _registry: Registry,
}

fn lab(test: &str) -> Option<Lab> {
    if !testkit::is_root() {
        testkit::skip(test, testkit::NEEDS_ROOT);
        return None;
    }
    let mut tools = Vec::new();
    for tool in ["runc", "umoci", "skopeo", "docker-registry", "busybox", "nsenter"] {
        match testkit::find_tool(tool) {
            Some(path) => tools.push(path),
            None => {
                testkit::skip(test, &format!("`{tool}` is not installed (see .ci/run)"));
                return None;
            }
        }
    }
    let work = tempfile::tempdir().unwrap();
    let layout = busybox_image(&tools[1], &tools[4], work.path());
    let registry = Registry::start(&tools[3]);
    registry.push(&tools[2], &layout, "v1", "lab/box:v1");
    registry.push(&tools[2], &layout, "ghost", "lab/box:ghost");
    let store = work.path().join("store");
    let opened = veritylab::store::Store::open(&store).unwrap();
    let image = pull(&opened, &format!("{}/lab/box:v1", registry.host()), &plain_http())
        .unwrap()
        .name;
    let ghost = pull(&opened, &format!("{}/lab/box:ghost", registry.host()), &plain_http())
        .unwrap()
        .name;
    let prefix = work.path().join("signer");
    ok(&veritylab(&[os("keygen"), prefix.as_os_str()]));
    let key = prefix.with_extension("key");
    ok(&veritylab(&[
        os("sign"),
        os(&image),
        os("--key"),
        key.as_os_str(),
        os("--store"),
        store.as_os_str(),
    ]));
    Some(Lab {
        work,
        store,
        image,
        ghost,
        key: prefix.with_extension("pub"),
        _registry: registry,
    })
}

/// An image of busybox and its links, `/etc/passwd` with root and `app`, `/etc/msg`, `/usr/bin/tool`;
/// config: `Cmd` prints a greeting from `Env`, `WorkingDir` `/etc`. Tag `ghost` has `User` `ghost`.
fn busybox_image(umoci: &Path, busybox: &Path, work: &Path) -> PathBuf {
    let layout = work.join("layout");
    let bundle = work.join("bundle");
    run(Command::new(umoci).arg("init").arg("--layout").arg(&layout));
    let image = format!("{}:v1", layout.display());
    run(Command::new(umoci).args(["new", "--image", &image]));
    run(Command::new(umoci).args(["unpack", "--image", &image]).arg(&bundle));
    let root = bundle.join("rootfs");
    for dir in ["bin", "etc", "usr/bin", "data"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for tool in [
        "sh", "cat", "echo", "id", "pwd", "sleep", "touch", "ls", "mount", "umount",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
    )
    .unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
    fs::write(root.join("etc/msg"), "from the image\n").unwrap();
    fs::write(root.join("usr/bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
    run(Command::new(umoci).args(["repack", "--image", &image]).arg(&bundle));
    run(Command::new(umoci).args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/bin/sh",
        "--config.cmd",
        "-c",
        "--config.cmd",
        "echo hello $GREETING from $(pwd)",
        "--config.env",
        "GREETING=lab",
        "--config.workingdir",
        "/etc",
    ]));
    run(Command::new(umoci).args(["config", "--image", &image, "--tag", "ghost", "--config.user", "ghost"]));
    layout
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Lab {
    /// `veritylab ARGS --store STORE`.
    fn cmd(&self, args: &[&str]) -> Output {
        let mut all: Vec<&std::ffi::OsStr> = args.iter().map(|a| os(a)).collect();
        let dash = all.iter().position(|a| *a == "--").unwrap_or(all.len());
        all.splice(dash..dash, [os("--store"), self.store.as_os_str()]);
        veritylab(&all)
    }

    /// `veritylab run` of the image with `profile` (signed root hashes for hardened).
    fn run(&self, name: &str, profile: &str, extra: &[&str], command: &[&str]) -> Output {
        let key = self.key.to_string_lossy().into_owned();
        let mut args = vec!["run", &self.image, "--name", name, "--profile", profile];
        if profile == "hardened" {
            args.extend(["--key", &key]);
        }
        args.extend(extra);
        if !command.is_empty() {
            args.push("--");
            args.extend(command);
        }
        self.cmd(&args)
    }

    fn state(&self, name: &str) -> Value {
        serde_json::from_slice(&fs::read(self.store.join("containers").join(name).join("state.json")).unwrap()).unwrap()
    }

    fn check(&self, name: &str) -> (bool, Vec<Value>) {
        let out = self.cmd(&["check", "--container", name, "--json"]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let audit: Value = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v.get("rootfs").is_some())
            .unwrap_or_else(|| panic!("no container audit in {stdout}{}", text(&out)));
        let findings = audit["findings"].as_array().cloned().unwrap_or_default();
        let rootfs = audit["rootfs"]["findings"].as_array().cloned().unwrap_or_default();
        assert!(rootfs.is_empty(), "the rootfs mount audits clean: {rootfs:?}");
        (out.status.success(), findings)
    }
}

/// Stops every container and takes down every mount a failed test left.
impl Drop for Lab {
    fn drop(&mut self) {
        if let Ok(entries) = fs::read_dir(self.store.join("containers")) {
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name != "runc" {
                    let _ = self.cmd(&["stop", &name]);
                }
            }
        }
        let _ = self.cmd(&["cleanup"]);
        let store = veritylab::store::Store::open(&self.store).unwrap();
        for record in veritylab::mount::list(&store).unwrap_or_default() {
            let _ = veritylab::mount::umount(&store, &record.target);
        }
        let _ = &self.work;
    }
}

/// What a container of `store` could leave behind: mounts under the store in any process's namespace, loop
/// devices backed by files under it, and processes whose command line names it (holders, runc).
fn host_counts(store: &Path) -> (usize, usize, usize) {
    let store = fs::canonicalize(store).unwrap();
    let pids: Vec<PathBuf> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy() != std::process::id().to_string())
        })
        .collect();
    let mut namespaces = std::collections::BTreeSet::new();
    let mut mounts = 0;
    for pid in &pids {
        let Ok(ns) = fs::read_link(pid.join("ns/mnt")) else {
            continue;
        };
        if !namespaces.insert(ns) {
            continue;
        }
        let table = fs::read_to_string(pid.join("mountinfo")).unwrap_or_default();
        mounts += table
            .lines()
            .filter(|l| l.split(' ').nth(4).is_some_and(|p| Path::new(p).starts_with(&store)))
            .count();
    }
    let loops = fs::read_dir("/sys/block")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| fs::read_to_string(e.path().join("loop/backing_file")).ok())
        .filter(|b| Path::new(b.trim()).starts_with(&store))
        .count();
    let needle = store.to_string_lossy().into_owned();
    let processes = pids
        .iter()
        .filter(|p| String::from_utf8_lossy(&fs::read(p.join("cmdline")).unwrap_or_default()).contains(&needle))
        .count();
    (mounts, loops, processes)
}

#[test]
fn run_prints_the_images_output_under_each_profile_and_hardened_refuses_writes() {
    let Some(lab) = lab("run_prints_the_images_output_under_each_profile_and_hardened_refuses_writes") else {
        return;
    };
    let before = host_counts(&lab.store);
    for profile in ["vanilla", "erofs", "verity", "hardened"] {
        let name = format!("fg-{profile}");
        let out = lab.run(&name, profile, &[], &[]);
        assert_eq!(
            ok(&out).trim(),
            "hello lab from /etc",
            "{profile}: the image's Cmd, Env and WorkingDir"
        );
        let out = lab.run(&name, profile, &[], &["/bin/sh", "-c", "cat /etc/msg; id -u; exit 7"]);
        assert_eq!(
            out.status.code(),
            Some(7),
            "{profile}: the container's exit status: {}",
            text(&out)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from the image\n0\n");
        let out = lab.run(
            &name,
            profile,
            &[],
            &["/bin/sh", "-c", "echo x > /etc/written && echo wrote"],
        );
        if profile == "hardened" {
            assert!(!out.status.success(), "hardened refuses the write");
            assert!(text(&out).contains("Read-only file system"), "{}", text(&out));
        } else {
            assert_eq!(ok(&out).trim(), "wrote", "{profile} has a writable upperdir");
        }
        assert!(
            !lab.store.join("containers").join(&name).exists(),
            "a foreground run removes its container"
        );
    }
    let out = lab.run(
        "fg-fuse",
        "hardened",
        &["--backend", "fuse"],
        &["/bin/sh", "-c", "cat /etc/msg"],
    );
    assert_eq!(
        ok(&out),
        "from the image\n",
        "the fuse backend's FUSE rootfs runs under runc too"
    );
    assert_eq!(
        host_counts(&lab.store),
        before,
        "nothing is left mounted, looped or running"
    );
}

#[test]
fn check_container_passes_clean_and_reports_each_staged_mount_attack_and_stop_leaves_nothing() {
    let Some(lab) = lab("check_container_passes_clean_and_reports_each_staged_mount_attack_and_stop_leaves_nothing")
    else {
        return;
    };
    let volume = lab.work.path().join("volume");
    fs::create_dir_all(&volume).unwrap();
    fs::write(volume.join("in-volume"), b"v").unwrap();
    let before = host_counts(&lab.store);
    for profile in ["hardened", "vanilla"] {
        let name = format!("bg-{profile}");
        let spec = format!("{}:/tmp:ro", volume.display());
        ok(&lab.run(&name, profile, &["--detach", "-v", &spec], &["sleep", "600"]));
        let ps: Value = serde_json::from_str(&ok(&lab.cmd(&["ps", "--containers", "--json"]))).unwrap();
        let row = ps
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name.as_str())
            .unwrap();
        assert_eq!(
            (row["state"].as_str(), row["profile"].as_str()),
            (Some("running"), Some(profile))
        );
        let (passed, findings) = lab.check(&name);
        assert!(
            passed && findings.is_empty(),
            "{profile}: a fresh container audits clean: {findings:?}"
        );
        let init = lab.state(&name)["init"]["pid"].as_u64().unwrap().to_string();
        let inside = |script: &str| {
            let out = Command::new("nsenter")
                .args(["-t", &init, "-m", "--", "/bin/sh", "-c", script])
                .output()
                .unwrap();
            assert!(out.status.success(), "{script}: {}", text(&out));
        };
        // An overmount of /usr/bin, as a volume the runtime never declared.
        inside("mount -t tmpfs evil /usr/bin");
        let (passed, findings) = lab.check(&name);
        assert!(!passed, "{profile}: the overmount is a finding");
        assert!(
            findings
                .iter()
                .any(|f| f["kind"] == "unexpected-mount" && f["path"] == "/usr/bin" && f["source"] == "evil"),
            "{profile}: {findings:?}"
        );
        inside("umount /usr/bin");
        // A bind mount added after start.
        inside("mount --bind /etc /data");
        let (_, findings) = lab.check(&name);
        assert!(
            findings
                .iter()
                .any(|f| f["kind"] == "unexpected-mount" && f["path"] == "/data" && f["root"] == "/etc"),
            "{profile}: {findings:?}"
        );
        inside("umount /data");
        let (passed, findings) = lab.check(&name);
        assert!(passed && findings.is_empty(), "{profile}: clean again: {findings:?}");
        if profile == "vanilla" {
            inside("echo planted > /usr/bin/planted");
            let (_, findings) = lab.check(&name);
            assert!(
                findings
                    .iter()
                    .any(|f| f["kind"] == "upperdir-write" && f["path"] == "/usr/bin/planted"),
                "{findings:?}"
            );
        } else {
            let out = Command::new("nsenter")
                .args(["-t", &init, "-m", "--", "/bin/sh", "-c", "echo x > /usr/bin/planted"])
                .output()
                .unwrap();
            assert!(text(&out).contains("Read-only file system"), "{}", text(&out));
        }
        let out = lab.cmd(&["stop", &name]);
        ok(&out);
        assert!(!lab.store.join("containers").join(&name).exists());
    }
    assert_eq!(
        host_counts(&lab.store),
        before,
        "stop leaves no mount, loop device or process"
    );
    assert_eq!(ok(&lab.cmd(&["ps", "--containers"])), "");
}

#[test]
fn cleanup_frees_the_namespace_a_squatter_holds_after_the_container_stopped() {
    let Some(lab) = lab("cleanup_frees_the_namespace_a_squatter_holds_after_the_container_stopped") else {
        return;
    };
    let before = host_counts(&lab.store);
    ok(&lab.run("held", "verity", &["--detach"], &["sleep", "600"]));
    let holder = lab.state("held")["mount"]["holder"].as_u64().unwrap().to_string();
    struct Squatter(Child);
    impl Drop for Squatter {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut squatter = Squatter(
        Command::new("nsenter")
            .args([
                "-t",
                &holder,
                "-m",
                "--",
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sleep",
                "600",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let entered = std::time::Instant::now();
    // It entered the mount's namespace and made its own copy of it, as a daemon with private mounts does.
    let comm = |pid: u32| fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    while comm(squatter.0.id()).trim() != "sleep" {
        assert!(
            entered.elapsed().as_secs() < 10,
            "the squatter made its namespace within 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = lab.cmd(&["stop", "held"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "stop reports what the squatter keeps: {}",
        text(&out)
    );
    assert!(
        text(&out).contains(&format!("pid {}", squatter.0.id())),
        "{}",
        text(&out)
    );
    let out = lab.cmd(&["cleanup"]);
    let report = ok(&out);
    assert!(report.contains("cleaned container held"), "{report}");
    assert!(report.contains(&format!("held by pid {}", squatter.0.id())), "{report}");
    assert!(report.contains("unmounted overlay at"), "{report}");
    assert!(
        squatter.0.try_wait().unwrap().is_none(),
        "the squatter is not killed, only emptied"
    );
    assert!(!lab.store.join("containers/held").exists());
    let _ = squatter.0.kill();
    let _ = squatter.0.wait();
    assert_eq!(
        host_counts(&lab.store),
        before,
        "nothing is left once the squatter's mounts are gone"
    );
}

/// Kills and reaps its processes when dropped.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits (at most 10 s) until `pid` runs `comm`, or panics saying `what`.
fn wait_comm(pid: u32, comm: &str, what: &str) {
    let started = std::time::Instant::now();
    while fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        != comm
    {
        assert!(started.elapsed().as_secs() < 10, "{what} within 10 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_process_given_the_containers_pid_after_it_died_is_not_taken_for_the_container() {
    let Some(lab) = lab("a_process_given_the_containers_pid_after_it_died_is_not_taken_for_the_container") else {
        return;
    };
    ok(&lab.run("replayed", "hardened", &["--detach"], &["sleep", "600"]));
    let state = lab.state("replayed");
    let init = u32::try_from(state["init"]["pid"].as_u64().unwrap()).unwrap();
    let namespace = state["namespace"].as_str().unwrap().to_owned();
    let (passed, findings) = lab.check("replayed");
    assert!(
        passed && findings.is_empty(),
        "a fresh container audits clean: {findings:?}"
    );

    // The attacker keeps the container's mount namespace alive with a process inside it, kills the
    // container's process, and has the kernel hand its pid to a decoy in that same namespace (root chooses the
    // next pid through `ns_last_pid`): the pid, its namespace and every mount in it are as they were.
    let mut attacker = Processes(Vec::new());
    attacker.0.push(
        Command::new("nsenter")
            .args(["-t", &init.to_string(), "-m", "--", "sleep", "600"])
            .spawn()
            .unwrap(),
    );
    let keeper = attacker.0[0].id();
    wait_comm(
        keeper,
        "sleep",
        "the attacker's process entered the container's namespace",
    );
    ok(&Command::new("kill")
        .args(["-KILL", &init.to_string()])
        .output()
        .unwrap());
    let started = std::time::Instant::now();
    while Path::new(&format!("/proc/{init}")).exists() {
        assert!(
            started.elapsed().as_secs() < 10,
            "the container's process was reaped within 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let decoy = (0..50)
        .find_map(|_| {
            fs::write("/proc/sys/kernel/ns_last_pid", (init - 1).to_string()).unwrap();
            let mut child = Command::new("nsenter")
                .args(["-t", &keeper.to_string(), "-m", "--", "sleep", "600"])
                .spawn()
                .unwrap();
            if child.id() == init {
                return Some(child);
            }
            let _ = child.kill();
            let _ = child.wait();
            None
        })
        .expect("the decoy got the container's pid within 50 tries");
    attacker.0.push(decoy);
    wait_comm(init, "sleep", "the decoy entered the container's namespace");
    assert_eq!(
        fs::read_link(format!("/proc/{init}/ns/mnt")).unwrap().to_string_lossy(),
        namespace,
        "the replay is perfect: the same pid, in the container's own mount namespace"
    );

    // The container's process is gone, whatever holds its pid: ps says so and the audit reports it.
    let ps: Value = serde_json::from_str(&ok(&lab.cmd(&["ps", "--containers", "--json"]))).unwrap();
    let row = ps.as_array().unwrap().iter().find(|r| r["name"] == "replayed").unwrap();
    assert_eq!(row["state"], "stopped", "{row}");
    let (passed, findings) = lab.check("replayed");
    assert!(!passed, "the audit fails");
    assert!(
        findings.iter().any(|f| f["kind"] == "process-replaced"
            && f["pid"] == init
            && f["namespace"] == namespace.as_str()
            && f["why"].as_str().is_some_and(|s| s.contains("another process"))),
        "{findings:?}"
    );
    // The node agent reports it too, labelled with the container.
    let agent = crate::agent::start_agent(&lab.store, "1s");
    let started = std::time::Instant::now();
    loop {
        let metrics = agent.metrics().unwrap_or_default();
        if metrics.lines().any(|l| {
            l.starts_with("veritylab_findings{")
                && l.contains("container=\"replayed\"")
                && l.contains("kind=\"process-replaced\"")
        }) {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 30,
            "the agent reports the replacement: {metrics}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    agent.terminate();
    drop(attacker);
    // Once the decoy is gone too, the container has only stopped: no finding for the agent.
    let (_, findings) = lab.check("replayed");
    assert!(findings.iter().all(|f| f["kind"] == "not-running"), "{findings:?}");
    ok(&lab.cmd(&["stop", "replayed"]));
}

#[test]
fn bad_input_is_refused_clearly_with_nothing_left_mounted_or_running() {
    let Some(lab) = lab("bad_input_is_refused_clearly_with_nothing_left_mounted_or_running") else {
        return;
    };
    let before = host_counts(&lab.store);
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["--".into(), "/bin/nope".into()],
            3,
            "/bin/nope: not found in the rootfs",
        ),
        (
            vec!["--".into(), "/etc/msg".into()],
            3,
            "/etc/msg: not found in the rootfs or not executable",
        ),
        (
            vec!["-v".into(), "/nonexistent/src:/data".into()],
            2,
            "the source /nonexistent/src",
        ),
        (vec!["-v".into(), "/tmp:/../etc".into()], 2, "leaves the rootfs"),
        (vec!["--name".into(), "../x".into()], 2, "is not a container name"),
    ];
    for (args, code, message) in cases {
        let mut all = vec!["run".to_owned(), lab.image.clone(), "--profile".into(), "verity".into()];
        all.extend(args.clone());
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = lab.cmd(&all);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(message), "{args:?}: {}", text(&out));
    }
    let out = lab.cmd(&["run", &lab.ghost, "--name", "ghost"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("user \"ghost\" is not in the rootfs"),
        "{}",
        text(&out)
    );
    let out = lab.run("fuse-verity", "verity", &["--backend", "fuse"], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("/proc: the runtime mounts there"), "{}", text(&out));
    let hardened = lab.run("ro", "hardened", &["-v", "/tmp:/data/new"], &[]);
    assert!(
        text(&hardened).contains("does not exist in the read-only rootfs"),
        "{}",
        text(&hardened)
    );
    ok(&lab.run("taken", "verity", &["--detach"], &["sleep", "600"]));
    let out = lab.run("taken", "verity", &[], &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(
        text(&out).contains("a container named taken exists already"),
        "{}",
        text(&out)
    );
    ok(&lab.cmd(&["stop", "taken"]));
    assert_eq!(
        host_counts(&lab.store),
        before,
        "no refusal leaves a mount, loop device or process"
    );
    let left: Vec<_> = fs::read_dir(lab.store.join("containers"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n != "runc")
        .collect();
    assert!(left.is_empty(), "no container directory is left: {left:?}");
}

#[test]
fn the_runc_runner_backend_stages_every_scenario_against_a_running_container() {
    let test = "the_runc_runner_backend_stages_every_scenario_against_a_running_container";
    if !testkit::is_root() {
        testkit::skip(test, testkit::NEEDS_ROOT);
        return;
    }
    for tool in ["runc", "busybox", "nsenter"] {
        if testkit::find_tool(tool).is_none() {
            testkit::skip(test, &format!("`{tool}` is not installed (see .ci/run)"));
            return;
        }
    }
    let out = veritylab(&[os("scenario"), os("run"), os("--backend"), os("runc"), os("--all")]);
    let report = ok(&out);
    assert!(report.contains("backend runc (asked: runc)"), "{report}");
    for id in ["overmount", "extra-mount", "upperdir-write", "leaked-mounts"] {
        let row = report
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id}: {report}"));
        assert!(!row.contains("skipped"), "{id} runs on runc: {row}");
    }
    assert!(
        report.contains(" 0 differ, 0 errors, ") && report.contains(": PASS"),
        "every cell as expected against a real container: {report}"
    );
}

#[test]
fn the_agent_reports_an_overmount_inside_a_running_container_and_prometheus_fires_the_alert() {
    let Some(lab) = lab("the_agent_reports_an_overmount_inside_a_running_container_and_prometheus_fires_the_alert")
    else {
        return;
    };
    ok(&lab.run("watched", "hardened", &["--detach"], &["sleep", "600"]));
    let agent = crate::agent::start_agent(&lab.store, "1s");
    let Some(prometheus) = crate::agent::Prometheus::start(lab.work.path(), &agent) else {
        return;
    };
    let clean = agent.metrics().unwrap();
    assert!(clean.contains("veritylab_containers_audited 1"), "{clean}");
    let init = lab.state("watched")["init"]["pid"].as_u64().unwrap().to_string();
    let out = Command::new("nsenter")
        .args(["-t", &init, "-m", "--", "/bin/sh", "-c", "mount -t tmpfs evil /usr/bin"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let alert = prometheus.integrity_alert();
    assert_eq!(alert["labels"]["container"], "watched", "{alert:#}");
    assert_eq!(alert["labels"]["kind"], "unexpected-mount", "{alert:#}");
    let metrics = agent.metrics().unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("veritylab_findings{") && l.contains("container=\"watched\"")),
        "{metrics}"
    );
    agent.terminate();
}
