//! Segments: the store file past its header is a row of fixed-size segments. Records are
//! appended at the tail through a write buffer and positioned writes; they are read back
//! through one lazily created read-only map per segment, with no lock on the read path.

use crate::error::{Error, Result};
use crate::format::pool::Pool;
use crate::format::record::{self, Header, Kind, Prepared, Record, ALIGN, HEADER_LEN};
use crate::format::superblock::{Superblock, DATA_START, PAGE, SLOT_OFFSETS};
use crate::io::{Exclusive, Io};
use memmap2::Mmap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Appends are gathered up to this size before one positioned write.
const FLUSH_AT: usize = 8 << 20;

/// A flush at least this large starts its writeback at once; a small commit's few bytes wait
/// for its sync, which costs one system call less.
const WRITEBACK_AT: usize = 1 << 20;
const TABLE_FANOUT: u64 = 1024;
/// At most a million segments (64 TiB at the default segment size).
pub const MAX_SEGMENTS: u64 = TABLE_FANOUT * TABLE_FANOUT;
/// A writer appends into extents of its own, taken from the end of the file; segments (at
/// least 4 MiB, a power of two) hold whole extents, and the largest record (a 1 MiB chunk and
/// its header) fits one. Small, so that a writer that leaves one early strands little.
pub const EXTENT: u64 = 2 << 20;
/// Another writer holds the allocation lock only while it grows the file.
const ALLOC_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

struct Seg {
    map: Mmap,
    /// One bit per 64-byte slot: set once the record starting there passed its crc.
    verified: Box<[AtomicU64]>,
}

/// A row of the two-level segment table, created on first use.
type SegRow = Box<[OnceLock<Seg>]>;

/// The read side of the segment area. Shared by all readers without locking.
pub struct Segments {
    /// This opening of a store, unique in the process: what a cache of records read keys on
    /// besides their address, so two stores' records never meet there.
    id: u64,
    io: Arc<dyn Io>,
    seg_size: u64,
    /// Segments that exist in the file.
    count: AtomicU64,
    /// End of the bytes written to the file; nothing past it is read.
    limit: AtomicU64,
    table: Box<[OnceLock<SegRow>]>,
    /// The header and superblock pages, mapped: a check for a newer commit reads them from
    /// memory (the page cache other processes' writes land in), with no system call.
    fixed: OnceLock<Mmap>,
    /// The `pooled` generation of the newest commit this process took up: when it changes,
    /// places of records this process checked may hold other records now.
    pooled_seen: AtomicU64,
}

/// An extent taken for a writer: grown at the end of the file, or claimed from the pool.
pub(crate) struct Taken {
    pub start: u64,
    pub claimed: bool,
}

impl Segments {
    pub fn new(io: Arc<dyn Io>, seg_size: u64, file_len: u64, limit: u64) -> Segments {
        // A last segment cut short (a copy that dropped trailing zeros) still holds records
        // below `limit`; nothing past the file's end is ever read.
        let count = file_len.saturating_sub(DATA_START).div_ceil(seg_size);
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Segments {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            io,
            seg_size,
            count: AtomicU64::new(count),
            limit: AtomicU64::new(limit),
            table: (0..TABLE_FANOUT).map(|_| OnceLock::new()).collect(),
            fixed: OnceLock::new(),
            pooled_seen: AtomicU64::new(0),
        }
    }

    /// Takes note of the `pooled` generation of a commit this process now reads. When it is
    /// new, extents gc gave back may have been taken and rewritten by other writers: every
    /// record is checked again on its next read. No handle of this process can still read a
    /// record of a pooled extent (gc pools only what no reader of any process can reach).
    pub fn note_pooled(&self, pooled: u64) {
        if self.pooled_seen.swap(pooled, Ordering::AcqRel) == pooled {
            return;
        }
        for row in self.table.iter().filter_map(|r| r.get()) {
            for seg in row.iter().filter_map(|c| c.get()) {
                seg.verified.iter().for_each(|w| w.store(0, Ordering::Relaxed));
            }
        }
    }

    /// A reader now reads a commit whose records all end below `high`: nothing past it is
    /// read (gc may have cut the file short past the new commit's `high`).
    pub fn settle_reader(&self, high: u64) {
        self.limit.store(high, Ordering::Release);
    }

