//! Garbage collection: mark what the catalog (and every snapshot an open handle holds)
//! reaches, then evacuate segments whose live share is low: copy their live records to the
//! tail, rewrite only the tree paths that point at moved records, and hand the segments' blocks
//! back to the file system. Cost follows live metadata and moved data, never the file size.

use crate::chunk::Hash;
use crate::error::{Error, Result};
use crate::format::catalog::{ContainerInfo, Id, LayerInfo, VolumeInfo, CONTAINER, LAYER, VOLUME};
use crate::format::compression::Compression;
use crate::format::node;
use crate::format::ptr::ChunkPtr;
use crate::format::record::{self, Kind};
use crate::format::superblock::{Run, Superblock, DATA_START, PAGE, SLOT_OFFSETS};
use crate::format::value::{Body, Entry};
use crate::io::{Source, Writer};
use crate::store::{commit_locked, Inner, State, Store};
use crate::tree::blockmap;
use crate::tree::btree::{self, load_view, too_deep, DiskIter};
use crate::tree::chunk_index::{self, ChunkIndex};
use crate::txn::Durability;
use std::collections::{HashMap, HashSet};
use std::sync::MutexGuard;

/// Catalog key of a segment already given back: `f` + index (big-endian u64).
pub(crate) const FREE: u8 = b'f';

/// What a collection found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Records reachable from the catalog and open snapshots.
    pub live_records: u64,
    pub live_bytes: u64,
    pub segments_scanned: u64,
    pub records_moved: u64,
    pub bytes_moved: u64,
    pub segments_freed: u64,
    /// Bytes handed back to the file system.
    pub bytes_freed: u64,
    /// Set when another process was reading an older commit (this generation): gc gave back
    /// only what no commit references (past the tail) and moved nothing; run it again later.
    pub deferred_for_reader: Option<u64>,
}

/// Marks records reachable from roots, with live bytes per segment.
pub(crate) struct Mark<'a, S: Source + ?Sized> {
    src: &'a S,
    seg_size: u64,
    seen: HashSet<u64>,
    pub live: Vec<u64>,
    pub chunks: Vec<ChunkPtr>,
    /// (address, size) of every record marked.
    pub ranges: Vec<(u64, u64)>,
    pub records: u64,
    pub bytes: u64,
}

impl<'a, S: Source + ?Sized> Mark<'a, S> {
    pub fn new(src: &'a S, seg_size: u64, segments: u64) -> Self {
        Mark {
            src,
            seg_size,
            seen: HashSet::new(),
            live: vec![0; segments as usize],
            chunks: Vec::new(),
            ranges: Vec::new(),
            records: 0,
            bytes: 0,
        }
    }

    /// A node: its size is read from its header (the walk reads the node anyway).
    fn note(&mut self, addr: u64) -> Result<bool> {
        if self.seen.contains(&addr) {
            return Ok(false);
        }
        let size = self.src.record(addr)?.header.size();
        self.note_sized(addr, size)
    }

    /// A record whose size the pointer to it gives: a chunk is never read.
    fn note_sized(&mut self, addr: u64, size: u64) -> Result<bool> {
        if !self.seen.insert(addr) {
            return Ok(false);
        }
        let seg = ((addr - DATA_START) / self.seg_size) as usize;
        if let Some(l) = self.live.get_mut(seg) {
            *l += size;
        }
        self.records += 1;
        self.bytes += size;
        self.ranges.push((addr, size));
        Ok(true)
    }

    /// A layer, container or volume tree with the block maps and chunks of its values.
    pub fn tree(&mut self, root: u64) -> Result<()> {
        self.tree_at(root, 0)
    }

    fn tree_at(&mut self, root: u64, depth: u32) -> Result<()> {
        too_deep(depth, root)?;
        if root == 0 || !self.note(root)? {
            return Ok(());
        }
        let view = load_view(self.src, root)?;
        for i in 0..view.len() {
            if view.is_leaf() {
                if let Body::Blocks { height, root, .. } = Entry::decode(view.val(i)?)?.body {
                    self.map(height, root)?;
                }
            } else {
                self.tree_at(view.child(i)?, depth + 1)?;
            }
        }
        Ok(())
    }

