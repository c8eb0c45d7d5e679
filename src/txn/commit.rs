//! Committing: the chunk index and catalog are written after everything they point at, then
//! the superblock of the other slot is written and synced. A clean close makes a non-durable
//! last commit durable.

use super::write_slot;
use super::Txn;
use crate::error::Result;
use crate::format::superblock::{Superblock, SLOT_OFFSETS};
use crate::io::{Io, Segments, Writer};

/// Commits whose unsynced records span at most this many bytes use one sync: their
/// records and superblock are written together and open re-checks the records' chain.
const ONE_SYNC_MAX: u64 = 1 << 20;

/// Commits up to this size keep the file zeroed ahead of the tail. Zeroing doubles the bytes
/// written, which pays only while the allocation a sync would otherwise journal costs more
/// than the commit's own data (measured here: a win for ~10 KiB commits, a loss at 70 KiB).
const ZERO_AHEAD_MAX_COMMIT: u64 = 32 << 10;

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
            self.finish_commit(p);
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
            high: self.last_sb.high.max(tail),
        };
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
        }))
    }

    /// Takes up a published durable commit as the last one.
    pub(crate) fn finish_commit(&mut self, p: Publish) {
        self.app.mark_durable_to(p.sb.tail);
        self.take_up(p.sb, p.slot);
        self.own = self.generation;
        self.catalog.published(p.log_len);
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
