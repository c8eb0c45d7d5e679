//! Content-addressed chunks. A block is trimmed of trailing zeros, named by the blake3 of
//! what is left, and stored once (the chunk index, in `tree::chunk_index`, maps that hash to
//! the record's address).

use crate::format::compression::Compression;
use crate::format::record::{self, Kind, Prepared};
use rayon::prelude::*;

/// Below this many bytes a batch is prepared on the calling thread.
const PARALLEL_MIN: usize = 256 << 10;

pub type Hash = [u8; 32];

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
