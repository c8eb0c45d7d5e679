//! The targets: each builds its fixtures, measures its reference and subject paired, and
//! returns its rows. Targets are numbered as in the README's table.

use crate::data::{compressible, gib, noise, Rng};
use crate::harness::{paired, timed, Goal, Row, Unit};
use lstore::{Compression, Durability, Layer, Options, PutOptions, Store};
use redb::ReadableDatabase;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

fn plain_file(path: &Path, data: &[u8]) -> File {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
    f
}

fn image_with(store: &Store, key: &str, data: &[u8], block_size: Option<u64>) -> Layer {
    let mut b = store.new_layer(None).unwrap();
    let opts = PutOptions {
        block_size,
        ..Default::default()
    };
    b.put_with(key, data, &opts).unwrap();
    let l = b.finish(None).unwrap();
    store.commit().unwrap();
    l
}

fn many_keys(store: &Store, n: usize) -> Layer {
    let mut b = store.new_layer(None).unwrap();
    for i in 0..n {
        b.put(format!("usr/share/file-{i:08}"), b"small file body").unwrap();
    }
    let l = b.finish(None).unwrap();
    store.commit().unwrap();
    l
}

/// 1: a 4 KiB copy-on-write write into a 1 GiB image value (64 KiB blocks) in a fresh
/// container, durably committed, against a plain 4 KiB pwrite + fdatasync.
pub fn cow_write() -> Vec<Row> {
    const OPS: u64 = 8;
    let dir = tempfile::tempdir().unwrap();
    let data = noise(gib(), 1);
    let plain = plain_file(&dir.path().join("plain"), &data);
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let image = image_with(&store, "disk.img", &data, None);
    drop(data);
    let len = gib() as u64;
    let block = noise(4096, 9);
    let (mut rng_ref, mut rng_sub) = (Rng(7), Rng(8));
    let before = store.stats().unwrap().used_bytes;
    let mut writes = 0u64;
    let p = paired(
        21,
        || {
            timed(|| {
                for _ in 0..OPS {
                    plain.write_all_at(&block, rng_ref.page_in(len)).unwrap();
                    plain.sync_data().unwrap();
                }
            })
        },
        || {
            writes += OPS;
            timed(|| {
                for _ in 0..OPS {
                    let ctr = store.create_container(&image, None).unwrap();
                    ctr.write_at("disk.img", rng_sub.page_in(len), &block).unwrap();
                    store.commit().unwrap();
                }
            })
        },
    );
    let growth = (store.stats().unwrap().used_bytes - before) as f64 / writes as f64;
    vec![
        p.row(
            "1",
            "4 KiB write_at into a 1 GiB image value (64 KiB blocks), fresh container, durable commit",
            "plain 4 KiB pwrite + fdatasync",
            p.cost(),
            OPS,
            Goal::AtMost(1.5),
        ),
        Row::scalar(
            "1g",
            "store growth per such write, over one block + 64 KiB (131,072 B)",
            Unit::Ratio,
            growth / 131_072.0,
            Goal::AtMost(1.0),
            format!("{growth:.0} B per write over {writes} writes"),
        ),
    ]
}

