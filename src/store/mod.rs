//! The store: one file, its catalog of layers and containers, and the commit protocol.
//! Readers of committed layers go straight to the maps; every change goes through one
//! mutex-guarded writer state, and becomes durable at [`Store::commit`].

use crate::bind;
use crate::btree::{DiskIter, Tree};
use crate::catalog::{self, ContainerInfo, Id, LayerInfo, VolumeInfo, CONTAINER, LAYER, VOLUME};
use crate::chunk::ChunkIndex;
use crate::error::{Error, Result};
use crate::gc::{self, GcReport};
use crate::io::{FileIo, Io};
use crate::mount::{Mount, MountSource};
use crate::record::Compression;
use crate::segment::{Appender, Segments, Writer, DATA_START};
use crate::superblock::{self, FileHeader, Superblock, PAGE, SLOT_OFFSETS};
use crate::usage::TreeUsage;
use crate::value::{self, ValueInfo};
use crate::verify::VerifyReport;
use crate::worktree::{Ctx, PutOptions, WorkTree};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

mod admin;
mod container;
mod layer;
mod volume;

pub use admin::SpaceReport;
pub use container::{Container, ValueHandle};
pub use layer::{Layer, LayerBuilder, ValueReader};

/// Commits whose unsynced records span at most this many bytes use one sync: their
/// records and superblock are written together and open re-checks the records' chain.
const ONE_SYNC_MAX: u64 = 1 << 20;

/// Commits up to this size keep the file zeroed ahead of the tail. Zeroing doubles the bytes
/// written, which pays only while the allocation a sync would otherwise journal costs more
/// than the commit's own data (measured here: a win for ~10 KiB commits, a loss at 70 KiB).
const ZERO_AHEAD_MAX_COMMIT: u64 = 32 << 10;

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

/// How hard a commit works to survive a power cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Synced to disk before `commit` returns.
    Immediate,
    /// Visible at once and kept across a clean close; a crash may roll back to the last
    /// durable commit, never further, and never to a torn state (LMDB's and redb's trade).
    None,
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

pub(crate) struct State {
    app: Appender,
    chunks: ChunkIndex,
    catalog: Tree,
    containers: HashMap<Id, WorkTree>,
    /// Mounts of the loaded containers.
    mounts: HashMap<Id, Vec<Mount>>,
    /// Volumes touched since open.
    volumes: HashMap<String, WorkTree>,
    /// Containers and volumes written since the last commit: a commit visits only these, so
    /// its cost does not grow with the number of containers.
    touched: std::collections::HashSet<Id>,
    touched_volumes: std::collections::HashSet<String>,
    /// Set by gc: its commits are about giving space back, not taking more.
    no_zero_ahead: bool,
    generation: u64,
    durable_slot: usize,
    /// The last commit was not synced.
    unsynced: bool,
    /// The superblock of the last commit.
    last_sb: Superblock,
    /// A write failed half-way: memory no longer matches what a commit could write.
    poisoned: bool,
    counter: u64,
}

pub(crate) struct Inner {
    pub(crate) segs: Segments,
    /// Roots read by open layer handles, with how many handles read each.
    pins: Mutex<HashMap<u64, usize>>,
    /// Set when open rolled back a newer commit that was incomplete.
    recovery: Option<String>,
    /// Subtree totals of immutable nodes, for `usage`.
    totals: Mutex<crate::usage::TotalsCache>,
    /// Layer builders not yet finished: their records are not reachable from the catalog.
    builders: std::sync::atomic::AtomicUsize,
    header: FileHeader,
    state: Mutex<State>,
    writable: bool,
    path: PathBuf,
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

fn read_page(io: &dyn Io, offset: u64) -> Result<[u8; PAGE]> {
    let mut p = [0u8; PAGE];
    io.read_at(offset, &mut p)?;
    Ok(p)
}

impl Store {
    /// Creates a new store file; refuses to overwrite an existing one.
    pub fn create(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        let path = path.as_ref();
        Self::validate(&options)?;
        let io = Arc::new(FileIo::create(path)?);
        Self::create_with_io(io, path, options)
    }

