//! The chunk index: maps a chunk's hash to a pointer to its record (address, lengths, crc),
//! so a dedup hit fills a block-map slot without reading the chunk.
//!
//! The index is a small log-structured merge of immutable B-trees ("runs"): the chunks new
//! in a commit become one bulk-built run, and runs of similar size are merged. Random hashes
//! therefore never copy-on-write random tree paths; each new chunk costs ~40 bytes of index
//! per merge level instead of a rewritten node.

use super::btree::{self, DiskIter};
use crate::chunk::Hash;
use crate::error::{Error, Result};
use crate::format::ptr::ChunkPtr;
use crate::format::record::Prepared;
use crate::format::superblock::{Run, MAX_RUNS};
use crate::io::{Source, Writer};
use std::collections::HashMap;

/// The chunk index: runs on disk (oldest first) and the chunks stored since the last commit.
pub struct ChunkIndex {
    pending: HashMap<Hash, ChunkPtr>,
    runs: Vec<Run>,
}

impl ChunkIndex {
    pub fn new(runs: Vec<Run>) -> ChunkIndex {
        ChunkIndex {
            pending: HashMap::new(),
            runs,
        }
    }

    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Takes up the runs of a newer commit another writer published. A chunk both stored
    /// keeps the other's entry (a hash is in at most one run); this writer's copy stays
    /// where its trees point, unindexed.
    pub fn rebase<S: Source + ?Sized>(&mut self, src: &S, runs: Vec<Run>) -> Result<()> {
        self.runs = runs;
        let mut dup = Vec::new();
        for hash in self.pending.keys() {
            for run in &self.runs {
                if btree::get_disk(src, run.root, hash)?.is_some() {
                    dup.push(*hash);
                    break;
                }
            }
        }
        for h in dup {
            self.pending.remove(&h);
        }
        Ok(())
    }

    /// Distinct chunks stored.
    pub fn count(&self) -> u64 {
        self.runs.iter().map(|r| r.count).sum::<u64>() + self.pending.len() as u64
    }

    /// The chunk with this content hash, if stored. Reads index nodes only: the entry's
    /// pointer carries the chunk's crc, which every later read of the chunk checks.
    pub fn lookup<S: Source + ?Sized>(&self, src: &S, hash: &Hash) -> Result<Option<ChunkPtr>> {
        if let Some(&p) = self.pending.get(hash) {
            return Ok(Some(p));
        }
        for run in self.runs.iter().rev() {
            if let Some(v) = btree::get_disk(src, run.root, hash)? {
                return Ok(Some(entry_ptr(v)?));
            }
        }
        Ok(None)
    }

    /// Stores a prepared chunk unless the same content is already stored; returns its pointer.
    pub fn store(&mut self, w: &mut Writer, rec: &Prepared) -> Result<ChunkPtr> {
        let hash = rec.hash();
        if let Some(p) = self.lookup(w, &hash)? {
            return Ok(p);
        }
        let ptr = ChunkPtr::to_prepared(w.append(rec)?, rec);
        self.pending.insert(hash, ptr);
        Ok(ptr)
    }

    /// Indexes a block stored inside a pack (`tree::pack`), unless the same content is
    /// indexed already.
    pub fn add<S: Source + ?Sized>(&mut self, src: &S, hash: Hash, ptr: ChunkPtr) -> Result<()> {
        if self.lookup(src, &hash)?.is_none() {
            self.pending.insert(hash, ptr);
        }
        Ok(())
    }

    /// Writes the chunks new since the last commit as a run, then merges runs of like size.
    pub fn flush(&mut self, w: &mut Writer) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut fresh: Vec<(Hash, ChunkPtr)> = self.pending.drain().collect();
        fresh.sort_unstable_by_key(|e| e.0);
        let count = fresh.len() as u64;
        let root = btree::build(w, fresh.into_iter().map(|(h, p)| (h.to_vec(), entry(p))))?;
        self.runs.push(Run { root, count });
        while self.runs.len() >= 2 {
            let n = self.runs.len();
            let (older, newer) = (self.runs[n - 2], self.runs[n - 1]);
            if newer.count * 2 < older.count && n <= MAX_RUNS {
                break;
            }
            let merged = merge(w, older, newer)?;
            self.runs.truncate(n - 2);
            self.runs.push(merged);
        }
        Ok(())
    }
}

fn merge(w: &mut Writer, older: Run, newer: Run) -> Result<Run> {
    // Collected first: the runs are read through the writer, which the build then appends to.
    let mut entries: Vec<(Hash, ChunkPtr)> = Vec::with_capacity((older.count + newer.count) as usize);
    for run in [older, newer] {
        for item in DiskIter::new(w, run.root, &[])? {
            let (k, v) = item?;
            let hash: Hash = k
                .try_into()
                .map_err(|_| Error::corrupt("chunk index key of wrong size"))?;
            entries.push((hash, entry_ptr(v)?));
        }
    }
    // Stable sort keeps the newer entry last among equals; dedup keeps the first, so reverse.
    entries.sort_by_key(|e| e.0);
    entries.reverse();
    entries.dedup_by(|a, b| a.0 == b.0);
    entries.reverse();
    let count = entries.len() as u64;
    let root = btree::build(w, entries.into_iter().map(|(h, a)| (h.to_vec(), entry(a))))?;
    Ok(Run { root, count })
}

/// The value an index entry stores: the chunk's pointer (28 bytes, `format::ptr`).
pub(crate) fn entry(p: ChunkPtr) -> Vec<u8> {
    p.to_bytes().to_vec()
}

/// The chunk pointer an index entry holds; a hole is not a chunk.
pub(crate) fn entry_ptr(v: &[u8]) -> Result<ChunkPtr> {
    let p = ChunkPtr::from_bytes(v, 0)?;
    if p.is_hole() {
        return Err(Error::corrupt("chunk index entry names no chunk"));
    }
    Ok(p)
}
