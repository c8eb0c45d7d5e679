//! OCI layer tars: a changeset made by Python's tarfile or GNU tar applies on its parent as the
//! image spec says (whiteouts, opaque folders, hard links, PAX names and xattrs, devices, a
//! lower layer's symlink on the way); a hostile tar is refused with the store unchanged; and
//! `export_tar(A -> B)` applied on A gives B, the same bytes every time.

mod common;

use common::{fails, ok};
use lstore::{Attrs, FileKind, ImportOptions, Layer, Options, PutOptions, Store};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The start of a Python program writing `layer.tar`: `add(name, data, **TarInfo fields)`.
const ADD: &str = r#"
import tarfile, io
t = tarfile.open('layer.tar', 'w', format=tarfile.PAX_FORMAT)
def add(name, data=b'', **kw):
    ti = tarfile.TarInfo(name)
    for k, v in kw.items(): setattr(ti, k, v)
    if ti.type == tarfile.REGTYPE: ti.size = len(data)
    t.addfile(ti, io.BytesIO(data))
"#;

/// Runs a Python program (tarfile builds the tars), failing the test if it fails.
fn python(script: &str, dir: &Path) {
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "python: {}", String::from_utf8_lossy(&o.stderr));
}

/// Everything a layer says of its paths except inode numbers (which each tree gives itself),
/// with each hard-link group named by its first path.
fn contents(l: &Layer) -> BTreeMap<Vec<u8>, String> {
    let mut first: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for item in l.list("").unwrap() {
        let i = item.unwrap();
        let a = i.attrs.clone().unwrap_or_else(|| Attrs::new(FileKind::Regular, 0o644));
        let group = if a.nlink > 1 {
            first.entry(a.ino).or_insert_with(|| i.key.clone()).clone()
        } else {
            Vec::new()
        };
        let data = match a.kind {
            FileKind::Regular => format!("{:?}", blake3::hash(&l.get(&i.key).unwrap().unwrap())),
            _ => String::new(),
        };
        out.insert(
            i.key.clone(),
            format!(
                "{:?} {:o} {}:{} t{} rdev{} n{} {:?} {:?} {data} link-group {:?}",
                a.kind, a.mode, a.uid, a.gid, a.mtime_ns, a.rdev, a.nlink, a.link_target, a.xattrs, group
            ),
        );
    }
    out
}

/// GNU tar of the folder `src` in `format` (gnu or posix), written into `out_dir`.
fn gnu_tar(src: &Path, format: &str, out_dir: &Path) -> std::path::PathBuf {
    let tarball = out_dir.join(format!("{format}.tar"));
    let st = Command::new("tar")
        .arg(format!("--format={format}"))
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(src)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar --format={format}");
    tarball
}

fn base(store: &Store, dir: &Path) -> Layer {
    for d in ["etc/old", "usr/bin", "keep", "opaque/sub"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("etc/old/x"), b"old").unwrap();
    std::fs::write(dir.join("etc/passwd"), b"root").unwrap();
    std::fs::write(dir.join("keep/k1"), b"k1").unwrap();
    std::fs::write(dir.join("keep/k2"), b"k2").unwrap();
    std::fs::write(dir.join("opaque/lower"), b"lower").unwrap();
    std::fs::write(dir.join("opaque/sub/deep"), b"deep").unwrap();
    std::fs::write(dir.join("usr/bin/ls"), b"ls v1").unwrap();
    std::fs::write(dir.join("becomes-dir"), b"file").unwrap();
    std::os::unix::fs::symlink("usr/bin", dir.join("bin")).unwrap();
    let opts = ImportOptions {
        name: Some("base"),
        ..Default::default()
    };
    lstore::import_dir(store, dir, &opts).unwrap().layer
}