/// 2: 10,000 random 4 KiB writes into a 1 GiB value with 4 KiB blocks and one durable commit,
/// against the same writes in place in a plain file and one fsync.
pub fn random_writes() -> Vec<Row> {
    const OPS: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let data = noise(gib(), 2);
    let plain = plain_file(&dir.path().join("plain"), &data);
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let image = image_with(&store, "db", &data, Some(4096));
    drop(data);
    let len = gib() as u64;
    let block = noise(4096, 3);
    let offsets = |seed: u64| {
        let mut r = Rng(seed);
        (0..OPS).map(|_| r.page_in(len)).collect::<Vec<u64>>()
    };
    let (mut seed_ref, mut seed_sub) = (1u64, 1u64 << 32);
    let before = store.stats().unwrap().used_bytes;
    let mut batches = 0u64;
    let p = paired(
        7,
        || {
            seed_ref += 1;
            let offs = offsets(seed_ref);
            timed(|| {
                for off in offs {
                    plain.write_all_at(&block, off).unwrap();
                }
                plain.sync_data().unwrap();
            })
        },
        || {
            seed_sub += 1;
            batches += 1;
            let offs = offsets(seed_sub);
            timed(|| {
                let ctr = store.create_container(&image, None).unwrap();
                let mut blk = block.clone();
                for (i, off) in offs.into_iter().enumerate() {
                    // Distinct payloads, so dedup does not flatter the figure.
                    blk[..8].copy_from_slice(&(i as u64 ^ seed_sub << 20).to_le_bytes());
                    ctr.write_at("db", off, &blk).unwrap();
                }
                store.commit().unwrap();
            })
        },
    );
    let growth = (store.stats().unwrap().used_bytes - before) as f64 / batches as f64;
    vec![
        p.row(
            "2",
            "10,000 random 4 KiB writes into a 1 GiB value (4 KiB blocks), one durable commit: rate",
            "same writes in place in a plain file + fsync",
            p.rate(),
            OPS,
            Goal::AtLeast(2.0),
        ),
        Row::scalar(
            "2g",
            "store growth for those writes, over the payload (40.96 MB)",
            Unit::Ratio,
            growth / (OPS * 4096) as f64,
            Goal::AtMost(1.3),
            format!("{growth:.0} B per 10k writes over {batches} batches"),
        ),
    ]
}

/// 3: container creation on an image of 1M keys against one of 1k keys (no commit).
pub fn container_create() -> Vec<Row> {
    const OPS: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let small = many_keys(&store, 1_000);
    let large = many_keys(&store, 1_000_000);
    // Created containers are removed after each batch, untimed, so both sides see a catalog of
    // the same size.
    let batch = |image: &Layer| {
        let mut made = Vec::with_capacity(OPS as usize);
        let t = timed(|| {
            for _ in 0..OPS {
                made.push(store.create_container(image, None).unwrap());
            }
        });
        for c in made {
            store.remove_container(&c.id().to_string()).unwrap();
        }
        store.commit_with(Durability::None).unwrap();
        t
    };
    let p = paired(15, || batch(&small), || batch(&large));
    vec![
        p.row(
            "3",
            "container creation on an image of 1M keys, no commit",
            "same on an image of 1k keys",
            p.cost(),
            OPS,
            Goal::AtMost(1.2),
        ),
        Row::scalar(
            "3t",
            "container creation on an image of 1M keys, time",
            Unit::Micros,
            p.subject_micros(OPS),
            Goal::AtMost(10.0),
            "median of the batches".into(),
        ),
    ]
}

/// 4: a point get of a base-layer key from 1,000 layers up against the same get in the base;
/// and the warm get's absolute time.
pub fn depth() -> Vec<Row> {
    const OPS: u64 = 4096;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let base = many_keys(&store, 100_000);
    let mut top = base.clone();
    for i in 0..1000 {
        let mut b = store.new_layer(Some(&top)).unwrap();
        b.put(format!("layer/{i}"), b"x").unwrap();
        top = b.finish(None).unwrap();
    }
    store.commit().unwrap();
    let keys: Vec<String> = (0..OPS)
        .map(|i| format!("usr/share/file-{:08}", i * 24 % 100_000))
        .collect();
    let gets = |layer: &Layer| {
        timed(|| {
            for k in &keys {
                std::hint::black_box(layer.get(k).unwrap().unwrap());
            }
        })
    };
    let p = paired(25, || gets(&base), || gets(&top));
    vec![
        p.row(
            "4",
            "point get of a base-layer key from 1,000 layers up",
            "same key from the base layer",
            p.cost(),
            OPS,
            Goal::AtMost(1.1),
        ),
        Row::scalar(
            "4t",
            "warm point get of a small value (base layer), time",
            Unit::Nanos,
            p.reference_micros(OPS) * 1e3,
            Goal::AtMost(1000.0),
            "median of the batches".into(),
        ),
    ]
}

