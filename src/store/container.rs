//! Containers: a writable tree on an image, with volumes and bind mounts routed by the
//! longest mount target, and value handles implementing `Read + Write + Seek`.

use super::volume::{fill_volume, load_volume};
use super::*;

impl Store {
    /// Every container, in id order.
    pub fn containers(&self) -> Result<Vec<ContainerInfo>> {
        let st = self.lock()?;
        let mut out = Vec::new();
        for (id, v) in self.scan_catalog(&st, CONTAINER)? {
            let mut info = ContainerInfo::decode(id, &v)?;
            if let Some(wt) = st.containers.get(&id) {
                info.keys = wt.keys();
            }
            out.push(info);
        }
        Ok(out)
    }

    /// A container by name or id.
    pub fn container(&self, r: &str) -> Result<Container> {
        match self.resolve(r)? {
            Target::Container(id) => Ok(Container {
                store: self.clone(),
                id,
            }),
            Target::Layer(_) => Err(Error::ReadOnly(format!(
                "layer '{r}' (committed: create a container on it to write)"
            ))),
        }
    }

    /// A writable container on a read-only image layer, in O(1): it starts from the
    /// image's root and copies only what it changes.
    pub fn create_container(&self, image: &Layer, name: Option<&str>) -> Result<Container> {
        self.create_container_with(image, name, &[])
    }

    /// A container with volumes and bind mounts. A missing volume is created; an empty one
    /// mounted where the image has keys is first filled with them, sharing their data
    /// (unless `nocopy`), as `docker run -v` does.
    pub fn create_container_with(&self, image: &Layer, name: Option<&str>, mounts: &[Mount]) -> Result<Container> {
        self.create_container_with_config(image, name, mounts, &[])
    }

    /// As [`Store::create_container_with`], keeping `config` (at most 65535 bytes of the
    /// caller's choosing) with the container: [`ContainerInfo::config`] gives it back.
    pub fn create_container_with_config(
        &self,
        image: &Layer,
        name: Option<&str>,
        mounts: &[Mount],
        config: &[u8],
    ) -> Result<Container> {
        if config.len() > u16::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "a container config of {} bytes: at most 65535 are kept",
                config.len()
            )));
        }
        Mount::check_encodable(mounts)?;
        for m in mounts {
            m.check_target()?;
        }
        let mut targets: Vec<&str> = mounts.iter().map(|m| m.target.as_str()).collect();
        targets.sort_unstable();
        if targets.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::InvalidArgument("two mounts at the same target".into()));
        }
        // Whether a volume is fresh (to be filled from the image) is decided by its one writer,
        // as its last writer left it.
        for m in mounts.iter().filter(|m| !m.nocopy) {
            if let MountSource::Volume(v) = &m.source {
                writers::hold(self, writers::Item::Volume(v))?;
            }
        }
        self.write(|inner, st| {
            // Checked under the lock remove_layer holds: the image cannot vanish in between.
            layer_info(inner, st, image.info.id)
                .map_err(|_| Error::UnknownRef(format!("{} (the image layer was removed)", image.info.id)))?;
            let id = fresh_id(st);
            if let Some(n) = name {
                claim_name(inner, st, CONTAINER, n, id)?;
            }
            for m in mounts {
                if let MountSource::Volume(v) = &m.source {
                    let fresh = load_volume(inner, st, v, true)?.keys() == 0;
                    if fresh && !m.nocopy {
                        fill_volume(inner, st, v, image.info.root, &m.target)?;
                    }
                }
            }
            let info = ContainerInfo {
                id,
                name: name.map(str::to_string),
                image: image.info.id,
                root: image.info.root,
                keys: image.info.keys,
                created_ns: catalog::now_ns(),
                mounts: mounts.to_vec(),
                config: config.to_vec(),
            };
            let w = Writer::view(&inner.segs, &st.txn.app);
            st.txn
                .catalog
                .insert(&w, &catalog::key(CONTAINER, &id), info.encode())?;
            st.containers.insert(id, WorkTree::at(info.root, info.keys));
            st.mounts.insert(id, info.mounts);
            Ok(Container {
                store: self.clone(),
                id,
            })
        })
    }

    /// Removes a container and everything it wrote.
    pub fn remove_container(&self, r: &str) -> Result<()> {
        let c = self.container(r)?;
        if writers::pinned(&*self.lock()?, writers::Item::Container(c.id)) {
            return Err(Error::InUse(format!("container {r}: mounted by this process")));
        }
        writers::hold(self, writers::Item::Container(c.id))?;
        self.write(|inner, st| {
            writers::take_item(inner, st, writers::Item::Container(c.id))?;
            let info = container_info(inner, st, c.id)?;
            let w = Writer::view(&inner.segs, &st.txn.app);
            st.txn.catalog.remove(&w, &catalog::key(CONTAINER, &c.id))?;
            if let Some(n) = &info.name {
                st.txn.catalog.remove(&w, &catalog::name_key(CONTAINER, n))?;
            }
            st.containers.remove(&c.id);
            st.mounts.remove(&c.id);
            Ok(())
        })
    }
}

