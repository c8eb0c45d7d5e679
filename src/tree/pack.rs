//! Packs: the small blocks of a layer being built (small files, and the last partial block
//! of larger ones) gathered into one compressed chunk record, as squashfs packs fragments and
//! EROFS packs tails, so that thousands of small files compress together and share one record
//! header instead of paying one each. Each block keeps its own content hash in the chunk
//! index, pointing at its bytes inside the pack: dedup works as for any chunk.
//!
//! Until a pack is written its blocks' pointers are *pending* (in memory only, naming the pack
//! by number); the layer's block maps are resolved to real pointers when they are flushed.
//! A full pack is compressed on a thread of the builder's own while the builder goes on
//! filling the next, and appended at the builder's next write once ready, in order.
//!
//! Reading a packed block decompresses its pack up to the block's end; each thread keeps the
//! packs it read last ([`block_bytes`]), so reading a folder's files one after another
//! decompresses their pack about once.

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
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

/// The most raw bytes one pack holds. A read of a packed block decompresses the pack up to
/// the block's end, so this bounds a small-file read (about 130 µs for a random one on the
/// reference machine, whose zstd decompresses binaries at 500 MB/s) while giving zstd enough
/// context to find what files share.
pub const PACK_MAX: usize = 128 << 10;

/// Full packs being compressed at most at once; past this the builder waits for the oldest
/// (memory stays bounded however fast files arrive).
const IN_FLIGHT: usize = 4;