/// A fresh store at `path`, `put` of `data` as one value, durable commit: the timed part
/// excludes creating and deleting the store file.
fn ingest_once(path: &Path, data: &[u8], compression: Compression) -> (Duration, f64) {
    let store = Store::create(
        path,
        Options {
            compression,
            ..Default::default()
        },
    )
    .unwrap();
    let t = timed(|| {
        let mut l = store.new_layer(None).unwrap();
        l.put("big", data).unwrap();
        l.finish(None).unwrap();
        store.commit().unwrap();
    });
    let ratio = data.len() as f64 / store.stats().unwrap().used_bytes as f64;
    drop(store);
    std::fs::remove_file(path).unwrap();
    (t, ratio)
}

/// 5: durable ingest of 1 GiB, incompressible against a plain write + fdatasync, and
/// compressible with zstd level 1 against zstd -1 on two threads.
pub fn ingest() -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(gib(), 5);
    let plain = dir.path().join("plain");
    let store_path = dir.path().join("s");
    let raw = paired(
        5,
        || {
            let _ = std::fs::remove_file(&plain);
            let mut f = File::create(&plain).unwrap();
            timed(|| {
                f.write_all(&data).unwrap();
                f.sync_data().unwrap();
            })
        },
        || ingest_once(&store_path, &data, Compression::None).0,
    );
    drop(data);
    let text = compressible(gib());
    let mut stored_ratio = 0.0;
    let zstd = paired(
        5,
        || {
            timed(|| {
                let mut enc = zstd::stream::Encoder::new(Vec::with_capacity(text.len() / 2), 1).unwrap();
                enc.multithread(2).unwrap();
                enc.write_all(&text).unwrap();
                std::hint::black_box(enc.finish().unwrap().len());
            })
        },
        || {
            let (t, r) = ingest_once(&store_path, &text, Compression::Zstd(1));
            stored_ratio = r;
            t
        },
    );
    let mut zstd_row = zstd.row(
        "5z",
        "1 GiB compressible value, zstd level 1, durable: rate",
        "zstd -1 on 2 threads, same bytes, in memory",
        zstd.rate(),
        1,
        Goal::AtLeast(0.8),
    );
    zstd_row.detail += &format!("; stored {stored_ratio:.2}x smaller");
    vec![
        raw.row(
            "5",
            "1 GiB incompressible value, no compression, durable: rate",
            "plain write + fdatasync of a new file",
            raw.rate(),
            1,
            Goal::AtLeast(0.9),
        ),
        zstd_row,
    ]
}

/// 6: sequential read of a 1 GiB value against memcpy; random point gets on two threads
/// against one.
pub fn read() -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(gib(), 6);
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let image = image_with(&store, "big", &data, None);
    let mut dst = vec![0u8; data.len()];
    let mut dst2 = vec![0u8; data.len()];
    let seq = paired(
        11,
        || timed(|| dst.copy_from_slice(&data)),
        || {
            timed(|| {
                for (i, chunk) in dst2.chunks_mut(1 << 20).enumerate() {
                    image.read_at("big", (i as u64) << 20, chunk).unwrap();
                }
            })
        },
    );
    drop((data, dst, dst2));
    let kv = many_keys(&store, 200_000);
    const GETS: u64 = 100_000;
    let run = |threads: u64| {
        timed(|| {
            std::thread::scope(|s| {
                for t in 0..threads {
                    let kv = &kv;
                    s.spawn(move || {
                        let mut r = Rng(t + 11);
                        for _ in 0..GETS / threads {
                            let k = format!("usr/share/file-{:08}", r.next() % 200_000);
                            std::hint::black_box(kv.get(&k).unwrap().unwrap());
                        }
                    });
                }
            })
        })
    };
    let par = paired(11, || run(1), || run(2));
    vec![
        seq.row(
            "6",
            "sequential read of a 1 GiB uncompressed value (read_at, 1 MiB buffers): rate",
            "memcpy of the same bytes",
            seq.rate(),
            1,
            Goal::AtLeast(0.8),
        ),
        par.row(
            "6p",
            "random point gets on 2 threads: rate",
            "the same gets on 1 thread",
            par.rate(),
            GETS,
            Goal::AtLeast(1.8),
        ),
    ]
}

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("t");

