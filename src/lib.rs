//! # lstore: an embedded layer store with block-level copy-on-write
//!
//! One file holds read-only layers (copy-on-write B-tree snapshots), writable containers on
//! top of them, named volumes, and the content-addressed chunks of every value, stored once
//! however many layers use them. A container starts from its image in O(1); a 4 KiB write
//! into a 1 GiB value copies one block and a few tree nodes, never the value.
//!
//! ```
//! use lstore::{Options, Store};
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::create(dir.path().join("s.lstore"), Options::default()).unwrap();
//!
//! // An image layer, and a container on it.
//! let mut base = store.new_layer(None).unwrap();
//! base.put("etc/hostname", b"box").unwrap();
//! let image = base.finish(Some("base")).unwrap();
//! let ctr = store.create_container(&image, Some("web")).unwrap();
//! ctr.write_at("etc/hostname", 0, b"BOX").unwrap();
//! store.commit().unwrap();
//!
//! // The image is unchanged; the container's change becomes a layer of its own.
//! assert_eq!(image.get("etc/hostname").unwrap().unwrap(), b"box");
//! let layer = ctr.commit(Some("web:v2")).unwrap();
//! assert_eq!(layer.get("etc/hostname").unwrap().unwrap(), b"BOX");
//! ```
//!
//! The entry point is [`Store`]: [`Layer`]s are read-only snapshots, built with a
//! [`LayerBuilder`] or through the build cache ([`Store::build`]); [`Container`]s are writable
//! and can mount volumes and host folders ([`Mount`]); [`Store::commit`] makes changes
//! durable; [`Store::gc`], [`Store::usage`] and [`Store::verify`] maintain the file.
//! [`import_dir`] and [`Layerfile`] bring host files in. Every failure is an [`Error`].
//!
//! Inside, each layer uses only the ones below it (the README's Design section draws them):
//! `format` (byte layouts) → `io` (the file, maps, appending) → `chunk` → `tree` (B-tree,
//! block map, chunk index) → `txn` (open and commit) → `store` → `maint` (gc, usage, verify,
//! salvage) → the front ends, which use only the public API: `import` (folders, Layerfiles,
//! OCI tars and images), `fuse` (the mount), and `run` (on the mount). `host` (the host's file
//! system: paths resolved beneath a root, walking, metadata) and `error` sit beside them all.
//! `format-spec.md` describes the bytes on disk.

mod chunk;
mod error;
mod format;
mod fuse;
mod host;
mod import;
mod io;
mod maint;
mod run;
mod store;
#[cfg(feature = "test-support")]
pub mod testing;
mod tree;
mod txn;

pub use error::{Error, Result};
pub use format::catalog::{ContainerInfo, Id, ImageInfo, LayerInfo, VolumeInfo};
pub use format::compression::Compression;
pub use format::digest::{parse_sha256, sha256_string};
pub use format::escape::{escape_path, unescape_path};
pub use format::mount::{Mount, MountSource};
pub use format::value::{check_key, Attrs, FileKind, ValueInfo};
pub use fuse::{mount_fuse, server_error_file, unmount_fuse, FuseMount, FuseOptions};
pub use import::export::{export_dir, Exported};
pub use import::folder::{import_dir, ImportOptions, Imported};
pub use import::layerfile::{Instruction, Layerfile, Step, StepResult};
pub use import::oci::load::{load, LoadOptions, LoadedImage, SkipReason, SkippedTag};
pub use import::oci::save::{save, Saved};
pub use import::tar_in::{import_tar, TarImported};
pub use import::tar_out::export_tar;
pub use import::tar_split::{tar_origin, TarOrigin};
#[cfg(feature = "test-support")]
pub use io::{Exclusive, FileIo, Io};
pub use maint::gc::GcReport;
pub use maint::salvage::{salvage, SalvageReport};
pub use maint::usage::SpaceReport;
pub use maint::verify::{Problem, VerifyReport};
pub use run::{run, start, sweep_runs, RunExit, RunOptions};
pub use store::{
    check_tag, normalize_tag, Annotation, Annotations, Change, ChangeKind, Container, ContainerHold, ImageRemoval,
    Layer, LayerBuilder, Options, Stats, Store, Target, ValueHandle, ValueReader,
};
pub use tree::totals::TreeUsage;
pub use tree::worktree::PutOptions;
pub use txn::Durability;
