//! Space accounting (`df`): what each layer, container and volume holds, references and
//! would free, as ZFS reports used and referenced.
//!
//! It walks metadata only (tree nodes and block maps: a 28-byte pointer per block carrying the
//! chunk's lengths), never chunk data.
//! Per-node totals are cached by node address — nodes are immutable, so the cache never goes
//! stale and a later `df` only visits nodes written since. Exclusive bytes come from one pass
//! that marks each node and chunk with the single tree that reaches it, or "shared": every
//! node changes mark at most twice, so the pass is linear in the live metadata.

use crate::error::{Error, Result};
use crate::format::catalog::{ContainerInfo, LayerInfo, VolumeInfo, CONTAINER};
use crate::format::ptr::ChunkPtr;
use crate::format::value::{Body, Entry};
use crate::io::Source;
use crate::maint::gc;
use crate::store::{Inner, State, Stats, Store};
use crate::tree::blockmap;
use crate::tree::btree::load_view;
use crate::tree::totals::TreeUsage;
use std::collections::HashMap;

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
    /// The distinct blocks met in packs, and their raw bytes: a pack's raw length would also
    /// count bytes of blocks no tree uses any more.
    packed: std::collections::HashSet<(u64, u32, u32)>,
    packed_raw: u64,
}

#[derive(Clone, Copy)]
enum Node {
    Tree,
    Map(u8),
    Chunk(ChunkPtr),
}

impl<'a, S: Source + ?Sized> Owners<'a, S> {
    pub fn new(src: &'a S) -> Self {
        Owners {
            src,
            owner: HashMap::new(),
            chunks: Vec::new(),
            packed: std::collections::HashSet::new(),
            packed_raw: 0,
        }
    }

