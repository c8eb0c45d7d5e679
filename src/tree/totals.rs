//! Subtree totals of immutable nodes, cached by node address: a node never changes, so the
//! cache holds until gc gives space back for reuse (a new `pooled` generation), and a later
//! `df` only visits nodes written since.

use super::blockmap;
use super::btree::load_view;
use crate::error::Result;
use crate::format::value::{Body, Entry};
use crate::io::Source;
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
    /// The `pooled` generation the cached nodes were read under: once gc pools extents, an
    /// address may hold another node, so the cache starts over.
    pooled: u64,
}

impl TotalsCache {
    /// Forgets every node when space was given back for reuse since the cache was filled.
    pub fn valid_for(&mut self, pooled: u64) {
        if self.pooled != pooled {
            self.nodes.clear();
            self.pooled = pooled;
        }
    }

    fn map<S: Source + ?Sized>(&mut self, src: &S, h: u8, root: u64) -> Result<Totals> {
        if root == 0 {
            return Ok(Totals::default());
        }
        if let Some(t) = self.nodes.get(&root) {
            return Ok(*t);
        }
        let mut t = Totals::default();
        if h == 1 {
            // The pointers carry each chunk's lengths: no chunk is read. A block packed with
            // others counts its share of the pack.
            for p in blockmap::leaf_ptrs(src, root)?.iter().filter(|p| !p.is_hole()) {
                t.referenced += p.share();
                t.raw += p.len as u64;
                t.mapped_blocks += 1;
            }
        } else {
            for kid in blockmap::interior_kids(src, root, h)?.into_iter().filter(|&k| k != 0) {
                let c = self.map(src, h - 1, kid)?;
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
        self.subtree(src, root, 0)
    }

    /// Totals below `root`, `depth` levels down: a damaged tree whose child points back up
    /// is an error at the depth no real tree reaches, not endless recursion.
    fn subtree<S: Source + ?Sized>(&mut self, src: &S, root: u64, depth: u32) -> Result<Totals> {
        if root == 0 {
            return Ok(Totals::default());
        }
        super::btree::too_deep(depth, root)?;
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
                    Body::Link(_) => {}
                    Body::Blocks { shift, height, root } => {
                        let m = self.map(src, height, root)?;
                        t.logical += e.size.min(m.mapped_blocks << shift);
                        t.referenced += m.referenced;
                        t.raw += m.raw;
                    }
                }
            } else {
                let c = self.subtree(src, view.child(i)?, depth + 1)?;
                t.logical += c.logical;
                t.referenced += c.referenced;
                t.raw += c.raw;
            }
        }
        self.nodes.insert(root, t);
        Ok(t)
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
