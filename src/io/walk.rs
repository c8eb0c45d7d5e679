//! The one directory walker of the crate: regular files below a root, each with a key made of
//! its relative path's bytes joined by `/` (never a lossy string: two names that differ in one
//! byte stay two keys), sorted by key. Every folder is opened relative to its parent's
//! descriptor without following symlinks, so a folder swapped for a link while the walk runs
//! cannot lead it outside the root.

use crate::error::{Error, Result};
use rustix::fs::{openat, statat, AtFlags, Dir, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;
use std::ffi::CString;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

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

/// What a walk found, with the root folder's descriptor to open the files beneath it
/// ([`super::beneath`]) rather than by path again.
pub(crate) struct Walked {
    pub root: OwnedFd,
    pub files: Vec<Found>,
}

/// Every regular file below `root` (which may itself be reached through a symlink), sorted
/// by key. A folder that cannot be read is an error naming it, with its OS error.
pub(crate) fn regular_files(root: &Path) -> Result<Walked> {
    let fd =
        openat(CWD, root, dir_flags() & !OFlags::NOFOLLOW, Mode::empty()).map_err(|e| Error::file(root, e.into()))?;
    regular_files_at(fd, root)
}

/// A folder still to list: its parent's descriptor (shared by its siblings) and its name, so
/// it is opened only when its turn comes: open descriptors stay bounded by the tree's depth,
/// however wide it is.
struct Pending {
    parent: Rc<OwnedFd>,
    name: CString,
    key: Vec<u8>,
    path: PathBuf,
}

/// As [`regular_files`], below an open folder; `root` names it in paths and errors.
pub(crate) fn regular_files_at(fd: OwnedFd, root: &Path) -> Result<Walked> {
    let mut files = Vec::new();
    let root_fd = Rc::new(fd);
    let mut todo: Vec<Pending> = Vec::new();
    list_into(&root_fd, &[], root, &mut files, &mut todo)?;
    while let Some(p) = todo.pop() {
        let fd = match openat(&*p.parent, p.name.as_c_str(), dir_flags(), Mode::empty()) {
            Ok(fd) => Rc::new(fd),
            // Swapped for a link or removed since it was listed: not a folder now.
            Err(Errno::LOOP | Errno::NOTDIR | Errno::NOENT) => continue,
            Err(e) => return Err(Error::file(&p.path, e.into())),
        };
        list_into(&fd, &p.key, &p.path, &mut files, &mut todo)?;
    }
    files.sort_by(|a, b| a.key.cmp(&b.key));
    drop(todo);
    let root =
        Rc::try_unwrap(root_fd).map_err(|_| Error::InvalidArgument(format!("{}: walk still busy", root.display())))?;
    Ok(Walked { root, files })
}

/// Lists one folder: its regular files into `files`, its folders into `todo`.
fn list_into(fd: &Rc<OwnedFd>, key: &[u8], path: &Path, files: &mut Vec<Found>, todo: &mut Vec<Pending>) -> Result<()> {
    let unreadable = |e: Errno| Error::file(path, e.into());
    let dir = match Dir::read_from(&**fd) {
        Ok(d) => d,
        // Removed since it was listed.
        Err(Errno::NOENT) if !key.is_empty() => return Ok(()),
        Err(e) => return Err(unreadable(e)),
    };
    for entry in dir {
        let entry = entry.map_err(unreadable)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let child_key = if key.is_empty() {
            name.to_vec()
        } else {
            [key, b"/", name].concat()
        };
        let child_path = path.join(OsStr::from_bytes(name));
        let mut kind = entry.file_type();
        let mut len = 0;
        if kind == FileType::Unknown || kind == FileType::RegularFile {
            let st = match statat(&**fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Removed since it was listed.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(Error::file(&child_path, e.into())),
            };
            kind = FileType::from_raw_mode(st.st_mode);
            len = st.st_size as u64;
        }
        match kind {
            FileType::Directory => todo.push(Pending {
                parent: fd.clone(),
                name: entry.file_name().to_owned(),
                key: child_key,
                path: child_path,
            }),
            FileType::RegularFile => files.push(Found {
                key: child_key,
                path: child_path,
                len,
            }),
            _ => {}
        }
    }
    Ok(())
}
