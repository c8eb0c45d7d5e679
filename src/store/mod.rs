//! The store: one file, its catalog of layers and containers, and the commit protocol.
//! Readers of committed layers go straight to the maps; every change goes through one
//! mutex-guarded writer state, and becomes durable at [`Store::commit`].

use crate::chunk::Ready;
use crate::error::{Error, Result};
use crate::format::catalog::{self, ContainerInfo, Id, LayerInfo, VolumeInfo, CONTAINER, LAYER, VOLUME};
use crate::format::compression::Compression;
use crate::format::mount::{Mount, MountSource};
use crate::format::names;
use crate::format::superblock::{self, FileHeader, DATA_START};
use crate::format::value::{self, ValueInfo};
use crate::io::{Appender, Exclusive, FileIo, Io, Segments, Writer, EXTENT};
use crate::tree::btree::DiskIter;
use crate::tree::chunk_index::ChunkIndex;
use crate::tree::worktree::{Ctx, PutOptions, WorkTree};
use crate::txn::{self, Durability, Txn};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

mod annotation;
pub(crate) mod bind;
mod container;
mod fs;
pub(crate) mod generations;
mod image;
mod layer;
pub(crate) mod mount;
mod mount_spec;
mod volume;
pub(crate) mod writers;

pub use annotation::{Annotation, Annotations};
pub use container::{Container, ContainerHold, ValueHandle};
pub use fs::{Change, ChangeKind};
pub use image::{check_tag, normalize_tag, ImageRemoval};
pub use layer::{Layer, LayerBuilder, ValueReader};

/// Settings chosen when a store is created.
#[derive(Clone, Debug)]
pub struct Options {
    /// Default block size of values (power of two, 4 KiB to 1 MiB). Default 64 KiB.
    pub block_size: u64,
    /// Size of each segment the file grows by (power of two, 4 MiB to 1 GiB). Default 64 MiB.
    pub segment_size: u64,
    /// Default compression of chunks. Default none.
    pub compression: Compression,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            block_size: 64 << 10,
            segment_size: 64 << 20,
            compression: Compression::None,
        }
    }
}

/// A layer or a container, as a name or id resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Layer(Id),
    Container(Id),
}

/// Space figures of the store file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    pub file_bytes: u64,
    pub used_bytes: u64,
    pub chunks: u64,
    pub block_size: u64,
    pub segment_size: u64,
    pub layers: u64,
    pub containers: u64,
    pub generation: u64,
}

/// The writer state: the file's transaction state, and the container and volume trees
/// loaded since open.
pub(crate) struct State {
    pub(crate) txn: Txn,
    pub(crate) containers: HashMap<Id, WorkTree>,
    /// Mounts of the loaded containers.
    pub(crate) mounts: HashMap<Id, Vec<Mount>>,
    /// Volumes touched since open.
    pub(crate) volumes: HashMap<String, WorkTree>,
    /// Containers and volumes written since the last commit: a commit visits only these, so
    /// its cost does not grow with the number of containers.
    pub(crate) touched: std::collections::HashSet<Id>,
    pub(crate) touched_volumes: std::collections::HashSet<String>,
    /// Item slots (containers, volumes) this writer holds the lock of.
    pub(crate) held: std::collections::HashSet<u64>,
    /// Held items a mount serves: kept across commits until the mount ends.
    pub(crate) pinned: std::collections::HashSet<u64>,
    /// A commit of this process is between its superblock and its sync.
    pub(crate) publishing: bool,
}

pub(crate) struct Inner {
    pub(crate) segs: Segments,
    /// Roots read by open layer handles, with how many handles read each.
    pub(crate) pins: Mutex<HashMap<u64, usize>>,
    /// Set when open rolled back a newer commit that was incomplete.
    pub(crate) recovery: Option<crate::txn::Recovery>,
    /// Subtree totals of immutable nodes, for `usage`.
    pub(crate) totals: Mutex<crate::tree::totals::TotalsCache>,
    /// Layer builders not yet finished: their records are not reachable from the catalog.
    pub(crate) builders: std::sync::atomic::AtomicUsize,
    /// Verifies walking the last commit without the lock: gc must not free what they read.
    pub(crate) verifying: std::sync::atomic::AtomicUsize,
    pub(crate) header: FileHeader,
    pub(crate) state: Mutex<State>,
    /// Serialises commits, whose syncs run with `state` unlocked. Taken before `state`.
    pub(crate) commits: Mutex<()>,
    /// A reader's generations locked against other processes' gc: the current one, and older
    /// ones while open handles may still read them.
    pub(crate) generations: generations::Generations,
    pub(crate) writable: bool,
    pub(crate) path: PathBuf,
    /// How long a writer waits for another process's container or volume.
    pub(crate) wait: std::time::Duration,
}

