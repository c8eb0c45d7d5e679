//! The file and its segments: the [`Io`] seam, mapped reading, and appending records.

mod file;
mod locks;
mod pread;
mod segments;

pub use file::{FileIo, Io};
pub use locks::Exclusive;
pub(crate) use locks::ITEM_SLOTS;
pub(crate) use pread::Pread;
pub(crate) use segments::{Appender, Segments, Source, Writer, EXTENT};