    /// gc cut the file to `len`: nothing past it exists or is read.
    pub fn shrink(&self, len: u64) {
        let count = len.saturating_sub(DATA_START).div_ceil(self.seg_size);
        self.count.store(count, Ordering::Release);
        self.limit.fetch_min(len, Ordering::AcqRel);
    }

    /// The free pool a commit names: its pool record, which must be the very record the
    /// superblock names (its crc) and raw.
    pub fn pool_of(&self, sb: &Superblock) -> Result<Pool> {
        if sb.pool == 0 {
            return Ok(Pool::default());
        }
        let rec = self.read(sb.pool)?.expect(Kind::Pool)?;
        if rec.header.crc != sb.pool_crc || rec.header.codec != 0 {
            return Err(Error::corrupt(format!(
                "free pool record at {:#x} is not the one generation {} names",
                sb.pool, sb.generation
            )));
        }
        Pool::decode(rec.stored, sb.pool, DATA_START, EXTENT, self.io.len()?)
    }

    /// The pool of the newest commit in the file, as another writer may just have published it.
    fn newest_pool(&self) -> Result<Pool> {
        let mut newest: Option<Superblock> = None;
        for off in SLOT_OFFSETS.iter().flatten() {
            let mut page = [0u8; PAGE];
            self.fixed_bytes(*off, &mut page)?;
            if let Some(sb) = Superblock::decode(&page) {
                if newest.as_ref().is_none_or(|n| sb.generation > n.generation) {
                    newest = Some(sb);
                }
            }
        }
        let Some(sb) = newest else {
            return Ok(Pool::default());
        };
        let len = self.io.len()?;
        self.advance(len, len);
        // The newest superblock may be a commit torn by a crash, which open passed over: its
        // pool is used only when its record is whole and the very one it names (then it is a
        // part of the pool of the commit before it). Anything else grows the file instead.
        Ok(self.pool_or_empty(&sb))
    }

    /// The pool a commit names, or an empty one when its record is damaged: the pool only
    /// lists space to reuse, so without it writers grow the file (never overwriting
    /// anything), and the next gc, finding that space dead, lists it again. `verify` reports
    /// the damage.
    pub fn pool_or_empty(&self, sb: &Superblock) -> Pool {
        self.pool_of(sb).unwrap_or_default()
    }