/// An lstore store: one file of layers, containers and their data. `Send + Sync`; clone the
/// handle or share it by reference across threads.
///
/// ```
/// use lstore::{Store, Options};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::create(dir.path().join("s.lstore"), Options::default()).unwrap();
/// let mut base = store.new_layer(None).unwrap();
/// base.put("etc/hostname", b"box").unwrap();
/// let base = base.finish(Some("base")).unwrap();
/// let c = store.create_container(&base, None).unwrap();
/// c.put("etc/hostname", b"container").unwrap();
/// store.commit().unwrap();
/// assert_eq!(base.get("etc/hostname").unwrap().unwrap(), b"box");
/// assert_eq!(c.get("etc/hostname").unwrap().unwrap(), b"container");
/// ```
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl Store {
    /// Creates a new store file; refuses to overwrite an existing one.
    pub fn create(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        let path = path.as_ref();
        Self::validate(&options)?;
        let io = Arc::new(FileIo::create(path)?);
        // A store that could not be made whole (a full disk) is not left behind half-made.
        Self::create_io(io, path, options).inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        })
    }

    fn validate(o: &Options) -> Result<()> {
        value::block_shift(o.block_size)?;
        o.compression.check()?;
        if !o.segment_size.is_power_of_two()
            || !(superblock::MIN_SEGMENT..=superblock::MAX_SEGMENT).contains(&o.segment_size)
        {
            return Err(Error::InvalidArgument(format!(
                "segment size {}: must be a power of two from 4 MiB to 1 GiB",
                o.segment_size
            )));
        }
        Ok(())
    }

    /// Creates a store on any [`Io`] backend (used by crash tests); `path` only names it.
    #[cfg(feature = "test-support")]
    pub fn create_with_io(io: Arc<dyn Io>, path: &Path, options: Options) -> Result<Store> {
        Self::create_io(io, path, options)
    }

    fn create_io(io: Arc<dyn Io>, path: &Path, options: Options) -> Result<Store> {
        Self::validate(&options)?;
        let header = FileHeader {
            segment_size: options.segment_size,
            block_shift: value::block_shift(options.block_size)?,
            compression: options.compression,
        };
        txn::create(io.as_ref(), &header)?;
        Self::open_io(io, path, true, std::time::Duration::ZERO)
    }

    /// Opens a store for reading and writing; fails if another process has it open.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        Self::open_io(
            Arc::new(FileIo::open(path, true)?),
            path,
            true,
            std::time::Duration::ZERO,
        )
    }

    /// Opens a store for reading and writing, waiting up to `wait` while another process
    /// writes it; then [`Error::Busy`] naming that process.
    pub fn open_waiting(path: impl AsRef<Path>, wait: std::time::Duration) -> Result<Store> {
        let path = path.as_ref();
        Self::open_io(Arc::new(FileIo::open_waiting(path, true, wait)?), path, true, wait)
    }

    /// Opens a store for reading only. Readers never wait for a writer and are never refused
    /// because of one: each operation sees the newest commit published before it began, and
    /// gc in a writing process gives back nothing a reader's commit still reaches.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        Self::open_io(
            Arc::new(FileIo::open(path, false)?),
            path,
            false,
            std::time::Duration::ZERO,
        )
    }

    /// Opens a store on any [`Io`] backend; picks the newest superblock whose commit is whole.
    #[cfg(feature = "test-support")]
    pub fn open_with_io(io: Arc<dyn Io>, path: &Path, writable: bool) -> Result<Store> {
        Self::open_io(io, path, writable, std::time::Duration::ZERO)
    }

    fn open_io(io: Arc<dyn Io>, path: &Path, writable: bool, wait: std::time::Duration) -> Result<Store> {
        // A writer alone while it opens (held from before it reads the newest commit until its
        // appends have a place) goes on from that commit's `high`: whatever lies past it is
        // former writers' uncommitted work. Otherwise it takes segments of its own.
        let alone = writable && io.lock(Exclusive::OnlyWriter, Duration::ZERO).is_ok();
        let opened = txn::open(io.clone(), path, writable, alone);
        let mut opened = match (opened, alone) {
            (Ok(o), _) => o,
            (Err(e), true) => {
                let _ = io.unlock(Exclusive::OnlyWriter);
                return Err(e);
            }
            (Err(e), false) => return Err(e),
        };
        let generation = opened.txn.generation;
        opened.segs.note_pooled(opened.txn.last_sb.pooled);
        if !writable {
            io.hold_generation(generation, true)?;
            opened.segs.settle_reader(opened.txn.last_sb.high);
        } else if alone {
            // `high`'s extent holds the newest records unless gc gave it back whole; then
            // appends start in an extent of their own like any other writer's.
            let high = opened.txn.last_sb.high;
            let extent = high - (high - DATA_START) % EXTENT;
            // A damaged pool says nothing: then appends start in an extent of their own too.
            let pooled = opened.segs.pool_of(&opened.txn.last_sb);
            if pooled.is_ok_and(|p| !p.contains(extent, EXTENT)) {
                opened.txn.app.adopt_high(high);
            }
            io.unlock(Exclusive::OnlyWriter)?;
        }
        let state = State {
            txn: opened.txn,
            containers: HashMap::new(),
            mounts: HashMap::new(),
            volumes: HashMap::new(),
            touched: Default::default(),
            touched_volumes: Default::default(),
            held: Default::default(),
            pinned: Default::default(),
            publishing: false,
        };
        let store = Store {
            inner: Arc::new(Inner {
                pins: Mutex::new(HashMap::new()),
                recovery: opened.recovery,
                totals: Mutex::new(Default::default()),
                builders: std::sync::atomic::AtomicUsize::new(0),
                verifying: std::sync::atomic::AtomicUsize::new(0),
                segs: opened.segs,
                header: opened.header,
                state: Mutex::new(state),
                commits: Mutex::new(()),
                generations: generations::Generations::new(generation),
                writable,
                path: path.to_path_buf(),
                wait,
            }),
        };
        if !writable {
            // Held before any read, then re-checked: a commit published meanwhile is taken up.
            let mut st = store
                .inner
                .state
                .lock()
                .map_err(|_| Error::InUse("store state poisoned".into()))?;
            store.refresh(&mut st)?;
        }
        Ok(store)
    }

    /// A reader moves to the newest commit another process published, so each operation sees
    /// the newest commit published before it began (four page reads when nothing changed).
    /// The new generation is locked before it is read and the file is checked again after, so
    /// a gc in the writer either sees the lock or had not yet committed what would free it.
    fn refresh(&self, st: &mut State) -> Result<()> {
        let inner = &self.inner;
        let io = inner.segs.io();
        loop {
            let g = st.txn.generation;
            let Some(next) = txn::reload(io, &inner.segs, g)? else {
                return Ok(());
            };
            let new_g = next.generation;
            io.hold_generation(new_g, true)?;
            // The old generation stays locked while a handle made at it lives.
            inner.generations.advance(io.as_ref(), new_g)?;
            inner.segs.note_pooled(next.last_sb.pooled);
            inner.segs.settle_reader(next.last_sb.high);
            st.txn = next;
            // Trees loaded from the old catalog are stale now.
            st.containers.clear();
            st.mounts.clear();
            st.volumes.clear();
        }
    }

    /// A hold on the generation a reader is at, for a handle that reads it after the state
    /// lock is released (`None` for the writer, whose own gc sees its handles).
    pub(crate) fn hold_generation(&self) -> Result<Option<generations::Hold>> {
        if self.inner.writable {
            return Ok(None);
        }
        self.inner.generations.take().map(Some)
    }

    /// What open had to roll back, if the newest commit in the file was incomplete.
    pub fn recovery(&self) -> Option<&str> {
        self.inner.recovery.as_ref().map(|r| r.note.as_str())
    }

    /// The mapped segments, for maintenance that reads records directly.
    pub(crate) fn segments(&self) -> &Segments {
        &self.inner.segs
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Default block size of values.
    pub fn block_size(&self) -> u64 {
        1 << self.inner.header.block_shift
    }

    pub fn compression(&self) -> Compression {
        self.inner.header.compression
    }

    /// The state, for a reader moved to the newest published commit first.
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, State>> {
        let mut st = self
            .inner
            .state
            .lock()
            .map_err(|_| Error::InUse("a thread panicked while writing the store".into()))?;
        if self.inner.writable {
            // A conflict with the newest commit leaves this state as it is (see
            // `take_up_newest`): reads go on, and this writer's next commit is refused.
            let _ = writers::take_up_newest(&self.inner, &mut st);
        } else {
            self.refresh(&mut st)?;
        }
        Ok(st)
    }

    /// Runs a change with the writer state, refusing when read-only or poisoned, and
    /// poisoning the state when an I/O failure may have left it half-done.
    pub(crate) fn write<R>(&self, f: impl FnOnce(&Inner, &mut State) -> Result<R>) -> Result<R> {
        if !self.inner.writable {
            return Err(Error::ReadOnly("the store (opened read-only)".into()));
        }
        let mut st = self.lock()?;
        if st.txn.poisoned {
            return Err(Error::WritesStopped(self.inner.path.clone()));
        }
        let r = f(&self.inner, &mut st);
        // A failed write to the store file leaves the tail unknown: nothing more until a reopen.
        let store_failed = match &r {
            Err(Error::Io(_) | Error::Full(_)) => true,
            Err(Error::File { path, .. }) => *path == self.inner.path,
            _ => false,
        };
        if store_failed {
            st.txn.poisoned = true;
        }
        r
    }

    /// Makes every change so far durable: all records written and synced, then the
    /// superblock switched. After a crash the store opens at the last completed commit.
    pub fn commit(&self) -> Result<()> {
        self.commit_with(Durability::Immediate)
    }

    /// Commits with the chosen durability. The syncs run with the writer state unlocked:
    /// other threads go on writing (into the next commit) while this one waits for the disk.
    pub fn commit_with(&self, durability: Durability) -> Result<()> {
        let _serial = self.serialise_commits()?;
        let _commit = writers::CommitLock::take(self.inner.segs.io().as_ref())?;
        let publish = self.write(|inner, st| {
            let r = writers::take_up_newest(inner, st).and_then(|_| begin_commit(inner, st, durability));
            if r.is_err() {
                st.txn.poisoned = true;
            }
            st.publishing = matches!(r, Ok(Some(_)));
            r
        })?;
        let Some(mut publish) = publish else {
            if let Ok(mut st) = self.inner.state.lock() {
                writers::release_committed(&self.inner, &mut st);
            }
            return Ok(());
        };
        let synced = publish.publish(self.inner.segs.io().as_ref());
        // A poisoned state mutex (a thread panicked meanwhile) is reported even when the
        // syncs succeeded: the commit is durable, but this handle can no longer take it up.
        let st = self
            .inner
            .state
            .lock()
            .map_err(|_| Error::InUse("a thread panicked while writing the store".into()));
        let st = st.map(|mut st| {
            st.publishing = false;
            st
        });
        match (synced, st) {
            (Ok(()), Ok(mut st)) => {
                st.txn.finish_commit(publish, &self.inner.segs);
                writers::release_committed(&self.inner, &mut st);
                Ok(())
            }
            (Ok(()), Err(e)) => Err(e),
            (Err(e), st) => {
                if let Ok(mut st) = st {
                    st.txn.poisoned = true;
                }
                Err(e)
            }
        }
    }

    /// The right to commit: held from a commit's start until its syncs are done.
    pub(crate) fn serialise_commits(&self) -> Result<MutexGuard<'_, ()>> {
        self.inner
            .commits
            .lock()
            .map_err(|_| Error::InUse("a thread panicked while committing the store".into()))
    }

    /// Space figures.
    pub fn stats(&self) -> Result<Stats> {
        let st = self.lock()?;
        self.stats_locked(&st)
    }

    pub(crate) fn stats_locked(&self, st: &State) -> Result<Stats> {
        let layers = self.scan_catalog(st, LAYER)?.len() as u64;
        let containers = self.scan_catalog(st, CONTAINER)?.len() as u64;
        Ok(Stats {
            file_bytes: self.inner.segs.io().len()?,
            used_bytes: st.txn.app.used(),
            chunks: st.txn.chunks.count(),
            block_size: self.block_size(),
            segment_size: self.inner.header.segment_size,
            layers,
            containers,
            generation: st.txn.generation,
        })
    }

    pub(crate) fn scan_catalog(&self, st: &State, kind: u8) -> Result<Vec<(Id, Vec<u8>)>> {
        scan_kind(&self.inner, st, kind)
    }

    /// Resolves a name, a full id or a unique id prefix (4 or more hex digits).
    pub fn resolve(&self, r: &str) -> Result<Target> {
        let st = self.lock()?;
        resolve_locked(&self.inner, &st, r)
    }
}