    fn validate(o: &Options) -> Result<()> {
        value::block_shift(o.block_size)?;
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
    pub fn create_with_io(io: Arc<dyn Io>, path: &Path, options: Options) -> Result<Store> {
        Self::validate(&options)?;
        let header = FileHeader {
            segment_size: options.segment_size,
            block_shift: value::block_shift(options.block_size)?,
            compression: options.compression,
        };
        io.set_len(DATA_START)?;
        io.write_at(0, &header.encode())?;
        let sb = Superblock {
            generation: 1,
            tail: DATA_START,
            verify_from: DATA_START,
            ..Default::default()
        };
        io.write_at(SLOT_OFFSETS[0], &sb.encode())?;
        io.sync()?;
        Self::open_with_io(io, path, true)
    }

    /// Opens a store for reading and writing; fails if another process has it open.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        Self::open_with_io(Arc::new(FileIo::open(path, true)?), path, true)
    }

    /// Opens a store for reading only, sharing it with other readers.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        Self::open_with_io(Arc::new(FileIo::open(path, false)?), path, false)
    }

    /// Opens a store on any [`Io`] backend; picks the newest superblock whose commit is whole.
    pub fn open_with_io(io: Arc<dyn Io>, path: &Path, writable: bool) -> Result<Store> {
        let file_len = io.len()?;
        if file_len < DATA_START {
            let mut magic = [0u8; 8];
            if file_len >= 8 {
                io.read_at(0, &mut magic)?;
            }
            return Err(if magic == *b"LSTORE\0\0" {
                Error::corrupt("file is shorter than its header")
            } else {
                Error::NotAStore(path.to_path_buf())
            });
        }
        let header = FileHeader::decode(&read_page(io.as_ref(), 0)?, path)?;
        let mut slots: Vec<(usize, Superblock)> = Vec::new();
        for (i, off) in SLOT_OFFSETS.iter().enumerate() {
            if let Some(sb) = Superblock::decode(&read_page(io.as_ref(), *off)?) {
                slots.push((i, sb));
            }
        }
        slots.sort_by_key(|(_, sb)| std::cmp::Reverse(sb.generation));
        let mut chosen = None;
        let mut why = String::from("no valid superblock");
        for (slot, sb) in slots {
            match Self::check_commit(&io, &header, file_len, &sb) {
                Ok(segs) => {
                    chosen = Some((slot, sb, segs));
                    break;
                }
                Err(e) => why = format!("superblock generation {}: {e}", sb.generation),
            }
        }
        let (slot, sb, segs) = chosen.ok_or(Error::Corrupt(why.clone()))?;
        // A newer commit that did not check out was rolled back: after a power cut that is the
        // protocol working; on a disk that lost bits it is worth knowing, so it is kept.
        let recovery = (why != "no valid superblock").then(|| {
            format!(
                "{why}; the store was opened at the commit before it (generation {})",
                sb.generation
            )
        });
        if writable && sb.verify_from < sb.tail {
            // A commit that was checked but maybe not synced: make it durable before building on it.
            io.sync()?;
        }
        let state = State {
            app: Appender::new(sb.tail, sb.used),
            chunks: ChunkIndex::new(sb.runs.clone()),
            catalog: Tree::at(sb.catalog_root),
            containers: HashMap::new(),
            mounts: HashMap::new(),
            volumes: HashMap::new(),
            touched: Default::default(),
            touched_volumes: Default::default(),
            no_zero_ahead: false,
            generation: sb.generation,
            durable_slot: slot,
            unsynced: false,
            last_sb: sb.clone(),
            poisoned: false,
            counter: 0,
        };
        Ok(Store {
            inner: Arc::new(Inner {
                pins: Mutex::new(HashMap::new()),
                recovery,
                totals: Mutex::new(Default::default()),
                builders: std::sync::atomic::AtomicUsize::new(0),
                segs,
                header,
                state: Mutex::new(state),
                writable,
                path: path.to_path_buf(),
            }),
        })
    }

    /// Checks that a superblock's commit is whole: its tail inside the file and, when its
    /// records were not known durable, their chain of crcs intact.
    fn check_commit(io: &Arc<dyn Io>, header: &FileHeader, file_len: u64, sb: &Superblock) -> Result<Segments> {
        if sb.tail < DATA_START || sb.tail > file_len || sb.verify_from > sb.tail || sb.verify_from < DATA_START {
            return Err(Error::corrupt("tail is outside the file"));
        }
        let segs = Segments::new(io.clone(), header.segment_size, file_len, sb.tail);
        if sb.verify_from < sb.tail {
            let (crc, count) = segs.chain_of(sb.verify_from, sb.tail)?;
            if (crc, count) != (sb.chain_crc, sb.chain_count) {
                return Err(Error::corrupt("the last commit's records are incomplete"));
            }
        }
        Ok(segs)
    }