    /// An extent of the pool nobody else claimed: `prefer` if it is one, else the lowest.
    /// `mine` are this writer's own claims (its locks do not keep it from itself).
    fn claim_from_pool(&self, prefer: u64, mine: &[u64]) -> Result<Option<u64>> {
        let pool = self.newest_pool()?;
        let first = (prefer != 0 && pool.contains(prefer, EXTENT)).then_some(prefer);
        for at in first.into_iter().chain(pool.extents(EXTENT)) {
            if mine.contains(&at) {
                continue;
            }
            let idx = (at - DATA_START) / EXTENT;
            match self.io.lock(Exclusive::Claim(idx), std::time::Duration::ZERO) {
                Ok(()) => return Ok(Some(at)),
                Err(Error::Busy { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Lets other writers take these extents again: a published commit lists them out of the
    /// pool. Under the allocation lock, so that no writer reads the pool from before that
    /// commit and then claims one of them.
    pub fn release_claims(&self, extents: &[u64]) -> Result<()> {
        if extents.is_empty() {
            return Ok(());
        }
        let io = &self.io;
        io.lock(Exclusive::Alloc, ALLOC_WAIT)?;
        let released = extents
            .iter()
            .try_for_each(|&at| io.unlock(Exclusive::Claim((at - DATA_START) / EXTENT)));
        let unlocked = io.unlock(Exclusive::Alloc);
        released.and(unlocked)
    }

    /// The bytes at `offset` of the fixed pages before the data area.
    pub fn fixed_bytes(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        if self.fixed.get().is_none() {
            let map = self.io.map(0, DATA_START as usize)?;
            let _ = self.fixed.set(map);
        }
        let map = self.fixed.get().expect("mapped above");
        let at = offset as usize;
        let src = map
            .get(at..at + out.len())
            .ok_or_else(|| Error::corrupt(format!("fixed page offset {offset:#x} out of range")))?;
        out.copy_from_slice(src);
        Ok(())
    }

    pub fn segment_size(&self) -> u64 {
        self.seg_size
    }

    pub fn io(&self) -> &Arc<dyn Io> {
        &self.io
    }

    pub fn segment_count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Acquire)
    }

    /// A reader's view moves on to a newer commit: the file grew to `file_len`, and records
    /// up to `limit` are committed. Never shrinks (another process's commit only appends).
    pub fn advance(&self, file_len: u64, limit: u64) {
        let count = file_len.saturating_sub(DATA_START).div_ceil(self.seg_size);
        self.count.fetch_max(count, Ordering::AcqRel);
        self.limit.fetch_max(limit, Ordering::AcqRel);
    }

    fn set_limit(&self, limit: u64) {
        self.limit.fetch_max(limit, Ordering::AcqRel);
    }

    /// An extent for this writer alone, under the store's allocation lock (so two writer
    /// processes never take the same one): from the free pool when it has one (`prefer`, the
    /// extent right after the writer's own, when that one is free), else by growing the file.
    fn take_extent(&self, prefer: u64, mine: &[u64]) -> Result<Taken> {
        let io = &self.io;
        io.lock(Exclusive::Alloc, ALLOC_WAIT)?;
        let taken = (|| {
            if let Some(start) = self.claim_from_pool(prefer, mine)? {
                return Ok(Taken { start, claimed: true });
            }
            let start = DATA_START + io.len()?.saturating_sub(DATA_START).div_ceil(EXTENT) * EXTENT;
            let seg = (start - DATA_START) / self.seg_size;
            if seg >= MAX_SEGMENTS {
                return Err(Error::Full(format!("the store reached {MAX_SEGMENTS} segments")));
            }
            io.set_len(start + EXTENT)?;
            self.count.fetch_max(seg + 1, Ordering::AcqRel);
            Ok(Taken { start, claimed: false })
        })();
        let unlocked = io.unlock(Exclusive::Alloc);
        let start = taken?;
        unlocked?;
        Ok(start)
    }

    fn seg(&self, idx: u64) -> Result<&Seg> {
        if idx >= self.segment_count() || idx >= MAX_SEGMENTS {
            return Err(Error::corrupt(format!("segment {idx} is past the end of the file")));
        }
        let outer = self.table[(idx / TABLE_FANOUT) as usize]
            .get_or_init(|| (0..TABLE_FANOUT).map(|_| OnceLock::new()).collect());
        let cell = &outer[(idx % TABLE_FANOUT) as usize];
        if let Some(seg) = cell.get() {
            return Ok(seg);
        }
        let map = self.io.map(DATA_START + idx * self.seg_size, self.seg_size as usize)?;
        let words = (self.seg_size / ALIGN).div_ceil(64) as usize;
        let verified = (0..words).map(|_| AtomicU64::new(0)).collect();
        let _ = cell.set(Seg { map, verified });
        Ok(cell.get().expect("segment cell was just set"))
    }

    /// Reads the record at `addr`, checking bounds always and its crc on first use.
    pub fn read(&self, addr: u64) -> Result<Record<'_>> {
        self.read_inner(addr, true)
    }

    fn read_inner(&self, addr: u64, cache: bool) -> Result<Record<'_>> {
        let limit = self.limit();
        check_address(addr, limit)?;
        let rel = addr - DATA_START;
        let seg = self.seg(rel / self.seg_size)?;
        let off = (rel % self.seg_size) as usize;
        let bytes = &seg.map[off..];
        let header = Header::parse(bytes, addr)?;
        check_extent(&header, addr, self.seg_size, limit)?;
        let stored = if header.kind == Kind::Pad {
            &bytes[..0]
        } else {
            &bytes[HEADER_LEN..HEADER_LEN + header.stored_len as usize]
        };
        let slot = off / ALIGN as usize;
        let (word, bit) = (&seg.verified[slot / 64], 1u64 << (slot % 64));
        if !cache || word.load(Ordering::Relaxed) & bit == 0 {
            header.check(bytes, stored, addr)?;
            if cache {
                word.fetch_or(bit, Ordering::Relaxed);
            }
        }
        Ok(Record {
            addr,
            header,
            stored,
            raw_header: &bytes[..HEADER_LEN],
        })
    }

    /// Walks the records in `[from, to)` without trusting the crc cache, returning the chain
    /// checksum of their crcs and their count (the recovery check of a one-sync commit).
    pub fn chain_of(&self, from: u64, to: u64) -> Result<(u32, u32)> {
        let mut chain = crc32fast::Hasher::new();
        let mut count = 0u32;
        let mut at = from;
        while at < to {
            let rec = self.read_inner(at, false)?;
            chain.update(&rec.header.crc.to_le_bytes());
            count = count.wrapping_add(1);
            at += rec.header.size();
        }
        if at != to {
            return Err(Error::corrupt("record chain overruns the committed tail"));
        }
        Ok((chain.finalize(), count))
    }
}

/// A record may start at `addr`: aligned, in the data area, its header below `limit`.
pub(crate) fn check_address(addr: u64, limit: u64) -> Result<()> {
    if addr < DATA_START || !(addr - DATA_START).is_multiple_of(ALIGN) {
        return Err(Error::corrupt(format!("record address {addr:#x} is misaligned")));
    }
    if addr.saturating_add(HEADER_LEN as u64) > limit {
        return Err(Error::corrupt(format!(
            "record address {addr:#x} is past the written end"
        )));
    }
    Ok(())
}

/// The record `header` describes at `addr` lies inside its segment and, unless a pad (whose
/// payload is never read), below the written end.
pub(crate) fn check_extent(header: &Header, addr: u64, seg_size: u64, limit: u64) -> Result<()> {
    if (addr - DATA_START) % seg_size + header.size() > seg_size {
        return Err(Error::corrupt(format!("record at {addr:#x} runs past its segment")));
    }
    if header.kind != Kind::Pad && addr + header.size() > limit {
        return Err(Error::corrupt(format!("record at {addr:#x} runs past the written end")));
    }
    Ok(())
}

/// Anything records can be read from: the committed file, or the writer's view of it.
pub trait Source {
    fn record(&self, addr: u64) -> Result<Record<'_>>;
    /// The store opening the records come from ([`Segments`]' id).
    fn store_id(&self) -> u64;
}

impl Source for Segments {
    fn record(&self, addr: u64) -> Result<Record<'_>> {
        self.read(addr)
    }
    fn store_id(&self) -> u64 {
        self.id
    }
}