impl Drop for Inner {
    /// A clean close makes this writer's last commit durable, if it is still the newest.
    fn drop(&mut self) {
        let (true, Ok(st)) = (self.writable, self.state.get_mut()) else {
            return;
        };
        let io = self.segs.io().as_ref();
        let Ok(_commit) = writers::CommitLock::take(io) else {
            return;
        };
        if matches!(
            txn::newest_whole(self.segs.io(), &self.segs, st.txn.generation),
            Ok(None)
        ) {
            st.txn.close(&self.segs);
        }
    }
}

/// Every layer or container record (`kind`), by id.
fn scan_kind(inner: &Inner, st: &State, kind: u8) -> Result<Vec<(Id, Vec<u8>)>> {
    let w = Writer::view(&inner.segs, &st.txn.app);
    let mut out = Vec::new();
    st.txn.catalog.scan(&w, &[kind], &mut |k, v| {
        if k.len() != 17 || k[0] != kind {
            return Ok(false);
        }
        out.push((Id::from_slice(&k[1..])?, v.to_vec()));
        Ok(true)
    })?;
    Ok(out)
}

fn fresh_id(st: &mut State) -> Id {
    st.txn.counter += 1;
    Id::fresh(st.txn.generation, st.txn.counter)
}

/// Gives `id` (a layer or a container, `kind`) a name. Layers and containers share one
/// namespace, so a name refers to one thing.
fn claim_name(inner: &Inner, st: &mut State, kind: u8, name: &str, id: Id) -> Result<()> {
    names::check_name(name)?;
    let w = Writer::view(&inner.segs, &st.txn.app);
    if name_holder(inner, st, name)?.is_some() {
        return Err(Error::NameInUse(format!("'{name}'")));
    }
    image::name_free_of_tags(inner, st, name)?;
    st.txn
        .catalog
        .insert(&w, &catalog::name_key(kind, name), id.0.to_vec())?;
    Ok(())
}