#[test]
fn a_python_tarfile_changeset_applies_as_the_image_spec_says() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let parent = base(&store, &tmp.path().join("base"));
    python(
        &format!(
            "{ADD}{}",
            r#"
add('opaque/added-before', b'mine')
add('etc/.wh.passwd')
add('keep/.wh.k1')
add('bin/ls', b'ls v2', mode=0o755)
add('becomes-dir', type=tarfile.DIRTYPE, mode=0o700)
add('becomes-dir/inside', b'i')
add('d' * 150 + '/long-name-file', b'long')
add('s', type=tarfile.SYMTYPE, linkname='t' * 200)
add('h1', b'hard', mode=0o600)
add('h2', type=tarfile.LNKTYPE, linkname='h1')
add('dev/null', type=tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
add('fifo', type=tarfile.FIFOTYPE, mode=0o600)
ti = tarfile.TarInfo('x'); ti.size = 1
ti.pax_headers = {'SCHILY.xattr.user.k': 'v', 'mtime': '1700000000.123456789'}
t.addfile(ti, io.BytesIO(b'x'))
add('opaque/.wh..wh..opq')
t.close()
"#
        ),
        tmp.path(),
    );
    let file = std::fs::File::open(tmp.path().join("layer.tar")).unwrap();
    let top = lstore::import_tar(&store, file, Some(&parent), Some("top"))
        .unwrap()
        .layer;
    let get = |p: &str| top.get(p).unwrap();
    assert!(get("etc/passwd").is_none(), ".wh.passwd removes it");
    assert!(get("keep/k1").is_none() && get("keep/k2").is_some());
    assert_eq!(
        get("opaque/added-before").unwrap(),
        b"mine",
        "an opaque marker hides the lower layer only"
    );
    assert!(get("opaque/lower").is_none() && top.stat("opaque/sub").unwrap().is_none());
    assert_eq!(
        get("usr/bin/ls").unwrap(),
        b"ls v2",
        "bin/ls lands where the lower symlink leads"
    );
    assert_eq!(get("etc/old/x").unwrap(), b"old");
    let kind = |p: &str| top.stat(p).unwrap().unwrap().attrs.unwrap();
    assert_eq!(kind("becomes-dir").kind, FileKind::Directory);
    assert_eq!(get(&format!("{}/long-name-file", "d".repeat(150))).unwrap(), b"long");
    assert_eq!(kind("s").link_target.unwrap(), "t".repeat(200).as_bytes());
    assert_eq!((kind("h1").ino, kind("h2").nlink), (kind("h2").ino, 2));
    assert_eq!(kind("dev/null").rdev, libc::makedev(1, 3));
    assert_eq!(kind("fifo").kind, FileKind::Fifo);
    let x = kind("x");
    assert_eq!(
        (x.mtime_ns, x.xattr(b"user.k")),
        (1_700_000_000_123_456_789, Some(&b"v"[..]))
    );
}

#[test]
fn gnu_tar_changesets_in_both_formats_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let parent = base(&store, &tmp.path().join("base"));
    let change = tmp.path().join("change");
    std::fs::create_dir_all(change.join("etc")).unwrap();
    std::fs::write(change.join("etc/.wh.passwd"), b"").unwrap();
    std::fs::write(change.join("etc/new"), b"new").unwrap();
    std::fs::create_dir_all(change.join("opaque")).unwrap();
    std::fs::write(change.join("opaque/.wh..wh..opq"), b"").unwrap();
    for format in ["gnu", "posix"] {
        let tarball = gnu_tar(&change, format, tmp.path());
        let file = std::fs::File::open(&tarball).unwrap();
        let top = lstore::import_tar(&store, file, Some(&parent), None).unwrap().layer;
        assert!(top.get("etc/passwd").unwrap().is_none(), "{format}");
        assert_eq!(top.get("etc/new").unwrap().unwrap(), b"new", "{format}");
        assert!(top.get("opaque/lower").unwrap().is_none(), "{format}");
        assert_eq!(top.get("keep/k1").unwrap().unwrap(), b"k1", "{format}");
    }
}

