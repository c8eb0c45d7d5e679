//! Exporting a layer (or a container's current state) into a host folder with every kind and
//! attribute: files, folders, symlinks, devices, FIFOs, hard links, then owners, modes, xattrs
//! and mtimes. Everything is made relative to descriptors of folders this export created, and
//! attributes are set children first, so a folder's mtime is the one the layer keeps.
//! What the caller may not do (owners, devices and `trusted.*` xattrs without root) is listed
//! as warnings rather than stopping the export.

use crate::host::beneath::{self, Links};
use crate::host::meta;
use crate::{escape_path, Attrs, FileKind, Layer, ValueInfo};
use crate::{Error, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What an export did.
#[derive(Debug, Default)]
pub struct Exported {
    /// Entries written.
    pub entries: u64,
    /// What could not be set as the layer has it, one line each (path and why).
    pub warnings: Vec<String>,
}

/// Bytes copied at a time.
const COPY_CHUNK: usize = 8 << 20;
/// Runs of zeros this long (and aligned so) are left as holes in an exported file.
const HOLE_PIECE: usize = 64 << 10;

/// Writes `layer` into the folder `dir`, which must be missing or empty.
///
/// ```
/// let tmp = tempfile::tempdir().unwrap();
/// let store = lstore::Store::create(tmp.path().join("s"), Default::default()).unwrap();
/// let mut b = store.new_layer(None).unwrap();
/// b.mkdir("etc", 0o755).unwrap();
/// b.put("etc/hostname", b"box\n").unwrap();
/// let layer = b.finish(None).unwrap();
/// lstore::export_dir(&layer, &tmp.path().join("out")).unwrap();
/// assert_eq!(std::fs::read(tmp.path().join("out/etc/hostname")).unwrap(), b"box\n");
/// ```
pub fn export_dir(layer: &Layer, dir: &Path) -> Result<Exported> {
    let root = open_empty_root(dir)?;
    let mut out = Exported::default();
    let items: Vec<ValueInfo> = layer.list("")?.collect::<Result<_>>()?;
    let mut folders = Folders::new(&root, dir);
    let mut first_name: HashMap<u64, &[u8]> = HashMap::new();
    // Devices the caller may not make: left out, with their other names and attributes.
    let mut left_out: HashSet<&[u8]> = HashSet::new();
    for item in &items {
        let shown = dir.join(OsStr::from_bytes(&item.key));
        let attrs = attrs_of(item);
        if attrs.nlink > 1 {
            if let Some(first) = first_name.get(&attrs.ino).copied() {
                if left_out.contains(first) {
                    left_out.insert(&item.key);
                } else {
                    link(&mut folders, first, &item.key).map_err(|e| Error::file(&shown, e.into()))?;
                    out.entries += 1;
                }
                continue;
            }
            first_name.insert(attrs.ino, &item.key);
        }
        let (parent, name) = split(&item.key);
        let pfd = folders.get(parent)?;
        let made = match attrs.kind {
            FileKind::Regular => {
                write_file(layer, &pfd, name, &item.key, &shown)?;
                Ok(())
            }
            _ => make(&pfd, name, &attrs),
        };
        match made {
            Ok(()) => out.entries += 1,
            Err(Errno::PERM) if matches!(attrs.kind, FileKind::CharDevice | FileKind::BlockDevice) => {
                out.warnings.push(format!(
                    "{}: a device cannot be made without root (CAP_MKNOD); left out",
                    escape_path(&item.key)
                ));
                left_out.insert(&item.key);
            }
            Err(e) => return Err(Error::file(&shown, e.into())),
        }
    }
    // Children before their folder, so that making them leaves the folder's mtime alone.
    for item in items.iter().rev().filter(|i| !left_out.contains(i.key.as_slice())) {
        let (parent, name) = split(&item.key);
        let pfd = folders.get(parent)?;
        set_attrs(&pfd, name, &item.key, &attrs_of(item), &mut out.warnings)
            .map_err(|e| Error::file(&dir.join(OsStr::from_bytes(&item.key)), e.into()))?;
    }
    if let Some(a) = layer.root_attrs()? {
        set_root(&root, &a, &mut out.warnings).map_err(|e| Error::file(dir, e.into()))?;
    }
    Ok(out)
}

/// Gives the export folder the layer root's owner, mode, xattrs and mtime, through the
/// descriptor the export holds.
fn set_root(root: &OwnedFd, a: &Attrs, warnings: &mut Vec<String>) -> std::result::Result<(), Errno> {
    let owner = (
        Some(rustix::fs::Uid::from_raw(a.uid)),
        Some(rustix::fs::Gid::from_raw(a.gid)),
    );
    match rustix::fs::fchown(root, owner.0, owner.1) {
        Ok(()) => {}
        Err(Errno::PERM) => warnings.push(format!("/: owner {}:{} needs root", a.uid, a.gid)),
        Err(e) => return Err(e),
    }
    rustix::fs::fchmod(root, Mode::from_raw_mode(a.mode & 0o7777))?;
    for (xname, value) in &a.xattrs {
        match rustix::fs::fsetxattr(root, OsStr::from_bytes(xname), value, rustix::fs::XattrFlags::empty()) {
            Ok(()) => {}
            Err(Errno::PERM | Errno::NOTSUP | Errno::ACCESS | Errno::INVAL) => {
                warnings.push(format!("/: xattr {} cannot be set here; left out", escape_path(xname)))
            }
            Err(e) => return Err(e),
        }
    }
    let t = Timespec {
        tv_sec: a.mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: a.mtime_ns.rem_euclid(1_000_000_000),
    };
    rustix::fs::futimens(
        root,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
    )
}

/// An entry's attributes; a plain value is a regular file.
fn attrs_of(item: &ValueInfo) -> Attrs {
    item.attrs
        .clone()
        .unwrap_or_else(|| Attrs::new(FileKind::Regular, 0o644))
}

/// Makes `new` another name of the file exported as `first`.
fn link(folders: &mut Folders, first: &[u8], new: &[u8]) -> std::result::Result<(), Errno> {
    let (fp, fname) = split(first);
    let (np, nname) = split(new);
    let ffd = folders.get(fp).map_err(|_| Errno::NOENT)?;
    let nfd = folders.get(np).map_err(|_| Errno::NOENT)?;
    rustix::fs::linkat(
        &*ffd,
        OsStr::from_bytes(fname),
        &*nfd,
        OsStr::from_bytes(nname),
        AtFlags::empty(),
    )
}

/// Creates the regular file `name` in `pfd` (never through a symlink, never over anything)
/// and writes the value's bytes into it.
fn write_file(layer: &Layer, pfd: &OwnedFd, name: &[u8], key: &[u8], shown: &Path) -> Result<()> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(pfd, OsStr::from_bytes(name), flags, Mode::from_raw_mode(0o600))
        .map_err(|e| Error::file(shown, e.into()))?;
    copy_value(layer, key, std::fs::File::from(fd), shown)
}

