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

/// Every xattr of `name` in `dir`, sorted by name; none where the file system keeps none.
pub(crate) fn xattrs_of(dir: &OwnedFd, name: &[u8]) -> Result<Xattrs, Errno> {
    let path = magic(dir, name);
    let list = loop {
        let n = match rustix::fs::llistxattr_query(&path) {
            Ok(n) => n,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; n];
        match rustix::fs::llistxattr(&path, &mut buf[..]) {
            // An empty buffer makes the call a size query again: the list grew meanwhile.
            Ok(got) if got > n => continue,
            Ok(got) => {
                buf.truncate(got);
                break buf;
            }
            // Grew between the two calls.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    };
    let mut out = Vec::new();
    for xname in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let xname_os = OsStr::from_bytes(xname);
        let value = loop {
            let n = match rustix::fs::lgetxattr_query(&path, xname_os) {
                Ok(n) => n,
                // Removed since it was listed.
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e),
            };
            let mut buf = vec![0u8; n];
            match rustix::fs::lgetxattr(&path, xname_os, &mut buf[..]) {
                Ok(got) if got > n => continue,
                Ok(got) => {
                    buf.truncate(got);
                    break Some(buf);
                }
                Err(Errno::RANGE) => continue,
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e),
            }
        };
        if let Some(v) = value {
            out.push((xname.to_vec(), v));
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
