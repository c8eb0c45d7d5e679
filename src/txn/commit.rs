//! Committing: the chunk index and catalog are written after everything they point at, then
//! the superblock of the other slot is written and synced. A clean close makes a non-durable
//! last commit durable.

use super::write_slot;
use super::Txn;
use crate::error::Result;
use crate::format::compression::Compression;
use crate::format::pool::Pool;
use crate::format::record::{self, Kind};
use crate::format::superblock::{Superblock, SLOT_OFFSETS};
use crate::io::{Io, Segments, Writer, EXTENT};
use std::collections::HashSet;

/// Commits whose unsynced records span at most this many bytes use one sync: their
/// records and superblock are written together and open re-checks the records' chain.
const ONE_SYNC_MAX: u64 = 1 << 20;

/// Commits up to this size keep the file zeroed ahead of the tail, so that their sync finds
/// the blocks allocated and journals nothing. The zeros go out 1.5-2 MiB at a time, within the
/// writer's extent (the paired CoW-write target, ~80 KB commits: 0.55 ms a commit with it,
/// 0.94 ms without; in 2 MiB steps rather than 8, a reader beside such a writer keeps its
/// p99 at 1.25x instead of spiking to 6x in some runs).
const ZERO_AHEAD_MAX_COMMIT: u64 = 128 << 10;

/// How hard a commit works to survive a power cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Synced to disk before `commit` returns.
    Immediate,
    /// Visible at once and kept across a clean close; a crash may roll back to the last
    /// durable commit, never further, and never to a torn state (LMDB's and redb's trade).
    None,
}

/// A commit written up to its superblock, whose syncs are still to come. They run without the
/// writer state locked, so other threads keep writing (past the commit's tail) meanwhile;
/// commits themselves are serialised by the caller.
#[must_use = "a prepared commit is published, then finished"]
pub(crate) struct Publish {
    sb: Superblock,
    slot: usize,
    /// Catalog changes the commit holds (later ones are the next commit's).
    log_len: usize,
    /// The superblock was written with the records; one sync makes both durable.
    one_sync: bool,
    /// Extents claimed from the pool that this commit takes out of it.
    claims: Vec<u64>,
}

impl Publish {
    /// Makes the commit durable: one sync, or the records' sync, the superblock, a sync.
    pub(crate) fn publish(&mut self, io: &dyn Io) -> Result<()> {
        if self.one_sync {
            return io.sync();
        }
        io.sync()?;
        self.sb.mark_records_durable();
        write_slot(io, self.slot, &self.sb)?;
        io.sync()
    }
}

impl Txn {
    /// Writes the chunk index and catalog, then switches the superblock. The caller has
    /// written every tree the catalog points at.
    pub(crate) fn commit(&mut self, segs: &Segments, durability: Durability) -> Result<()> {
        if let Some(mut p) = self.begin_commit(segs, durability)? {
            p.publish(segs.io().as_ref())?;
            self.finish_commit(p, segs);
        }
        Ok(())
    }

    /// Writes the chunk index, the catalog and, unless it must follow a sync, the superblock.
    /// A non-durable commit is complete here; a durable one returns what remains to be synced.
    /// The caller holds the store's commit lock and has taken up the newest commit.
    pub(crate) fn begin_commit(&mut self, segs: &Segments, durability: Durability) -> Result<Option<Publish>> {
        let mut w = Writer {
            segs,
            app: &mut self.app,
        };
        self.chunks.flush(&mut w)?;
        let catalog_root = self.catalog.flush(&mut w)?;
        let (pool, pool_crc, claims) = self.write_pool(segs)?;
        let pooled = if self.pool_add.is_empty() && self.pool_cut.is_none() {
            self.last_sb.pooled
        } else {
            self.generation + 1
        };
        let log_len = self.catalog.log_len();
        self.app.flush(segs)?;
        let (from, chain_crc, chain_count) = self.app.pending_chain();
        let tail = self.app.tail();
        let mut sb = Superblock {
            generation: self.generation + 1,
            tail,
            verify_from: from,
            chain_crc,
            chain_count,
            catalog_root,
            used: self.app.used(),
            runs: self.chunks.runs().to_vec(),
            unsynced: durability == Durability::None,
            high: self.last_sb.high.max(self.app.high()),
            pool,
            pool_crc,
            pooled,
        };
        if let Some(cut) = self.pool_cut {
            // Nothing live lies past the cut (gc's own records are below it).
            sb.high = sb.high.min(cut).max(tail);
        }
        let slot = self.next_slot();
        let io = segs.io();
        // Open can re-check only records it can walk, and only this writer's: built on
        // another writer's commit, whose sync this one cannot vouch for, the records are
        // synced before the superblock.
        let walkable = self.app.walkable() && self.own == self.generation;
        if !walkable {
            sb.mark_records_durable();
        }
        if durability == Durability::None {
            if !walkable {
                io.sync()?;
                self.app.mark_durable_to_tail();
            }
            write_slot(io.as_ref(), slot, &sb)?;
            self.take_up(sb, slot);
            self.own = self.generation;
            self.catalog.published(log_len);
            self.claims_published(segs, &claims);
            return Ok(None);
        }
        let one_sync = walkable && tail - from <= ONE_SYNC_MAX;
        if one_sync {
            // Only an optimisation, past the tail: with the disk nearly full it fails, and
            // the commit goes on without it. It stays under the state lock: once the lock is
            // released other threads append past the tail, and zeros would overwrite them.
            if tail - from <= ZERO_AHEAD_MAX_COMMIT && !self.no_zero_ahead {
                let _ = self.app.zero_ahead(segs);
            }
            write_slot(io.as_ref(), slot, &sb)?;
        }
        // Records appended from here on belong to the next commit.
        self.app.cut();
        Ok(Some(Publish {
            sb,
            slot,
            log_len,
            one_sync,
            claims,
        }))
    }

