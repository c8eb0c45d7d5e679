//! gc's mark: every record reachable from the catalog (or from an open handle's snapshot),
//! with live bytes per segment and per extent. Chunk sizes come from the pointers to them:
//! only tree and block-map nodes are read.

use crate::error::Result;
use crate::format::catalog::ImageInfo;
use crate::format::catalog::{ContainerInfo, Id, LayerInfo, VolumeInfo, ANNOTATIONS, CONTAINER, IMAGE, LAYER, VOLUME};
use crate::format::ptr::ChunkPtr;
use crate::format::superblock::DATA_START;
use crate::format::value::{Body, Entry};
use crate::io::{Source, EXTENT};
use crate::tree::blockmap;
use crate::tree::btree::{load_view, too_deep, DiskIter};
use std::collections::HashSet;

/// Marks records reachable from roots, with live bytes per segment.
pub(crate) struct Mark<'a, S: Source + ?Sized> {
    src: &'a S,
    seg_size: u64,
    seen: HashSet<u64>,
    pub live: Vec<u64>,
    /// Live bytes per extent (a record across two extents counts in both).
    pub live_ext: Vec<u64>,
    pub chunks: Vec<ChunkPtr>,
    /// (address, size) of every record marked.
    pub ranges: Vec<(u64, u64)>,
    pub records: u64,
    pub bytes: u64,
}

impl<'a, S: Source + ?Sized> Mark<'a, S> {
    pub fn new(src: &'a S, seg_size: u64, segments: u64) -> Self {
        Mark {
            src,
            seg_size,
            seen: HashSet::new(),
            live: vec![0; segments as usize],
            live_ext: vec![0; (segments * seg_size / EXTENT) as usize],
            chunks: Vec::new(),
            ranges: Vec::new(),
            records: 0,
            bytes: 0,
        }
    }

    /// A node: its size is read from its header (the walk reads the node anyway).
    fn note(&mut self, addr: u64) -> Result<bool> {
        if self.seen.contains(&addr) {
            return Ok(false);
        }
        let size = self.src.record(addr)?.header.size();
        self.note_sized(addr, size)
    }

    /// The free pool's record. A damaged one is left out: the pool is only a list of space
    /// to reuse, which writers then do without (gc writes a new one), and verify reports it.
    pub fn pool_record(&mut self, addr: u64) {
        if addr != 0 {
            let _ = self.note(addr);
        }
    }

    /// A record whose size the pointer to it gives: a chunk is never read.
    fn note_sized(&mut self, addr: u64, size: u64) -> Result<bool> {
        if !self.seen.insert(addr) {
            return Ok(false);
        }
        // A chunk pointer of a damaged store may name bytes the file does not have: every
        // record marked lies in a segment that exists (nodes were read, so theirs do).
        let end = DATA_START + self.live.len() as u64 * self.seg_size;
        if addr < DATA_START || addr.checked_add(size).is_none_or(|e| e > end) {
            return Err(crate::error::Error::corrupt(format!(
                "a chunk pointer names {addr:#x}+{size}, outside the file"
            )));
        }
        let seg = ((addr - DATA_START) / self.seg_size) as usize;
        if let Some(l) = self.live.get_mut(seg) {
            *l += size;
        }
        let (first, last) = ((addr - DATA_START) / EXTENT, (addr + size - 1 - DATA_START) / EXTENT);
        for e in first..=last {
            if let Some(l) = self.live_ext.get_mut(e as usize) {
                *l += size;
            }
        }
        self.records += 1;
        self.bytes += size;
        self.ranges.push((addr, size));
        Ok(true)
    }

    /// A layer, container or volume tree with the block maps and chunks of its values.
    pub fn tree(&mut self, root: u64) -> Result<()> {
        self.tree_at(root, 0)
    }

    fn tree_at(&mut self, root: u64, depth: u32) -> Result<()> {
        too_deep(depth, root)?;
        if root == 0 || !self.note(root)? {
            return Ok(());
        }
        let view = load_view(self.src, root)?;
        for i in 0..view.len() {
            if view.is_leaf() {
                if let Body::Blocks { height, root, .. } = Entry::decode(view.val(i)?)?.body {
                    self.map(height, root)?;
                }
            } else {
                self.tree_at(view.child(i)?, depth + 1)?;
            }
        }
        Ok(())
    }

    fn map(&mut self, h: u8, root: u64) -> Result<()> {
        if root == 0 || !self.note(root)? {
            return Ok(());
        }
        if h == 1 {
            for p in blockmap::leaf_ptrs(self.src, root)?
                .into_iter()
                .filter(|p| !p.is_hole())
            {
                if self.note_sized(p.addr, p.size())? {
                    self.chunks.push(p);
                }
            }
            return Ok(());
        }
        for kid in blockmap::interior_kids(self.src, root, h)?
            .into_iter()
            .filter(|&k| k != 0)
        {
            self.map(h - 1, kid)?;
        }
        Ok(())
    }

    /// The catalog's own nodes and every tree it names.
    pub fn catalog(&mut self, root: u64) -> Result<()> {
        self.nodes(root)?;
        self.catalog_trees(root)
    }

    /// Every tree the catalog names, without the catalog's nodes (which gc rewrites).
    pub fn catalog_trees(&mut self, root: u64) -> Result<()> {
        for (k, v) in catalog_entries(self.src, root)? {
            if let Some(r) = tree_root_of(&k, &v)? {
                self.tree(r)?;
            }
        }
        Ok(())
    }

    /// A plain B-tree's nodes (catalog, chunk-index runs).
    pub fn nodes(&mut self, root: u64) -> Result<()> {
        self.nodes_at(root, 0)
    }

    fn nodes_at(&mut self, root: u64, depth: u32) -> Result<()> {
        too_deep(depth, root)?;
        if root == 0 || !self.note(root)? {
            return Ok(());
        }
        let view = load_view(self.src, root)?;
        if !view.is_leaf() {
            for i in 0..view.len() {
                self.nodes_at(view.child(i)?, depth + 1)?;
            }
        }
        Ok(())
    }
}

pub(crate) fn catalog_entries<S: Source + ?Sized>(src: &S, root: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    DiskIter::new(src, root, &[])?
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect()
}

/// The tree root a catalog entry names, if it names one.
pub(crate) fn tree_root_of(k: &[u8], v: &[u8]) -> Result<Option<u64>> {
    Ok(match k.first() {
        Some(&LAYER) if k.len() == 17 => Some(LayerInfo::decode(Id::from_slice(&k[1..])?, v)?.root),
        Some(&CONTAINER) if k.len() == 17 => Some(ContainerInfo::decode(Id::from_slice(&k[1..])?, v)?.root),
        Some(&VOLUME) => Some(VolumeInfo::decode("", v)?.root),
        // The same record as a volume's: a tree root, its key count and a time.
        Some(&ANNOTATIONS) if k.len() == 17 => Some(VolumeInfo::decode("", v)?.root),
        Some(&IMAGE) if k.len() == 33 => Some(ImageInfo::decode([0; 32], v)?.root),
        _ => None,
    })
}
