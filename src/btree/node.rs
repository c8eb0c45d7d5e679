//! Node encoding. A node is a record payload:
//! `kind u8 | 0 u8 | count u16 | 0 u32 | offsets[count] u32 | prefixes[count] u64 | entries`,
//! where a leaf entry is `klen u16 | vlen u32 | key | value` and a branch entry is
//! `klen u16 | child u64 | key`, and a prefix is a key's first 8 bytes (big-endian, zero
//! padded). Readers binary-search in place over the prefixes, touching entries only to break
//! ties, without parsing the node.

use crate::error::{Error, Result};

pub const LEAF: u8 = 1;
pub const BRANCH: u8 = 2;
pub const NODE_HEADER: usize = 8;
/// A node splits once its encoding grows past this many bytes.
pub const TARGET: usize = 4096;

/// Bytes a node's offset and prefix arrays take per entry.
pub const PER_ENTRY: usize = 12;

pub fn leaf_entry_size(key: &[u8], val: &[u8]) -> usize {
    PER_ENTRY + 6 + key.len() + val.len()
}

pub fn branch_entry_size(key: &[u8]) -> usize {
    PER_ENTRY + 10 + key.len()
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
        if NODE_HEADER + PER_ENTRY * count > data.len() {
            return Err(bad("offset table past the node's end"));
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

    fn entry(&self, i: usize) -> Result<&'a [u8]> {
        let at = NODE_HEADER + 4 * i;
        let off = u32::from_le_bytes(self.data[at..at + 4].try_into().unwrap()) as usize;
        let fixed = if self.leaf { 6 } else { 10 };
        let e = self
            .data
            .get(off..)
            .filter(|e| e.len() >= fixed)
            .ok_or_else(|| self.bad(i))?;
        Ok(e)
    }

    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        let e = self.entry(i)?;
        let klen = u16::from_le_bytes([e[0], e[1]]) as usize;
        let start = if self.leaf { 6 } else { 10 };
        e.get(start..start + klen).ok_or_else(|| self.bad(i))
    }

    pub fn val(&self, i: usize) -> Result<&'a [u8]> {
        let e = self.entry(i)?;
        if !self.leaf {
            return Err(self.bad(i));
        }
        let klen = u16::from_le_bytes([e[0], e[1]]) as usize;
        let vlen = u32::from_le_bytes(e[2..6].try_into().unwrap()) as usize;
        e.get(6 + klen..6 + klen + vlen).ok_or_else(|| self.bad(i))
    }

    pub fn child(&self, i: usize) -> Result<u64> {
        let e = self.entry(i)?;
        if self.leaf {
            return Err(self.bad(i));
        }
        Ok(u64::from_le_bytes(e[2..10].try_into().unwrap()))
    }

    pub fn prefix(&self, i: usize) -> u64 {
        let at = NODE_HEADER + 4 * self.count + 8 * i;
        u64::from_le_bytes(self.data[at..at + 8].try_into().unwrap())
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
    let mut out = header(LEAF, n);
    let mut at = NODE_HEADER + PER_ENTRY * n;
    for (i, (k, v)) in entries.enumerate() {
        set_slot(&mut out, n, i, at, k);
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(v);
        at = out.len();
    }
    out
}

/// Encodes a branch from its (first key, child address) pairs.
pub fn encode_branch<'k>(entries: impl ExactSizeIterator<Item = (&'k [u8], u64)>) -> Vec<u8> {
    let n = entries.len();
    let mut out = header(BRANCH, n);
    let mut at = NODE_HEADER + PER_ENTRY * n;
    for (i, (k, child)) in entries.enumerate() {
        set_slot(&mut out, n, i, at, k);
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(&child.to_le_bytes());
        out.extend_from_slice(k);
        at = out.len();
    }
    out
}

fn set_slot(out: &mut [u8], n: usize, i: usize, at: usize, key: &[u8]) {
    out[NODE_HEADER + 4 * i..NODE_HEADER + 4 * i + 4].copy_from_slice(&(at as u32).to_le_bytes());
    let p = NODE_HEADER + 4 * n + 8 * i;
    out[p..p + 8].copy_from_slice(&super::mem::prefix(key).to_le_bytes());
}

fn header(kind: u8, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(TARGET + 256);
    out.push(kind);
    out.push(0);
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.resize(NODE_HEADER + PER_ENTRY * n, 0);
    out
}
