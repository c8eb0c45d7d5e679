//! Packs: in a compressed store, the small files of a layer being built, and the last partial
//! block of larger ones, are stored together in shared compressed records (format-spec §5).
//! Every file reads back exactly; dedup, copy-on-write, df, gc and verify see each block.

mod common;
use common::{
    build_layer, cost_in_a_container, first_container_exclusive_bytes, noise, remove_layer_and_gc, zstd_store, Rng,
};

use lstore::{Compression, Layer, Options, Store};
use std::path::Path;

/// Text like a root file system's small files: configuration, scripts, documentation. Each
/// file is different, but they share words, so they compress much better together.
fn small_files(n: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    const WORDS: &[&str] = &[
        "usr",
        "lib",
        "share",
        "doc",
        "copyright",
        "license",
        "debian",
        "package",
        "version",
        "config",
        "default",
        "enable",
        "disable",
        "the",
        "of",
        "and",
        "to",
        "if",
        "then",
        "fi",
        "echo",
        "exit",
        "status",
        "install",
        "remove",
        "python3",
        "module",
        "import",
        "def",
        "return",
        "self",
        "None",
        "True",
        "False",
        "#",
        "=",
        ":",
        "{",
        "}",
        "/etc",
        "/var",
    ];
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    (0..n)
        .map(|i| {
            let len = 300 + rng.below(12_000) as usize;
            let mut text = format!("# file {i} of seed {seed}\n").into_bytes();
            while text.len() < len {
                text.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
                text.push(if rng.below(9) == 0 { b'\n' } else { b' ' });
            }
            text.truncate(len);
            (format!("etc/pkg{}/file{i}.conf", i % 17), text)
        })
        .collect()
}

fn assert_reads_back(layer: &Layer, files: &[(String, Vec<u8>)]) {
    for (path, data) in files {
        assert!(layer.get(path).unwrap().as_deref() == Some(&data[..]), "{path}");
        // A read inside the file, as a program's would be.
        let mut buf = [0u8; 100];
        let off = data.len() / 3;
        let n = layer.read_at(path, off as u64, &mut buf).unwrap();
        assert_eq!(&buf[..n], &data[off..(off + 100).min(data.len())], "{path} at {off}");
    }
}

#[test]
fn a_layers_small_files_are_packed_together_and_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let files = small_files(1500, 1);
    let total: usize = files.iter().map(|f| f.1.len()).sum();

    let packed = zstd_store(&dir.path().join("packed"));
    let layer = build_layer(&packed, None, &files, "etc");
    assert_reads_back(&layer, &files);

    let (p, a) = (
        packed.usage().unwrap().stored_bytes,
        cost_in_a_container(&dir.path().join("alone"), &files),
    );
    assert!(
        (p as f64) < 0.85 * a as f64,
        "{total} bytes of small files: packed {p} bytes, alone {a} bytes"
    );
    let report = packed.verify(true).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn a_larger_files_last_partial_block_is_packed_and_its_whole_blocks_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = zstd_store(&dir.path().join("s"));
    let mut rng = Rng(7);
    let files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            let len = (64 << 10) * (1 + i % 3) + 1 + rng.below(60_000) as usize;
            let mut data = small_files(1, i as u64)[0].1.repeat(len / 300 + 1);
            data.truncate(len);
            (format!("usr/share/big{i}"), data)
        })
        .collect();
    let layer = build_layer(&store, None, &files, "big");
    assert_reads_back(&layer, &files);
    assert!(store.verify(true).unwrap().is_clean());

    // The tails packed cost less than each compressed alone.
    let (p, a) = (
        store.usage().unwrap().stored_bytes,
        cost_in_a_container(&dir.path().join("alone"), &files),
    );
    assert!(p < a, "tails packed: {p} bytes, alone: {a} bytes");
}

