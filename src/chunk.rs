//! Content-addressed chunks. A block is trimmed of trailing zeros, named by the blake3 of
//! what is left, and stored once: the chunk index maps that hash to the record's address.
//!
//! The index is a small log-structured merge of immutable B-trees ("runs"): the chunks new
//! in a commit become one bulk-built run, and runs of similar size are merged. Random hashes
//! therefore never copy-on-write random tree paths; each new chunk costs ~40 bytes of index
//! per merge level instead of a rewritten node.

use crate::btree::{self, DiskIter};
use crate::error::{Error, Result};
use crate::record::{self, Compression, Kind, Prepared};
use crate::segment::{Source, Writer};
use rayon::prelude::*;
use std::collections::HashMap;

/// Most runs the superblock can name.
pub const MAX_RUNS: usize = 24;
/// Below this many bytes a batch is prepared on the calling thread.
const PARALLEL_MIN: usize = 256 << 10;

/// One immutable run of the chunk index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub root: u64,
    pub count: u64,
}

pub type Hash = [u8; 32];

/// The chunk index: runs on disk (oldest first) and the chunks stored since the last commit.
pub struct ChunkIndex {
    pending: HashMap<Hash, u64>,
    runs: Vec<Run>,
}

/// Length of `d` without its trailing zero bytes; 0 for an all-zero block (a hole).
pub fn trimmed_len(d: &[u8]) -> usize {
    let mut end = d.len();
    for c in d.rchunks(64) {
        if c.iter().fold(0u8, |a, &b| a | b) != 0 {
            return end - c.iter().rev().take_while(|&&b| b == 0).count();
        }
        end -= c.len();
    }
    0
}

/// Prepares the records of many blocks (hash, compress, checksum), in parallel when large.
/// A hole (all zeros) yields `None`.
pub fn prepare_blocks<'a>(blocks: &[&'a [u8]], compression: Compression) -> Vec<Option<Prepared<'a>>> {
    let one = |b: &&'a [u8]| {
        let t = &b[..trimmed_len(b)];
        (!t.is_empty()).then(|| record::prepare(Kind::Chunk, t, compression))
    };
    let total: usize = blocks.iter().map(|b| b.len()).sum();
    if total >= PARALLEL_MIN && blocks.len() > 1 {
        blocks.par_iter().map(one).collect()
    } else {
        blocks.iter().map(one).collect()
    }
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

    /// Distinct chunks stored.
    pub fn count(&self) -> u64 {
        self.runs.iter().map(|r| r.count).sum::<u64>() + self.pending.len() as u64
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Address of the chunk with this content hash, if stored.
    pub fn lookup<S: Source + ?Sized>(&self, src: &S, hash: &Hash) -> Result<Option<u64>> {
        if let Some(&a) = self.pending.get(hash) {
            return Ok(Some(a));
        }
        for run in self.runs.iter().rev() {
            if let Some(v) = btree::tree::get_disk(src, run.root, hash)? {
                let addr = u64::from_le_bytes(
                    v.try_into()
                        .map_err(|_| Error::corrupt("chunk index entry of wrong size"))?,
                );
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
            let addr = u64::from_le_bytes(
                v.try_into()
                    .map_err(|_| Error::corrupt("chunk index entry of wrong size"))?,
            );
            entries.push((hash, addr));
        }
    }
    // Stable sort keeps the newer entry last among equals; dedup keeps the first, so reverse.
    entries.sort_by_key(|e| e.0);
    entries.reverse();
    entries.dedup_by(|a, b| a.0 == b.0);
    entries.reverse();
    let count = entries.len() as u64;
    let root = btree::build(
        w,
        entries.into_iter().map(|(h, a)| (h.to_vec(), a.to_le_bytes().to_vec())),
    )?;
    Ok(Run { root, count })
}
