//! The block map of a large value: a copy-on-write radix tree from block index to chunk
//! address, 512 slots a node, like a page table (dm-thin, qcow2's L1/L2). Writing one block
//! copies one node per level; unwritten ranges are holes that cost nothing.
//! Nodes are encoded by `format::mapnode`.

use crate::error::{Error, Result};
use crate::format::compression::Compression;
use crate::format::mapnode::{self, FANOUT, MAX_HEIGHT};
use crate::format::ptr::{ChunkPtr, PENDING};
use crate::format::record::{self, Kind};
use crate::io::{Source, Writer};

const BITS: u32 = 9;

enum BRef {
    Disk(u64),
    Mem(Box<BNode>),
}

/// Leaves hold chunk pointers in `slots`; interior nodes hold children in `kids`.
struct BNode {
    slots: Vec<ChunkPtr>,
    kids: Vec<Option<BRef>>,
}

/// A value's block map. Height h covers 512^h blocks; height 0 is empty.
pub struct BlockMap {
    height: u8,
    root: Option<BRef>,
}

fn node_record<S: Source + ?Sized>(src: &S, addr: u64) -> Result<crate::format::record::Record<'_>> {
    let rec = src.record(addr)?.expect(Kind::MapNode)?;
    if rec.header.codec != 0 {
        return Err(Error::corrupt(format!("block-map node at {addr:#x} is malformed")));
    }
    Ok(rec)
}

/// The chunk pointers of a committed leaf (trailing holes omitted).
pub(crate) fn leaf_ptrs<S: Source + ?Sized>(src: &S, addr: u64) -> Result<Vec<ChunkPtr>> {
    let rec = node_record(src, addr)?;
    mapnode::parse_leaf(rec.stored, addr)?
        .iter()
        .map(|p| ChunkPtr::decode(p, addr))
        .collect()
}

/// The children of a committed interior node of `height` (trailing holes omitted).
pub(crate) fn interior_kids<S: Source + ?Sized>(src: &S, addr: u64, height: u8) -> Result<Vec<u64>> {
    let rec = node_record(src, addr)?;
    Ok(mapnode::parse_interior(rec.stored, addr, height)?
        .iter()
        .map(|a| a.get())
        .collect())
}

/// One slot of a committed node: a child's address (interior) or a chunk pointer (leaf).
fn disk_slot<S: Source + ?Sized>(src: &S, addr: u64, height: u8, i: usize) -> Result<Result<u64, ChunkPtr>> {
    let rec = node_record(src, addr)?;
    if height == 1 {
        let ptrs = mapnode::parse_leaf(rec.stored, addr)?;
        Ok(Err(ptrs
            .get(i)
            .map_or(Ok(ChunkPtr::HOLE), |p| ChunkPtr::decode(p, addr))?))
    } else {
        let kids = mapnode::parse_interior(rec.stored, addr, height)?;
        Ok(Ok(kids.get(i).map_or(0, |a| a.get())))
    }
}

fn load<S: Source + ?Sized>(src: &S, addr: u64, height: u8) -> Result<BNode> {
    Ok(if height == 1 {
        // Slots past the last mapped block are holes, not kept: an open value's map costs
        // memory for the blocks it has (a layer being built keeps every small file open).
        BNode {
            slots: leaf_ptrs(src, addr)?,
            kids: Vec::new(),
        }
    } else {
        let mut kids = interior_kids(src, addr, height)?;
        kids.resize(FANOUT as usize, 0);
        BNode {
            slots: Vec::new(),
            kids: kids.into_iter().map(|a| (a != 0).then_some(BRef::Disk(a))).collect(),
        }
    })
}

fn empty_node(height: u8) -> BNode {
    if height == 1 {
        BNode {
            slots: Vec::new(),
            kids: Vec::new(),
        }
    } else {
        BNode {
            slots: Vec::new(),
            kids: (0..FANOUT).map(|_| None).collect(),
        }
    }
}

fn capacity(height: u8) -> u64 {
    if height == 0 {
        0
    } else {
        1u64.checked_shl(BITS * height as u32).unwrap_or(u64::MAX)
    }
}

fn slot_of(idx: u64, height: u8) -> usize {
    ((idx >> (BITS * (height as u32 - 1))) & (FANOUT - 1)) as usize
}

impl BRef {
    fn make_mut<S: Source + ?Sized>(&mut self, src: &S, height: u8) -> Result<&mut BNode> {
        if let BRef::Disk(addr) = *self {
            *self = BRef::Mem(Box::new(load(src, addr, height)?));
        }
        match self {
            BRef::Mem(n) => Ok(n),
            BRef::Disk(_) => unreachable!("made resident above"),
        }
    }
}

impl BlockMap {
    pub fn empty() -> BlockMap {
        BlockMap { height: 0, root: None }
    }

