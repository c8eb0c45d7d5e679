//! Byte layouts: how every structure of the store file is encoded and decoded. No I/O here;
//! `format-spec.md` describes the same bytes for people.

pub(crate) mod catalog;
pub(crate) mod compression;
pub(crate) mod digest;
pub(crate) mod escape;
pub(crate) mod le;
pub(crate) mod mapnode;
pub(crate) mod mount;
pub(crate) mod names;
pub(crate) mod node;
pub(crate) mod pool;
pub(crate) mod ptr;
pub(crate) mod record;
pub(crate) mod superblock;
pub(crate) mod treekey;
pub(crate) mod value;
