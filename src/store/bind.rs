//! Bind mounts: keys under a mount target are the files under a host folder. Every key is
//! resolved by the kernel beneath the folder (`openat2` with `RESOLVE_BENEATH`), in the same
//! call that opens it: a symlink may lead anywhere inside the folder (an absolute one never
//! does), and nothing, not even a folder swapped for a link while we work, leads out. Only
//! regular files are values; listing shows the regular files themselves, not links to them.

use crate::error::{Error, Result};
use crate::format::value::ValueInfo;
use crate::host::beneath::{self, Links};
use crate::host::walk;
use rustix::fs::{fstat, mkdirat, statat, unlinkat, AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

fn key_str(sub: &[u8]) -> String {
    String::from_utf8_lossy(sub).into_owned()
}

fn escape(sub: &[u8]) -> Error {
    Error::InvalidKey(format!("'{}' would leave the bind mount", key_str(sub)))
}

fn host_path(root: &Path, sub: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    root.join(std::ffi::OsStr::from_bytes(sub))
}

/// What a failed open or call on the host means for the key. Other failures keep their errno
/// and name the host file (they are the user's to fix and never poison the store, whose own
/// file is never under a bind mount's key).
fn host_error(e: Errno, root: &Path, sub: &[u8]) -> Error {
    match e {
        Errno::NOENT => Error::KeyNotFound(key_str(sub)),
        // The kernel refused a path that climbs out (`..` or a link) of the folder.
        Errno::XDEV => escape(sub),
        Errno::NOSYS => Error::InvalidArgument(
            "bind mounts need openat2 (Linux 5.6 or later, allowed by any seccomp filter) and /proc mounted".into(),
        ),
        e => Error::file(&host_path(root, sub), e.into()),
    }
}

/// The bind source, opened once per operation (a folder renamed meanwhile is followed).
fn open_root(root: &Path) -> Result<OwnedFd> {
    rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::InvalidArgument(format!("bind source {}: {}", root.display(), std::io::Error::from(e))))
}

/// Keys name files by plain components: no empty, `.` or `..` part, so a key has one meaning.
fn check_key(sub: &[u8]) -> Result<&Path> {
    use std::os::unix::ffi::OsStrExt;
    if sub
        .split(|&b| b == b'/')
        .any(|c| c.is_empty() || c == b"." || c == b"..")
        || sub.contains(&0)
    {
        return Err(escape(sub));
    }
    Ok(Path::new(std::ffi::OsStr::from_bytes(sub)))
}

fn not_a_file(sub: &[u8]) -> Error {
    Error::InvalidKey(format!("'{}' is not a regular file on the host", key_str(sub)))
}

fn root_is_a_folder() -> Error {
    Error::InvalidKey("the bind mount's root is a folder, not a value".into())
}

/// The host file at `sub` opened with `flags`, if it is a regular file.
fn open_file(root: &Path, sub: &[u8], flags: OFlags) -> Result<Option<(File, u64)>> {
    if sub.is_empty() {
        return Err(root_is_a_folder());
    }
    let dir = open_root(root)?;
    match beneath::open_file(&dir, check_key(sub)?, flags, Links::Beneath) {
        Ok(f) => Ok(f),
        // A path through a file: no such key.
        Err(Errno::NOTDIR) => Ok(None),
        Err(e) => Err(host_error(e, root, sub)),
    }
}

pub fn stat(root: &Path, key: &[u8], sub: &[u8]) -> Result<Option<ValueInfo>> {
    if sub.is_empty() {
        return Ok(None);
    }
    let dir = open_root(root)?;
    let at = match beneath::path_at(&dir, check_key(sub)?, Links::Beneath) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
        Err(e) => return Err(host_error(e, root, sub)),
    };
    let st = fstat(&at).map_err(|e| host_error(e, root, sub))?;
    Ok(
        (FileType::from_raw_mode(st.st_mode) == FileType::RegularFile).then(|| ValueInfo {
            key: key.to_vec(),
            size: st.st_size as u64,
            inline: false,
            block_size: 0,
            attrs: None,
        }),
    )
}

