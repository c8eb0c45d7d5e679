//! Layers: committed, read-only trees (`Layer`), layers being built (`LayerBuilder`),
//! names, removal, and the build cache.

use super::*;
use crate::format::treekey;
use crate::format::value::{Attrs, Body, Entry, FileKind};
use crate::tree::pack::Packer;

impl Store {
    /// Every layer, in id order.
    pub fn layers(&self) -> Result<Vec<LayerInfo>> {
        let st = self.lock()?;
        self.layers_locked(&st)
    }

    pub(crate) fn layers_locked(&self, st: &State) -> Result<Vec<LayerInfo>> {
        self.scan_catalog(st, LAYER)?
            .into_iter()
            .map(|(id, v)| LayerInfo::decode(id, &v))
            .collect()
    }

    /// A committed layer by name or id.
    pub fn layer(&self, r: &str) -> Result<Layer> {
        match self.resolve(r)? {
            Target::Layer(id) => self.layer_by_id(id),
            Target::Container(_) => Err(Error::InvalidArgument(format!("'{r}' is a container, not a layer"))),
        }
    }

    pub fn layer_by_id(&self, id: Id) -> Result<Layer> {
        let st = self.lock()?;
        let info = layer_info(&self.inner, &st, id)?;
        Ok(Layer::new(self.clone(), info))
    }

    /// Starts a new layer on `parent` (or empty); nothing is copied.
    pub fn new_layer(&self, parent: Option<&Layer>) -> Result<LayerBuilder> {
        if !self.inner.writable {
            return Err(Error::ReadOnly("the store (opened read-only)".into()));
        }
        let (root, keys) = parent.map_or((0, 0), |p| (p.info.root, p.info.keys));
        // Registered under the writer lock, which gc holds while it checks for builders.
        let st = self.lock()?;
        if let Some(p) = parent {
            // A container's snapshot reads like a layer but is no layer to build on.
            layer_info(&self.inner, &st, p.info.id).map_err(|_| {
                Error::InvalidArgument(format!(
                    "{} is not a layer of the catalog (a container's snapshot?): commit it first",
                    p.info.id
                ))
            })?;
        }
        self.inner.builders.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        drop(st);
        let mut tree = WorkTree::at(root, keys);
        // A layer is read-only once built: its small files and tails are packed together,
        // compressed (format-spec §5); a container writing one of them later replaces that
        // block alone.
        if let c @ Compression::Zstd(_) = self.inner.header.compression {
            tree.pack = Some(Packer::new(c));
        }
        Ok(LayerBuilder {
            store: self.clone(),
            parent: parent.map(|p| p.info.id),
            tree,
            annotations: WorkTree::at(0, 0),
        })
    }

    /// Gives a layer a name, taking it from another layer that had it.
    pub fn tag(&self, layer: &str, name: &str) -> Result<()> {
        names::check_name(name)?;
        let target = self.layer(layer)?.info.id;
        self.write(|inner, st| {
            if let Some(Target::Container(_)) = name_holder(inner, st, name)? {
                return Err(Error::NameInUse(format!("'{name}'")));
            }
            super::image::name_free_of_tags(inner, st, name)?;
            let w = Writer::view(&inner.segs, &st.txn.app);
            let nk = catalog::name_key(LAYER, name);
            if let Some(prev) = st.txn.catalog.get(&w, &nk)?.map(Id::from_slice).transpose()? {
                let mut info = layer_info(inner, st, prev)?;
                info.name = None;
                st.txn.catalog.insert(&w, &catalog::key(LAYER, &prev), info.encode())?;
            }
            let mut info = layer_info(inner, st, target)?;
            if let Some(old) = info.name.take() {
                st.txn.catalog.remove(&w, &catalog::name_key(LAYER, &old))?;
            }
            info.name = Some(name.to_string());
            st.txn
                .catalog
                .insert(&w, &catalog::key(LAYER, &target), info.encode())?;
            st.txn.catalog.insert(&w, &nk, target.0.to_vec())?;
            Ok(())
        })
    }