#[test]
fn a_hostile_tar_is_refused_and_the_store_is_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    ok(&s, &["init"]);
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"f").unwrap();
    ok(&s, &["import", src.to_str().unwrap(), "--name", "base"]);
    python(
        r#"
import tarfile, io
def mk(fn, entries):
    t = tarfile.open(fn, 'w', format=tarfile.PAX_FORMAT)
    for name, kw in entries:
        ti = tarfile.TarInfo(name)
        for k, v in kw.items(): setattr(ti, k, v)
        t.addfile(ti, io.BytesIO(b''))
    t.close()
mk('up.tar', [('../x', {})])
mk('abs.tar', [('/etc/x', {})])
mk('through-link.tar', [('l', dict(type=tarfile.SYMTYPE, linkname='/tmp')), ('l/x', {})])
mk('bare-whiteout.tar', [('etc/.wh.', {})])
mk('dangling-hard-link.tar', [('h', dict(type=tarfile.LNKTYPE, linkname='nothing'))])
"#,
        tmp.path(),
    );
    std::fs::write(tmp.path().join("garbage.tar"), b"not a tar at all, not even close").unwrap();
    let before = ok(&s, &["layers"]);
    for (tar, why) in [
        ("up.tar", "climbs out"),
        ("abs.tar", "absolute"),
        ("through-link.tar", "symlink of this same tar"),
        ("bare-whiteout.tar", "names nothing"),
        ("dangling-hard-link.tar", "not there"),
        ("garbage.tar", "tar"),
    ] {
        let path = tmp.path().join(tar);
        fails(&s, &["import", path.to_str().unwrap(), "--parent", "base"], why);
    }
    assert_eq!(ok(&s, &["layers"]), before, "no layer was added");
    assert!(!tmp.path().join("x").exists() && !tmp.path().join("tmp-x").exists());
    ok(&s, &["verify"]);
}

#[test]
fn compressed_and_piped_tars_apply_and_exports_are_byte_for_byte_stable() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    ok(&s, &["init"]);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/b/f"), b"bytes").unwrap();
    ok(&s, &["import", src.to_str().unwrap(), "--name", "img"]);
    let out = tmp.path().join("img.tar");
    ok(&s, &["export-tar", "img", "-o", out.to_str().unwrap()]);
    let again = common::lstore(&s, &["export-tar", "img"], None);
    assert_eq!(
        again.stdout,
        std::fs::read(&out).unwrap(),
        "the same tree, the same bytes"
    );
    for (tool, ext) in [("gzip", "gz"), ("zstd", "zst")] {
        let st = Command::new(tool).arg("-kq").arg(&out).status().unwrap();
        assert!(st.success(), "{tool}");
        let packed = tmp.path().join(format!("img.tar.{ext}"));
        let id = ok(&s, &["import", packed.to_str().unwrap()]);
        assert!(ok(&s, &["diff", "img", id.trim()]).lines().all(|l| l.starts_with("C ")));
        assert_eq!(ok(&s, &["get", id.trim(), "a/b/f"]), "bytes");
    }
    let piped = common::lstore(&s, &["import", "-"], Some(&std::fs::read(&out).unwrap()));
    assert!(piped.status.success());
    // GNU tar reads what export-tar writes.
    let listed = Command::new("tar").arg("-tf").arg(&out).output().unwrap();
    // The root's own attributes first (`./`), then the tree in path order.
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "./\na/\na/b/\na/b/f\n");
}

