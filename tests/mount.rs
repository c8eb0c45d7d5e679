//! Layers and containers mounted through FUSE, used by real programs: cp, tar, mv, ln, rm,
//! chmod, sqlite3, Python. Needs root and /dev/fuse; where they are missing the tests say so
//! and pass, except under CI (`CI=true`), where they fail.

mod common;

use common::{ok, Rng};
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

    /// `lstore umount`, which returns once the serving process committed and exited cleanly.
    fn unmount(mut self) {
        lstore_umount(&self.dir);
        // umount returns once the server's main thread has exited (a zombie); its other
        // threads may take a moment more before the kernel lets it be reaped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let st = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the mount process ended before umount returned"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
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

fn lstore_umount(dir: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_lstore"))
        .arg("umount")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "lstore umount: {}",
        String::from_utf8_lossy(&o.stderr)
    );
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
    // A folder is modified when an entry comes or goes (Python's import cache relies on it).
    sh(&format!(
        "touch -d @1000 {d}/etc && touch {d}/etc/new && test $(stat -c %Y {d}/etc) -gt 1000"
    ));
    sh(&format!(
        "touch -d @1000 {d}/etc && rm {d}/etc/new && test $(stat -c %Y {d}/etc) -gt 1000"
    ));
    sh(&format!(
        "touch -d @1000 {d} && mkdir {d}/top && test $(stat -c %Y {d}) -gt 1000 && rmdir {d}/top"
    ));
    // fallocate makes a file long enough, or with --keep-size leaves it; holes are refused.
    sh(&format!(
        "fallocate -l 1M {d}/etc/space && test $(stat -c %s {d}/etc/space) = 1048576"
    ));
    sh(&format!(
        "fallocate -n -l 4M {d}/etc/space && test $(stat -c %s {d}/etc/space) = 1048576"
    ));
    assert!(sh_fails(&format!("fallocate -p -o 0 -l 4096 {d}/etc/space")).contains("unsupported"));
    sh(&format!("rm {d}/etc/space"));
    // cp -p and cp -a set permissions as an access ACL where one is taken: the mode follows.
    sh(&format!(
        "cp -p {}/usr/bin/tool {d}/etc/tool-copy && test $(stat -c %a {d}/etc/tool-copy) = 755",
        src.display()
    ));
    sh(&format!(
        "cp -a {}/usr {d}/usr-copy && test $(stat -c %a {d}/usr-copy/bin/tool) = 755",
        src.display()
    ));
    sh(&format!("rm -r {d}/etc/tool-copy {d}/usr-copy"));
    // A unix socket bound in the container (as postgres and mysqld do in /run and /tmp).
    let bind = format!(
        "import socket, os, stat; s = socket.socket(socket.AF_UNIX); s.bind('{d}/etc/sock'); os.chmod('{d}/etc/sock', 0o777); print(stat.S_ISSOCK(os.stat('{d}/etc/sock').st_mode))"
    );
    assert_eq!(sh(&format!("python3 -c \"{bind}\"")), "True\n");
    sh(&format!("rm {d}/etc/sock"));
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
    let err = sh_fails(&format!("touch {d}/{}", "n".repeat(256)));
    assert!(err.contains("too long"), "{err}");
    // df of the mount asks the store file's file system (here the one the mount sits on).
    sh(&format!("timeout 20 df {d} > /dev/null"));
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
    let stat: serde_json::Value = serde_json::from_str(&ok(&s, &["stat", "web", "usr/bin/tool", "--json"])).unwrap();
    assert_eq!(stat["nlink"], 2, "{stat}");
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
fn sqlite_in_a_volume_keeps_every_reported_commit_when_the_mount_is_killed_mid_run() {
    if !fuse_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    image(&s, tmp.path());
    ok(&s, &["create", "img", "--name", "db", "-v", "dbdata:/var/lib/db"]);
    let mnt = tmp.path().join("mnt");
    // No commit of the mount's own: what survives is what sqlite's fsyncs committed.
    let m = Mounted::new(&s, "db", &mnt, &["--commit-every", "3600"]);
    // 10,000 rows in 100 transactions; each is reported once sqlite says it committed.
    let script = format!(
        r#"
import sqlite3, sys
db = sqlite3.connect('{d}/var/lib/db/data.db')
# WAL with full sync: a commit is durable once sqlite reports it (in the default rollback
# mode it is the journal's unlink that commits, which no file system makes durable without
# a folder fsync that sqlite does not do).
db.execute('pragma journal_mode=wal')
db.execute('pragma synchronous=full')
db.execute('create table t (k integer primary key, v text)')
for i in range(100):
    with db:
        db.executemany('insert into t values (?, ?)', [(i * 100 + j, 'x' * 50) for j in range(100)])
    print(i + 1, flush=True)
"#,
        d = mnt.display()
    );
    let mut py = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(py.stdout.take().unwrap()).lines();
    let mut reported = 0;
    while reported < 40 {
        reported = lines
            .next()
            .expect("sqlite stopped before 40 commits")
            .unwrap()
            .parse()
            .unwrap();
    }
    // SIGKILL of the mount mid-run: sqlite then fails; what it reported before stays.
    m.kill();
    for l in lines.map_while(Result::ok) {
        reported = l.parse().unwrap();
    }
    py.wait().unwrap();
    ok(&s, &["verify"]);
    let m = Mounted::new(&s, "db", &mnt, &[]);
    let check = format!(
        "import sqlite3; db = sqlite3.connect('{}/var/lib/db/data.db'); print(db.execute('pragma integrity_check').fetchone()[0], db.execute('select count(*) from t').fetchone()[0])",
        mnt.display()
    );
    let o = Command::new("python3").arg("-c").arg(&check).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let (integrity, rows) = out.trim().split_once(' ').unwrap();
    assert_eq!(integrity, "ok");
    let rows: u64 = rows.parse().unwrap();
    assert!(
        rows >= reported * 100,
        "{rows} rows, {reported} transactions reported committed"
    );
    assert_eq!(rows % 100, 0, "a transaction is all or nothing");
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
        let file = tmp.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        common::fails(&s, &["mount", "img", file.to_str().unwrap()], "not a folder");
    }
}