    /// Removes a layer. Refused while a container uses it or another layer has it as parent.
    /// The checks and the removal happen under one lock: no container or child layer can
    /// appear between them.
    pub fn remove_layer(&self, layer: &str) -> Result<()> {
        self.write(|inner, st| {
            let id = match resolve_locked(inner, st, layer)? {
                Target::Layer(id) => id,
                Target::Container(_) => {
                    return Err(Error::InvalidArgument(format!("'{layer}' is a container, not a layer")))
                }
            };
            for (cid, v) in self.scan_catalog(st, CONTAINER)? {
                if ContainerInfo::decode(cid, &v)?.image == id {
                    return Err(Error::InUse(format!("layer {id} is the image of container {cid}")));
                }
            }
            for (lid, v) in self.scan_catalog(st, LAYER)? {
                if LayerInfo::decode(lid, &v)?.parent == Some(id) {
                    return Err(Error::InUse(format!("layer {id} is the parent of layer {lid}")));
                }
            }
            if let Some(i) = super::image::all_images(inner, st)?
                .iter()
                .find(|i| i.layer == Some(id))
            {
                return Err(Error::InUse(format!(
                    "layer {id} is the top of image {} ({}): remove the image (rmi)",
                    i.id_string(),
                    if i.tags.is_empty() {
                        "untagged".to_string()
                    } else {
                        i.tags.join(", ")
                    }
                )));
            }
            let info = layer_info(inner, st, id)?;
            let w = Writer::view(&inner.segs, &st.txn.app);
            st.txn.catalog.remove(&w, &catalog::key(LAYER, &id))?;
            st.txn.catalog.remove(&w, &catalog::key(catalog::ANNOTATIONS, &id))?;
            if let Some(n) = &info.name {
                st.txn.catalog.remove(&w, &catalog::name_key(LAYER, n))?;
            }
            Ok(())
        })
    }

    /// A build step through the cache: the layer built earlier from the same parent with the
    /// same step key, at once and with nothing written (`true`), or a new layer built by `f`
    /// (`false`), remembered for next time.
    pub fn build(
        &self,
        parent: Option<&Layer>,
        step_key: &[u8],
        f: impl FnOnce(&mut LayerBuilder) -> Result<()>,
    ) -> Result<(Layer, bool)> {
        let key = catalog::build_key(parent.map(|p| p.info.id), step_key);
        let cached = {
            let st = self.lock()?;
            let w = Writer::view(&self.inner.segs, &st.txn.app);
            let info = match st.txn.catalog.get(&w, &key)? {
                Some(v) => layer_info(&self.inner, &st, Id::from_slice(v)?).ok(),
                None => None,
            };
            // Pinned before the lock is released, so no gc can run in between.
            info.map(|info| Layer::new(self.clone(), info))
        };
        if let Some(layer) = cached {
            return Ok((layer, true));
        }
        let mut b = self.new_layer(parent)?;
        f(&mut b)?;
        let layer = b.finish(None)?;
        self.write(|inner, st| {
            let w = Writer::view(&inner.segs, &st.txn.app);
            st.txn.catalog.insert(&w, &key, layer.info.id.0.to_vec())?;
            Ok(())
        })?;
        Ok((layer, false))
    }
}

/// A committed, read-only layer. Reads take no lock and see one consistent snapshot.
#[derive(Clone)]
pub struct Layer {
    pub(super) store: Store,
    pub(super) info: LayerInfo,
    _pin: Arc<Pin>,
}

/// Keeps the records of a snapshot a handle reads from being reclaimed by gc: this process's
/// (by root) and, in a reader, other processes' (by a hold on its generation).
struct Pin {
    inner: Arc<Inner>,
    root: u64,
    generation: Option<super::generations::Hold>,
}

impl Drop for Pin {
    fn drop(&mut self) {
        if let Ok(mut pins) = self.inner.pins.lock() {
            if let Some(n) = pins.get_mut(&self.root) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(&self.root);
                }
            }
        }
        if let Some(hold) = self.generation {
            let _ = self.inner.generations.put(self.inner.segs.io().as_ref(), hold);
        }
    }
}

impl Layer {
    /// A handle on `info`, read from the state the caller holds locked (so that the
    /// generation held is the one `info` came from).
    pub(super) fn new(store: Store, info: LayerInfo) -> Layer {
        if let Ok(mut pins) = store.inner.pins.lock() {
            *pins.entry(info.root).or_insert(0) += 1;
        }
        let pin = Arc::new(Pin {
            inner: store.inner.clone(),
            root: info.root,
            generation: store.hold_generation().ok().flatten(),
        });
        Layer { store, info, _pin: pin }
    }

    pub fn id(&self) -> Id {
        self.info.id
    }

    pub fn info(&self) -> &LayerInfo {
        &self.info
    }

    fn tree(&self) -> WorkTree {
        WorkTree::at(self.info.root, self.info.keys)
    }

