//! Space: gc gives disk back, compression shrinks what compresses, dedup stores once.

mod common;
use common::noise;

use lstore::{Compression, Options, PutOptions, Store};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn allocated(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().blocks() * 512
}

#[test]
fn gc_returns_a_removed_containers_gibibyte_to_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::create(&path, Options::default()).unwrap();
    let mut b = store.new_layer(None).unwrap();
    let shared = noise(8 << 20, 1);
    b.put("shared.bin", &shared).unwrap();
    b.put("etc/conf", b"x = 1").unwrap();
    let image = b.finish(Some("image")).unwrap();
    let keep = store.create_container(&image, Some("keep")).unwrap();
    keep.write_at("shared.bin", 4096, b"kept change").unwrap();
    let doomed = store.create_container(&image, Some("doomed")).unwrap();
    for i in 0..16u64 {
        doomed.put(format!("data/{i}"), &noise(64 << 20, 100 + i)).unwrap();
    }
    store.commit().unwrap();
    let before = allocated(&path);
    assert!(before > 1 << 30, "allocated {before}");
    store.remove_container("doomed").unwrap();
    store.commit().unwrap();
    let report = store.gc().unwrap();
    let after = allocated(&path);
    let returned = before - after;
    // All of it but the pool's reserve (a quarter of the live data: freed space gc keeps
    // written, so that the next writes into it sync their data alone).
    assert!(
        returned as f64 >= 0.95 * (1u64 << 30) as f64,
        "returned {returned} bytes; report {report:?}"
    );
    assert!(report.pool_bytes >= 1 << 30, "{report:?}");
    assert!(report.segments_freed >= 15, "{report:?}");

    // What is still referenced reads back bit-exact, now and after reopen.
    let check = |s: &Store| {
        let image = s.layer("image").unwrap();
        assert!(image.get("shared.bin").unwrap().unwrap() == shared);
        let keep = s.container("keep").unwrap();
        let mut want = shared.clone();
        want[4096..4096 + 11].copy_from_slice(b"kept change");
        assert!(keep.get("shared.bin").unwrap().unwrap() == want);
        assert_eq!(keep.get("etc/conf").unwrap().unwrap(), b"x = 1");
    };
    check(&store);
    drop((image, keep, doomed));
    drop(store);
    let store = Store::open(&path).unwrap();
    check(&store);
    // A second gc finds nothing more to free and changes nothing.
    let again = store.gc().unwrap();
    assert!(again.bytes_freed < 1 << 20, "{again:?}");
    check(&store);
}

#[test]
fn gc_keeps_what_an_open_handle_reads_even_after_its_layer_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::small_segment_store(&dir.path().join("s"), None);
    let data = noise(20 << 20, 5);
    let mut b = store.new_layer(None).unwrap();
    b.put("v", &data).unwrap();
    let layer = b.finish(Some("l")).unwrap();
    store.commit().unwrap();
    store.remove_layer("l").unwrap();
    store.commit().unwrap();
    store.gc().unwrap();
    assert!(
        layer.get("v").unwrap().unwrap() == data,
        "the snapshot a reader holds stays readable"
    );
    drop(layer);
    let r = store.gc().unwrap();
    assert!(r.segments_freed >= 4, "{r:?}");
}

#[test]
fn gc_moves_live_records_out_of_mostly_dead_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = common::small_segment_store(&path, Some(4096));
    let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
    // Interleave a little live data with a lot of garbage in the same segments.
    let live = store.create_container(&img, Some("live")).unwrap();
    let dead = store.create_container(&img, Some("garbage")).unwrap();
    let mut want = Vec::new();
    for i in 0..40u64 {
        let v = noise(20_000, i);
        live.put(format!("k{i}"), &v).unwrap();
        want.push(v);
        dead.put(format!("k{i}"), &noise(400_000, 1000 + i)).unwrap();
        store.commit().unwrap();
    }
    store.remove_container("garbage").unwrap();
    let r = store.gc_with(0.5).unwrap();
    assert!(r.records_moved > 0 && r.segments_freed > 0, "{r:?}");
    for (i, v) in want.iter().enumerate() {
        assert!(live.get(format!("k{i}")).unwrap().unwrap() == *v);
    }
    drop((img, live, dead));
    drop(store);
    let store = Store::open(&path).unwrap();
    let live = store.container("live").unwrap();
    for (i, v) in want.iter().enumerate() {
        assert!(live.get(format!("k{i}")).unwrap().unwrap() == *v);
    }
    // Dedup still works against moved chunks.
    let before = store.stats().unwrap().chunks;
    live.put("copy", &want[3]).unwrap();
    store.commit().unwrap();
    assert_eq!(store.stats().unwrap().chunks, before);
}

