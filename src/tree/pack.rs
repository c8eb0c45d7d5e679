//! Packs and clusters: the records a layer being built gathers its blocks into before they are
//! compressed. A **pack** holds small blocks of many values (small files, and the last partial
//! block of larger ones), as squashfs packs fragments and EROFS packs tails, so that thousands
//! of small files compress together and share one record header instead of paying one each.
//! A **cluster** holds up to 1 MiB of one value's consecutive whole blocks, compressed
//! together as squashfs compresses its 1 MiB blocks. Each block keeps its own content hash in
//! the chunk index, pointing at its bytes inside the record: dedup works as for any chunk.
//!
//! Until its record is written a block's pointer is *pending* (in memory only, naming the
//! record by number and the block by its slot, the order it was added in); the layer's block
//! maps are resolved to real pointers when they are flushed. A pack is sealed with its blocks
//! shortest first: a read decompresses the pack up to its block's end, and most blocks of a
//! pack are short, so on average over its blocks a read decompresses less (on Debian's root
//! file system about 48 KiB instead of 76 KiB, the packs compressing as small as before). Records are compressed on threads of the builder's own while the builder goes on
//! reading and hashing the next files, and appended at the builder's next write once ready,
//! in the order they were sealed.
//!
//! Reading a block of a pack or a cluster decompresses the record up to the block's end; each
//! thread keeps the records it read last ([`block_bytes`]), so reading a folder's files one
//! after another decompresses their pack about once.

use super::chunk_index::ChunkIndex;
use crate::chunk::Hash;
use crate::error::{Error, Result};
use crate::format::compression::Compression;
use crate::format::ptr::{ChunkPtr, PENDING};
use crate::format::record::{self, Kind, Prepared, Record};
use crate::io::Writer;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;

/// The most raw bytes one pack holds. A read of a packed block decompresses the pack up to
/// the block's end, so this bounds a small-file read (zstd decompresses small frames at
/// 0.6-1.5 GB/s on the reference machine) while giving zstd enough context to find what files
/// share.
pub const PACK_MAX: usize = 128 << 10;

/// Records being compressed at most at once (up to 1 MiB each); past this the builder waits
/// for the oldest, so memory stays bounded however fast files arrive.
const IN_FLIGHT: usize = 8;

/// A sealed record being compressed; its blocks (hash, offset, length) by slot.
struct Sealing {
    number: u64,
    raw: Arc<Vec<u8>>,
    blocks: Vec<(Hash, u32, u32)>,
    done: Receiver<Prepared<'static>>,
}

/// A written record: the pointer to all of it, and its blocks' offsets by slot.
struct Written {
    whole: ChunkPtr,
    offsets: Vec<u32>,
}

/// The packs and clusters of one layer being built.
pub struct Packer {
    compression: Compression,
    /// The pack being filled, its number (given with its first block), and its blocks by
    /// slot: (hash, offset, length).
    buf: Vec<u8>,
    current: Option<u64>,
    blocks: Vec<(Hash, u32, u32)>,
    /// The number the next pack or cluster gets.
    next: u64,
    /// Blocks of records not yet written, by hash (dedup before the index knows them).
    by_hash: HashMap<Hash, ChunkPtr>,
    /// Sealed records being compressed, in the order they were sealed.
    sealing: VecDeque<Sealing>,
    /// The threads compressing them, made at the first seal; `None` after they could not be
    /// made (records are then compressed on the builder's thread).
    pool: Option<rayon::ThreadPool>,
    pool_tried: bool,
    /// Records written, by number.
    written: HashMap<u64, Written>,
}

impl Packer {
    /// Packs and clusters compressed with `compression`.
    pub fn new(compression: Compression) -> Packer {
        Packer {
            compression,
            buf: Vec::new(),
            current: None,
            blocks: Vec::new(),
            next: 0,
            by_hash: HashMap::new(),
            sealing: VecDeque::new(),
            pool: None,
            pool_tried: false,
            written: HashMap::new(),
        }
    }