    /// What open had to roll back, if the newest commit in the file was incomplete.
    pub fn recovery(&self) -> Option<&str> {
        self.inner.recovery.as_deref()
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

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.inner
            .state
            .lock()
            .map_err(|_| Error::InUse("a thread panicked while writing the store".into()))
    }

    /// Runs a change with the writer state, refusing when read-only or poisoned, and
    /// poisoning the state when an I/O failure may have left it half-done.
    pub(crate) fn write<R>(&self, f: impl FnOnce(&Inner, &mut State) -> Result<R>) -> Result<R> {
        if !self.inner.writable {
            return Err(Error::ReadOnly("the store (opened read-only)".into()));
        }
        let mut st = self.lock()?;
        if st.poisoned {
            return Err(Error::InUse(
                "a write failed earlier; reopen the store to continue from its last commit".into(),
            ));
        }
        let r = f(&self.inner, &mut st);
        if let Err(Error::Io(_) | Error::Full(_)) = &r {
            st.poisoned = true;
        }
        r
    }

    /// Makes every change so far durable: all records written and synced, then the
    /// superblock switched. After a crash the store opens at the last completed commit.
    pub fn commit(&self) -> Result<()> {
        self.commit_with(Durability::Immediate)
    }

    /// Commits with the chosen durability.
    pub fn commit_with(&self, durability: Durability) -> Result<()> {
        self.write(|inner, st| {
            let r = commit_locked(inner, st, durability);
            if r.is_err() {
                st.poisoned = true;
            }
            r
        })
    }

    /// Space figures.
    pub fn stats(&self) -> Result<Stats> {
        let st = self.lock()?;
        let layers = self.scan_catalog(&st, LAYER)?.len() as u64;
        let containers = self.scan_catalog(&st, CONTAINER)?.len() as u64;
        Ok(Stats {
            file_bytes: self.inner.segs.io().len()?,
            used_bytes: st.app.used(),
            chunks: st.chunks.count(),
            block_size: self.block_size(),
            segment_size: self.inner.header.segment_size,
            layers,
            containers,
            generation: st.generation,
        })
    }