/// A container and its writable volumes held by one user; see [`Container::hold`].
pub struct ContainerHold {
    store: Store,
    container: Id,
    volumes: Vec<String>,
    container_held: bool,
}

impl Drop for ContainerHold {
    fn drop(&mut self) {
        for v in &self.volumes {
            writers::unpin(&self.store, writers::Item::Volume(v));
        }
        if self.container_held {
            writers::unpin(&self.store, writers::Item::Container(self.container));
        }
    }
}

/// A writable layer on a read-only image, like a Docker container's layer.
#[derive(Clone)]
pub struct Container {
    pub(super) store: Store,
    pub(super) id: Id,
}

impl Container {
    pub fn id(&self) -> Id {
        self.id
    }

    pub fn info(&self) -> Result<ContainerInfo> {
        let st = self.store.lock()?;
        let mut info = container_info(&self.store.inner, &st, self.id)?;
        if let Some(wt) = st.containers.get(&self.id) {
            info.keys = wt.keys();
        }
        Ok(info)
    }

    /// Holds this container and its writable volumes for one user (a mount serving them)
    /// until the returned guard is dropped: a writer, mount or removal of any of them in
    /// another process is `Busy` at once, naming this one, and a second hold in this process
    /// is refused. Writes through this handle still go on. The locks go with the first
    /// commit after the guard.
    pub fn hold(&self) -> Result<ContainerHold> {
        // In one order for every holder, so two never wait on each other.
        let mut volumes = self.writable_volumes()?;
        volumes.sort();
        volumes.dedup();
        let mut hold = ContainerHold {
            store: self.store.clone(),
            container: self.id,
            volumes: Vec::new(),
            container_held: false,
        };
        writers::pin(&self.store, writers::Item::Container(self.id))?;
        hold.container_held = true;
        for v in volumes {
            writers::pin(&self.store, writers::Item::Volume(&v))?;
            hold.volumes.push(v);
        }
        Ok(hold)
    }

    fn writable_volumes(&self) -> Result<Vec<String>> {
        Ok((self.info()?.mounts.into_iter())
            .filter(|m| !m.readonly)
            .filter_map(|m| match m.source {
                MountSource::Volume(v) => Some(v),
                MountSource::Bind(_) => None,
            })
            .collect())
    }

    /// Runs `f` on the place `key` lives in: the container's own tree, a volume's tree, or a
    /// bind-mounted folder. Loads the container on first use; refuses writes to `ro` mounts.
    pub(super) fn op<R>(&self, write: bool, key: &[u8], f: impl FnOnce(Place, &mut Ctx) -> Result<R>) -> Result<R> {
        self.op_ready(write, key, |_| Ready::none(), f)
    }

    /// Where a write of `key` lands, found under one lock: whether in a tree of the store (the
    /// container's own or a writable volume's, where blocks can be prepared before the lock),
    /// and the writable volume it lands in, if any; nothing to wait for when this writer
    /// already holds all it needs.
    fn plan_write(&self, key: &[u8]) -> Result<(bool, Option<String>, bool)> {
        let mut st = self.store.lock()?;
        load_container(&self.store.inner, &mut st, self.id)?;
        let (in_tree, volume) = match crate::store::mount::route(&st.mounts[&self.id], key) {
            None => (true, None),
            Some((m, sub)) => match &m.source {
                MountSource::Volume(v) if !m.readonly => (!sub.is_empty(), Some(v.clone())),
                _ => (false, None),
            },
        };
        let held = |slot| st.held.contains(&slot);
        let all_held =
            held(writers::container_item(&self.id)) && volume.as_deref().is_none_or(|v| held(writers::volume_item(v)));
        Ok((in_tree, volume, all_held))
    }