#[test]
fn opaque_folders_and_whiteouts_follow_the_spec_whatever_the_order() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let lower = tmp.path().join("lower");
    std::fs::create_dir_all(lower.join("a/b/c")).unwrap();
    std::fs::write(lower.join("a/b/c/bar"), b"bar").unwrap();
    std::fs::create_dir_all(lower.join("o/sub")).unwrap();
    std::fs::write(lower.join("o/sub/deep"), b"deep").unwrap();
    std::fs::write(lower.join("w"), b"w").unwrap();
    let parent = lstore::import_dir(&store, &lower, &ImportOptions::default())
        .unwrap()
        .layer;
    python(
        &format!(
            "{ADD}{}",
            r#"
# The image spec's example: the marker last still hides a/b/c/bar.
add('a/', type=tarfile.DIRTYPE, mode=0o755)
add('a/b/', type=tarfile.DIRTYPE, mode=0o755)
add('a/b/c/', type=tarfile.DIRTYPE, mode=0o755)
add('a/b/c/foo', b'foo')
add('a/.wh..wh..opq')
# A folder made implicitly keeps what this tar put in it.
add('o/sub/new', b'new')
add('o/.wh..wh..opq')
# A whiteout removes the lower layer's file only, not this tar's.
add('mine', b'mine')
add('.wh.mine')
add('.wh.w')
ti = tarfile.TarInfo('early'); ti.pax_headers = {'mtime': '-0.5'}; t.addfile(ti, io.BytesIO(b''))
t.close()
"#
        ),
        tmp.path(),
    );
    let file = std::fs::File::open(tmp.path().join("layer.tar")).unwrap();
    let top = lstore::import_tar(&store, file, Some(&parent), None).unwrap().layer;
    let get = |p: &str| top.get(p).unwrap();
    assert_eq!(get("a/b/c/foo").unwrap(), b"foo");
    assert!(
        get("a/b/c/bar").is_none(),
        "hidden by the opaque a/, wherever the marker stands"
    );
    assert_eq!(get("o/sub/new").unwrap(), b"new");
    assert!(get("o/sub/deep").is_none());
    assert_eq!(get("mine").unwrap(), b"mine");
    assert!(get("w").is_none());
    let early = top.stat("early").unwrap().unwrap().attrs.unwrap();
    assert_eq!(early.mtime_ns, -500_000_000, "half a second before 1970");
}

#[test]
fn a_folder_become_a_symlink_exports_without_whiteouts_through_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let empty = store.new_layer(None).unwrap().finish(None).unwrap();
    let c = store.create_container(&empty, Some("c")).unwrap();
    c.mkdir("usr", 0o755).unwrap();
    c.mkdir("usr/lib", 0o755).unwrap();
    c.mkdir("lib", 0o755).unwrap();
    c.put("lib/libc.so", b"libc").unwrap();
    c.put("usr/lib/keep.so", b"keep").unwrap();
    let a = c.commit(Some("a")).unwrap();
    // The usr merge: lib becomes a symlink to usr/lib.
    c.remove("lib", true).unwrap();
    c.symlink(b"usr/lib", "lib").unwrap();
    let b = c.commit(Some("b")).unwrap();
    let mut tar = Vec::new();
    lstore::export_tar(Some(&a), &b, &mut tar).unwrap();
    let applied = lstore::import_tar(&store, tar.as_slice(), Some(&a), None)
        .unwrap()
        .layer;
    assert_eq!(contents(&applied), contents(&b));
    assert_eq!(applied.get("usr/lib/keep.so").unwrap().unwrap(), b"keep");
}

#[derive(Debug, Clone)]
enum Op {
    Write { path: usize, len: usize, seed: u8 },
    Mkdir { path: usize },
    Symlink { path: usize, target: u8 },
    Remove { path: usize },
    Chmod { path: usize, mode: u16 },
    Xattr { path: usize, value: u8 },
    Link { from: usize, to: usize },
}

const PATHS: [&str; 8] = ["a", "b", "a/x", "a/y", "b/z", "c", "a/x/deep", "d"];

fn op() -> impl Strategy<Value = Op> {
    let p = 0usize..PATHS.len();
    prop_oneof![
        (p.clone(), 0usize..3000, any::<u8>()).prop_map(|(path, len, seed)| Op::Write { path, len, seed }),
        p.clone().prop_map(|path| Op::Mkdir { path }),
        (p.clone(), any::<u8>()).prop_map(|(path, target)| Op::Symlink { path, target }),
        p.clone().prop_map(|path| Op::Remove { path }),
        (p.clone(), 0u16..0o7777).prop_map(|(path, mode)| Op::Chmod { path, mode }),
        (p.clone(), any::<u8>()).prop_map(|(path, value)| Op::Xattr { path, value }),
        (p.clone(), p).prop_map(|(from, to)| Op::Link { from, to }),
    ]
}

