//! Persistent copy-on-write trees over the segments: the B-tree of keys (layers, catalog,
//! chunk-index runs), the block map of a value, and a layer's working tree built from both.

pub(crate) mod blockmap;
pub(crate) mod btree;
pub(crate) mod chunk_index;
pub(crate) mod diff;
pub(crate) mod fsops;
pub(crate) mod mem;
pub(crate) mod pack;
pub(crate) mod totals;
pub(crate) mod worktree;