    /// The whole value, or `None` when the key is absent. It is read into one buffer: a value
    /// too large for memory is [`crate::Error::OutOfRange`]; read such a value in parts with
    /// [`Layer::read_at`] or [`Layer::open`].
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.tree().get(&self.store.inner.segs, key.as_ref())
    }

    /// The whole value without copying when it can: a small (inline) value is borrowed
    /// straight from the mapped tree leaf, as redb's and LMDB's gets hand out their pages; a
    /// chunked value is assembled.
    pub fn get_ref(&self, key: impl AsRef<[u8]>) -> Result<Option<std::borrow::Cow<'_, [u8]>>> {
        let key = key.as_ref();
        if key.is_empty() || key.contains(&0) {
            return Ok(None);
        }
        let segs = &self.store.inner.segs;
        let Some(entry) = crate::tree::btree::get_disk_root(segs, self.info.root, &treekey::of_path(key))? else {
            return Ok(None);
        };
        match Entry::inline_bytes(entry)? {
            Some(bytes) => Ok(Some(std::borrow::Cow::Borrowed(bytes))),
            None => Ok(self.get(key)?.map(std::borrow::Cow::Owned)),
        }
    }

    /// Reads into `buf` at `offset`; returns the bytes read (0 at or past the end).
    pub fn read_at(&self, key: impl AsRef<[u8]>, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.tree().read_at(&self.store.inner.segs, key.as_ref(), offset, buf)
    }

    pub fn stat(&self, key: impl AsRef<[u8]>) -> Result<Option<ValueInfo>> {
        self.tree().stat(&self.store.inner.segs, key.as_ref())
    }

    /// Values whose key starts with `prefix`, read lazily, folder by folder: each folder's
    /// entries in name order, a folder's entry before what is in it.
    pub fn list(&self, prefix: impl AsRef<[u8]>) -> Result<impl Iterator<Item = Result<ValueInfo>> + '_> {
        let mut iters = Vec::new();
        // No path holds a NUL, so no path starts with such a prefix.
        let ranges = match prefix.as_ref() {
            p if p.contains(&0) => Vec::new(),
            p => treekey::starting_with(p),
        };
        for r in ranges {
            let it = DiskIter::new(&self.store.inner.segs, self.info.root, &r.from)?;
            iters.push(it.take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&r.prefix))));
        }
        Ok(iters.into_iter().flatten().filter_map(|item| match item {
            Ok((k, v)) => treekey::path_of(k).map(|path| self.info_of(path, v)),
            Err(e) => Some(Err(e)),
        }))
    }

    /// The entries directly in folder `dir` (`""` is the root), in name order, read lazily:
    /// a listing reads only that folder's entries, however much lies below them.
    pub fn read_dir(&self, dir: impl AsRef<[u8]>) -> Result<impl Iterator<Item = Result<ValueInfo>> + '_> {
        let dir = dir.as_ref();
        if !dir.is_empty() {
            match self.stat(dir)? {
                None => return Err(Error::KeyNotFound(String::from_utf8_lossy(dir).into_owned())),
                Some(i) if i.attrs.as_ref().is_none_or(|a| a.kind != FileKind::Directory) => {
                    return Err(Error::NotADirectory(String::from_utf8_lossy(dir).into_owned()))
                }
                Some(_) => {}
            }
        }
        let r = treekey::folder(dir);
        let it = DiskIter::new(&self.store.inner.segs, self.info.root, &r.from)?;
        Ok(it
            .take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&r.prefix)))
            .filter_map(|item| match item {
                Ok((k, v)) => treekey::path_of(k).map(|path| self.info_of(path, v)),
                Err(e) => Some(Err(e)),
            }))
    }

    /// The root folder's attributes, when the layer keeps them (an imported layer does).
    pub fn root_attrs(&self) -> Result<Option<Attrs>> {
        let segs = &self.store.inner.segs;
        match crate::tree::btree::get_disk_root(segs, self.info.root, treekey::ROOT)? {
            Some(v) => Ok(Entry::decode(v)?.attrs),
            None => Ok(None),
        }
    }

    /// What `stat` says of `path` given its encoded entry, a hard link resolved.
    fn info_of(&self, path: Vec<u8>, v: &[u8]) -> Result<ValueInfo> {
        let e = Entry::decode(v)?;
        if let Body::Link(ino) = e.body {
            let segs = &self.store.inner.segs;
            let inode = crate::tree::btree::get_disk_root(segs, self.info.root, &treekey::of_inode(ino))?
                .ok_or_else(|| Error::corrupt(format!("a hard link names inode {ino}, which is missing")))?;
            return Ok(Entry::decode(inode)?.info(&path));
        }
        Ok(e.info(&path))
    }

    /// A reader over one value (`Read + Seek`).
    pub fn open(&self, key: impl AsRef<[u8]>) -> Result<ValueReader<'_>> {
        let key = key.as_ref().to_vec();
        let info = self
            .stat(&key)?
            .ok_or_else(|| Error::KeyNotFound(String::from_utf8_lossy(&key).into()))?;
        Ok(ValueReader {
            layer: self,
            key,
            size: info.size,
            pos: 0,
        })
    }
}