    /// Takes up a published durable commit as the last one.
    pub(crate) fn finish_commit(&mut self, p: Publish, segs: &Segments) {
        self.app.mark_durable_to(p.sb.tail);
        self.take_up(p.sb, p.slot);
        self.own = self.generation;
        self.catalog.published(p.log_len);
        self.claims_published(segs, &p.claims);
    }

    /// The pool record this commit names (address and crc), and the claimed extents it takes
    /// out of the pool: the pool of the commit it builds on, without this writer's claims, with
    /// what gc gives back. Unchanged (no record) when there is nothing to change.
    fn write_pool(&mut self, segs: &Segments) -> Result<(u64, u32, Vec<u64>)> {
        let unchanged = self.app.claims().is_empty() && self.pool_add.is_empty() && self.pool_cut.is_none();
        if unchanged && !self.pool_rewrite {
            return Ok((self.last_sb.pool, self.last_sb.pool_crc, Vec::new()));
        }
        self.pool_rewrite = false;
        let base = segs.pool_or_empty(&self.last_sb);
        // Room first, for the pool as it will be: taking an extent for the record itself may
        // claim one more, which splits at most one run.
        let runs = self.new_pool(&base).runs().len() + 1;
        self.app
            .ensure_room(segs, record::padded(8 + 16 * runs.min(Pool::MAX_RUNS)))?;
        let claims = self.app.claims().to_vec();
        // A pool too fragmented for one record keeps its lowest runs; the rest stay dead space
        // (given back by gc's punching, found again by a later gc).
        let pool = self.new_pool(&base).capped(Pool::MAX_RUNS);
        if pool.is_empty() {
            return Ok((0, 0, claims));
        }
        let payload = pool.encode();
        let rec = record::prepare(Kind::Pool, &payload, Compression::None);
        let mut w = Writer {
            segs,
            app: &mut self.app,
        };
        let addr = w.append(&rec)?;
        Ok((addr, rec.crc(), claims))
    }

    /// Makes room in this writer's extent for the pool record the next commit writes, so that
    /// writing it claims no extent (gc chooses its cut after this).
    pub(crate) fn make_pool_room(&mut self, segs: &Segments) -> Result<()> {
        let base = segs.pool_or_empty(&self.last_sb);
        let runs = self.new_pool(&base).runs().len() + 1;
        self.app
            .ensure_room(segs, record::padded(8 + 16 * runs.min(Pool::MAX_RUNS)))
    }

    /// `base` without this writer's claims, with what gc gives back, below gc's cut.
    fn new_pool(&self, base: &Pool) -> Pool {
        let taken: HashSet<u64> = self.app.claims().iter().copied().collect();
        let cut = self.pool_cut.unwrap_or(u64::MAX);
        let extents: Vec<u64> = base
            .extents(EXTENT)
            .filter(|e| !taken.contains(e))
            .chain(self.pool_add.iter().copied())
            .filter(|&e| e + EXTENT <= cut)
            .collect();
        Pool::from_extents(extents, EXTENT)
    }

    /// A published commit took `claims` out of the pool: other writers may see them gone
    /// now, so the locks that kept them off go.
    fn claims_published(&mut self, segs: &Segments, claims: &[u64]) {
        self.app.claims_published(claims);
        // A lock that fails to go stays until close; the extent is out of the pool anyway.
        let _ = segs.release_claims(claims);
    }

    /// `sb`, in `slot`, is the newest commit this state is built on.
    pub(crate) fn take_up(&mut self, sb: Superblock, slot: usize) {
        self.generation = sb.generation;
        self.slot = slot;
        self.last_sb = sb;
    }

    /// On a clean close after a non-durable commit: syncs its records and writes a superblock
    /// that says they are durable, so the next open need not re-check them. Uncommitted
    /// changes are dropped, as a transaction that was never committed is.
    ///
    /// A durable one-sync commit's superblock says its records are to be re-checked at open,
    /// so damage to them before the next commit would read as a crash's torn commit and roll
    /// it back unreported. A clean close says they are durable (they are synced) in the same
    /// slot, one copy at a time with a sync between, so the twin always holds the commit and
    /// the other slot keeps the commit before it (what a store cut short falls back to).
    ///
    /// The caller holds the commit lock and has found this writer's last commit the newest.
    pub(crate) fn close(&self, segs: &Segments) {
        if self.poisoned || self.own != self.generation {
            return;
        }
        let io = segs.io();
        let mut sb = self.last_sb.clone();
        sb.mark_records_durable();
        sb.unsynced = false;
        if self.own_unsynced() {
            sb.generation += 1;
            let _ = io
                .sync()
                .and_then(|_| write_slot(io.as_ref(), self.next_slot(), &sb))
                .and_then(|_| io.sync());
        } else if self.last_sb.verify_from < self.last_sb.tail {
            let page = sb.encode();
            let _ = SLOT_OFFSETS[self.slot]
                .iter()
                .try_for_each(|&off| io.write_at(off, &page).and_then(|_| io.sync()));
        }
    }
}
