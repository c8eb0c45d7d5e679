//! gc's giving back: what no commit reaches is handed to the file system (holes), except the
//! lowest part of the free pool, kept written so that a writer reusing it syncs data alone.

use crate::error::Result;
use crate::format::pool::Pool;
use crate::format::superblock::{DATA_START, PAGE};
use crate::io::EXTENT;
use crate::store::Inner;
use std::collections::HashSet;

/// Pool bytes kept allocated (not punched), at most: a small commit into them needs no block
/// allocation, so its fdatasync journals nothing. A quarter of the live data up to this, so a
/// store's reserve grows with it but never dominates what gc returns (an empty store keeps
/// none).
pub(super) const RESERVE_MAX: u64 = 64 << 20;

/// The reserve for a store holding `live` bytes.
pub(super) fn reserve(live: u64) -> u64 {
    (live / 4).min(RESERVE_MAX)
}

/// Gives back every byte past `end`: no commit references it, and under the writer lock,
/// after a commit, no pending append holds it.
pub(super) fn punch_past(inner: &Inner, end: u64) -> Result<()> {
    let io = inner.segs.io();
    let file_len = io.len()?;
    if end >= file_len {
        return Ok(());
    }
    let from = end.div_ceil(PAGE as u64) * PAGE as u64;
    if file_len > from {
        io.punch_hole(from, file_len - from)?;
    }
    Ok(())
}

/// What gc found, for punching.
pub(super) struct Dead<'a> {
    /// The pool when gc marked: gc's own appends may lie in those extents.
    pub mark_pool: &'a Pool,
    /// The pool gc left.
    pub final_pool: &'a Pool,
    /// Segments whose dead ranges stay: victims a reader may still read.
    pub skip_segs: HashSet<u64>,
    /// gc's own extents (its run of bytes when it marked, and every extent it took): only
    /// the one holding its tail when it marked is punched, below that tail.
    pub own: &'a HashSet<u64>,
    pub old_tail: u64,
    pub seg_size: u64,
    /// `high` when gc marked: past it everything was given back already.
    pub high: u64,
    /// `high` gc's commits left.
    pub final_high: u64,
    /// The file's length when gc marked, on the extent grid.
    pub mark_len: u64,
    /// Pool bytes left allocated.
    pub reserve: u64,
}

/// Gives dead bytes back: everything past the final `high`, the pool past its reserve, and in
/// every other extent gc did not write, each page-aligned range holding no kept record.
pub(super) fn punch(inner: &Inner, dead: &Dead, keep: &[(u64, u64)]) -> Result<()> {
    let io = inner.segs.io();
    punch_past(inner, dead.final_high)?;
    let mut reserved = 0;
    for e in dead.final_pool.extents(EXTENT) {
        if reserved < dead.reserve {
            reserved += EXTENT;
        } else {
            io.punch_hole(e, EXTENT)?;
        }
    }
    let keep = coalesced(keep);
    let end = dead.high.min(dead.mark_len);
    let mut e = DATA_START;
    while e < end {
        let seg = (e - DATA_START) / dead.seg_size;
        let untouched = !dead.skip_segs.contains(&seg)
            && !dead.mark_pool.contains(e, EXTENT)
            && !dead.final_pool.contains(e, EXTENT);
        let tail_extent = dead.old_tail - (dead.old_tail - DATA_START) % EXTENT;
        let stop = if e == tail_extent { dead.old_tail } else { e + EXTENT };
        let untouched = untouched && (e == tail_extent || !dead.own.contains(&e));
        if untouched {
            for (a, len) in dead_ranges(&keep, e, stop.min(end)) {
                io.punch_hole(a, len)?;
            }
        }
        e += EXTENT;
    }
    Ok(())
}

/// `ranges` sorted by address, overlapping or touching ones merged.
fn coalesced(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
    for (a, n) in sorted {
        match out.last_mut() {
            Some((b, m)) if a <= *b + *m => *m = (*m).max(a + n - *b),
            _ => out.push((a, n)),
        }
    }
    out
}

/// Page-aligned ranges in `[start, end)` that hold no kept record: the holes to punch.
/// `keep` is sorted and disjoint ([`coalesced`]), so a binary search finds where to start.
fn dead_ranges(keep: &[(u64, u64)], start: u64, end: u64) -> Vec<(u64, u64)> {
    const PAGE: u64 = 4096;
    let first = keep.partition_point(|&(a, size)| a + size <= start);
    let keep = &keep[first..];
    let mut out = Vec::new();
    let mut at = start;
    let gap = |from: u64, to: u64, out: &mut Vec<(u64, u64)>| {
        let (a, b) = (from.div_ceil(PAGE) * PAGE, to / PAGE * PAGE);
        if b > a {
            out.push((a, b - a));
        }
    };
    for &(addr, size) in keep.iter() {
        if addr >= end {
            break;
        }
        if addr > at {
            gap(at, addr, &mut out);
        }
        at = at.max(addr + size);
    }
    if end > at {
        gap(at, end, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_ranges_never_touch_a_kept_byte_even_when_kept_ranges_overlap() {
        let base = DATA_START;
        let keep = coalesced(&[
            (base, 100_000),
            (base + 10_000, 64),
            (base + 200_000, 64),
            (base + 199_000, 2000),
        ]);
        assert_eq!(keep, vec![(base, 100_000), (base + 199_000, 2000)]);
        let dead = dead_ranges(&keep, base + 50_000, base + 300_000);
        for (a, n) in &dead {
            for (k, m) in &keep {
                assert!(a + n <= *k || *a >= k + m, "{a:#x}+{n} overlaps {k:#x}+{m}");
            }
            assert!(a % PAGE as u64 == 0 && n % PAGE as u64 == 0);
        }
        assert_eq!(dead.len(), 2);
    }
}
