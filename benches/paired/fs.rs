//! File-system targets: `diff` of two big layers that differ a little, against reading just
//! what differs; and a folder import and a layer-tar import, against `tar -x` of the same tree,
//! all durable.

use crate::data::{noise, Rng};
use crate::harness::{paired, timed, Goal, Row};
use lstore::{ImportOptions, Options, Store};
use std::path::Path;
use std::process::Command;

/// 15: `diff` of two 1M-entry layers that differ in 10 entries, against a stat of those 10
/// entries in the newer layer (the least any listing of them costs).
pub fn diff() -> Vec<Row> {
    const ENTRIES: usize = 1_000_000;
    const CHANGED: usize = 10;
    const REPEAT: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let mut b = store.new_layer(None).unwrap();
    for i in 0..ENTRIES {
        b.put(format!("usr/share/d{:04}/f{i:08}", i / 1000), b"a small file body")
            .unwrap();
    }
    let base = b.finish(Some("base")).unwrap();
    let c = store.create_container(&base, Some("c")).unwrap();
    let mut rng = Rng(77);
    let changed: Vec<String> = (0..CHANGED)
        .map(|_| {
            let i = rng.next() as usize % ENTRIES;
            format!("usr/share/d{:04}/f{i:08}", i / 1000)
        })
        .collect();
    for k in &changed {
        c.put(k, b"changed").unwrap();
    }
    let top = c.commit(Some("top")).unwrap();
    store.commit().unwrap();
    drop(c);
    let p = paired(
        15,
        || {
            timed(|| {
                for _ in 0..REPEAT {
                    for k in &changed {
                        std::hint::black_box(top.stat(k).unwrap().unwrap());
                    }
                }
            })
        },
        || {
            timed(|| {
                for _ in 0..REPEAT {
                    let n = base.diff(&top).unwrap().count();
                    assert_eq!(n, CHANGED);
                }
            })
        },
    );
    vec![p.row(
        "15",
        "diff of two 1M-entry layers differing in 10 entries: time",
        "stat of those 10 entries",
        p.cost(),
        REPEAT,
        Goal::AtMost(2.0),
    )]
}

/// A tree like a small root file system: 100 folders of 60 files from 200 B to 64 KiB.
fn make_tree(root: &Path) -> u64 {
    let mut rng = Rng(5);
    let body = noise(64 << 10, 3);
    let mut bytes = 0;
    for d in 0..100 {
        let dir = root.join(format!("usr/lib/pkg{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..60 {
            let len = 200 + (rng.next() % ((64 << 10) - 200)) as usize;
            let start = (rng.next() as usize) % (body.len() - len + 1);
            std::fs::write(dir.join(format!("file{f:02}.so")), &body[start..start + len]).unwrap();
            bytes += len as u64;
        }
    }
    bytes
}

/// A folder tree and its tar, in a temporary folder.
struct TreeAndTar {
    dir: tempfile::TempDir,
    tree: std::path::PathBuf,
    tarball: std::path::PathBuf,
    bytes: u64,
}

fn tree_and_tar() -> TreeAndTar {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let bytes = make_tree(&tree);
    let tarball = dir.path().join("tree.tar");
    let ok = Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success(), "tar -c");
    TreeAndTar {
        dir,
        tree,
        tarball,
        bytes,
    }
}

/// The reference of 16 and 17: `tar -x` of the tarball into a new folder, then `sync -f`.
fn tar_x(tarball: &Path, out: &Path) -> std::time::Duration {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir(out).unwrap();
    timed(|| {
        let st = Command::new("tar")
            .arg("-xf")
            .arg(tarball)
            .arg("-C")
            .arg(out)
            .status()
            .unwrap();
        assert!(st.success(), "tar -x");
        let st = Command::new("sync").arg("-f").arg(out).status().unwrap();
        assert!(st.success(), "sync -f");
    })
}

/// 16: importing a folder tree into a new store and committing, against `tar -x` of the same
/// tree into a new folder and `sync -f` of its file system (both from the page cache, both
/// durable at the end).
pub fn import_tree() -> Vec<Row> {
    let t = tree_and_tar();
    let out = t.dir.path().join("out");
    let store_path = t.dir.path().join("s");
    let p = paired(
        7,
        || tar_x(&t.tarball, &out),
        || {
            let _ = std::fs::remove_file(&store_path);
            timed(|| {
                let store = Store::create(&store_path, Options::default()).unwrap();
                lstore::import_dir(&store, &t.tree, &ImportOptions::default()).unwrap();
                store.commit().unwrap();
            })
        },
    );
    let mut row = p.row(
        "16",
        "import of a 6,100-entry folder tree, durable: rate",
        "tar -x of the same tree + sync -f",
        p.rate(),
        1,
        Goal::AtLeast(0.9),
    );
    row.detail += &format!("; {} MiB of files", t.bytes >> 20);
    vec![row]
}

/// 17: applying a layer tar (the same tree's, 6,100 entries) as a new layer and committing,
/// its tar-split kept, against `tar -x` of it into a new folder and `sync -f`.
pub fn import_tar() -> Vec<Row> {
    let t = tree_and_tar();
    let out = t.dir.path().join("out");
    let store_path = t.dir.path().join("s");
    let p = paired(
        7,
        || tar_x(&t.tarball, &out),
        || {
            let _ = std::fs::remove_file(&store_path);
            timed(|| {
                let store = Store::create(&store_path, Options::default()).unwrap();
                let file = std::fs::File::open(&t.tarball).unwrap();
                lstore::import_tar(&store, file, None, None).unwrap();
                store.commit().unwrap();
            })
        },
    );
    let mut row = p.row(
        "17",
        "import of a 6,100-entry layer tar, durable: rate",
        "tar -x of it + sync -f",
        p.rate(),
        1,
        Goal::AtLeast(0.9),
    );
    row.detail += &format!("; {} MiB of files", t.bytes >> 20);
    vec![row]
}
