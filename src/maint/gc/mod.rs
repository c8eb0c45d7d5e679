//! Garbage collection: mark what the catalog (and every snapshot an open handle holds)
//! reaches, evacuate segments whose live share is low (copy their live records to gc's
//! appends, rewriting only the tree paths that point at moved records), give whole free
//! extents to the free pool for any writer to reuse, cut the file short past the last extent
//! in use, and hand dead bytes back to the file system. Cost follows live metadata and moved
//! data, never the file size.

mod evacuate;
mod mark;
mod space;

use crate::error::{Error, Result};
use crate::format::superblock::{Run, Superblock, DATA_START, SLOT_OFFSETS};
use crate::io::{Source, Writer, EXTENT};
use crate::store::{commit_locked, Inner, State, Store};
use crate::tree::btree::DiskIter;
use crate::tree::chunk_index;
use crate::txn::Durability;
use std::collections::HashSet;
use std::sync::MutexGuard;

pub(crate) use mark::{catalog_entries, tree_root_of, Mark};

/// What a collection found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Records reachable from the catalog and open snapshots.
    pub live_records: u64,
    pub live_bytes: u64,
    pub segments_scanned: u64,
    pub records_moved: u64,
    pub bytes_moved: u64,
    /// Segments evacuated and given to the free pool.
    pub segments_freed: u64,
    /// Bytes handed back to the file system (punched or cut off).
    pub bytes_freed: u64,
    /// Bytes in the free pool after this gc: space any writer reuses before the file grows.
    pub pool_bytes: u64,
    /// Bytes cut off the end of the file.
    pub cut_bytes: u64,
    /// Set when another process was reading an older commit (this generation): gc gave back
    /// only what no commit references (past the tail) and moved nothing; run it again later.
    pub deferred_for_reader: Option<u64>,
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
            st.txn.app.track_extents(true);
            let r = collect(&serial, inner, st, threshold);
            st.txn.app.track_extents(false);
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
/// Only copies whose range lies within the file count: a copy claiming more is no commit an
/// open could take, and its numbers must not drive a walk over the address space.
fn unchecked_ranges(io: &dyn crate::io::Io) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let len = io.len()?;
    for off in SLOT_OFFSETS.iter().flatten() {
        if let Some(sb) = Superblock::decode(&crate::txn::read_page(io, *off)?) {
            if DATA_START <= sb.verify_from && sb.verify_from < sb.tail && sb.tail <= len {
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
        || !st.txn.app.claims().is_empty()
}

/// On a nearly full disk, before gc moves anything: a durable commit whose chunk index names
/// the live chunks alone, then every page no commit reaches any more is given back (the
/// marked commit's catalog and pool records and the ranges an open may be checking stay),
/// so that the records gc moves have room. Skipped beside a reader of the marked commit.
#[allow(clippy::too_many_arguments)]
fn make_room(
    serial: &MutexGuard<'_, ()>,
    inner: &Inner,
    st: &mut State,
    chunks: &[crate::format::ptr::ChunkPtr],
    marked: Vec<(u64, u64)>,
    this_commit: &[(u64, u64)],
    (own, old_tail): (&HashSet<u64>, u64),
    (pool, high, mark_len): (&crate::format::pool::Pool, u64, u64),
) -> Result<()> {
    let io = inner.segs.io();
    evacuate::index_of_live(inner, st, chunks)?;
    // Twice: the second replaces the marked commit in its slot, so that no commit left in
    // the file (even one open would fall back to) names the chunks given back below.
    commit_locked(serial, inner, st, Durability::Immediate)?;
    commit_locked(serial, inner, st, Durability::Immediate)?;
    if io.oldest_reader(st.txn.generation)?.is_some() {
        return Ok(());
    }
    let mut guard = marked;
    guard.extend(this_commit.iter().copied());
    guard.extend(unchecked_ranges(io.as_ref())?);
    let dead = space::Dead {
        mark_pool: pool,
        final_pool: &crate::format::pool::Pool::default(),
        skip_segs: HashSet::new(),
        own,
        old_tail,
        seg_size: inner.header.segment_size,
        high,
        final_high: u64::MAX,
        mark_len,
        reserve: 0,
    };
    space::punch(inner, &dead, &guard)
}

/// Whether the file system has room for gc to append `bytes` (with a margin for its
/// catalog, index and pool records). Unknown counts as no room: punching first is safe.
fn room_for(inner: &Inner, bytes: u64) -> bool {
    const MARGIN: u64 = 64 << 20;
    rustix::fs::statvfs(&inner.path).is_ok_and(|v| v.f_bavail.saturating_mul(v.f_frsize) > bytes.saturating_add(MARGIN))
}

/// The extent starts of segment `s` that lie below `len`.
fn extents_of(s: u64, seg_size: u64, len: u64) -> impl Iterator<Item = u64> {
    let start = DATA_START + s * seg_size;
    (start..(start + seg_size).min(len)).step_by(EXTENT as usize)
}

/// Where gc stands once its first steps are done.
enum Settled {
    /// The commit gc marks: the file's length then, and its `high`.
    Marked { len: u64, high: u64 },
    /// A reader of an older commit (this generation) is open: gc gives back nothing more.
    Deferred(u64),
}

/// gc's first steps: gives back what no commit reaches, moves gc's appends to where they let
/// the file's end empty, and commits what is pending.
fn settle(serial: &MutexGuard<'_, ()>, inner: &Inner, st: &mut State) -> Result<Settled> {
    // gc appends into the lowest extent of the pool when one lies below its own, so that the
    // end of the file empties and can be cut off; and away from its extent when that one does
    // not hold `high` (other writers, gone now, left records past it). What lies past `high`
    // no commit reaches: given back first, since on a full disk it is what lets gc append.
    let high = st.txn.last_sb.high.max(st.txn.app.high());
    let pool = inner.segs.pool_or_empty(&st.txn.last_sb);
    let lane = st.txn.app.lane_start();
    let lower = pool.extents(EXTENT).next().is_some_and(|e| lane.is_none_or(|l| e < l));
    if !st.txn.app.lane_reaches(high) || lower || lane.is_none() {
        space::punch_past(inner, high)?;
        st.txn.app.next_segment(&inner.segs)?;
    }
    // With nothing pending, no commit: a reader of the newest commit stays a reader of the
    // state gc works on, which it may then clean around.
    if pending(st) {
        commit_locked(serial, inner, st, Durability::Immediate)?;
    }
    let len_at_start = inner.segs.io().len()?;
    let high = st.txn.last_sb.high;
    // Zeros written ahead of the tail are past `high` too (or in gc's own extent, kept).
    let _ = st.txn.app.take_zeroed();
    space::punch_past(inner, high)?;
    // A reader of an older commit may reach anything: give back nothing more. A reader of
    // this one (the state marked below) is cleaned around: nothing it reaches moves or goes.
    let generation = st.txn.generation;
    Ok(match inner.segs.io().oldest_reader(generation)? {
        Some(g) => Settled::Deferred(g),
        None => Settled::Marked {
            len: len_at_start,
            high,
        },
    })
}

/// gc's work under the writer lock; see [`Store::gc`].
///
/// Long on purpose: mark, choose, evacuate, commit, pool and punch all work from one marked
/// commit (its high, tail, pool, gc's own extents, the marks and who reads it), and the order
/// of those steps is what keeps a reader of that commit and a power cut safe; split further,
/// each step would take a dozen of these values and the order would no longer be on one page.
fn collect(serial: &MutexGuard<'_, ()>, inner: &Inner, st: &mut State, threshold: f64) -> Result<GcReport> {
    let io = inner.segs.io();
    let seg_size = inner.header.segment_size;
    let allocated_at_start = io.allocated()?;
    let (len_at_start, high) = match settle(serial, inner, st)? {
        Settled::Marked { len, high } => (len, high),
        Settled::Deferred(g) => {
            return Ok(GcReport {
                bytes_freed: allocated_at_start.saturating_sub(io.allocated()?),
                deferred_for_reader: Some(g),
                ..Default::default()
            })
        }
    };
    let generation = st.txn.generation;
    let readers_now = io.oldest_reader(generation + 1)?.is_some();
    let segments = inner.segs.segment_count();
    let lane_extent = st.txn.app.lane_start().expect("gc took an extent above");
    let old_tail = st.txn.app.tail();
    // gc's own extents, which it never frees: every one it took, and its run of bytes from
    // the extent holding its tail to the end of its lane.
    let extent_of = |a: u64| a - (a - DATA_START) % EXTENT;
    let mut own: HashSet<u64> = st.txn.app.tracked().iter().copied().collect();
    own.insert(lane_extent);
    own.extend((extent_of(old_tail)..=lane_extent).step_by(EXTENT as usize));
    let own_segs: HashSet<u64> = own.iter().map(|&e| (e - DATA_START) / seg_size).collect();
    let catalog_root = st.txn.last_sb.catalog_root;
    let pool = inner.segs.pool_or_empty(&st.txn.last_sb);
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
        m.pool_record(st.txn.last_sb.pool);
        for run in &old_runs {
            m.nodes(run.root)?;
        }
        m.ranges
    };
    // A segment with extents in the pool is never a victim: gc's own appends may go there.
    let pooled_any = |s: u64| extents_of(s, seg_size, len_at_start).any(|e| pool.contains(e, EXTENT));
    let candidates: Vec<u64> = (0..segments)
        .filter(|&s| !own_segs.contains(&s) && !pooled_any(s) && pinned.live[s as usize] == 0)
        .filter(|&s| (live.live[s as usize] as f64) < threshold * seg_size as f64)
        .collect();
    // Nothing a reader of this commit reaches may move: no evacuation while there is one.
    let deferred = (readers_now && !candidates.is_empty()).then_some(generation);
    let victims = if readers_now { Vec::new() } else { candidates };
    let mut is_victim = vec![false; segments as usize];
    for v in &victims {
        is_victim[*v as usize] = true;
    }
    // Extents outside the victims with nothing live or pinned: free without moving anything.
    let idle: Vec<u64> = (0..live.live_ext.len() as u64)
        .map(|i| DATA_START + i * EXTENT)
        .filter(|&e| e + EXTENT <= len_at_start && !pool.contains(e, EXTENT))
        .filter(|&e| {
            let (i, s) = (((e - DATA_START) / EXTENT) as usize, (e - DATA_START) / seg_size);
            !own.contains(&e) && !is_victim[s as usize] && live.live_ext[i] == 0 && pinned.live_ext[i] == 0
        })
        .collect();
    let mut report = GcReport {
        deferred_for_reader: deferred,
        live_records: live.records,
        live_bytes: live.bytes,
        segments_scanned: segments,
        ..Default::default()
    };
    let chunks = std::mem::take(&mut live.chunks);
    // What stays where it is: live and pinned records outside the victim segments.
    let marked: Vec<(u64, u64)> = live.ranges.iter().chain(pinned.ranges.iter()).copied().collect();
    let mut keep = marked.clone();
    keep.retain(|(a, _)| !is_victim[((a - DATA_START) / seg_size) as usize]);
    keep.sort_unstable();
    keep.dedup();
    let kept_bytes: u64 = keep.iter().map(|r| r.1).sum();
    let mark_len = len_at_start.min(DATA_START + live.live_ext.len() as u64 * EXTENT);
    let to_move: u64 = victims.iter().map(|&v| live.live[v as usize]).sum();
    drop((live, pinned));
    let used_before = st.txn.app.used();
    if !room_for(inner, to_move) {
        make_room(
            serial,
            inner,
            st,
            &chunks,
            marked,
            &this_commit,
            (&own, old_tail),
            (&pool, high, mark_len),
        )?;
    }
    evacuate::evacuate(inner, st, &mut report, is_victim, &chunks, catalog_root)?;
    // Set before the commit so that the superblock records it.
    st.txn.app.set_used(kept_bytes + (st.txn.app.used() - used_before));
    // The pool record too is written anew, past the tail gc marked at.
    st.txn.pool_rewrite = true;
    let committed = commit_locked(serial, inner, st, Durability::Immediate);
    st.txn.pool_rewrite = false;
    committed?;
    // A reader of the marked commit (there from the start, or come while gc ran) keeps all it
    // reaches: the victims are not pooled (a later gc pools them) and the old catalog, index
    // and pool records stay, with every dead chunk the old index still names.
    let late_reader = io.oldest_reader(st.txn.generation)?;
    let readers = late_reader.is_some() || readers_now;
    if readers {
        keep.extend(this_commit.iter().copied());
        // The marked commit's chunk index still names dead chunks (only gc drops them from
        // it): a reader of that commit may look them up, and verify reads every one.
        let view = Writer::view(&inner.segs, &st.txn.app);
        keep.extend(indexed_chunks(&view, &old_runs)?);
    }
    if late_reader.is_some() && !victims.is_empty() {
        report.deferred_for_reader = late_reader;
    }
    // Idle extents hold nothing the marked commit reaches, so they are pooled even beside its
    // readers, unless a kept record or a range an open may be checking reaches into them.
    let unchecked = unchecked_ranges(io.as_ref())?;
    let touched: HashSet<u64> = keep
        .iter()
        .chain(unchecked.iter())
        .flat_map(|&(a, n)| {
            let first = (a.max(DATA_START) - DATA_START) / EXTENT;
            let last = (a.max(DATA_START) + n.max(1) - 1 - DATA_START) / EXTENT;
            (first..=last).map(|e| DATA_START + e * EXTENT)
        })
        .collect();
    let victim_extents = victims.iter().flat_map(|&s| extents_of(s, seg_size, len_at_start));
    let freed: Vec<u64> = (if readers { None } else { Some(victim_extents) })
        .into_iter()
        .flatten()
        .chain(idle.iter().copied().filter(|e| !touched.contains(e)))
        .collect();
    if !readers {
        report.segments_freed = victims.len() as u64;
    }
    let kept_end = keep.iter().map(|&(a, n)| a + n).max().unwrap_or(DATA_START);
    report.cut_bytes = pool_and_cut(serial, inner, st, freed, kept_end, &own)?;
    let pooling = !readers;
    // Records a reader still inside open may be checking: the unsynced range of each slot's
    // superblock (at most a few MiB).
    keep.extend(unchecked);
    let final_pool = inner.segs.pool_or_empty(&st.txn.last_sb);
    report.pool_bytes = final_pool.bytes(EXTENT);
    let skip_segs: HashSet<u64> = if pooling {
        HashSet::new()
    } else {
        victims.iter().copied().collect()
    };
    let own_final: HashSet<u64> = own.iter().chain(st.txn.app.tracked()).copied().collect();
    let dead = space::Dead {
        mark_pool: &pool,
        final_pool: &final_pool,
        skip_segs,
        own: &own_final,
        old_tail,
        seg_size,
        high,
        final_high: st.txn.last_sb.high,
        mark_len,
        reserve: space::reserve(report.live_bytes),
    };
    space::punch(inner, &dead, &keep)?;
    report.bytes_freed = allocated_at_start.saturating_sub(io.allocated()?);
    Ok(report)
}

/// The second commit of a gc: gives `freed` extents to the pool and, when the end of the file
/// is free, cuts it off. By now both superblock slots hold commits that reach none of them
/// (the marked commit's slot is overwritten by this one), and no reader reads older ones.
/// `kept_end` is the end of the highest record kept where it was: no cut goes below it.
fn pool_and_cut(
    serial: &MutexGuard<'_, ()>,
    inner: &Inner,
    st: &mut State,
    freed: Vec<u64>,
    kept_end: u64,
    own: &HashSet<u64>,
) -> Result<u64> {
    let io = inner.segs.io();
    // Room for the pool record first: taking an extent for it must happen before the cut is
    // chosen (the extent is in use then).
    st.txn.pool_add = freed;
    let room = st.txn.make_pool_room(&inner.segs);
    let freed = std::mem::take(&mut st.txn.pool_add);
    room?;
    let base = inner.segs.pool_or_empty(&st.txn.last_sb);
    // Nothing gc took (its claims, published or not, and extents it grew) is free.
    let taken: HashSet<u64> = st
        .txn
        .app
        .claims()
        .iter()
        .chain(st.txn.app.tracked())
        .chain(own)
        .copied()
        .collect();
    let free: HashSet<u64> = base
        .extents(EXTENT)
        .chain(freed.iter().copied())
        .filter(|e| !taken.contains(e))
        .collect();
    let len = io.len()?;
    // From the end of the last extent, whole or not: a cut-short last extent is in use.
    let mut top = DATA_START + len.saturating_sub(DATA_START).div_ceil(EXTENT) * EXTENT;
    while top > DATA_START && free.contains(&(top - EXTENT)) {
        top -= EXTENT;
    }
    // Never below what stays: gc's own appends (its extent is in use anyway) and kept records.
    let on_grid = |a: u64| DATA_START + a.saturating_sub(DATA_START).div_ceil(EXTENT) * EXTENT;
    let top = top.max(on_grid(st.txn.app.tail())).max(on_grid(kept_end));
    // Even with nothing to pool or cut this commit is made: it replaces the marked commit in
    // the other slot, so that no commit left in the file reaches what gc gives back below.
    st.txn.pool_add = freed;
    st.txn.pool_cut = (top < len).then_some(top);
    let r = commit_locked(serial, inner, st, Durability::Immediate);
    st.txn.pool_add = Vec::new();
    st.txn.pool_cut = None;
    r?;
    st.txn.app.forget_high();
    inner.segs.note_pooled(st.txn.last_sb.pooled);
    if top >= len {
        return Ok(0);
    }
    // The other slot still holds the marked commit's successor, whose `high` reaches past the
    // cut: one more durable commit (the same state) replaces it, so that both slots open
    // after the cut. Then cut, only when nobody reads a commit from before this gc.
    commit_locked(serial, inner, st, Durability::Immediate)?;
    if io.oldest_reader(st.txn.generation - 1)?.is_none() {
        // Synced at once: a later write past the cut must never find the cut undone.
        io.set_len(top)?;
        io.sync()?;
        inner.segs.shrink(top);
        return Ok(len - top);
    }
    Ok(0)
}