    /// The compression of the packs and clusters.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Whether a block of `len` bytes (`trimmed` once its trailing zeros are cut), of a value
    /// of `block_len` blocks compressed with `compression`, goes into a pack: only a partial
    /// block (a small file or a file's last block, shorter than a block however its bytes
    /// end) of a value compressed as the packs are; whole blocks go into clusters.
    pub fn takes(&self, len: usize, trimmed: usize, block_len: usize, compression: Compression) -> bool {
        compression == self.compression && trimmed > 0 && len < block_len && trimmed <= PACK_MAX
    }

    /// The stored block with this hash, if any: indexed, or in a record not yet indexed.
    fn stored(&self, w: &Writer, chunks: &ChunkIndex, hash: &Hash) -> Result<Option<ChunkPtr>> {
        Ok(chunks.lookup(w, hash)?.or_else(|| self.by_hash.get(hash).copied()))
    }

    /// The pointer to a block with these bytes and hash: the stored block with that content
    /// if there is one, else the block added to the pack being filled (which is sealed first
    /// when the block does not fit).
    pub fn store(&mut self, w: &mut Writer, chunks: &mut ChunkIndex, bytes: &[u8], hash: Hash) -> Result<ChunkPtr> {
        // Records landed first: a block of one is then found in the index, not lost between.
        self.land(w, chunks, false)?;
        if let Some(p) = self.stored(w, chunks, &hash)? {
            return Ok(p);
        }
        if self.buf.len() + bytes.len() > PACK_MAX {
            self.seal_pack(w, chunks)?;
        }
        let number = match self.current {
            Some(n) => n,
            None => {
                self.next += 1;
                *self.current.insert(self.next - 1)
            }
        };
        let (slot, len) = (self.blocks.len() as u32, bytes.len() as u32);
        self.blocks.push((hash, self.buf.len() as u32, len));
        self.buf.extend_from_slice(bytes);
        let p = pending(number, slot, len);
        self.by_hash.insert(hash, p);
        Ok(p)
    }

    /// The pointers to whole blocks of one value (at most [`chunk::CLUSTER_MAX`] bytes
    /// together), each given as its trimmed bytes and their hash (`None`: a hole), in order:
    /// the stored block for one stored already, and for the others their place in a new
    /// cluster, sealed at once. A block repeated among them is stored once.
    pub fn store_cluster(
        &mut self,
        w: &mut Writer,
        chunks: &mut ChunkIndex,
        blocks: &[(&[u8], Option<Hash>)],
    ) -> Result<Vec<ChunkPtr>> {
        self.land(w, chunks, false)?;
        let number = self.next;
        let mut raw = Vec::new();
        let mut placed: Vec<(Hash, u32, u32)> = Vec::new();
        let mut ptrs = Vec::with_capacity(blocks.len());
        for &(t, hash) in blocks {
            let Some(hash) = hash else {
                ptrs.push(ChunkPtr::HOLE);
                continue;
            };
            let repeat = placed
                .iter()
                .position(|b| b.0 == hash)
                .map(|slot| pending(number, slot as u32, placed[slot].2));
            if let Some(p) = repeat.map_or_else(|| self.stored(w, chunks, &hash), |p| Ok(Some(p)))? {
                ptrs.push(p);
                continue;
            }
            let (slot, len) = (placed.len() as u32, t.len() as u32);
            placed.push((hash, raw.len() as u32, len));
            raw.extend_from_slice(t);
            ptrs.push(pending(number, slot, len));
        }
        if raw.is_empty() {
            return Ok(ptrs);
        }
        // Nothing of the new cluster is known before there is room for it: a failure here
        // leaves no pointer into a record that will never be written.
        self.make_room(w, chunks)?;
        for (slot, &(hash, _, len)) in placed.iter().enumerate() {
            self.by_hash.insert(hash, pending(number, slot as u32, len));
        }
        self.next += 1;
        self.seal(number, raw, placed);
        Ok(ptrs)
    }