/// A pack to compress, and where to send the record.
type Job = (Arc<Vec<u8>>, Sender<Prepared<'static>>);

/// A full pack handed to the compressing thread.
struct Sealing {
    number: u64,
    raw: Arc<Vec<u8>>,
    blocks: Vec<(Hash, u32, u32)>,
    done: Receiver<Prepared<'static>>,
}

/// The packs of one layer being built.
pub struct Packer {
    compression: Compression,
    /// The pack being filled, its number, and its blocks: (hash, offset, length).
    buf: Vec<u8>,
    current: u64,
    blocks: Vec<(Hash, u32, u32)>,
    /// Blocks of packs not yet written, by hash (dedup before the index knows them).
    by_hash: HashMap<Hash, ChunkPtr>,
    /// Full packs being compressed, oldest first.
    sealing: VecDeque<Sealing>,
    /// The thread compressing them, started at the first full pack; `None` after it could
    /// not be started (packs are then compressed on the builder's thread).
    worker: Option<Sender<Job>>,
    worker_tried: bool,
    /// Packs written: number -> pointer to the whole record.
    written: HashMap<u64, ChunkPtr>,
}

impl Packer {
    /// Packs compressed with `compression`.
    pub fn new(compression: Compression) -> Packer {
        Packer {
            compression,
            buf: Vec::new(),
            current: 0,
            blocks: Vec::new(),
            by_hash: HashMap::new(),
            sealing: VecDeque::new(),
            worker: None,
            worker_tried: false,
            written: HashMap::new(),
        }
    }

    /// The compression of the packs (and of the extents of the same builder).
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Whether a block of `len` bytes (`trimmed` once its trailing zeros are cut), of a value
    /// of `block_len` blocks compressed with `compression`, goes into a pack: only a partial
    /// block (a small file or a file's last block, shorter than a block however its bytes
    /// end) of a value compressed as the packs are; whole blocks keep records of their own,
    /// which a write in a container replaces one at a time.
    pub fn takes(&self, len: usize, trimmed: usize, block_len: usize, compression: Compression) -> bool {
        compression == self.compression && trimmed > 0 && len < block_len && trimmed <= PACK_MAX
    }

    /// The pointer to a block with these bytes and hash: the stored block with that content
    /// if there is one (indexed, or in a pack not yet indexed), else the block added to the
    /// pack being filled (which is sealed first when the block does not fit).
    pub fn store(&mut self, w: &mut Writer, chunks: &mut ChunkIndex, bytes: &[u8], hash: Hash) -> Result<ChunkPtr> {
        // Packs landed first: a block of one is then found in the index, not lost between.
        self.land(w, chunks, false)?;
        if let Some(p) = chunks.lookup(&*w, &hash)?.or_else(|| self.by_hash.get(&hash).copied()) {
            return Ok(p);
        }
        if self.buf.len() + bytes.len() > PACK_MAX {
            self.seal(w, chunks)?;
        }
        let (offset, len) = (self.buf.len() as u32, bytes.len() as u32);
        self.buf.extend_from_slice(bytes);
        self.blocks.push((hash, offset, len));
        let p = ChunkPtr {
            addr: PENDING | self.current,
            offset,
            len,
            ..ChunkPtr::HOLE
        };
        self.by_hash.insert(hash, p);
        Ok(p)
    }

    /// Hands the pack being filled to the compressing thread, waiting for the oldest first
    /// when enough are under way.
    fn seal(&mut self, w: &mut Writer, chunks: &mut ChunkIndex) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.sealing.len() >= IN_FLIGHT {
            self.land_one(w, chunks, true)?;
        }
        let raw = Arc::new(std::mem::take(&mut self.buf));
        let (tx, done) = mpsc::channel();
        if let Some((raw, tx)) = self.send((raw.clone(), tx)) {
            // No thread to hand it to: compressed here.
            let _ = tx.send(compress(&raw, self.compression));
        }
        self.sealing.push_back(Sealing {
            number: self.current,
            raw,
            blocks: std::mem::take(&mut self.blocks),
            done,
        });
        self.current += 1;
        Ok(())
    }

    /// Sends a job to the compressing thread (started at the first); gives the job back when
    /// there is no thread to take it.
    fn send(&mut self, job: Job) -> Option<Job> {
        if !self.worker_tried {
            self.worker_tried = true;
            let (jobs, inbox) = mpsc::channel::<Job>();
            let compression = self.compression;
            let started = std::thread::Builder::new().name("lstore-pack".into()).spawn(move || {
                // Ends when the packer is gone (its sender dropped).
                for (raw, back) in inbox {
                    // The builder may be gone meanwhile: nothing to hand the record to.
                    let _ = back.send(compress(&raw, compression));
                }
            });
            self.worker = started.is_ok().then_some(jobs);
        }
        match &self.worker {
            Some(jobs) => jobs.send(job).err().map(|e| e.0),
            None => Some(job),
        }
    }

    /// Appends the packs whose compression is done, in order; with `wait`, all of them.
    fn land(&mut self, w: &mut Writer, chunks: &mut ChunkIndex, wait: bool) -> Result<()> {
        while self.land_one(w, chunks, wait)? {}
        Ok(())
    }

    /// Appends the oldest pack being compressed if it is ready (or, with `wait`, once it is);
    /// false when there is none to append.
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
        // Only a panic of the compressing thread drops a job's sender.
        let rec = rec.ok_or_else(|| Error::Io(std::io::Error::other("lstore's pack compression thread failed")))?;
        let addr = w.append(&rec)?;
        let s = self.sealing.pop_front().expect("looked at above");
        // Known as written before anything else can fail: its blocks' pointers resolve.
        let whole = ChunkPtr::to_prepared(addr, &rec);
        self.written.insert(s.number, whole);
        for (hash, offset, len) in s.blocks {
            self.by_hash.remove(&hash);
            chunks.add(&*w, hash, ChunkPtr::slice_of(whole, offset, len))?;
        }
        Ok(true)
    }

    /// The number of the oldest pack not yet written: every block pointing into a pack of a
    /// lower number resolves.
    pub fn written_below(&self) -> u64 {
        self.sealing.front().map_or(self.current, |s| s.number)
    }

    /// Writes every pack, the one being filled too: a flush needs every block in its place.
    pub fn finish(&mut self, w: &mut Writer, chunks: &mut ChunkIndex) -> Result<()> {
        self.seal(w, chunks)?;
        self.land(w, chunks, true)
    }

    /// The real pointer of `p` (itself unless pending); an error for a block of a pack not
    /// yet written.
    pub fn resolve(&self, p: ChunkPtr) -> Result<ChunkPtr> {
        if !p.is_pending() {
            return Ok(p);
        }
        match self.written.get(&(p.addr & !PENDING)) {
            Some(&whole) => Ok(ChunkPtr::slice_of(whole, p.offset, p.len)),
            None => Err(unresolved()),
        }
    }

    /// The bytes of a pending block whose pack is not written yet (being filled or being
    /// compressed), or `None` when its pack is written (then [`resolve`](Self::resolve) it).
    pub fn unwritten(&self, p: ChunkPtr) -> Option<&[u8]> {
        if !p.is_pending() {
            return None;
        }
        let number = p.addr & !PENDING;
        let raw = if number == self.current {
            &self.buf[..]
        } else {
            &self.sealing.iter().find(|s| s.number == number)?.raw[..]
        };
        raw.get(p.offset as usize..p.offset as usize + p.len as usize)
    }
}

/// A pack's record, owned, to append.
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
    /// How many packs a thread keeps (128 KiB each as lstore writes them, 1 MiB at most).
    const KEEP: usize = 8;

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
    }
}

thread_local! {
    static RECENT: RefCell<Recent> = const { RefCell::new(Recent { packs: VecDeque::new() }) };
}

/// A pointer into a pack that was never written: a flush before the pack was sealed.
fn unresolved() -> Error {
    Error::corrupt("a block points into a pack that was never written")
}

/// Resolving pointers when no pack is being built: a pending one cannot be.
pub fn no_packs(p: ChunkPtr) -> Result<ChunkPtr> {
    if p.is_pending() {
        return Err(unresolved());
    }
    Ok(p)
}