/// Applies an operation to a container; refusals (a missing parent, a kind clash) are part
/// of the game and change nothing.
fn apply(c: &lstore::Container, op: &Op) {
    let _ = match *op {
        Op::Write { path, len, seed } => {
            // A file system has no file below a missing folder (a tar could not say so).
            let parent = PATHS[path].rsplit_once('/').map(|(d, _)| d);
            let is_dir = |d: &str| {
                c.stat(d)
                    .unwrap()
                    .and_then(|i| i.attrs)
                    .is_some_and(|a| a.kind == FileKind::Directory)
            };
            if parent.is_some_and(|d| !is_dir(d)) {
                return;
            }
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_add(seed)).collect();
            let opts = PutOptions {
                attrs: Some(Attrs {
                    mtime_ns: seed as i64 * 1_000_000_007,
                    ..Attrs::new(FileKind::Regular, 0o640)
                }),
                ..Default::default()
            };
            c.put_with(PATHS[path], &data, &opts).map(|_| ())
        }
        Op::Mkdir { path } => c.mkdir(PATHS[path], 0o750).map(|_| ()),
        Op::Symlink { path, target } => c.symlink(&[b't', target | 1], PATHS[path]).map(|_| ()),
        Op::Remove { path } => c.remove(PATHS[path], true).map(|_| ()),
        Op::Chmod { path, mode } => c.set_attrs(PATHS[path], |a| a.mode = mode as u32).map(|_| ()),
        Op::Xattr { path, value } => c
            .set_attrs(PATHS[path], |a| a.set_xattr(b"user.v", &[0, value]))
            .map(|_| ()),
        Op::Link { from, to } => c.link(PATHS[from], PATHS[to]),
    };
}

fn round_trip(first: Vec<Op>, second: Vec<Op>) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), Options::default()).unwrap();
    let empty = store.new_layer(None).unwrap().finish(None).unwrap();
    let c = store.create_container(&empty, Some("c")).unwrap();
    first.iter().for_each(|o| apply(&c, o));
    let a = c.commit(Some("a")).unwrap();
    second.iter().for_each(|o| apply(&c, o));
    let b = c.commit(Some("b")).unwrap();
    let mut tar = Vec::new();
    lstore::export_tar(Some(&a), &b, &mut tar).unwrap();
    let mut again = Vec::new();
    lstore::export_tar(Some(&a), &b, &mut again).unwrap();
    assert_eq!(tar, again, "deterministic");
    let applied = lstore::import_tar(&store, tar.as_slice(), Some(&a), None)
        .unwrap()
        .layer;
    assert_eq!(contents(&applied), contents(&b));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn export_tar_of_a_to_b_applied_on_a_gives_b(
        first in proptest::collection::vec(op(), 0..25),
        second in proptest::collection::vec(op(), 0..25),
    ) {
        round_trip(first, second);
    }
}

#[test]
fn a_new_name_of_an_unchanged_hard_linked_file_stays_a_link_when_applied() {
    round_trip(
        vec![
            Op::Mkdir { path: 0 },
            Op::Write {
                path: 3,
                len: 0,
                seed: 0,
            },
            Op::Link { from: 3, to: 5 },
        ],
        vec![Op::Remove { path: 0 }, Op::Link { from: 5, to: 0 }],
    );
}

/// The sha256 of a file as `sha256:HEX`, by the coreutils tool.
fn sha256_of(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(o.status.success());
    format!(
        "sha256:{}",
        String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap()
    )
}

fn export_bytes(from: Option<&Layer>, to: &Layer) -> Vec<u8> {
    let mut out = Vec::new();
    lstore::export_tar(from, to, &mut out).unwrap();
    out
}

