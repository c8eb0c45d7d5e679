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

/// Commits whose unsynced records span at most this many bytes use one sync: their
/// records and superblock are written together and open re-checks the records' chain.
const ONE_SYNC_MAX: u64 = 1 << 20;

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

/// Where the bytes go (`df`), as of the last commit.
#[derive(Clone, Debug)]
pub struct SpaceReport {
    pub stats: Stats,
    /// What the file system has allocated for the file (`du`).
    pub file_allocated_bytes: u64,
    /// Sum of value sizes over all layers, containers and volumes, holes excluded.
    pub logical_bytes: u64,
    /// Stored bytes of the distinct live chunks.
    pub stored_bytes: u64,
    /// Bytes of all live records (chunks, tree and map nodes, catalog, index).
    pub live_bytes: u64,
    /// Record bytes no longer reachable: what gc can give back.
    pub garbage_bytes: u64,
    /// Raw bytes referenced, counted per reference, over raw bytes of distinct chunks.
    pub dedup_ratio: f64,
    /// Raw bytes of distinct chunks over their stored payload bytes.
    pub compression_ratio: f64,
    pub layers: Vec<(LayerInfo, TreeUsage)>,
    pub containers: Vec<(ContainerInfo, TreeUsage)>,
    pub volumes: Vec<(VolumeInfo, TreeUsage)>,
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
    generation: u64,
    durable_slot: usize,
    /// Something changed since the last commit.
    dirty: bool,
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
            generation: sb.generation,
            durable_slot: slot,
            dirty: false,
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
        st.dirty = true;
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

    /// Every layer, in id order.
    pub fn layers(&self) -> Result<Vec<LayerInfo>> {
        let st = self.lock()?;
        self.scan_catalog(&st, LAYER)?
            .into_iter()
            .map(|(id, v)| LayerInfo::decode(id, &v))
            .collect()
    }

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

    /// Resolves a name, a full id or a unique id prefix (4 or more hex digits).
    pub fn resolve(&self, r: &str) -> Result<Target> {
        let st = self.lock()?;
        resolve_locked(&self.inner, &st, r)
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

    /// A container by name or id.
    pub fn container(&self, r: &str) -> Result<Container> {
        match self.resolve(r)? {
            Target::Container(id) => Ok(Container {
                store: self.clone(),
                id,
            }),
            Target::Layer(_) => Err(Error::ReadOnly(format!(
                "'{r}' is a committed layer; create a container on it to write"
            ))),
        }
    }

    /// Starts a new layer on `parent` (or empty); nothing is copied.
    pub fn new_layer(&self, parent: Option<&Layer>) -> Result<LayerBuilder> {
        if !self.inner.writable {
            return Err(Error::ReadOnly("the store (opened read-only)".into()));
        }
        let (root, keys) = parent.map_or((0, 0), |p| (p.info.root, p.info.keys));
        self.inner.builders.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(LayerBuilder {
            store: self.clone(),
            parent: parent.map(|p| p.info.id),
            tree: WorkTree::at(root, keys),
        })
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
        let mut targets: Vec<&str> = mounts.iter().map(|m| m.target.as_str()).collect();
        targets.sort_unstable();
        if targets.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::InvalidArgument("two mounts at the same target".into()));
        }
        self.write(|inner, st| {
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
            };
            let w = Writer::view(&inner.segs, &st.app);
            st.catalog.insert(&w, &catalog::key(CONTAINER, &id), info.encode())?;
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
        self.write(|inner, st| {
            let info = container_info(inner, st, c.id)?;
            let w = Writer::view(&inner.segs, &st.app);
            st.catalog.remove(&w, &catalog::key(CONTAINER, &c.id))?;
            if let Some(n) = &info.name {
                st.catalog.remove(&w, &catalog::name_key(CONTAINER, n))?;
            }
            st.containers.remove(&c.id);
            st.mounts.remove(&c.id);
            Ok(())
        })
    }

    /// Collects garbage: finds what is live (every layer, container and volume, and every
    /// snapshot an open [`Layer`] handle reads), moves the live records out of segments that
    /// are almost all garbage (under 5% live), commits durably, then gives every dead page
    /// back to the file system (hole punching), so the file's allocated size drops. A crash at
    /// any point leaves the last commit intact.
    pub fn gc(&self) -> Result<GcReport> {
        self.gc_with(0.05)
    }