    fn map(&mut self, h: u8, root: u64) -> Result<()> {
        if root == 0 || !self.note(root)? {
            return Ok(());
        }
        if h == 1 {
            for p in blockmap::leaf_ptrs(self.src, root)?
                .into_iter()
                .filter(|p| !p.is_hole())
            {
                if self.note_sized(p.addr, p.size())? {
                    self.chunks.push(p);
                }
            }
            return Ok(());
        }
        for kid in blockmap::interior_kids(self.src, root, h)?
            .into_iter()
            .filter(|&k| k != 0)
        {
            self.map(h - 1, kid)?;
        }
        Ok(())
    }

    /// The catalog's own nodes and every tree it names.
    pub fn catalog(&mut self, root: u64) -> Result<()> {
        self.nodes(root)?;
        self.catalog_trees(root)
    }

    /// Every tree the catalog names, without the catalog's nodes (which gc rewrites).
    pub fn catalog_trees(&mut self, root: u64) -> Result<()> {
        for (k, v) in catalog_entries(self.src, root)? {
            if let Some(r) = tree_root_of(&k, &v)? {
                self.tree(r)?;
            }
        }
        Ok(())
    }

    /// A plain B-tree's nodes (catalog, chunk-index runs).
    pub fn nodes(&mut self, root: u64) -> Result<()> {
        self.nodes_at(root, 0)
    }

    fn nodes_at(&mut self, root: u64, depth: u32) -> Result<()> {
        too_deep(depth, root)?;
        if root == 0 || !self.note(root)? {
            return Ok(());
        }
        let view = load_view(self.src, root)?;
        if !view.is_leaf() {
            for i in 0..view.len() {
                self.nodes_at(view.child(i)?, depth + 1)?;
            }
        }
        Ok(())
    }
}

pub(crate) fn catalog_entries<S: Source + ?Sized>(src: &S, root: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    DiskIter::new(src, root, &[])?
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect()
}

/// The tree root a catalog entry names, if it names one.
pub(crate) fn tree_root_of(k: &[u8], v: &[u8]) -> Result<Option<u64>> {
    Ok(match k.first() {
        Some(&LAYER) if k.len() == 17 => Some(LayerInfo::decode(Id::from_slice(&k[1..])?, v)?.root),
        Some(&CONTAINER) if k.len() == 17 => Some(ContainerInfo::decode(Id::from_slice(&k[1..])?, v)?.root),
        Some(&VOLUME) => Some(VolumeInfo::decode("", v)?.root),
        _ => None,
    })
}

/// Copies live records out of victim segments and rewrites what points at them.
pub(crate) struct Evacuate<'a, 'w> {
    w: &'a mut Writer<'w>,
    seg_size: u64,
    victim: Vec<bool>,
    memo: HashMap<u64, u64>,
    pub records_moved: u64,
    pub bytes_moved: u64,
}

impl<'a, 'w> Evacuate<'a, 'w> {
    pub fn new(w: &'a mut Writer<'w>, seg_size: u64, victim: Vec<bool>) -> Self {
        Evacuate {
            w,
            seg_size,
            victim,
            memo: HashMap::new(),
            records_moved: 0,
            bytes_moved: 0,
        }
    }

    fn is_victim(&self, addr: u64) -> bool {
        self.victim
            .get(((addr - DATA_START) / self.seg_size) as usize)
            .copied()
            .unwrap_or(false)
    }

    fn copy(&mut self, addr: u64) -> Result<u64> {
        let rec = self.w.record(addr)?.to_prepared();
        let new = self.w.append(&rec)?;
        self.records_moved += 1;
        self.bytes_moved += rec.size();
        Ok(new)
    }