    /// As `op`; a write's blocks are prepared (`prepare(lands in a tree)`) before the lock, and
    /// its writer waits for the container and volume it writes without the state locked.
    fn op_ready<'d, R>(
        &self,
        write: bool,
        key: &[u8],
        prepare: impl FnOnce(bool) -> Ready<'d>,
        f: impl FnOnce(Place, &mut Ctx) -> Result<R>,
    ) -> Result<R> {
        let id = self.id;
        let mut ready = Ready::none();
        if write {
            let (in_tree, volume, all_held) = self.plan_write(key)?;
            if !all_held {
                writers::hold(&self.store, writers::Item::Container(id))?;
                if let Some(v) = &volume {
                    writers::hold(&self.store, writers::Item::Volume(v))?;
                }
            }
            ready = prepare(in_tree);
        }
        let run = |inner: &Inner, st: &mut State| {
            if write {
                writers::take_item(inner, st, writers::Item::Container(id))?;
            }
            load_container(inner, st, id)?;
            let routed = crate::store::mount::route(&st.mounts[&id], key).map(|(m, sub)| (m.clone(), sub));
            let place_volume = match &routed {
                Some((m, _)) if write && m.readonly => {
                    return Err(Error::ReadOnly(format!("mount at /{}", m.target)));
                }
                Some((
                    Mount {
                        source: MountSource::Volume(v),
                        ..
                    },
                    _,
                )) => {
                    if write {
                        writers::take_item(inner, st, writers::Item::Volume(v))?;
                    }
                    load_volume(inner, st, v, true)?;
                    Some(v.clone())
                }
                _ => None,
            };
            if write {
                match &place_volume {
                    Some(v) => st.touched_volumes.insert(v.clone()),
                    None => st.touched.insert(id),
                };
            }
            let State {
                txn,
                containers,
                volumes,
                ..
            } = st;
            let mut cx = ctx(inner, &mut txn.app, &mut txn.chunks, ready);
            let place = match (routed, place_volume) {
                (None, _) => Place::Tree(containers.get_mut(&id).expect("loaded"), key),
                (Some((_, sub)), Some(v)) => {
                    if sub.is_empty() {
                        Place::MountPoint(volumes.get_mut(&v).expect("loaded"), key)
                    } else {
                        Place::Tree(volumes.get_mut(&v).expect("loaded"), sub)
                    }
                }
                (Some((m, sub)), None) => match m.source {
                    MountSource::Bind(p) => Place::Bind(p, sub),
                    MountSource::Volume(_) => unreachable!("volumes are loaded above"),
                },
            };
            f(place, &mut cx)
        };
        if write {
            self.store.write(run)
        } else {
            let mut st = self.store.lock()?;
            run(&self.store.inner, &mut st)
        }
    }

    pub fn put(&self, key: impl AsRef<[u8]>, data: &[u8]) -> Result<()> {
        self.put_with(key, data, &PutOptions::default())
    }

    pub fn put_with(&self, key: impl AsRef<[u8]>, data: &[u8], opts: &PutOptions) -> Result<()> {
        let prepare = |in_tree| match in_tree {
            true => ready_for(&self.store.inner, data, 0, opts, false),
            false => Ready::none(),
        };
        self.op_ready(true, key.as_ref(), prepare, |p, cx| match p {
            Place::Tree(t, k) => t.put(cx, k, data, opts),
            Place::Bind(root, sub) => bind::put(&root, sub, data),
            Place::MountPoint(_, k) => Err(mount_point(k)),
        })
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.op(false, key.as_ref(), |p, cx| match p {
            Place::Tree(t, k) => t.get(&cx.w, k),
            Place::Bind(root, sub) => bind::get(&root, sub),
            Place::MountPoint(..) => Ok(None),
        })
    }

    pub fn stat(&self, key: impl AsRef<[u8]>) -> Result<Option<ValueInfo>> {
        let key = key.as_ref();
        self.op(false, key, |p, cx| match p {
            Place::Tree(t, k) => Ok(t.stat(&cx.w, k)?.map(|mut i| {
                i.key = key.to_vec();
                i
            })),
            Place::Bind(_, []) => Ok(Some(mount_point_info(key, None))),
            Place::Bind(root, sub) => bind::stat(&root, key, sub),
            Place::MountPoint(t, _) => Ok(Some(mount_point_info(key, t.root_attrs(&cx.w)?))),
        })
    }

    /// Removes a key; the image below keeps it. True when the key was visible.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.op(true, key.as_ref(), |p, cx| match p {
            Place::Tree(t, k) => t.delete(&cx.w, k),
            Place::Bind(root, sub) => bind::delete(&root, sub),
            Place::MountPoint(..) => Ok(false),
        })
    }

    /// Keys starting with `prefix`, folder by folder as [`Layer::list`] orders them: the
    /// container's own, except those hidden under a mount, and each mount's.
    pub fn list(&self, prefix: impl AsRef<[u8]>) -> Result<std::vec::IntoIter<ValueInfo>> {
        let prefix = prefix.as_ref();
        let id = self.id;
        let mut st = self.store.lock()?;
        let inner = &self.store.inner;
        load_container(inner, &mut st, id)?;
        let mounts = st.mounts[&id].clone();
        let w = Writer::view(&inner.segs, &st.txn.app);
        let mut out: Vec<ValueInfo> = st.containers[&id]
            .list(&w, prefix)?
            .into_iter()
            .filter(|i| crate::store::mount::route(&mounts, &i.key).is_none())
            .collect();
        for m in &mounts {
            let base = format!("{}/", m.target).into_bytes();
            // Only the part of the prefix below the target narrows the mount's own listing.
            let sub_prefix: &[u8] = if prefix.len() > base.len() && prefix.starts_with(&base) {
                &prefix[base.len()..]
            } else {
                b""
            };
            if !(prefix.starts_with(&base) || base.starts_with(prefix)) {
                continue;
            }
            let items = match &m.source {
                MountSource::Bind(root) => bind::list(root, &m.target, prefix)?,
                MountSource::Volume(v) => {
                    load_volume(inner, &mut st, v, true)?;
                    let w = Writer::view(&inner.segs, &st.txn.app);
                    st.volumes[v]
                        .list(&w, sub_prefix)?
                        .into_iter()
                        .map(|mut i| {
                            let mut k = base.clone();
                            k.extend_from_slice(&i.key);
                            i.key = k;
                            i
                        })
                        .filter(|i| i.key.starts_with(prefix))
                        .collect()
                }
            };
            // A nested mount deeper than this one hides this one's keys under it.
            out.extend(items.into_iter().filter(|i| {
                crate::store::mount::route(&mounts, &i.key)
                    .map(|(r, _)| r == m)
                    .unwrap_or(false)
            }));
        }
        // Folder by folder, as a layer lists.
        out.sort_by_cached_key(|i| crate::format::treekey::of_path(&i.key));
        Ok(out.into_iter())
    }

    pub fn read_at(&self, key: impl AsRef<[u8]>, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.op(false, key.as_ref(), |p, cx| match p {
            Place::Tree(t, k) => t.read_at(&cx.w, k, offset, buf),
            Place::Bind(root, sub) => bind::read_at(&root, sub, offset, buf),
            Place::MountPoint(_, k) => Err(Error::KeyNotFound(String::from_utf8_lossy(k).into_owned())),
        })
    }

    /// Writes at `offset`, copying only the blocks it touches; creates the key if absent.
    pub fn write_at(&self, key: impl AsRef<[u8]>, offset: u64, data: &[u8]) -> Result<()> {
        let prepare = |in_tree| match in_tree {
            true => ready_for(&self.store.inner, data, offset, &PutOptions::default(), false),
            false => Ready::none(),
        };
        self.op_ready(true, key.as_ref(), prepare, |p, cx| match p {
            Place::Tree(t, k) => t.write_at(cx, k, offset, data),
            Place::Bind(root, sub) => bind::write_at(&root, sub, offset, data),
            Place::MountPoint(_, k) => Err(mount_point(k)),
        })
    }

    pub fn truncate(&self, key: impl AsRef<[u8]>, len: u64) -> Result<()> {
        self.op(true, key.as_ref(), |p, cx| match p {
            Place::Tree(t, k) => t.truncate(cx, k, len),
            Place::Bind(root, sub) => bind::truncate(&root, sub, len),
            Place::MountPoint(_, k) => Err(mount_point(k)),
        })
    }

    /// Makes the value at `key` at least `len` bytes long (zeros past its end), in one
    /// change: a concurrent write that made it longer is kept (`fallocate`).
    pub fn grow(&self, key: impl AsRef<[u8]>, len: u64) -> Result<()> {
        self.op(true, key.as_ref(), |p, cx| match p {
            Place::Tree(t, k) => match t.stat(&cx.w, k)? {
                Some(i) if i.size >= len => Ok(()),
                Some(_) => t.truncate(cx, k, len),
                None => Err(Error::KeyNotFound(String::from_utf8_lossy(k).into_owned())),
            },
            Place::Bind(root, sub) => bind::grow(&root, sub, len),
            Place::MountPoint(_, k) => Err(mount_point(k)),
        })
    }

    /// A handle on one value (`Read + Write + Seek`); the key is created if absent.
    pub fn open(&self, key: impl AsRef<[u8]>) -> Result<ValueHandle<'_>> {
        let key = key.as_ref().to_vec();
        if self.stat(&key)?.is_none() {
            self.put(&key, &[])?;
        }
        Ok(ValueHandle { c: self, key, pos: 0 })
    }

    /// Turns the container's current state into a new read-only layer whose parent is the
    /// image (`docker commit`). The container goes on from there. Durable at the next store
    /// commit.
    pub fn commit(&self, name: Option<&str>) -> Result<Layer> {
        let id = self.id;
        let info = self.store.write(|inner, st| {
            let cinfo = flush_container(inner, st, id)?;
            let (root, keys) = (cinfo.root, cinfo.keys);
            let info = add_layer(inner, st, root, keys, Some(cinfo.image), name)?;
            // Pinned under the lock: a gc after it sees the pin.
            Ok(Layer::new(self.store.clone(), info))
        })?;
        Ok(info)
    }
}