    /// As [`Store::gc`], evacuating segments whose live share is below `threshold` (0..=1):
    /// more moving, less fragmentation.
    pub fn gc_with(&self, threshold: f64) -> Result<GcReport> {
        if self.inner.builders.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            return Err(Error::InUse(
                "a layer is being built; finish or drop it before gc".into(),
            ));
        }
        self.write(|inner, st| {
            commit_locked(inner, st, Durability::Immediate)?;
            let seg_size = inner.header.segment_size;
            let tail_seg = (st.app.tail() - DATA_START) / seg_size;
            let segments = inner.segs.segment_count();
            let pinned_roots: Vec<u64> = inner
                .pins
                .lock()
                .map(|p| p.keys().copied().collect())
                .unwrap_or_default();
            let catalog_root = st.last_sb.catalog_root;
            let view = Writer::view(&inner.segs, &st.app);
            let mut live = gc::Mark::new(&view, seg_size, segments);
            live.catalog(catalog_root)?;
            let mut pinned = gc::Mark::new(&view, seg_size, segments);
            for r in &pinned_roots {
                pinned.tree(*r)?;
            }
            let freed_before = gc::freed_segments(&view, catalog_root)?;
            let victims: Vec<u64> = (0..tail_seg)
                .filter(|s| !freed_before.contains(s) && pinned.live[*s as usize] == 0)
                .filter(|s| (live.live[*s as usize] as f64) < threshold * seg_size as f64)
                .collect();
            let mut report = GcReport {
                live_records: live.records,
                live_bytes: live.bytes,
                segments_scanned: segments,
                ..Default::default()
            };
            let old_tail = st.app.tail();
            let allocated_before = inner.segs.io().allocated()?;
            let chunks = std::mem::take(&mut live.chunks);
            let mut is_victim = vec![false; segments as usize];
            for v in &victims {
                is_victim[*v as usize] = true;
            }
            // What stays where it is: live and pinned records outside the victim segments.
            let mut keep: Vec<(u64, u64)> = live.ranges.iter().chain(pinned.ranges.iter()).copied().collect();
            keep.retain(|(a, _)| !is_victim[((a - DATA_START) / seg_size) as usize]);
            keep.sort_unstable();
            keep.dedup();
            let kept_bytes: u64 = keep.iter().map(|r| r.1).sum();
            // The index is always rebuilt from live chunks: dead ones must not be found by dedup.
            let mut w = Writer {
                segs: &inner.segs,
                app: &mut st.app,
            };
            let mut ev = gc::Evacuate::new(&mut w, seg_size, is_victim);
            let runs = ev.index(&chunks)?;
            let new_catalog = ev.catalog(catalog_root, &victims)?;
            report.records_moved = ev.records_moved;
            report.bytes_moved = ev.bytes_moved;
            st.catalog = Tree::at(new_catalog);
            st.chunks = ChunkIndex::new(runs);
            st.containers.clear();
            st.mounts.clear();
            st.volumes.clear();
            commit_locked(inner, st, Durability::Immediate)?;
            st.app.set_used(kept_bytes + (st.app.tail() - old_tail));
            // Only now, with the new state durable, give the dead bytes back.
            for v in &victims {
                inner.segs.io().punch_hole(DATA_START + v * seg_size, seg_size)?;
            }
            for s in (0..=tail_seg).filter(|s| !freed_before.contains(s) && !victims.contains(s)) {
                let start = DATA_START + s * seg_size;
                let end = (start + seg_size).min(old_tail);
                for (a, len) in gc::dead_ranges(&mut keep, start, end) {
                    inner.segs.io().punch_hole(a, len)?;
                }
            }
            report.segments_freed = victims.len() as u64;
            report.bytes_freed = allocated_before.saturating_sub(inner.segs.io().allocated()?);
            Ok(report)
        })
    }

    /// Space accounting as of the last commit: per layer, container and volume, logical,
    /// referenced and exclusive bytes, and the store's totals. Walks metadata, never data.
    pub fn usage(&self) -> Result<SpaceReport> {
        let stats = self.stats()?;
        let layers = self.layers()?;
        let volumes = self.volumes()?;
        let st = self.lock()?;
        let inner = &self.inner;
        let view = Writer::view(&inner.segs, &st.app);
        let mut containers = Vec::new();
        for (id, v) in self.scan_catalog(&st, CONTAINER)? {
            containers.push(ContainerInfo::decode(id, &v)?);
        }
        let roots: Vec<u64> = layers
            .iter()
            .map(|l| l.root)
            .chain(containers.iter().map(|c| c.root))
            .chain(volumes.iter().map(|v| v.root))
            .collect();
        let mut owners = crate::usage::Owners::new(&view);
        for (t, r) in roots.iter().enumerate() {
            owners.walk(t, *r)?;
        }
        let (excl, stored, distinct_raw, _) = owners.finish(roots.len());
        let mut cache = inner
            .totals
            .lock()
            .map_err(|_| Error::InUse("usage cache poisoned".into()))?;
        let mut totals = Vec::with_capacity(roots.len());
        for r in &roots {
            totals.push(cache.tree(&view, *r)?);
        }
        drop(cache);
        let mut live = gc::Mark::new(&view, inner.header.segment_size, inner.segs.segment_count());
        live.catalog(st.last_sb.catalog_root)?;
        for run in st.chunks.runs() {
            live.nodes(run.root)?;
        }
        let referenced_raw: u64 = totals.iter().map(|t| t.raw()).sum();
        let stored_payload: u64 = owners_payload(&view, &live.chunks)?;
        let logical_bytes = totals.iter().map(|t| t.usage(0).logical_bytes).sum();
        let mut usage = totals.iter().zip(excl).map(|(t, e)| t.usage(e));
        let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        Ok(SpaceReport {
            file_allocated_bytes: inner.segs.io().allocated()?,
            logical_bytes,
            stored_bytes: stored,
            live_bytes: live.bytes,
            garbage_bytes: stats.used_bytes.saturating_sub(live.bytes),
            dedup_ratio: ratio(referenced_raw, distinct_raw),
            compression_ratio: ratio(distinct_raw, stored_payload),
            layers: layers
                .into_iter()
                .map(|l| (l, usage.next().unwrap_or_default()))
                .collect(),
            containers: containers
                .into_iter()
                .map(|c| (c, usage.next().unwrap_or_default()))
                .collect(),
            volumes: volumes
                .into_iter()
                .map(|v| (v, usage.next().unwrap_or_default()))
                .collect(),
            stats,
        })
    }

    /// Checks the last commit: superblocks, every reachable record's crc, tree invariants, the
    /// chunk index, and with `deep` every chunk's blake3. See [`crate::verify`].
    pub fn verify(&self, deep: bool) -> Result<VerifyReport> {
        self.verify_with_progress(deep, &|_, _| {})
    }

    /// As [`Store::verify`], calling `progress(done, total)` as chunks are checked.
    pub fn verify_with_progress(&self, deep: bool, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<VerifyReport> {
        let st = self.lock()?;
        let inner = &self.inner;
        let sb = st.last_sb.clone();
        let runs = sb.runs.clone();
        drop(st);
        let mut slot_problems = Vec::new();
        for (i, off) in SLOT_OFFSETS.iter().enumerate() {
            let page = read_page(inner.segs.io().as_ref(), *off)?;
            if Superblock::decode(&page).is_none() && page.iter().any(|&b| b != 0) {
                slot_problems.push(format!(
                    "superblock slot {i} does not hold a valid superblock (torn by a crash mid-commit, or damaged); the other slot holds the store"
                ));
            }
        }
        let mut roots = Vec::new();
        let mut catalog_problem = None;
        match gc::catalog_entries(&inner.segs, sb.catalog_root) {
            Ok(entries) => {
                for (k, v) in entries {
                    if let Ok(Some(root)) = gc::tree_root_of(&k, &v) {
                        roots.push((describe_entry(&k, &v), root));
                    }
                }
            }
            Err(e) => catalog_problem = Some(format!("catalog: {e}")),
        }
        let mut report = crate::verify::verify(&inner.segs, sb.catalog_root, &roots, &runs, deep, progress)?;
        report.warnings = slot_problems;
        report.warnings.extend(inner.recovery.clone());
        if let Some(what) = catalog_problem {
            report.problems.push(crate::verify::Problem {
                what,
                affects: Default::default(),
                keys: Default::default(),
            });
        }
        Ok(report)
    }

    /// Gives a layer a name, taking it from another layer that had it.
    pub fn tag(&self, layer: &str, name: &str) -> Result<()> {
        catalog::check_name(name)?;
        let target = self.layer(layer)?.info.id;
        self.write(|inner, st| {
            let w = Writer::view(&inner.segs, &st.app);
            let nk = catalog::name_key(LAYER, name);
            if let Some(prev) = st.catalog.get(&w, &nk)?.map(Id::from_slice).transpose()? {
                let mut info = layer_info(inner, st, prev)?;
                info.name = None;
                st.catalog.insert(&w, &catalog::key(LAYER, &prev), info.encode())?;
            }
            let mut info = layer_info(inner, st, target)?;
            if let Some(old) = info.name.take() {
                st.catalog.remove(&w, &catalog::name_key(LAYER, &old))?;
            }
            info.name = Some(name.to_string());
            st.catalog.insert(&w, &catalog::key(LAYER, &target), info.encode())?;
            st.catalog.insert(&w, &nk, target.0.to_vec())?;
            Ok(())
        })
    }

    /// Removes a layer. Refused while a container uses it or another layer has it as parent.
    pub fn remove_layer(&self, layer: &str) -> Result<()> {
        let id = self.layer(layer)?.info.id;
        if let Some(c) = self.containers()?.into_iter().find(|c| c.image == id) {
            return Err(Error::InUse(format!("layer {id} is the image of container {}", c.id)));
        }
        if let Some(l) = self.layers()?.into_iter().find(|l| l.parent == Some(id)) {
            return Err(Error::InUse(format!("layer {id} is the parent of layer {}", l.id)));
        }
        self.write(|inner, st| {
            let info = layer_info(inner, st, id)?;
            let w = Writer::view(&inner.segs, &st.app);
            st.catalog.remove(&w, &catalog::key(LAYER, &id))?;
            if let Some(n) = &info.name {
                st.catalog.remove(&w, &catalog::name_key(LAYER, n))?;
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
            let w = Writer::view(&self.inner.segs, &st.app);
            match st.catalog.get(&w, &key)? {
                Some(v) => layer_info(&self.inner, &st, Id::from_slice(v)?).ok(),
                None => None,
            }
        };
        if let Some(info) = cached {
            return Ok((Layer::new(self.clone(), info), true));
        }
        let mut b = self.new_layer(parent)?;
        f(&mut b)?;
        let layer = b.finish(None)?;
        self.write(|inner, st| {
            let w = Writer::view(&inner.segs, &st.app);
            st.catalog.insert(&w, &key, layer.info.id.0.to_vec())?;
            Ok(())
        })?;
        Ok((layer, false))
    }

    /// Creates an empty named volume.
    pub fn create_volume(&self, name: &str) -> Result<VolumeInfo> {
        catalog::check_volume_name(name)?;
        self.write(|inner, st| {
            let w = Writer::view(&inner.segs, &st.app);
            if st.catalog.get(&w, &catalog::volume_key(name))?.is_some() {
                return Err(Error::NameInUse(name.to_string()));
            }
            load_volume(inner, st, name, true)?;
            volume_info(inner, st, name)
        })
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Result<Vec<VolumeInfo>> {
        let st = self.lock()?;
        let w = Writer::view(&self.inner.segs, &st.app);
        let mut names = Vec::new();
        st.catalog.scan(&w, &[VOLUME], &mut |k, _| {
            if k.first() != Some(&VOLUME) {
                return Ok(false);
            }
            names.push(String::from_utf8_lossy(&k[1..]).into_owned());
            Ok(true)
        })?;
        names.iter().map(|n| volume_info(&self.inner, &st, n)).collect()
    }

    pub fn volume(&self, name: &str) -> Result<VolumeInfo> {
        let st = self.lock()?;
        volume_info(&self.inner, &st, name)
    }

    /// Removes a volume and its data. Refused while a container mounts it.
    pub fn remove_volume(&self, name: &str) -> Result<()> {
        self.volume(name)?;
        for c in self.containers()? {
            if c.mounts
                .iter()
                .any(|m| m.source == MountSource::Volume(name.to_string()))
            {
                return Err(Error::InUse(format!(
                    "volume '{name}' is mounted by container {}",
                    c.id
                )));
            }
        }
        self.write(|inner, st| {
            let w = Writer::view(&inner.segs, &st.app);
            st.catalog.remove(&w, &catalog::volume_key(name))?;
            st.volumes.remove(name);
            Ok(())
        })
    }
}

/// Loads a volume's tree (creating the volume when asked and missing).
fn load_volume<'s>(inner: &Inner, st: &'s mut State, name: &str, create: bool) -> Result<&'s mut WorkTree> {
    if !st.volumes.contains_key(name) {
        let w = Writer::view(&inner.segs, &st.app);
        let k = catalog::volume_key(name);
        let info = match st.catalog.get(&w, &k)? {
            Some(v) => VolumeInfo::decode(name, v)?,
            None if create => {
                catalog::check_volume_name(name)?;
                let info = VolumeInfo {
                    name: name.to_string(),
                    root: 0,
                    keys: 0,
                    created_ns: catalog::now_ns(),
                };
                st.catalog.insert(&w, &k, info.encode())?;
                info
            }
            None => return Err(Error::UnknownRef(format!("volume {name}"))),
        };
        st.volumes.insert(name.to_string(), WorkTree::at(info.root, info.keys));
    }
    Ok(st.volumes.get_mut(name).expect("loaded above"))
}

fn volume_info(inner: &Inner, st: &State, name: &str) -> Result<VolumeInfo> {
    let w = Writer::view(&inner.segs, &st.app);
    let v = st
        .catalog
        .get(&w, &catalog::volume_key(name))?
        .ok_or_else(|| Error::UnknownRef(format!("volume {name}")))?;
    let mut info = VolumeInfo::decode(name, v)?;
    if let Some(t) = st.volumes.get(name) {
        info.keys = t.keys();
    }
    Ok(info)
}

/// Fills a fresh volume with the image's keys under `target`: the entries are copied, so the
/// volume shares the image's chunks and block maps; no data is copied.
fn fill_volume(inner: &Inner, st: &mut State, name: &str, image_root: u64, target: &str) -> Result<()> {
    let prefix = format!("{target}/").into_bytes();
    let mut entries = Vec::new();
    Tree::at(image_root).scan(&Writer::view(&inner.segs, &st.app), &prefix, &mut |k, v| {
        if !k.starts_with(&prefix) {
            return Ok(false);
        }
        entries.push((k[prefix.len()..].to_vec(), v.to_vec()));
        Ok(true)
    })?;
    load_volume(inner, st, name, true)?;
    let State { app, volumes, .. } = st;
    let w = Writer::view(&inner.segs, app);
    let tree = volumes.get_mut(name).expect("loaded above");
    for (k, v) in entries {
        tree.put_entry(&w, &k, v)?;
    }
    Ok(())
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

/// Stored payload bytes (without record headers) of distinct chunks.
fn owners_payload<S: crate::segment::Source + ?Sized>(src: &S, chunks: &[u64]) -> Result<u64> {
    let mut total = 0;
    for &c in chunks {
        total += src.record(c)?.header.stored_len as u64;
    }
    Ok(total)
}

/// "layer NAME (ID)", "container ID", "volume NAME" for a catalog entry that names a tree.
fn describe_entry(k: &[u8], v: &[u8]) -> String {
    let id = || Id::from_slice(&k[1..]).map(|i| i.to_string()).unwrap_or_default();
    match k[0] {
        LAYER => match LayerInfo::decode(Id::from_slice(&k[1..]).unwrap_or(Id([0; 16])), v)
            .ok()
            .and_then(|l| l.name)
        {
            Some(n) => format!("layer {n} ({})", id()),
            None => format!("layer {}", id()),
        },
        CONTAINER => match ContainerInfo::decode(Id::from_slice(&k[1..]).unwrap_or(Id([0; 16])), v)
            .ok()
            .and_then(|c| c.name)
        {
            Some(n) => format!("container {n} ({})", id()),
            None => format!("container {}", id()),
        },
        _ => format!("volume {}", String::from_utf8_lossy(&k[1..])),
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

fn commit_locked(inner: &Inner, st: &mut State, durability: Durability) -> Result<()> {
    let io = inner.segs.io().clone();
    let State {
        app,
        chunks,
        catalog,
        containers,
        volumes,
        ..
    } = st;
    let mut w = Writer { segs: &inner.segs, app };
    let mut ids: Vec<Id> = containers
        .iter()
        .filter(|(_, t)| t.is_dirty())
        .map(|(id, _)| *id)
        .collect();
    ids.sort();
    for id in ids {
        let wt = containers.get_mut(&id).expect("listed above");
        let root = wt.flush(&mut w)?;
        let k = catalog::key(CONTAINER, &id);
        if let Some(v) = catalog.get(&w, &k)? {
            let mut info = ContainerInfo::decode(id, v)?;
            if (info.root, info.keys) != (root, wt.keys()) {
                info.root = root;
                info.keys = wt.keys();
                catalog.insert(&w, &k, info.encode())?;
            }
        }
    }
    let mut names: Vec<String> = volumes
        .iter()
        .filter(|(_, t)| t.is_dirty())
        .map(|(n, _)| n.clone())
        .collect();
    names.sort();
    for name in names {
        let wt = volumes.get_mut(&name).expect("listed above");
        let root = wt.flush(&mut w)?;
        let k = catalog::volume_key(&name);
        if let Some(v) = catalog.get(&w, &k)? {
            let mut info = VolumeInfo::decode(&name, v)?;
            if (info.root, info.keys) != (root, wt.keys()) {
                info.root = root;
                info.keys = wt.keys();
                catalog.insert(&w, &k, info.encode())?;
            }
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
            st.app.zero_ahead(&inner.segs)?;
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
    st.dirty = false;
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

/// A committed, read-only layer. Reads take no lock and see one consistent snapshot.
#[derive(Clone)]
pub struct Layer {
    store: Store,
    info: LayerInfo,
    _pin: Arc<Pin>,
}

/// Keeps the records of a snapshot a handle reads from being reclaimed by gc.
struct Pin {
    inner: Arc<Inner>,
    root: u64,
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
    }
}

impl Layer {
    fn new(store: Store, info: LayerInfo) -> Layer {
        if let Ok(mut pins) = store.inner.pins.lock() {
            *pins.entry(info.root).or_insert(0) += 1;
        }
        let pin = Arc::new(Pin {
            inner: store.inner.clone(),
            root: info.root,
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

    /// The whole value, or `None` when the key is absent.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.tree().get(&self.store.inner.segs, key.as_ref())
    }

    /// Reads into `buf` at `offset`; returns the bytes read (0 at or past the end).
    pub fn read_at(&self, key: impl AsRef<[u8]>, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.tree().read_at(&self.store.inner.segs, key.as_ref(), offset, buf)
    }

    pub fn stat(&self, key: impl AsRef<[u8]>) -> Result<Option<ValueInfo>> {
        self.tree().stat(&self.store.inner.segs, key.as_ref())
    }

    /// Values whose key starts with `prefix`, in key order, read lazily.
    pub fn list(&self, prefix: impl AsRef<[u8]>) -> Result<impl Iterator<Item = Result<ValueInfo>> + '_> {
        let prefix = prefix.as_ref().to_vec();
        let it = DiskIter::new(&self.store.inner.segs, self.info.root, &prefix)?;
        Ok(it
            .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .map(|r| r.and_then(|(k, v)| Ok(crate::value::Entry::decode(v)?.info(k)))))
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
    store: Store,
    parent: Option<Id>,
    tree: WorkTree,
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
    fn with<R>(&mut self, f: impl FnOnce(&mut WorkTree, &mut Ctx) -> Result<R>) -> Result<R> {
        let tree = &mut self.tree;
        self.store.write(|inner, st| {
            let mut cx = ctx(inner, &mut st.app, &mut st.chunks);
            f(tree, &mut cx)
        })
    }

    pub fn put(&mut self, key: impl AsRef<[u8]>, data: &[u8]) -> Result<()> {
        self.put_with(key, data, &PutOptions::default())
    }

    pub fn put_with(&mut self, key: impl AsRef<[u8]>, data: &[u8], opts: &PutOptions) -> Result<()> {
        self.with(|t, cx| t.put(cx, key.as_ref(), data, opts))
    }

    pub fn write_at(&mut self, key: impl AsRef<[u8]>, offset: u64, data: &[u8]) -> Result<()> {
        self.with(|t, cx| t.write_at(cx, key.as_ref(), offset, data))
    }

    pub fn truncate(&mut self, key: impl AsRef<[u8]>, len: u64) -> Result<()> {
        self.with(|t, cx| t.truncate(cx, key.as_ref(), len))
    }

    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.with(|t, cx| t.delete(&cx.w, key.as_ref()))
    }

    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.with(|t, cx| t.get(&cx.w, key.as_ref()))
    }

    /// Makes the layer read-only and gives its handle. Durable at the next store commit.
    pub fn finish(mut self, name: Option<&str>) -> Result<Layer> {
        let parent = self.parent;
        let tree = &mut self.tree;
        let info = self.store.write(|inner, st| {
            let root = tree.flush(&mut Writer {
                segs: &inner.segs,
                app: &mut st.app,
            })?;
            add_layer(inner, st, root, tree.keys(), parent, name)
        })?;
        Ok(Layer::new(self.store.clone(), info))
    }
}

/// A writable layer on a read-only image, like a Docker container's layer.
#[derive(Clone)]
pub struct Container {
    store: Store,
    id: Id,
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

    /// Runs `f` on the place `key` lives in: the container's own tree, a volume's tree, or a
    /// bind-mounted folder. Loads the container on first use; refuses writes to `ro` mounts.
    fn op<R>(&self, write: bool, key: &[u8], f: impl FnOnce(Place, &mut Ctx) -> Result<R>) -> Result<R> {
        let id = self.id;
        let run = |inner: &Inner, st: &mut State| {
            load_container(inner, st, id)?;
            let routed = crate::mount::route(&st.mounts[&id], key).map(|(m, sub)| (m.clone(), sub));
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
                    load_volume(inner, st, v, true)?;
                    Some(v.clone())
                }
                _ => None,
            };
            let State {
                app,
                chunks,
                containers,
                volumes,
                ..
            } = st;
            let mut cx = ctx(inner, app, chunks);
            let place = match (routed, place_volume) {
                (None, _) => Place::Tree(containers.get_mut(&id).expect("loaded"), key),
                (Some((_, sub)), Some(v)) => {
                    if sub.is_empty() {
                        Place::MountPoint(key)
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
        self.op(true, key.as_ref(), |p, cx| match p {
            Place::Tree(t, k) => t.put(cx, k, data, opts),
            Place::Bind(root, sub) => bind::put(&root, sub, data),
            Place::MountPoint(k) => Err(mount_point(k)),
        })
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.op(false, key.as_ref(), |p, cx| match p {
            Place::Tree(t, k) => t.get(&cx.w, k),
            Place::Bind(root, sub) => bind::get(&root, sub),
            Place::MountPoint(_) => Ok(None),
        })
    }

    pub fn stat(&self, key: impl AsRef<[u8]>) -> Result<Option<ValueInfo>> {
        let key = key.as_ref();
        self.op(false, key, |p, cx| match p {
            Place::Tree(t, k) => Ok(t.stat(&cx.w, k)?.map(|mut i| {
                i.key = key.to_vec();
                i
            })),
            Place::Bind(root, sub) => bind::stat(&root, key, sub),
            Place::MountPoint(_) => Ok(None),
        })
    }

    /// Removes a key; the image below keeps it. True when the key was visible.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.op(true, key.as_ref(), |p, cx| match p {
            Place::Tree(t, k) => t.delete(&cx.w, k),
            Place::Bind(root, sub) => bind::delete(&root, sub),
            Place::MountPoint(_) => Ok(false),
        })
    }

    /// Keys starting with `prefix`, in order: the container's own, except those hidden under a
    /// mount, and each mount's.
    pub fn list(&self, prefix: impl AsRef<[u8]>) -> Result<std::vec::IntoIter<ValueInfo>> {
        let prefix = prefix.as_ref();
        let id = self.id;
        let mut st = self.store.lock()?;
        let inner = &self.store.inner;
        load_container(inner, &mut st, id)?;
        let mounts = st.mounts[&id].clone();
        let w = Writer::view(&inner.segs, &st.app);
        let mut out: Vec<ValueInfo> = st.containers[&id]
            .list(&w, prefix)?
            .into_iter()
            .filter(|i| crate::mount::route(&mounts, &i.key).is_none())
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
                    let w = Writer::view(&inner.segs, &st.app);
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
                crate::mount::route(&mounts, &i.key)
                    .map(|(r, _)| r == m)
                    .unwrap_or(false)
            }));
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out.into_iter())
    }

    pub fn read_at(&self, key: impl AsRef<[u8]>, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.op(false, key.as_ref(), |p, cx| match p {
            Place::Tree(t, k) => t.read_at(&cx.w, k, offset, buf),
            Place::Bind(root, sub) => bind::read_at(&root, sub, offset, buf),
            Place::MountPoint(k) => Err(Error::KeyNotFound(String::from_utf8_lossy(k).into_owned())),
        })
    }

    /// Writes at `offset`, copying only the blocks it touches; creates the key if absent.
    pub fn write_at(&self, key: impl AsRef<[u8]>, offset: u64, data: &[u8]) -> Result<()> {
        self.op(true, key.as_ref(), |p, cx| match p {
            Place::Tree(t, k) => t.write_at(cx, k, offset, data),
            Place::Bind(root, sub) => bind::write_at(&root, sub, offset, data),
            Place::MountPoint(k) => Err(mount_point(k)),
        })
    }

    pub fn truncate(&self, key: impl AsRef<[u8]>, len: u64) -> Result<()> {
        self.op(true, key.as_ref(), |p, cx| match p {
            Place::Tree(t, k) => t.truncate(cx, k, len),
            Place::Bind(root, sub) => bind::truncate(&root, sub, len),
            Place::MountPoint(k) => Err(mount_point(k)),
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
            let mut cinfo = container_info(inner, st, id)?;
            if let Some(wt) = st.containers.get_mut(&id) {
                let root = wt.flush(&mut Writer {
                    segs: &inner.segs,
                    app: &mut st.app,
                })?;
                // The record follows the flushed tree now: commits only revisit dirty trees.
                cinfo.root = root;
                cinfo.keys = wt.keys();
                let w = Writer::view(&inner.segs, &st.app);
                st.catalog.insert(&w, &catalog::key(CONTAINER, &id), cinfo.encode())?;
            }
            let (root, keys) = (cinfo.root, cinfo.keys);
            add_layer(inner, st, root, keys, Some(cinfo.image), name)
        })?;
        Ok(Layer::new(self.store.clone(), info))
    }
}

/// Where a container's key lives.
enum Place<'a, 'k> {
    Tree(&'a mut WorkTree, &'k [u8]),
    Bind(std::path::PathBuf, &'k [u8]),
    /// The target of a volume mount itself: a folder, never a value.
    MountPoint(&'k [u8]),
}

fn mount_point(key: &[u8]) -> Error {
    Error::InvalidKey(format!("'{}' is a mount point", String::from_utf8_lossy(key)))
}

fn load_container(inner: &Inner, st: &mut State, id: Id) -> Result<()> {
    if !st.containers.contains_key(&id) {
        let info = container_info(inner, st, id)?;
        st.containers.insert(id, WorkTree::at(info.root, info.keys));
        st.mounts.insert(id, info.mounts);
    }
    Ok(())
}

fn io_err(e: Error) -> std::io::Error {
    match e {
        Error::Io(e) => e,
        e => std::io::Error::other(e),
    }
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

fn seek_to(pos: u64, size: u64, to: std::io::SeekFrom) -> std::io::Result<u64> {
    let new = match to {
        std::io::SeekFrom::Start(p) => Some(p),
        std::io::SeekFrom::End(d) => size.checked_add_signed(d),
        std::io::SeekFrom::Current(d) => pos.checked_add_signed(d),
    };
    new.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start or past u64"))
}

impl std::io::Seek for ValueHandle<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let size = self.c.stat(&self.key).map_err(io_err)?.map_or(0, |i| i.size);
        self.pos = seek_to(self.pos, size, to)?;
        Ok(self.pos)
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

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container").field("id", &self.id).finish()
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.path).finish()
    }
}