    /// Seals the pack being filled, if any.
    fn seal_pack(&mut self, w: &mut Writer, chunks: &mut ChunkIndex) -> Result<()> {
        let Some(number) = self.current else {
            return Ok(());
        };
        self.make_room(w, chunks)?;
        self.current = None;
        let (raw, mut blocks) = (std::mem::take(&mut self.buf), std::mem::take(&mut self.blocks));
        let raw = shortest_first(&raw, &mut blocks);
        self.seal(number, raw, blocks);
        Ok(())
    }

    /// Waits for the oldest record being compressed, and writes it, when enough are under
    /// way: done before a seal changes anything, so that its failure loses no block.
    fn make_room(&mut self, w: &mut Writer, chunks: &mut ChunkIndex) -> Result<()> {
        if self.sealing.len() >= IN_FLIGHT {
            self.land_one(w, chunks, true)?;
        }
        Ok(())
    }

    /// Hands a record's payload to the compressing threads ([`make_room`](Self::make_room)
    /// called first).
    fn seal(&mut self, number: u64, raw: Vec<u8>, blocks: Vec<(Hash, u32, u32)>) {
        let raw = Arc::new(raw);
        let (tx, done) = mpsc::channel();
        let (job, compression) = (raw.clone(), self.compression);
        match self.pool() {
            // The builder may be gone when it is done: nothing to hand the record to then.
            Some(pool) => pool.spawn(move || drop(tx.send(compress(&job, compression)))),
            None => drop(tx.send(compress(&job, compression))),
        }
        self.sealing.push_back(Sealing {
            number,
            raw,
            blocks,
            done,
        });
    }

    /// The builder's compressing threads, one per core (no more than records in flight),
    /// made at the first call; `None` when they could not be made.
    fn pool(&mut self) -> Option<&rayon::ThreadPool> {
        if !self.pool_tried {
            self.pool_tried = true;
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
            self.pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads.min(IN_FLIGHT))
                // A job that panics drops its sender: the builder then reports an error
                // instead of the process aborting.
                .panic_handler(|_| {})
                .thread_name(|i| format!("lstore-pack-{i}"))
                .build()
                .ok();
        }
        self.pool.as_ref()
    }

    /// Appends the records whose compression is done, in order; with `wait`, all of them.
    fn land(&mut self, w: &mut Writer, chunks: &mut ChunkIndex, wait: bool) -> Result<()> {
        while self.land_one(w, chunks, wait)? {}
        Ok(())
    }

    /// Appends the oldest record being compressed if it is ready (or, with `wait`, once it
    /// is); false when there is none to append.
    fn land_one(&mut self, w: &mut Writer, chunks: &mut ChunkIndex, wait: bool) -> Result<bool> {
        let Some(oldest) = self.sealing.front() else {
            return Ok(false);
        };
        let rec = if wait {
            oldest.done.recv().ok()
        } else {
            match oldest.done.try_recv() {
                Ok(rec) => Some(rec),
                Err(mpsc::TryRecvError::Empty) => return Ok(false),
                Err(mpsc::TryRecvError::Disconnected) => None,
            }
        };
        // Only a panic of a compressing thread drops a job's sender.
        let rec = rec.ok_or_else(|| {
            Error::Io(std::io::Error::other(
                "lstore's compression of a pack or cluster failed",
            ))
        })?;
        let addr = w.append(&rec)?;
        let s = self.sealing.pop_front().expect("looked at above");
        // Known as written before anything else can fail: its blocks' pointers resolve.
        let whole = ChunkPtr::to_prepared(addr, &rec);
        let offsets = s.blocks.iter().map(|b| b.1).collect();
        self.written.insert(s.number, Written { whole, offsets });
        for (hash, offset, len) in s.blocks {
            self.by_hash.remove(&hash);
            chunks.add(&*w, hash, ChunkPtr::slice_of(whole, offset, len))?;
        }
        Ok(true)
    }

    /// A number below which every pack and cluster is written: every block pointing into a
    /// record of a lower number resolves. (Clusters are numbered after the pack being filled
    /// and may be written before it.)
    pub fn written_below(&self) -> u64 {
        self.sealing
            .iter()
            .map(|s| s.number)
            .chain(self.current)
            .min()
            .unwrap_or(self.next)
    }

    /// Writes every pack and cluster, the pack being filled too: a flush needs every block in
    /// its place.
    pub fn finish(&mut self, w: &mut Writer, chunks: &mut ChunkIndex) -> Result<()> {
        self.seal_pack(w, chunks)?;
        self.land(w, chunks, true)
    }

    /// The real pointer of `p` (itself unless pending); an error for a block of a pack or
    /// cluster not yet written.
    pub fn resolve(&self, p: ChunkPtr) -> Result<ChunkPtr> {
        if !p.is_pending() {
            return Ok(p);
        }
        let written = self.written.get(&(p.addr & !PENDING)).ok_or_else(unresolved)?;
        let offset = *written
            .offsets
            .get(p.offset as usize)
            .ok_or_else(|| Error::corrupt("a pending pointer names no block of its pack or cluster"))?;
        Ok(ChunkPtr::slice_of(written.whole, offset, p.len))
    }

    /// The bytes of a pending block whose pack or cluster is not written yet (being filled or
    /// being compressed), or `None` when it is written (then [`resolve`](Self::resolve) it).
    pub fn unwritten(&self, p: ChunkPtr) -> Option<&[u8]> {
        if !p.is_pending() {
            return None;
        }
        let number = p.addr & !PENDING;
        let (raw, blocks) = if Some(number) == self.current {
            (&self.buf[..], &self.blocks[..])
        } else {
            let s = self.sealing.iter().find(|s| s.number == number)?;
            (&s.raw[..], &s.blocks[..])
        };
        let offset = blocks.get(p.offset as usize)?.1 as usize;
        raw.get(offset..offset + p.len as usize)
    }
}

