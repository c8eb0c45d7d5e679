//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer), kept in the library
//! so that `cargo test` replays the saved corpus through the very same code. Each one must
//! return normally for every input: errors are fine, panics are bugs.

use crate::format::catalog::{ContainerInfo, Id, LayerInfo, VolumeInfo};
use crate::format::le::Cursor;
use crate::format::mapnode;
use crate::format::mount::Mount;
use crate::format::node::NodeView;
use crate::format::record::Header;
use crate::format::superblock::{FileHeader, Superblock, PAGE};
use crate::format::value::Entry;
use crate::store::{Options, Store};
use std::collections::BTreeMap;

/// Decoders of everything read from disk: record headers, tree and block-map nodes, value
/// entries, superblocks, catalog records and mounts.
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
    if data.len() >= PAGE {
        let page: &[u8; PAGE] = data[..PAGE].try_into().unwrap();
        let _ = Superblock::decode(page);
        let _ = FileHeader::decode(page, std::path::Path::new("fuzz"));
    }
    let _ = Mount::decode(&mut Cursor::new(data, "fuzz input"));
    if let Ok(ptrs) = mapnode::parse_leaf(data, 0x4000) {
        for p in ptrs {
            let _ = crate::format::ptr::ChunkPtr::decode(p, 0x4000);
        }
    }
    let _ = mapnode::parse_interior(data, 0x4000, 2);
    let _ = LayerInfo::decode(Id([0; 16]), data);
    let _ = ContainerInfo::decode(Id([0; 16]), data);
    let _ = VolumeInfo::decode("fuzz", data);
}

/// Opens arbitrary bytes as a store; if it opens, verifies it and reads everything in it.
pub fn open(data: &[u8]) {
    let Ok(dir) = tempdir() else { return };
    let path = dir.join("fuzz.lstore");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    read_everything(&path);
    let _ = std::fs::remove_dir_all(dir);
}

/// Opens the seed image damaged by `data` and resealed (see [`super::reseal`]): hostile but
/// well-checksummed trees, block maps, catalogs and superblocks. Read-only: verify, df and
/// every read; then writable: gc, a container write and a commit, and verify again.
pub fn sealed(data: &[u8]) {
    let bytes = super::reseal::image().damaged(data);
    let Ok(dir) = tempdir() else { return };
    let path = dir.join("sealed.lstore");
    if std::fs::write(&path, &bytes).is_ok() {
        read_everything(&path);
        if let Ok(store) = Store::open(&path) {
            let _ = store.gc();
            if let Ok(c) = store.container("web") {
                let _ = c.write_at("bin/tool", 100, b"fuzz");
                let _ = c.delete("etc/new");
                let _ = c.commit(None);
            }
            let _ = store.commit();
            let _ = store.verify(true);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Everything a reader can ask of a store, with errors allowed and panics not.
fn read_everything(path: &std::path::Path) {
    let Ok(store) = Store::open_read_only(path) else { return };
    let _ = store.verify(true);
    let _ = store.usage();
    let _ = store.stats();
    let _ = store.volumes();
    for l in store.layers().unwrap_or_default() {
        let Ok(layer) = store.layer_by_id(l.id) else { continue };
        let Ok(it) = layer.list("") else { continue };
        for i in it.take(1000).flatten() {
            // A whole value only when small: a damaged size may claim terabytes (get then
            // fails cleanly, but a large enough claim trips the fuzzer's memory limit first).
            if i.size <= 16 << 20 {
                let _ = layer.get(&i.key);
            }
            let mut buf = [0u8; 64];
            let _ = layer.read_at(&i.key, 4090, &mut buf);
            let _ = layer.read_at(&i.key, i.size.saturating_sub(10), &mut buf);
        }
    }
    for c in store.containers().unwrap_or_default() {
        let Ok(ctr) = store.container(&c.id.to_string()) else {
            continue;
        };
        for i in ctr.list("").into_iter().flatten().take(1000) {
            if i.size <= 16 << 20 {
                let _ = ctr.get(&i.key);
            }
            let mut buf = [0u8; 64];
            let _ = ctr.read_at(&i.key, i.size / 2, &mut buf);
        }
    }
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
    let store = Store::create(&path, opts).expect("create");
    let img = store
        .new_layer(None)
        .expect("layer")
        .finish(Some("img"))
        .expect("finish");
    store.create_container(&img, Some("c")).expect("container");
    drop(img);
    store.commit().expect("commit");
    let mut run = Run {
        store: Some(store),
        path: &path,
        model: BTreeMap::new(),
        committed: BTreeMap::new(),
    };
    for op in data.chunks(6) {
        let op = <[u8; 6]>::try_from(op).unwrap_or([op[0], 0, 0, 0, 0, 0]);
        run.apply(op);
        run.check();
    }
    drop(run);
    let _ = std::fs::remove_dir_all(dir);
}

/// The store under test, the model of the container's keys, and the model as last committed.
struct Run<'p> {
    /// Always there but while reopening: the old handle must be gone before the file is
    /// opened again (it holds the writer's lock).
    store: Option<Store>,
    path: &'p std::path::Path,
    model: BTreeMap<Vec<u8>, Vec<u8>>,
    committed: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Run<'_> {
    fn store(&self) -> &Store {
        self.store.as_ref().expect("open between operations")
    }

    fn apply(&mut self, [kind, key, a, b, c, d]: [u8; 6]) {
        let key = format!("k{}", key % 16).into_bytes();
        let ctr = self.store().container("c").expect("container exists");
        let len = u16::from_le_bytes([a, b]) as usize % 20_000;
        let off = u16::from_le_bytes([c, d]) as u64 * 7;
        match kind % 7 {
            0 => {
                let v: Vec<u8> = (0..len).map(|i| (i as u8) ^ c).collect();
                ctr.put(&key, &v).expect("put");
                self.model.insert(key, v);
            }
            1 => {
                let v = vec![a | 1; len];
                ctr.write_at(&key, off, &v).expect("write_at");
                let e = self.model.entry(key).or_default();
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
                match self.model.get_mut(&key) {
                    Some(v) => {
                        r.expect("truncate");
                        v.resize(off as usize, 0);
                    }
                    None => assert!(r.is_err()),
                }
            }
            3 => assert_eq!(ctr.delete(&key).expect("delete"), self.model.remove(&key).is_some()),
            4 => {
                self.store().commit().expect("commit");
                self.committed = self.model.clone();
            }
            5 => {
                drop(ctr);
                self.store = None;
                self.store = Some(Store::open(self.path).expect("reopen"));
                self.model = self.committed.clone();
            }
            _ => {
                drop(ctr);
                self.store().gc().expect("gc");
                self.committed = self.model.clone();
            }
        }
    }

    /// The container holds exactly the model.
    fn check(&self) {
        let ctr = self.store().container("c").expect("container exists");
        for (k, v) in &self.model {
            assert!(
                ctr.get(k).expect("get").as_deref() == Some(&v[..]),
                "value of {}",
                String::from_utf8_lossy(k)
            );
        }
        assert_eq!(ctr.list("").expect("list").count(), self.model.len());
    }
}