#[test]
fn compression_shrinks_text_and_never_inflates_random_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(
        dir.path().join("z"),
        Options {
            compression: Compression::Zstd(3),
            ..Default::default()
        },
    )
    .unwrap();
    let text: Vec<u8> = (0..4_000_000u32)
        .flat_map(|i| format!("line {} of a log file\n", i % 5000).into_bytes())
        .take(8 << 20)
        .collect();
    let random = noise(8 << 20, 9);
    let base = store.stats().unwrap().used_bytes;
    let mut b = store.new_layer(None).unwrap();
    b.put("text", &text).unwrap();
    b.finish(None).unwrap();
    store.commit().unwrap();
    let text_cost = store.stats().unwrap().used_bytes - base;
    assert!(
        (text_cost as f64) < 0.5 * text.len() as f64,
        "text stored in {text_cost} bytes"
    );
    let base = store.stats().unwrap().used_bytes;
    let mut b = store.new_layer(None).unwrap();
    b.put("random", &random).unwrap();
    // A per-value override: this one stays raw even in a zstd store.
    b.put_with(
        "raw-text",
        &text[..1 << 20],
        &PutOptions {
            compression: Some(Compression::None),
            ..Default::default()
        },
    )
    .unwrap();
    let l = b.finish(None).unwrap();
    store.commit().unwrap();
    let random_cost = store.stats().unwrap().used_bytes - base;
    assert!(
        (random_cost as f64) < 1.01 * (random.len() + (1 << 20)) as f64,
        "random stored in {random_cost} bytes"
    );
    assert!(l.get("random").unwrap().unwrap() == random);
    assert!(l.get("raw-text").unwrap().unwrap() == text[..1 << 20]);
}

#[test]
fn importing_the_same_tree_twice_stores_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let files: Vec<Vec<u8>> = (0..50).map(|i| noise(200_000 + i * 1000, i as u64)).collect();
    let import = |name: &str| {
        let mut b = store.new_layer(None).unwrap();
        for (i, f) in files.iter().enumerate() {
            b.put(format!("usr/lib/f{i}"), f).unwrap();
        }
        b.finish(Some(name)).unwrap();
        store.commit().unwrap();
        store.stats().unwrap().used_bytes
    };
    let first = import("a");
    let second = import("b");
    let total: usize = files.iter().map(|f| f.len()).sum();
    assert!(
        ((second - first) as f64) < 0.01 * total as f64,
        "second import grew the store by {}",
        second - first
    );
}