/// The append side: the tail, the write buffer, and the running chain checksum of every
/// record appended since the last durable point.
pub struct Appender {
    buf: Vec<u8>,
    buf_start: u64,
    tail: u64,
    chain: crc32fast::Hasher,
    chain_count: u32,
    verify_from: u64,
    used: u64,
    /// Bytes from the tail up to here were written with zeros (allocated) ahead of need.
    zeroed_to: u64,
    /// End of the extent this writer appends into (its own: other writer processes append
    /// into theirs); 0 before it has one.
    lane_end: u64,
    /// The records since `verify_from` lie in one run of bytes (no jump to a new segment
    /// that was not the next one), so their chain can be walked at open.
    contiguous: bool,
    /// While a commit is being synced: the state of the records appended since its tail,
    /// which becomes the pending state once the commit is durable.
    after_cut: Option<Cut>,
    /// Extents this writer took from the free pool that no published commit has taken out
    /// of it yet (each held by its claim lock).
    claims: Vec<u64>,
    /// The end of the highest record this writer appended: with extents reused from the pool
    /// its tail may lie below records it wrote before.
    high: u64,
    /// While gc runs: every extent taken (claimed or grown), which gc never frees.
    tracked: Option<Vec<u64>>,
}

struct Cut {
    at: u64,
    chain: crc32fast::Hasher,
    count: u32,
    contiguous: bool,
}

/// How far ahead of the tail small commits keep the file written (allocated): a record
/// synced into allocated blocks costs the file system no allocation in the commit's sync.
const ZERO_AHEAD: u64 = 2 << 20;

