//! Block-map node encoding. A node is a record payload:
//! `kind u8 (1 leaf, 2 interior) | height u8 | count u16 | 0 u32 | count × u64`; slots past
//! `count` are holes (trailing holes are trimmed); 0 means hole or absent.

use super::le::{view, U16, U64};
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

/// The slots of an encoded node of `height`, checked against its header.
pub fn parse(data: &[u8], addr: u64, height: u8) -> Result<&[U64]> {
    let bad = || Error::corrupt(format!("block-map node at {addr:#x} is malformed"));
    let h: &Header = view(data).ok_or_else(bad)?;
    if height == 0 || height > MAX_HEIGHT {
        return Err(bad());
    }
    let kind = if height == 1 { LEAF } else { INTERIOR };
    let count = h.count.get() as usize;
    let slots = &data[size_of::<Header>()..];
    if h.kind != kind || h.height != height || count as u64 > FANOUT || slots.len() != 8 * count {
        return Err(bad());
    }
    Ok(bytemuck::cast_slice(slots))
}

/// Encodes a node of `height` with these slots (trailing holes already trimmed).
pub fn encode(height: u8, slots: &[u64]) -> Vec<u8> {
    let h = Header {
        kind: if height == 1 { LEAF } else { INTERIOR },
        height,
        count: U16::new(slots.len() as u16),
        zero: [0; 4],
    };
    let mut out = Vec::with_capacity(size_of::<Header>() + 8 * slots.len());
    out.extend_from_slice(bytemuck::bytes_of(&h));
    for a in slots {
        out.extend_from_slice(bytemuck::bytes_of(&U64::new(*a)));
    }
    out
}
