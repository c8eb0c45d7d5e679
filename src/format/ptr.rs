//! Chunk pointers: what a block-map leaf slot and a chunk-index entry say about a chunk, as a
//! ZFS block pointer does: its record's address, lengths and crc, and which bytes of the
//! record's raw payload are the block (a record may pack the blocks of many small files).
//! Accounting, gc's mark and dedup look-ups read these and never the chunk itself, and a read
//! checks that the record it finds is the one the pointer names (a stale or misplaced record
//! is `Corrupt`).
//! Layout (28 bytes): `addr u64 | stored_len u32 | raw_len u32 | crc u32 | offset u32 |
//! len u32`; all zero = hole.

use super::le::{U32, U64};
use super::record::{padded, Header, Kind, Prepared, ALIGN};
use super::superblock::DATA_START;
use crate::error::{Error, Result};
use bytemuck::{Pod, Zeroable};

/// Encoded size of a pointer.
pub const PTR_LEN: usize = 28;

/// The address bit of a pointer into a pack or cluster not yet written (in memory only,
/// `tree::pack`): no record lies there (decoding refuses addresses from 2^62). Such a pointer
/// names its record by number in the other bits, and its block by *slot* in `offset` (the
/// block's place in its record's list) until the record's layout is known.
pub const PENDING: u64 = 1 << 63;

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub struct PtrLe {
    addr: U64,
    stored_len: U32,
    raw_len: U32,
    crc: U32,
    offset: U32,
    len: U32,
}

/// A chunk record's address with the header fields that vouch for it, and the block's bytes
/// in its raw payload: `offset..offset + len` (the whole payload unless the record is a pack).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChunkPtr {
    pub addr: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub crc: u32,
    pub offset: u32,
    pub len: u32,
}

impl ChunkPtr {
    pub const HOLE: ChunkPtr = ChunkPtr {
        addr: 0,
        stored_len: 0,
        raw_len: 0,
        crc: 0,
        offset: 0,
        len: 0,
    };

    pub fn is_hole(&self) -> bool {
        self.addr == 0
    }

    /// The pointer to all of `rec`, appended at `addr`.
    pub fn to_prepared(addr: u64, rec: &Prepared) -> ChunkPtr {
        let (stored_len, raw_len) = rec.lengths();
        ChunkPtr {
            addr,
            stored_len,
            raw_len,
            crc: rec.crc(),
            offset: 0,
            len: raw_len,
        }
    }

    /// The pointer to `len` bytes at `offset` of the raw payload of the record `whole` names.
    pub fn slice_of(whole: ChunkPtr, offset: u32, len: u32) -> ChunkPtr {
        ChunkPtr { offset, len, ..whole }
    }

    /// Whether this points into a pack or cluster not yet written (`tree::pack`): never on
    /// disk.
    pub fn is_pending(&self) -> bool {
        self.addr & PENDING != 0
    }

    /// Whether the two name the same record (perhaps different blocks packed in it).
    pub fn same_record(&self, other: &ChunkPtr) -> bool {
        (self.addr, self.stored_len, self.raw_len, self.crc) == (other.addr, other.stored_len, other.raw_len, other.crc)
    }

    /// Whether the block is the record's whole payload (a record of one block).
    pub fn is_whole(&self) -> bool {
        self.offset == 0 && self.len == self.raw_len
    }

    /// The same record at another address (gc moves records verbatim).
    pub fn moved_to(self, addr: u64) -> ChunkPtr {
        ChunkPtr { addr, ..self }
    }

    /// Bytes the record takes in its segment (all of it, whatever part this block is).
    pub fn size(&self) -> u64 {
        padded(self.stored_len as usize)
    }

    /// This block's share of its record's bytes: the record's size in proportion to the
    /// block's part of the raw payload (rounded up), so the shares of a pack's blocks add up
    /// to about the pack's size.
    pub fn share(&self) -> u64 {
        if self.is_whole() || self.raw_len == 0 {
            return self.size();
        }
        (self.size() * self.len as u64).div_ceil(self.raw_len as u64)
    }

    /// The record found at the address is a chunk and the one this pointer names.
    pub fn check(&self, h: &Header) -> Result<()> {
        if h.kind != Kind::Chunk || h.stored_len != self.stored_len || h.raw_len != self.raw_len || h.crc != self.crc {
            return Err(Error::corrupt(format!(
                "chunk pointer to {:#x} names another record (a chunk of {}/{} bytes with crc {:08x}; found a {:?} of {}/{} with crc {:08x})",
                self.addr, self.stored_len, self.raw_len, self.crc, h.kind, h.stored_len, h.raw_len, h.crc
            )));
        }
        Ok(())
    }

    pub fn encode(&self) -> PtrLe {
        PtrLe {
            addr: U64::new(self.addr),
            stored_len: U32::new(self.stored_len),
            raw_len: U32::new(self.raw_len),
            crc: U32::new(self.crc),
            offset: U32::new(self.offset),
            len: U32::new(self.len),
        }
    }

    pub fn to_bytes(self) -> [u8; PTR_LEN] {
        bytemuck::cast(self.encode())
    }

    /// Decodes a pointer; a hole must be all zero, a chunk's lengths must be possible (at
    /// most one largest block) and its block must lie inside its payload, so nothing read
    /// from disk drives an oversized allocation or an out-of-range slice.
    pub fn decode(p: &PtrLe, at: u64) -> Result<ChunkPtr> {
        let ptr = ChunkPtr {
            addr: p.addr.get(),
            stored_len: p.stored_len.get(),
            raw_len: p.raw_len.get(),
            crc: p.crc.get(),
            offset: p.offset.get(),
            len: p.len.get(),
        };
        let max = Kind::Chunk.max_stored();
        // A chunk lies in the data area, on the record grid, and ends below 2^63: arithmetic
        // on a pointer from a damaged store never overflows.
        let placed = ptr.addr >= DATA_START && (ptr.addr - DATA_START).is_multiple_of(ALIGN) && ptr.addr < 1 << 62;
        let bad = if ptr.addr == 0 {
            ptr != ChunkPtr::HOLE
        } else {
            !placed
                || ptr.raw_len == 0
                || ptr.raw_len as u64 > max
                || ptr.stored_len == 0
                || ptr.stored_len as u64 > max
                || ptr.len == 0
                || ptr.offset as u64 + ptr.len as u64 > ptr.raw_len as u64
        };
        if bad {
            return Err(Error::corrupt(format!("malformed chunk pointer at {at:#x}")));
        }
        Ok(ptr)
    }

    /// Decodes a pointer from exactly [`PTR_LEN`] bytes.
    pub fn from_bytes(b: &[u8], at: u64) -> Result<ChunkPtr> {
        let p: &PtrLe = bytemuck::try_from_bytes(b)
            .map_err(|_| Error::corrupt(format!("chunk pointer of wrong size at {at:#x}")))?;
        ChunkPtr::decode(p, at)
    }
}
