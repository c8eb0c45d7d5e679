//! gc's evacuation: live records of victim segments are copied verbatim to gc's appends, and
//! every tree and block-map node on a path to a moved record is rewritten (others keep their
//! address). The chunk index is rebuilt from the old runs' entries that are still live.

use super::mark::{catalog_entries, tree_root_of};
use super::GcReport;
use crate::chunk::Hash;
use crate::error::{Error, Result};
use crate::format::compression::Compression;
use crate::format::node;
use crate::format::ptr::ChunkPtr;
use crate::format::record::{self, Kind};
use crate::format::superblock::{Run, DATA_START};
use crate::format::value::{Body, Entry};
use crate::io::{Source, Writer};
use crate::store::{Inner, State};
use crate::tree::blockmap;
use crate::tree::btree::{self, load_view, too_deep, DiskIter};
use crate::tree::chunk_index::{self, ChunkIndex};
use std::collections::HashMap;

/// Copies live records out of victim segments and rewrites what points at them.
pub(crate) struct Evacuate<'a, 'w> {
    w: &'a mut Writer<'w>,
    seg_size: u64,
    victim: Vec<bool>,
    memo: HashMap<u64, u64>,
    pub records_moved: u64,
    pub bytes_moved: u64,
}

impl<'a, 'w> Evacuate<'a, 'w> {
    pub fn new(w: &'a mut Writer<'w>, seg_size: u64, victim: Vec<bool>) -> Self {
        Evacuate {
            w,
            seg_size,
            victim,
            memo: HashMap::new(),
            records_moved: 0,
            bytes_moved: 0,
        }
    }

    fn is_victim(&self, addr: u64) -> bool {
        self.victim
            .get(((addr - DATA_START) / self.seg_size) as usize)
            .copied()
            .unwrap_or(false)
    }

    fn copy(&mut self, addr: u64) -> Result<u64> {
        let rec = self.w.record(addr)?.to_prepared();
        let new = self.w.append(&rec)?;
        self.records_moved += 1;
        self.bytes_moved += rec.size();
        Ok(new)
    }

    /// The pointer a chunk has after evacuation (the record moves verbatim: same crc).
    pub fn chunk(&mut self, p: ChunkPtr) -> Result<ChunkPtr> {
        if p.is_hole() || !self.is_victim(p.addr) {
            return Ok(p);
        }
        if let Some(&n) = self.memo.get(&p.addr) {
            return Ok(p.moved_to(n));
        }
        p.check(&self.w.record(p.addr)?.header)?;
        let n = self.copy(p.addr)?;
        self.memo.insert(p.addr, n);
        Ok(p.moved_to(n))
    }

    fn map(&mut self, h: u8, root: u64) -> Result<u64> {
        if root == 0 {
            return Ok(0);
        }
        if let Some(&n) = self.memo.get(&root) {
            return Ok(n);
        }
        let n = if h == 1 {
            let ptrs = blockmap::leaf_ptrs(self.w, root)?;
            let moved = ptrs.iter().map(|&p| self.chunk(p)).collect::<Result<Vec<_>>>()?;
            if moved == ptrs && !self.is_victim(root) {
                root
            } else {
                blockmap::write_leaf(self.w, &moved)?
            }
        } else {
            let kids = blockmap::interior_kids(self.w, root, h)?;
            let moved = kids.iter().map(|&k| self.map(h - 1, k)).collect::<Result<Vec<_>>>()?;
            if moved == kids && !self.is_victim(root) {
                root
            } else {
                blockmap::write_interior(self.w, h, &moved)?
            }
        };
        self.memo.insert(root, n);
        Ok(n)
    }

    /// The root a layer tree has after evacuation (unchanged paths keep their nodes).
    pub fn tree(&mut self, root: u64) -> Result<u64> {
        self.tree_at(root, 0)
    }

    fn tree_at(&mut self, root: u64, depth: u32) -> Result<u64> {
        too_deep(depth, root)?;
        if root == 0 {
            return Ok(0);
        }
        if let Some(&n) = self.memo.get(&root) {
            return Ok(n);
        }
        let (leaf, level, keys, vals, kids) = {
            let view = load_view(self.w, root)?;
            let level = view.level();
            let keys: Vec<Vec<u8>> = (0..view.len())
                .map(|i| view.key(i).map(<[u8]>::to_vec))
                .collect::<Result<_>>()?;
            if view.is_leaf() {
                let vals: Vec<Vec<u8>> = (0..view.len())
                    .map(|i| view.val(i).map(<[u8]>::to_vec))
                    .collect::<Result<_>>()?;
                (true, level, keys, vals, Vec::new())
            } else {
                let kids: Vec<u64> = (0..view.len()).map(|i| view.child(i)).collect::<Result<_>>()?;
                (false, level, keys, Vec::new(), kids)
            }
        };
        let mut changed = self.is_victim(root);
        let enc = if leaf {
            let mut new_vals = Vec::with_capacity(vals.len());
            for v in vals {
                let mut e = Entry::decode(&v)?;
                if let Body::Blocks {
                    shift,
                    height,
                    root: map,
                } = e.body
                {
                    let m = self.map(height, map)?;
                    if m != map {
                        e.body = Body::Blocks { shift, height, root: m };
                        changed = true;
                        new_vals.push(e.encode());
                        continue;
                    }
                }
                new_vals.push(v);
            }
            node::encode_leaf(
                keys.iter()
                    .map(|k| k.as_slice())
                    .zip(new_vals.iter().map(|v| v.as_slice())),
            )
        } else {
            let mut new_kids = Vec::with_capacity(kids.len());
            for &k in &kids {
                let n = self.tree_at(k, depth + 1)?;
                changed |= n != k;
                new_kids.push(n);
            }
            node::encode_branch(level, keys.iter().map(|k| k.as_slice()).zip(new_kids))
        };
        let n = if changed {
            self.w.append(&record::prepare(Kind::Node, &enc, Compression::None))?
        } else {
            root
        };
        self.memo.insert(root, n);
        Ok(n)
    }