/// One file-system call of the differential test.
#[derive(Clone, Debug)]
enum Op {
    Write(usize, u64, usize),
    Append(usize, usize),
    Truncate(usize, u64),
    Unlink(usize),
    Mkdir(usize),
    Rmdir(usize),
    Rename(usize, usize),
    Link(usize, usize),
    Symlink(usize, usize),
    Chmod(usize, u32),
    SetXattr(usize, u8),
    Read(usize),
    /// Create or open, write, unlink while open, write again, read it all back, close.
    OpenUnlink(usize, usize),
    /// Write through a shared writable map of an existing file.
    Mmap(usize, u64, usize),
    /// `renameat2` with `RENAME_EXCHANGE`, or with `RENAME_NOREPLACE`.
    Exchange(usize, usize),
    NoReplace(usize, usize),
}

const NAMES: [&str; 8] = ["a", "b", "d1", "d1/x", "d1/y", "d2", "d2/z", "d1/x/deep"];

impl Rng {
    fn op(&mut self) -> Op {
        let p = |r: &mut Rng| r.below(NAMES.len() as u64) as usize;
        match self.below(16) {
            0 => Op::Write(p(self), self.below(200_000), 1 + self.below(70_000) as usize),
            1 => Op::Append(p(self), 1 + self.below(5000) as usize),
            2 => Op::Truncate(p(self), self.below(150_000)),
            3 => Op::Unlink(p(self)),
            4 => Op::Mkdir(p(self)),
            5 => Op::Rmdir(p(self)),
            6 => Op::Rename(p(self), p(self)),
            7 => Op::Link(p(self), p(self)),
            8 => Op::Symlink(p(self), p(self)),
            9 => Op::Chmod(p(self), [0o600, 0o644, 0o755, 0o700][self.below(4) as usize]),
            10 => Op::SetXattr(p(self), self.below(256) as u8),
            11 => Op::OpenUnlink(p(self), 1 + self.below(100_000) as usize),
            12 => Op::Mmap(p(self), self.below(100_000), 1 + self.below(10_000) as usize),
            13 => Op::Exchange(p(self), p(self)),
            14 => Op::NoReplace(p(self), p(self)),
            _ => Op::Read(p(self)),
        }
    }
}