impl Appender {
    pub fn new(tail: u64, used: u64) -> Appender {
        Appender {
            buf: Vec::new(),
            buf_start: tail,
            tail,
            chain: crc32fast::Hasher::new(),
            chain_count: 0,
            verify_from: tail,
            used,
            zeroed_to: tail,
            lane_end: 0,
            contiguous: true,
            after_cut: None,
            claims: Vec::new(),
            high: tail,
            tracked: None,
        }
    }

    /// Extents taken from the pool and not yet out of it in a published commit.
    pub fn claims(&self) -> &[u64] {
        &self.claims
    }

    /// A published commit took these claimed extents out of the pool.
    pub fn claims_published(&mut self, extents: &[u64]) {
        self.claims.retain(|c| !extents.contains(c));
    }

    /// Makes sure a record of `size` bytes (at most an extent) can be appended without
    /// taking another extent.
    pub fn ensure_room(&mut self, segs: &Segments, size: u64) -> Result<()> {
        if size > EXTENT {
            return Err(Error::InvalidArgument(format!(
                "record of {size} bytes does not fit an extent of {EXTENT}"
            )));
        }
        while size > self.lane_end.saturating_sub(self.tail) {
            self.grow_lane(segs, size)?;
        }
        Ok(())
    }

    /// Appends go on from `high` (the end of the highest record any commit wrote), in the
    /// rest of its extent: for a writer that is the only one, so that nothing past it (former
    /// writers' uncommitted appends) is live. At an extent's start, the first append takes an
    /// extent (from the pool, or the next one). The caller has made sure `high`'s extent is
    /// not in the pool.
    pub fn adopt_high(&mut self, high: u64) {
        self.tail = high;
        self.buf_start = high;
        self.zeroed_to = high;
        self.mark_durable_to_tail();
        let used = (high - DATA_START) % EXTENT;
        self.lane_end = if used == 0 { high } else { high - used + EXTENT };
    }

    /// This writer appends into the segment that ends the file (`end` long).
    pub fn lane_reaches(&self, end: u64) -> bool {
        self.lane_end != 0 && self.lane_end >= end
    }

    /// The records not yet durable can be checked at open by walking them (one-sync commit).
    pub fn walkable(&self) -> bool {
        self.contiguous
    }

    /// After another writer's commit: the store's used bytes are its figure plus what this
    /// writer appended since its own base.
    pub fn rebase_used(&mut self, base_used: u64, newer_used: u64) {
        self.used = newer_used + self.used.saturating_sub(base_used);
    }

    pub fn tail(&self) -> u64 {
        self.tail
    }

    /// After gc: whatever this writer appended above its tail is dead or under the newest
    /// commit's `high`, which may have come down.
    pub fn forget_high(&mut self) {
        self.high = self.tail;
    }

    /// The end of the highest record this writer appended (at least its tail).
    pub fn high(&self) -> u64 {
        self.high.max(self.tail)
    }

    /// Bytes of all records appended over the store's life (padding to segment ends included).
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Start of the range not yet known durable, with the chain over it.
    pub fn pending_chain(&self) -> (u64, u32, u32) {
        (self.verify_from, self.chain.clone().finalize(), self.chain_count)
    }

    /// After gc: the bytes of records still kept.
    pub fn set_used(&mut self, bytes: u64) {
        self.used = bytes;
    }

    /// Everything appended so far was just synced.
    pub fn mark_durable_to_tail(&mut self) {
        self.verify_from = self.tail;
        self.chain = crc32fast::Hasher::new();
        self.chain_count = 0;
        self.contiguous = true;
    }

    /// A commit ends at the tail; its sync follows while later records may be appended.
    pub fn cut(&mut self) {
        self.after_cut = Some(Cut {
            at: self.tail,
            chain: crc32fast::Hasher::new(),
            count: 0,
            contiguous: true,
        });
    }

    /// Everything up to `to`, where the last [`Appender::cut`] was made, is durable now.
    pub fn mark_durable_to(&mut self, to: u64) {
        // Without the cut, records appended since would be in no chain: the next one-sync
        // commit would not cover them, and open would roll it back.
        let cut = self.after_cut.take().expect("a durable commit is cut before its sync");
        debug_assert_eq!(cut.at, to, "a durable commit ends where it was cut");
        self.verify_from = to;
        self.chain = cut.chain;
        self.chain_count = cut.count;
        self.contiguous = cut.contiguous;
    }