/// A pointer to the block in slot `slot`, `len` bytes, of the record numbered `number`, not
/// yet written. (The slot rides in the offset field until the record's layout is known.)
fn pending(number: u64, slot: u32, len: u32) -> ChunkPtr {
    ChunkPtr {
        addr: PENDING | number,
        offset: slot,
        len,
        ..ChunkPtr::HOLE
    }
}

/// A pack's payload laid out again with its blocks shortest first (equal lengths in the order
/// they came), `blocks`' offsets moved to match: the shortest-processing-time rule, so a read
/// of one of its blocks, on average over them, decompresses the least.
fn shortest_first(raw: &[u8], blocks: &mut [(Hash, u32, u32)]) -> Vec<u8> {
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by_key(|&i| blocks[i].2);
    let mut out = Vec::with_capacity(raw.len());
    for i in order {
        let (_, offset, len) = &mut blocks[i];
        let from = *offset as usize;
        *offset = out.len() as u32;
        out.extend_from_slice(&raw[from..from + *len as usize]);
    }
    out
}

/// A pack's or a cluster's record, owned, to append.
fn compress(raw: &[u8], compression: Compression) -> Prepared<'static> {
    let rec = record::prepare(Kind::Chunk, raw, compression);
    Prepared {
        header: rec.header,
        stored: Cow::Owned(rec.stored.into_owned()),
    }
}

/// The bytes of the block `ptr` names in `rec` (already checked to be its record), read from
/// the store `store` ([`Source::store_id`](crate::io::Source::store_id)): the whole payload,
/// or its part of a pack, through the packs this thread read last.
pub fn block_bytes<'a>(store: u64, rec: &Record<'a>, ptr: &ChunkPtr) -> Result<Cow<'a, [u8]>> {
    if rec.header.codec == 0 || ptr.is_whole() {
        return rec.slice(ptr.offset, ptr.len);
    }
    let key = (store, rec.addr, rec.hash());
    let range = ptr.offset as usize..ptr.offset as usize + ptr.len as usize;
    let upto = match RECENT.with(|r| r.borrow_mut().get(&key, range.clone())) {
        Lookup::Hit(bytes) => return Ok(Cow::Owned(bytes)),
        // Read before, not this far: a walk through the pack, so all of it now.
        Lookup::Short => rec.header.raw_len,
        Lookup::Miss => range.end as u32,
    };
    let prefix = rec.prefix(upto)?;
    let block = prefix[range].to_vec();
    RECENT.with(|r| r.borrow_mut().put(key, prefix));
    Ok(Cow::Owned(block))
}