/// The layer or container that has `name`, if any.
fn name_holder(inner: &Inner, st: &State, name: &str) -> Result<Option<Target>> {
    let w = Writer::view(&inner.segs, &st.txn.app);
    if let Some(v) = st.txn.catalog.get(&w, &catalog::name_key(LAYER, name))? {
        return Ok(Some(Target::Layer(Id::from_slice(v)?)));
    }
    match st.txn.catalog.get(&w, &catalog::name_key(CONTAINER, name))? {
        Some(v) => Ok(Some(Target::Container(Id::from_slice(v)?))),
        None => Ok(None),
    }
}

fn layer_info(inner: &Inner, st: &State, id: Id) -> Result<LayerInfo> {
    let w = Writer::view(&inner.segs, &st.txn.app);
    let v = st
        .txn
        .catalog
        .get(&w, &catalog::key(LAYER, &id))?
        .ok_or_else(|| Error::UnknownRef(id.to_string()))?;
    LayerInfo::decode(id, v)
}

fn container_info(inner: &Inner, st: &State, id: Id) -> Result<ContainerInfo> {
    let w = Writer::view(&inner.segs, &st.txn.app);
    let v = st
        .txn
        .catalog
        .get(&w, &catalog::key(CONTAINER, &id))?
        .ok_or_else(|| Error::UnknownRef(id.to_string()))?;
    ContainerInfo::decode(id, v)
}

