//! Importing a folder of the host as a layer: every entry of every kind (files, folders,
//! symlinks, devices, FIFOs, hard links) with its mode, owner, mtime and xattrs. By default the
//! layer is **exactly** the folder, stored as a diff against its parent: an entry the same as
//! the parent's is left shared, a changed one rewritten, and a parent path missing from the
//! folder deleted.

use crate::host::beneath::{self, Links};
use crate::host::meta::Meta;
use crate::host::walk;
use crate::{Attrs, FileKind, Layer, LayerBuilder, PutOptions, Store, ValueInfo};
use crate::{Error, Result};
use rustix::fs::OFlags;
use rustix::io::Errno;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How to import a folder.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportOptions<'a> {
    /// The layer the new one is built on.
    pub parent: Option<&'a Layer>,
    /// A name for the new layer.
    pub name: Option<&'a str>,
    /// Add the folder's entries to the parent's (as a `COPY` into an image) instead of making
    /// the layer exactly the folder: nothing of the parent is deleted.
    pub add: bool,
}

/// What an import did.
#[derive(Debug)]
pub struct Imported {
    pub layer: Layer,
    /// Paths new in the layer, changed from the parent, deleted from it, and left shared.
    pub added: u64,
    pub changed: u64,
    pub deleted: u64,
    pub unchanged: u64,
    /// Entries that cannot be stored (sockets), with why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Imports the folder `dir` as a new layer.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::create_dir(dir.path().join("etc")).unwrap();
/// std::fs::write(dir.path().join("etc/hostname"), b"box\n").unwrap();
/// std::os::unix::fs::symlink("hostname", dir.path().join("etc/name")).unwrap();
/// let store = lstore::Store::create(dir.path().join("s"), Default::default()).unwrap();
/// let opts = lstore::ImportOptions { name: Some("etc"), ..Default::default() };
/// let imported = lstore::import_dir(&store, &dir.path().join("etc"), &opts).unwrap();
/// let layer = imported.layer;
/// assert_eq!(layer.get("hostname").unwrap().unwrap(), b"box\n");
/// let link = layer.stat("name").unwrap().unwrap().attrs.unwrap();
/// assert_eq!(link.link_target.as_deref(), Some(&b"hostname"[..]));
/// ```
pub fn import_dir(store: &Store, dir: &Path, opts: &ImportOptions) -> Result<Imported> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::InvalidArgument(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Error::InvalidArgument(format!("{} is not a directory", dir.display())));
    }
    let mut walked = walk::all_entries(dir)?;
    // Folder by folder, a folder before what it holds: the order the tree keeps.
    walked.files.sort_by_cached_key(|f| folder_order(&f.key));
    let mut imp = Import {
        b: store.new_layer(opts.parent)?,
        added: 0,
        changed: 0,
        deleted: 0,
        unchanged: 0,
        first_name: HashMap::new(),
        group_size: HashMap::new(),
        claimed: HashMap::new(),
        add: opts.add,
    };
    for f in &walked.files {
        let st = &f.meta.as_ref().expect("a full walk").stat;
        if st.st_nlink > 1 && (st.st_mode & libc::S_IFMT) != libc::S_IFDIR {
            *imp.group_size.entry((st.st_dev, st.st_ino)).or_insert(0) += 1;
        }
    }
    if let (Some(parent), false) = (opts.parent, opts.add) {
        imp.delete_missing(parent, &walked.files)?;
    }
    if !opts.add {
        // The folder's own mode, owner, mtime and xattrs are the layer root's.
        let meta = Meta::of_dir(&walked.root).map_err(|e| Error::file(dir, e.into()))?;
        imp.b.set_root_attrs(attrs_from(&meta, 1)?)?;
    }
    for f in &walked.files {
        imp.entry(&walked.root, f).map_err(|e| at(&f.path, e))?;
    }
    let Import {
        b,
        added,
        changed,
        deleted,
        unchanged,
        ..
    } = imp;
    Ok(Imported {
        layer: b.finish(opts.name)?,
        added,
        changed,
        deleted,
        unchanged,
        skipped: walked.skipped,
    })
}