    /// The pointer a chunk has after evacuation (the record moves verbatim: same crc).
    pub fn chunk(&mut self, p: ChunkPtr) -> Result<ChunkPtr> {
        if p.is_hole() || !self.is_victim(p.addr) {
            return Ok(p);
        }
        if let Some(&n) = self.memo.get(&p.addr) {
            return Ok(p.moved_to(n));
        }
        p.check(&self.w.record(p.addr)?.header)?;
        let n = self.copy(p.addr)?;
        self.memo.insert(p.addr, n);
        Ok(p.moved_to(n))
    }

    fn map(&mut self, h: u8, root: u64) -> Result<u64> {
        if root == 0 {
            return Ok(0);
        }
        if let Some(&n) = self.memo.get(&root) {
            return Ok(n);
        }
        let n = if h == 1 {
            let ptrs = blockmap::leaf_ptrs(self.w, root)?;
            let moved = ptrs.iter().map(|&p| self.chunk(p)).collect::<Result<Vec<_>>>()?;
            if moved == ptrs && !self.is_victim(root) {
                root
            } else {
                blockmap::write_leaf(self.w, &moved)?
            }
        } else {
            let kids = blockmap::interior_kids(self.w, root, h)?;
            let moved = kids.iter().map(|&k| self.map(h - 1, k)).collect::<Result<Vec<_>>>()?;
            if moved == kids && !self.is_victim(root) {
                root
            } else {
                blockmap::write_interior(self.w, h, &moved)?
            }
        };
        self.memo.insert(root, n);
        Ok(n)
    }

    /// The root a layer tree has after evacuation (unchanged paths keep their nodes).
    pub fn tree(&mut self, root: u64) -> Result<u64> {
        self.tree_at(root, 0)
    }

    fn tree_at(&mut self, root: u64, depth: u32) -> Result<u64> {
        too_deep(depth, root)?;
        if root == 0 {
            return Ok(0);
        }
        if let Some(&n) = self.memo.get(&root) {
            return Ok(n);
        }
        let (leaf, keys, vals, kids) = {
            let view = load_view(self.w, root)?;
            let keys: Vec<Vec<u8>> = (0..view.len())
                .map(|i| view.key(i).map(<[u8]>::to_vec))
                .collect::<Result<_>>()?;
            if view.is_leaf() {
                let vals: Vec<Vec<u8>> = (0..view.len())
                    .map(|i| view.val(i).map(<[u8]>::to_vec))
                    .collect::<Result<_>>()?;
                (true, keys, vals, Vec::new())
            } else {
                let kids: Vec<u64> = (0..view.len()).map(|i| view.child(i)).collect::<Result<_>>()?;
                (false, keys, Vec::new(), kids)
            }
        };
        let mut changed = self.is_victim(root);
        let enc = if leaf {
            let mut new_vals = Vec::with_capacity(vals.len());
            for v in vals {
                let mut e = Entry::decode(&v)?;
                if let Body::Blocks {
                    shift,
                    height,
                    root: map,
                } = e.body
                {
                    let m = self.map(height, map)?;
                    if m != map {
                        e.body = Body::Blocks { shift, height, root: m };
                        changed = true;
                        new_vals.push(e.encode());
                        continue;
                    }
                }
                new_vals.push(v);
            }
            node::encode_leaf(
                keys.iter()
                    .map(|k| k.as_slice())
                    .zip(new_vals.iter().map(|v| v.as_slice())),
            )
        } else {
            let mut new_kids = Vec::with_capacity(kids.len());
            for &k in &kids {
                let n = self.tree_at(k, depth + 1)?;
                changed |= n != k;
                new_kids.push(n);
            }
            node::encode_branch(keys.iter().map(|k| k.as_slice()).zip(new_kids))
        };
        let n = if changed {
            self.w.append(&record::prepare(Kind::Node, &enc, Compression::None))?
        } else {
            root
        };
        self.memo.insert(root, n);
        Ok(n)
    }