/// The folder a path is in (`""` for the root) and its last component.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Creates `dir` if missing (its parents too) and opens it; it must be empty.
fn open_empty_root(dir: &Path) -> Result<OwnedFd> {
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    let fd = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::file(dir, e.into()))?;
    let mut listing = rustix::fs::Dir::read_from(&fd).map_err(|e| Error::file(dir, e.into()))?;
    let busy = listing.any(|e| e.is_ok_and(|e| !matches!(e.file_name().to_bytes(), b"." | b"..")));
    if busy {
        return Err(Error::InvalidArgument(format!(
            "{}: export writes into a new or empty folder",
            dir.display()
        )));
    }
    Ok(fd)
}

/// Descriptors of the folders being filled, opened beneath the export's root, the last one
/// kept (a folder's entries come together).
struct Folders<'a> {
    root: &'a OwnedFd,
    shown: &'a Path,
    last: Option<(Vec<u8>, std::rc::Rc<OwnedFd>)>,
}

impl<'a> Folders<'a> {
    /// Why the folder `path` of the layer cannot be opened in the export.
    fn refused(&self, path: &[u8], e: Errno) -> Error {
        let shown = escape_path(path);
        match e {
            Errno::XDEV => Error::InvalidArgument(format!(
                "{shown}: a key of the layer climbs out of the export folder ('..'); nothing is written there"
            )),
            Errno::LOOP | Errno::NOTDIR => Error::InvalidArgument(format!(
                "{shown}: not a folder in the layer (a file or symlink), yet keys lie below it"
            )),
            e => Error::file(&self.shown.join(OsStr::from_bytes(path)), e.into()),
        }
    }

    fn new(root: &'a OwnedFd, shown: &'a Path) -> Self {
        Folders {
            root,
            shown,
            last: None,
        }
    }

