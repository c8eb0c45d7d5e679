//! Content-addressed chunks. A block is trimmed of trailing zeros, named by the blake3 of
//! what is left, and stored once (the chunk index, in `tree::chunk_index`, maps that hash to
//! the record's address).

use crate::format::compression::Compression;
use crate::format::record::{self, Kind, Prepared};
use rayon::prelude::*;
use std::borrow::Cow;

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
    let one = |b: &&'a [u8]| {
        let t = &b[..trimmed_len(b)];
        (!t.is_empty()).then(|| record::prepare(Kind::Chunk, t, compression))
    };
    let total: usize = blocks.iter().map(|b| b.len()).sum();
    if total >= PARALLEL_MIN && blocks.len() > 1 {
        blocks.par_iter().map(one).collect()
    } else {
        blocks.iter().map(one).collect()
    }
}

/// The most raw bytes one extent holds: the whole blocks of a value in a layer being built
/// are compressed together this many at a time, as squashfs compresses 1 MiB blocks, since
/// such a layer is never written in place; a 64 KiB block compressed alone loses the context
/// zstd finds in its neighbours. Each block stays a block of its own (its hash, its slice of
/// the record), so dedup and a container's copy-on-write still work one block at a time.
pub const EXTENT_MAX: usize = 1 << 20;

/// How many blocks of `1 << shift` bytes an extent holds (one when a block is that large).
pub fn extent_blocks(shift: u8) -> u64 {
    ((EXTENT_MAX >> shift) as u64).max(1)
}

/// Consecutive whole blocks of one value compressed as one chunk record.
pub struct Extent {
    pub record: Prepared<'static>,
    /// Per block, in order: its hash and where its trimmed bytes lie in the raw payload
    /// (`offset`, `len`); `None` for a hole. A block repeated in the extent is stored once.
    pub blocks: Vec<Option<(Hash, u32, u32)>>,
}

/// The extent of these blocks (each at most [`EXTENT_MAX`] bytes together); `None` when all
/// are holes.
pub fn prepare_extent(blocks: &[&[u8]], compression: Compression) -> Option<Extent> {
    let mut raw = Vec::with_capacity(blocks.iter().map(|b| b.len()).sum());
    let mut placed = Vec::with_capacity(blocks.len());
    for b in blocks {
        let t = &b[..trimmed_len(b)];
        if t.is_empty() {
            placed.push(None);
            continue;
        }
        let hash = *blake3::hash(t).as_bytes();
        let earlier = placed.iter().flatten().find(|(h, _, _)| *h == hash).copied();
        placed.push(Some(earlier.unwrap_or_else(|| {
            let offset = raw.len() as u32;
            raw.extend_from_slice(t);
            (hash, offset, t.len() as u32)
        })));
    }
    if raw.is_empty() {
        return None;
    }
    let rec = record::prepare(Kind::Chunk, &raw, compression);
    let record = Prepared {
        header: rec.header,
        stored: Cow::Owned(rec.stored.into_owned()),
    };
    Some(Extent { record, blocks: placed })
}

/// [`prepare_extent`] for many groups of blocks, in parallel when there are several.
pub fn prepare_extents(groups: &[Vec<&[u8]>], compression: Compression) -> Vec<Option<Extent>> {
    let one = |g: &Vec<&[u8]>| prepare_extent(g, compression);
    if groups.len() > 1 {
        groups.par_iter().map(one).collect()
    } else {
        groups.iter().map(one).collect()
    }
}

/// The groups a value's consecutive whole blocks `(index, bytes)` form as extents: runs of
/// consecutive indices, cut where `index / extent_blocks` changes, so a value's extents are
/// the same however its writes were cut.
pub fn extent_groups<'b, 'd>(blocks: &'b [(u64, &'d [u8])], shift: u8) -> impl Iterator<Item = &'b [(u64, &'d [u8])]> {
    let per = extent_blocks(shift);
    blocks.chunk_by(move |a, b| b.0 == a.0 + 1 && b.0 / per == a.0 / per)
}

/// The blocks of one write, hashed and compressed before the writer state is locked, so
/// that one thread's hashing and compression never hold up another thread's write.
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
    /// For a layer being built, extents instead: per group, its first block's index, the
    /// bytes it was prepared from, and its extent (taken at most once).
    extents: Vec<Group<'a>>,
}

type Group<'a> = (u64, Vec<&'a [u8]>, Option<Option<Extent>>);

impl<'a> Ready<'a> {
    /// Nothing prepared.
    pub fn none() -> Ready<'a> {
        Ready {
            shift: 0,
            compression: Compression::None,
            first: 0,
            blocks: Vec::new(),
            extents: Vec::new(),
        }
    }

    /// Prepares the blocks a write of `data` at `off` fills from their start: every whole
    /// block, and the last one when the write ends inside it (whole if the value ends there)
    /// unless `whole_only` (a layer being built packs such a block with others instead, and
    /// compresses its whole blocks as extents: prepared so when compressed).
    pub fn prepare(data: &'a [u8], off: u64, shift: u8, compression: Compression, whole_only: bool) -> Ready<'a> {
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
        if whole_only && compression != Compression::None {
            let indexed: Vec<(u64, &'a [u8])> = (first..).zip(pieces).collect();
            let groups: Vec<(u64, Vec<&'a [u8]>)> = extent_groups(&indexed, shift)
                .map(|g| (g[0].0, g.iter().map(|b| b.1).collect()))
                .collect();
            let bytes: Vec<Vec<&[u8]>> = groups.iter().map(|g| g.1.clone()).collect();
            let prepared = prepare_extents(&bytes, compression);
            return Ready {
                shift,
                compression,
                first,
                blocks: Vec::new(),
                extents: groups
                    .into_iter()
                    .zip(prepared)
                    .map(|((i, b), e)| (i, b, Some(e)))
                    .collect(),
            };
        }
        let prepared = prepare_blocks(&pieces, compression);
        Ready {
            shift,
            compression,
            first,
            blocks: pieces.into_iter().zip(prepared).map(|(b, p)| (b, Some(p))).collect(),
            extents: Vec::new(),
        }
    }

    /// The extent prepared for this group of blocks `(index, bytes)`, if it was prepared the
    /// same way from these very bytes.
    pub fn take_extent(
        &mut self,
        group: &[(u64, &[u8])],
        shift: u8,
        compression: Compression,
    ) -> Option<Option<Extent>> {
        if shift != self.shift || compression != self.compression {
            return None;
        }
        let first = group.first()?.0;
        let (_, from, slot) = self.extents.iter_mut().find(|e| e.0 == first)?;
        let same = from.len() == group.len() && from.iter().zip(group).all(|(f, g)| std::ptr::eq(*f, g.1));
        if !same {
            return None;
        }
        slot.take()
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