#[test]
fn a_file_repeated_in_one_build_is_stored_once_wherever_its_first_copy_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = zstd_store(&dir.path().join("s"));
    let files = small_files(600, 9);
    let mut b = store.new_layer(None).unwrap();
    for (i, (path, data)) in files.iter().enumerate() {
        b.put(path, data).unwrap();
        // Copies of files put 1, 20 and 200 files ago: in the pack being filled, in one
        // being compressed, and in one already written.
        for back in [1, 20, 200] {
            if let Some((_, earlier)) = i.checked_sub(back).map(|j| &files[j]) {
                b.put(format!("copies/{i}-{back}"), earlier).unwrap();
            }
        }
        // Every recent file reads back, wherever its pack is.
        for (p, d) in &files[i.saturating_sub(20)..=i] {
            assert!(b.get(p).unwrap().as_deref() == Some(&d[..]), "{p}");
        }
    }
    let layer = b.finish(Some("copies")).unwrap();
    store.commit().unwrap();
    assert_reads_back(&layer, &files);
    for i in 0..files.len() {
        for back in [1, 20, 200] {
            if let Some(j) = i.checked_sub(back) {
                assert!(layer.get(format!("copies/{i}-{back}")).unwrap().unwrap() == files[j].1);
            }
        }
    }
    let r = store.usage().unwrap();
    let unique: u64 = build_alone_cost(&dir.path().join("once"), &files);
    assert!(
        (r.stored_bytes as f64) < 1.05 * unique as f64,
        "three copies of each file cost {} bytes, one copy {unique}",
        r.stored_bytes
    );
    assert!(store.verify(true).unwrap().is_clean());
}

/// What the files cost stored once, packed, in a store of their own.
fn build_alone_cost(path: &Path, files: &[(String, Vec<u8>)]) -> u64 {
    let store = zstd_store(path);
    build_layer(&store, None, files, "once");
    store.usage().unwrap().stored_bytes
}

#[test]
fn gc_moves_a_pack_out_of_a_mostly_dead_segment_and_its_files_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(
        dir.path().join("s"),
        Options {
            compression: Compression::Zstd(3),
            segment_size: 4 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let files = small_files(300, 10);
    let mut b = store.new_layer(None).unwrap();
    for (i, (path, data)) in files.iter().enumerate() {
        b.put(path, data).unwrap();
        if i % 100 == 0 {
            // Bytes written and deleted beside the packs: dead from the start.
            b.put("junk", &noise(1 << 20, i as u64)).unwrap();
            b.delete("junk").unwrap();
        }
    }
    // No handle held across gc: a layer open for reading pins what it reaches.
    drop(b.finish(Some("packed")).unwrap());
    store.commit().unwrap();
    // Later writes fill other segments, so the packs' one is no longer where gc appends.
    let mut later = store.new_layer(None).unwrap();
    later.put("filler", &noise(9 << 20, 99)).unwrap();
    later.finish(Some("later")).unwrap();
    store.commit().unwrap();
    let report = store.gc_with(0.5).unwrap();
    assert!(report.records_moved > 0, "{report:?}");
    assert_reads_back(&store.layer("packed").unwrap(), &files);
    assert!(store.verify(true).unwrap().is_clean());
}

#[test]
fn a_builder_dropped_with_packs_unwritten_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = zstd_store(&dir.path().join("s"));
    let kept = small_files(100, 11);
    build_layer(&store, None, &kept, "kept");
    let mut b = store.new_layer(None).unwrap();
    for (path, data) in small_files(500, 12) {
        b.put(path, &data).unwrap();
    }
    drop(b);
    store.commit().unwrap();
    assert!(store.verify(true).unwrap().is_clean());
    store.gc().unwrap();
    assert!(store.verify(true).unwrap().is_clean());
    assert_reads_back(&store.layer("kept").unwrap(), &kept);
    let r = store.usage().unwrap();
    assert_eq!(r.layers.len(), 1);
    assert!(
        r.stored_bytes < build_alone_cost(&dir.path().join("k"), &kept) + 4096,
        "{r:?}"
    );
}

