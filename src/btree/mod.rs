//! The persistent copy-on-write B-tree used for layer trees, the catalog and the chunk index.

pub mod mem;
pub mod node;
pub mod tree;

pub use tree::{build, DiskIter, Tree};
