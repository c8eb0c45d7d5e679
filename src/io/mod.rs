//! The file and its segments: the [`Io`] seam, mapped reading, and appending records.

pub(crate) mod beneath;
mod file;
pub(crate) mod hostfs;
mod locks;
mod pread;
mod segments;
pub(crate) mod walk;

pub(crate) use file::open_regular;
pub use file::{FileIo, Io};
pub use locks::Exclusive;
pub(crate) use locks::ITEM_SLOTS;
pub(crate) use pread::Pread;
pub(crate) use segments::{Appender, Segments, Source, Writer, EXTENT};
