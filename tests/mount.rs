//! Layers and containers mounted through FUSE, used by real programs: cp, tar, mv, ln, rm,
//! chmod, sqlite3, Python. Needs root and /dev/fuse; where they are missing the tests say so
//! and pass, except under CI (`CI=true`), where they fail.

mod common;

use common::ok;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Whether FUSE can be used here; under CI its absence is a failure.
fn fuse_here() -> bool {
    let root = rustix::process::geteuid().is_root();
    let dev = Path::new("/dev/fuse").exists();
    if root && dev {
        return true;
    }
    let why = format!("FUSE tests need root and /dev/fuse (root: {root}, /dev/fuse: {dev})");
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipped: {why}");
    false
}

/// A mount served in the foreground by a child process, unmounted when dropped.
struct Mounted {
    child: Child,
    dir: PathBuf,
}

impl Mounted {
    fn new(store: &Path, r: &str, dir: &Path, extra: &[&str]) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_lstore"))
            .arg("--store")
            .arg(store)
            .args(["mount", r])
            .arg(dir)
            .arg("--foreground")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "mounted", "the mount did not come up");
        Mounted {
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// `umount`, then the serving process commits and exits cleanly.
    fn unmount(mut self) {
        sh(&format!("umount {}", self.dir.display()));
        let st = self.child.wait().unwrap();
        assert!(st.success(), "the mount process exits cleanly after umount");
    }

    /// SIGKILL of the serving process; the dead mount is detached.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn sh(script: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        o.status.success(),
        "sh -c {script:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sh_fails(script: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(!o.status.success(), "sh -c {script:?} should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A small image: a few folders, files, a symlink and a hard link.
fn image(s: &Path, tmp: &Path) -> PathBuf {
    let src = tmp.join("src");
    for d in ["etc", "usr/bin", "var/log"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join("etc/motd"), "welcome\n").unwrap();
    std::fs::write(src.join("usr/bin/tool"), common::noise(200_000, 9)).unwrap();
    sh(&format!(
        "cd {} && chmod 755 usr/bin/tool && ln -s ../usr/bin/tool etc/tool && ln etc/motd etc/motd.hard",
        src.display()
    ));
    ok(s, &["init"]);
    ok(s, &["import", src.to_str().unwrap(), "--name", "img"]);
    src
}

#[test]
fn a_container_mounted_read_write_takes_real_programs_and_keeps_the_image_unchanged() {
    if !fuse_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    let src = image(&s, tmp.path());
    let c = ok(&s, &["create", "img", "--name", "web"]).trim().to_string();
    let mnt = tmp.path().join("mnt");
    let m = Mounted::new(&s, "web", &mnt, &[]);
    let d = mnt.display();
    // The image as it was imported.
    sh(&format!("diff -r {} {d}", src.display()));
    assert_eq!(sh(&format!("readlink {d}/etc/tool")).trim(), "../usr/bin/tool");
    assert_eq!(sh(&format!("stat -c %h {d}/etc/motd")).trim(), "2");
    // Real programs change it.
    sh(&format!("echo hi > {d}/etc/motd && cat {d}/etc/motd.hard | grep -q hi"));
    sh(&format!(
        "mkdir -p {d}/srv/a/b && cp -a {}/usr {d}/srv/a/b/ && diff -r {}/usr {d}/srv/a/b/usr",
        src.display(),
        src.display()
    ));
    sh(&format!(
        "mv {d}/srv/a {d}/srv/moved && test -f {d}/srv/moved/b/usr/bin/tool && test ! -e {d}/srv/a"
    ));
    sh(&format!("rm -r {d}/var/log && rmdir {d}/var"));
    sh(&format!(
        "chmod 600 {d}/etc/motd && test \"$(stat -c %a {d}/etc/motd)\" = 600"
    ));
    sh(&format!(
        "ln -s motd {d}/etc/link && ln {d}/usr/bin/tool {d}/usr/bin/tool2"
    ));
    sh(&format!(
        "dd if=/dev/zero of={d}/usr/bin/tool bs=4096 count=1 seek=10 conv=notrunc status=none"
    ));
    sh(&format!(
        "truncate -s 100 {d}/etc/link2 && test \"$(stat -c %s {d}/etc/link2)\" = 100"
    ));
    let err = sh_fails(&format!("rmdir {d}/etc"));
    assert!(err.contains("not empty"), "{err}");
    let err = sh_fails(&format!("mkdir {d}/etc"));
    assert!(err.contains("exists"), "{err}");
    sh(&format!("setfattr -n user.note -v hello {d}/etc/motd 2>/dev/null || python3 -c \"import os; os.setxattr('{d}/etc/motd', 'user.note', b'hello')\""));
    assert_eq!(
        sh(&format!(
            "python3 -c \"import os; print(os.getxattr('{d}/etc/motd', 'user.note').decode())\""
        ))
        .trim(),
        "hello"
    );
    m.unmount();
    // The container has the changes; the image does not.
    assert_eq!(ok(&s, &["get", "web", "etc/motd"]), "hi\n");
    assert_eq!(ok(&s, &["get", "img", "etc/motd"]), "welcome\n");
    let diff = ok(&s, &["diff", &c]);
    for line in ["C /etc/motd", "A /srv/moved", "D /var", "A /etc/link"] {
        assert!(diff.lines().any(|l| l == line), "{line} in:\n{diff}");
    }
    let stat = ok(&s, &["stat", "web", "usr/bin/tool"]);
    assert!(
        stat.contains("links 2") || stat.contains("nlink 2") || stat.contains("2"),
        "{stat}"
    );
    ok(&s, &["verify"]);
}

#[test]
fn a_layer_mounts_read_only_and_a_tar_round_trip_through_a_container_is_exact() {
    if !fuse_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    let src = image(&s, tmp.path());
    let ro = tmp.path().join("ro");
    let m = Mounted::new(&s, "img", &ro, &[]);
    let err = sh_fails(&format!("touch {}/etc/new", ro.display()));
    assert!(err.contains("Read-only"), "{err}");
    sh(&format!("diff -r {} {}", src.display(), ro.display()));
    m.unmount();
    ok(&s, &["create", "img", "--name", "box"]);
    let rw = tmp.path().join("rw");
    let m = Mounted::new(&s, "box", &rw, &[]);
    sh(&format!(
        "mkdir {}/x && tar --format=posix -C {} -cf - . | tar -C {}/x -xpf -",
        rw.display(),
        src.display(),
        rw.display()
    ));
    // Folders' sizes and link counts are the file system's own; everything else is the tree's.
    let listing = |dir: &str| {
        let script = format!(
            r#"
import os, stat
for root, dirs, files in os.walk('{dir}'):
    for n in sorted(dirs + files):
        p = os.path.join(root, n)
        s = os.lstat(p)
        extra = '' if stat.S_ISDIR(s.st_mode) else f'{{s.st_size}} {{s.st_nlink}}'
        link = os.readlink(p) if stat.S_ISLNK(s.st_mode) else ''
        print(os.path.relpath(p, '{dir}'), oct(s.st_mode), s.st_uid, s.st_gid, s.st_mtime_ns, extra, link)
"#
        );
        let o = Command::new("python3").arg("-c").arg(&script).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut lines: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        listing(&format!("{}/x", rw.display())),
        listing(&src.display().to_string())
    );
    m.unmount();
}

#[test]
fn an_unlinked_open_file_stays_readable_and_writable_until_closed() {
    if !fuse_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    image(&s, tmp.path());
    ok(&s, &["create", "img", "--name", "c"]);
    let mnt = tmp.path().join("mnt");
    let m = Mounted::new(&s, "c", &mnt, &[]);
    let script = format!(
        r#"
import os
p = '{d}/etc/scratch'
f = open(p, 'w+b')
f.write(b'before')
f.flush()
os.unlink(p)
assert not os.path.exists(p)
f.write(b' after')
f.flush()
f.seek(0)
assert f.read() == b'before after', 'read back'
f.close()
assert not os.path.exists(p)
"#,
        d = mnt.display()
    );
    let o = Command::new("python3").arg("-c").arg(&script).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    m.unmount();
    assert!(!ok(&s, &["ls", "c", "etc"]).contains("scratch"));
}

#[test]
fn sqlite_commits_survive_a_killed_mount_after_fsync() {
    if !fuse_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    image(&s, tmp.path());
    ok(&s, &["create", "img", "--name", "db"]);
    let mnt = tmp.path().join("mnt");
    let m = Mounted::new(&s, "db", &mnt, &[]);
    let script = format!(
        r#"
import sqlite3
db = sqlite3.connect('{d}/var/data.db')
# WAL with full sync: a commit is durable once sqlite reports it (in the default rollback
# mode it is the journal's unlink that commits, which no file system makes durable without
# a folder fsync that sqlite does not do).
db.execute('pragma journal_mode=wal')
db.execute('pragma synchronous=full')
db.execute('create table t (k integer primary key, v text)')
for i in range(20):
    with db:
        db.executemany('insert into t values (?, ?)', [(i * 100 + j, 'x' * 50) for j in range(100)])
print(db.execute('select count(*) from t').fetchone()[0])
"#,
        d = mnt.display()
    );
    let o = Command::new("python3").arg("-c").arg(&script).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "2000");
    // sqlite fsyncs each transaction: a SIGKILL of the mount loses none of them.
    m.kill();
    ok(&s, &["verify"]);
    let m = Mounted::new(&s, "db", &mnt, &[]);
    let check = format!(
        "import sqlite3; db = sqlite3.connect('{}/var/data.db'); print(db.execute('pragma integrity_check').fetchone()[0], db.execute('select count(*) from t').fetchone()[0])",
        mnt.display()
    );
    let o = Command::new("python3").arg("-c").arg(&check).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ok 2000");
    m.unmount();
}

#[test]
fn mount_errors_are_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    image(&s, tmp.path());
    common::fails(&s, &["mount", "nothing", tmp.path().to_str().unwrap()], "nothing");
    if fuse_here() {
        let missing = tmp.path().join("no-such-dir");
        common::fails(&s, &["mount", "img", missing.to_str().unwrap()], "no-such-dir");
    }
}
