//! # lstore: an embedded layer store with block-level copy-on-write
//!
//! One file holds read-only layers (copy-on-write B-tree snapshots), writable containers on
//! top of them, and the content-addressed chunks of every value, stored once however many
//! layers use them. A container starts from its image in O(1); a 4 KiB write into a 1 GiB
//! value copies one block and a few tree nodes, never the value.
//!
//! Layering, from the file up (each module uses only those before it):
//! [`io`] → `record`/`segment` → `chunk` → `btree`/`blockmap` → `value`/`worktree` →
//! `catalog`/`store` (with `store/layer`, `store/container`, `store/volume`, `store/admin`)
//! → the `lstore` CLI.
//!
//! See `format-spec.md` for the bytes on disk.

pub mod bind;
pub mod blockmap;
pub mod btree;
pub mod catalog;
pub mod chunk;
pub mod crashsim;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gc;
pub mod io;
pub mod layerfile;
pub mod mount;
pub mod record;
pub mod salvage;
pub mod segment;
pub mod store;
pub mod superblock;
pub mod usage;
pub mod value;
pub mod verify;
mod worktree;

pub use catalog::{ContainerInfo, Id, LayerInfo, VolumeInfo};
pub use error::{Error, Result};
pub use gc::GcReport;
pub use mount::{Mount, MountSource};
pub use record::Compression;
pub use salvage::SalvageReport;
pub use store::{
    Container, Durability, Layer, LayerBuilder, Options, SpaceReport, Stats, Store, Target, ValueHandle, ValueReader,
};
pub use usage::TreeUsage;
pub use value::{Attrs, FileKind, ValueInfo};
pub use verify::{Problem, VerifyReport};
pub use worktree::PutOptions;