#[test]
fn a_layer_being_built_reads_writes_renames_and_links_its_packed_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = zstd_store(&dir.path().join("s"));
    let files = small_files(400, 3);
    let mut b = store.new_layer(None).unwrap();
    for (i, (path, data)) in files.iter().enumerate() {
        b.put(path, data).unwrap();
        // Read back at once: from the pack still being filled, one sealed by this put and
        // laid out anew (shortest first) but not yet written, or one already written.
        for (path, data) in &files[i.saturating_sub(3)..=i] {
            assert!(b.get(path).unwrap().as_deref() == Some(&data[..]), "{path}");
        }
    }
    let (first, second, third) = (&files[0], &files[1], &files[2]);
    // Grown past one block by a write: the packed block becomes a whole one.
    let grown: Vec<u8> = [first.1.clone(), noise(100_000, 5)].concat();
    b.write_at(&first.0, first.1.len() as u64, &grown[first.1.len()..])
        .unwrap();
    // Rewritten, cut short, renamed and linked before the layer is finished.
    b.put(&second.0, b"a new and much shorter text than it had before, past inline size ....................................................................................................................................................................................................................").unwrap();
    b.truncate(&third.0, 500).unwrap();
    b.rename(&files[3].0, "renamed.conf").unwrap();
    b.link(&files[4].0, "linked.conf").unwrap();
    let layer = b.finish(Some("edited")).unwrap();
    store.commit().unwrap();

    assert_eq!(layer.get(&first.0).unwrap().unwrap(), grown);
    assert!(layer
        .get(&second.0)
        .unwrap()
        .unwrap()
        .starts_with(b"a new and much shorter"));
    assert_eq!(layer.get(&third.0).unwrap().unwrap(), &third.1[..500]);
    assert_eq!(layer.get("renamed.conf").unwrap().unwrap(), files[3].1);
    assert!(layer.get(&files[3].0).unwrap().is_none());
    assert_eq!(layer.get("linked.conf").unwrap().unwrap(), files[4].1);
    assert_reads_back(&layer, &files[5..]);
    assert!(store.verify(true).unwrap().is_clean());
}

#[test]
fn a_container_write_into_a_packed_file_copies_one_block_not_the_pack() {
    let dir = tempfile::tempdir().unwrap();
    let store = zstd_store(&dir.path().join("s"));
    let files = small_files(300, 4);
    let image = build_layer(&store, None, &files, "image");
    let c = store.create_container(&image, Some("c")).unwrap();
    let (path, data) = &files[10];
    c.write_at(path, 5, b"CHANGED").unwrap();
    store.commit().unwrap();

    let mut expected = data.clone();
    expected[5..12].copy_from_slice(b"CHANGED");
    assert_eq!(c.get(path).unwrap().unwrap(), expected);
    assert_eq!(image.get(path).unwrap().unwrap(), *data, "the image is unchanged");
    // The other files of the same pack read as before, in the image and the container.
    assert_reads_back(&image, &files);
    for (p, d) in files.iter().filter(|(p, _)| p != path) {
        assert!(c.get(p).unwrap().as_deref() == Some(&d[..]), "{p}");
    }
    let exclusive = first_container_exclusive_bytes(&store);
    assert!(
        exclusive < 32 << 10,
        "the container holds its one block and metadata: {exclusive} bytes"
    );
    assert!(store.verify(true).unwrap().is_clean());
}

