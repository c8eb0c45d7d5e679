//! The one error type of the crate: every failure is typed, none panics.

use std::path::PathBuf;

/// Result alias used across lstore.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, named so that a caller can react and a user can read it.
/// New kinds may be added: match with a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An I/O error on a file the caller named (a store, an input file, a folder).
    #[error("{}: {source}", path.display())]
    File { path: PathBuf, source: std::io::Error },
    /// Another process (its id, when the kernel could tell) is writing `what` in the store:
    /// a container or volume, or the store itself where one writer must have it alone.
    #[error("{}: {what} is being written by {}", path.display(), holder.map_or("another process".to_string(), |p| format!("process {p}")))]
    Busy {
        path: PathBuf,
        what: String,
        holder: Option<u32>,
    },
    #[error("{0} is not an lstore store (bad magic)")]
    NotAStore(PathBuf),
    #[error("store format version {found} is not supported by this build (it reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("store already exists: {0}")]
    AlreadyExists(PathBuf),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("offset or length out of range: {0}")]
    OutOfRange(String),
    #[error("no such key: {0}")]
    KeyNotFound(String),
    #[error("no layer, container or image matches '{0}'")]
    UnknownRef(String),
    #[error("no volume named '{0}'")]
    NoSuchVolume(String),
    #[error("'{0}' is ambiguous: it matches more than one layer, container or image")]
    AmbiguousRef(String),
    #[error("{0} is read-only")]
    ReadOnly(String),
    /// The name, quoted, and what holds it when that is not plain.
    #[error("name {0} is already in use")]
    NameInUse(String),
    #[error("{0}")]
    InUse(String),
    /// A write to the store file failed (a full disk, say): this handle takes no more writes,
    /// since what it appended last is not known to be whole. Reopening continues from the last
    /// commit.
    #[error("{}: a write failed earlier; reopen the store to continue from its last commit", .0.display())]
    WritesStopped(PathBuf),
    /// A path that must not exist does (`mkdir`, `link`, a `rename` that may not replace).
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} is not a folder")]
    NotADirectory(String),
    #[error("{0} is a folder")]
    IsADirectory(String),
    #[error("folder {0} is not empty")]
    NotEmpty(String),
    /// A rename or link between the container's own tree and a mount, or between two mounts.
    #[error("{0}: crosses a mount boundary")]
    CrossMount(String),
    #[error("store is full: {0}")]
    Full(String),
    /// An error at a place in an input file (`Layerfile:3`), with what went wrong there.
    #[error("{place}: {source}")]
    At { place: String, source: Box<Error> },
}

impl Error {
    /// The errno a file system built on the store reports for this error (a FUSE mount
    /// answers the kernel with it).
    ///
    /// ```
    /// assert_eq!(lstore::Error::KeyNotFound("a".into()).errno(), libc::ENOENT);
    /// ```
    pub fn errno(&self) -> i32 {
        match self {
            Error::Io(e) | Error::File { source: e, .. } => e.raw_os_error().unwrap_or(libc::EIO),
            Error::Busy { .. } | Error::InUse(_) => libc::EBUSY,
            Error::NotAStore(_) | Error::UnsupportedVersion { .. } | Error::Corrupt(_) => libc::EIO,
            Error::AlreadyExists(_) | Error::NameInUse(_) | Error::Exists(_) => libc::EEXIST,
            Error::NotADirectory(_) => libc::ENOTDIR,
            Error::IsADirectory(_) => libc::EISDIR,
            Error::NotEmpty(_) => libc::ENOTEMPTY,
            Error::CrossMount(_) => libc::EXDEV,
            Error::InvalidKey(_) | Error::InvalidArgument(_) => libc::EINVAL,
            Error::OutOfRange(_) => libc::EFBIG,
            Error::KeyNotFound(_) | Error::UnknownRef(_) | Error::NoSuchVolume(_) => libc::ENOENT,
            Error::AmbiguousRef(_) => libc::EINVAL,
            Error::ReadOnly(_) => libc::EROFS,
            Error::Full(_) => libc::ENOSPC,
            Error::WritesStopped(_) => libc::EIO,
            Error::At { source, .. } => source.errno(),
        }
    }

    /// An I/O error on the file at `path`, naming it.
    pub(crate) fn file(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::File {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Error::Corrupt(what.into())
    }
}