    /// Rebuilds the catalog with evacuated roots and the given segments marked free.
    pub fn catalog(&mut self, root: u64, freed: &[u64]) -> Result<u64> {
        let mut entries = Vec::new();
        for (k, v) in catalog_entries(self.w, root)? {
            match tree_root_of(&k, &v)? {
                Some(r) => {
                    let n = self.tree(r)?;
                    entries.push((
                        k.clone(),
                        if n == r {
                            v
                        } else {
                            crate::format::catalog::with_tree(&k, &v, n, None)?
                        },
                    ));
                }
                None => entries.push((k, v)),
            }
        }
        for &seg in freed {
            let mut k = vec![FREE];
            k.extend_from_slice(&seg.to_be_bytes());
            entries.push((k, Vec::new()));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        btree::build(self.w, entries)
    }

    /// One chunk-index run of the indexed chunks still live, at their new addresses. Built
    /// from the old runs (hash and pointer), so no chunk is read for its hash; a live chunk
    /// no run names (a copy another writer's commit also stored) stays unindexed, as it was.
    pub fn index(&mut self, old_runs: &[Run], live_chunks: &[ChunkPtr]) -> Result<Vec<Run>> {
        let live: HashMap<u64, ChunkPtr> = live_chunks.iter().map(|p| (p.addr, *p)).collect();
        let mut entries: Vec<(Hash, ChunkPtr)> = Vec::with_capacity(live_chunks.len());
        for run in old_runs {
            let items: Vec<(Hash, ChunkPtr)> = DiskIter::new(self.w, run.root, &[])?
                .map(|item| {
                    let (k, v) = item?;
                    let hash: Hash = k
                        .try_into()
                        .map_err(|_| Error::corrupt("chunk index key of wrong size"))?;
                    Ok((hash, chunk_index::entry_ptr(v)?))
                })
                .collect::<Result<_>>()?;
            for (hash, p) in items {
                match live.get(&p.addr) {
                    None => continue,
                    Some(l) if *l != p => {
                        return Err(Error::corrupt(format!(
                            "chunk index and block map disagree about the chunk at {:#x}",
                            p.addr
                        )))
                    }
                    Some(_) => entries.push((hash, self.chunk(p)?)),
                }
            }
        }
        entries.sort_unstable_by_key(|e| e.0);
        entries.dedup_by(|a, b| a.0 == b.0);
        let count = entries.len() as u64;
        if count == 0 {
            return Ok(Vec::new());
        }
        let root = btree::build(
            self.w,
            entries.into_iter().map(|(h, a)| (h.to_vec(), chunk_index::entry(a))),
        )?;
        Ok(vec![Run { root, count }])
    }
}

/// Page-aligned ranges in `[start, end)` that hold no kept record: the holes to punch.
pub(crate) fn dead_ranges(keep: &mut [(u64, u64)], start: u64, end: u64) -> Vec<(u64, u64)> {
    const PAGE: u64 = 4096;
    keep.sort_unstable();
    let mut out = Vec::new();
    let mut at = start;
    let gap = |from: u64, to: u64, out: &mut Vec<(u64, u64)>| {
        let (a, b) = (from.div_ceil(PAGE) * PAGE, to / PAGE * PAGE);
        if b > a {
            out.push((a, b - a));
        }
    };
    for &(addr, size) in keep.iter() {
        if addr + size <= start || addr >= end {
            continue;
        }
        if addr > at {
            gap(at, addr, &mut out);
        }
        at = at.max(addr + size);
    }
    if end > at {
        gap(at, end, &mut out);
    }
    out
}

/// Segments already given back, from the catalog.
pub(crate) fn freed_segments<S: Source + ?Sized>(src: &S, catalog_root: u64) -> Result<HashSet<u64>> {
    let mut out = HashSet::new();
    for item in DiskIter::new(src, catalog_root, &[FREE])? {
        let (k, _) = item?;
        if k.first() != Some(&FREE) {
            break;
        }
        let idx: [u8; 8] = k[1..]
            .try_into()
            .map_err(|_| Error::corrupt("free-segment entry of wrong size"))?;
        out.insert(u64::from_be_bytes(idx));
    }
    Ok(out)
}

impl Store {
    /// Collects garbage: finds what is live (every layer, container and volume, and every
    /// snapshot an open [`Layer`](crate::Layer) handle reads), moves the live records out of segments that
    /// are almost all garbage (under 5% live), commits durably, then gives every dead page
    /// back to the file system (hole punching), so the file's allocated size drops. A crash at
    /// any point leaves the last commit intact.
    pub fn gc(&self) -> Result<GcReport> {
        self.gc_with(0.05)
    }