    pub fn at(height: u8, root: u64) -> Result<BlockMap> {
        if height > MAX_HEIGHT || (height == 0) != (root == 0) {
            return Err(Error::corrupt(format!("block map of height {height} at {root:#x}")));
        }
        Ok(BlockMap {
            height,
            root: (root != 0).then_some(BRef::Disk(root)),
        })
    }

    /// The chunk pointer of block `idx` (a hole when unmapped).
    pub fn get<S: Source + ?Sized>(&self, src: &S, idx: u64) -> Result<ChunkPtr> {
        if idx >= capacity(self.height) {
            return Ok(ChunkPtr::HOLE);
        }
        let mut h = self.height;
        let mut cur = match &self.root {
            None => return Ok(ChunkPtr::HOLE),
            Some(r) => r,
        };
        loop {
            let slot = slot_of(idx, h);
            match cur {
                BRef::Mem(n) if h == 1 => return Ok(n.slots.get(slot).copied().unwrap_or(ChunkPtr::HOLE)),
                BRef::Mem(n) => match &n.kids[slot] {
                    None => return Ok(ChunkPtr::HOLE),
                    Some(k) => cur = k,
                },
                BRef::Disk(addr) => {
                    let mut addr = *addr;
                    loop {
                        match disk_slot(src, addr, h, slot_of(idx, h))? {
                            Err(ptr) => return Ok(ptr),
                            Ok(0) => return Ok(ChunkPtr::HOLE),
                            Ok(child) => addr = child,
                        }
                        h -= 1;
                    }
                }
            }
            h -= 1;
        }
    }

    /// Points block `idx` at a chunk (a hole pointer unmaps it).
    pub fn set<S: Source + ?Sized>(&mut self, src: &S, idx: u64, ptr: ChunkPtr) -> Result<()> {
        // A block written with the bytes it had (dedup gives the same pointer) changes nothing:
        // the map keeps its nodes, so an unchanged value keeps its entry and diffs see nothing.
        let old = self.get(src, idx)?;
        if old == ptr || (ptr.is_hole() && old.is_hole()) {
            return Ok(());
        }
        while idx >= capacity(self.height) {
            if self.height >= MAX_HEIGHT {
                return Err(Error::OutOfRange(format!("block index {idx}")));
            }
            self.height += 1;
            if let Some(old) = self.root.take() {
                let mut node = empty_node(self.height);
                node.kids[0] = Some(old);
                self.root = Some(BRef::Mem(Box::new(node)));
            }
        }
        let mut h = self.height;
        let mut cur = self.root.get_or_insert_with(|| BRef::Mem(Box::new(empty_node(h))));
        loop {
            let node = cur.make_mut(src, h)?;
            let slot = slot_of(idx, h);
            if h == 1 {
                if slot >= node.slots.len() {
                    node.slots.resize(slot + 1, ChunkPtr::HOLE);
                }
                node.slots[slot] = ptr;
                return Ok(());
            }
            cur = node.kids[slot].get_or_insert_with(|| BRef::Mem(Box::new(empty_node(h - 1))));
            h -= 1;
        }
    }

    /// Makes every block at index >= `nblocks` a hole.
    pub fn truncate<S: Source + ?Sized>(&mut self, src: &S, nblocks: u64) -> Result<()> {
        if nblocks == 0 {
            *self = BlockMap::empty();
            return Ok(());
        }
        if nblocks >= capacity(self.height) {
            return Ok(());
        }
        let h = self.height;
        if let Some(root) = self.root.as_mut() {
            truncate_rec(root, src, h, nblocks)?;
        }
        Ok(())
    }

    /// The highest record number a block points into among packs and clusters not yet
    /// written (only nodes in memory can), or `None`.
    pub fn newest_pending(&self) -> Option<u64> {
        fn newest(r: &BRef, h: u8) -> Option<u64> {
            match r {
                BRef::Disk(_) => None,
                BRef::Mem(n) if h == 1 => n
                    .slots
                    .iter()
                    .filter(|p| p.is_pending())
                    .map(|p| p.addr & !PENDING)
                    .max(),
                BRef::Mem(n) => n.kids.iter().flatten().filter_map(|k| newest(k, h - 1)).max(),
            }
        }
        self.root.as_ref().and_then(|r| newest(r, self.height))
    }

    /// Writes changed nodes; returns (height, root address), (0, 0) when all holes.
    /// `resolve` gives the real pointer of a block in a pack written since it was mapped
    /// (`tree::pack`).
    pub fn flush(&mut self, w: &mut Writer, resolve: &Resolve) -> Result<(u8, u64)> {
        let h = self.height;
        let root = match self.root.as_mut() {
            None => 0,
            Some(r) => flush_rec(r, w, h, resolve)?,
        };
        if root == 0 {
            *self = BlockMap::empty();
        }
        Ok((self.height, root))
    }
}

