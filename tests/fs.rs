//! A layer is a faithful file system: every kind and attribute survives import and export,
//! an import with a parent is exactly the folder, hard links stay links, names are bytes,
//! one folder lists alone, and diff reports what changed as `docker diff` does.

mod common;

use common::{fails, ok};
use lstore::{Attrs, ChangeKind, Error, FileKind, ImportOptions, Options, Store};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// What a host tree holds, path by path: every lstat field a layer keeps (not the inode
/// number), the xattrs, a symlink's target and a file's bytes; plus the hard-link groups.
#[derive(Debug, PartialEq)]
struct HostTree {
    entries: BTreeMap<Vec<u8>, String>,
    link_groups: Vec<Vec<Vec<u8>>>,
}

fn host_tree(root: &Path) -> HostTree {
    let mut entries = BTreeMap::new();
    let mut by_ino: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    // The root folder's own attributes too (its mtime is the folder's, set last).
    entries.insert(b"/".to_vec(), describe(root));
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
            entries.insert(rel.clone(), describe(&p));
            if !md.is_dir() && md.nlink() > 1 {
                by_ino.entry((md.dev(), md.ino())).or_default().push(rel);
            }
            if md.is_dir() {
                todo.push(p);
            }
        }
    }
    let mut link_groups: Vec<Vec<Vec<u8>>> = by_ino
        .into_values()
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    link_groups.sort();
    HostTree { entries, link_groups }
}

/// Every lstat field a layer keeps of `p` (not its inode number), its xattrs, a symlink's
/// target and a file's bytes.
fn describe(p: &Path) -> String {
    let md = std::fs::symlink_metadata(p).unwrap();
    let mut xattrs = Vec::new();
    let mut names = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(p, &mut names[..]).unwrap_or(0);
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut v = vec![0u8; 65536];
        let got = rustix::fs::lgetxattr(p, OsStr::from_bytes(name), &mut v[..]).unwrap();
        xattrs.push((name.to_vec(), v[..got].to_vec()));
    }
    xattrs.sort();
    let ft = md.file_type();
    let content = if ft.is_file() {
        format!("{:?}", blake3::hash(&std::fs::read(p).unwrap()))
    } else if ft.is_symlink() {
        format!("-> {:?}", std::fs::read_link(p).unwrap())
    } else {
        String::new()
    };
    let nlink = if ft.is_dir() { 0 } else { md.nlink() };
    let size = if ft.is_dir() { 0 } else { md.size() };
    format!(
        "mode {:o} owner {}:{} mtime {} rdev {} nlink {nlink} size {size} xattrs {xattrs:?} {content}",
        md.mode(),
        md.uid(),
        md.gid(),
        md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
        md.rdev(),
    )
}

/// Root is needed to make devices, set owners and `trusted.*` xattrs. Under CI (`CI=true`,
/// where the runner is root) a test that would skip fails instead.
fn have_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root under CI"
    );
    eprintln!("{test}: skipped (needs root for devices, owners and trusted xattrs)");
    false
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty()).unwrap();
}

fn set_mtime(p: &Path, secs: i64, nanos: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(rustix::fs::CWD, p, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// A POSIX access ACL (user::rw-, user:1000:r--, group::r--, mask::r--, other::r--) as the
/// kernel's xattr bytes.
fn acl_bytes() -> Vec<u8> {
    let mut b = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 1000),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&perm.to_le_bytes());
        b.extend_from_slice(&id.to_le_bytes());
    }
    b
}

