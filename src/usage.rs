//! Space accounting (`df`): what each layer, container and volume holds, references and
//! would free, as ZFS reports used and referenced.
//!
//! It walks metadata only (tree nodes and block maps: 8 bytes per block), never chunk data.
//! Per-node totals are cached by node address — nodes are immutable, so the cache never goes
//! stale and a later `df` only visits nodes written since. Exclusive bytes come from one pass
//! that marks each node and chunk with the single tree that reaches it, or "shared": every
//! node changes mark at most twice, so the pass is linear in the live metadata.

use crate::blockmap;
use crate::btree::tree::load_view;
use crate::error::Result;
use crate::segment::Source;
use crate::value::{Body, Entry};
use std::collections::HashMap;

/// What one tree holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeUsage {
    /// Sum of its values' sizes, holes excluded (at block granularity).
    pub logical_bytes: u64,
    /// Stored bytes (records as written, compressed or not) of the chunks it references.
    pub referenced_bytes: u64,
    /// Stored bytes only it references: what removing it alone would free.
    pub exclusive_bytes: u64,
}

/// Subtree totals of an immutable node: logical bytes, referenced stored bytes, references.
#[derive(Clone, Copy, Default)]
pub(crate) struct Totals {
    logical: u64,
    referenced: u64,
    mapped_blocks: u64,
    raw: u64,
}

/// Cache of subtree totals by node address.
#[derive(Default)]
pub(crate) struct TotalsCache {
    nodes: HashMap<u64, Totals>,
}

impl TotalsCache {
    fn map<S: Source + ?Sized>(&mut self, src: &S, h: u8, root: u64) -> Result<Totals> {
        if root == 0 {
            return Ok(Totals::default());
        }
        if let Some(t) = self.nodes.get(&root) {
            return Ok(*t);
        }
        let mut t = Totals::default();
        for slot in blockmap::node_slots(src, root, h)? {
            if slot == 0 {
                continue;
            }
            if h == 1 {
                let rec = src.record(slot)?;
                t.referenced += rec.header.size();
                t.raw += rec.header.raw_len as u64;
                t.mapped_blocks += 1;
            } else {
                let c = self.map(src, h - 1, slot)?;
                t.referenced += c.referenced;
                t.raw += c.raw;
                t.mapped_blocks += c.mapped_blocks;
            }
        }
        self.nodes.insert(root, t);
        Ok(t)
    }

    /// Totals of a layer tree below `root`.
    pub fn tree<S: Source + ?Sized>(&mut self, src: &S, root: u64) -> Result<Totals> {
        if root == 0 {
            return Ok(Totals::default());
        }
        if let Some(t) = self.nodes.get(&root) {
            return Ok(*t);
        }
        let view = load_view(src, root)?;
        let mut t = Totals::default();
        for i in 0..view.len() {
            if view.is_leaf() {
                let e = Entry::decode(view.val(i)?)?;
                match e.body {
                    Body::Inline(d) => t.logical += d.len() as u64,
                    Body::Blocks { shift, height, root } => {
                        let m = self.map(src, height, root)?;
                        t.logical += e.size.min(m.mapped_blocks << shift);
                        t.referenced += m.referenced;
                        t.raw += m.raw;
                    }
                }
            } else {
                let c = self.tree(src, view.child(i)?)?;
                t.logical += c.logical;
                t.referenced += c.referenced;
                t.raw += c.raw;
            }
        }
        self.nodes.insert(root, t);
        Ok(t)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    One(usize),
    Shared,
}

/// Marks every node and chunk with the one tree that reaches it, or shared.
pub(crate) struct Owners<'a, S: Source + ?Sized> {
    src: &'a S,
    owner: HashMap<u64, Owner>,
    /// Chunks with their stored size, in the order first met.
    chunks: Vec<(u64, u64, u64)>,
}

#[derive(Clone, Copy)]
enum Node {
    Tree,
    Map(u8),
    Chunk,
}

impl<'a, S: Source + ?Sized> Owners<'a, S> {
    pub fn new(src: &'a S) -> Self {
        Owners {
            src,
            owner: HashMap::new(),
            chunks: Vec::new(),
        }
    }

    fn children(&self, addr: u64, kind: Node) -> Result<Vec<(u64, Node)>> {
        let mut out = Vec::new();
        match kind {
            Node::Chunk => {}
            Node::Map(h) => {
                for s in blockmap::node_slots(self.src, addr, h)?.into_iter().filter(|&s| s != 0) {
                    out.push((s, if h == 1 { Node::Chunk } else { Node::Map(h - 1) }));
                }
            }
            Node::Tree => {
                let view = load_view(self.src, addr)?;
                for i in 0..view.len() {
                    if view.is_leaf() {
                        if let Body::Blocks { height, root, .. } = Entry::decode(view.val(i)?)?.body {
                            if root != 0 {
                                out.push((root, Node::Map(height)));
                            }
                        }
                    } else {
                        out.push((view.child(i)?, Node::Tree));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Walks tree number `t` from its root.
    pub fn walk(&mut self, t: usize, root: u64) -> Result<()> {
        if root != 0 {
            self.visit(root, Node::Tree, Owner::One(t))?;
        }
        Ok(())
    }

    fn visit(&mut self, addr: u64, kind: Node, by: Owner) -> Result<()> {
        let next = match (self.owner.get(&addr).copied(), by) {
            (None, _) => {
                if let Node::Chunk = kind {
                    let h = self.src.record(addr)?.header;
                    self.chunks.push((addr, h.size(), h.raw_len as u64));
                }
                by
            }
            (Some(Owner::Shared), _) => return Ok(()),
            (Some(o), b) if o == b => return Ok(()),
            (Some(_), _) => Owner::Shared,
        };
        self.owner.insert(addr, next);
        for (c, k) in self.children(addr, kind)? {
            self.visit(c, k, next)?;
        }
        Ok(())
    }

    /// Exclusive stored bytes of each of `n` trees; distinct chunks' stored and raw bytes.
    pub fn finish(&self, n: usize) -> (Vec<u64>, u64, u64, u64) {
        let mut excl = vec![0u64; n];
        let (mut stored, mut raw) = (0, 0);
        for &(addr, size, raw_len) in &self.chunks {
            stored += size;
            raw += raw_len;
            if let Some(Owner::One(t)) = self.owner.get(&addr) {
                excl[*t] += size;
            }
        }
        (excl, stored, raw, self.chunks.len() as u64)
    }
}

impl Totals {
    pub fn usage(&self, exclusive: u64) -> TreeUsage {
        TreeUsage {
            logical_bytes: self.logical,
            referenced_bytes: self.referenced,
            exclusive_bytes: exclusive,
        }
    }

    /// Raw (uncompressed) bytes of the chunk references below.
    pub fn raw(&self) -> u64 {
        self.raw
    }
}
