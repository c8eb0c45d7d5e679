//! Clusters: in a compressed store, the whole blocks of a file in a layer being built are
//! compressed together, up to 1 MiB at a time, as one chunk record; each block keeps its own
//! hash and its slice of the record (format-spec §5). Every file reads back exactly; dedup,
//! copy-on-write, df, gc and verify still see one block at a time.

mod common;
use common::{build_layer, cost_in_a_container, first_container_exclusive_bytes, remove_layer_and_gc, zstd_store, Rng};

use lstore::{Compression, Layer, PutOptions, Store};

const BLOCK: usize = 64 << 10;

/// Bytes like a program's or a library's: symbol records drawn from a table larger than one
/// block, so each record recurs at distances past a block: compressing a block alone finds
/// few of its repeats, compressing blocks together finds most.
fn program_like(len: usize, seed: u64) -> Vec<u8> {
    const NAMES: &[&str] = &[
        "malloc",
        "free",
        "memcpy",
        "strlen",
        "printf",
        "open",
        "close",
        "read",
        "write",
        "mmap",
        "socket",
        "connect",
        "pthread_create",
        "dlopen",
        "dlsym",
        "getenv",
        "setlocale",
        "qsort",
        "bsearch",
    ];
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let table: Vec<String> = (0..3000)
        .map(|_| {
            let name = NAMES[rng.below(NAMES.len() as u64) as usize];
            format!(
                "{name}@GLIBC_2.{} {:08x} {}\n",
                rng.below(40),
                rng.next() as u32,
                rng.below(1000)
            )
        })
        .collect();
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        out.extend_from_slice(table[rng.below(table.len() as u64) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

fn assert_reads_back(layer: &Layer, files: &[(String, Vec<u8>)]) {
    for (path, data) in files {
        assert!(layer.get(path).unwrap().as_deref() == Some(&data[..]), "{path}");
        // Reads as a program's would be: inside a block, across a block boundary, at the end.
        for off in [data.len() / 3, BLOCK - 50, data.len().saturating_sub(70)] {
            let mut buf = [0u8; 100];
            let off = off.min(data.len());
            let n = layer.read_at(path, off as u64, &mut buf).unwrap();
            assert_eq!(&buf[..n], &data[off..(off + 100).min(data.len())], "{path} at {off}");
        }
    }
}

fn layer_usage(store: &Store, name: &str) -> lstore::TreeUsage {
    let r = store.usage().unwrap();
    r.layers
        .into_iter()
        .find(|(l, _)| l.name.as_deref() == Some(name))
        .map(|(_, u)| u)
        .unwrap()
}

#[test]
fn a_layers_large_files_compress_a_mebibyte_at_a_time_and_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            (
                format!("usr/lib/lib{i}.so"),
                program_like(BLOCK * (2 + i * 3) + 777 * i, i as u64),
            )
        })
        .collect();
    let blocks: usize = files.iter().map(|f| f.1.len() / BLOCK).sum();
    let store = zstd_store(&dir.path().join("s"));
    let layer = build_layer(&store, None, &files, "libs");
    assert_reads_back(&layer, &files);

    let report = store.verify(true).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(
        (report.chunks_checked as usize) < blocks / 4,
        "{blocks} whole blocks in {} records",
        report.chunks_checked
    );
    let (grouped, alone) = (
        store.usage().unwrap().stored_bytes,
        cost_in_a_container(&dir.path().join("alone"), &files),
    );
    assert!(
        (grouped as f64) < 0.9 * alone as f64,
        "grouped {grouped} bytes, block by block {alone} bytes"
    );
}

#[test]
fn a_container_write_into_a_file_of_a_cluster_copies_one_block_not_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let store = zstd_store(&dir.path().join("s"));
    let data = program_like(2 << 20, 1);
    let files = vec![("usr/bin/prog".to_string(), data.clone())];
    let image = build_layer(&store, None, &files, "image");
    let c = store.create_container(&image, Some("c")).unwrap();
    c.write_at("usr/bin/prog", 700_000, &[0xAB; 4096]).unwrap();
    store.commit().unwrap();

    let mut expected = data.clone();
    expected[700_000..704_096].fill(0xAB);
    assert_eq!(c.get("usr/bin/prog").unwrap().unwrap(), expected);
    assert_reads_back(&image, &files);
    let exclusive = first_container_exclusive_bytes(&store);
    assert!(
        exclusive < 48 << 10,
        "the container holds its one block (compressed) and metadata: {exclusive} bytes"
    );
    assert!(store.verify(true).unwrap().is_clean());
}

#[test]
fn blocks_stored_by_an_earlier_layer_are_not_stored_again_and_gc_keeps_what_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let store = zstd_store(&dir.path().join("s"));
    let old = program_like(20 * BLOCK, 2);
    let mut new = old.clone();
    new[5 * BLOCK + 10..5 * BLOCK + 4000].copy_from_slice(&program_like(3990, 3));
    let v1 = vec![("usr/lib/libx.so".to_string(), old)];
    let v2 = vec![("usr/lib/libx.so".to_string(), new)];
    let first = build_layer(&store, None, &v1, "v1");
    let before = store.usage().unwrap().stored_bytes;
    // Another image of the same library, changed in one block: no parent, the chunk index
    // finds what is stored.
    build_layer(&store, None, &v2, "v2");
    let added = store.usage().unwrap().stored_bytes - before;
    assert!(
        added < 40 << 10,
        "one changed block stored again, not its cluster: {added} bytes"
    );
    let v2u = layer_usage(&store, "v2");
    assert!(v2u.exclusive_bytes < 40 << 10, "{v2u:?}");
    drop(first);

    // The first image removed: its clusters stay, the second uses 19 of their blocks.
    remove_layer_and_gc(&store, "v1");
    let kept = store.layer("v2").unwrap();
    assert_reads_back(&kept, &v2);
    assert!(store.verify(true).unwrap().is_clean());
    drop(kept);
    remove_layer_and_gc(&store, "v2");
    let after = store.usage().unwrap();
    assert!(after.stored_bytes < 4 << 10, "{after:?}");
    assert!(store.verify(true).unwrap().is_clean());
}