    fn children(&self, addr: u64, kind: Node) -> Result<Vec<(u64, Node)>> {
        let mut out = Vec::new();
        match kind {
            Node::Chunk(_) => {}
            Node::Map(1) => {
                for p in blockmap::leaf_ptrs(self.src, addr)?
                    .into_iter()
                    .filter(|p| !p.is_hole())
                {
                    out.push((p.addr, Node::Chunk(p)));
                }
            }
            Node::Map(h) => {
                for k in blockmap::interior_kids(self.src, addr, h)?
                    .into_iter()
                    .filter(|&k| k != 0)
                {
                    out.push((k, Node::Map(h - 1)));
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
            self.visit(root, Node::Tree, Owner::One(t), 0)?;
        }
        Ok(())
    }

    /// `depth` counts tree levels (block maps bound their own height).
    fn visit(&mut self, addr: u64, kind: Node, by: Owner, depth: u32) -> Result<()> {
        crate::tree::btree::too_deep(depth, addr)?;
        if let Node::Chunk(p) = kind {
            if !p.is_whole() && self.packed.insert((addr, p.offset, p.len)) {
                self.packed_raw += p.len as u64;
            }
        }
        let next = match (self.owner.get(&addr).copied(), by) {
            (None, _) => {
                if let Node::Chunk(p) = kind {
                    let raw = if p.is_whole() { p.raw_len as u64 } else { 0 };
                    self.chunks.push((addr, p.size(), raw));
                }
                by
            }
            (Some(Owner::Shared), _) => return Ok(()),
            (Some(o), b) if o == b => return Ok(()),
            (Some(_), _) => Owner::Shared,
        };
        self.owner.insert(addr, next);
        for (c, k) in self.children(addr, kind)? {
            let d = if let Node::Tree = k { depth + 1 } else { depth };
            self.visit(c, k, next, d)?;
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
        (excl, stored, raw + self.packed_raw, self.chunks.len() as u64)
    }
}

impl Store {
    /// Space accounting as of the last commit: per layer, container and volume, logical,
    /// referenced and exclusive bytes, and the store's totals. Walks metadata, never data.
    pub fn usage(&self) -> Result<SpaceReport> {
        // One state throughout: every figure is of one commit (a reader moves on only between
        // operations, and holds this one meanwhile; a commit of this process waiting for its
        // sync has its new catalog in memory but not yet its superblock, so none may be).
        let _serial = self.serialise_commits()?;
        let st = self.lock()?;
        let stats = self.stats_locked(&st)?;
        let layers = self.layers_locked(&st)?;
        let volumes = self.volumes_locked(&st)?;
        let inner = &self.inner;
        // Positioned reads of the nodes alone (the file is read without readahead): a walk
        // through the maps would fault in the chunk data around every node. Everything the
        // last commit reaches is in the file (commits flush the write buffer).
        let view = crate::io::Pread::new(&inner.segs);
        let mut containers = Vec::new();
        for (id, v) in self.scan_catalog(&st, CONTAINER)? {
            containers.push(ContainerInfo::decode(id, &v)?);
        }
        let roots: Vec<u64> = layers
            .iter()
            .map(|l| l.root)
            .chain(containers.iter().map(|c| c.root))
            .chain(volumes.iter().map(|v| v.root))
            .collect();
        let mut owners = crate::maint::usage::Owners::new(&view);
        for (t, r) in roots.iter().enumerate() {
            owners.walk(t, *r)?;
        }
        let (excl, stored, distinct_raw, _) = owners.finish(roots.len());
        let mut cache = inner
            .totals
            .lock()
            .map_err(|_| Error::InUse("usage cache poisoned".into()))?;
        cache.valid_for(st.txn.last_sb.pooled);
        let mut totals = Vec::with_capacity(roots.len());
        for r in &roots {
            totals.push(cache.tree(&view, *r)?);
        }
        drop(cache);
        let mut live = gc::Mark::new(&view, inner.header.segment_size, inner.segs.segment_count());
        live.catalog(st.txn.last_sb.catalog_root)?;
        live.pool_record(st.txn.last_sb.pool);
        for run in st.txn.chunks.runs() {
            live.nodes(run.root)?;
        }
        let referenced_raw: u64 = totals.iter().map(|t| t.raw()).sum();
        let stored_payload: u64 = live.chunks.iter().map(|p| p.stored_len as u64).sum();
        let logical_bytes = totals.iter().map(|t| t.usage(0).logical_bytes).sum();
        let mut usage = totals.iter().zip(excl).map(|(t, e)| t.usage(e));
        let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        let unused_tail_bytes = unused_tail(inner, &st)?;
        Ok(SpaceReport {
            file_allocated_bytes: inner.segs.io().allocated()?,
            logical_bytes,
            stored_bytes: stored,
            live_bytes: live.bytes,
            garbage_bytes: stats.used_bytes.saturating_sub(live.bytes) + unused_tail_bytes,
            unused_tail_bytes,
            pool_bytes: inner.segs.pool_or_empty(&st.txn.last_sb).bytes(crate::io::EXTENT),
            dedup_ratio: ratio(referenced_raw, distinct_raw),
            compression_ratio: ratio(distinct_raw, stored_payload),
            layers: layers
                .into_iter()
                .map(|l| (l, usage.next().unwrap_or_default()))
                .collect(),
            containers: containers
                .into_iter()
                .map(|c| (c, usage.next().unwrap_or_default()))
                .collect(),
            volumes: volumes
                .into_iter()
                .map(|v| (v, usage.next().unwrap_or_default()))
                .collect(),
            stats,
        })
    }
}

/// Bytes allocated past what this process uses (its builders' appends and its zeroed-ahead
/// space sit below) and past every commit's records (other writers' segments may lie above
/// this one's), from the next file-system block (the tail's own block is in use). Clamped by
/// what is allocated at all: a file system without SEEK_HOLE reports the whole sparse tail as
/// data.
fn unused_tail(inner: &Inner, st: &State) -> Result<u64> {
    let io = inner.segs.io();
    let from = st
        .txn
        .app
        .reserved_end()
        .max(st.txn.last_sb.high)
        .next_multiple_of(4096);
    Ok(io.allocated_from(from)?.min(io.allocated()?))
}

/// Where the bytes go (`df`), as of the last commit.
#[derive(Clone, Debug)]
pub struct SpaceReport {
    pub stats: Stats,
    /// What the file system has allocated for the file (`du`).
    pub file_allocated_bytes: u64,
    /// Sum of value sizes over all layers, containers and volumes, holes excluded.
    pub logical_bytes: u64,
    /// Stored bytes of the distinct live chunks.
    pub stored_bytes: u64,
    /// Bytes of all live records (chunks, tree and map nodes, catalog, index).
    pub live_bytes: u64,
    /// What gc can give back: record bytes no longer reachable, and `unused_tail_bytes`.
    pub garbage_bytes: u64,
    /// Bytes allocated past the end of what is written: work that failed or was killed
    /// before its commit, and space zeroed ahead for small commits.
    pub unused_tail_bytes: u64,
    /// Bytes in the free pool: space gc gave back that writers reuse before the file grows
    /// (a reserve of it kept allocated, the rest punched or cut off).
    pub pool_bytes: u64,
    /// Raw bytes referenced, counted per reference, over raw bytes of distinct chunks.
    pub dedup_ratio: f64,
    /// Raw bytes of distinct chunks over their stored payload bytes.
    pub compression_ratio: f64,
    pub layers: Vec<(LayerInfo, TreeUsage)>,
    pub containers: Vec<(ContainerInfo, TreeUsage)>,
    pub volumes: Vec<(VolumeInfo, TreeUsage)>,
}