    /// Moves appends to an extent of this writer's own, after padding out the current one.
    pub fn next_segment(&mut self, segs: &Segments) -> Result<()> {
        let start = self.take(segs, 0)?;
        self.move_to(segs, start)
    }

    fn take(&mut self, segs: &Segments, prefer: u64) -> Result<u64> {
        let t = segs.take_extent(prefer, &self.claims)?;
        if t.claimed {
            self.claims.push(t.start);
        }
        if let Some(tracked) = &mut self.tracked {
            tracked.push(t.start);
        }
        Ok(t.start)
    }

    /// Starts (`true`) or stops keeping a list of the extents this writer takes.
    pub fn track_extents(&mut self, on: bool) {
        self.tracked = on.then(Vec::new);
    }

    /// The extents taken since tracking started.
    pub fn tracked(&self) -> &[u64] {
        self.tracked.as_deref().unwrap_or(&[])
    }

    /// The start of the extent appends go into, once there is one.
    pub fn lane_start(&self) -> Option<u64> {
        self.lane_end.checked_sub(EXTENT).filter(|&s| s >= DATA_START)
    }

    /// Makes room for a record of `size` bytes: the next extent when it is free and in the
    /// same segment (records never cross a segment, and nothing is padded), else a new one.
    fn grow_lane(&mut self, segs: &Segments, size: u64) -> Result<()> {
        let seg_end = |at: u64| at - (at - DATA_START) % segs.seg_size + segs.seg_size;
        let start = self.take(segs, self.lane_end)?;
        let fits_on = self.tail + size <= seg_end(self.tail);
        if self.lane_end != 0 && start == self.lane_end && fits_on && self.lane_end < seg_end(self.tail) {
            self.lane_end += EXTENT;
            return Ok(());
        }
        self.move_to(segs, start)
    }

    /// Pads out the current extent and goes on at `start`, an extent taken for this writer.
    fn move_to(&mut self, segs: &Segments, start: u64) -> Result<()> {
        let room = self.lane_end.saturating_sub(self.tail);
        if room > 0 {
            self.start_at(self.tail);
            let pad = record::pad(room);
            self.buf.extend_from_slice(&pad);
            self.note(Header::parse(&pad, self.tail)?.crc, room);
        }
        self.flush(segs)?;
        if start != self.tail {
            self.contiguous = false;
            if let Some(cut) = &mut self.after_cut {
                cut.contiguous = false;
            }
        }
        self.tail = start;
        self.buf_start = start;
        self.zeroed_to = start;
        self.lane_end = start + EXTENT;
        Ok(())
    }

    pub fn append(&mut self, segs: &Segments, rec: &Prepared) -> Result<u64> {
        let size = rec.size();
        if size > EXTENT {
            return Err(Error::InvalidArgument(format!(
                "record of {size} bytes does not fit an extent of {EXTENT}"
            )));
        }
        while size > self.lane_end.saturating_sub(self.tail) {
            self.grow_lane(segs, size)?;
        }
        let addr = self.tail;
        self.start_at(addr);
        self.buf.extend_from_slice(&rec.header);
        self.buf.extend_from_slice(&rec.stored);
        self.buf.resize((addr + size - self.buf_start) as usize, 0);
        self.note(rec.crc(), size);
        if self.buf.len() >= FLUSH_AT {
            self.flush(segs)?;
        }
        Ok(addr)
    }

    fn start_at(&mut self, at: u64) {
        if self.buf.is_empty() {
            self.buf_start = at;
        }
    }

    fn note(&mut self, crc: u32, size: u64) {
        self.chain.update(&crc.to_le_bytes());
        self.chain_count = self.chain_count.wrapping_add(1);
        if let Some(cut) = &mut self.after_cut {
            cut.chain.update(&crc.to_le_bytes());
            cut.count = cut.count.wrapping_add(1);
        }
        self.tail += size;
        self.used += size;
        self.high = self.high.max(self.tail);
    }

