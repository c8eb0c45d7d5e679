//! The free pool: extents gc gave back that any writer may take for its appends. A pool
//! record (kind 4) lists them as runs of whole extents:
//! `count u32 | 0 u32 | count × (start u64, extents u64)`, in address order, neither
//! overlapping nor touching (touching runs are one run).

use super::le::{U32, U64};
use crate::error::{Error, Result};
use bytemuck::{Pod, Zeroable};

/// A pool record's first 8 bytes: how many runs follow.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct RawHead {
    count: U32,
    zero: [u8; 4],
}

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct RawRun {
    start: U64,
    extents: U64,
}

/// The extents of the pool as runs `(start address, number of extents)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pool {
    runs: Vec<(u64, u64)>,
}

impl Pool {
    /// The most runs one pool record holds: it fits an extent with room to spare.
    pub const MAX_RUNS: usize = 100_000;

    /// The pool without its runs past the first `max`.
    pub fn capped(mut self, max: usize) -> Pool {
        self.runs.truncate(max);
        self
    }

    /// A pool of these extent starts (any order, duplicates allowed).
    pub fn from_extents(mut starts: Vec<u64>, extent: u64) -> Pool {
        starts.sort_unstable();
        starts.dedup();
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for s in starts {
            match runs.last_mut() {
                Some((start, n)) if *start + *n * extent == s => *n += 1,
                _ => runs.push((s, 1)),
            }
        }
        Pool { runs }
    }

    pub fn runs(&self) -> &[(u64, u64)] {
        &self.runs
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Every extent start, in address order.
    pub fn extents(&self, extent: u64) -> impl Iterator<Item = u64> + '_ {
        self.runs
            .iter()
            .flat_map(move |&(s, n)| (0..n).map(move |i| s + i * extent))
    }

    /// Bytes the pool holds.
    pub fn bytes(&self, extent: u64) -> u64 {
        self.runs.iter().map(|r| r.1).sum::<u64>() * extent
    }

    pub fn contains(&self, at: u64, extent: u64) -> bool {
        let i = self.runs.partition_point(|r| r.0 <= at);
        i > 0 && {
            let (s, n) = self.runs[i - 1];
            at < s + n * extent
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 16 * self.runs.len());
        out.extend_from_slice(bytemuck::bytes_of(&RawHead {
            count: U32::new(self.runs.len() as u32),
            zero: [0; 4],
        }));
        for &(start, extents) in &self.runs {
            out.extend_from_slice(bytemuck::bytes_of(&RawRun {
                start: U64::new(start),
                extents: U64::new(extents),
            }));
        }
        out
    }

    /// Decodes a pool record's payload. Every run must lie on the extent grid (`base` +
    /// k·`extent`) below `end`, in order, apart: what a writer takes from the pool is never
    /// outside the data area or shared with another run.
    pub fn decode(data: &[u8], at: u64, base: u64, extent: u64, end: u64) -> Result<Pool> {
        let bad = || Error::corrupt(format!("free pool record at {at:#x} is malformed"));
        let head: RawHead = bytemuck::try_pod_read_unaligned(data.get(..8).ok_or_else(bad)?).map_err(|_| bad())?;
        let count = head.count.get() as usize;
        let body = &data[8..];
        if head.zero != [0; 4] || body.len() != count.checked_mul(16).ok_or_else(bad)? {
            return Err(bad());
        }
        let raw: &[RawRun] = bytemuck::try_cast_slice(body).map_err(|_| bad())?;
        let mut runs = Vec::with_capacity(count);
        let mut next_free = base;
        for r in raw {
            let (start, n) = (r.start.get(), r.extents.get());
            let stop = n
                .checked_mul(extent)
                .and_then(|b| b.checked_add(start))
                .ok_or_else(bad)?;
            let on_grid = start >= base && (start - base).is_multiple_of(extent);
            // Strictly after the previous run's end: touching runs would have been one.
            let apart = start > next_free || (runs.is_empty() && start >= next_free);
            if n == 0 || !on_grid || !apart || stop > end {
                return Err(bad());
            }
            runs.push((start, n));
            next_free = stop;
        }
        Ok(Pool { runs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: u64 = 2 << 20;
    const BASE: u64 = 24576;

    #[test]
    fn extents_become_runs_and_round_trip() {
        let p = Pool::from_extents(vec![BASE + 3 * E, BASE, BASE + E, BASE + E, BASE + 7 * E], E);
        assert_eq!(p.runs(), &[(BASE, 2), (BASE + 3 * E, 1), (BASE + 7 * E, 1)]);
        assert!(p.contains(BASE + E, E) && !p.contains(BASE + 2 * E, E));
        assert_eq!(p.bytes(E), 4 * E);
        let back = Pool::decode(&p.encode(), 0, BASE, E, BASE + 8 * E).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn runs_off_the_grid_overlapping_or_past_the_end_are_corrupt() {
        for runs in [
            vec![(BASE + 1, 1)],
            vec![(BASE, 2), (BASE + E, 1)],
            vec![(BASE, 1), (BASE + E, 1)],
            vec![(BASE + E, 1), (BASE, 1)],
            vec![(BASE, 9)],
            vec![(BASE, 0)],
            vec![(BASE, u64::MAX)],
        ] {
            let p = Pool { runs };
            assert!(Pool::decode(&p.encode(), 0, BASE, E, BASE + 8 * E).is_err(), "{p:?}");
        }
    }
}
