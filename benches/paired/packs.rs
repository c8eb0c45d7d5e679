//! Targets of packed small files (issue 18): a random read inside a pack, with the page cache
//! warm; and an import of real files with zstd level 3 against `zstd -3 -T2` compressing the
//! same bytes.

use crate::data::Rng;
use crate::harness::{paired, timed, Goal, Row, Unit};
use lstore::{Compression, ImportOptions, Options, Store};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Real files of this machine (`/usr/share`, then `/usr/lib`), copied into `root` until
/// `budget` bytes: text, scripts and libraries as a root file system has them.
fn real_tree(root: &Path, budget: u64) -> u64 {
    let mut copied = 0;
    for top in ["/usr/share", "/usr/lib"] {
        for entry in walk(Path::new(top)) {
            if copied >= budget {
                return copied;
            }
            let Ok(md) = std::fs::symlink_metadata(&entry) else {
                continue;
            };
            if !md.is_file() || md.len() == 0 || md.len() > 8 << 20 {
                continue;
            }
            let to = root.join(entry.strip_prefix("/").unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            if std::fs::copy(&entry, &to).is_ok() {
                copied += md.len();
            }
        }
    }
    copied
}

/// Every path under `dir`, depth first, in name order (deterministic on one machine).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        let mut names: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for p in names.into_iter().rev() {
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(_) => out.push(p),
                Err(_) => {}
            }
        }
    }
    out
}

fn zstd_store(path: &Path) -> Store {
    let _ = std::fs::remove_file(path);
    Store::create(
        path,
        Options {
            compression: Compression::Zstd(3),
            ..Default::default()
        },
    )
    .unwrap()
}

/// 18r and 18i on one tree of real files (96 MiB).
pub fn packed() -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let bytes = real_tree(&tree, 96 << 20);
    vec![random_read(dir.path(), &tree, bytes), import(dir.path(), &tree, bytes)]
}

/// 18r: a random 4 KiB read (or the whole file, when smaller) of a random small file of an
/// imported tree, every one of them packed, with the store's pages in the page cache. A thread
/// keeps the last 8 packs it read; reads at random across the tree's hundreds of packs rarely
/// find theirs there, so nearly every read decompresses its pack up to the file's end.
fn random_read(dir: &Path, tree: &Path, bytes: u64) -> Row {
    let store = zstd_store(&dir.join("s"));
    let layer = lstore::import_dir(&store, tree, &ImportOptions::default())
        .unwrap()
        .layer;
    store.commit().unwrap();
    let small: Vec<(String, u64)> = walk(tree)
        .into_iter()
        .filter_map(|p| {
            let len = std::fs::metadata(&p).ok()?.len();
            let key = p.strip_prefix(tree).ok()?.to_str()?.to_string();
            (257..64 << 10).contains(&len).then_some((key, len))
        })
        .collect();
    // The page cache warm with every pack.
    for (k, _) in &small {
        std::hint::black_box(layer.get(k).unwrap());
    }
    const READS: u64 = 20_000;
    let mut rng = Rng(18);
    let mut buf = vec![0u8; 4096];
    let per_read: Vec<f64> = (0..5)
        .map(|_| {
            let d = timed(|| {
                for _ in 0..READS {
                    let (k, len) = &small[(rng.next() % small.len() as u64) as usize];
                    let off = if *len > 4096 { rng.next() % (len - 4096) } else { 0 };
                    std::hint::black_box(layer.read_at(k, off, &mut buf).unwrap());
                }
            });
            d.as_secs_f64() * 1e6 / READS as f64
        })
        .collect();
    Row::scalar(
        "18r",
        "warm random 4 KiB read of a small file in a pack",
        Unit::Micros,
        crate::harness::median(&per_read),
        Goal::AtMost(50.0),
        format!(
            "batches {:.1}..{:.1} µs, {} files of 257 B..64 KiB, {} MiB imported",
            crate::harness::min(&per_read),
            crate::harness::max(&per_read),
            small.len(),
            bytes >> 20
        ),
    )
}

/// 18i: importing the tree as a layer with zstd level 3, durable, against `zstd -3 -T2`
/// compressing a tar of it to /dev/null.
fn import(dir: &Path, tree: &Path, bytes: u64) -> Row {
    let tarball = dir.join("tree.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(tree)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar -c");
    let store_path = dir.join("s");
    let p = paired(
        5,
        || zstd_t2(&tarball),
        || {
            timed(|| {
                let store = zstd_store(&store_path);
                lstore::import_dir(&store, tree, &ImportOptions::default()).unwrap();
                store.commit().unwrap();
            })
        },
    );
    let mut row = p.row(
        "18i",
        "import of real files with zstd 3, durable: rate",
        "zstd -3 -T2 of their tar",
        p.rate(),
        1,
        Goal::AtLeast(0.8),
    );
    row.detail += &format!("; {} MiB of files", bytes >> 20);
    row
}

fn zstd_t2(tarball: &Path) -> Duration {
    timed(|| {
        let st = Command::new("zstd")
            .args(["-3", "-T2", "-q", "-c"])
            .arg(tarball)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "zstd");
    })
}