    /// As [`Store::gc`], evacuating segments whose live share is below `threshold` (0..=1):
    /// more moving, less fragmentation.
    pub fn gc_with(&self, threshold: f64) -> Result<GcReport> {
        let serial = self.serialise_commits()?;
        // gc moves and frees records anywhere in the file: it runs as the only writer.
        let io = self.inner.segs.io();
        if self.inner.writable {
            io.lock(crate::io::Exclusive::OnlyWriter, self.inner.wait)?;
        }
        let r = self.write(|inner, st| {
            // Checked under the writer lock, which builders and verify register under.
            if inner.builders.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                return Err(Error::InUse(
                    "a layer is being built; finish or drop it before gc".into(),
                ));
            }
            if inner.verifying.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                return Err(Error::InUse("a verify is reading the store; gc after it".into()));
            }
            // gc's commits are about giving space back, not zeroing more ahead.
            st.txn.no_zero_ahead = true;
            let r = collect(&serial, inner, st, threshold);
            st.txn.no_zero_ahead = false;
            r
        });
        // gc's own result first: a failure to let go is the kernel's to clean up at close.
        if self.inner.writable {
            let _ = io.unlock(crate::io::Exclusive::OnlyWriter);
        }
        r
    }
}

/// Every chunk the index runs name, as (address, record size).
fn indexed_chunks<S: Source + ?Sized>(src: &S, runs: &[Run]) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for run in runs {
        for item in DiskIter::new(src, run.root, &[])? {
            let (_, v) = item?;
            let p = chunk_index::entry_ptr(v)?;
            out.push((p.addr, p.size()));
        }
    }
    Ok(out)
}

/// `[verify_from, tail)` of each valid superblock copy whose records open would re-check.
fn unchecked_ranges(io: &dyn crate::io::Io) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for off in SLOT_OFFSETS.iter().flatten() {
        if let Some(sb) = Superblock::decode(&crate::txn::read_page(io, *off)?) {
            if sb.verify_from < sb.tail {
                out.push((sb.verify_from, sb.tail - sb.verify_from));
            }
        }
    }
    Ok(out)
}

/// Whether anything awaits a commit: changed trees, catalog entries or appended records.
fn pending(st: &State) -> bool {
    !st.touched.is_empty()
        || !st.touched_volumes.is_empty()
        || st.txn.catalog.is_dirty()
        || st.txn.own_unsynced()
        || st.txn.app.tail() != st.txn.last_sb.tail
}

