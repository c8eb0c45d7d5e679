//! Transactions over the file. Open picks the newest superblock whose commit is whole; a
//! commit appends every changed record, syncs, then writes the other superblock slot, so a
//! power cut at any moment leaves one whole commit to open (LMDB's and redb's protocol).
//! The writer state here knows segments, the chunk index and the catalog tree, nothing of
//! layers or containers.

mod catalog;
mod commit;
mod open;

use crate::format::superblock::Superblock;
use crate::io::Appender;
use crate::tree::chunk_index::ChunkIndex;

pub(crate) use catalog::Catalog;
pub use commit::Durability;
pub(crate) use commit::Publish;
pub(crate) use open::{create, newest_whole, open, read_page, reload, write_slot, Recovery};

/// The writer's state of the file: where appends go, the chunk index, the catalog, and the
/// commit they are built on.
pub(crate) struct Txn {
    pub app: Appender,
    pub chunks: ChunkIndex,
    pub catalog: Catalog,
    /// The generation of `last_sb`.
    pub generation: u64,
    /// The slot `last_sb` is in.
    pub slot: usize,
    /// The newest commit this state has taken up: this writer's own last one, or another
    /// writer process's.
    pub last_sb: Superblock,
    /// The generation of this writer's own last commit (0 before its first).
    pub own: u64,
    /// A write failed half-way: memory no longer matches what a commit could write.
    pub poisoned: bool,
    /// Ids handed out since open; with the generation it makes every new id unique.
    pub counter: u64,
    /// Set by gc: its commits are about giving space back, not zeroing more ahead.
    pub no_zero_ahead: bool,
    /// Set by gc for one commit: extents it gives to the free pool.
    pub pool_add: Vec<u64>,
    /// Set by gc for one commit: the file is cut short here; the pool keeps nothing past it
    /// and `high` comes down to it.
    pub pool_cut: Option<u64>,
    /// Set by gc: the next commit writes its pool record anew (the old one may lie where gc
    /// gives space back).
    pub pool_rewrite: bool,
}

impl Txn {
    /// The slot the next commit goes to: never the one holding the last durable commit.
    /// A non-durable newest commit is overwritten in its own slot; the other holds the
    /// durable one before it.
    pub fn next_slot(&self) -> usize {
        if self.last_sb.unsynced {
            self.slot
        } else {
            1 - self.slot
        }
    }

    /// The newest commit is this writer's own, non-durable one: a clean close syncs it.
    pub fn own_unsynced(&self) -> bool {
        self.own == self.generation && self.last_sb.unsynced
    }
}