/// Writes out a container's changed tree and points its record at it; its info after.
pub(super) fn flush_container(inner: &Inner, st: &mut State, id: Id) -> Result<ContainerInfo> {
    let mut cinfo = container_info(inner, st, id)?;
    // Only a tree this writer changed (and so holds) has a new root to record.
    if let Some(wt) = st.containers.get_mut(&id).filter(|wt| wt.is_dirty()) {
        let root = wt.flush(&mut Writer {
            segs: &inner.segs,
            app: &mut st.txn.app,
        })?;
        // The record follows the flushed tree now: commits only revisit dirty trees.
        cinfo.root = root;
        cinfo.keys = wt.keys();
        let w = Writer::view(&inner.segs, &st.txn.app);
        st.txn
            .catalog
            .insert(&w, &catalog::key(CONTAINER, &id), cinfo.encode())?;
    }
    Ok(cinfo)
}

/// Where a container's key lives.
pub(super) enum Place<'a, 'k> {
    Tree(&'a mut WorkTree, &'k [u8]),
    Bind(std::path::PathBuf, &'k [u8]),
    /// The target of a volume mount itself: the volume's root folder, never a value.
    MountPoint(&'a mut WorkTree, &'k [u8]),
}

/// What a mount's target looks like from the container: a folder, with the volume's root
/// attributes when they were ever set (a bind mount's folder is the host's to describe).
fn mount_point_info(key: &[u8], attrs: Option<crate::Attrs>) -> ValueInfo {
    ValueInfo {
        key: key.to_vec(),
        size: 0,
        inline: true,
        block_size: 0,
        attrs: Some(attrs.unwrap_or_else(|| crate::Attrs::new(crate::FileKind::Directory, 0o755))),
    }
}

fn mount_point(key: &[u8]) -> Error {
    Error::InvalidKey(format!("'{}' is a mount point", String::from_utf8_lossy(key)))
}

pub(super) fn load_container(inner: &Inner, st: &mut State, id: Id) -> Result<()> {
    if !st.containers.contains_key(&id) {
        let info = container_info(inner, st, id)?;
        st.containers.insert(id, WorkTree::at(info.root, info.keys));
        st.mounts.insert(id, info.mounts);
    }
    Ok(())
}

/// `Read + Write + Seek` over one value of a container.
pub struct ValueHandle<'c> {
    c: &'c Container,
    key: Vec<u8>,
    pos: u64,
}

impl std::io::Read for ValueHandle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.c.read_at(&self.key, self.pos, buf).map_err(io_err)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Write for ValueHandle<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.c.write_at(&self.key, self.pos, buf).map_err(io_err)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container").field("id", &self.id).finish()
    }
}

impl std::io::Seek for ValueHandle<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let size = self.c.stat(&self.key).map_err(io_err)?.map_or(0, |i| i.size);
        self.pos = seek_to(self.pos, size, to)?;
        Ok(self.pos)
    }
}