/// Runs `op` in `root`: what it returned (bytes read, or nothing) or its errno.
fn apply_op(root: &Path, op: &Op) -> Result<Vec<u8>, i32> {
    use std::os::unix::fs::{FileExt, PermissionsExt};
    let at = |i: usize| root.join(NAMES[i]);
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(-1);
    let data = |len: usize, seed: u64| -> Vec<u8> { (0..len).map(|i| (i as u64 * 31 + seed) as u8).collect() };
    match op {
        Op::Write(p, off, len) => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(at(*p))
                .map_err(errno)?;
            f.write_all_at(&data(*len, *off), *off).map_err(errno)?;
        }
        Op::Append(p, len) => {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(at(*p))
                .map_err(errno)?;
            f.write_all(&data(*len, 7)).map_err(errno)?;
        }
        Op::Truncate(p, len) => {
            let f = std::fs::OpenOptions::new().write(true).open(at(*p)).map_err(errno)?;
            f.set_len(*len).map_err(errno)?;
        }
        Op::Unlink(p) => std::fs::remove_file(at(*p)).map_err(errno)?,
        Op::Mkdir(p) => std::fs::create_dir(at(*p)).map_err(errno)?,
        Op::Rmdir(p) => std::fs::remove_dir(at(*p)).map_err(errno)?,
        Op::Rename(a, b) => std::fs::rename(at(*a), at(*b)).map_err(errno)?,
        Op::Exchange(a, b) | Op::NoReplace(a, b) => {
            let flags = match op {
                Op::Exchange(..) => rustix::fs::RenameFlags::EXCHANGE,
                _ => rustix::fs::RenameFlags::NOREPLACE,
            };
            rustix::fs::renameat_with(rustix::fs::CWD, at(*a), rustix::fs::CWD, at(*b), flags)
                .map_err(|e| e.raw_os_error())?
        }
        Op::Link(a, b) => std::fs::hard_link(at(*a), at(*b)).map_err(errno)?,
        Op::Symlink(t, p) => std::os::unix::fs::symlink(NAMES[*t], at(*p)).map_err(errno)?,
        Op::Chmod(p, mode) => {
            let m = std::fs::symlink_metadata(at(*p)).map_err(errno)?;
            if m.file_type().is_symlink() {
                return Ok(Vec::new());
            }
            std::fs::set_permissions(at(*p), std::fs::Permissions::from_mode(*mode)).map_err(errno)?
        }
        Op::SetXattr(p, v) => rustix::fs::lsetxattr(at(*p), "user.t", &[*v], rustix::fs::XattrFlags::empty())
            .map_err(|e| e.raw_os_error())?,
        Op::Read(p) => {
            let m = std::fs::symlink_metadata(at(*p)).map_err(errno)?;
            if !m.is_file() {
                return Ok(Vec::new());
            }
            return std::fs::read(at(*p)).map_err(errno);
        }
        Op::OpenUnlink(p, len) => {
            use std::io::{Read, Seek, Write};
            let mut f = (std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false))
            .open(at(*p))
            .map_err(errno)?;
            f.write_all(&data(*len, 3)).map_err(errno)?;
            std::fs::remove_file(at(*p)).map_err(errno)?;
            f.write_all(&data(*len / 2, 5)).map_err(errno)?;
            f.seek(std::io::SeekFrom::Start(0)).map_err(errno)?;
            let mut back = Vec::new();
            f.read_to_end(&mut back).map_err(errno)?;
            return Ok(back);
        }
        Op::Mmap(p, off, len) => {
            let m = std::fs::symlink_metadata(at(*p)).map_err(errno)?;
            if !m.is_file() || m.len() < off + *len as u64 {
                return Ok(Vec::new());
            }
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(at(*p))
                .map_err(errno)?;
            // SAFETY: the file is this test's own; nothing else changes it while mapped.
            let mut map = unsafe { memmap2::MmapMut::map_mut(&f) }.map_err(errno)?;
            map[*off as usize..*off as usize + len].copy_from_slice(&data(*len, 11));
            map.flush().map_err(errno)?;
        }
    }
    Ok(Vec::new())
}