/// One write transaction of every key; timed on its own (the file's creation and close are not).
fn redb_insert(db: &redb::Database, keys: &[[u8; 16]], val: &[u8]) -> Duration {
    timed(|| {
        let tx = db.begin_write().unwrap();
        {
            let mut tb = tx.open_table(REDB_TABLE).unwrap();
            for key in keys {
                tb.insert(&key[..], val).unwrap();
            }
        }
        tx.commit().unwrap();
    })
}

fn redb_fill(path: &Path, keys: &[[u8; 16]], val: &[u8]) -> redb::Database {
    let db = redb::Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut tb = tx.open_table(REDB_TABLE).unwrap();
        for key in keys {
            tb.insert(&key[..], val).unwrap();
        }
    }
    tx.commit().unwrap();
    db
}

fn lstore_fill(store: &Store, keys: &[[u8; 16]], val: &[u8]) -> Layer {
    let mut l = store.new_layer(None).unwrap();
    for key in keys {
        l.put(key, val).unwrap();
    }
    let layer = l.finish(None).unwrap();
    store.commit().unwrap();
    layer
}

/// 7: against redb, 1M random 16-byte keys with 100-byte values in one transaction, then 1M
/// random point gets; and the file sizes.
pub fn versus_redb() -> Vec<Row> {
    const N: usize = 1_000_000;
    let mut r = Rng(42);
    let keys: Vec<[u8; 16]> = (0..N)
        .map(|_| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&r.next().to_le_bytes());
            k[8..].copy_from_slice(&r.next().to_le_bytes());
            // A key is a path: no NUL byte (both stores get the same keys).
            k.iter_mut().filter(|b| **b == 0).for_each(|b| *b = 1);
            k
        })
        .collect();
    let val = noise(100, 77);
    let mut order: Vec<usize> = (0..N).collect();
    for i in (1..N).rev() {
        order.swap(i, r.next() as usize % (i + 1));
    }
    let dir = tempfile::tempdir().unwrap();
    let (rp, lp) = (dir.path().join("r"), dir.path().join("l"));
    // What the file system holds for each file (allocated blocks), after a clean close.
    let allocated = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
    let mut sizes = (0u64, 0u64);
    let inserts = paired(
        5,
        || {
            let _ = std::fs::remove_file(&rp);
            let db = redb::Database::create(&rp).unwrap();
            let t = redb_insert(&db, &keys, &val);
            drop(db);
            sizes.0 = allocated(&rp);
            t
        },
        || {
            let _ = std::fs::remove_file(&lp);
            let store = Store::create(&lp, Options::default()).unwrap();
            let t = timed(|| drop(lstore_fill(&store, &keys, &val)));
            drop(store);
            sizes.1 = allocated(&lp);
            t
        },
    );
    let db = redb_fill(&dir.path().join("redb-read"), &keys, &val);
    let store = Store::create(dir.path().join("lstore-read"), Options::default()).unwrap();
    let layer = lstore_fill(&store, &keys, &val);
    let redb_gets = || {
        timed(|| {
            let tx = db.begin_read().unwrap();
            let tb = tx.open_table(REDB_TABLE).unwrap();
            for &i in &order {
                assert_eq!(tb.get(&keys[i][..]).unwrap().unwrap().value().len(), 100);
            }
        })
    };
    let get_ref = paired(5, redb_gets, || {
        timed(|| {
            for &i in &order {
                assert_eq!(layer.get_ref(keys[i]).unwrap().unwrap().len(), 100);
            }
        })
    });
    let get = paired(5, redb_gets, || {
        timed(|| {
            for &i in &order {
                assert_eq!(layer.get(keys[i]).unwrap().unwrap().len(), 100);
            }
        })
    });
    vec![
        inserts.row(
            "7i",
            "1M random 16 B keys / 100 B values, one transaction: time",
            "redb 4, same inserts",
            inserts.cost(),
            N as u64,
            Goal::AtMost(0.6),
        ),
        get_ref.row(
            "7r",
            "1M random point gets with get_ref (a borrowed slice, as redb's guard): time",
            "redb 4, same gets",
            get_ref.cost(),
            N as u64,
            Goal::AtMost(0.6),
        ),
        get.row(
            "7g",
            "the same with get (allocates the returned Vec): time",
            "redb 4, same gets",
            get.cost(),
            N as u64,
            Goal::Info,
        ),
        Row::scalar(
            "7s",
            "disk space (allocated blocks) after the inserts, over redb's",
            Unit::Ratio,
            sizes.1 as f64 / sizes.0 as f64,
            Goal::AtMost(1.0),
            format!("lstore {} B, redb {} B", sizes.1, sizes.0),
        ),
    ]
}

