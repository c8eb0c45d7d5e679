//! Content-addressed chunks. A block is trimmed of trailing zeros, named by the blake3 of
//! what is left, and stored once (the chunk index, in `tree::chunk_index`, maps that hash to
//! the record's address).

use crate::format::compression::Compression;
use crate::format::record::{self, Kind, Prepared};
use rayon::prelude::*;

/// Below this many bytes a batch is prepared on the calling thread.
const PARALLEL_MIN: usize = 256 << 10;

/// At most this many bytes of one write are prepared before the writer state is locked.
const READY_MAX: usize = 16 << 20;

pub type Hash = [u8; 32];

/// Length of `d` without its trailing zero bytes; 0 for an all-zero block (a hole).
pub fn trimmed_len(d: &[u8]) -> usize {
    let mut end = d.len();
    for c in d.rchunks(64) {
        if c.iter().fold(0u8, |a, &b| a | b) != 0 {
            return end - c.iter().rev().take_while(|&&b| b == 0).count();
        }
        end -= c.len();
    }
    0
}

/// Prepares the records of many blocks (hash, compress, checksum), in parallel when large.
/// A hole (all zeros) yields `None`.
pub fn prepare_blocks<'a>(blocks: &[&'a [u8]], compression: Compression) -> Vec<Option<Prepared<'a>>> {
    each_trimmed(blocks, |t| record::prepare(Kind::Chunk, t, compression))
}

/// The hashes of many blocks' trimmed bytes (`None` for a hole), in parallel when large.
pub fn hash_blocks(blocks: &[&[u8]]) -> Vec<Option<Hash>> {
    each_trimmed(blocks, |t| *blake3::hash(t).as_bytes())
}

/// `f` of each block's trimmed bytes (`None` for a hole), in parallel when the blocks are
/// large enough together to pay for it.
fn each_trimmed<'a, T: Send>(blocks: &[&'a [u8]], f: impl Fn(&'a [u8]) -> T + Sync) -> Vec<Option<T>> {
    let one = |b: &&'a [u8]| {
        let t = &b[..trimmed_len(b)];
        (!t.is_empty()).then(|| f(t))
    };
    let total: usize = blocks.iter().map(|b| b.len()).sum();
    if total >= PARALLEL_MIN && blocks.len() > 1 {
        blocks.par_iter().map(one).collect()
    } else {
        blocks.iter().map(one).collect()
    }
}

/// The most raw bytes one cluster holds: the whole blocks of a value in a layer being built
/// are compressed together this many at a time, as squashfs compresses 1 MiB blocks, since
/// such a layer is never written in place; a 64 KiB block compressed alone loses the context
/// zstd finds in its neighbours. Each block stays a block of its own (its hash, its slice of
/// the record), so dedup and a container's copy-on-write still work one block at a time.
pub const CLUSTER_MAX: usize = 1 << 20;

/// How many blocks of `1 << shift` bytes a cluster holds (one when a block is that large).
pub fn cluster_blocks(shift: u8) -> u64 {
    ((CLUSTER_MAX >> shift) as u64).max(1)
}

/// The groups the consecutive whole blocks `(index, bytes)` of one write of a value form as
/// clusters: runs of consecutive indices, cut where `index / cluster_blocks` changes, so
/// writes of whole mebibytes at a time give a value the same clusters however they were cut.
pub fn cluster_groups<'b, 'd>(blocks: &'b [(u64, &'d [u8])], shift: u8) -> impl Iterator<Item = &'b [(u64, &'d [u8])]> {
    let per = cluster_blocks(shift);
    blocks.chunk_by(move |a, b| b.0 == a.0 + 1 && b.0 / per == a.0 / per)
}