fn truncate_rec<S: Source + ?Sized>(r: &mut BRef, src: &S, h: u8, keep: u64) -> Result<()> {
    // `keep` counts the blocks of this subtree to keep; the rest become holes.
    let node = r.make_mut(src, h)?;
    if h == 1 {
        node.slots.truncate(keep as usize);
        return Ok(());
    }
    let per = capacity(h - 1);
    let full = (keep / per) as usize;
    let rest = keep % per;
    let mut cut = full;
    if rest > 0 {
        if let Some(k) = node.kids[full].as_mut() {
            truncate_rec(k, src, h - 1, rest)?;
        }
        cut += 1;
    }
    node.kids[cut..].iter_mut().for_each(|k| *k = None);
    Ok(())
}

/// Calls `f(block index, chunk pointer)` for every mapped block of a committed map, in
/// order; holes cost nothing, so a sparse value of any size is walked in O(its data). A node
/// met twice in one map (a damaged map whose nodes share children) is `Corrupt`, so the walk
/// is linear in the map's nodes whatever the damage.
pub(crate) fn for_each_block<S: Source + ?Sized>(
    src: &S,
    height: u8,
    root: u64,
    f: &mut dyn FnMut(u64, ChunkPtr) -> Result<()>,
) -> Result<()> {
    if root == 0 || height == 0 {
        return Ok(());
    }
    if height > MAX_HEIGHT {
        return Err(Error::corrupt(format!("block map of height {height}")));
    }
    walk_blocks(src, height, root, 0, &mut Default::default(), f)
}

fn walk_blocks<S: Source + ?Sized>(
    src: &S,
    h: u8,
    addr: u64,
    base: u64,
    seen: &mut std::collections::HashSet<u64>,
    f: &mut dyn FnMut(u64, ChunkPtr) -> Result<()>,
) -> Result<()> {
    if !seen.insert(addr) {
        return Err(Error::corrupt(format!(
            "block-map node {addr:#x} appears twice in one map"
        )));
    }
    if h == 1 {
        for (i, ptr) in leaf_ptrs(src, addr)?.into_iter().enumerate() {
            if !ptr.is_hole() {
                f(base + i as u64, ptr)?;
            }
        }
        return Ok(());
    }
    for (i, kid) in interior_kids(src, addr, h)?.into_iter().enumerate() {
        if kid != 0 {
            walk_blocks(src, h - 1, kid, base + ((i as u64) << (BITS * (h as u32 - 1))), seen, f)?;
        }
    }
    Ok(())
}

/// Writes a leaf with these pointers; 0 when they are all holes.
pub(crate) fn write_leaf(w: &mut Writer, ptrs: &[ChunkPtr]) -> Result<u64> {
    if ptrs.iter().any(ChunkPtr::is_pending) {
        return Err(Error::corrupt("a block map about to point into a pack never written"));
    }
    let count = ptrs.iter().rposition(|p| !p.is_hole()).map_or(0, |p| p + 1);
    if count == 0 {
        return Ok(0);
    }
    let enc = mapnode::encode_leaf(&ptrs[..count]);
    w.append(&record::prepare(Kind::MapNode, &enc, Compression::None))
}

/// Writes an interior node of height `h` with these children; 0 when they are all absent.
pub(crate) fn write_interior(w: &mut Writer, h: u8, kids: &[u64]) -> Result<u64> {
    let count = kids.iter().rposition(|&a| a != 0).map_or(0, |p| p + 1);
    if count == 0 {
        return Ok(0);
    }
    let enc = mapnode::encode_interior(h, &kids[..count]);
    w.append(&record::prepare(Kind::MapNode, &enc, Compression::None))
}

/// What turns a pointer into a pack not yet written when it was mapped into a real one.
pub(crate) type Resolve<'r> = dyn Fn(ChunkPtr) -> Result<ChunkPtr> + 'r;

fn flush_rec(r: &mut BRef, w: &mut Writer, h: u8, resolve: &Resolve) -> Result<u64> {
    let node = match r {
        BRef::Disk(a) => return Ok(*a),
        BRef::Mem(n) => n,
    };
    let addr = if h == 1 {
        if node.slots.iter().any(ChunkPtr::is_pending) {
            for s in node.slots.iter_mut() {
                *s = resolve(*s)?;
            }
        }
        write_leaf(w, &node.slots)?
    } else {
        let mut kids = Vec::with_capacity(FANOUT as usize);
        for kid in node.kids.iter_mut() {
            kids.push(match kid {
                None => 0,
                Some(k) => flush_rec(k, w, h - 1, resolve)?,
            });
        }
        write_interior(w, h, &kids)?
    };
    if addr == 0 {
        return Ok(0);
    }
    *r = BRef::Disk(addr);
    Ok(addr)
}
