//! Throughput benchmarks, each with its reference measured in the same run (these machines are
//! shared and noisy, so only ratios mean anything). `LSTORE_BENCH_GIB` scales the large
//! fixtures (default 1 GiB; the open benchmark uses 10x that).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use lstore::{Compression, Durability, Layer, Options, PutOptions, Store};
use redb::ReadableDatabase;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn gib() -> usize {
    std::env::var("LSTORE_BENCH_GIB")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(1 << 30, |g| (g * (1u64 << 30) as f64) as usize)
}

/// Fast deterministic incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = vec![0u8; len];
    for c in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    v
}

/// Compressible bytes, roughly like text and binaries in a filesystem tree (zstd -1 ~ 3-4x).
fn compressible(len: usize) -> Vec<u8> {
    let words: Vec<&[u8]> = [
        &b"layer "[..],
        b"store ",
        b"block ",
        b"chunk ",
        b"copy-on-write ",
        b"\n",
        b"0x7f45 ",
        b"container ",
    ]
    .to_vec();
    let mut v = Vec::with_capacity(len + 32);
    let mut x = 88172645463325252u64;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(5) {
            v.extend_from_slice(&x.to_le_bytes()[..3]);
        } else {
            v.extend_from_slice(words[(x >> 8) as usize % words.len()]);
        }
    }
    v.truncate(len);
    v
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn plain_file(path: &Path, data: &[u8]) -> std::fs::File {
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
    b.put_with(
        key,
        data,
        &PutOptions {
            block_size,
            ..Default::default()
        },
    )
    .unwrap();
    let l = b.finish(None).unwrap();
    store.commit().unwrap();
    l
}

/// Target 1: 4 KiB copy-on-write write into a 1 GiB image value in a fresh container, durable.
fn cow_small_write(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(gib(), 1);
    let plain = plain_file(&dir.path().join("plain"), &data);
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let image = image_with(&store, "disk.img", &data, None);
    drop(data);
    let mut g = c.benchmark_group("cow_small_write");
    g.sample_size(30).throughput(Throughput::Bytes(4096));
    let block = noise(4096, 9);
    let mut rng = Rng(7);
    let len = gib() as u64;
    g.bench_function("plain_pwrite_fdatasync", |b| {
        b.iter(|| {
            plain.write_all_at(&block, (rng.next() % (len / 4096)) * 4096).unwrap();
            plain.sync_data().unwrap();
        })
    });
    let before = store.stats().unwrap().used_bytes;
    let mut n = 0u64;
    g.bench_function("lstore_container_write_at_commit", |b| {
        b.iter(|| {
            let ctr = store.create_container(&image, None).unwrap();
            ctr.write_at("disk.img", (rng.next() % (len / 4096)) * 4096, &block)
                .unwrap();
            store.commit().unwrap();
            n += 1;
        })
    });
    g.finish();
    let grew = (store.stats().unwrap().used_bytes - before) / n.max(1);
    println!("cow_small_write: store growth per container + 4 KiB write + commit = {grew} bytes (block 65536)");
}

/// Target 2: 10,000 random 4 KiB writes into a 1 GiB value with 4 KiB blocks, one durable commit.
fn random_small_writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(gib(), 2);
    let plain = plain_file(&dir.path().join("plain"), &data);
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let image = image_with(&store, "db", &data, Some(4096));
    drop(data);
    let len = gib() as u64;
    let block = noise(4096, 3);
    let mut g = c.benchmark_group("random_small_writes");
    g.sample_size(10).throughput(Throughput::Elements(10_000));
    let offsets = |seed: u64| {
        let mut r = Rng(seed);
        (0..10_000)
            .map(|_| (r.next() % (len / 4096)) * 4096)
            .collect::<Vec<u64>>()
    };
    let mut seed = 1;
    g.bench_function("plain_in_place_then_fsync", |b| {
        b.iter(|| {
            seed += 1;
            for off in offsets(seed) {
                plain.write_all_at(&block, off).unwrap();
            }
            plain.sync_data().unwrap();
        })
    });
    let before = store.stats().unwrap().used_bytes;
    let mut n = 0;
    g.bench_function("lstore_container_then_commit", |b| {
        b.iter(|| {
            seed += 1;
            let ctr = store.create_container(&image, None).unwrap();
            for (i, off) in offsets(seed).into_iter().enumerate() {
                // Distinct payloads, so dedup does not flatter the figure.
                let mut blk = block.clone();
                blk[..8].copy_from_slice(&(i as u64 ^ seed << 20).to_le_bytes());
                ctr.write_at("db", off, &blk).unwrap();
            }
            store.commit().unwrap();
            n += 1;
        })
    });
    g.finish();
    let grew = (store.stats().unwrap().used_bytes - before) / n.max(1);
    println!(
        "random_small_writes: store growth per 10k x 4 KiB = {grew} bytes = {:.3}x the payload",
        grew as f64 / 40_960_000.0
    );
}

