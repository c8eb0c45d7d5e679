//! Packs: the small blocks of a layer being built (small files, and the last partial block
//! of larger ones) gathered into one compressed chunk record, as squashfs packs fragments and
//! EROFS packs tails, so that thousands of small files compress together and share one record
//! header instead of paying one each. Each block keeps its own content hash in the chunk
//! index, pointing at its bytes inside the pack: dedup works as for any chunk.
//!
//! Until a pack is written its blocks' pointers are *pending* (in memory only, naming the pack
//! by number); the layer's block maps are resolved to real pointers when they are flushed.
//! A full pack is compressed on another thread while the builder goes on filling the next,
//! and appended at the builder's next write once ready, in order.

use super::chunk_index::ChunkIndex;
use crate::chunk::Hash;
use crate::error::{Error, Result};
use crate::format::compression::Compression;
use crate::format::ptr::{ChunkPtr, PENDING};
use crate::format::record::{self, Kind, Prepared};
use crate::io::Writer;
use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;

/// The most raw bytes one pack holds. A read of a packed block decompresses the pack up to
/// the block's end, so this bounds a small-file read (about 130 µs for a random one on the
/// reference machine, whose zstd decompresses binaries at 500 MB/s) while giving zstd enough
/// context to find what files share.
pub const PACK_MAX: usize = 128 << 10;

/// Full packs being compressed at most at once; past this the builder waits for the oldest
/// (memory stays bounded however fast files arrive).
const IN_FLIGHT: usize = 4;

/// A full pack handed to another thread to compress.
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
            written: HashMap::new(),
        }
    }

    /// Whether a block of `len` trimmed bytes, out of a block of `block_len`, compressed with
    /// `compression`, goes into a pack: only a partial block (a small file or a file's last
    /// block) of a compressed value; whole blocks keep records of their own, which a write
    /// in a container replaces one at a time.
    pub fn takes(&self, len: usize, block_len: usize, compression: Compression) -> bool {
        compression == self.compression && len > 0 && len < block_len && len <= PACK_MAX
    }

    /// The pointer to a block with these bytes and hash, added to the pack being filled
    /// (which is sealed first when the block does not fit).
    pub fn add(&mut self, w: &mut Writer, chunks: &mut ChunkIndex, bytes: &[u8], hash: Hash) -> Result<ChunkPtr> {
        self.land(w, chunks, false)?;
        if let Some(&p) = self.by_hash.get(&hash) {
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

    /// Hands the pack being filled to another thread to compress, waiting for the oldest
    /// first when enough are under way.
    fn seal(&mut self, w: &mut Writer, chunks: &mut ChunkIndex) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.sealing.len() >= IN_FLIGHT {
            self.land_one(w, chunks, true)?;
        }
        let raw = Arc::new(std::mem::take(&mut self.buf));
        let (tx, done) = mpsc::channel();
        let (bytes, compression) = (raw.clone(), self.compression);
        // A thread of its own, not the rayon pool's: a builder running on a pool thread
        // and waiting for its packs must not wait for work queued behind itself.
        std::thread::Builder::new()
            .name("lstore-pack".into())
            .spawn(move || {
                let rec = record::prepare(Kind::Chunk, &bytes, compression);
                let owned = Prepared {
                    header: rec.header,
                    stored: std::borrow::Cow::Owned(rec.stored.into_owned()),
                };
                // The builder may be gone (dropped unfinished): nothing to hand the pack to.
                let _ = tx.send(owned);
            })
            .map_err(Error::Io)?;
        self.sealing.push_back(Sealing {
            number: self.current,
            raw,
            blocks: std::mem::take(&mut self.blocks),
            done,
        });
        self.current += 1;
        Ok(())
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
        let rec = rec.ok_or_else(|| Error::corrupt("a pack's compression ended without a result"))?;
        let s = self.sealing.pop_front().expect("looked at above");
        let whole = ChunkPtr::to_prepared(w.append(&rec)?, &rec);
        for (hash, offset, len) in s.blocks {
            chunks.add(&*w, hash, ChunkPtr::slice_of(whole, offset, len))?;
            self.by_hash.remove(&hash);
        }
        self.written.insert(s.number, whole);
        Ok(true)
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
        raw.get(p.offset as usize..(p.offset + p.len) as usize)
    }
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