/// Every entry below `root`: kind, mode, size, bytes, link count of files, target, xattr.
fn snapshot(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if m.is_dir() {
                todo.push(p.clone());
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else {
                format!(
                    "{} n{} {:?}",
                    m.size(),
                    m.nlink(),
                    blake3::hash(&std::fs::read(&p).unwrap())
                )
            };
            let mut x = [0u8; 16];
            let xattr = rustix::fs::lgetxattr(&p, "user.t", &mut x)
                .map(|n| x[..n].to_vec())
                .ok();
            let mode = if m.file_type().is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            };
            out.push(format!("{rel} {mode:o} {what} {xattr:?}"));
        }
    }
    out.sort();
    out
}

#[test]
fn random_file_system_calls_on_a_mount_do_what_they_do_on_a_plain_folder() {
    if !fuse_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    image(&s, tmp.path());
    let seeds: Vec<u64> = match std::env::var("LSTORE_FUSE_SEEDS") {
        Ok(n) => (1..=n.parse::<u64>().unwrap()).collect(),
        Err(_) => vec![1, 7, 2026, 31337, 99],
    };
    for seed in seeds {
        let name = format!("rand-{seed}");
        ok(&s, &["create", "img", "--name", &name]);
        let mnt = tmp.path().join(format!("mnt{seed}"));
        let m = Mounted::new(&s, &name, &mnt, &[]);
        let work = mnt.join("work");
        let plain = tmp.path().join(format!("plain{seed}"));
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(&plain).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut done = Vec::new();
        for step in 0..400 {
            let op = rng.op();
            done.push(op.clone());
            let before = snapshot(&plain);
            let want = apply_op(&plain, &op);
            let got = apply_op(&work, &op);
            assert_eq!(
                got, want,
                "seed {seed} step {step}: {op:?} on {before:?}; the calls so far: {done:?}"
            );
        }
        assert_eq!(
            snapshot(&work),
            snapshot(&plain),
            "seed {seed}: the trees after {done:?}"
        );
        m.unmount();
        // What the mount showed is what the store kept.
        let again = Mounted::new(&s, &name, &mnt, &[]);
        assert_eq!(snapshot(&work), snapshot(&plain), "seed {seed}: after a remount");
        again.unmount();
    }
}