fn resolve_locked(inner: &Inner, st: &State, r: &str) -> Result<Target> {
    let w = Writer::view(&inner.segs, &st.txn.app);
    let r = r.trim();
    let mut found = Vec::new();
    for (kind, make) in [
        (LAYER, Target::Layer as fn(Id) -> Target),
        (CONTAINER, Target::Container),
    ] {
        if let Some(v) = st.txn.catalog.get(&w, &catalog::name_key(kind, r))? {
            found.push(make(Id::from_slice(v)?));
        }
    }
    if found.is_empty() && names::could_be_id(r) {
        let r = r.to_ascii_lowercase();
        let whole: Vec<u8> = (0..r.len() / 2)
            .map(|i| u8::from_str_radix(&r[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        for (kind, make) in [
            (LAYER, Target::Layer as fn(Id) -> Target),
            (CONTAINER, Target::Container),
        ] {
            let mut prefix = vec![kind];
            prefix.extend_from_slice(&whole);
            st.txn.catalog.scan(&w, &prefix, &mut |k, _| {
                if !k.starts_with(&prefix) || k.len() != 17 {
                    return Ok(false);
                }
                let id = Id::from_slice(&k[1..])?;
                if id.to_string().starts_with(&r) {
                    found.push(make(id));
                }
                Ok(found.len() < 2)
            })?;
        }
    }
    // An image (by tag or sha256: id) stands for its top layer.
    if found.is_empty() && (r.starts_with("sha256:") || names::check_name(r).is_ok()) {
        if let Some(layer) = image::find_image(inner, st, r)?.and_then(|i| i.layer) {
            found.push(Target::Layer(layer));
        }
    }
    match found.len() {
        0 => Err(Error::UnknownRef(r.to_string())),
        1 => Ok(found[0]),
        _ => Err(Error::AmbiguousRef(r.to_string())),
    }
}

/// Writes a changed container or volume tree and points its catalog record at the new root.
fn flush_tree(catalog: &mut txn::Catalog, w: &mut Writer, k: &[u8], wt: &mut WorkTree) -> Result<()> {
    if !wt.is_dirty() {
        return Ok(());
    }
    let root = wt.flush(w)?;
    if let Some(v) = catalog.get(w, k)? {
        let record = catalog::with_tree(k, v, root, Some(wt.keys()))?;
        if record != v {
            catalog.insert(w, k, record)?;
        }
    }
    Ok(())
}

/// Writes the trees changed since the last commit, then commits the file (syncs included),
/// holding the right to commit (`_serial`).
pub(crate) fn commit_locked(
    _serial: &MutexGuard<'_, ()>,
    inner: &Inner,
    st: &mut State,
    durability: Durability,
) -> Result<()> {
    let _commit = writers::CommitLock::take(inner.segs.io().as_ref())?;
    writers::take_up_newest(inner, st)?;
    flush_touched(inner, st)?;
    st.txn.commit(&inner.segs, durability)?;
    writers::release_committed(inner, st);
    Ok(())
}

/// Writes the trees changed since the last commit and the commit up to its syncs.
fn begin_commit(inner: &Inner, st: &mut State, durability: Durability) -> Result<Option<txn::Publish>> {
    flush_touched(inner, st)?;
    st.txn.begin_commit(&inner.segs, durability)
}

/// Writes every container and volume tree written since the last commit.
fn flush_touched(inner: &Inner, st: &mut State) -> Result<()> {
    let State {
        txn,
        containers,
        volumes,
        touched,
        touched_volumes,
        ..
    } = st;
    let mut w = Writer {
        segs: &inner.segs,
        app: &mut txn.app,
    };
    // Only the trees written since the last commit: commit cost does not grow with the
    // number of containers.
    let mut ids: Vec<Id> = touched.drain().collect();
    ids.sort();
    for id in ids {
        if let Some(wt) = containers.get_mut(&id) {
            flush_tree(&mut txn.catalog, &mut w, &catalog::key(CONTAINER, &id), wt)?;
        }
    }
    let mut vols: Vec<String> = touched_volumes.drain().collect();
    vols.sort();
    for name in vols {
        if let Some(wt) = volumes.get_mut(&name) {
            flush_tree(&mut txn.catalog, &mut w, &catalog::volume_key(&name), wt)?;
        }
    }
    Ok(())
}

/// Creates the layer record for a flushed tree and makes its records visible to readers.
fn add_layer(
    inner: &Inner,
    st: &mut State,
    root: u64,
    keys: u64,
    parent: Option<Id>,
    name: Option<&str>,
) -> Result<LayerInfo> {
    // Checked under the lock remove_layer holds: a parent cannot vanish in between.
    if let Some(p) = parent {
        layer_info(inner, st, p).map_err(|_| Error::UnknownRef(format!("{p} (the parent layer was removed)")))?;
    }
    let id = fresh_id(st);
    if let Some(n) = name {
        claim_name(inner, st, LAYER, n, id)?;
    }
    let info = LayerInfo {
        id,
        name: name.map(str::to_string),
        parent,
        root,
        keys,
        created_ns: catalog::now_ns(),
    };
    st.txn.app.flush(&inner.segs)?;
    let w = Writer::view(&inner.segs, &st.txn.app);
    st.txn.catalog.insert(&w, &catalog::key(LAYER, &id), info.encode())?;
    Ok(info)
}

fn ctx<'a>(inner: &'a Inner, app: &'a mut Appender, chunks: &'a mut ChunkIndex, ready: Ready<'a>) -> Ctx<'a> {
    Ctx {
        w: Writer { segs: &inner.segs, app },
        chunks,
        compression: inner.header.compression,
        block_shift: inner.header.block_shift,
        ready,
    }
}

/// Hashes and compresses, before the writer state is locked, the blocks a write of `data`
/// at `off` fills, as the store's defaults (or `opts`) would store them. A write the store
/// will refuse prepares nothing (it reports its own error under the lock).
///
/// `packing`: the write goes to a layer being built, whose partial blocks are packed.
pub(crate) fn ready_for<'d>(inner: &Inner, data: &'d [u8], off: u64, opts: &PutOptions, packing: bool) -> Ready<'d> {
    let shift = match opts.block_size.map(value::block_shift) {
        Some(Ok(shift)) => shift,
        Some(Err(_)) => return Ready::none(),
        None => inner.header.block_shift,
    };
    let refused = !inner.writable
        || value::checked_end(off, data.len() as u64).is_err()
        || opts.compression.is_some_and(|c| c.check().is_err());
    // A value this small is kept inline when it is new, with nothing to prepare.
    let inline = off == 0 && data.len() <= value::INLINE_MAX && opts.block_size.is_none();
    if refused || inline {
        return Ready::none();
    }
    let compression = opts.compression.unwrap_or(inner.header.compression);
    // A layer being built compresses the whole blocks of values compressed as the store is
    // in its clusters (tree::pack); only theirs are hashed here and not compressed.
    let clusters = packing && compression == inner.header.compression && compression != Compression::None;
    Ready::prepare(data, off, shift, compression, packing, clusters)
}

fn io_err(e: Error) -> std::io::Error {
    match e {
        Error::Io(e) => e,
        // The errno survives (a full disk stays ENOSPC through a Read or Write handle).
        Error::File { ref source, .. } => match source.raw_os_error() {
            Some(n) => std::io::Error::from_raw_os_error(n),
            None => std::io::Error::new(source.kind(), e),
        },
        e => std::io::Error::other(e),
    }
}

fn seek_to(pos: u64, size: u64, to: std::io::SeekFrom) -> std::io::Result<u64> {
    let new = match to {
        std::io::SeekFrom::Start(p) => Some(p),
        std::io::SeekFrom::End(d) => size.checked_add_signed(d),
        std::io::SeekFrom::Current(d) => pos.checked_add_signed(d),
    };
    new.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start or past u64"))
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.path).finish()
    }
}
