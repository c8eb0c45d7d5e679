//! Opening host files beneath a folder descriptor, for imports and bind mounts: the kernel
//! resolves the path (`openat2`, `RESOLVE_BENEATH`) so nothing leads out, and a file is first
//! opened as a bare reference (`O_PATH`, which acts on nothing) and only reopened for I/O once
//! known to be a regular file: a FIFO or a device swapped in is never opened for real.

use rustix::fs::{fstat, openat2, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// How a path may use symlinks on its way.
#[derive(Clone, Copy)]
pub(crate) enum Links {
    /// Followed while they stay beneath the folder.
    Beneath,
    /// Refused anywhere on the path (what a walk saw had none).
    Never,
}

fn resolve(links: Links) -> ResolveFlags {
    match links {
        Links::Beneath => ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        Links::Never => ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
    }
}

/// `openat2`, retried while the kernel asks (`EAGAIN`: a rename elsewhere raced a `..`).
fn openat2_retrying(dir: &OwnedFd, rel: &Path, flags: OFlags, mode: Mode, links: Links) -> Result<OwnedFd, Errno> {
    // openat2 refuses O_PATH with anything but O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC.
    let flags = if flags.contains(OFlags::PATH) {
        flags | OFlags::CLOEXEC
    } else {
        flags | OFlags::CLOEXEC | OFlags::NOCTTY
    };
    let mut tries = 0;
    loop {
        match openat2(dir, rel, flags, mode, resolve(links)) {
            Err(Errno::AGAIN) if tries < 64 => tries += 1,
            Err(Errno::NOSYS) => return Err(Errno::NOSYS),
            r => return r,
        }
    }
}

/// A reference (no I/O) to what `rel` names beneath `dir`.
pub(crate) fn path_at(dir: &OwnedFd, rel: &Path, links: Links) -> Result<OwnedFd, Errno> {
    openat2_retrying(dir, rel, OFlags::PATH, Mode::empty(), links)
}

/// A folder beneath `dir`, as a reference to open more beneath.
pub(crate) fn dir_at(dir: &OwnedFd, rel: &Path, links: Links) -> Result<OwnedFd, Errno> {
    openat2_retrying(dir, rel, OFlags::PATH | OFlags::DIRECTORY, Mode::empty(), links)
}

/// A folder reference reopened so that it can be listed.
pub(crate) fn reopen_dir(fd: &OwnedFd) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Whether `/proc` is the kernel's procfs (not missing, and not a folder someone made).
pub(crate) fn have_procfs() -> bool {
    static PROCFS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PROCFS.get_or_init(|| {
        const PROC_SUPER_MAGIC: i64 = 0x9fa0;
        // f_type's width differs between targets.
        #[allow(clippy::unnecessary_cast)]
        rustix::fs::statfs("/proc/self/fd").is_ok_and(|s| s.f_type as i64 == PROC_SUPER_MAGIC)
    })
}

/// Reopens a reference for I/O through `/proc/self/fd` (the inode is pinned by the reference,
/// so nothing can be swapped in between), and checks that it is the same file. Without procfs
/// this is `NOSYS`: the caller says what is missing.
fn reopen(fd: &OwnedFd, flags: OFlags) -> Result<File, Errno> {
    if !have_procfs() {
        return Err(Errno::NOSYS);
    }
    let magic = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let f = rustix::fs::open(magic.as_str(), flags | OFlags::CLOEXEC | OFlags::NOCTTY, Mode::empty())?;
    let (a, b) = (fstat(fd)?, fstat(&f)?);
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(Errno::XDEV);
    }
    Ok(File::from(f))
}

/// The regular file `rel` beneath `dir`, opened with `flags` (read or write), with its size;
/// `None` when it is something else (a folder, a FIFO, a device, a socket).
pub(crate) fn open_file(dir: &OwnedFd, rel: &Path, flags: OFlags, links: Links) -> Result<Option<(File, u64)>, Errno> {
    let at = path_at(dir, rel, links)?;
    let st = fstat(&at)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    let f = reopen(&at, flags)?;
    Ok(Some((f, st.st_size as u64)))
}

/// As [`open_file`] for writing, creating an empty file when there is none (a new file is
/// made with `O_EXCL`, so an existing one of any kind is never opened by the create).
pub(crate) fn create_or_open(dir: &OwnedFd, rel: &Path, links: Links) -> Result<Option<File>, Errno> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
    match openat2_retrying(dir, rel, flags, Mode::from_raw_mode(0o644), links) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(Errno::EXIST) => Ok(open_file(dir, rel, OFlags::WRONLY, links)?.map(|(f, _)| f)),
        Err(e) => Err(e),
    }
}