fn many_keys(store: &Store, n: usize) -> Layer {
    let mut ctr = store.new_layer(None).unwrap();
    for i in 0..n {
        ctr.put(format!("usr/share/file-{i:08}"), b"small file body").unwrap();
    }
    let l = ctr.finish(None).unwrap();
    store.commit().unwrap();
    l
}

/// Target 3: container creation on images of 1k and 1M keys, no commit.
fn container_create(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let mut g = c.benchmark_group("container_create");
    for n in [1_000usize, 1_000_000] {
        let image = many_keys(&store, n);
        g.bench_with_input(BenchmarkId::new("keys", n), &image, |b, image| {
            b.iter(|| store.create_container(image, None).unwrap())
        });
        store.commit_with(Durability::None).unwrap();
    }
    g.finish();
}

/// Target 4: lookup of a base-layer key from 1,000 layers up vs from the base; warm small get.
fn depth(c: &mut Criterion) {
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
    let mut g = c.benchmark_group("depth");
    g.throughput(Throughput::Elements(1));
    let keys: Vec<String> = (0..4096)
        .map(|i| format!("usr/share/file-{:08}", i * 24 % 100_000))
        .collect();
    for (name, layer) in [("base", &base), ("1000_deep", &top)] {
        let mut i = 0;
        g.bench_function(BenchmarkId::new("point_get", name), |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                layer.get(&keys[i]).unwrap().unwrap()
            })
        });
    }
    g.finish();
}

/// Target 5: durable ingest of a 1 GiB value vs a plain file; zstd-1 vs zstd's own 2 threads.
fn ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(gib(), 5);
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("plain_write_fdatasync", |b| {
        b.iter_batched(
            || dir.path().join("plain"),
            |p| {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&p)
                    .unwrap();
                f.write_all(&data).unwrap();
                f.sync_data().unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    let mut k = 0;
    g.bench_function("lstore_put_commit", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                k += 1;
                let p = dir.path().join(format!("s{k}"));
                let store = Store::create(&p, Options::default()).unwrap();
                let t = Instant::now();
                let mut l = store.new_layer(None).unwrap();
                l.put("big", &data).unwrap();
                l.finish(None).unwrap();
                store.commit().unwrap();
                total += t.elapsed();
                drop(store);
                std::fs::remove_file(p).unwrap();
            }
            total
        })
    });
    drop(data);
    let text = compressible(gib());
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("zstd1_two_threads", |b| {
        b.iter(|| {
            let mut enc = zstd::stream::Encoder::new(Vec::with_capacity(text.len() / 2), 1).unwrap();
            enc.multithread(2).unwrap();
            enc.write_all(&text).unwrap();
            enc.finish().unwrap().len()
        })
    });
    let mut ratio = 0.0;
    g.bench_function("lstore_put_commit_zstd1", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                k += 1;
                let p = dir.path().join(format!("z{k}"));
                let store = Store::create(
                    &p,
                    Options {
                        compression: Compression::Zstd(1),
                        ..Default::default()
                    },
                )
                .unwrap();
                let t = Instant::now();
                let mut l = store.new_layer(None).unwrap();
                l.put("big", &text).unwrap();
                l.finish(None).unwrap();
                store.commit().unwrap();
                total += t.elapsed();
                ratio = text.len() as f64 / store.stats().unwrap().used_bytes as f64;
                drop(store);
                std::fs::remove_file(p).unwrap();
            }
            total
        })
    });
    g.finish();
    println!("ingest: zstd-1 store ratio on the compressible set = {ratio:.2}x");
}

