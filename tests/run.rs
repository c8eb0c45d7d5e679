//! `lstore run` and `lstore start`: real programs (busybox) in containers on lstore, through
//! FUSE and an OCI runtime (runc or crun). Needs root, /dev/fuse, a runtime and
//! busybox-static; where one is missing the tests say so and pass, except under CI
//! (`CI=true`), where they fail.

mod common;

use common::{fails, lstore, ok};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether containers can be run here; under CI their absence is a failure.
fn runnable() -> bool {
    let root = rustix::process::geteuid().is_root();
    let fuse = Path::new("/dev/fuse").exists();
    let busybox = Path::new("/bin/busybox").exists();
    let runtime = ["runc", "crun"]
        .iter()
        .any(|r| Command::new(r).arg("--version").output().is_ok());
    if root && fuse && busybox && runtime {
        return true;
    }
    let why = format!(
        "run tests need root, /dev/fuse, runc or crun, and /bin/busybox (busybox-static) \
         (root: {root}, fuse: {fuse}, runtime: {runtime}, busybox: {busybox})"
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipped: {why}");
    false
}

/// A busybox root file system: the static binary, a link per applet, the folders and
/// files a runtime mounts over, and accounts for `root` and `app` (1000:1000).
fn busybox_tree(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/app"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    let files = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        ),
        ("etc/group", "root:x:0:\napp:x:1000:\nstaff:x:50:app\n"),
        ("etc/motd", "old\n"),
        ("etc/hosts", ""),
        ("etc/resolv.conf", ""),
        ("etc/hostname", ""),
    ];
    for (path, text) in files {
        std::fs::write(root.join(path), text).unwrap();
    }
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "chmod 1777 {0}/tmp && chown 1000:1000 {0}/home/app",
            root.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    root
}

/// A store with the busybox tree as image `busybox:test` (no config of note) and as
/// `app:test`, whose config sets Cmd, Env, WorkingDir and User.
fn store_with_images(dir: &Path) -> PathBuf {
    let s = dir.join("s");
    let tree = busybox_tree(dir);
    let store = lstore::Store::create(&s, Default::default()).unwrap();
    let opts = lstore::ImportOptions {
        name: Some("busybox-fs"),
        ..Default::default()
    };
    let layer = lstore::import_dir(&store, &tree, &opts).unwrap().layer;
    let plain =
        br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    store.add_image(plain, Some(&layer), &["busybox:test"]).unwrap();
    let app = br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo $GREETING; pwd; id -u; id -g; id -G"],"Env":["GREETING=hello","PATH=/bin"],"WorkingDir":"/work/dir","User":"app"},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    store.add_image(app, Some(&layer), &["app:test"]).unwrap();
    store.commit().unwrap();
    s
}