/// gc's work under the writer lock; see [`Store::gc`].
fn collect(serial: &MutexGuard<'_, ()>, inner: &Inner, st: &mut State, threshold: f64) -> Result<GcReport> {
    // Everything gc frees or moves lies below its tail's segment or past its tail. Other
    // writers (gone now) may have left live records past this writer's segment: then its
    // appends move to a new segment past them, after what no commit reaches is given back
    // (on a full disk, that is what lets it append).
    let high = st.txn.last_sb.high.max(st.txn.app.tail());
    if !st.txn.app.lane_reaches(high) {
        punch_past_tail(inner, high)?;
        st.txn.app.next_segment(&inner.segs)?;
    }
    // With nothing pending, no commit: a reader of the newest commit stays a reader of the
    // state gc works on, which it may then clean around.
    if pending(st) {
        commit_locked(serial, inner, st, Durability::Immediate)?;
    }
    // First what lies past the tail: on a full disk it is what lets the rest of gc append.
    // No commit, old or new, references it, so no reader anywhere can need it.
    let allocated_at_start = inner.segs.io().allocated()?;
    punch_past_tail(inner, st.txn.app.tail())?;
    let io = inner.segs.io();
    // A reader of an older commit may reach anything: give back nothing more. A reader of
    // this one (the state marked below) is cleaned around: nothing it reaches moves or goes.
    let generation = st.txn.generation;
    if let Some(g) = io.oldest_reader(generation)? {
        return Ok(GcReport {
            bytes_freed: allocated_at_start.saturating_sub(io.allocated()?),
            deferred_for_reader: Some(g),
            ..Default::default()
        });
    }
    let readers_now = io.oldest_reader(generation + 1)?.is_some();
    let seg_size = inner.header.segment_size;
    let segments = inner.segs.segment_count();
    let tail_seg = (st.txn.app.tail() - DATA_START) / seg_size;
    let catalog_root = st.txn.last_sb.catalog_root;
    let view = Writer::view(&inner.segs, &st.txn.app);
    let mut live = Mark::new(&view, seg_size, segments);
    // The catalog itself is rebuilt below, so its old nodes are not kept.
    live.catalog_trees(catalog_root)?;
    let mut pinned = Mark::new(&view, seg_size, segments);
    for r in inner
        .pins
        .lock()
        .map(|p| p.keys().copied().collect())
        .unwrap_or_else(|_| Vec::new())
    {
        pinned.tree(r)?;
    }
    // This commit's own catalog and index nodes, which gc rewrites: a reader of it needs them.
    let old_runs = st.txn.chunks.runs().to_vec();
    let this_commit: Vec<(u64, u64)> = {
        let mut m = Mark::new(&view, seg_size, segments);
        m.nodes(catalog_root)?;
        for run in &old_runs {
            m.nodes(run.root)?;
        }
        m.ranges
    };
    let freed_before = freed_segments(&view, catalog_root)?;
    let candidates: Vec<u64> = (0..tail_seg)
        .filter(|s| !freed_before.contains(s) && pinned.live[*s as usize] == 0)
        .filter(|s| (live.live[*s as usize] as f64) < threshold * seg_size as f64)
        .collect();
    // Nothing a reader of this commit reaches may move: no evacuation while there is one.
    let deferred = (readers_now && !candidates.is_empty()).then_some(generation);
    let victims = if readers_now { Vec::new() } else { candidates };
    let mut report = GcReport {
        deferred_for_reader: deferred,
        live_records: live.records,
        live_bytes: live.bytes,
        segments_scanned: segments,
        ..Default::default()
    };
    let old_tail = st.txn.app.tail();
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
    evacuate(inner, st, &mut report, is_victim, &chunks, catalog_root, &victims)?;
    // Set before the commit so that the superblock records it (the commit appends no more).
    st.txn.app.set_used(kept_bytes + (st.txn.app.tail() - old_tail));
    commit_locked(serial, inner, st, Durability::Immediate)?;
    // Only now, with the new state durable, give the dead bytes back. A reader that took up
    // the marked commit meanwhile keeps all it reaches: the victims (punched by a later gc,
    // which punches freed segments again) and the old catalog and index nodes.
    let zeroed = st.txn.app.take_zeroed();
    let late_reader = io.oldest_reader(st.txn.generation)?;
    let punched_victims: &[u64] = if late_reader.is_some() { &[] } else { &victims };
    if late_reader.is_some() || readers_now {
        keep.extend(this_commit.iter().copied());
        // The marked commit's chunk index still names dead chunks (only gc drops them from
        // it): a reader of that commit may look them up, and verify reads every one.
        let view = Writer::view(&inner.segs, &st.txn.app);
        keep.extend(indexed_chunks(&view, &old_runs)?);
    }
    // Records a reader still inside open may be checking: the unsynced range of each slot's
    // superblock (at most a few MiB).
    keep.extend(unchecked_ranges(io.as_ref())?);
    if late_reader.is_some() && !victims.is_empty() {
        report.deferred_for_reader = late_reader;
    }
    let dead = Dead {
        victims: punched_victims,
        evacuated: &victims,
        freed_before: &freed_before,
        tail_seg,
        old_tail,
        new_tail: st.txn.app.tail(),
    };
    punch(inner, zeroed, &dead, &mut keep)?;
    report.segments_freed = punched_victims.len() as u64;
    report.bytes_freed = allocated_at_start.saturating_sub(inner.segs.io().allocated()?);
    Ok(report)
}