/// Target 6: sequential read of a 1 GiB value vs memcpy; 2 reader threads vs 1.
fn read(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(gib(), 6);
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let image = image_with(&store, "big", &data, None);
    let mut g = c.benchmark_group("read");
    g.sample_size(10).throughput(Throughput::Bytes(data.len() as u64));
    let mut dst = vec![0u8; data.len()];
    g.bench_function("memcpy", |b| b.iter(|| dst.copy_from_slice(&data)));
    drop(data);
    g.bench_function("lstore_read_at_1MiB", |b| {
        b.iter(|| {
            for (i, chunk) in dst.chunks_mut(1 << 20).enumerate() {
                image.read_at("big", (i as u64) << 20, chunk).unwrap();
            }
        })
    });
    drop(dst);
    let kv = many_keys(&store, 200_000);
    let gets = 100_000u64;
    g.throughput(Throughput::Elements(gets));
    for threads in [1u64, 2] {
        g.bench_function(BenchmarkId::new("random_gets_threads", threads), |b| {
            b.iter(|| {
                std::thread::scope(|s| {
                    for t in 0..threads {
                        let kv = &kv;
                        s.spawn(move || {
                            let mut r = Rng(t + 11);
                            for _ in 0..gets / threads {
                                let k = format!("usr/share/file-{:08}", r.next() % 200_000);
                                kv.get(&k).unwrap().unwrap();
                            }
                        });
                    }
                })
            })
        });
    }
    g.finish();
}

/// Target 7: against redb, 1M random 16-byte keys / 100-byte values in one transaction, then 1M
/// random point gets; file sizes printed.
fn versus_redb(c: &mut Criterion) {
    const N: usize = 1_000_000;
    let mut r = Rng(42);
    let keys: Vec<[u8; 16]> = (0..N)
        .map(|_| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&r.next().to_le_bytes());
            k[8..].copy_from_slice(&r.next().to_le_bytes());
            k
        })
        .collect();
    let val = noise(100, 77);
    let mut order: Vec<usize> = (0..N).collect();
    for i in (1..N).rev() {
        order.swap(i, r.next() as usize % (i + 1));
    }
    let dir = tempfile::tempdir().unwrap();
    let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("t");
    let mut g = c.benchmark_group("versus_redb");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Elements(N as u64));
    let mut k = 0;
    let mut sizes = (0u64, 0u64);
    g.bench_function("redb_insert_1M_one_txn", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                k += 1;
                let p = dir.path().join(format!("r{k}"));
                let db = redb::Database::create(&p).unwrap();
                let t = Instant::now();
                let tx = db.begin_write().unwrap();
                {
                    let mut tb = tx.open_table(table).unwrap();
                    for key in &keys {
                        tb.insert(&key[..], &val[..]).unwrap();
                    }
                }
                tx.commit().unwrap();
                total += t.elapsed();
                drop(db);
                sizes.0 = std::fs::metadata(&p).unwrap().len();
                std::fs::remove_file(p).unwrap();
            }
            total
        })
    });
    g.bench_function("lstore_insert_1M_one_commit", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                k += 1;
                let p = dir.path().join(format!("l{k}"));
                let store = Store::create(&p, Options::default()).unwrap();
                let t = Instant::now();
                let mut l = store.new_layer(None).unwrap();
                for key in &keys {
                    l.put(key, &val).unwrap();
                }
                l.finish(None).unwrap();
                store.commit().unwrap();
                total += t.elapsed();
                drop(store);
                sizes.1 = std::fs::metadata(&p).unwrap().len();
                std::fs::remove_file(p).unwrap();
            }
            total
        })
    });
    println!(
        "versus_redb: file size redb {} bytes, lstore {} bytes",
        sizes.0, sizes.1
    );
    // Reads: one populated file each.
    let rp = dir.path().join("redb-read");
    let db = redb::Database::create(&rp).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut tb = tx.open_table(table).unwrap();
        for key in &keys {
            tb.insert(&key[..], &val[..]).unwrap();
        }
    }
    tx.commit().unwrap();
    let store = Store::create(dir.path().join("lstore-read"), Options::default()).unwrap();
    let mut l = store.new_layer(None).unwrap();
    for key in &keys {
        l.put(key, &val).unwrap();
    }
    let layer = l.finish(None).unwrap();
    store.commit().unwrap();
    g.bench_function("redb_get_1M_random", |b| {
        b.iter(|| {
            let tx = db.begin_read().unwrap();
            let tb = tx.open_table(table).unwrap();
            for &i in &order {
                assert_eq!(tb.get(&keys[i][..]).unwrap().unwrap().value().len(), 100);
            }
        })
    });
    g.bench_function("lstore_get_1M_random", |b| {
        b.iter(|| {
            for &i in &order {
                assert_eq!(layer.get(keys[i]).unwrap().unwrap().len(), 100);
            }
        })
    });
    // Like for like: redb's `get` hands out a guard into its page, `get_ref` a borrowed slice.
    g.bench_function("lstore_get_ref_1M_random", |b| {
        b.iter(|| {
            for &i in &order {
                assert_eq!(layer.get_ref(keys[i]).unwrap().unwrap().len(), 100);
            }
        })
    });
    g.finish();
}