/// 8: open of a store holding 10 GiB in 100k values against open of an empty store; the peak
/// memory of the process that imported those 10 GiB.
pub fn open() -> Vec<Row> {
    const OPS: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    drop(Store::create(&empty, Options::default()).unwrap());
    let full = dir.path().join("full");
    let peak = crate::import::in_child(&full);
    let opens = |p: &Path| {
        timed(|| {
            for _ in 0..OPS {
                drop(Store::open(p).unwrap());
            }
        })
    };
    let p = paired(15, || opens(&empty), || opens(&full));
    vec![
        p.row(
            "8",
            "open of a store holding 10 GiB in 100k values",
            "open of an empty store",
            p.cost(),
            OPS,
            Goal::AtMost(1.5),
        ),
        Row::scalar(
            "8t",
            "open of that store, time",
            Unit::Micros,
            p.subject_micros(OPS),
            Goal::AtMost(5000.0),
            "median of the batches".into(),
        ),
        Row::scalar(
            "8m",
            "peak resident memory while importing those 10 GiB (own process)",
            Unit::MiB,
            peak as f64 / (1 << 20) as f64,
            Goal::AtMost(256.0),
            "VmHWM above the RSS before the import".into(),
        ),
    ]
}

/// The space target: remove a container that wrote 1 GiB nobody shares, gc, and count what the
/// file system got back.
pub fn gc_reclaim() -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let mut returned = Vec::new();
    let mut took = Vec::new();
    for k in 0..3u64 {
        let p = dir.path().join(format!("g{k}"));
        let store = Store::create(&p, Options::default()).unwrap();
        let img = image_with(&store, "shared", &noise(8 << 20, 1), None);
        let ctr = store.create_container(&img, None).unwrap();
        ctr.put("private", &noise(gib(), k + 2)).unwrap();
        store.commit().unwrap();
        store.remove_container(&ctr.id().to_string()).unwrap();
        store.commit().unwrap();
        let before = std::fs::metadata(&p).unwrap().blocks() * 512;
        took.push(
            timed(|| {
                store.gc().unwrap();
            })
            .as_secs_f64(),
        );
        let after = std::fs::metadata(&p).unwrap().blocks() * 512;
        returned.push(before.saturating_sub(after) as f64 / gib() as f64 * 100.0);
        assert!(img.get("shared").unwrap().is_some());
        drop((img, ctr, store));
        std::fs::remove_file(p).unwrap();
    }
    vec![Row::scalar(
        "gc",
        "gc after removing a container that wrote 1 GiB nobody shares: share returned to the file system",
        Unit::Percent,
        crate::harness::min(&returned),
        Goal::AtLeast(95.0),
        format!(
            "min of {} trials; gc took {}",
            returned.len(),
            crate::harness::seconds(crate::harness::median(&took))
        ),
    )]
}