/// Rebuilds the chunk index from the live chunks (dead ones must not be found by dedup) and
/// the catalog with every tree moved out of the victim segments; drops the loaded trees.
fn evacuate(
    inner: &Inner,
    st: &mut State,
    report: &mut GcReport,
    is_victim: Vec<bool>,
    chunks: &[ChunkPtr],
    catalog_root: u64,
    victims: &[u64],
) -> Result<()> {
    let old_runs = st.txn.chunks.runs().to_vec();
    let mut w = Writer {
        segs: &inner.segs,
        app: &mut st.txn.app,
    };
    let mut ev = Evacuate::new(&mut w, inner.header.segment_size, is_victim);
    let runs = ev.index(&old_runs, chunks)?;
    let new_catalog = ev.catalog(catalog_root, victims)?;
    report.records_moved = ev.records_moved;
    report.bytes_moved = ev.bytes_moved;
    st.txn.catalog = crate::txn::Catalog::at(new_catalog);
    st.txn.chunks = ChunkIndex::new(runs);
    st.containers.clear();
    st.mounts.clear();
    st.volumes.clear();
    Ok(())
}

/// Gives back every byte past `tail`: no commit references it, and under the writer lock,
/// after a commit, no pending append holds it.
fn punch_past_tail(inner: &Inner, tail: u64) -> Result<()> {
    let io = inner.segs.io();
    let from = tail.div_ceil(PAGE as u64) * PAGE as u64;
    let file_len = io.len()?;
    if file_len > from {
        io.punch_hole(from, file_len - from)?;
    }
    Ok(())
}

/// What gc found dead, for punching.
struct Dead<'a> {
    /// Segments to punch whole.
    victims: &'a [u64],
    /// Segments gc moved records out of: never punched piecemeal (a reader may still use them).
    evacuated: &'a [u64],
    freed_before: &'a HashSet<u64>,
    tail_seg: u64,
    old_tail: u64,
    /// The tail gc's own commit left: nothing at or past it is referenced by any commit.
    new_tail: u64,
}

/// Gives dead bytes back to the file system: the zeros written ahead of the tail, the victim
/// segments, the dead ranges between kept records elsewhere, and everything past the tail
/// (work that failed or was killed before its commit: no commit references it).
fn punch(inner: &Inner, zeroed: Option<(u64, u64)>, dead: &Dead, keep: &mut [(u64, u64)]) -> Result<()> {
    let io = inner.segs.io();
    let seg_size = inner.header.segment_size;
    if let Some((at, len)) = zeroed {
        let start = at.div_ceil(PAGE as u64) * PAGE as u64;
        if at + len > start {
            io.punch_hole(start, at + len - start)?;
        }
    }
    punch_past_tail(inner, dead.new_tail)?;
    // Freed segments hold nothing any commit reaches (addresses are never reused): punching
    // them again costs nothing and catches any a deferred gc left allocated.
    for v in dead.victims.iter().chain(dead.freed_before) {
        io.punch_hole(DATA_START + v * seg_size, seg_size)?;
    }
    let untouched = |s: &u64| !dead.freed_before.contains(s) && !dead.evacuated.contains(s);
    for s in (0..=dead.tail_seg).filter(untouched) {
        let start = DATA_START + s * seg_size;
        let end = (start + seg_size).min(dead.old_tail);
        for (a, len) in dead_ranges(keep, start, end) {
            io.punch_hole(a, len)?;
        }
    }
    Ok(())
}
