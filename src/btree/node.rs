//! Node encoding. A node is a record payload:
//! `kind u8 | 0 u8 | count u16 | 0 u32 | slots[count] | entries`.
//! A leaf slot is `prefix u64 | offset u32` and its entry `klen u16 | vlen u32 | key | value`;
//! a branch slot is `prefix u64 | child u64 | offset u32` and its entry `klen u16 | key`.
//! The prefix is the key's first 8 bytes (big-endian, zero padded). Readers binary-search the
//! slots in place: a search touches entries only when prefixes tie, and a branch step reads the
//! child from the slot it stopped at.

use crate::error::{Error, Result};

pub const LEAF: u8 = 1;
pub const BRANCH: u8 = 2;
pub const NODE_HEADER: usize = 8;
/// A node splits once its encoding grows past this many bytes.
pub const TARGET: usize = 4096;
pub const LEAF_SLOT: usize = 12;
pub const BRANCH_SLOT: usize = 20;

/// Encoded bytes of a leaf entry with keys and values of these lengths, slot included.
pub fn leaf_entry_len(klen: usize, vlen: usize) -> usize {
    LEAF_SLOT + 6 + klen + vlen
}

/// Encoded bytes of a branch entry with a key of this length, slot included.
pub fn branch_entry_len(klen: usize) -> usize {
    BRANCH_SLOT + 2 + klen
}

pub fn leaf_entry_size(key: &[u8], val: &[u8]) -> usize {
    leaf_entry_len(key.len(), val.len())
}

pub fn branch_entry_size(key: &[u8]) -> usize {
    branch_entry_len(key.len())
}

/// A zero-copy, bounds-checked view of an encoded node.
#[derive(Clone, Copy)]
pub struct NodeView<'a> {
    data: &'a [u8],
    count: usize,
    leaf: bool,
    addr: u64,
}

impl<'a> NodeView<'a> {
    pub fn parse(data: &'a [u8], addr: u64) -> Result<Self> {
        let bad = |what: &str| Error::corrupt(format!("tree node at {addr:#x}: {what}"));
        if data.len() < NODE_HEADER {
            return Err(bad("shorter than its header"));
        }
        let leaf = match data[0] {
            LEAF => true,
            BRANCH => false,
            _ => return Err(bad("unknown node kind")),
        };
        let count = u16::from_le_bytes([data[2], data[3]]) as usize;
        let slot = if leaf { LEAF_SLOT } else { BRANCH_SLOT };
        if NODE_HEADER + slot * count > data.len() {
            return Err(bad("slot table past the node's end"));
        }
        if count == 0 {
            return Err(bad("empty node"));
        }
        Ok(NodeView {
            data,
            count,
            leaf,
            addr,
        })
    }

    pub fn is_leaf(&self) -> bool {
        self.leaf
    }

    #[allow(clippy::len_without_is_empty)] // a parsed node is never empty
    pub fn len(&self) -> usize {
        self.count
    }

    fn bad(&self, i: usize) -> Error {
        Error::corrupt(format!("tree node at {:#x}: entry {i} out of bounds", self.addr))
    }

    /// Slot `i` (`i < count`, so inside the table `parse` checked).
    fn slot(&self, i: usize) -> &'a [u8] {
        let size = if self.leaf { LEAF_SLOT } else { BRANCH_SLOT };
        &self.data[NODE_HEADER + size * i..NODE_HEADER + size * (i + 1)]
    }

    fn entry(&self, i: usize) -> Result<&'a [u8]> {
        let s = self.slot(i);
        let o = if self.leaf { &s[8..12] } else { &s[16..20] };
        let off = u32::from_le_bytes(o.try_into().unwrap()) as usize;
        let fixed = if self.leaf { 6 } else { 2 };
        self.data
            .get(off..)
            .filter(|e| e.len() >= fixed)
            .ok_or_else(|| self.bad(i))
    }

    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        let e = self.entry(i)?;
        let klen = u16::from_le_bytes([e[0], e[1]]) as usize;
        let start = if self.leaf { 6 } else { 2 };
        e.get(start..start + klen).ok_or_else(|| self.bad(i))
    }

    pub fn val(&self, i: usize) -> Result<&'a [u8]> {
        if !self.leaf {
            return Err(self.bad(i));
        }
        let e = self.entry(i)?;
        let klen = u16::from_le_bytes([e[0], e[1]]) as usize;
        let vlen = u32::from_le_bytes(e[2..6].try_into().unwrap()) as usize;
        e.get(6 + klen..6 + klen + vlen).ok_or_else(|| self.bad(i))
    }

    pub fn child(&self, i: usize) -> Result<u64> {
        if self.leaf || i >= self.count {
            return Err(self.bad(i));
        }
        Ok(u64::from_le_bytes(self.slot(i)[8..16].try_into().unwrap()))
    }

    pub fn prefix(&self, i: usize) -> u64 {
        u64::from_le_bytes(self.slot(i)[..8].try_into().unwrap())
    }

    /// Binary search among the keys: `Ok(i)` on a match, `Err(i)` for the insertion point.
    /// A prefix that disagrees with its key (a damaged node) can only misdirect the search to
    /// "not found", never out of bounds.
    pub fn search(&self, key: &[u8]) -> Result<std::result::Result<usize, usize>> {
        let p = super::mem::prefix(key);
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let ord = match self.prefix(mid).cmp(&p) {
                std::cmp::Ordering::Equal => self.key(mid)?.cmp(key),
                o => o,
            };
            match ord {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Ok(mid)),
            }
        }
        Ok(Err(lo))
    }

    /// The child of a branch that covers `key` (the first key of a branch is ignored).
    pub fn child_for(&self, key: &[u8]) -> Result<usize> {
        Ok(match self.search(key)? {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        })
    }
}

/// Encodes a leaf from sorted entries.
pub fn encode_leaf<'k>(entries: impl ExactSizeIterator<Item = (&'k [u8], &'k [u8])>) -> Vec<u8> {
    let n = entries.len();
    let mut out = header(LEAF, n * LEAF_SLOT);
    for (i, (k, v)) in entries.enumerate() {
        let at = out.len() as u32;
        let s = NODE_HEADER + LEAF_SLOT * i;
        out[s..s + 8].copy_from_slice(&super::mem::prefix(k).to_le_bytes());
        out[s + 8..s + 12].copy_from_slice(&at.to_le_bytes());
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    out
}

/// Encodes a branch from its (first key, child address) pairs.
pub fn encode_branch<'k>(entries: impl ExactSizeIterator<Item = (&'k [u8], u64)>) -> Vec<u8> {
    let n = entries.len();
    let mut out = header(BRANCH, n * BRANCH_SLOT);
    for (i, (k, child)) in entries.enumerate() {
        let at = out.len() as u32;
        let s = NODE_HEADER + BRANCH_SLOT * i;
        out[s..s + 8].copy_from_slice(&super::mem::prefix(k).to_le_bytes());
        out[s + 8..s + 16].copy_from_slice(&child.to_le_bytes());
        out[s + 16..s + 20].copy_from_slice(&at.to_le_bytes());
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(k);
    }
    out
}

fn header(kind: u8, slots: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(TARGET + 256);
    out.push(kind);
    out.push(0);
    out.extend_from_slice(&((slots / if kind == LEAF { LEAF_SLOT } else { BRANCH_SLOT }) as u16).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.resize(NODE_HEADER + slots, 0);
    out
}