/// A path's place in the order a layer keeps (format-spec §7): the entries directly in a
/// folder come together, by name, and before anything deeper (`a/b` < `a/bc` < `a/b/c`).
fn folder_order(path: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let cut = path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    (path[..cut].to_vec(), path[cut..].to_vec())
}

/// An import under way.
struct Import {
    b: LayerBuilder,
    added: u64,
    changed: u64,
    deleted: u64,
    unchanged: u64,
    /// Hard links: the first name imported of each host file (device, inode) with several.
    first_name: HashMap<(u64, u64), Vec<u8>>,
    /// Hard links: how many names each such file has inside the folder.
    group_size: HashMap<(u64, u64), u32>,
    /// The host file (device, inode) each parent inode kept unchanged stands for: a parent
    /// file is kept for one host file only, so two host files never end up one.
    claimed: HashMap<u64, (u64, u64)>,
    /// `--add`: nothing of the parent is deleted or replaced by another kind.
    add: bool,
}

/// The attributes a layer keeps of a host entry (no inode number: the layer gives its own).
fn attrs_from(meta: &Meta, nlink: u32) -> Result<Attrs> {
    let st = &meta.stat;
    let kind = FileKind::from_mode(st.st_mode)
        .ok_or_else(|| Error::InvalidArgument(format!("unknown file type {:o}", st.st_mode & libc::S_IFMT)))?;
    Ok(Attrs {
        kind,
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime_ns: st
            .st_mtime
            .saturating_mul(1_000_000_000)
            .saturating_add(st.st_mtime_nsec as i64),
        ino: 0,
        nlink,
        rdev: if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) {
            st.st_rdev
        } else {
            0
        },
        link_target: meta.link_target.clone(),
        xattrs: meta.xattrs.clone(),
    })
}

/// True when the parent's entry already is what the folder holds (a regular file by the same
/// quick check as rsync's: size and mtime, with every attribute).
fn same(old: &ValueInfo, want: &Attrs, size: u64) -> bool {
    let Some(a) = &old.attrs else { return false };
    a.kind == want.kind
        && a.mode == (want.kind.type_bits() | (want.mode & 0o7777))
        && (a.uid, a.gid, a.mtime_ns, a.rdev) == (want.uid, want.gid, want.mtime_ns, want.rdev)
        && a.nlink.max(1) == want.nlink.max(1)
        && a.link_target == want.link_target
        && a.xattrs == want.xattrs
        && (want.kind != FileKind::Regular || old.size == size)
}

impl Import {
    /// Deletes every path of the parent that the folder does not have (a folder with all it
    /// holds, in one change).
    fn delete_missing(&mut self, parent: &Layer, files: &[walk::Found]) -> Result<()> {
        let present: HashSet<&[u8]> = files.iter().map(|f| f.key.as_slice()).collect();
        let mut gone: HashSet<Vec<u8>> = HashSet::new();
        for item in parent.list("")? {
            let path = item?.key;
            if present.contains(path.as_slice()) {
                continue;
            }
            let mut up = path.as_slice();
            let mut under_gone = false;
            while let Some(i) = up.iter().rposition(|&b| b == b'/') {
                up = &up[..i];
                under_gone |= gone.contains(up);
            }
            if !under_gone {
                self.b.remove(&path, true)?;
                self.deleted += 1;
                gone.insert(path);
            }
        }
        Ok(())
    }

