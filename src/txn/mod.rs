//! Transactions over the file. Open picks the newest superblock whose commit is whole; a
//! commit appends every changed record, syncs, then writes the other superblock slot, so a
//! power cut at any moment leaves one whole commit to open (LMDB's and redb's protocol).
//! The writer state here knows segments, the chunk index and the catalog tree, nothing of
//! layers or containers.

mod commit;
mod open;

use crate::format::superblock::Superblock;
use crate::io::Appender;
use crate::tree::btree::Tree;
use crate::tree::chunk_index::ChunkIndex;

pub use commit::Durability;
pub(crate) use commit::Publish;
pub(crate) use open::{create, open, read_page, reload, write_slot, Recovery};

/// The writer's state of the file: where appends go, the chunk index, the catalog, and
/// which superblock slot holds the last durable commit.
pub(crate) struct Txn {
    pub app: Appender,
    pub chunks: ChunkIndex,
    pub catalog: Tree,
    pub generation: u64,
    pub durable_slot: usize,
    /// The last commit was not synced.
    pub unsynced: bool,
    /// The superblock of the last commit.
    pub last_sb: Superblock,
    /// A write failed half-way: memory no longer matches what a commit could write.
    pub poisoned: bool,
    /// Ids handed out since open; with the generation it makes every new id unique.
    pub counter: u64,
    /// Set by gc: its commits are about giving space back, not zeroing more ahead.
    pub no_zero_ahead: bool,
}