#[test]
fn holes_and_repeated_blocks_inside_a_cluster_cost_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = program_like(BLOCK, 4);
    let b = program_like(BLOCK, 5);
    let sparse: Vec<u8> = [&a[..], &vec![0; BLOCK], &a, &b, &vec![0; BLOCK]].concat();
    let dense: Vec<u8> = [&a[..], &b].concat();

    let s1 = zstd_store(&dir.path().join("sparse"));
    let l1 = build_layer(&s1, None, &[("f".to_string(), sparse.clone())], "sparse");
    assert_eq!(l1.get("f").unwrap().unwrap(), sparse);
    let s2 = zstd_store(&dir.path().join("dense"));
    build_layer(&s2, None, &[("f".to_string(), dense)], "dense");

    let (r1, r2) = (s1.verify(true).unwrap(), s2.verify(true).unwrap());
    assert!(r1.is_clean() && r2.is_clean(), "{r1:?} {r2:?}");
    assert_eq!(
        r1.chunks_checked, 1,
        "the five blocks (two holes, one repeat) are two distinct ones, in one record"
    );
    assert_eq!(
        s1.usage().unwrap().stored_bytes,
        s2.usage().unwrap().stored_bytes,
        "the same chunk record as a file of just the two distinct blocks"
    );
}

#[test]
fn a_file_written_in_pieces_that_cut_blocks_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = zstd_store(&dir.path().join("s"));
    let data = program_like(3 * (1 << 20) + 12_345, 6);
    let mut b = store.new_layer(None).unwrap();
    for (i, piece) in data.chunks(100_000).enumerate() {
        b.write_at("var/log/big.log", (i * 100_000) as u64, piece).unwrap();
    }
    // Rewritten in the middle while still being built.
    b.write_at("var/log/big.log", 1_000_000, &[7; 300_000]).unwrap();
    let layer = b.finish(Some("pieces")).unwrap();
    store.commit().unwrap();
    let mut expected = data;
    expected[1_000_000..1_300_000].fill(7);
    assert_eq!(layer.get("var/log/big.log").unwrap().unwrap(), expected);
    assert!(store.verify(true).unwrap().is_clean());
}

#[test]
fn a_file_put_then_extended_while_its_clusters_compress_reads_back_exactly() {
    // As an import writes a large file: its first 8 MiB with `put`, the rest with `write_at`,
    // and the next files at once, while the first file's clusters are still being compressed.
    let dir = tempfile::tempdir().unwrap();
    let store = zstd_store(&dir.path().join("s"));
    let first = program_like(8 << 20, 10);
    let rest = program_like(5 << 20, 11);
    let mut b = store.new_layer(None).unwrap();
    let mut files = Vec::new();
    for i in 0..4 {
        let key = format!("usr/lib/big{i}.so");
        b.put(&key, &first).unwrap();
        b.write_at(&key, first.len() as u64, &rest).unwrap();
        files.push((key, [&first[..], &rest].concat()));
        for j in 0..300 {
            let small = (
                format!("etc/{i}/small{j}"),
                program_like(300 + j, (i * 1000 + j) as u64),
            );
            b.put(&small.0, &small.1).unwrap();
            files.push(small);
        }
    }
    let layer = b.finish(Some("big")).unwrap();
    store.commit().unwrap();
    assert_reads_back(&layer, &files);
    assert!(store.verify(true).unwrap().is_clean());
}

#[test]
fn a_value_compressed_otherwise_or_truncated_inside_a_cluster_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = zstd_store(&dir.path().join("s"));
    let data = program_like(3 << 20, 20);
    let mut b = store.new_layer(None).unwrap();
    for (key, compression) in [("raw", Compression::None), ("zstd19", Compression::Zstd(19))] {
        let opts = PutOptions {
            compression: Some(compression),
            ..Default::default()
        };
        b.put_with(key, &data, &opts).unwrap();
    }
    // Cut in the middle of the second cluster's fourth block, then grown with other bytes.
    b.put("cut", &data).unwrap();
    let cut = (1 << 20) + 3 * BLOCK + 1234;
    b.truncate("cut", cut as u64).unwrap();
    b.write_at("cut", cut as u64 + 10, b"after the cut").unwrap();
    let layer = b.finish(Some("mixed")).unwrap();
    store.commit().unwrap();

    let mut expected_cut = data[..cut].to_vec();
    expected_cut.extend_from_slice(&[0; 10]);
    expected_cut.extend_from_slice(b"after the cut");
    let files = vec![
        ("raw".to_string(), data.clone()),
        ("zstd19".to_string(), data.clone()),
        ("cut".to_string(), expected_cut),
    ];
    assert_reads_back(&layer, &files);
    assert!(store.verify(true).unwrap().is_clean());
}
