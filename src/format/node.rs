//! Node encoding. A node is a record payload:
//! `kind u8 | level u8 | count u16 | 0 u32 | slots[count] | entries`; a leaf is level 0 and a
//! branch one more than its children, so a walk knows each node's height without going down.
//! A leaf slot is `prefix u64 | offset u32` and its entry `klen u16 | vlen u32 | key | value`;
//! a branch slot is `prefix u64 | child u64 | offset u32` and its entry `klen u16 | key`.
//! The prefix is the key's first 8 bytes (big-endian, zero padded). Readers binary-search the
//! slots in place: a search touches entries only when prefixes tie, and a branch step reads the
//! child from the slot it stopped at.

use super::le::{view, U16, U32, U64};
use crate::error::{Error, Result};
use bytemuck::{Pod, Zeroable};

pub const LEAF: u8 = 1;
pub const BRANCH: u8 = 2;
pub const NODE_HEADER: usize = 8;
/// The highest level a branch may have (a tree is at most 64 levels deep).
pub const MAX_LEVEL: u8 = 64;
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

/// The node header.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Header {
    kind: u8,
    level: u8,
    count: U16,
    zero2: [u8; 4],
}

/// A leaf's slot: the key's prefix and where its entry starts.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct LeafSlot {
    prefix: U64,
    offset: U32,
}

/// A branch's slot: the first key's prefix, the child, and where the key starts.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct BranchSlot {
    prefix: U64,
    child: U64,
    offset: U32,
}

/// The fixed front of a leaf entry (the key and value follow).
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct LeafEntry {
    klen: U16,
    vlen: U32,
}

const _: () = assert!(size_of::<Header>() == NODE_HEADER);
const _: () = assert!(size_of::<LeafSlot>() == LEAF_SLOT && size_of::<BranchSlot>() == BRANCH_SLOT);

#[derive(Clone, Copy)]
enum Slots<'a> {
    Leaf(&'a [LeafSlot]),
    Branch(&'a [BranchSlot]),
}

/// A zero-copy, bounds-checked view of an encoded node.
#[derive(Clone, Copy)]
pub struct NodeView<'a> {
    data: &'a [u8],
    slots: Slots<'a>,
    addr: u64,
    level: u8,
}

impl<'a> NodeView<'a> {
    pub fn parse(data: &'a [u8], addr: u64) -> Result<Self> {
        let bad = |what: &str| Error::corrupt(format!("tree node at {addr:#x}: {what}"));
        let header: &Header = view(data).ok_or_else(|| bad("shorter than its header"))?;
        let count = header.count.get() as usize;
        if count == 0 {
            return Err(bad("empty node"));
        }
        let table = |slot: usize| {
            data.get(NODE_HEADER..NODE_HEADER + slot * count)
                .ok_or_else(|| bad("slot table past the node's end"))
        };
        let slots = match (header.kind, header.level) {
            (LEAF, 0) => Slots::Leaf(bytemuck::cast_slice(table(LEAF_SLOT)?)),
            (BRANCH, 1..=MAX_LEVEL) => Slots::Branch(bytemuck::cast_slice(table(BRANCH_SLOT)?)),
            (LEAF | BRANCH, _) => return Err(bad("level does not fit its kind")),
            _ => return Err(bad("unknown node kind")),
        };
        Ok(NodeView {
            data,
            slots,
            addr,
            level: header.level,
        })
    }

    /// The node's height above the leaves (0 for a leaf).
    pub fn level(&self) -> u8 {
        self.level
    }

    pub fn is_leaf(&self) -> bool {
        matches!(self.slots, Slots::Leaf(_))
    }

    #[allow(clippy::len_without_is_empty)] // a parsed node is never empty
    pub fn len(&self) -> usize {
        match self.slots {
            Slots::Leaf(s) => s.len(),
            Slots::Branch(s) => s.len(),
        }
    }

    fn bad(&self, i: usize) -> Error {
        Error::corrupt(format!("tree node at {:#x}: entry {i} out of bounds", self.addr))
    }

