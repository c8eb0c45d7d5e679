//! Block-map node encoding. A node is a record payload:
//! `kind u8 (1 leaf, 2 interior) | height u8 | count u16 | 0 u32 | count × slot`. A leaf slot
//! is a 28-byte chunk pointer (`format::ptr`), an interior slot a child's address (u64).
//! Slots past `count` are holes (trailing holes are trimmed); zero means hole or absent.

use super::le::{view, U16, U64};
use super::ptr::{ChunkPtr, PtrLe, PTR_LEN};
use crate::error::{Error, Result};
use bytemuck::{Pod, Zeroable};

/// Slots of a node.
pub const FANOUT: u64 = 512;
/// A map of height 7 covers 512^7 blocks: more than a u64 offset can address.
pub const MAX_HEIGHT: u8 = 7;
const LEAF: u8 = 1;
const INTERIOR: u8 = 2;

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Header {
    kind: u8,
    height: u8,
    count: U16,
    zero: [u8; 4],
}

/// The slot bytes of an encoded node of `height`, checked against its header.
fn slots(data: &[u8], addr: u64, height: u8, slot_len: usize) -> Result<&[u8]> {
    let bad = || Error::corrupt(format!("block-map node at {addr:#x} is malformed"));
    let h: &Header = view(data).ok_or_else(bad)?;
    if height == 0 || height > MAX_HEIGHT {
        return Err(bad());
    }
    let kind = if height == 1 { LEAF } else { INTERIOR };
    let count = h.count.get() as usize;
    let slots = &data[size_of::<Header>()..];
    if h.kind != kind || h.height != height || count as u64 > FANOUT || slots.len() != slot_len * count {
        return Err(bad());
    }
    Ok(slots)
}

/// The children of an interior node of `height` (≥ 2).
pub fn parse_interior(data: &[u8], addr: u64, height: u8) -> Result<&[U64]> {
    if height < 2 {
        return Err(Error::corrupt(format!("block-map node at {addr:#x} is malformed")));
    }
    Ok(bytemuck::cast_slice(slots(data, addr, height, 8)?))
}

/// The chunk pointers of a leaf (height 1), still encoded.
pub fn parse_leaf(data: &[u8], addr: u64) -> Result<&[PtrLe]> {
    Ok(bytemuck::cast_slice(slots(data, addr, 1, PTR_LEN)?))
}

fn header(height: u8, count: usize) -> Header {
    Header {
        kind: if height == 1 { LEAF } else { INTERIOR },
        height,
        count: U16::new(count as u16),
        zero: [0; 4],
    }
}

/// Encodes an interior node of `height` with these children (trailing holes already trimmed).
pub fn encode_interior(height: u8, kids: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_of::<Header>() + 8 * kids.len());
    out.extend_from_slice(bytemuck::bytes_of(&header(height, kids.len())));
    for a in kids {
        out.extend_from_slice(bytemuck::bytes_of(&U64::new(*a)));
    }
    out
}

/// Encodes a leaf with these chunk pointers (trailing holes already trimmed).
pub fn encode_leaf(ptrs: &[ChunkPtr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_of::<Header>() + PTR_LEN * ptrs.len());
    out.extend_from_slice(bytemuck::bytes_of(&header(1, ptrs.len())));
    for p in ptrs {
        out.extend_from_slice(&p.to_bytes());
    }
    out
}