/// A pack is named by its store, its address and the blake3 of its payload, which another
/// record at that address (after gc) does not share.
type PackKey = (u64, u64, [u8; 32]);

enum Lookup {
    Hit(Vec<u8>),
    /// The pack's start is kept, not as far as asked.
    Short,
    Miss,
}

/// The packs a thread decompressed last, each as far as it was read, most recent first.
/// Per thread, so no lock is taken.
struct Recent {
    packs: VecDeque<(PackKey, Vec<u8>)>,
}

impl Recent {
    /// How many records a thread keeps (packs of 128 KiB, clusters of 1 MiB, as lstore writes
    /// them), and how many of their bytes at most (the newest is always kept).
    const KEEP: usize = 8;
    const KEEP_BYTES: usize = 4 << 20;

    fn get(&mut self, key: &PackKey, range: std::ops::Range<usize>) -> Lookup {
        let Some(i) = self.packs.iter().position(|(k, _)| k == key) else {
            return Lookup::Miss;
        };
        let found = self.packs.remove(i).expect("found above");
        let got = found.1.get(range).map(<[u8]>::to_vec);
        self.packs.push_front(found);
        got.map_or(Lookup::Short, Lookup::Hit)
    }

    fn put(&mut self, key: PackKey, prefix: Vec<u8>) {
        self.packs.retain(|(k, _)| *k != key);
        self.packs.truncate(Self::KEEP - 1);
        self.packs.push_front((key, prefix));
        let mut total: usize = self.packs.iter().map(|(_, p)| p.len()).sum();
        while total > Self::KEEP_BYTES && self.packs.len() > 1 {
            total -= self.packs.pop_back().map_or(0, |(_, p)| p.len());
        }
    }
}

thread_local! {
    static RECENT: RefCell<Recent> = const { RefCell::new(Recent { packs: VecDeque::new() }) };
}

/// A pointer into a pack or cluster that was never written: a flush before it was sealed.
fn unresolved() -> Error {
    Error::corrupt("a block points into a pack or cluster that was never written")
}

/// Resolving pointers when no pack is being built: a pending one cannot be.
pub fn no_packs(p: ChunkPtr) -> Result<ChunkPtr> {
    if p.is_pending() {
        return Err(unresolved());
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(hash: u8, offset: u32, len: u32) -> (Hash, u32, u32) {
        ([hash; 32], offset, len)
    }

    #[test]
    fn a_sealed_pack_holds_its_blocks_shortest_first_and_each_offset_follows_its_bytes() {
        let raw = b"cccccaaabbbbbbbdd".to_vec();
        let mut blocks = vec![block(1, 0, 5), block(2, 5, 3), block(3, 8, 7), block(4, 15, 2)];
        let laid = shortest_first(&raw, &mut blocks);
        assert_eq!(laid, b"ddaaacccccbbbbbbb");
        let slice = |(_, o, l): (Hash, u32, u32)| &laid[o as usize..(o + l) as usize];
        assert_eq!(slice(blocks[0]), b"ccccc");
        assert_eq!(slice(blocks[1]), b"aaa");
        assert_eq!(slice(blocks[2]), b"bbbbbbb");
        assert_eq!(slice(blocks[3]), b"dd");
    }

    #[test]
    fn blocks_of_one_length_keep_the_order_they_came_in() {
        let raw = b"xxyyzz".to_vec();
        let mut blocks = vec![block(1, 0, 2), block(2, 2, 2), block(3, 4, 2)];
        assert_eq!(shortest_first(&raw, &mut blocks), raw);
        assert_eq!(blocks.iter().map(|b| b.1).collect::<Vec<_>>(), [0, 2, 4]);
    }
}