    /// Rebuilds the catalog with evacuated roots.
    pub fn catalog(&mut self, root: u64) -> Result<u64> {
        let mut entries = Vec::new();
        for (k, v) in catalog_entries(self.w, root)? {
            let v = match tree_root_of(&k, &v)? {
                Some(r) => {
                    let n = self.tree(r)?;
                    if n == r {
                        v
                    } else {
                        crate::format::catalog::with_tree(&k, &v, n, None)?
                    }
                }
                None => v,
            };
            entries.push((k, v));
        }
        btree::build(self.w, entries)
    }

    /// One chunk-index run of the indexed chunks still live, at their new addresses. Built
    /// from the old runs (hash and pointer), so no chunk is read for its hash; a live chunk
    /// no run names (a copy another writer's commit also stored) stays unindexed, as it was.
    pub fn index(&mut self, old_runs: &[Run], live_chunks: &[ChunkPtr]) -> Result<Vec<Run>> {
        let live: HashMap<u64, ChunkPtr> = live_chunks.iter().map(|p| (p.addr, *p)).collect();
        let mut entries: Vec<(Hash, ChunkPtr)> = Vec::with_capacity(live_chunks.len());
        for run in old_runs {
            let items: Vec<(Hash, ChunkPtr)> = DiskIter::new(self.w, run.root, &[])?
                .map(|item| {
                    let (k, v) = item?;
                    let hash: Hash = k
                        .try_into()
                        .map_err(|_| Error::corrupt("chunk index key of wrong size"))?;
                    Ok((hash, chunk_index::entry_ptr(v)?))
                })
                .collect::<Result<_>>()?;
            for (hash, p) in items {
                match live.get(&p.addr) {
                    None => continue,
                    Some(l) if !l.same_record(&p) => {
                        return Err(Error::corrupt(format!(
                            "chunk index and block map disagree about the chunk at {:#x}",
                            p.addr
                        )))
                    }
                    Some(_) => entries.push((hash, self.chunk(p)?)),
                }
            }
        }
        entries.sort_unstable_by_key(|e| e.0);
        entries.dedup_by(|a, b| a.0 == b.0);
        let count = entries.len() as u64;
        if count == 0 {
            return Ok(Vec::new());
        }
        let root = btree::build(
            self.w,
            entries.into_iter().map(|(h, a)| (h.to_vec(), chunk_index::entry(a))),
        )?;
        Ok(vec![Run { root, count }])
    }
}

/// Rebuilds the chunk index from the live chunks (dead ones must not be found by dedup) and
/// the catalog with every tree moved out of the victim segments; drops the loaded trees.
pub(super) fn evacuate(
    inner: &Inner,
    st: &mut State,
    report: &mut GcReport,
    is_victim: Vec<bool>,
    chunks: &[ChunkPtr],
    catalog_root: u64,
) -> Result<()> {
    let old_runs = st.txn.chunks.runs().to_vec();
    let mut w = Writer {
        segs: &inner.segs,
        app: &mut st.txn.app,
    };
    let mut ev = Evacuate::new(&mut w, inner.header.segment_size, is_victim);
    let runs = ev.index(&old_runs, chunks)?;
    let new_catalog = ev.catalog(catalog_root)?;
    report.records_moved = ev.records_moved;
    report.bytes_moved = ev.bytes_moved;
    st.txn.catalog = crate::txn::Catalog::at(new_catalog);
    st.txn.chunks = ChunkIndex::new(runs);
    st.containers.clear();
    st.mounts.clear();
    st.volumes.clear();
    Ok(())
}

/// Rebuilds the chunk index from the live chunks alone, moving nothing: after a commit of it,
/// dead chunks are reachable from no commit's index either, so their pages can go before gc
/// moves anything (on a full disk, the room its moves need).
pub(super) fn index_of_live(inner: &Inner, st: &mut State, chunks: &[ChunkPtr]) -> Result<()> {
    let old_runs = st.txn.chunks.runs().to_vec();
    let mut w = Writer {
        segs: &inner.segs,
        app: &mut st.txn.app,
    };
    let mut ev = Evacuate::new(&mut w, inner.header.segment_size, Vec::new());
    let runs = ev.index(&old_runs, chunks)?;
    st.txn.chunks = ChunkIndex::new(runs);
    Ok(())
}
