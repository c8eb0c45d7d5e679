//! The one directory walker of the crate: the entries below a root (every kind, or regular
//! files only), each with a key made of its relative path's bytes joined by `/` (never a lossy
//! string: two names that differ in one byte stay two keys), sorted by key. Every folder is
//! opened relative to its parent's descriptor without following symlinks, so a folder swapped
//! for a link while the walk runs cannot lead it outside the root; a full walk reads each
//! entry's metadata relative to its folder's descriptor too.

use crate::error::{Error, Result};
use rustix::fs::{openat, statat, AtFlags, Dir, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;
use std::ffi::CString;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// An entry found below the root (a regular file, in a walk of regular files only).
pub(crate) struct Found {
    pub key: Vec<u8>,
    pub path: PathBuf,
    pub len: u64,
    /// In a full walk: the entry's metadata, read without following it.
    pub meta: Option<Box<super::meta::Meta>>,
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
    /// In a full walk: what cannot be kept (sockets), with why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Every entry below `root` of every kind, with its metadata and xattrs; sockets are listed
/// in `skipped`.
pub(crate) fn all_entries(root: &Path) -> Result<Walked> {
    // Xattrs are read through /proc/self/fd: without it every read would fail as "no such
    // file", which must not pass for entries removed during the walk.
    if !super::beneath::have_procfs() {
        return Err(Error::InvalidArgument(format!(
            "{}: reading extended attributes safely needs /proc mounted",
            root.display()
        )));
    }
    let fd =
        openat(CWD, root, dir_flags() & !OFlags::NOFOLLOW, Mode::empty()).map_err(|e| Error::file(root, e.into()))?;
    walk_at(fd, root, true)
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
    walk_at(fd, root, false)
}

/// What a walk collects as it goes.
struct Collect {
    files: Vec<Found>,
    skipped: Vec<(PathBuf, String)>,
    full: bool,
}

fn walk_at(fd: OwnedFd, root: &Path, full: bool) -> Result<Walked> {
    let mut found = Collect {
        files: Vec::new(),
        skipped: Vec::new(),
        full,
    };
    let root_fd = Rc::new(fd);
    let mut todo: Vec<Pending> = Vec::new();
    list_into(&root_fd, &[], root, &mut found, &mut todo)?;
    while let Some(p) = todo.pop() {
        let fd = match openat(&*p.parent, p.name.as_c_str(), dir_flags(), Mode::empty()) {
            Ok(fd) => Rc::new(fd),
            // Swapped for a link or removed since it was listed: not a folder now.
            Err(Errno::LOOP | Errno::NOTDIR | Errno::NOENT) => continue,
            Err(e) => return Err(Error::file(&p.path, e.into())),
        };
        list_into(&fd, &p.key, &p.path, &mut found, &mut todo)?;
    }
    let Collect { mut files, skipped, .. } = found;
    files.sort_by(|a, b| a.key.cmp(&b.key));
    drop(todo);
    let root =
        Rc::try_unwrap(root_fd).map_err(|_| Error::InvalidArgument(format!("{}: walk still busy", root.display())))?;
    Ok(Walked { root, files, skipped })
}

/// Lists one folder: its entries into `found` (regular files only, unless a full walk), its
/// folders also into `todo`.
fn list_into(fd: &Rc<OwnedFd>, key: &[u8], path: &Path, found: &mut Collect, todo: &mut Vec<Pending>) -> Result<()> {
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
        let mut meta = None;
        if found.full {
            match super::meta::Meta::read(fd, entry.file_name()) {
                Ok(m) => {
                    kind = FileType::from_raw_mode(m.stat.st_mode);
                    len = m.stat.st_size as u64;
                    meta = Some(Box::new(m));
                }
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(Error::file(&child_path, e.into())),
            }
        } else if kind == FileType::Unknown || kind == FileType::RegularFile {
            let st = match statat(&**fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Removed since it was listed.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(Error::file(&child_path, e.into())),
            };
            kind = FileType::from_raw_mode(st.st_mode);
            len = st.st_size as u64;
        }
        if kind == FileType::Directory {
            todo.push(Pending {
                parent: fd.clone(),
                name: entry.file_name().to_owned(),
                key: child_key.clone(),
                path: child_path.clone(),
            });
        }
        match kind {
            FileType::RegularFile => {}
            _ if found.full => {}
            _ => continue,
        }
        found.files.push(Found {
            key: child_key,
            path: child_path,
            len,
            meta,
        });
    }
    Ok(())
}
