//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer), kept in the library
//! so that `cargo test` replays the saved corpus through the very same code. Each one must
//! return normally for every input: errors are fine, panics are bugs.

use crate::btree::node::NodeView;
use crate::record::Header;
use crate::store::{Options, Store};
use crate::value::Entry;
use std::collections::BTreeMap;

/// Decoders of everything read from disk: record headers, nodes, value entries, superblocks.
pub fn decode(data: &[u8]) {
    let _ = Header::parse(data, 0x4000).map(|h| h.check(data, data.get(64..).unwrap_or(&[]), 0x4000));
    if let Ok(view) = NodeView::parse(data, 0x4000) {
        for i in 0..view.len() {
            let _ = view.key(i);
            let _ = view.val(i);
            let _ = view.child(i);
        }
        let _ = view.search(b"some/key");
        let _ = view.child_for(b"");
    }
    let _ = Entry::decode(data);
    if data.len() >= crate::superblock::PAGE {
        let page: &[u8; crate::superblock::PAGE] = data[..crate::superblock::PAGE].try_into().unwrap();
        let _ = crate::superblock::Superblock::decode(page);
        let _ = crate::superblock::FileHeader::decode(page, std::path::Path::new("fuzz"));
    }
    let mut rest = data;
    let _ = crate::mount::Mount::decode(&mut rest);
}

/// Opens arbitrary bytes as a store; if it opens, verifies it and reads everything in it.
pub fn open(data: &[u8]) {
    let Ok(dir) = tempdir() else { return };
    let path = dir.join("fuzz.lstore");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(store) = Store::open_read_only(&path) {
        let _ = store.verify(true);
        let _ = store.usage();
        if let Ok(layers) = store.layers() {
            for l in layers {
                if let Ok(layer) = store.layer_by_id(l.id) {
                    if let Ok(it) = layer.list("") {
                        for i in it.take(1000).flatten() {
                            let _ = layer.get(&i.key);
                        }
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir() -> std::io::Result<std::path::PathBuf> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("lstore-fuzz-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Runs an operation sequence read from the bytes on a store and on a model; panics when they
/// disagree.
pub fn ops(data: &[u8]) {
    let Ok(dir) = tempdir() else { return };
    let path = dir.join("ops.lstore");
    let opts = Options {
        block_size: 4096,
        segment_size: 4 << 20,
        ..Default::default()
    };
    let mut store = Store::create(&path, opts).expect("create");
    let img = store
        .new_layer(None)
        .expect("layer")
        .finish(Some("img"))
        .expect("finish");
    store.create_container(&img, Some("c")).expect("container");
    drop(img);
    store.commit().expect("commit");
    let (mut model, mut committed) = (BTreeMap::<Vec<u8>, Vec<u8>>::new(), BTreeMap::new());
    for op in data.chunks(6) {
        let [kind, key, a, b, c, d] = <[u8; 6]>::try_from(op).unwrap_or([op[0], 0, 0, 0, 0, 0]);
        let key = format!("k{}", key % 16).into_bytes();
        let ctr = store.container("c").expect("container exists");
        let len = u16::from_le_bytes([a, b]) as usize % 20_000;
        let off = u16::from_le_bytes([c, d]) as u64 * 7;
        match kind % 7 {
            0 => {
                let v: Vec<u8> = (0..len).map(|i| (i as u8) ^ c).collect();
                ctr.put(&key, &v).expect("put");
                model.insert(key.clone(), v);
            }
            1 => {
                let v = vec![a | 1; len];
                ctr.write_at(&key, off, &v).expect("write_at");
                let e = model.entry(key.clone()).or_default();
                if !v.is_empty() {
                    let end = off as usize + v.len();
                    if e.len() < end {
                        e.resize(end, 0);
                    }
                    e[off as usize..end].copy_from_slice(&v);
                }
            }
            2 => {
                let r = ctr.truncate(&key, off);
                match model.get_mut(&key) {
                    Some(v) => {
                        r.expect("truncate");
                        v.resize(off as usize, 0);
                    }
                    None => assert!(r.is_err()),
                }
            }
            3 => assert_eq!(ctr.delete(&key).expect("delete"), model.remove(&key).is_some()),
            4 => {
                store.commit().expect("commit");
                committed = model.clone();
            }
            5 => {
                drop(ctr);
                drop(store);
                store = Store::open(&path).expect("reopen");
                model = committed.clone();
            }
            _ => {
                drop(ctr);
                store.gc().expect("gc");
                committed = model.clone();
            }
        }
        let ctr = store.container("c").expect("container exists");
        for (k, v) in &model {
            assert!(
                ctr.get(k).expect("get").as_deref() == Some(&v[..]),
                "value of {}",
                String::from_utf8_lossy(k)
            );
        }
        assert_eq!(ctr.list("").expect("list").count(), model.len());
    }
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}