#[test]
fn packed_blocks_dedup_and_gc_keeps_a_pack_while_any_layer_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = zstd_store(&path);
    let old = small_files(800, 5);
    let new = small_files(800, 6);
    build_layer(&store, None, &old, "old");
    let after_old = store.usage().unwrap().stored_bytes;
    // The next version keeps the old files and adds as many new ones: the old ones dedup
    // into the old layer's packs.
    let both: Vec<(String, Vec<u8>)> = old
        .iter()
        .cloned()
        .chain(new.iter().map(|(p, d)| (format!("new/{p}"), d.clone())))
        .collect();
    build_layer(&store, None, &both, "both");
    let r = store.usage().unwrap();
    let added = r.stored_bytes - after_old;
    assert!(
        (added as f64) < 1.3 * after_old as f64,
        "old files are not stored twice: {after_old} then {added} more"
    );
    let (_, both_usage) = r
        .layers
        .iter()
        .find(|(l, _)| l.name.as_deref() == Some("both"))
        .unwrap();
    let (_, old_usage) = r.layers.iter().find(|(l, _)| l.name.as_deref() == Some("old")).unwrap();
    assert!(
        old_usage.exclusive_bytes < 16 << 10,
        "every old pack is shared: {old_usage:?}"
    );
    assert!(both_usage.referenced_bytes > r.stored_bytes / 2, "{both_usage:?}");

    // Removing the old layer frees nothing the newer one uses.
    remove_layer_and_gc(&store, "old");
    let kept = store.layer("both").unwrap();
    assert_reads_back(&kept, &both);
    assert!(store.verify(true).unwrap().is_clean());
    let before = store.usage().unwrap().stored_bytes;
    assert!(before as f64 > 0.9 * (after_old + added) as f64, "{before}");

    // Removing the last user of the packs frees them.
    drop(kept);
    remove_layer_and_gc(&store, "both");
    let after = store.usage().unwrap();
    assert!(after.stored_bytes < 64 << 10, "{after:?}");
    assert!(store.verify(true).unwrap().is_clean());
}

#[test]
fn df_counts_each_packed_blocks_share_so_a_layers_blocks_add_up_to_its_packs() {
    let dir = tempfile::tempdir().unwrap();
    let store = zstd_store(&dir.path().join("s"));
    build_layer(&store, None, &small_files(1000, 8), "only");
    let r = store.usage().unwrap();
    let (_, u) = &r.layers[0];
    let packs = r.stored_bytes as f64;
    // Shares round up per block: at most one byte per block more than the packs.
    assert!(
        (u.referenced_bytes as f64 - packs).abs() <= 1000.0 + 0.001 * packs,
        "referenced {} vs stored {}",
        u.referenced_bytes,
        r.stored_bytes
    );
    assert_eq!(u.exclusive_bytes, r.stored_bytes, "one layer uses every pack");
}

#[test]
fn whole_blocks_ending_in_zeros_go_into_their_files_cluster_not_into_packs() {
    let dir = tempfile::tempdir().unwrap();
    let store = zstd_store(&dir.path().join("s"));
    // Sixteen whole 64 KiB blocks whose last bytes are zero, as many binaries' are.
    let mut data = noise(1 << 20, 13);
    for block in data.chunks_mut(64 << 10) {
        block[(60 << 10)..].fill(0);
    }
    let mut b = store.new_layer(None).unwrap();
    b.put("usr/lib/libzeros.so", &data).unwrap();
    let layer = b.finish(Some("zeros")).unwrap();
    store.commit().unwrap();
    assert_eq!(layer.get("usr/lib/libzeros.so").unwrap().unwrap(), data);
    let report = store.verify(true).unwrap();
    assert!(report.is_clean(), "{report:?}");
    // Packed, they would fill eight 128 KiB packs; as whole blocks they are one cluster.
    assert_eq!(
        report.chunks_checked, 1,
        "the file's whole blocks in one cluster, none packed"
    );
}

#[test]
fn df_stays_consistent_when_most_of_a_builds_files_are_removed_before_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = zstd_store(&dir.path().join("s"));
    let files = small_files(500, 14);
    let mut b = store.new_layer(None).unwrap();
    for (path, data) in &files {
        b.put(path, data).unwrap();
    }
    for (path, _) in &files[1..] {
        b.delete(path).unwrap();
    }
    let layer = b.finish(Some("one-left")).unwrap();
    store.commit().unwrap();
    assert_reads_back(&layer, &files[..1]);
    let r = store.usage().unwrap();
    assert!(
        r.dedup_ratio >= 1.0,
        "referenced raw bytes over distinct raw bytes: {}",
        r.dedup_ratio
    );
    let (_, u) = &r.layers[0];
    // The pack holding the one file left is kept whole: exclusive counts all of it.
    assert!(u.referenced_bytes <= u.exclusive_bytes, "{u:?}");
    assert!(store.verify(true).unwrap().is_clean());
}