    fn scan_catalog(&self, st: &State, kind: u8) -> Result<Vec<(Id, Vec<u8>)>> {
        let w = Writer::view(&self.inner.segs, &st.app);
        let mut out = Vec::new();
        st.catalog.scan(&w, &[kind], &mut |k, v| {
            if k.len() != 17 || k[0] != kind {
                return Ok(false);
            }
            out.push((Id::from_slice(&k[1..])?, v.to_vec()));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Resolves a name, a full id or a unique id prefix (4 or more hex digits).
    pub fn resolve(&self, r: &str) -> Result<Target> {
        let st = self.lock()?;
        resolve_locked(&self.inner, &st, r)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A store closed cleanly after a non-durable commit makes that commit durable, so the
        // next open need not re-check its records. Uncommitted changes are dropped, as a
        // transaction that was never committed is.
        if let Ok(st) = self.state.get_mut() {
            if self.writable && st.unsynced && !st.poisoned {
                let io = self.segs.io();
                let mut sb = st.last_sb.clone();
                sb.generation += 1;
                sb.verify_from = sb.tail;
                sb.chain_crc = crc32fast::Hasher::new().finalize();
                sb.chain_count = 0;
                let _ = io
                    .sync()
                    .and_then(|_| io.write_at(SLOT_OFFSETS[1 - st.durable_slot], &sb.encode()))
                    .and_then(|_| io.sync());
            }
        }
    }
}

fn fresh_id(st: &mut State) -> Id {
    st.counter += 1;
    Id::fresh(st.generation, st.counter)
}

fn claim_name(inner: &Inner, st: &mut State, kind: u8, name: &str, id: Id) -> Result<()> {
    catalog::check_name(name)?;
    let w = Writer::view(&inner.segs, &st.app);
    let k = catalog::name_key(kind, name);
    if st.catalog.get(&w, &k)?.is_some() {
        return Err(Error::NameInUse(name.to_string()));
    }
    st.catalog.insert(&w, &k, id.0.to_vec())?;
    Ok(())
}

fn layer_info(inner: &Inner, st: &State, id: Id) -> Result<LayerInfo> {
    let w = Writer::view(&inner.segs, &st.app);
    let v = st
        .catalog
        .get(&w, &catalog::key(LAYER, &id))?
        .ok_or_else(|| Error::UnknownRef(id.to_string()))?;
    LayerInfo::decode(id, v)
}

fn container_info(inner: &Inner, st: &State, id: Id) -> Result<ContainerInfo> {
    let w = Writer::view(&inner.segs, &st.app);
    let v = st
        .catalog
        .get(&w, &catalog::key(CONTAINER, &id))?
        .ok_or_else(|| Error::UnknownRef(id.to_string()))?;
    ContainerInfo::decode(id, v)
}

fn resolve_locked(inner: &Inner, st: &State, r: &str) -> Result<Target> {
    let w = Writer::view(&inner.segs, &st.app);
    let r = r.trim();
    let mut found = Vec::new();
    for (kind, make) in [
        (LAYER, Target::Layer as fn(Id) -> Target),
        (CONTAINER, Target::Container),
    ] {
        if let Some(v) = st.catalog.get(&w, &catalog::name_key(kind, r))? {
            found.push(make(Id::from_slice(v)?));
        }
    }
    if found.is_empty() && r.len() >= 4 && r.len() <= 32 && r.bytes().all(|b| b.is_ascii_hexdigit()) {
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
            st.catalog.scan(&w, &prefix, &mut |k, _| {
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
    match found.len() {
        0 => Err(Error::UnknownRef(r.to_string())),
        1 => Ok(found[0]),
        _ => Err(Error::AmbiguousRef(r.to_string())),
    }
}

/// Writes a changed container or volume tree and points its catalog record at the new root.
fn flush_tree(catalog: &mut Tree, w: &mut Writer, k: &[u8], wt: &mut WorkTree) -> Result<()> {
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

fn commit_locked(inner: &Inner, st: &mut State, durability: Durability) -> Result<()> {
    let io = inner.segs.io().clone();
    let State {
        app,
        chunks,
        catalog,
        containers,
        volumes,
        touched,
        touched_volumes,
        ..
    } = st;
    let mut w = Writer { segs: &inner.segs, app };
    // Only the trees written since the last commit: commit cost does not grow with the
    // number of containers.
    let mut ids: Vec<Id> = touched.drain().collect();
    ids.sort();
    for id in ids {
        if let Some(wt) = containers.get_mut(&id) {
            flush_tree(catalog, &mut w, &catalog::key(CONTAINER, &id), wt)?;
        }
    }
    let mut names: Vec<String> = touched_volumes.drain().collect();
    names.sort();
    for name in names {
        if let Some(wt) = volumes.get_mut(&name) {
            flush_tree(catalog, &mut w, &catalog::volume_key(&name), wt)?;
        }
    }
    chunks.flush(&mut w)?;
    let catalog_root = catalog.flush(&mut w)?;
    w.app.flush(&inner.segs)?;
    let (from, chain_crc, chain_count) = st.app.pending_chain();
    let tail = st.app.tail();
    let slot = 1 - st.durable_slot;
    let mut sb = Superblock {
        generation: st.generation + 1,
        tail,
        verify_from: from,
        chain_crc,
        chain_count,
        catalog_root,
        used: st.app.used(),
        runs: st.chunks.runs().to_vec(),
    };
    match durability {
        Durability::Immediate if tail - from <= ONE_SYNC_MAX => {
            if tail - from <= ZERO_AHEAD_MAX_COMMIT && !st.no_zero_ahead {
                st.app.zero_ahead(&inner.segs)?;
            }
            io.write_at(SLOT_OFFSETS[slot], &sb.encode())?;
            io.sync()?;
        }
        Durability::Immediate => {
            io.sync()?;
            sb.verify_from = tail;
            sb.chain_crc = crc32fast::Hasher::new().finalize();
            sb.chain_count = 0;
            io.write_at(SLOT_OFFSETS[slot], &sb.encode())?;
            io.sync()?;
        }
        Durability::None => io.write_at(SLOT_OFFSETS[slot], &sb.encode())?,
    }
    st.generation += 1;
    st.last_sb = sb;
    st.unsynced = durability == Durability::None;
    if durability == Durability::Immediate {
        st.app.mark_durable();
        st.durable_slot = slot;
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
    st.app.flush(&inner.segs)?;
    let w = Writer::view(&inner.segs, &st.app);
    st.catalog.insert(&w, &catalog::key(LAYER, &id), info.encode())?;
    Ok(info)
}

fn ctx<'a>(inner: &'a Inner, app: &'a mut Appender, chunks: &'a mut ChunkIndex) -> Ctx<'a> {
    Ctx {
        w: Writer { segs: &inner.segs, app },
        chunks,
        compression: inner.header.compression,
        block_shift: inner.header.block_shift,
    }
}

fn io_err(e: Error) -> std::io::Error {
    match e {
        Error::Io(e) => e,
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