/// Writes `data` in 64 KiB writes into a fresh container of `store`, committing durably after
/// every 16 MiB and at the end.
fn write_container(store: &Store, image: &Layer, data: &[u8]) {
    let c = store.create_container(image, None).unwrap();
    write_into(store, &c, data);
}

/// Writes `data` into `c` in 64 KiB writes, committing durably every 16 MiB and at the end.
pub fn write_into(store: &Store, c: &lstore::Container, data: &[u8]) {
    const COMMIT_EVERY: usize = 16 << 20;
    for (i, block) in data.chunks(64 << 10).enumerate() {
        c.write_at("var/lib/data", (i as u64) << 16, block).unwrap();
        if ((i + 1) << 16) % COMMIT_EVERY == 0 {
            store.commit().unwrap();
        }
    }
    store.commit().unwrap();
}

/// A new store at `path` (replacing any) compressing with zstd level 3, with an empty image
/// and containers `c0..c{containers}` on it, committed.
fn fresh_zstd_store(path: &Path, containers: usize) -> (Store, Layer) {
    let _ = std::fs::remove_file(path);
    let options = Options {
        compression: Compression::Zstd(3),
        ..Default::default()
    };
    let store = Store::create(path, options).unwrap();
    let image = store.new_layer(None).unwrap().finish(None).unwrap();
    for i in 0..containers {
        store.create_container(&image, Some(&format!("c{i}"))).unwrap();
    }
    store.commit().unwrap();
    (store, image)
}

/// 12t: 128 MiB of compressible 64 KiB writes (zstd level 3, durable commits every 16 MiB)
/// into two containers from two threads, against the same bytes into one container from one.
pub fn parallel_writers() -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let total = (gib() / 8).max(32 << 20);
    let text = compressible(total);
    let path = dir.path().join("s");
    let batch = |threads: usize| {
        let (store, image) = fresh_zstd_store(&path, 0);
        let share = total.div_ceil(threads);
        timed(|| {
            std::thread::scope(|s| {
                for part in text.chunks(share) {
                    let (store, image) = (&store, &image);
                    s.spawn(move || write_container(store, image, part));
                }
            })
        })
    };
    let threads = paired(7, || batch(1), || batch(2));
    vec![threads.row(
        "12t",
        "2 threads writing 2 containers (64 KiB writes, zstd 3, durable every 16 MiB): rate",
        "1 thread writing the same bytes into 1 container",
        threads.rate(),
        1,
        Goal::AtLeast(1.7),
    )]
}

