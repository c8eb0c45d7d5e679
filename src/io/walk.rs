//! The one directory walker of the crate: regular files below a root, each with a key made of
//! its relative path's bytes joined by `/` (never a lossy string: two names that differ in one
//! byte stay two keys), sorted by key. Every folder is opened relative to its parent's
//! descriptor without following symlinks, so a folder swapped for a link while the walk runs
//! cannot lead it outside the root.

use crate::error::{Error, Result};
use rustix::fs::{openat, statat, AtFlags, Dir, FileType, Mode, OFlags, CWD};
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A regular file found below the root.
pub(crate) struct Found {
    pub key: Vec<u8>,
    pub path: PathBuf,
    pub len: u64,
}

/// Flags of a folder opened for listing: never through a symlink, never blocking.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Every regular file below `root` (which may itself be reached through a symlink), sorted
/// by key. A folder that cannot be read is an error naming it, with its OS error.
pub(crate) fn regular_files(root: &Path) -> Result<Vec<Found>> {
    let fd = openat(
        CWD,
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::file(root, e.into()))?;
    regular_files_at(fd, root)
}

/// As [`regular_files`], below an open folder; `root` names it in paths and errors.
pub(crate) fn regular_files_at(fd: OwnedFd, root: &Path) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    // Folders still to list, each with its key and path; a stack, so depth costs no recursion.
    let mut todo: Vec<(OwnedFd, Vec<u8>, PathBuf)> = vec![(fd, Vec::new(), root.to_path_buf())];
    while let Some((fd, key, path)) = todo.pop() {
        let unreadable = |e: rustix::io::Errno| Error::file(&path, e.into());
        for entry in Dir::read_from(&fd).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let child_key = if key.is_empty() {
                name.to_vec()
            } else {
                [&key[..], b"/", name].concat()
            };
            let child_path = path.join(OsStr::from_bytes(name));
            let mut kind = entry.file_type();
            let mut len = None;
            if kind == FileType::Unknown || kind == FileType::RegularFile {
                let st = match statat(&fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    // Removed since it was listed.
                    Err(rustix::io::Errno::NOENT) => continue,
                    Err(e) => return Err(Error::file(&child_path, e.into())),
                };
                kind = FileType::from_raw_mode(st.st_mode);
                len = Some(st.st_size as u64);
            }
            match kind {
                FileType::Directory => match openat(&fd, entry.file_name(), dir_flags(), Mode::empty()) {
                    Ok(child) => todo.push((child, child_key, child_path)),
                    // Swapped for a link or removed since it was listed: not a folder now.
                    Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR | rustix::io::Errno::NOENT) => {}
                    Err(e) => return Err(Error::file(&child_path, e.into())),
                },
                FileType::RegularFile => out.push(Found {
                    key: child_key,
                    path: child_path,
                    len: len.unwrap_or(0),
                }),
                _ => {}
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}