/// The blocks of one write, hashed and compressed before the writer state is locked, so
/// that one thread's hashing and compression never hold up another thread's write. (A
/// write whose whole blocks go to a layer builder's clusters has them hashed only: the
/// builder compresses clusters on threads of its own.)
///
/// Prepared for the block size and compression the value is expected to use; the write
/// takes a block from here only when both match and the block is wholly overwritten, and
/// prepares anything else under the lock as before.
pub struct Ready<'a> {
    shift: u8,
    compression: Compression,
    first: u64,
    /// Per block: the bytes it was prepared from, and its record (taken at most once).
    blocks: Vec<(&'a [u8], Option<Option<Prepared<'a>>>)>,
    /// For a layer being built in a compressed store, whose whole blocks go into clusters
    /// compressed on threads of its own: per block, its bytes and its hash only.
    hashes: Vec<(&'a [u8], Option<Hash>)>,
}

impl<'a> Ready<'a> {
    /// Nothing prepared.
    pub fn none() -> Ready<'a> {
        Ready {
            shift: 0,
            compression: Compression::None,
            first: 0,
            blocks: Vec::new(),
            hashes: Vec::new(),
        }
    }

    /// Prepares the blocks a write of `data` at `off` fills from their start: every whole
    /// block, and the last one when the write ends inside it (whole if the value ends there)
    /// unless `whole_only` (a layer being built packs such a block with others instead).
    /// With `clusters` (a layer being built, compressing this value as its clusters), only
    /// the hashes of the whole blocks: it hands them to its clusters.
    pub fn prepare(
        data: &'a [u8],
        off: u64,
        shift: u8,
        compression: Compression,
        whole_only: bool,
        clusters: bool,
    ) -> Ready<'a> {
        let bs = 1u64 << shift;
        let first = off.div_ceil(bs);
        // An offset near the end of u64 prepares nothing; the write itself refuses it.
        let Some(skip) = first.checked_mul(bs).map(|start| start - off) else {
            return Ready::none();
        };
        if skip >= data.len() as u64 {
            return Ready::none();
        }
        let skip = skip as usize;
        // Prepared records are held until the lock is taken; past this much a large write
        // prepares the rest in bounded batches under the lock, as before.
        let pieces: Vec<&'a [u8]> = data[skip..]
            .chunks(bs as usize)
            .take(READY_MAX / bs as usize)
            .filter(|p| !whole_only || p.len() == bs as usize)
            .collect();
        if clusters {
            let hashes = hash_blocks(&pieces);
            return Ready {
                shift,
                compression,
                first,
                blocks: Vec::new(),
                hashes: pieces.into_iter().zip(hashes).collect(),
            };
        }
        let prepared = prepare_blocks(&pieces, compression);
        Ready {
            shift,
            compression,
            first,
            blocks: pieces.into_iter().zip(prepared).map(|(b, p)| (b, Some(p))).collect(),
            hashes: Vec::new(),
        }
    }

    /// The hash prepared for whole block `idx` (`Some(None)`: a hole), if it was prepared
    /// from these very bytes for this block size and compression.
    pub fn hash(&self, idx: u64, bytes: &[u8], shift: u8, compression: Compression) -> Option<Option<Hash>> {
        if shift != self.shift || compression != self.compression || idx < self.first {
            return None;
        }
        let (from, hash) = self.hashes.get(usize::try_from(idx - self.first).ok()?)?;
        std::ptr::eq(*from, bytes).then_some(*hash)
    }

    /// The record prepared for block `idx`, if it was prepared the same way from these very
    /// bytes (the same memory, not merely equal length: a converted inline value is written
    /// through the same path with other bytes).
    pub fn take(
        &mut self,
        idx: u64,
        bytes: &[u8],
        shift: u8,
        compression: Compression,
    ) -> Option<Option<Prepared<'a>>> {
        if shift != self.shift || compression != self.compression || idx < self.first {
            return None;
        }
        let (from, slot) = self.blocks.get_mut(usize::try_from(idx - self.first).ok()?)?;
        if !std::ptr::eq(*from, bytes) {
            return None;
        }
        slot.take()
    }
}