    /// The bytes from entry `i` on, at least `fixed` long.
    fn entry(&self, i: usize) -> Result<&'a [u8]> {
        let (off, fixed) = match self.slots {
            Slots::Leaf(s) => (s.get(i).map(|s| s.offset.get()), size_of::<LeafEntry>()),
            Slots::Branch(s) => (s.get(i).map(|s| s.offset.get()), size_of::<U16>()),
        };
        off.and_then(|o| self.data.get(o as usize..))
            .filter(|e| e.len() >= fixed)
            .ok_or_else(|| self.bad(i))
    }

    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        let e = self.entry(i)?;
        let (start, klen) = match self.slots {
            Slots::Leaf(_) => (size_of::<LeafEntry>(), view::<LeafEntry>(e).map(|h| h.klen.get())),
            Slots::Branch(_) => (size_of::<U16>(), view::<U16>(e).map(|k| k.get())),
        };
        let klen = klen.ok_or_else(|| self.bad(i))? as usize;
        e.get(start..start + klen).ok_or_else(|| self.bad(i))
    }

    pub fn val(&self, i: usize) -> Result<&'a [u8]> {
        let Slots::Leaf(_) = self.slots else {
            return Err(self.bad(i));
        };
        let e = self.entry(i)?;
        let h: &LeafEntry = view(e).ok_or_else(|| self.bad(i))?;
        let start = size_of::<LeafEntry>() + h.klen.get() as usize;
        e.get(start..start + h.vlen.get() as usize).ok_or_else(|| self.bad(i))
    }

    /// A leaf entry's bytes as stored (lengths, key and value): two entries are the same
    /// key and value exactly when these bytes are equal.
    pub fn raw_entry(&self, i: usize) -> Result<&'a [u8]> {
        let Slots::Leaf(_) = self.slots else {
            return Err(self.bad(i));
        };
        let e = self.entry(i)?;
        let h: &LeafEntry = view(e).ok_or_else(|| self.bad(i))?;
        let len = size_of::<LeafEntry>() + h.klen.get() as usize + h.vlen.get() as usize;
        e.get(..len).ok_or_else(|| self.bad(i))
    }

    pub fn child(&self, i: usize) -> Result<u64> {
        match self.slots {
            Slots::Branch(s) => s.get(i).map(|s| s.child.get()).ok_or_else(|| self.bad(i)),
            Slots::Leaf(_) => Err(self.bad(i)),
        }
    }

    /// The slots from slot `i` on, as stored (empty past the end).
    pub fn slots_from(&self, i: usize) -> &'a [u8] {
        match self.slots {
            Slots::Leaf(s) => bytemuck::cast_slice(s.get(i..).unwrap_or(&[])),
            Slots::Branch(s) => bytemuck::cast_slice(s.get(i..).unwrap_or(&[])),
        }
    }

    /// Bytes of one slot.
    pub fn slot_len(&self) -> usize {
        match self.slots {
            Slots::Leaf(_) => LEAF_SLOT,
            Slots::Branch(_) => BRANCH_SLOT,
        }
    }

    /// Where entry `i` starts, and where the one after it does (the node's end for the last):
    /// entries are stored in slot order, one after another.
    pub fn entry_span(&self, i: usize) -> Option<(usize, usize)> {
        let off = |j: usize| match self.slots {
            Slots::Leaf(s) => s.get(j).map(|s| s.offset.get() as usize),
            Slots::Branch(s) => s.get(j).map(|s| s.offset.get() as usize),
        };
        let start = off(i)?;
        let end = if i + 1 == self.len() {
            self.data.len()
        } else {
            off(i + 1)?
        };
        (start <= end && end <= self.data.len()).then_some((start, end))
    }

    /// The node's bytes from `at` on.
    pub fn bytes_from(&self, at: usize) -> &'a [u8] {
        self.data.get(at..).unwrap_or(&[])
    }

    /// The prefix in slot `i` (`i < len()`).
    pub fn prefix(&self, i: usize) -> u64 {
        match self.slots {
            Slots::Leaf(s) => s[i].prefix.get(),
            Slots::Branch(s) => s[i].prefix.get(),
        }
    }

    /// Binary search among the keys: `Ok(i)` on a match, `Err(i)` for the insertion point.
    /// A prefix that disagrees with its key (a damaged node) can only misdirect the search to
    /// "not found", never out of bounds.
    pub fn search(&self, key: &[u8]) -> Result<std::result::Result<usize, usize>> {
        let p = prefix(key);
        let (mut lo, mut hi) = (0, self.len());
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
    let mut out = header(LEAF, 0, n, LEAF_SLOT);
    for (i, (k, v)) in entries.enumerate() {
        let slot = LeafSlot {
            prefix: U64::new(prefix(k)),
            offset: U32::new(out.len() as u32),
        };
        let at = NODE_HEADER + LEAF_SLOT * i;
        out[at..at + LEAF_SLOT].copy_from_slice(bytemuck::bytes_of(&slot));
        let head = LeafEntry {
            klen: U16::new(k.len() as u16),
            vlen: U32::new(v.len() as u32),
        };
        out.extend_from_slice(bytemuck::bytes_of(&head));
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    out
}

/// Encodes a branch at `level` (its children's plus one) from its (first key, child address)
/// pairs.
pub fn encode_branch<'k>(level: u8, entries: impl ExactSizeIterator<Item = (&'k [u8], u64)>) -> Vec<u8> {
    let n = entries.len();
    let mut out = header(BRANCH, level, n, BRANCH_SLOT);
    for (i, (k, child)) in entries.enumerate() {
        let slot = BranchSlot {
            prefix: U64::new(prefix(k)),
            child: U64::new(child),
            offset: U32::new(out.len() as u32),
        };
        let at = NODE_HEADER + BRANCH_SLOT * i;
        out[at..at + BRANCH_SLOT].copy_from_slice(bytemuck::bytes_of(&slot));
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(k);
    }
    out
}

/// A node's header and a zeroed slot table, with room for the entries.
fn header(kind: u8, level: u8, count: usize, slot: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(TARGET + 256);
    let h = Header {
        kind,
        level,
        count: U16::new(count as u16),
        ..Zeroable::zeroed()
    };
    out.extend_from_slice(bytemuck::bytes_of(&h));
    out.resize(NODE_HEADER + slot * count, 0);
    out
}

/// A key's first 8 bytes as a big-endian number (zero-padded): ordered as the keys are.
pub fn prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}