/// One batch of the reader target: `GETS` point gets through a read-only handle, each
/// preceded by a read of the counter; returns each get's latency and, per counter read,
/// when it began and what it saw.
fn reader_batch(path: &Path, gets: usize, seed: u64) -> (Vec<f64>, Vec<(u64, u64)>) {
    let store = Store::open_read_only(path).unwrap();
    let c = store.container("c").unwrap();
    let mut rng = Rng(seed);
    let mut lat = Vec::with_capacity(gets);
    let mut seen = Vec::with_capacity(gets / 16);
    for i in 0..gets {
        let k = format!("usr/share/file-{:08}", rng.next() % 200_000);
        let t = std::time::Instant::now();
        std::hint::black_box(c.get(&k).unwrap().unwrap());
        lat.push(t.elapsed().as_secs_f64());
        if i % 16 == 0 {
            let began = crate::writer::now_ns();
            let v: u64 = String::from_utf8(c.get("counter").unwrap().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            seen.push((began, v));
        }
    }
    (lat, seen)
}

fn p99(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// 12r: a reader's point gets (through a read-only handle) while a writer process commits
/// durably without pause, against the same gets with no writer: p99 latency ratio, and how
/// stale any read was (how long before it began a newer commit than the one it saw had
/// been published).
pub fn reader_beside_writer() -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let store = Store::create(&path, Options::default()).unwrap();
        let image = many_keys(&store, 200_000);
        let c = store.create_container(&image, Some("c")).unwrap();
        c.put("counter", b"0").unwrap();
        store.commit().unwrap();
    }
    const GETS: usize = 50_000;
    let (mut ratios, mut worst_stale, mut commits) = (Vec::new(), 0u64, 0usize);
    let (mut alone_p99, mut beside_p99) = (Vec::new(), Vec::new());
    for pair in 0..7u64 {
        let alone = || p99(&mut reader_batch(&path, GETS, pair + 1).0);
        let mut beside = || {
            let w = crate::writer::Writer::start(&path);
            std::thread::sleep(Duration::from_millis(50));
            let (mut lat, seen) = reader_batch(&path, GETS, pair + 1);
            let published = w.stop();
            commits += published.len();
            for (began, v) in seen {
                // The first commit newer than what the read saw: if it was out before the read
                // began, the read was stale by that long.
                if let Some(&(_, at)) = published.iter().find(|(n, _)| *n == v + 1) {
                    worst_stale = worst_stale.max(began.saturating_sub(at));
                }
            }
            p99(&mut lat)
        };
        let (a, b) = if pair % 2 == 0 {
            let a = alone();
            (a, beside())
        } else {
            let b = beside();
            (alone(), b)
        };
        alone_p99.push(a);
        beside_p99.push(b);
        ratios.push(b / a);
    }
    let detail = format!(
        "pairs {:.2}..{:.2}, n={}; p99 {} alone vs {} beside a writer ({commits} commits)",
        crate::harness::min(&ratios),
        crate::harness::max(&ratios),
        ratios.len(),
        crate::harness::seconds(crate::harness::median(&alone_p99)),
        crate::harness::seconds(crate::harness::median(&beside_p99)),
    );
    vec![
        Row {
            id: "12r",
            what: "reader point gets while a writer process commits durably nonstop: p99 latency",
            reference: "the same gets with no writer",
            unit: Unit::Ratio,
            value: crate::harness::median(&ratios),
            goal: Goal::AtMost(2.0),
            detail,
        },
        Row::scalar(
            "12s",
            "staleness of those reads: how long a newer commit had been out when a read began (worst)",
            Unit::Micros,
            worst_stale as f64 / 1e3,
            Goal::AtMost(1000.0),
            format!("{commits} commits published during the reads"),
        ),
    ]
}

/// 12p: the same 128 MiB as 12t from two writer processes, each into its own container of
/// one store, against one process writing them all.
pub fn writer_processes() -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let total = (gib() / 8).max(32 << 20);
    let path = dir.path().join("s");
    let batch = |writers: usize| {
        drop(fresh_zstd_store(&path, writers));
        let mut children: Vec<_> = (0..writers)
            .map(|i| crate::writer::spawn_parallel(&path, &format!("c{i}"), total / writers))
            .collect();
        children.iter_mut().for_each(crate::writer::wait_ready);
        timed(|| {
            children.iter_mut().for_each(crate::writer::go);
            for c in &mut children {
                assert!(c.wait().unwrap().success(), "writer process failed");
            }
        })
    };
    let p = paired(7, || batch(1), || batch(2));
    vec![p.row(
        "12p",
        "2 writer processes on 2 containers of one store (64 KiB writes, zstd 3, durable every 16 MiB): rate",
        "1 writer process writing the same bytes",
        p.rate(),
        1,
        Goal::AtLeast(1.7),
    )]
}
