//! A tree node held in memory while it changes. Keys and values live in one contiguous heap
//! per node, reached through a sorted offset array, so a binary search touches a few cache
//! lines of one allocation instead of one allocation per key. Each entry's first 8 key bytes
//! sit next to its offset, so most comparisons never leave that array.

use crate::format::node::{branch_entry_len, branch_entry_size, leaf_entry_len, leaf_entry_size, prefix, NODE_HEADER};

/// A child pointer: a committed node on disk, or a changed node held in memory.
pub enum Ref {
    Disk(u64),
    Mem(Box<Node>),
}

/// Entry layout in `heap`: `klen u16 | vlen u32 | key | value` (branches: `vlen` = 0).
pub struct Node {
    pub leaf: bool,
    /// The first 8 bytes of each key, big-endian, zero-padded: same order as the keys.
    pfx: Vec<u64>,
    offs: Vec<u32>,
    heap: Vec<u8>,
    /// Children of a branch, one per entry.
    pub kids: Vec<Ref>,
    /// Size of this node's encoding.
    pub bytes: usize,
    /// Heap bytes no entry points at any more.
    dead: usize,
}

impl Node {
    pub fn new(leaf: bool) -> Node {
        Node {
            leaf,
            pfx: Vec::new(),
            offs: Vec::new(),
            heap: Vec::new(),
            kids: Vec::new(),
            bytes: NODE_HEADER,
            dead: 0,
        }
    }

    pub fn with_capacity(leaf: bool, entries: usize, heap: usize) -> Node {
        Node {
            leaf,
            pfx: Vec::with_capacity(entries + 1),
            offs: Vec::with_capacity(entries + 1),
            heap: Vec::with_capacity(heap),
            kids: Vec::with_capacity(if leaf { 0 } else { entries + 1 }),
            bytes: NODE_HEADER,
            dead: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.offs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offs.is_empty()
    }

    fn lens(&self, i: usize) -> (usize, usize, usize) {
        let o = self.offs[i] as usize;
        let h = &self.heap[o..o + 6];
        (
            o,
            u16::from_le_bytes([h[0], h[1]]) as usize,
            u32::from_le_bytes([h[2], h[3], h[4], h[5]]) as usize,
        )
    }

    pub fn key(&self, i: usize) -> &[u8] {
        let (o, k, _) = self.lens(i);
        &self.heap[o + 6..o + 6 + k]
    }

    pub fn val(&self, i: usize) -> &[u8] {
        let (o, k, v) = self.lens(i);
        &self.heap[o + 6 + k..o + 6 + k + v]
    }

    /// `Ok(i)` when entry `i` has the key, `Err(i)` where it would go.
    pub fn search(&self, key: &[u8]) -> Result<usize, usize> {
        let p = prefix(key);
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let ord = self.pfx[mid].cmp(&p).then_with(|| self.key(mid).cmp(key));
            match ord {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// The child of a branch covering `key` (its first key is not used).
    pub fn child_index(&self, key: &[u8]) -> usize {
        match self.search(key) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }

    pub fn entry_size(&self, i: usize) -> usize {
        let (_, k, v) = self.lens(i);
        if self.leaf {
            leaf_entry_len(k, v)
        } else {
            branch_entry_len(k)
        }
    }

    fn push_heap(&mut self, key: &[u8], val: &[u8]) -> u32 {
        let at = self.heap.len() as u32;
        self.heap.extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.heap.extend_from_slice(&(val.len() as u32).to_le_bytes());
        self.heap.extend_from_slice(key);
        self.heap.extend_from_slice(val);
        at
    }

    fn forget(&mut self, i: usize) {
        let (_, k, v) = self.lens(i);
        self.dead += 6 + k + v;
    }

    /// Rewrites the heap without dead bytes once they are most of it.
    fn maybe_compact(&mut self) {
        if self.dead < 4096 || self.dead * 2 < self.heap.len() {
            return;
        }
        let mut heap = Vec::with_capacity(self.heap.len() - self.dead);
        for i in 0..self.len() {
            let (o, k, v) = self.lens(i);
            let at = heap.len() as u32;
            heap.extend_from_slice(&self.heap[o..o + 6 + k + v]);
            self.offs[i] = at;
        }
        self.heap = heap;
        self.dead = 0;
    }

    pub fn insert_leaf(&mut self, i: usize, key: &[u8], val: &[u8]) {
        let at = self.push_heap(key, val);
        self.offs.insert(i, at);
        self.pfx.insert(i, prefix(key));
        self.bytes += leaf_entry_size(key, val);
    }

    /// Replaces the value of entry `i`; returns the old one.
    pub fn replace_val(&mut self, i: usize, val: &[u8]) -> Vec<u8> {
        let old = self.val(i).to_vec();
        let key = self.key(i).to_vec();
        self.forget(i);
        self.offs[i] = self.push_heap(&key, val);
        self.bytes = self.bytes + val.len() - old.len();
        self.maybe_compact();
        old
    }

    pub fn insert_branch(&mut self, i: usize, key: &[u8], kid: Ref) {
        let at = self.push_heap(key, &[]);
        self.offs.insert(i, at);
        self.pfx.insert(i, prefix(key));
        self.kids.insert(i, kid);
        self.bytes += branch_entry_size(key);
    }

    /// Removes entry `i`: its key, its value (leaf) and its child (branch).
    pub fn remove(&mut self, i: usize) -> (Vec<u8>, Vec<u8>, Option<Ref>) {
        let (key, val) = (self.key(i).to_vec(), self.val(i).to_vec());
        self.bytes -= self.entry_size(i);
        self.forget(i);
        self.offs.remove(i);
        self.pfx.remove(i);
        let kid = (!self.leaf).then(|| self.kids.remove(i));
        self.maybe_compact();
        (key, val, kid)
    }

    /// Changes the key of entry `i` (a branch's first key, when merging).
    pub fn set_key(&mut self, i: usize, key: &[u8]) {
        let val = self.val(i).to_vec();
        let old = self.entry_size(i);
        self.forget(i);
        self.offs[i] = self.push_heap(key, &val);
        self.pfx[i] = prefix(key);
        self.bytes = self.bytes - old + self.entry_size(i);
    }

    /// Moves entries `m..` into a new node.
    pub fn split_off(&mut self, m: usize) -> Node {
        let mut right = Node::with_capacity(self.leaf, self.len() - m, self.heap.len() / 2);
        for i in m..self.len() {
            let (o, k, v) = self.lens(i);
            let at = right.heap.len() as u32;
            right.heap.extend_from_slice(&self.heap[o..o + 6 + k + v]);
            right.offs.push(at);
            right.pfx.push(self.pfx[i]);
            right.bytes += self.entry_size(i);
            self.dead += 6 + k + v;
        }
        self.bytes -= right.bytes - NODE_HEADER;
        self.offs.truncate(m);
        self.pfx.truncate(m);
        if !self.leaf {
            right.kids = self.kids.split_off(m);
        }
        self.maybe_compact();
        right
    }

    /// Appends every entry of `right` (whose keys all follow this node's).
    pub fn append(&mut self, right: Node) {
        for i in 0..right.len() {
            let (o, k, v) = right.lens(i);
            let at = self.heap.len() as u32;
            self.heap.extend_from_slice(&right.heap[o..o + 6 + k + v]);
            self.offs.push(at);
        }
        self.pfx.extend_from_slice(&right.pfx);
        self.bytes += right.bytes - NODE_HEADER;
        self.kids.extend(right.kids);
    }
}