    /// Makes `f`'s path in the layer what the folder holds.
    fn entry(&mut self, root: &OwnedFd, f: &walk::Found) -> Result<()> {
        let meta = f.meta.as_ref().expect("a full walk");
        let id = (meta.stat.st_dev, meta.stat.st_ino);
        let group = self.group_size.get(&id).copied();
        let want = attrs_from(meta, group.unwrap_or(1)).map_err(|e| at(&f.path, e))?;
        let old = self.b.stat(&f.key)?;
        if let Some(first) = group.and_then(|_| self.first_name.get(&id)).cloned() {
            // A further name of a hard-linked file: the same inode as the first name, or a link.
            let first_ino = self.b.stat(&first)?.and_then(|i| i.attrs).map(|a| a.ino);
            if old.as_ref().and_then(|o| o.attrs.as_ref()).map(|a| a.ino) == first_ino && first_ino.is_some() {
                self.unchanged += 1;
                return Ok(());
            }
            self.replace_with(&f.key, old.is_some(), |b| b.link(&first, &f.key))?;
            return Ok(());
        }
        if group.is_some() {
            self.first_name.insert(id, f.key.clone());
        }
        if let Some(o) = &old {
            if same(o, &want, f.len) && self.claim(o, id) {
                self.unchanged += 1;
                return Ok(());
            }
        }
        let old_kind = old
            .as_ref()
            .map(|o| o.attrs.as_ref().map_or(FileKind::Regular, |a| a.kind));
        if let Some(k) = old_kind.filter(|&k| self.add && k != want.kind) {
            return Err(at(
                &f.path,
                Error::InvalidArgument(format!(
                    "a {} in the parent and a {} in the folder: import without --add to replace it",
                    k.name(),
                    want.kind.name()
                )),
            ));
        }
        let shared = old.as_ref().and_then(|o| o.attrs.as_ref()).is_some_and(|a| a.nlink > 1);
        match want.kind {
            // A folder keeps what it holds; only its attributes change.
            FileKind::Directory if old_kind == Some(FileKind::Directory) => {
                self.b.set_attrs(&f.key, |a| *a = want)?;
                self.changed += 1;
            }
            FileKind::Regular => {
                if shared || old_kind.is_some_and(|k| k != FileKind::Regular) {
                    self.b.remove(&f.key, true)?;
                }
                self.copy_settled(root, f, want)?;
                self.count(old.is_some());
            }
            _ => {
                self.replace_with(&f.key, old.is_some(), |b| b.create(&f.key, want).map(|_| ()))
                    .map_err(|e| at(&f.path, e))?;
            }
        }
        Ok(())
    }

    /// Removes what is at a path (when `existed`) and makes it anew with `make`.
    fn replace_with(
        &mut self,
        path: &[u8],
        existed: bool,
        make: impl FnOnce(&mut LayerBuilder) -> Result<()>,
    ) -> Result<()> {
        if existed {
            self.b.remove(path, true)?;
        }
        make(&mut self.b)?;
        self.count(existed);
        Ok(())
    }

    /// Copies a regular file, again if it changed while read (its size, mtime or ctime moved),
    /// as `tar` warns of: a layer never holds a mix of two versions of a file that was written
    /// during the import. A file that keeps changing is an error naming it.
    fn copy_settled(&mut self, root: &OwnedFd, f: &walk::Found, want: Attrs) -> Result<()> {
        const TRIES: usize = 3;
        let stamp = |md: &Metadata| (md.len(), md.mtime(), md.mtime_nsec(), md.ctime(), md.ctime_nsec());
        for _ in 0..TRIES {
            let (file, md) = open_found(root, f)?;
            let check = file.try_clone().map_err(|e| Error::file(&f.path, e))?;
            // The attributes as of this open, the bytes as read from it.
            let attrs = Attrs {
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                mtime_ns: md.mtime().saturating_mul(1_000_000_000).saturating_add(md.mtime_nsec()),
                ..want.clone()
            };
            import_file(&mut self.b, &f.key, &f.path, file, &md, Some(attrs), None)?;
            let after = check.metadata().map_err(|e| Error::file(&f.path, e))?;
            if stamp(&after) == stamp(&md) {
                return Ok(());
            }
        }
        Err(Error::InvalidArgument(format!(
            "{}: the file changed while it was read, {TRIES} times; import again when it is still",
            f.path.display()
        )))
    }

    /// Takes the parent's file behind `old` for the host file `id`; false when another host
    /// file took it already.
    fn claim(&mut self, old: &ValueInfo, id: (u64, u64)) -> bool {
        let Some(ino) = old.attrs.as_ref().map(|a| a.ino).filter(|&i| i != 0) else {
            return true;
        };
        *self.claimed.entry(ino).or_insert(id) == id
    }

    fn count(&mut self, existed: bool) {
        if existed {
            self.changed += 1;
        } else {
            self.added += 1;
        }
    }
}