pub fn get(root: &Path, sub: &[u8]) -> Result<Option<Vec<u8>>> {
    if sub.is_empty() {
        return Ok(None);
    }
    let (mut f, _) = match open_file(root, sub, OFlags::RDONLY) {
        Ok(Some(f)) => f,
        Ok(None) | Err(Error::KeyNotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut out).map_err(|e| io_error(e, root, sub))?;
    Ok(Some(out))
}

fn io_error(e: std::io::Error, root: &Path, sub: &[u8]) -> Error {
    Error::file(&host_path(root, sub), e)
}

pub fn read_at(root: &Path, sub: &[u8], off: u64, buf: &mut [u8]) -> Result<usize> {
    let (f, _) = open_file(root, sub, OFlags::RDONLY)?.ok_or_else(|| not_a_file(sub))?;
    let mut done = 0;
    while done < buf.len() {
        let n = f
            .read_at(&mut buf[done..], off + done as u64)
            .map_err(|e| io_error(e, root, sub))?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// Creates the folders above `sub` one at a time, each beneath the one before, so a link
/// swapped in anywhere along the way is refused by the kernel, never followed out.
fn make_parents(dir: &OwnedFd, root: &Path, sub: &[u8]) -> Result<()> {
    let mut end = 0;
    while let Some(slash) = sub[end..].iter().position(|&b| b == b'/') {
        end += slash;
        let (parent, name) = match sub[..end].iter().rposition(|&b| b == b'/') {
            Some(p) => (Some(&sub[..p]), &sub[p + 1..end]),
            None => (None, &sub[..end]),
        };
        let pfd;
        let at = match parent {
            Some(p) => {
                pfd = beneath::dir_at(dir, check_key(p)?, Links::Beneath).map_err(|e| host_error(e, root, sub))?;
                &pfd
            }
            None => dir,
        };
        match mkdirat(at, check_key(name)?, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(host_error(e, root, sub)),
        }
        end += 1;
    }
    Ok(())
}

fn open_for_write(root: &Path, sub: &[u8]) -> Result<File> {
    if sub.is_empty() {
        return Err(root_is_a_folder());
    }
    let dir = open_root(root)?;
    let rel = check_key(sub)?;
    make_parents(&dir, root, sub)?;
    beneath::create_or_open(&dir, rel, Links::Beneath)
        .map_err(|e| host_error(e, root, sub))?
        .ok_or_else(|| not_a_file(sub))
}

pub fn put(root: &Path, sub: &[u8], data: &[u8]) -> Result<()> {
    let f = open_for_write(root, sub)?;
    f.set_len(0).map_err(|e| io_error(e, root, sub))?;
    f.write_all_at(data, 0).map_err(|e| io_error(e, root, sub))
}

pub fn write_at(root: &Path, sub: &[u8], off: u64, data: &[u8]) -> Result<()> {
    open_for_write(root, sub)?
        .write_all_at(data, off)
        .map_err(|e| io_error(e, root, sub))
}

pub fn truncate(root: &Path, sub: &[u8], len: u64) -> Result<()> {
    let (f, _) = open_file(root, sub, OFlags::WRONLY)?.ok_or_else(|| not_a_file(sub))?;
    f.set_len(len).map_err(|e| io_error(e, root, sub))
}

/// Makes the file at least `len` bytes long, as `fallocate` does: its own call, so a longer
/// file stays as long.
pub fn grow(root: &Path, sub: &[u8], len: u64) -> Result<()> {
    let (f, _) = open_file(root, sub, OFlags::WRONLY)?.ok_or_else(|| not_a_file(sub))?;
    let len = i64::try_from(len).map_err(|_| Error::OutOfRange(format!("{len} bytes")))?;
    rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, len as u64)
        .map_err(|e| io_error(e.into(), root, sub))
}

/// Removes the file at `sub` if it is a regular file. The name is removed from its folder's
/// descriptor, opened beneath the root: a link swapped in is removed itself, never followed.
pub fn delete(root: &Path, sub: &[u8]) -> Result<bool> {
    if sub.is_empty() {
        return Ok(false);
    }
    let dir = open_root(root)?;
    check_key(sub)?;
    let (parent, name) = match sub.iter().rposition(|&b| b == b'/') {
        Some(p) => (Some(&sub[..p]), &sub[p + 1..]),
        None => (None, sub),
    };
    let pfd;
    let at = match parent {
        Some(p) => {
            match beneath::dir_at(&dir, check_key(p)?, Links::Beneath) {
                Ok(fd) => pfd = fd,
                Err(Errno::NOENT | Errno::NOTDIR) => return Ok(false),
                Err(e) => return Err(host_error(e, root, sub)),
            }
            &pfd
        }
        None => &dir,
    };
    let name = check_key(name)?;
    // Only what the mount shows as a value (a regular file) can be deleted through it.
    match statat(at, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
        Ok(_) | Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(host_error(e, root, sub)),
    }
    match unlinkat(at, name, AtFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(host_error(e, root, sub)),
    }
}

/// Files under the folder as keys `target/relative/path`, sorted, filtered by `prefix`.
pub fn list(root: &Path, target: &str, prefix: &[u8]) -> Result<Vec<ValueInfo>> {
    let dir = rustix::fs::openat(
        CWD,
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::NOTDIR => Error::InvalidArgument(format!("bind source {} is not a folder", root.display())),
        e => Error::InvalidArgument(format!("bind source {}: {}", root.display(), std::io::Error::from(e))),
    })?;
    let files = walk::regular_files_at(dir, root)?;
    Ok(files
        .files
        .into_iter()
        .map(|f| ValueInfo {
            key: [target.as_bytes(), b"/", &f.key].concat(),
            size: f.len,
            inline: false,
            block_size: 0,
            attrs: None,
        })
        .filter(|v| v.key.starts_with(prefix))
        .collect())
}