/// Target 8: open of a store holding 10 GiB in 100k values vs an empty store (the memory
/// during that import is measured by `benches/import_memory.rs`).
fn open(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    drop(Store::create(&empty, Options::default()).unwrap());
    let full = dir.path().join("full");
    {
        let store = Store::create(&full, Options::default()).unwrap();
        let total = 10 * gib();
        let per = total / 100_000;
        let mut b = store.new_layer(None).unwrap();
        let mut buf = noise(per, 10);
        for i in 0..100_000usize {
            buf[..8].copy_from_slice(&(i as u64).to_le_bytes());
            buf[per / 2..per / 2 + 8].copy_from_slice(&(i as u64).to_le_bytes());
            b.put(format!("v/{i:06}"), &buf).unwrap();
            if i % 10_000 == 9_999 {
                store.commit_with(Durability::None).unwrap();
            }
        }
        b.finish(None).unwrap();
        store.commit().unwrap();
    }
    let mut g = c.benchmark_group("open");
    for (name, p) in [("empty", &empty), ("10GiB_100k_values", &full)] {
        g.bench_function(name, |b| b.iter(|| Store::open(p).unwrap()));
    }
    g.finish();
}

/// The space issue's target: remove a container that wrote 1 GiB nobody shares, run gc, and
/// see how much of it the file system gets back (printed), and how long gc takes.
fn gc_reclaim(c: &mut Criterion) {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("gc_reclaim");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Bytes(gib() as u64));
    let mut k = 0;
    let mut returned = Vec::new();
    g.bench_function("remove_1GiB_container_then_gc", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                k += 1;
                let p = dir.path().join(format!("g{k}"));
                let store = Store::create(&p, Options::default()).unwrap();
                let img = image_with(&store, "shared", &noise(8 << 20, 1), None);
                let ctr = store.create_container(&img, None).unwrap();
                ctr.put("private", &noise(gib(), k)).unwrap();
                store.commit().unwrap();
                store.remove_container(&ctr.id().to_string()).unwrap();
                store.commit().unwrap();
                let before = std::fs::metadata(&p).unwrap().blocks() * 512;
                let t = Instant::now();
                store.gc().unwrap();
                total += t.elapsed();
                let after = std::fs::metadata(&p).unwrap().blocks() * 512;
                returned.push((before - after) as f64 / gib() as f64);
                assert!(img.get("shared").unwrap().is_some());
                drop((img, ctr, store));
                std::fs::remove_file(p).unwrap();
            }
            total
        })
    });
    g.finish();
    let min = returned.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "gc_reclaim: share of the removed container's data returned to the file system: min {:.1}% over {} runs",
        min * 100.0,
        returned.len()
    );
}

criterion_group!(
    benches,
    gc_reclaim,
    cow_small_write,
    random_small_writes,
    container_create,
    depth,
    ingest,
    read,
    versus_redb,
    open
);
criterion_main!(benches);