#[test]
fn two_containers_of_one_image_mounted_at_once_see_only_their_own_writes() {
    if !fuse_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    image(&s, tmp.path());
    ok(&s, &["create", "img", "--name", "one"]);
    ok(&s, &["create", "img", "--name", "two"]);
    let (m1, m2) = (tmp.path().join("m1"), tmp.path().join("m2"));
    let one = Mounted::new(&s, "one", &m1, &[]);
    let two = Mounted::new(&s, "two", &m2, &[]);
    sh(&format!(
        "echo first > {}/etc/motd && echo second > {}/etc/motd",
        m1.display(),
        m2.display()
    ));
    // A file capability (v2: permitted cap_net_bind_service) is kept as the kernel checks it.
    let cap = "b'\\x01\\x00\\x00\\x02\\x00\\x04\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00'";
    sh(&format!(
        "python3 -c \"import os; os.setxattr('{}/usr/bin/tool', 'security.capability', {cap})\"",
        m1.display()
    ));
    assert_eq!(sh(&format!("cat {}/etc/motd", m1.display())), "first\n");
    assert_eq!(sh(&format!("cat {}/etc/motd", m2.display())), "second\n");
    one.unmount();
    two.unmount();
    assert_eq!(ok(&s, &["get", "one", "etc/motd"]), "first\n");
    assert_eq!(ok(&s, &["get", "two", "etc/motd"]), "second\n");
    assert_eq!(ok(&s, &["get", "img", "etc/motd"]), "welcome\n");
    let stat = ok(&s, &["stat", "one", "usr/bin/tool", "--json"]);
    assert!(stat.contains("security.capability"), "{stat}");
    assert!(!ok(&s, &["stat", "two", "usr/bin/tool", "--json"]).contains("security.capability"));
}

