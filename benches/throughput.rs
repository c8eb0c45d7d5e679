//! Single-figure throughput groups with criterion's reports (`target/criterion/report`). They
//! have no reference: every target that compares against one lives in the paired runner
//! (`benches/paired`), which alternates reference and subject in one sitting.

#[allow(dead_code)] // shared with the paired runner, which uses all of it
#[path = "paired/data.rs"]
mod data;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use data::{noise, Rng};
use lstore::{Durability, Options, Store};

const VALUE: usize = 64 << 20;

/// Point gets, listing, and `read_at` of a committed layer; non-durable puts into a builder.
fn layer_ops(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let mut b = store.new_layer(None).unwrap();
    for i in 0..100_000 {
        b.put(format!("usr/lib/file-{i:08}"), b"small file body").unwrap();
    }
    b.put("big", &noise(VALUE, 1)).unwrap();
    let layer = b.finish(None).unwrap();
    store.commit().unwrap();

    let mut g = c.benchmark_group("layer");
    g.throughput(Throughput::Elements(1));
    let mut rng = Rng(3);
    g.bench_function("point_get", |b| {
        b.iter(|| layer.get(format!("usr/lib/file-{:08}", rng.next() % 100_000)).unwrap())
    });
    g.throughput(Throughput::Elements(100_001));
    g.bench_function("list_all", |b| b.iter(|| layer.list("").unwrap().count()));
    g.throughput(Throughput::Bytes(VALUE as u64));
    let mut buf = vec![0u8; 1 << 20];
    g.bench_function("read_at_1MiB", |b| {
        b.iter(|| {
            for off in (0..VALUE as u64).step_by(1 << 20) {
                layer.read_at("big", off, &mut buf).unwrap();
            }
        })
    });
    let small = noise(4096, 4);
    let mut n = 0u64;
    g.throughput(Throughput::Bytes(4096));
    g.bench_function("container_put_4KiB_no_commit", |b| {
        let ctr = store.create_container(&layer, None).unwrap();
        b.iter(|| {
            n += 1;
            let mut v = small.clone();
            v[..8].copy_from_slice(&n.to_le_bytes());
            ctr.put(format!("new/{n}"), &v).unwrap()
        });
        store.commit_with(Durability::None).unwrap();
    });
    g.finish();
}

criterion_group!(benches, layer_ops);
criterion_main!(benches);