/// An error with the host path it happened at (unless it names one already).
fn at(path: &Path, e: Error) -> Error {
    match e {
        Error::File { .. } | Error::At { .. } => e,
        e => Error::At {
            place: path.display().to_string(),
            source: Box::new(e),
        },
    }
}

/// Bytes read from a file at a time: the unit of memory an import holds.
const READ_CHUNK: usize = 8 << 20;

/// Opens a file a walk found, beneath the walk's root and through no symlink: a folder
/// swapped for a link since the walk cannot lead the import outside the root.
pub(crate) fn open_found(root: &OwnedFd, found: &walk::Found) -> Result<(File, Metadata)> {
    open_beneath(
        root,
        Path::new(OsStr::from_bytes(&found.key)),
        Links::Never,
        &found.path,
    )
}

/// The regular file `rel` beneath `root` (`shown` names it in errors), opened to read.
pub(crate) fn open_beneath(root: &OwnedFd, rel: &Path, links: Links, shown: &Path) -> Result<(File, Metadata)> {
    let not_regular = || {
        Error::InvalidArgument(format!(
            "{} is not a regular file (or changed while read)",
            shown.display()
        ))
    };
    let (file, _) = match beneath::open_file(root, rel, OFlags::RDONLY, links) {
        Ok(Some(f)) => f,
        Ok(None) | Err(Errno::LOOP | Errno::XDEV) => return Err(not_regular()),
        Err(Errno::NOSYS) => {
            return Err(Error::InvalidArgument(format!(
                "{}: reading files safely needs openat2 (Linux 5.6 or later) and /proc mounted",
                shown.display()
            )))
        }
        Err(e) => return Err(Error::file(shown, e.into())),
    };
    let md = file.metadata().map_err(|e| Error::file(shown, e))?;
    Ok((file, md))
}

/// What a COPY step's cache key says about a file before its bytes: its size and mode.
pub(crate) fn digest_head(h: &mut blake3::Hasher, md: &Metadata) {
    h.update(&md.len().to_le_bytes());
    h.update(&md.permissions().mode().to_le_bytes());
}

/// Stores one file as a value. The bytes are read into an owned buffer and hashed,
/// checksummed and copied from it, so a file that changes under the import gives a value that
/// is some mix of its contents, never a chunk whose hash does not match its bytes; a file that
/// shrinks ends the value where it ends, and one that grows is read up to its size at open.
/// `attrs` are kept with it (by default: the file's mode and mtime, owned by root, as Docker's
/// `COPY` keeps them). `digest` gets [`digest_head`] and then the bytes stored, as read.
pub(crate) fn import_file(
    b: &mut LayerBuilder,
    key: &[u8],
    path: &Path,
    mut file: File,
    md: &Metadata,
    attrs: Option<Attrs>,
    mut digest: Option<&mut blake3::Hasher>,
) -> Result<()> {
    if let Some(h) = digest.as_deref_mut() {
        digest_head(h, md);
    }
    let opts = PutOptions {
        attrs: Some(attrs.unwrap_or_else(|| attrs_of(md))),
        ..Default::default()
    };
    let len = md.len();
    let mut buf = vec![0u8; (len as usize).clamp(1, READ_CHUNK)];
    let mut off = 0u64;
    loop {
        let want = buf.len().min(usize::try_from(len - off).unwrap_or(usize::MAX));
        let n = read_full(&mut file, &mut buf[..want]).map_err(|e| Error::file(path, e))?;
        if let Some(h) = digest.as_deref_mut() {
            h.update(&buf[..n]);
        }
        if off == 0 {
            b.put_with(key, &buf[..n], &opts)?;
        } else if n > 0 {
            b.write_at(key, off, &buf[..n])?;
        }
        off += n as u64;
        if n < want || off >= len {
            return Ok(());
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A copied file's attributes: its mode and mtime, owned by root.
pub(crate) fn attrs_of(md: &std::fs::Metadata) -> Attrs {
    Attrs {
        mtime_ns: md.mtime().saturating_mul(1_000_000_000).saturating_add(md.mtime_nsec()),
        ..Attrs::new(FileKind::Regular, md.permissions().mode())
    }
}