    /// The folder `path` (`""`: the root), made (with its parents, mode 0755) when the layer
    /// holds paths below a folder it has no entry for.
    fn get(&mut self, path: &[u8]) -> Result<std::rc::Rc<OwnedFd>> {
        if let Some((p, fd)) = &self.last {
            if p == path {
                return Ok(fd.clone());
            }
        }
        let fd = if path.is_empty() {
            rustix::io::dup(self.root).map_err(|e| Error::file(self.shown, e.into()))?
        } else {
            let rel = Path::new(OsStr::from_bytes(path));
            let open =
                |root: &OwnedFd| beneath::dir_at(root, rel, Links::Never).and_then(|fd| beneath::reopen_dir(&fd));
            match open(self.root) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    let (up, name) = split(path);
                    let parent = self.get(up)?;
                    match rustix::fs::mkdirat(&*parent, OsStr::from_bytes(name), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(Error::file(&self.shown.join(rel), e.into())),
                    }
                    open(self.root).map_err(|e| self.refused(path, e))?
                }
                Err(e) => return Err(self.refused(path, e)),
            }
        };
        let fd = std::rc::Rc::new(fd);
        self.last = Some((path.to_vec(), fd.clone()));
        Ok(fd)
    }
}

/// Makes one entry other than a regular file as `name` in the folder `pfd` (its attributes
/// come later).
fn make(pfd: &OwnedFd, name: &[u8], a: &Attrs) -> std::result::Result<(), Errno> {
    let name = OsStr::from_bytes(name);
    let private = Mode::from_raw_mode(0o600);
    match a.kind {
        FileKind::Directory => rustix::fs::mkdirat(pfd, name, Mode::from_raw_mode(0o700)),
        FileKind::Symlink => {
            rustix::fs::symlinkat(OsStr::from_bytes(a.link_target.as_deref().unwrap_or(b"")), pfd, name)
        }
        FileKind::Fifo => rustix::fs::mknodat(pfd, name, FileType::Fifo, private, 0),
        FileKind::Socket => rustix::fs::mknodat(pfd, name, FileType::Socket, private, 0),
        FileKind::CharDevice => rustix::fs::mknodat(pfd, name, FileType::CharacterDevice, private, a.rdev),
        FileKind::BlockDevice => rustix::fs::mknodat(pfd, name, FileType::BlockDevice, private, a.rdev),
        FileKind::Regular => Err(Errno::INVAL),
    }
}

/// Writes a value's bytes into `file` (`shown` names it in errors); holes stay holes. A read
/// of the store that fails is the store's error, not the host file's.
fn copy_value(layer: &Layer, key: &[u8], mut file: std::fs::File, shown: &Path) -> Result<()> {
    let io = |e: std::io::Error| Error::file(shown, e);
    let size = layer.stat(key)?.map_or(0, |i| i.size);
    let mut buf = vec![0u8; (size as usize).clamp(1, COPY_CHUNK)];
    let mut off = 0u64;
    while off < size {
        let n = layer.read_at(key, off, &mut buf)?;
        if n == 0 {
            break;
        }
        // Zeros stay holes, piece by piece, so a sparse value stays sparse.
        for piece in buf[..n].chunks(HOLE_PIECE) {
            if piece.iter().all(|&b| b == 0) {
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Current(piece.len() as i64)).map_err(io)?;
            } else {
                file.write_all(piece).map_err(io)?;
            }
        }
        off += n as u64;
    }
    file.set_len(size).map_err(io)
}

/// Sets owner, mode, xattrs and mtime of `name` in `pfd`; what the caller may not set becomes
/// a warning.
fn set_attrs(
    pfd: &OwnedFd,
    name: &[u8],
    key: &[u8],
    a: &Attrs,
    warnings: &mut Vec<String>,
) -> std::result::Result<(), Errno> {
    let os = OsStr::from_bytes(name);
    let shown = escape_path(key);
    let (uid, gid) = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
    if (a.uid, a.gid) != (uid, gid) {
        let owner = (
            Some(rustix::fs::Uid::from_raw(a.uid)),
            Some(rustix::fs::Gid::from_raw(a.gid)),
        );
        match rustix::fs::chownat(pfd, os, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(()) => {}
            Err(Errno::PERM) => warnings.push(format!(
                "{shown}: owner {}:{} needs root; left as {uid}:{gid}",
                a.uid, a.gid
            )),
            Err(e) => return Err(e),
        }
    }
    if a.kind != FileKind::Symlink {
        // After chown, which clears setuid and setgid.
        meta::chmod_nofollow(pfd, name, a.mode & 0o7777)?;
    }
    for (xname, value) in &a.xattrs {
        match meta::set_xattr(pfd, name, xname, value) {
            Ok(()) => {}
            // EINVAL: a value this file system will not take (an ACL or capability it reads
            // differently); the rest of the export goes on.
            Err(Errno::PERM | Errno::NOTSUP | Errno::ACCESS | Errno::INVAL) => warnings.push(format!(
                "{shown}: xattr {} cannot be set here; left out",
                escape_path(xname)
            )),
            Err(e) => return Err(e),
        }
    }
    let t = Timespec {
        tv_sec: a.mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: a.mtime_ns.rem_euclid(1_000_000_000),
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(pfd, os, &times, AtFlags::SYMLINK_NOFOLLOW)
}