#[test]
fn an_imported_tar_comes_back_byte_for_byte_against_its_parent_so_its_diff_id_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s");
    let store = Store::create(&path, Options::default()).unwrap();
    let parent = base(&store, &tmp.path().join("base"));
    let mut tars = Vec::new();
    // GNU tar in both formats, with a whiteout, an opaque folder, a hard link, a long name.
    let change = tmp.path().join("change");
    let long = "l".repeat(150);
    std::fs::create_dir_all(change.join("etc").join(&long)).unwrap();
    std::fs::write(change.join("etc/.wh.passwd"), b"").unwrap();
    std::fs::write(change.join("etc/new"), common::noise(200_000, 1)).unwrap();
    std::fs::hard_link(change.join("etc/new"), change.join("etc").join(&long).join("link")).unwrap();
    std::fs::create_dir_all(change.join("opaque")).unwrap();
    std::fs::write(change.join("opaque/.wh..wh..opq"), b"").unwrap();
    for format in ["gnu", "posix"] {
        let tarball = gnu_tar(&change, format, tmp.path());
        tars.push(tarball);
    }
    // Python's tarfile: binary xattrs, a path written twice (the first content replaced),
    // a file replaced by a folder, and bytes after the end blocks.
    python(
        &format!(
            "{ADD}
add('dup', b'first version')
add('x', b'x as a file')
add('dup', b'second')
add('x', type=tarfile.DIRTYPE, mode=0o755)
add('x/in', b'inside')
add('attr', b'a', pax_headers={{'SCHILY.xattr.user.bin': '\\udcff\\n='}})
add('d/f', b'old')
add('d.txt', b'sorts between d and d/f')
add('d', b'the folder d becomes a file')
add('d', type=tarfile.DIRTYPE, mode=0o755)
add('d/f', b'new')
t.close()
open('layer.tar', 'ab').write(b'trailing bytes after the end')
"
        ),
        tmp.path(),
    );
    tars.push(tmp.path().join("layer.tar"));
    let mut layers = Vec::new();
    for tarball in &tars {
        let original = std::fs::read(tarball).unwrap();
        let imported = lstore::import_tar(&store, &original[..], Some(&parent), None).unwrap();
        assert_eq!(imported.diff_id, sha256_of(tarball), "{tarball:?}");
        let origin = lstore::tar_origin(&imported.layer).unwrap().unwrap();
        assert_eq!(origin.diff_id_string(), imported.diff_id);
        assert_eq!(origin.parent, Some(parent.id()));
        assert!(export_bytes(Some(&parent), &imported.layer) == original, "{tarball:?}");
        layers.push((imported.layer.id(), original));
    }
    // Compressed input gives back the uncompressed tar.
    let st = Command::new("gzip").arg("-k").arg(&tars[0]).status().unwrap();
    assert!(st.success());
    let gz = std::fs::File::open(tars[0].with_extension("tar.gz")).unwrap();
    let from_gz = lstore::import_tar(&store, gz, Some(&parent), None).unwrap();
    assert!(export_bytes(Some(&parent), &from_gz.layer) == layers[0].1);
    // Against another parent the changeset is built from the trees, as before.
    let whole = export_bytes(None, &from_gz.layer);
    assert!(whole != layers[0].1);
    // A child layer does not inherit its parent's tar: its changeset is its own.
    let mut b = store.new_layer(Some(&from_gz.layer)).unwrap();
    b.put("added", b"child").unwrap();
    let child = b.finish(None).unwrap();
    assert!(child.annotation("lstore.tar-split").unwrap().is_none());
    let listed = lstore::export_tar(Some(&from_gz.layer), &child, std::io::sink()).unwrap();
    assert_eq!(listed, 1);
    // The kept headers survive a commit, gc and reopen.
    store.commit().unwrap();
    drop((parent, child, from_gz));
    store.gc_with(0.0).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    let parent = store.layer("base").unwrap();
    for (id, original) in layers {
        let layer = store.layer_by_id(id).unwrap();
        assert!(export_bytes(Some(&parent), &layer) == original);
    }
}