fn run(s: &Path, args: &[&str]) -> (i32, String, String) {
    let o = lstore(s, args, None);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_program_writes_in_its_container_and_the_image_keeps_its_file() {
    if !runnable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = store_with_images(tmp.path());
    let (code, out, err) = run(
        &s,
        &[
            "run",
            "--name",
            "web",
            "busybox:test",
            "sh",
            "-c",
            "echo hi > /etc/motd; cat /etc/motd",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{err}");
    assert_eq!(ok(&s, &["diff", "web"]), "C /etc/motd\n");
    assert_eq!(ok(&s, &["get", "busybox:test", "etc/motd"]), "old\n");
    // Committed, the change is a layer of its own on the image.
    ok(&s, &["commit", "web", "--name", "after"]);
    assert_eq!(ok(&s, &["get", "after", "etc/motd"]), "hi\n");
    assert_eq!(ok(&s, &["diff", "busybox:test", "after"]), "C /etc/motd\n");
    // `start` runs again in the same container, which kept its write.
    let (code, out, err) = run(&s, &["start", "web", "cat", "/etc/motd"]);
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{err}");
    // The runtime's view: its own hostname, /proc, and the host's resolver.
    let (code, out, _) = run(
        &s,
        &[
            "start",
            "web",
            "sh",
            "-c",
            "hostname; test -r /proc/self/status && echo proc",
        ],
    );
    assert_eq!(code, 0);
    let id = ok(&s, &["inspect", "web", "--json"]);
    let id: serde_json::Value = serde_json::from_str(&id).unwrap();
    let id = id["id"].as_str().unwrap();
    assert_eq!(out, format!("{}\nproc\n", &id[..12]));
}

#[test]
fn the_exit_code_passes_through_and_rm_removes_the_container() {
    if !runnable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = store_with_images(tmp.path());
    let (code, _, err) = run(&s, &["run", "--rm", "busybox:test", "sh", "-c", "exit 7"]);
    assert_eq!(code, 7, "{err}");
    assert_eq!(ok(&s, &["containers"]), "");
    // The shell's code for a child killed by SIGKILL (128 + 9) passes through as any code.
    let (code, _, _) = run(
        &s,
        &[
            "run",
            "--rm",
            "busybox:test",
            "sh",
            "-c",
            "sleep 10 & kill -9 $!; wait $!",
        ],
    );
    assert_eq!(code, 137);
    // lstore's own failure is 125, never taken for the program's code.
    let (code, _, err) = run(&s, &["run", "--rm", "-u", "nobody", "busybox:test", "true"]);
    assert_eq!(code, 125, "{err}");
}

#[test]
fn an_image_config_sets_the_environment_folder_and_user_and_run_options_override_them() {
    if !runnable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = store_with_images(tmp.path());
    let (code, out, err) = run(&s, &["run", "--rm", "app:test"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hello\n/work/dir\n1000\n1000\n1000 50\n");
    let (code, out, err) = run(
        &s,
        &[
            "run",
            "--rm",
            "-e",
            "GREETING=bye",
            "-w",
            "/tmp",
            "-u",
            "0:50",
            "app:test",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "bye\n/tmp\n0\n50\n50\n");
    // A user other than root has no effective capabilities (root has Docker's).
    let caps = "grep -E '^Cap(Eff|Prm)' /proc/self/status";
    let (code, out, err) = run(&s, &["run", "--rm", "-u", "app", "busybox:test", "sh", "-c", caps]);
    assert_eq!(
        (code, out.as_str()),
        (0, "CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"),
        "{err}"
    );
    let (_, out, _) = run(&s, &["run", "--rm", "busybox:test", "sh", "-c", caps]);
    assert!(out.starts_with("CapPrm:\t00000000a80425fb"), "{out}");
    // `start` runs again as `run` was asked to, and takes new options over those.
    let (code, _, err) = run(
        &s,
        &["run", "--name", "kept", "-e", "GREETING=kept", "-w", "/tmp", "app:test"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&s, &["start", "kept"]);
    assert_eq!((code, out.as_str()), (0, "kept\n/tmp\n1000\n1000\n1000 50\n"), "{err}");
    let (code, out, err) = run(&s, &["start", "-u", "0", "kept", "echo $GREETING; id -u"]);
    assert_eq!((code, out.as_str()), (0, "kept\n0\n"), "{err}");
}

#[test]
fn a_named_volume_persists_across_two_runs() {
    if !runnable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = store_with_images(tmp.path());
    let in_volume = |script: &str| {
        let args = [
            "run",
            "--rm",
            "-v",
            "data:/var/lib/db",
            "busybox:test",
            "sh",
            "-c",
            script,
        ];
        run(&s, &args)
    };
    let write = "echo run >> /var/lib/db/log; cat /var/lib/db/log";
    let (code, out, err) = in_volume(write);
    assert_eq!((code, out.as_str()), (0, "run\n"), "{err}");
    let (code, out, err) = in_volume(write);
    assert_eq!((code, out.as_str()), (0, "run\nrun\n"), "{err}");
    // Read-only, as asked: the program's write fails, the volume keeps what it had.
    let ro = "echo x > /var/lib/db/log; cat /var/lib/db/log";
    let (code, out, err) = run(
        &s,
        &[
            "run",
            "--rm",
            "-v",
            "data:/var/lib/db:ro",
            "busybox:test",
            "sh",
            "-c",
            ro,
        ],
    );
    assert_eq!((code, out.as_str()), (0, "run\nrun\n"), "{err}");
    assert!(err.contains("Read-only"), "{err}");
}

/// `lstore run [OPTIONS] busybox:test sh -c SCRIPT` in the background, once the script has
/// printed `ready`.
fn running(s: &Path, options: &[&str], script: &str) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lstore"))
        .arg("--store")
        .arg(s)
        .arg("run")
        .args(options)
        .args(["busybox:test", "sh", "-c", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line, "ready\n");
    child
}

#[test]
fn a_signal_to_lstore_run_reaches_the_program() {
    if !runnable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = store_with_images(tmp.path());
    let script = "trap 'exit 42' TERM; echo ready; while true; do sleep 0.1; done";
    let mut child = running(&s, &["--rm"], script);
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(42));
}

#[test]
fn run_errors_are_one_line() {
    if !runnable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = store_with_images(tmp.path());
    fails(&s, &["run", "no-such-image", "sh"], "no-such-image");
    fails(
        &s,
        &["run", "--runtime", "/nonexistent/runc", "busybox:test", "sh"],
        "/nonexistent/runc",
    );
    fails(&s, &["run", "-u", "nobody", "busybox:test", "sh"], "nobody");
    fails(&s, &["run", "-w", "relative", "busybox:test", "sh"], "absolute");
    fails(&s, &["start", "no-such-container"], "no-such-container");
    fails(&s, &["run", "-e", "=v", "busybox:test", "true"], "not name=value");
    fails(
        &s,
        &["run", "-w", "/proc/self", "busybox:test", "true"],
        "the runtime mounts its own",
    );
    fails(
        &s,
        &["run", "--rm", "busybox:test", "no-such-program"],
        "no such program",
    );
    // Nothing was left behind by the failed runs but the containers they made.
    let (code, _, _) = run(&s, &["run", "--rm", "busybox:test", "true"]);
    assert_eq!(code, 0);
}

#[test]
fn what_a_killed_run_leaves_is_cleared_by_rm() {
    if !runnable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = store_with_images(tmp.path());
    let mut child = running(&s, &["--name", "doomed"], "echo ready; while true; do sleep 0.1; done");
    child.kill().unwrap();
    child.wait().unwrap();
    let info: serde_json::Value = serde_json::from_str(&ok(&s, &["inspect", "doomed", "--json"])).unwrap();
    let id = info["id"].as_str().unwrap().to_string();
    // Left: the runtime's container, still running, and the bundle with its dead mount.
    ok(&s, &["rm", "doomed"]);
    let bundles = std::fs::read_dir("/run/lstore").into_iter().flatten().flatten();
    let left: Vec<_> = bundles
        .filter(|e| e.file_name().to_string_lossy().contains(&id))
        .collect();
    assert!(left.is_empty(), "bundles left: {left:?}");
    for runtime in ["runc", "crun"] {
        if let Ok(o) = Command::new(runtime).arg("list").output() {
            assert!(
                !String::from_utf8_lossy(&o.stdout).contains(&id),
                "{runtime} still runs it"
            );
        }
    }
}