#[test]
fn a_background_mount_serves_until_unmounted_and_commits() {
    if !fuse_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    image(&s, tmp.path());
    ok(&s, &["create", "img", "--name", "bg"]);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    // A relative mount point, from the store's folder.
    let o = Command::new(env!("CARGO_BIN_EXE_lstore"))
        .current_dir(tmp.path())
        .args(["--store", "s", "mount", "bg", "mnt"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
    sh(&format!("echo background > {}/etc/motd", mnt.display()));
    // `lstore umount` returns once the serving process committed and ended.
    lstore_umount(&mnt);
    assert_eq!(ok(&s, &["get", "bg", "etc/motd"]), "background\n");
    let o = Command::new(env!("CARGO_BIN_EXE_lstore"))
        .arg("umount")
        .arg(&mnt)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an lstore mount"));
}

#[test]
fn a_plain_umount_commits_too() {
    if !fuse_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    image(&s, tmp.path());
    ok(&s, &["create", "img", "--name", "plain"]);
    let mnt = tmp.path().join("mnt");
    let mut m = Mounted::new(&s, "plain", &mnt, &[]);
    sh(&format!(
        "echo plain > {}/etc/motd && umount {}",
        mnt.display(),
        mnt.display()
    ));
    // The kernel does not wait for the server: it commits just after, and ends cleanly.
    assert!(m.child.wait().unwrap().success());
    assert_eq!(ok(&s, &["get", "plain", "etc/motd"]), "plain\n");
}

/// The error line of a command that must fail.
fn fails(s: &Path, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_lstore"))
        .arg("--store")
        .arg(s)
        .args(args)
        .output()
        .unwrap();
    assert!(!o.status.success(), "lstore {args:?} should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn volumes_and_bind_mounts_are_served_at_their_targets_each_a_file_system_of_its_own() {
    if !fuse_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    image(&s, tmp.path());
    let (ro, rw) = (tmp.path().join("ro"), tmp.path().join("rw"));
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("config"), "host config\n").unwrap();
    let ro_spec = format!("{}:/etc/app:ro", ro.display());
    let rw_spec = format!("{}:/srv/out", rw.display());
    ok(
        &s,
        &[
            "create",
            "img",
            "--name",
            "app",
            "-v",
            "data:/var/lib/db",
            "-v",
            &ro_spec,
            "-v",
            &rw_spec,
        ],
    );
    ok(&s, &["create", "img", "--name", "other", "-v", "data:/data"]);
    let mnt = tmp.path().join("mnt");
    let m = Mounted::new(&s, "app", &mnt, &[]);
    let d = mnt.display();
    // Each target is a folder of the container, with the mount's contents.
    sh(&format!(
        "echo row > {d}/var/lib/db/table && mkdir {d}/var/lib/db/sub && chmod 700 {d}/var/lib/db"
    ));
    assert_eq!(sh(&format!("ls {d}/var/lib")), "db\n");
    assert_eq!(sh(&format!("cat {d}/etc/app/config")), "host config\n");
    sh(&format!("echo result > {d}/srv/out/report"));
    assert_eq!(std::fs::read_to_string(rw.join("report")).unwrap(), "result\n");
    assert!(sh_fails(&format!("echo no > {d}/etc/app/config")).contains("Read-only"));
    // Each is a file system of its own: its own st_dev, and no rename or link across.
    // (A bind mount has its host folder's.)
    let devs = sh(&format!("stat -c %d {d} {d}/var/lib/db {d}/etc/app {}", ro.display()));
    let devs: Vec<&str> = devs.lines().collect();
    assert!(
        devs[0] != devs[1] && devs[1] != devs[2] && devs[0] != devs[2],
        "{devs:?}"
    );
    assert_eq!(devs[2], devs[3], "{devs:?}");
    let cross = format!(
        "import os, errno\nfor f in (os.rename, os.link):\n    try:\n        f('{d}/var/lib/db/table', '{d}/etc/table')\n    except OSError as e:\n        print(errno.errorcode[e.errno])"
    );
    let o = Command::new("python3").arg("-c").arg(&cross).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "EXDEV\nEXDEV\n");
    // While it is mounted, the container and its writable volume are this mount's.
    // (Onto an empty folder of their own: were they not refused, nothing else is covered.)
    let spare = tmp.path().join("spare");
    std::fs::create_dir(&spare).unwrap();
    let busy = fails(&s, &["--wait", "0", "mount", "other", spare.to_str().unwrap()]);
    assert!(busy.contains("volume 'data' is being written by process"), "{busy}");
    let busy = fails(&s, &["--wait", "0", "mount", "app", spare.to_str().unwrap()]);
    assert!(busy.contains("is being written by process"), "{busy}");
    assert!(fails(&s, &["--wait", "0", "rm", "app"]).contains("is being written by process"));
    // A volume is unmounted with its container, not alone; unmounted alone from outside, the
    // container goes on being served.
    let o = Command::new(env!("CARGO_BIN_EXE_lstore"))
        .arg("umount")
        .arg(mnt.join("var/lib/db"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("a volume of the container mounted at"));
    sh(&format!("umount {d}/var/lib/db"));
    // (Given the server time to notice, as it looks every 100 ms.)
    std::thread::sleep(std::time::Duration::from_millis(500));
    sh(&format!("mountpoint -q {d} && cat {d}/etc/motd >/dev/null"));
    m.unmount();
    // The volume kept what was written, for any container that mounts it.
    assert_eq!(ok(&s, &["get", "other", "data/table"]), "row\n");
    let m2 = tmp.path().join("m2");
    let other = Mounted::new(&s, "other", &m2, &[]);
    let m2d = m2.display();
    assert_eq!(
        sh(&format!(
            "stat -c %a {m2d}/data && cat {m2d}/data/table && ls {m2d}/data"
        )),
        "700\nrow\nsub\ntable\n"
    );
    other.unmount();
    // The container's own layer got only the folders leading to the targets.
    let diff = ok(&s, &["diff", "app"]);
    assert!(!diff.contains("table") && !diff.contains("report"), "{diff}");
}

/// One step of the fsx-style exerciser, on one file of a mount and on a model of its bytes.
fn fsx_step(f: &mut std::fs::File, model: &mut Vec<u8>, rng: &mut Rng, path: &Path) -> String {
    use std::os::unix::fs::FileExt;
    const MAX: u64 = 1 << 20;
    let off = rng.below(MAX);
    let most = if rng.below(4) == 0 { 200_000 } else { 5000 };
    let len = 1 + rng.below(most) as usize;
    match rng.below(10) {
        0..=2 => {
            let data = common::noise(len, rng.next());
            f.write_all_at(&data, off).unwrap();
            let end = off as usize + len;
            if model.len() < end {
                model.resize(end, 0);
            }
            model[off as usize..end].copy_from_slice(&data);
            format!("write {off} {len}")
        }
        3..=4 => {
            let mut buf = vec![0u8; len];
            let n = f.read_at(&mut buf, off).unwrap();
            let want = model.get(off as usize..).map_or(&[][..], |m| &m[..m.len().min(len)]);
            assert_eq!(&buf[..n], want, "read {off} {len}");
            format!("read {off} {len}")
        }
        5 => {
            let to = rng.below(MAX);
            f.set_len(to).unwrap();
            model.resize(to as usize, 0);
            format!("truncate {to}")
        }
        6 | 7 if !model.is_empty() => {
            // Through a shared mapping of the whole file, then msync (or only munmap).
            let off = off as usize % model.len();
            let len = len.min(model.len() - off);
            let mut map = unsafe { memmap2::MmapMut::map_mut(&*f).unwrap() };
            let data = common::noise(len, rng.next());
            map[off..off + len].copy_from_slice(&data);
            if rng.below(2) == 0 {
                map.flush().unwrap();
            }
            drop(map);
            model[off..off + len].copy_from_slice(&data);
            format!("mmap write {off} {len}")
        }
        8 if !model.is_empty() => {
            let off = off as usize % model.len();
            let len = len.min(model.len() - off);
            let map = unsafe { memmap2::Mmap::map(&*f).unwrap() };
            assert_eq!(&map[off..off + len], &model[off..off + len], "mmap read {off} {len}");
            format!("mmap read {off} {len}")
        }
        _ => {
            if rng.below(2) == 0 {
                f.sync_all().unwrap();
            }
            *f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
            "reopen".into()
        }
    }
}

#[test]
fn fsx_random_reads_writes_truncates_and_mmap_match_a_model_and_survive_a_remount() {
    if !fuse_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    image(&s, tmp.path());
    ok(&s, &["create", "img", "--name", "fsx"]);
    let mnt = tmp.path().join("mnt");
    let m = Mounted::new(&s, "fsx", &mnt, &[]);
    // A file of the image, copied up block by block as it is written.
    let path = mnt.join("usr/bin/tool");
    let mut model = std::fs::read(&path).unwrap();
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let mut rng = Rng(0x5eed_f5c5);
    let mut done = Vec::new();
    for _ in 0..1500 {
        done.push(fsx_step(&mut f, &mut model, &mut rng, &path));
        if f.metadata().unwrap().len() != model.len() as u64 {
            panic!("size differs after: {:?}", &done[done.len().saturating_sub(5)..]);
        }
    }
    drop(f);
    assert!(
        std::fs::read(&path).unwrap() == model,
        "the file differs from its model"
    );
    m.unmount();
    let m = Mounted::new(&s, "fsx", &mnt, &[]);
    assert!(
        std::fs::read(&path).unwrap() == model,
        "the file differs after a remount"
    );
    m.unmount();
    let image_file = common::lstore(&s, &["get", "img", "usr/bin/tool"], None).stdout;
    assert!(image_file == common::noise(200_000, 9), "the image keeps its file");
}

#[test]
fn a_final_commit_that_fails_is_reported_by_lstore_umount() {
    if !fuse_here() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let disk = common::Tmpfs::mount(tmp.path(), "48m");
    let s = disk.0.join("s");
    image(&s, tmp.path());
    ok(&s, &["create", "img", "--name", "full"]);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    ok(&s, &["mount", "full", mnt.to_str().unwrap(), "--commit-every", "3600"]);
    std::fs::write(mnt.join("etc/data"), common::noise(4 << 20, 3)).unwrap();
    // The disk fills up before the last commit.
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", disk.0.join("filler").display()))
        .args(["bs=1M", "status=none"])
        .stderr(Stdio::null())
        .status();
    let o = Command::new(env!("CARGO_BIN_EXE_lstore"))
        .arg("umount")
        .arg(&mnt)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "the lost commit is this command's failure");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("failed at the end"), "{err}");
    std::fs::remove_file(disk.0.join("filler")).unwrap();
    ok(&s, &["verify"]);
}