#[test]
fn df_accounts_for_every_layer_container_and_volume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::create(&path, Options::default()).unwrap();
    let base_data = noise(4 << 20, 1);
    let mut b = store.new_layer(None).unwrap();
    b.put("base.bin", &base_data).unwrap();
    b.put("small", b"tiny").unwrap();
    // A 1 GiB sparse value with 64 KiB written costs about 64 KiB.
    b.write_at("sparse", (1 << 30) - (64 << 10), &noise(64 << 10, 2))
        .unwrap();
    let base = b.finish(Some("base")).unwrap();
    let c = store.create_container(&base, Some("c")).unwrap();
    let unique = noise(3 << 20, 3);
    c.put("mine.bin", &unique).unwrap();
    c.put("copy-of-base.bin", &base_data).unwrap(); // dedups against the image
    store.commit().unwrap();
    let r = store.usage().unwrap();
    let (_, bu) = r
        .layers
        .iter()
        .find(|(l, _)| l.name.as_deref() == Some("base"))
        .unwrap();
    assert_eq!(bu.logical_bytes, (4 << 20) + 4 + (64 << 10));
    let (_, cu) = &r.containers[0];
    assert_eq!(cu.logical_bytes, bu.logical_bytes + (3 << 20) + (4 << 20));
    // The container's exclusive bytes are its unique data, within 5%.
    let excl = cu.exclusive_bytes as f64;
    assert!(
        (excl - (3 << 20) as f64).abs() < 0.05 * (3 << 20) as f64,
        "exclusive {excl}"
    );
    assert!(
        bu.exclusive_bytes < 1 << 20,
        "the image's chunks are shared with the container"
    );
    assert!(cu.referenced_bytes > (10 << 20));
    // Raw bytes referenced (base 4 MiB twice, 3 MiB unique, the 4 MiB copy) over distinct raw bytes.
    assert!(r.dedup_ratio > 2.0 && r.dedup_ratio < 2.3, "{}", r.dedup_ratio);
    assert!((r.compression_ratio - 1.0).abs() < 1e-9);
    assert!(r.stored_bytes < (8 << 20) + (256 << 10));
    assert_eq!(r.garbage_bytes, 0);
    // Removing the container makes its exclusive bytes garbage, then gc frees them.
    drop(c);
    store.remove_container("c").unwrap();
    store.commit().unwrap();
    let r2 = store.usage().unwrap();
    assert!(r2.garbage_bytes as f64 >= 0.95 * excl, "garbage {}", r2.garbage_bytes);
    let g = store.gc().unwrap();
    assert!(g.bytes_freed as f64 >= 0.9 * excl, "{g:?}");
}

#[test]
fn after_gc_the_superblock_counts_no_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let store = Store::create(&path, Options::default()).unwrap();
        let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
        let c = store.create_container(&img, Some("c")).unwrap();
        c.put("big", &noise(8 << 20, 77)).unwrap();
        store.commit().unwrap();
        drop(c);
        store.remove_container("c").unwrap();
        store.gc().unwrap();
    }
    let store = Store::open_read_only(&path).unwrap();
    let r = store.usage().unwrap();
    assert_eq!(r.garbage_bytes, 0, "{r:?}");
}

/// Overwrites the payload of every 64 KiB chunk of `data` in the store file (not its header).
fn damage_every_block(path: &Path, data: &[u8]) {
    let mut bytes = std::fs::read(path).unwrap();
    for block in data.chunks(64 << 10) {
        let probe = &block[..64];
        let at = bytes
            .windows(64)
            .position(|w| w == probe)
            .expect("block is in the file");
        bytes[at..at + 4096].fill(0xee);
    }
    std::fs::write(path, &bytes).unwrap();
}

#[test]
fn df_and_dedup_read_pointers_never_chunks_so_damaged_data_does_not_stop_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let data = noise(1 << 20, 9);
    {
        let store = Store::create(&path, Options::default()).unwrap();
        let mut b = store.new_layer(None).unwrap();
        b.put("a.bin", &data).unwrap();
        b.finish(Some("img")).unwrap();
        store.commit().unwrap();
        store.create_volume("later").unwrap();
        store.commit().unwrap();
    }
    damage_every_block(&path, &data);
    let store = Store::open(&path).unwrap();
    // df's figures come from the block maps' pointers: exact, though no chunk is readable.
    let r = store.usage().unwrap();
    let (_, u) = r.layers.iter().find(|(l, _)| l.name.as_deref() == Some("img")).unwrap();
    assert_eq!(u.logical_bytes, 1 << 20);
    assert!(
        u.referenced_bytes >= 1 << 20 && u.referenced_bytes < (1 << 20) + 4096,
        "{u:?}"
    );
    // Storing the same content again dedups by the index's pointers, reading nothing.
    let c = store.create_container(&store.layer("img").unwrap(), Some("c")).unwrap();
    c.put("again.bin", &data).unwrap();
    store.commit().unwrap();
    let r2 = store.usage().unwrap();
    assert_eq!(r2.stored_bytes, r.stored_bytes, "the copy added no chunk");
    // Reading the data, and verify, find the damage.
    assert!(matches!(c.get("again.bin"), Err(lstore::Error::Corrupt(_))));
    assert!(!store.verify(false).unwrap().is_clean());
}