/// A tree with every kind a layer keeps and the attributes that matter to a root file system.
fn every_kind(root: &Path) {
    let p = |s: &str| root.join(s);
    for d in ["etc/empty", "usr/bin", "tmp", "dev"] {
        std::fs::create_dir_all(p(d)).unwrap();
    }
    std::fs::set_permissions(p("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(p("usr/bin/ping"), b"\x7fELF ping").unwrap();
    std::fs::set_permissions(p("usr/bin/ping"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    // security.capability: cap_net_raw+ep, what lets ping work without setuid.
    set_xattr(
        &p("usr/bin/ping"),
        "security.capability",
        &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    std::fs::write(p("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    set_xattr(&p("etc/passwd"), "user.zero", b"\0starts with NUL");
    set_xattr(&p("etc/passwd"), "trusted.overlay", b"t");
    set_xattr(&p("etc/passwd"), "system.posix_acl_access", &acl_bytes());
    std::os::unix::fs::symlink("usr/bin", p("bin")).unwrap();
    set_mtime(&p("bin"), 981_173_106, 123_456_789);
    std::fs::write(p("usr/bin/busybox"), vec![7u8; 300_000]).unwrap();
    std::fs::hard_link(p("usr/bin/busybox"), p("usr/bin/sh")).unwrap();
    std::fs::hard_link(p("usr/bin/busybox"), p("usr/bin/ls")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p("dev/null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p("dev/loop0"),
        rustix::fs::FileType::BlockDevice,
        rustix::fs::Mode::from_raw_mode(0o660),
        rustix::fs::makedev(7, 0),
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p("dev/initctl"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    std::fs::write(root.join(OsStr::from_bytes(b"name\xff")), b"ff").unwrap();
    std::fs::write(root.join(OsStr::from_bytes(b"name\xfe")), b"fe").unwrap();
    std::os::unix::fs::chown(p("etc/passwd"), Some(1000), Some(100)).unwrap();
    std::os::unix::fs::lchown(p("bin"), Some(5), Some(6)).unwrap();
    std::os::unix::fs::chown(p("etc"), Some(0), Some(42)).unwrap();
    // Folders' mtimes last: making entries in them changes them.
    set_mtime(&p("etc/empty"), 1_000_000_000, 1);
    set_mtime(&p("etc"), 1_100_000_000, 2);
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o750)).unwrap();
    set_xattr(root, "user.root", b"the root folder's own");
    set_mtime(root, 1_200_000_000, 3);
}

#[test]
fn every_kind_and_attribute_round_trips_through_import_and_export() {
    if !have_root("every_kind_and_attribute_round_trips_through_import_and_export") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    every_kind(&src);
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let imported = lstore::import_dir(&store, &src, &ImportOptions::default()).unwrap();
    assert!(imported.skipped.is_empty());
    store.commit().unwrap();
    drop(imported);
    drop(store);
    // Through a reopen, and through the CLI's export.
    let out = tmp.path().join("out");
    let id = Store::open(tmp.path().join("s")).unwrap().layers().unwrap()[0]
        .id
        .to_string();
    ok(&tmp.path().join("s"), &["export", &id, out.to_str().unwrap()]);
    let (a, b) = (host_tree(&src), host_tree(&out));
    assert_eq!(a.link_groups.len(), 1, "busybox, sh and ls are one file");
    assert_eq!(a, b);
}

#[test]
fn a_layer_keeps_kinds_attributes_and_hard_links_as_the_folder_had_them() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("etc/empty")).unwrap();
    std::fs::create_dir_all(src.join("tmp")).unwrap();
    std::fs::set_permissions(src.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(src.join("etc/a"), b"shared bytes").unwrap();
    std::fs::hard_link(src.join("etc/a"), src.join("etc/b")).unwrap();
    std::os::unix::fs::symlink("etc/a", src.join("link")).unwrap();
    set_xattr(&src.join("etc/a"), "user.v", b"\0\x01");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let layer = lstore::import_dir(&store, &src, &ImportOptions::default())
        .unwrap()
        .layer;
    let kind = |p: &str| layer.stat(p).unwrap().unwrap().attrs.unwrap().kind;
    assert_eq!(kind("etc/empty"), FileKind::Directory);
    assert_eq!(kind("link"), FileKind::Symlink);
    assert_eq!(kind("fifo"), FileKind::Fifo);
    let tmp_attrs = layer.stat("tmp").unwrap().unwrap().attrs.unwrap();
    assert_eq!(tmp_attrs.mode, libc::S_IFDIR | 0o1777);
    let (a, b) = (
        layer.stat("etc/a").unwrap().unwrap().attrs.unwrap(),
        layer.stat("etc/b").unwrap().unwrap().attrs.unwrap(),
    );
    assert_eq!((a.ino, a.nlink), (b.ino, 2), "two names, one inode");
    assert_eq!(a.xattr(b"user.v"), Some(&b"\0\x01"[..]));
    assert_eq!(
        layer.stat("link").unwrap().unwrap().attrs.unwrap().link_target.unwrap(),
        b"etc/a"
    );
    // A write through one name is seen through the other, in a container.
    let c = store.create_container(&layer, None).unwrap();
    c.write_at("etc/b", 0, b"SHARED").unwrap();
    assert_eq!(c.get("etc/a").unwrap().unwrap(), b"SHARED bytes");
    assert_eq!(
        layer.get("etc/a").unwrap().unwrap(),
        b"shared bytes",
        "the image is unchanged"
    );
    // A name removed leaves the other with one link; the bytes stay.
    assert!(c.remove("etc/a", false).unwrap());
    let b_now = c.stat("etc/b").unwrap().unwrap().attrs.unwrap();
    assert_eq!((b_now.ino, b_now.nlink), (a.ino, 1));
    assert_eq!(c.get("etc/b").unwrap().unwrap(), b"SHARED bytes");
}

#[test]
fn an_import_with_a_parent_is_exactly_the_folder_and_shares_what_did_not_change() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = tmp.path().join("v1");
    for d in ["app/lib", "app/cache/deep", "etc"] {
        std::fs::create_dir_all(v1.join(d)).unwrap();
    }
    std::fs::write(v1.join("app/lib/big"), vec![3u8; 1 << 20]).unwrap();
    std::fs::write(v1.join("app/cache/deep/x"), b"x").unwrap();
    std::fs::write(v1.join("etc/conf"), b"v1").unwrap();
    std::fs::write(v1.join("etc/becomes-dir"), b"file").unwrap();
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let base = lstore::import_dir(&store, &v1, &ImportOptions::default())
        .unwrap()
        .layer;

    let v2 = tmp.path().join("v2");
    std::process::Command::new("cp")
        .arg("-a")
        .arg(&v1)
        .arg(&v2)
        .status()
        .unwrap();
    std::fs::remove_dir_all(v2.join("app/cache")).unwrap();
    std::fs::write(v2.join("etc/conf"), b"v2!").unwrap();
    std::fs::remove_file(v2.join("etc/becomes-dir")).unwrap();
    std::fs::create_dir(v2.join("etc/becomes-dir")).unwrap();
    std::fs::write(v2.join("etc/new"), b"new").unwrap();
    let opts = ImportOptions {
        parent: Some(&base),
        ..Default::default()
    };
    let done = lstore::import_dir(&store, &v2, &opts).unwrap();
    assert_eq!(done.deleted, 1, "app/cache goes in one change, with all below it");
    let top = done.layer;
    assert!(top.stat("app/cache/deep/x").unwrap().is_none());
    assert_eq!(top.get("etc/conf").unwrap().unwrap(), b"v2!");
    assert_eq!(
        top.stat("etc/becomes-dir").unwrap().unwrap().attrs.unwrap().kind,
        FileKind::Directory
    );
    // Unchanged: the same inode number, the same bytes, nothing stored again.
    let ino = |l: &lstore::Layer, p: &str| l.stat(p).unwrap().unwrap().attrs.unwrap().ino;
    assert_eq!(ino(&base, "app/lib/big"), ino(&top, "app/lib/big"));
    let mut changes: Vec<(char, String)> = base
        .diff(&top)
        .unwrap()
        .map(|c| (c.kind.letter(), String::from_utf8(c.path).unwrap()))
        .collect();
    changes.sort();
    let mut expected = vec![
        ('D', "app/cache"),
        ('C', "etc/conf"),
        ('C', "etc/becomes-dir"),
        ('A', "etc/new"),
        ('C', "app"),
        ('C', "etc"),
    ];
    expected.sort();
    let expected: Vec<(char, String)> = expected.into_iter().map(|(k, p)| (k, p.to_string())).collect();
    assert_eq!(changes, expected);

    // --add keeps what the folder does not have.
    let only_new = tmp.path().join("only-new");
    std::fs::create_dir(&only_new).unwrap();
    std::fs::write(only_new.join("added"), b"a").unwrap();
    let opts = ImportOptions {
        parent: Some(&top),
        add: true,
        ..Default::default()
    };
    let added = lstore::import_dir(&store, &only_new, &opts).unwrap().layer;
    assert_eq!(added.get("etc/conf").unwrap().unwrap(), b"v2!");
    assert_eq!(added.get("added").unwrap().unwrap(), b"a");
}

/// The entry names of a tar, in order.
fn tar_names(tar: &[u8]) -> Vec<String> {
    (tar::Archive::new(tar).entries().unwrap())
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

#[test]
fn a_socket_is_kept_as_a_name_exported_again_and_left_out_of_a_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("file"), b"f").unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    let store_path = tmp.path().join("s");
    ok(&store_path, &["init"]);
    let o = common::lstore(&store_path, &["import", src.to_str().unwrap()], None);
    assert!(o.status.success());
    assert!(o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(ok(&store_path, &["stat", &id, "sock"]).contains("kind\tsocket"));
    let out = tmp.path().join("out");
    ok(&store_path, &["export", &id, out.to_str().unwrap()]);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(out.join("sock"))
        .unwrap()
        .file_type()
        .is_socket());
    // A tar has no kind for it.
    let tar = common::lstore(&store_path, &["export-tar", &id], None).stdout;
    let names = tar_names(&tar);
    assert!(
        names.iter().any(|n| n == "file") && !names.iter().any(|n| n.contains("sock")),
        "{names:?}"
    );
    // Over a lower file of that name, the tar whites the file out instead.
    let lower = tmp.path().join("lower");
    std::fs::create_dir(&lower).unwrap();
    std::fs::write(lower.join("file"), b"f").unwrap();
    std::fs::write(lower.join("sock"), b"a file below").unwrap();
    let parent = ok(&store_path, &["import", lower.to_str().unwrap()]).trim().to_string();
    let child = ok(&store_path, &["import", src.to_str().unwrap(), "--parent", &parent])
        .trim()
        .to_string();
    let tar = common::lstore(&store_path, &["export-tar", &child, "--parent", &parent], None).stdout;
    let names = tar_names(&tar);
    assert!(
        names.iter().any(|n| n == ".wh.sock") && !names.iter().any(|n| n == "sock"),
        "{names:?}"
    );
}

#[test]
fn names_are_bytes_shown_escaped_and_typed_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let mut b = store.new_layer(None).unwrap();
    b.put(b"name\xff", b"ff").unwrap();
    b.put(b"name\xfe", b"fe").unwrap();
    b.put(b"back\\slash", b"bs").unwrap();
    let id = b.finish(Some("names")).unwrap().id().to_string();
    store.commit().unwrap();
    drop(store);
    let s = tmp.path().join("s");
    assert_eq!(ok(&s, &["ls", &id]), "back\\\\slash\t2\nname\\xfe\t2\nname\\xff\t2\n");
    let json: serde_json::Value = serde_json::from_str(&ok(&s, &["ls", &id, "--json"])).unwrap();
    let keys: Vec<Vec<u8>> = (json.as_array().unwrap().iter())
        .map(|r| lstore::unescape_path(r["key"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        keys,
        [b"back\\slash".to_vec(), b"name\xfe".to_vec(), b"name\xff".to_vec()]
    );
    // The raw bytes on the command line (as bash's $'name\xff' gives them) reach the value.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lstore"))
        .arg("--store")
        .arg(&s)
        .args(["get", "names"])
        .arg(OsStr::from_bytes(b"name\xff"))
        .output()
        .unwrap();
    assert_eq!(o.stdout, b"ff");
}

#[test]
fn a_folder_lists_alone_and_goes_or_moves_in_one_change() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let image = store.new_layer(None).unwrap().finish(None).unwrap();
    let c = store.create_container(&image, None).unwrap();
    c.mkdir("a", 0o755).unwrap();
    c.mkdir("a/sub", 0o700).unwrap();
    for i in 0..50 {
        c.put(format!("a/sub/f{i}"), b"x").unwrap();
    }
    c.put("a/file", b"y").unwrap();
    c.symlink(b"a/file", "top-link").unwrap();
    let names = |dir: &str| -> Vec<String> {
        (c.read_dir(dir).unwrap().into_iter())
            .map(|i| String::from_utf8(i.key).unwrap())
            .collect()
    };
    assert_eq!(names(""), ["a", "top-link"]);
    assert_eq!(names("a"), ["a/file", "a/sub"]);
    assert!(matches!(c.read_dir("a/file"), Err(Error::NotADirectory(_))));
    // Errors a file system gives.
    assert!(matches!(c.mkdir("a", 0o755), Err(Error::Exists(_))));
    assert!(matches!(c.mkdir("nope/x", 0o755), Err(Error::KeyNotFound(_))));
    assert!(matches!(c.mkdir("a/file/x", 0o755), Err(Error::NotADirectory(_))));
    assert!(matches!(c.remove("a", false), Err(Error::NotEmpty(_))));
    assert!(matches!(c.rename("a", "a/sub/inside"), Err(Error::InvalidArgument(_))));
    c.mkdir("b", 0o755).unwrap();
    c.put("b/keep", b"k").unwrap();
    assert!(matches!(c.rename("a", "b"), Err(Error::NotEmpty(_))));
    // A folder moves with everything below it.
    c.rename("a", "moved").unwrap();
    assert_eq!(c.get("moved/sub/f49").unwrap().unwrap(), b"x");
    assert!(c.stat("a/sub/f49").unwrap().is_none());
    assert_eq!(c.read_dir("moved/sub").unwrap().len(), 50);
    store.commit().unwrap();
    // And goes with everything below it.
    assert!(c.remove("moved", true).unwrap());
    assert!(c.list("moved").unwrap().next().is_none());
    assert_eq!(names(""), ["b", "top-link"]);
}

#[test]
fn plain_keys_make_no_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let mut b = store.new_layer(None).unwrap();
    b.put("a/b/c", b"v").unwrap();
    let l = b.finish(None).unwrap();
    assert!(l.stat("a").unwrap().is_none());
    assert_eq!(l.read_dir("").unwrap().count(), 0);
    assert_eq!(l.get("a/b/c").unwrap().unwrap(), b"v");
    let keys: Vec<Vec<u8>> = l.list("").unwrap().map(|i| i.unwrap().key).collect();
    assert_eq!(keys, [b"a/b/c".to_vec()]);
    assert!(matches!(l.get(b"nul\0key"), Ok(None)) || l.get(b"nul\0key").is_err());
    let c = store.create_container(&l, None).unwrap();
    assert!(matches!(c.put(b"nul\0key", b"x"), Err(Error::InvalidKey(_))));
}

#[test]
fn inode_numbers_hold_across_reopen_and_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s");
    let (ino_dir, ino_file) = {
        let store = Store::create(&path, Options::default()).unwrap();
        let image = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
        let c = store.create_container(&image, Some("c")).unwrap();
        let d = c.mkdir("d", 0o755).unwrap();
        c.put_with(
            "d/f",
            b"bytes",
            &lstore::PutOptions {
                attrs: Some(Attrs::new(FileKind::Regular, 0o600)),
                ..Default::default()
            },
        )
        .unwrap();
        let f = c.stat("d/f").unwrap().unwrap().attrs.unwrap().ino;
        assert_ne!(d, f);
        c.commit(Some("committed")).unwrap();
        store.commit().unwrap();
        (d, f)
    };
    let store = Store::open(&path).unwrap();
    let ino = |r: &str, p: &str| store.snapshot(r).unwrap().stat(p).unwrap().unwrap().attrs.unwrap().ino;
    assert_eq!((ino("c", "d"), ino("c", "d/f")), (ino_dir, ino_file));
    assert_eq!((ino("committed", "d"), ino("committed", "d/f")), (ino_dir, ino_file));
    // A new file gets a number no other file of the tree has.
    let c = store.container("c").unwrap();
    let n = c.mkdir("e", 0o755).unwrap();
    assert!(n != ino_dir && n != ino_file);
}

#[test]
fn diff_reports_what_changed_between_any_two_trees_even_after_gc() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let mut b = store.new_layer(None).unwrap();
    for i in 0..3000 {
        b.put(format!("k{i:05}"), format!("value {i}").as_bytes()).unwrap();
    }
    b.mkdir("dir", 0o755).unwrap();
    b.put("dir/x", b"x").unwrap();
    let base = b.finish(Some("base")).unwrap();
    let c1 = store.create_container(&base, Some("c1")).unwrap();
    c1.put("k00007", b"changed").unwrap();
    c1.remove("dir", true).unwrap();
    c1.put("zz-new", b"n").unwrap();
    let one = c1.commit(Some("one")).unwrap();
    let c2 = store.create_container(&base, Some("c2")).unwrap();
    c2.delete("k02000").unwrap();
    let sibling = c2.commit(Some("sibling")).unwrap();
    c1.put("k00008", b"again").unwrap();
    let two = c1.commit(Some("two")).unwrap();
    store.commit().unwrap();
    let seen = |from: &str, to: &str| -> Vec<(char, String)> {
        (store.diff(from, to).unwrap())
            .map(|c| (c.kind.letter(), String::from_utf8(c.path).unwrap()))
            .collect()
    };
    let base_to_one = vec![
        ('C', "k00007".to_string()),
        ('D', "dir".to_string()),
        ('A', "zz-new".to_string()),
    ];
    let mut got = seen("base", "one");
    got.sort();
    let mut want = base_to_one.clone();
    want.sort();
    assert_eq!(got, want, "a removed folder stands for all below it");
    assert_eq!(seen("one", "two"), [('C', "k00008".to_string())]);
    let mut siblings = seen("sibling", "one");
    siblings.sort();
    let mut want = vec![
        ('A', "k02000".to_string()),
        ('C', "k00007".to_string()),
        ('D', "dir".to_string()),
        ('A', "zz-new".to_string()),
    ];
    want.sort();
    assert_eq!(siblings, want);
    assert!(seen("base", "base").is_empty());
    // A container against its image, pending changes included.
    c2.put("pending", b"p").unwrap();
    let mine: Vec<ChangeKind> = c2.diff().unwrap().map(|c| c.kind).collect();
    assert_eq!(mine, [ChangeKind::Deleted, ChangeKind::Added], "k02000, then pending");
    // gc moves nodes; shared ones stay shared, so the answers stay the same.
    drop((one, sibling, two));
    store.commit().unwrap();
    store.remove_container("c1").unwrap();
    store.commit().unwrap();
    store.gc().unwrap();
    let mut after = seen("base", "one");
    after.sort();
    let mut want = base_to_one;
    want.sort();
    assert_eq!(after, want);
    assert_eq!(seen("one", "two"), [('C', "k00008".to_string())]);
}

#[test]
fn the_cli_changes_files_of_a_container_and_shows_them() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/motd"), b"old\n").unwrap();
    ok(&s, &["init"]);
    let img = ok(&s, &["import", src.to_str().unwrap(), "--name", "img"]);
    assert_eq!(img.lines().count(), 1);
    ok(&s, &["create", "img", "--name", "c"]);
    ok(&s, &["mkdir", "c", "-p", "/var/lib/db"]);
    ok(&s, &["symlink", "c", "../motd", "/etc/motd.link"]);
    ok(&s, &["link", "c", "/etc/motd", "/etc/motd.hard"]);
    ok(&s, &["chmod", "c", "4750", "/etc/motd"]);
    ok(&s, &["chown", "c", "1000:50", "/etc/motd"]);
    ok(&s, &["touch", "c", "/etc/motd", "--mtime-ns", "1234567890123456789"]);
    ok(&s, &["setxattr", "c", "/etc/motd", "user.note", "\\x00bin"]);
    ok(&s, &["mv", "c", "/var/lib", "/var/lib2"]);
    let st: serde_json::Value = serde_json::from_str(&ok(&s, &["stat", "c", "/etc/motd.hard", "--json"])).unwrap();
    assert_eq!(st["mode"], "104750");
    assert_eq!((st["uid"].as_u64(), st["gid"].as_u64()), (Some(1000), Some(50)));
    assert_eq!(st["nlink"], 2);
    assert_eq!(st["mtime_ns"].as_i64(), Some(1234567890123456789));
    assert_eq!(st["xattrs"][0], serde_json::json!(["user.note", "\\x00bin"]));
    let link = ok(&s, &["stat", "c", "etc/motd.link"]);
    assert!(
        link.contains("kind\tsymlink") && link.contains("target\t../motd"),
        "{link}"
    );
    let diff = ok(&s, &["diff", "c"]);
    let mut lines: Vec<&str> = diff.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "A /etc/motd.hard",
            "A /etc/motd.link",
            "A /var",
            "A /var/lib2",
            "A /var/lib2/db",
            "C /etc/motd"
        ]
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&s, &["diff", "img", "c", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 6);
    fails(&s, &["mkdir", "c", "/var"], "exists");
    fails(&s, &["mkdir", "c", "/no/such"], "no such");
    fails(&s, &["chmod", "c", "999", "/etc/motd"], "octal");
    fails(&s, &["mv", "c", "/var", "/var/lib2/in"], "into itself");
    fails(&s, &["del", "c", "/var"], "not empty");
    ok(&s, &["del", "c", "-r", "/var"]);
    fails(&s, &["stat", "c", "/var"], "no such");
    fails(&s, &["export", "c", src.to_str().unwrap()], "empty folder");
}

