//! The chunk index: maps a chunk's hash to its record's address.
//!
//! The index is a small log-structured merge of immutable B-trees ("runs"): the chunks new
//! in a commit become one bulk-built run, and runs of similar size are merged. Random hashes
//! therefore never copy-on-write random tree paths; each new chunk costs ~40 bytes of index
//! per merge level instead of a rewritten node.

use super::btree::{self, DiskIter};
use crate::chunk::Hash;
use crate::error::{Error, Result};
use crate::format::le::U64;
use crate::format::record::{Kind, Prepared};
use crate::format::superblock::{Run, MAX_RUNS};
use crate::io::{Source, Writer};
use std::collections::HashMap;

/// The chunk index: runs on disk (oldest first) and the chunks stored since the last commit.
pub struct ChunkIndex {
    pending: HashMap<Hash, u64>,
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

    /// Address of the chunk with this content hash, if stored.
    pub fn lookup<S: Source + ?Sized>(&self, src: &S, hash: &Hash) -> Result<Option<u64>> {
        if let Some(&a) = self.pending.get(hash) {
            return Ok(Some(a));
        }
        for run in self.runs.iter().rev() {
            if let Some(v) = btree::get_disk(src, run.root, hash)? {
                let addr = entry_addr(v)?;
                let rec = src.record(addr)?.expect(Kind::Chunk)?;
                if &rec.hash() != hash {
                    return Err(Error::corrupt(format!("chunk index points {addr:#x} at other content")));
                }
                return Ok(Some(addr));
            }
        }
        Ok(None)
    }

    /// Stores a prepared chunk unless the same content is already stored; returns its address.
    pub fn store(&mut self, w: &mut Writer, rec: &Prepared) -> Result<u64> {
        let hash = rec.hash();
        if let Some(a) = self.lookup(w, &hash)? {
            return Ok(a);
        }
        let addr = w.append(rec)?;
        self.pending.insert(hash, addr);
        Ok(addr)
    }

    /// Writes the chunks new since the last commit as a run, then merges runs of like size.
    pub fn flush(&mut self, w: &mut Writer) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut fresh: Vec<(Hash, u64)> = self.pending.drain().collect();
        fresh.sort_unstable_by_key(|e| e.0);
        let count = fresh.len() as u64;
        let root = btree::build(
            w,
            fresh.into_iter().map(|(h, a)| (h.to_vec(), a.to_le_bytes().to_vec())),
        )?;
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
    let mut entries: Vec<(Hash, u64)> = Vec::with_capacity((older.count + newer.count) as usize);
    for run in [older, newer] {
        for item in DiskIter::new(w, run.root, &[])? {
            let (k, v) = item?;
            let hash: Hash = k
                .try_into()
                .map_err(|_| Error::corrupt("chunk index key of wrong size"))?;
            let addr = entry_addr(v)?;
            entries.push((hash, addr));
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

/// The value an index entry stores: the chunk record's address (8 bytes, little-endian).
pub(crate) fn entry(addr: u64) -> Vec<u8> {
    bytemuck::bytes_of(&U64::new(addr)).to_vec()
}

/// The chunk address an index entry holds.
pub(crate) fn entry_addr(v: &[u8]) -> Result<u64> {
    match bytemuck::try_from_bytes::<U64>(v) {
        Ok(a) => Ok(a.get()),
        Err(_) => Err(Error::corrupt("chunk index entry of wrong size")),
    }
}