    /// Writes zeros past the tail, so that the next small commits land in blocks the file
    /// system already allocated (an fdatasync of them then needs no metadata journal). The
    /// bytes are past the tail: never live, overwritten by the next appends.
    pub fn zero_ahead(&mut self, segs: &Segments) -> Result<()> {
        let start = self.zeroed_to.max(self.tail);
        if start >= self.tail + ZERO_AHEAD / 4 {
            return Ok(());
        }
        // Only inside this writer's own segment: past it lie other writers' records.
        let end = (self.tail + ZERO_AHEAD).min(self.lane_end);
        if end <= start {
            return Ok(());
        }
        static ZEROS: [u8; 1 << 20] = [0; 1 << 20];
        let mut at = start;
        while at < end {
            let n = (end - at).min(ZEROS.len() as u64);
            segs.io.write_at(at, &ZEROS[..n as usize])?;
            at += n;
        }
        self.zeroed_to = end;
        Ok(())
    }

    /// The end of what this writer uses: its tail, or past it the space it zeroed ahead.
    pub fn reserved_end(&self) -> u64 {
        self.zeroed_to.max(self.tail)
    }

    /// Forgets the zeroed range past the tail and returns it, for gc to give back.
    pub fn take_zeroed(&mut self) -> Option<(u64, u64)> {
        let z = (self.zeroed_to > self.tail).then(|| (self.tail, self.zeroed_to - self.tail));
        self.zeroed_to = self.tail;
        z
    }

    /// Writes the buffer to the file (not durable yet) so that maps see it.
    pub fn flush(&mut self, segs: &Segments) -> Result<()> {
        if !self.buf.is_empty() {
            segs.io.write_at(self.buf_start, &self.buf)?;
            if self.buf.len() >= WRITEBACK_AT {
                // A large commit's bytes go to the disk while it goes on, not all at its sync.
                segs.io.start_writeback(self.buf_start, self.buf.len() as u64);
            }
            segs.set_limit(self.buf_start + self.buf.len() as u64);
            self.buf.clear();
        }
        self.buf_start = self.tail;
        Ok(())
    }

    /// Reads a record, from the write buffer when it has not reached the file yet.
    pub fn read<'a>(&'a self, segs: &'a Segments, addr: u64) -> Result<Record<'a>> {
        // Only this writer's unflushed appends are in the buffer; other writers' records may
        // lie past it, in their own segments.
        if !(self.buf_start..self.buf_start + self.buf.len() as u64).contains(&addr) {
            return segs.read(addr);
        }
        let bytes = usize::try_from(addr - self.buf_start)
            .ok()
            .and_then(|off| self.buf.get(off..))
            .ok_or_else(|| Error::corrupt(format!("record address {addr:#x} is past the tail")))?;
        let header = Header::parse(bytes, addr)?;
        let stored = bytes
            .get(HEADER_LEN..HEADER_LEN + header.stored_len as usize)
            .ok_or_else(|| Error::corrupt(format!("record at {addr:#x} is truncated")))?;
        Ok(Record {
            addr,
            header,
            stored,
            raw_header: &bytes[..HEADER_LEN],
        })
    }
}

/// The writer's view: reads see unflushed appends; appends go through the buffer.
pub struct Writer<'a> {
    pub segs: &'a Segments,
    pub app: &'a mut Appender,
}

impl Source for Writer<'_> {
    fn record(&self, addr: u64) -> Result<Record<'_>> {
        self.app.read(self.segs, addr)
    }
    fn store_id(&self) -> u64 {
        self.segs.id
    }
}

impl Writer<'_> {
    pub fn append(&mut self, rec: &Prepared) -> Result<u64> {
        self.app.append(self.segs, rec)
    }
}

impl<'a> Writer<'a> {
    /// A read-only view through the writer's buffer (no appends possible).
    pub fn view(segs: &'a Segments, app: &'a Appender) -> View<'a> {
        View { segs, app }
    }
}

/// Reads through the write buffer without the right to append.
pub struct View<'a> {
    segs: &'a Segments,
    app: &'a Appender,
}

impl Source for View<'_> {
    fn record(&self, addr: u64) -> Result<Record<'_>> {
        self.app.read(self.segs, addr)
    }
    fn store_id(&self) -> u64 {
        self.segs.id
    }
}