#[test]
fn a_layerfile_copy_keeps_modes_and_mtimes_and_takes_chown() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("app/bin")).unwrap();
    std::fs::write(ctx.join("app/bin/run"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(ctx.join("app/bin/run"), std::fs::Permissions::from_mode(0o750)).unwrap();
    set_mtime(&ctx.join("app/bin/run"), 1_500_000_000, 42);
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let build = |text: &str| {
        let lf = lstore::Layerfile::parse(text, "Layerfile", ctx.clone()).unwrap();
        lf.build(&store).unwrap().0.unwrap()
    };
    let root_owned = build("FROM scratch\nCOPY app /srv/app\n");
    let a = root_owned.stat("srv/app/bin/run").unwrap().unwrap().attrs.unwrap();
    assert_eq!((a.mode, a.uid, a.gid), (libc::S_IFREG | 0o750, 0, 0));
    assert_eq!(a.mtime_ns, 1_500_000_000_000_000_042);
    let srv = root_owned.stat("srv").unwrap().unwrap().attrs.unwrap();
    assert_eq!(
        (srv.kind, srv.mode),
        (FileKind::Directory, libc::S_IFDIR | 0o755),
        "COPY makes the folders above"
    );
    let owned = build("FROM scratch\nCOPY --chown=1000:100 app /srv/app\n");
    let a = owned.stat("srv/app/bin/run").unwrap().unwrap().attrs.unwrap();
    assert_eq!((a.uid, a.gid), (1000, 100));
    assert_eq!(owned.stat("srv/app").unwrap().unwrap().attrs.unwrap().uid, 1000);
    assert_ne!(owned.id(), root_owned.id(), "the owner is part of the step's cache key");
    let e = lstore::Layerfile::parse("FROM scratch\nCOPY --chown=bob app /x\n", "Layerfile", ctx.clone()).unwrap_err();
    assert!(e.to_string().contains("--chown=bob"), "{e}");
}

#[test]
fn the_store_refuses_what_a_file_system_would() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let mut b = store.new_layer(None).unwrap();
    b.mkdir("data", 0o755).unwrap();
    b.put("data/a", b"a").unwrap();
    b.put("data/b", b"b").unwrap();
    b.link("data/a", "data/a2").unwrap();
    b.put("orphans/x", b"a plain key under no folder").unwrap();
    let image = b.finish(Some("img")).unwrap();
    let vol = lstore::Mount::parse_volume_flag("vol:/data").unwrap();
    let c = store.create_container_with(&image, Some("c"), &[vol]).unwrap();
    // Bytes go into regular files only; a kind changes only by removing first.
    c.mkdir("d", 0o755).unwrap();
    assert!(matches!(c.put("d", b"x"), Err(Error::IsADirectory(_))));
    assert!(matches!(c.write_at("d", 0, b"x"), Err(Error::IsADirectory(_))));
    c.symlink(b"target", "l").unwrap();
    assert!(matches!(c.put("l", b"x"), Err(Error::InvalidArgument(_))));
    let as_dir = lstore::PutOptions {
        attrs: Some(Attrs::new(FileKind::Directory, 0o755)),
        ..Default::default()
    };
    c.put("f", b"file").unwrap();
    assert!(matches!(c.put_with("f", b"", &as_dir), Err(Error::InvalidArgument(_))));
    // Moving onto keys that lie below a path with no entry would merge them.
    assert!(matches!(c.rename("d", "orphans"), Err(Error::NotEmpty(_))));
    // A folder holding a mount point neither moves nor goes.
    c.mkdir("srv", 0o755).unwrap();
    assert!(matches!(
        c.remove("data", true),
        Err(Error::InvalidArgument(_) | Error::InUse(_))
    ));
    // A volume filled from the image numbers its files itself: new links never collide.
    c.link("data/b", "data/b2").unwrap();
    let (a, b2) = (
        c.stat("data/a").unwrap().unwrap().attrs.unwrap(),
        c.stat("data/b2").unwrap().unwrap().attrs.unwrap(),
    );
    assert_ne!(a.ino, b2.ino);
    assert_eq!(b2.nlink, 2);
    // A caller's inode number is not taken.
    let mut claimed = Attrs::new(FileKind::Regular, 0o644);
    claimed.ino = a.ino;
    c.put_with(
        "data/c",
        b"c",
        &lstore::PutOptions {
            attrs: Some(claimed),
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(c.stat("data/c").unwrap().unwrap().attrs.unwrap().ino, a.ino);
    // A container's snapshot is read like a layer but is not one to build on.
    let snap = store.snapshot("c").unwrap();
    assert!(matches!(store.new_layer(Some(&snap)), Err(Error::InvalidArgument(_))));
    // Reads of a key that no path can be return nothing.
    assert!(image.get(b"\0").unwrap().is_none());
    assert!(image.list(b"\0").unwrap().next().is_none());
}

#[test]
fn an_exact_import_never_joins_two_hard_linked_files_into_one() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = tmp.path().join("v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("a"), b"same").unwrap();
    std::fs::hard_link(v1.join("a"), v1.join("b")).unwrap();
    set_mtime(&v1.join("a"), 1_000, 0);
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let base = lstore::import_dir(&store, &v1, &ImportOptions::default())
        .unwrap()
        .layer;
    // Now a and b are two files, each with a second name, and look the same as before.
    let v2 = tmp.path().join("v2");
    std::fs::create_dir(&v2).unwrap();
    for (first, second) in [("a", "c"), ("b", "d")] {
        std::fs::write(v2.join(first), b"same").unwrap();
        std::fs::hard_link(v2.join(first), v2.join(second)).unwrap();
        set_mtime(&v2.join(first), 1_000, 0);
    }
    let opts = ImportOptions {
        parent: Some(&base),
        ..Default::default()
    };
    let top = lstore::import_dir(&store, &v2, &opts).unwrap().layer;
    let ino = |p: &str| top.stat(p).unwrap().unwrap().attrs.unwrap();
    assert_eq!(ino("a").ino, ino("c").ino);
    assert_eq!(ino("b").ino, ino("d").ino);
    assert_ne!(ino("a").ino, ino("b").ino);
    assert_eq!((ino("a").nlink, ino("b").nlink), (2, 2));
}

#[test]
fn long_keys_keep_the_tree_shallow_and_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s");
    let store = Store::create(&path, Options::default()).unwrap();
    let image = store.new_layer(None).unwrap().finish(None).unwrap();
    let c = store.create_container(&image, Some("c")).unwrap();
    let long = "k".repeat(4000);
    for i in 0..300 {
        c.put(format!("{long}{i:03}"), b"v").unwrap();
    }
    store.commit().unwrap();
    let layer = c.commit(Some("long")).unwrap();
    store.commit().unwrap();
    assert_eq!(layer.list("").unwrap().count(), 300);
    for i in (0..300).step_by(7) {
        c.delete(format!("{long}{i:03}")).unwrap();
    }
    store.commit().unwrap();
    drop((c, layer, image, store));
    assert!(Store::open(&path).unwrap().verify(true).unwrap().is_clean());
    let store = Store::open(&path).unwrap();
    assert_eq!(store.container("c").unwrap().list("").unwrap().count(), 300 - 43);
}

#[test]
fn bad_names_owners_and_keys_are_refused_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    ok(&s, &["init"]);
    ok(&s, &["import", empty.to_str().unwrap(), "--name", "img"]);
    ok(&s, &["create", "img", "--name", "c"]);
    let o = common::lstore(&s, &["put", "c", "f", "-"], Some(b"x"));
    assert!(o.status.success());
    fails(&s, &["chown", "c", "4294967295", "/f"], "4294967295");
    fails(&s, &["setxattr", "c", "/f", "user.", "v"], "xattr name");
    fails(&s, &["setxattr", "c", "/f", "nospace", "v"], "xattr name");
    fails(&s, &["setxattr", "c", "/f", "user.x", "--remove"], "no xattr");
    fails(&s, &["diff", "img"], "is a layer");
    // A plain key that climbs out: export says so and writes nothing outside.
    let o = common::lstore(&s, &["put", "c", "a/../../escaped", "-"], Some(b"x"));
    assert!(o.status.success());
    let out = tmp.path().join("out");
    fails(&s, &["export", "c", out.to_str().unwrap()], "climbs out");
    assert!(!tmp.path().join("escaped").exists());
    // A Layerfile names paths: no '..', and DEL of nothing is an error; a bare file name
    // builds in the current folder.
    std::fs::write(tmp.path().join("Layerfile"), "FROM scratch\nSET ../k v\n").unwrap();
    fails(&s, &["build", tmp.path().join("Layerfile").to_str().unwrap()], "'..'");
    std::fs::write(tmp.path().join("Layerfile"), "FROM scratch\nDEL nothing\n").unwrap();
    fails(
        &s,
        &["build", tmp.path().join("Layerfile").to_str().unwrap()],
        "nothing there",
    );
    std::fs::write(tmp.path().join("hello"), b"hi").unwrap();
    std::fs::write(tmp.path().join("Layerfile"), "FROM scratch\nCOPY hello /hello\n").unwrap();
    let built = std::process::Command::new(env!("CARGO_BIN_EXE_lstore"))
        .current_dir(tmp.path())
        .args(["--store", s.to_str().unwrap(), "build", "Layerfile", "--name", "bare"])
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    assert_eq!(ok(&s, &["get", "bare", "hello"]), "hi");
}

#[test]
fn writing_a_files_own_bytes_again_changes_nothing_a_diff_sees() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let mut b = store.new_layer(None).unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    b.put("big", &data).unwrap();
    let image = b.finish(Some("img")).unwrap();
    let c = store.create_container(&image, Some("c")).unwrap();
    c.write_at("big", 70_000, &data[70_000..140_000]).unwrap();
    assert_eq!(
        c.diff().unwrap().count(),
        0,
        "the same bytes: the same blocks, the same entry"
    );
    c.write_at("big", 70_000, b"changed").unwrap();
    assert_eq!(c.diff().unwrap().count(), 1);
}
