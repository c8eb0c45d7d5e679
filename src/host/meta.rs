//! Metadata of host files, read and set relative to an open folder: what `lstat`, `readlink`
//! and the xattr calls give, for folder import and export. An entry's xattrs are reached as
//! `/proc/self/fd/DIR/NAME` with the calls that do not follow the last component: the kernel
//! resolves the folder from the descriptor held, so nothing swapped in along a path is read.

use rustix::fs::{statat, AtFlags, Stat};
use rustix::io::Errno;
use std::ffi::{CStr, OsStr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Extended attributes: name to value, sorted by name.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// What a layer keeps of a host entry besides its bytes.
pub(crate) struct Meta {
    pub stat: Stat,
    pub link_target: Option<Vec<u8>>,
    pub xattrs: Xattrs,
}

/// The path through procfs of `name` in the folder open as `dir`.
fn magic(dir: &OwnedFd, name: &[u8]) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(OsStr::from_bytes(name));
    p
}

impl Meta {
    /// `name`'s metadata in the folder `dir`, not following it if it is a symlink.
    /// `NOENT` means the entry is gone (it was removed after the folder was listed).
    pub fn read(dir: &OwnedFd, name: &CStr) -> Result<Meta, Errno> {
        let stat = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let link_target = match rustix::fs::FileType::from_raw_mode(stat.st_mode) {
            rustix::fs::FileType::Symlink => Some(rustix::fs::readlinkat(dir, name, Vec::new())?.into_bytes()),
            _ => None,
        };
        let xattrs = xattrs_of(dir, name.to_bytes())?;
        Ok(Meta {
            stat,
            link_target,
            xattrs,
        })
    }
}

impl Meta {
    /// The metadata of the folder open as `dir` itself.
    pub fn of_dir(dir: &OwnedFd) -> Result<Meta, Errno> {
        Ok(Meta {
            stat: rustix::fs::fstat(dir)?,
            link_target: None,
            xattrs: read_xattrs(
                |buf| match buf.is_empty() {
                    true => rustix::fs::flistxattr_query(dir),
                    false => rustix::fs::flistxattr(dir, buf),
                },
                |x, buf| match buf.is_empty() {
                    true => rustix::fs::fgetxattr_query(dir, x),
                    false => rustix::fs::fgetxattr(dir, x, buf),
                },
            )?,
        })
    }
}

/// Every xattr of `name` in `dir`, sorted by name; none where the file system keeps none.
pub(crate) fn xattrs_of(dir: &OwnedFd, name: &[u8]) -> Result<Xattrs, Errno> {
    let path = magic(dir, name);
    read_xattrs(
        |buf| match buf.is_empty() {
            true => rustix::fs::llistxattr_query(&path),
            false => rustix::fs::llistxattr(&path, buf),
        },
        |x, buf| match buf.is_empty() {
            true => rustix::fs::lgetxattr_query(&path, x),
            false => rustix::fs::lgetxattr(&path, x, buf),
        },
    )
}

/// Reads every xattr with `list` and `get`, which fill a buffer or, given an empty one, say
/// how big it must be; retried when a list or value grows between the two calls.
fn read_xattrs(
    list: impl Fn(&mut [u8]) -> Result<usize, Errno>,
    get: impl Fn(&OsStr, &mut [u8]) -> Result<usize, Errno>,
) -> Result<Xattrs, Errno> {
    let sized = |call: &dyn Fn(&mut [u8]) -> Result<usize, Errno>| -> Result<Vec<u8>, Errno> {
        loop {
            let n = call(&mut [])?;
            let mut buf = vec![0u8; n];
            if n == 0 {
                return Ok(buf);
            }
            match call(&mut buf) {
                Ok(got) if got > n => continue,
                Ok(got) => {
                    buf.truncate(got);
                    return Ok(buf);
                }
                Err(Errno::RANGE) => continue,
                Err(e) => return Err(e),
            }
        }
    };
    let names = match sized(&list) {
        Ok(l) => l,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for xname in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let xname_os = OsStr::from_bytes(xname);
        match sized(&|buf| get(xname_os, buf)) {
            Ok(v) => out.push((xname.to_vec(), v)),
            // Removed since it was listed.
            Err(Errno::NODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// Sets the permission bits of `name` in `dir` unless it is a symlink now (chmod has no
/// no-follow form: the entry is pinned by an `O_PATH` descriptor, checked, then changed
/// through it), so a file swapped for a symlink meanwhile never sends the change elsewhere.
pub(crate) fn chmod_nofollow(dir: &OwnedFd, name: &[u8], mode: u32) -> Result<(), Errno> {
    let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, OsStr::from_bytes(name), flags, rustix::fs::Mode::empty())?;
    if rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) == rustix::fs::FileType::Symlink {
        return Ok(());
    }
    rustix::fs::chmod(
        format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(),
        rustix::fs::Mode::from_raw_mode(mode),
    )
}

/// Sets xattr `xname` of `name` in `dir` (not following a symlink).
pub(crate) fn set_xattr(dir: &OwnedFd, name: &[u8], xname: &[u8], value: &[u8]) -> Result<(), Errno> {
    rustix::fs::lsetxattr(
        magic(dir, name),
        OsStr::from_bytes(xname),
        value,
        rustix::fs::XattrFlags::empty(),
    )
}