/// A new layer being written; becomes read-only at [`LayerBuilder::finish`].
pub struct LayerBuilder {
    pub(super) store: Store,
    parent: Option<Id>,
    tree: WorkTree,
    /// The layer's annotations (see `annotation.rs`), a tree of their own.
    pub(super) annotations: WorkTree,
}

impl Drop for LayerBuilder {
    fn drop(&mut self) {
        self.store
            .inner
            .builders
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl LayerBuilder {
    pub(super) fn with<R>(&mut self, f: impl FnOnce(&mut WorkTree, &mut Ctx) -> Result<R>) -> Result<R> {
        self.with_ready(Ready::none(), f)
    }

    /// As `with`, for a write whose blocks were prepared before the lock.
    fn with_ready<R>(&mut self, ready: Ready, f: impl FnOnce(&mut WorkTree, &mut Ctx) -> Result<R>) -> Result<R> {
        let tree = &mut self.tree;
        self.store.write(|inner, st| {
            let mut cx = ctx(inner, &mut st.txn.app, &mut st.txn.chunks, ready);
            f(tree, &mut cx)
        })
    }

    pub fn put(&mut self, key: impl AsRef<[u8]>, data: &[u8]) -> Result<()> {
        self.put_with(key, data, &PutOptions::default())
    }

    pub fn put_with(&mut self, key: impl AsRef<[u8]>, data: &[u8], opts: &PutOptions) -> Result<()> {
        let ready = ready_for(&self.store.inner, data, 0, opts, self.tree.pack.is_some());
        self.with_ready(ready, |t, cx| t.put(cx, key.as_ref(), data, opts))
    }

    pub fn write_at(&mut self, key: impl AsRef<[u8]>, offset: u64, data: &[u8]) -> Result<()> {
        let ready = ready_for(
            &self.store.inner,
            data,
            offset,
            &PutOptions::default(),
            self.tree.pack.is_some(),
        );
        self.with_ready(ready, |t, cx| t.write_at(cx, key.as_ref(), offset, data))
    }

    pub fn truncate(&mut self, key: impl AsRef<[u8]>, len: u64) -> Result<()> {
        self.with(|t, cx| t.truncate(cx, key.as_ref(), len))
    }

    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.with(|t, cx| t.delete(&cx.w, key.as_ref()))
    }

    /// A value as this builder sees it so far (a read: no write access taken).
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let st = self.store.lock()?;
        self.tree
            .get(&Writer::view(&self.store.inner.segs, &st.txn.app), key.as_ref())
    }

    /// Reads into `buf` at `offset` of a value as this builder sees it so far; returns the
    /// bytes read (0 at or past the end).
    pub fn read_at(&self, key: impl AsRef<[u8]>, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let st = self.store.lock()?;
        self.tree.read_at(
            &Writer::view(&self.store.inner.segs, &st.txn.app),
            key.as_ref(),
            offset,
            buf,
        )
    }

    /// Makes the layer read-only and gives its handle. Durable at the next store commit.
    pub fn finish(mut self, name: Option<&str>) -> Result<Layer> {
        let parent = self.parent;
        let tree = &mut self.tree;
        let notes = &mut self.annotations;
        let store = &self.store;
        store.write(|inner, st| {
            let mut w = Writer {
                segs: &inner.segs,
                app: &mut st.txn.app,
            };
            tree.seal_pack(&mut w, &mut st.txn.chunks)?;
            let root = tree.flush(&mut w)?;
            let notes_root = notes.flush(&mut w)?;
            let info = add_layer(inner, st, root, tree.keys(), parent, name)?;
            if notes.keys() > 0 {
                super::annotation::record(inner, st, info.id, notes_root, notes.keys())?;
            }
            // Pinned under the lock: a gc after it sees the pin.
            Ok(Layer::new(store.clone(), info))
        })
    }
}

/// `Read + Seek` over one value of a committed layer.
pub struct ValueReader<'l> {
    layer: &'l Layer,
    key: Vec<u8>,
    size: u64,
    pos: u64,
}

impl std::io::Read for ValueReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.layer.read_at(&self.key, self.pos, buf).map_err(io_err)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for ValueReader<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.pos = seek_to(self.pos, self.size, to)?;
        Ok(self.pos)
    }
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("id", &self.info.id)
            .field("name", &self.info.name)
            .finish()
    }
}