#[test]
fn space_gc_frees_is_reused_and_the_file_never_outgrows_twice_the_live_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let seg = 4u64 << 20;
    let store = common::small_segment_store(&path, None);
    let mut b = store.new_layer(None).unwrap();
    b.put("etc/os-release", b"lstore").unwrap();
    let img = b.finish(Some("img")).unwrap();
    let data = noise(8 << 20, 5);
    let (mut peak_len, mut peak_alloc) = (0, 0);
    for cycle in 0..40 {
        let c = store.create_container(&img, Some("c")).unwrap();
        // A little different each time: nothing dedups against the last cycle.
        let mut d = data.clone();
        d[..8].copy_from_slice(&(cycle as u64).to_le_bytes());
        for (i, piece) in d.chunks(1 << 20).enumerate() {
            c.write_at("big", (i << 20) as u64, piece).unwrap();
        }
        store.commit().unwrap();
        assert_eq!(c.get("big").unwrap().unwrap(), d);
        let meta = std::fs::metadata(&path).unwrap();
        peak_len = peak_len.max(meta.len());
        peak_alloc = peak_alloc.max(allocated(&path));
        drop(c);
        store.remove_container("c").unwrap();
        let r = store.gc().unwrap();
        assert!(r.deferred_for_reader.is_none(), "{r:?}");
    }
    // 320 MiB written over the store's life; the file holds about one cycle's data.
    let live = 8u64 << 20;
    assert!(peak_len <= 2 * live + seg + (4 << 20), "file grew to {peak_len}");
    assert!(peak_alloc <= 2 * live + seg + (4 << 20), "allocated {peak_alloc}");
    drop(store);
    let store = Store::open(&path).unwrap();
    assert!(store.verify(true).unwrap().is_clean());
    assert_eq!(
        store.layer("img").unwrap().get("etc/os-release").unwrap().unwrap(),
        b"lstore"
    );
}

/// The pool record's address, from the newest superblock (format-spec §3: generation at 16,
/// pool at 464).
fn pool_address(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let newest = [4096usize, 12288].into_iter().max_by_key(|&s| word(s + 16)).unwrap();
    word(newest + 464)
}

#[test]
fn a_damaged_pool_record_is_reported_and_only_costs_reuse_until_gc_writes_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let store = common::small_segment_store(&path, None);
        let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
        let c = store.create_container(&img, Some("gone")).unwrap();
        c.put("big", &noise(12 << 20, 4)).unwrap();
        store.commit().unwrap();
        drop(c);
        store.remove_container("gone").unwrap();
        assert!(store.gc().unwrap().pool_bytes > 0);
    }
    let pool = pool_address(&path);
    assert!(pool != 0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[pool as usize + 64 + 8] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let store = Store::open(&path).unwrap();
    let report = store.verify(true).unwrap();
    assert!(
        report.problems.iter().any(|p| p.what.contains("free pool")),
        "{report:?}"
    );
    // Writes go on (growing the file instead of reusing), and gc lists the space again.
    let c = store.create_container(&store.layer("img").unwrap(), Some("c")).unwrap();
    let data = noise(3 << 20, 5);
    c.put("k", &data).unwrap();
    store.commit().unwrap();
    let r = store.gc().unwrap();
    assert!(r.pool_bytes > 0, "{r:?}");
    assert!(store.verify(true).unwrap().is_clean());
    assert!(c.get("k").unwrap().unwrap() == data);
}

#[test]
fn a_reader_of_the_newest_commit_does_not_stop_gc_from_reusing_space() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = common::small_segment_store(&path, None);
    let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
    store.commit().unwrap();
    // Another open file of the store, reading each commit as it lands: it holds the newest
    // generation every time gc marks.
    let reader = Store::open_read_only(&path).unwrap();
    let data = noise(6 << 20, 8);
    let mut pooled = 0;
    for cycle in 0..20u64 {
        let c = store.create_container(&img, Some("c")).unwrap();
        let mut d = data.clone();
        d[..8].copy_from_slice(&cycle.to_le_bytes());
        c.put("big", &d).unwrap();
        store.commit().unwrap();
        drop(c);
        store.remove_container("c").unwrap();
        store.commit().unwrap();
        assert!(reader.layer("img").unwrap().get("nothing").unwrap().is_none());
        pooled = pooled.max(store.gc().unwrap().pool_bytes);
    }
    assert!(pooled > 0);
    // 120 MiB written: without reuse beside the reader the file would hold all of it.
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len < 40 << 20, "file grew to {len} beside a reader");
}
