//! The one directory walker of the crate: regular files below a root, each with a key made of
//! its relative path's bytes joined by `/` (never a lossy string: two names that differ in one
//! byte stay two keys), sorted by key. Symlinks are not followed: they could lead out.

use crate::error::{Error, Result};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A regular file found below the root.
pub(crate) struct Found {
    pub key: Vec<u8>,
    pub path: PathBuf,
    pub len: u64,
}

/// Every regular file below `root`, sorted by key. A folder that cannot be read is an error
/// naming it, with its OS error (so its errno survives).
pub(crate) fn regular_files(root: &Path) -> Result<Vec<Found>> {
    let unreadable = |e: walkdir::Error| {
        let at = e.path().unwrap_or(root).to_path_buf();
        Error::file(&at, std::io::Error::from(e))
    };
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.map_err(unreadable)?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let mut key = Vec::new();
        for part in rel.components() {
            if !key.is_empty() {
                key.push(b'/');
            }
            key.extend_from_slice(part.as_os_str().as_bytes());
        }
        let len = entry.metadata().map_err(unreadable)?.len();
        out.push(Found {
            key,
            path: entry.into_path(),
            len,
        });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}
