//! The FUSE calls, each answered from the mounted layer or container. Permissions are the
//! kernel's (`default_permissions`); this side keeps the tree right and the errnos POSIX's.

use super::nodes::Nodes;
use super::view::View;
use crate::{Attrs, Error, FileKind, Result, ValueInfo};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The mounted file system.
pub(crate) struct LstoreFs {
    view: View,
    /// The path of the mount's root in the view: empty, or a volume's target.
    root: Vec<u8>,
    /// Mount targets of the container, longest first, with their tree number (1, 2, ...).
    targets: Vec<(Vec<u8>, usize)>,
    state: Mutex<State>,
    /// Held for writing by calls that change names (create, unlink, rename, link), for reading
    /// by calls that use a path found from an inode number: a write never lands on a name a
    /// rename just moved.
    names: RwLock<()>,
    /// Set by every change: the mount commits it within a few seconds.
    pub(crate) dirty: Arc<AtomicBool>,
    ttl: Duration,
    /// `FOPEN_KEEP_CACHE` where only this mount changes what it serves.
    keep_cache: FopenFlags,
    /// The kernel's writeback cache is on: it owns a written file's mtime (sent by setattr).
    writeback: bool,
    /// Asked by fsync: commit durably now.
    pub(crate) commit: Box<dyn Fn() -> Result<()> + Send + Sync>,
    /// The folder of the store file, opened before the mount existed (so asking its file
    /// system never goes through this mount, as a path could), for `statfs`.
    store_dir: Arc<std::os::fd::OwnedFd>,
}

#[derive(Default)]
struct State {
    nodes: Nodes,
    /// Open handles per inode number.
    open: HashMap<u64, usize>,
    /// Files unlinked while open: their bytes, kept until the last handle closes.
    orphans: HashMap<u64, File>,
    /// Written since the last flush: the mtime the file gets.
    touched: HashMap<u64, i64>,
    /// Each open folder's listing, taken at its first read: entries neither repeat nor go
    /// missing while the folder changes between reads.
    listings: HashMap<u64, Vec<(u64, FileType, Vec<u8>)>>,
    next_fh: u64,
}

fn errno(e: &Error) -> Errno {
    if std::env::var_os("LSTORE_FUSE_DEBUG").is_some() {
        eprintln!("lstore fuse: {e}");
    }
    Errno::from_i32(e.errno())
}

/// The longest name Linux file systems take (`NAME_MAX`).
const NAME_MAX: usize = 255;

fn join(dir: &[u8], name: &OsStr) -> Vec<u8> {
    if dir.is_empty() {
        name.as_bytes().to_vec()
    } else {
        [dir, b"/", name.as_bytes()].concat()
    }
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Regular => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
    }
}

fn time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn ns_of(t: TimeOrNow) -> i64 {
    match t {
        TimeOrNow::Now => now_ns(),
        TimeOrNow::SpecificTime(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i64,
            Err(e) => -(e.duration().as_nanos() as i64),
        },
    }
}

impl LstoreFs {
    pub(crate) fn new(
        view: View,
        root: Vec<u8>,
        targets: Vec<Vec<u8>>,
        ttl: Duration,
        keep_cache: bool,
        commit: Box<dyn Fn() -> Result<()> + Send + Sync>,
        store_dir: Arc<std::os::fd::OwnedFd>,
    ) -> LstoreFs {
        let mut targets: Vec<(Vec<u8>, usize)> = targets.into_iter().enumerate().map(|(i, t)| (t, i + 1)).collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.0.len()));
        LstoreFs {
            view,
            root: root.clone(),
            targets,
            state: Mutex::new(State {
                nodes: Nodes::new(root),
                next_fh: 1,
                ..Default::default()
            }),
            names: RwLock::new(()),
            dirty: Arc::new(AtomicBool::new(false)),
            ttl,
            writeback: false,
            keep_cache: if keep_cache {
                FopenFlags::FOPEN_KEEP_CACHE
            } else {
                FopenFlags::empty()
            },
            commit,
            store_dir,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Which tree `path` is in: 0 the mounted one, else a volume's or bind mount's.
    fn tree_of(&self, path: &[u8]) -> usize {
        (self.targets.iter())
            .find(|(t, _)| path == t.as_slice() || (path.starts_with(t) && path.get(t.len()) == Some(&b'/')))
            .map_or(0, |(_, i)| *i)
    }

    fn path(&self, ino: INodeNo) -> std::result::Result<Vec<u8>, Errno> {
        self.state().nodes.path(ino.0).ok_or(Errno::ESTALE)
    }

    fn changed(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// The attributes the kernel is given for `info` (or the root's), under inode `ino`.
    fn attr(&self, ino: u64, info: Option<&ValueInfo>, root: Option<Attrs>) -> FileAttr {
        let a = match (info, root) {
            (Some(i), _) => i.attrs.clone().unwrap_or_else(|| Attrs::new(FileKind::Regular, 0o644)),
            (None, Some(r)) => r,
            (None, None) => Attrs::new(FileKind::Directory, 0o755),
        };
        let st = self.state();
        let size = match (st.orphans.get(&ino), &a.link_target) {
            (Some(f), _) => f.metadata().map_or(0, |m| m.len()),
            // A symlink's size is its target's length, as lstat gives it.
            (None, Some(t)) => t.len() as u64,
            (None, None) => info.map_or(0, |i| i.size),
        };
        let mtime = time(st.touched.get(&ino).copied().unwrap_or(a.mtime_ns));
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind: file_type(a.kind),
            perm: (a.mode & 0o7777) as u16,
            // A folder's count of subfolders is not kept: 1 says so, as on btrfs, and
            // `find` then counts nothing on it.
            nlink: if a.kind == FileKind::Directory {
                1
            } else {
                a.nlink.max(1)
            },
            uid: a.uid,
            gid: a.gid,
            rdev: a.rdev as u32,
            blksize: 4096,
            flags: 0,
        }
    }

    /// The attributes of the file at `path`, its inode number registered.
    fn lookup_path(&self, path: &[u8]) -> std::result::Result<FileAttr, Errno> {
        if path.is_empty() {
            let root = self.view.root_attrs().map_err(|e| errno(&e))?;
            return Ok(self.attr(1, None, root));
        }
        if path == self.root.as_slice() {
            let info = self.view.stat(path).map_err(|e| errno(&e))?.ok_or(Errno::ENOENT)?;
            return Ok(self.attr(1, Some(&info), None));
        }
        let info = self.view.stat(path).map_err(|e| errno(&e))?.ok_or(Errno::ENOENT)?;
        let store_ino = info.attrs.as_ref().map_or(0, |a| a.ino);
        let ino = self.state().nodes.ino(path, self.tree_of(path), store_ino);
        Ok(self.attr(ino, Some(&info), None))
    }

    fn getattr_ino(&self, ino: INodeNo) -> std::result::Result<FileAttr, Errno> {
        if let Some(f) = self.orphan(ino.0) {
            // Unlinked while open: its attributes are its last ones, its size the kept bytes'.
            let mut a = self.attr(ino.0, None, Some(Attrs::new(FileKind::Regular, 0o600)));
            a.size = f.metadata().map_or(0, |m| m.len());
            a.nlink = 0;
            return Ok(a);
        }
        let path = self.path(ino)?;
        let a = self.lookup_path(&path)?;
        if a.ino.0 != ino.0 {
            // The name now holds another file (renamed over, say).
            return Err(Errno::ESTALE);
        }
        Ok(a)
    }

    fn orphan(&self, ino: u64) -> Option<File> {
        self.state().orphans.get(&ino).and_then(|f| f.try_clone().ok())
    }

    /// Before the last name of an open file goes: its bytes move to an unnamed temporary
    /// file, so the handles still read and write them (POSIX keeps an unlinked open file).
    fn keep_if_open(&self, path: &[u8]) -> Result<()> {
        let Some(info) = self.view.stat(path)? else {
            return Ok(());
        };
        let Some(a) = info.attrs.as_ref() else {
            return Ok(());
        };
        if a.kind != FileKind::Regular || a.nlink > 1 {
            return Ok(());
        }
        let ino = self.state().nodes.number(path, self.tree_of(path), a.ino);
        if self.state().open.get(&ino).copied().unwrap_or(0) == 0 {
            return Ok(());
        }
        let file = tempfile::tempfile().map_err(Error::Io)?;
        let mut buf = vec![0u8; (info.size as usize).clamp(1, 1 << 20)];
        let mut off = 0u64;
        loop {
            let n = self.view.read_at(path, off, &mut buf)?;
            if n == 0 {
                break;
            }
            file.write_all_at(&buf[..n], off).map_err(Error::Io)?;
            off += n as u64;
        }
        self.state().orphans.insert(ino, file);
        Ok(())
    }

    /// How long the kernel may keep what it is told of `path`: long where only this mount
    /// changes it; a second below a mount target served here (a volume or bind mount
    /// unmounted alone from outside), which others may change.
    fn ttl_of(&self, path: &[u8]) -> Duration {
        if self.tree_of(path) == 0 {
            self.ttl
        } else {
            Duration::from_secs(1)
        }
    }

    /// The open flags for the file at inode `ino`: the kernel keeps its pages (and a
    /// folder's listing, with `dir`) where only this mount changes them.
    fn cache_flags(&self, ino: u64, dir: bool) -> FopenFlags {
        let path = self.state().nodes.path(ino);
        if self.keep_cache.is_empty() || path.is_none_or(|p| self.tree_of(&p) != 0) {
            return FopenFlags::empty();
        }
        if dir {
            FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::FOPEN_KEEP_CACHE
        }
    }

    fn entry(&self, path: &[u8], reply: ReplyEntry) {
        match self.lookup_path(path) {
            Ok(a) => {
                self.state().nodes.looked_up(a.ino.0);
                reply.entry(&self.ttl_of(path), &a, Generation(0))
            }
            Err(e) => reply.error(e),
        }
    }

    /// Attributes for a new file made by `req`.
    fn new_attrs(req: &Request, kind: FileKind, mode: u32, umask: u32) -> Attrs {
        Attrs {
            uid: req.uid(),
            gid: req.gid(),
            mtime_ns: now_ns(),
            ..Attrs::new(kind, mode & !umask & 0o7777)
        }
    }

    fn make(&self, parent: INodeNo, name: &OsStr, attrs: Attrs) -> std::result::Result<Vec<u8>, Errno> {
        let c = self.view.rw().map_err(|e| errno(&e))?;
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let _names = self.names.write().unwrap_or_else(|p| p.into_inner());
        let path = join(&self.path(parent)?, name);
        c.create(&path, attrs).map_err(|e| errno(&e))?;
        self.dir_changed(parent.0);
        Ok(path)
    }

    /// A file's bytes changed: it is modified now, unless the kernel's writeback cache owns
    /// its mtime (a write comes here when the kernel flushes it, not when it was made).
    fn file_written(&self, ino: u64) {
        if !self.writeback {
            self.state().touched.insert(ino, now_ns());
        }
        self.changed();
    }

    /// An entry of folder `ino` came or went: it is modified now (kept when the folder is
    /// closed, at fsync or at unmount; the kernel is told at once).
    fn dir_changed(&self, ino: u64) {
        self.state().touched.insert(ino, now_ns());
        self.changed();
    }

    /// Makes the file at least `len` bytes long in one change (a longer one stays so).
    fn grow(&self, ino: INodeNo, len: u64) -> Result<()> {
        if let Some(f) = self.orphan(ino.0) {
            if f.metadata().map_err(Error::Io)?.len() < len {
                f.set_len(len).map_err(Error::Io)?;
            }
            return Ok(());
        }
        let c = self.view.rw()?;
        let _names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let path = self.live_path(ino.0)?;
        c.grow(&path, len)?;
        self.file_written(ino.0);
        Ok(())
    }

    /// Applies every pending mtime (files written, folders changed), as one close would.
    fn settle_all(&self) -> Result<()> {
        let pending: Vec<u64> = self.state().touched.keys().copied().collect();
        for ino in pending {
            match self.settle(ino) {
                // Removed meanwhile: nothing to keep a time on.
                Err(Error::KeyNotFound(_)) => {
                    self.state().touched.remove(&ino);
                }
                r => r?,
            }
        }
        Ok(())
    }

    /// Applies a pending mtime (from writes, or entries made or removed) to the file.
    fn settle(&self, ino: u64) -> Result<()> {
        let _names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let Some(t) = self.state().touched.get(&ino).copied() else {
            return Ok(());
        };
        let Some(path) = self.state().nodes.path(ino) else {
            self.state().touched.remove(&ino);
            return Ok(());
        };
        if self.orphan(ino).is_some() {
            return Ok(());
        }
        match self.view.writable() {
            Some(c) if path.is_empty() => {
                let mut root = (c.root_attrs()?).unwrap_or_else(|| Attrs::new(FileKind::Directory, 0o755));
                root.mtime_ns = t;
                c.set_root_attrs(root)?;
            }
            Some(c) => {
                c.set_attrs(&path, |a| a.mtime_ns = t)?;
            }
            None => {}
        }
        // Forgotten only once kept (a newer write may have set a later time meanwhile).
        let mut st = self.state();
        if st.touched.get(&ino) == Some(&t) {
            st.touched.remove(&ino);
        }
        Ok(())
    }

    fn remove(&self, parent: INodeNo, name: &OsStr, dir: bool) -> std::result::Result<(), Errno> {
        let c = self.view.rw().map_err(|e| errno(&e))?;
        let _names = self.names.write().unwrap_or_else(|p| p.into_inner());
        let path = join(&self.path(parent)?, name);
        let info = self.view.stat(&path).map_err(|e| errno(&e))?.ok_or(Errno::ENOENT)?;
        let is_dir = info.attrs.as_ref().is_some_and(|a| a.kind == FileKind::Directory);
        match (dir, is_dir) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            _ => {}
        }
        if !dir {
            self.keep_if_open(&path).map_err(|e| errno(&e))?;
        }
        c.remove(&path, false).map_err(|e| errno(&e))?;
        self.state().nodes.gone(&path);
        self.dir_changed(parent.0);
        Ok(())
    }

    fn rename_paths(&self, from: &[u8], to: &[u8], flags: RenameFlags) -> Result<()> {
        let c = self.view.rw()?;
        let _names = self.names.write().unwrap_or_else(|p| p.into_inner());
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            c.exchange(from, to)?;
            self.state().nodes.exchanged(from, to);
            self.changed();
            return Ok(());
        }
        if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            c.rename_no_replace(from, to)?;
        } else {
            if from != to {
                self.keep_if_open(to)?;
            }
            c.rename(from, to)?;
        }
        self.state().nodes.renamed(from, to);
        self.changed();
        Ok(())
    }

    fn write_data(&self, ino: INodeNo, offset: u64, data: &[u8]) -> Result<()> {
        if let Some(f) = self.orphan(ino.0) {
            return f.write_all_at(data, offset).map_err(Error::Io);
        }
        let c = self.view.rw()?;
        let _names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let path = self.open_path(ino.0)?;
        c.write_at(&path, offset, data)?;
        self.file_written(ino.0);
        Ok(())
    }

    fn read_data(&self, ino: INodeNo, offset: u64, size: u32) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; size as usize];
        let n = match self.orphan(ino.0) {
            Some(f) => f.read_at(&mut buf, offset).map_err(Error::Io)?,
            None => {
                let _names = self.names.read().unwrap_or_else(|p| p.into_inner());
                let path = self.open_path(ino.0)?;
                let mut got = 0;
                // A read ends early only at the end of the file.
                while got < buf.len() {
                    let n = self.view.read_at(&path, offset + got as u64, &mut buf[got..])?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                got
            }
        };
        buf.truncate(n);
        Ok(buf)
    }

    fn setattr_path(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        mtime: Option<TimeOrNow>,
    ) -> Result<()> {
        if let Some(f) = self.orphan(ino.0) {
            if let Some(len) = size {
                f.set_len(len).map_err(Error::Io)?;
            }
            return Ok(());
        }
        let c = self.view.rw()?;
        let _names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let path = self.live_path(ino.0)?;
        if let Some(len) = size {
            c.truncate(&path, len)?;
            self.state().touched.insert(ino.0, now_ns());
        }
        if mode.is_some() || uid.is_some() || gid.is_some() || mtime.is_some() {
            let mtime = mtime.map(ns_of);
            if mtime.is_some() {
                self.state().touched.remove(&ino.0);
            }
            let set = |a: &mut Attrs| {
                if let Some(m) = mode {
                    a.mode = (a.mode & !0o7777) | (m & 0o7777);
                }
                if let Some(u) = uid {
                    a.uid = u;
                }
                if let Some(g) = gid {
                    a.gid = g;
                }
                if let Some(t) = mtime {
                    a.mtime_ns = t;
                }
            };
            if path.is_empty() {
                let mut root = c
                    .root_attrs()?
                    .unwrap_or_else(|| Attrs::new(FileKind::Directory, 0o755));
                set(&mut root);
                c.set_root_attrs(root)?;
            } else {
                c.set_attrs(&path, set)?;
            }
        }
        self.changed();
        Ok(())
    }

    /// The path of an open file, for its reads and writes: `open` checked it (`live_path`),
    /// and while a handle is open its name is followed (a rename moves it, an unlink or a
    /// rename over it moves the bytes to an orphan), so no lookup is needed per call.
    fn open_path(&self, ino: u64) -> Result<Vec<u8>> {
        (self.state().nodes.path(ino)).ok_or_else(|| Error::Io(std::io::Error::from_raw_os_error(libc::ESTALE)))
    }

    /// The path of an inode the kernel still uses, checked to hold that file (not a
    /// forgotten one, nor something made at its name since): otherwise `ESTALE`, so a write
    /// never lands on another file or makes one.
    fn live_path(&self, ino: u64) -> Result<Vec<u8>> {
        let stale = || Error::Io(std::io::Error::from_raw_os_error(libc::ESTALE));
        let path = self.state().nodes.path(ino).ok_or_else(stale)?;
        if ino == 1 {
            return Ok(path);
        }
        let info = self.view.stat(&path)?.ok_or_else(stale)?;
        let store_ino = info.attrs.as_ref().map_or(0, |a| a.ino);
        if self.state().nodes.number(&path, self.tree_of(&path), store_ino) != ino {
            return Err(stale());
        }
        Ok(path)
    }

    /// A folder's entries as `readdir` gives them: `.`, `..`, then its files in name order.
    fn listing(&self, ino: INodeNo) -> std::result::Result<Vec<(u64, FileType, Vec<u8>)>, Errno> {
        let dir = self.path(ino)?;
        let items = self.view.read_dir(&dir).map_err(|e| errno(&e))?;
        let mut entries = vec![
            (ino.0, FileType::Directory, b".".to_vec()),
            (ino.0, FileType::Directory, b"..".to_vec()),
        ];
        let mut st = self.state();
        for i in items {
            let kind = i.attrs.as_ref().map_or(FileKind::Regular, |a| a.kind);
            let n = st
                .nodes
                .number(&i.key, self.tree_of(&i.key), i.attrs.as_ref().map_or(0, |a| a.ino));
            let name = i.key.rsplit(|&b| b == b'/').next().unwrap_or(&i.key).to_vec();
            entries.push((n, file_type(kind), name));
        }
        Ok(entries)
    }

    fn xattr_reply(data: Vec<u8>, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(data.len() as u32);
        } else if data.len() > size as usize {
            reply.error(Errno::ERANGE);
        } else {
            reply.data(&data);
        }
    }

    fn attrs_of(&self, ino: INodeNo) -> std::result::Result<(Vec<u8>, Attrs), Errno> {
        let path = self.path(ino)?;
        let a = if path.is_empty() {
            self.view.root_attrs().map_err(|e| errno(&e))?
        } else {
            self.view.stat(&path).map_err(|e| errno(&e))?.and_then(|i| i.attrs)
        };
        Ok((path, a.unwrap_or_else(|| Attrs::new(FileKind::Regular, 0o644))))
    }

    fn set_xattrs(
        &self,
        path: &[u8],
        f: impl FnOnce(&mut Vec<(Vec<u8>, Vec<u8>)>) -> std::result::Result<(), Errno>,
    ) -> std::result::Result<(), Errno> {
        let c = self.view.rw().map_err(|e| errno(&e))?;
        let mut failed = None;
        let apply = |a: &mut Attrs| {
            if let Err(e) = f(&mut a.xattrs) {
                failed = Some(e);
            }
            a.xattrs.sort();
        };
        let r = if path.is_empty() {
            let mut root = c
                .root_attrs()
                .map_err(|e| errno(&e))?
                .unwrap_or_else(|| Attrs::new(FileKind::Directory, 0o755));
            apply(&mut root);
            match failed {
                Some(_) => Ok(()),
                None => c.set_root_attrs(root),
            }
        } else {
            c.set_attrs(path, apply).map(|_| ())
        };
        if let Some(e) = failed {
            return Err(e);
        }
        r.map_err(|e| errno(&e))?;
        self.changed();
        Ok(())
    }
}

impl Filesystem for LstoreFs {
    /// The session ends (unmounted): what is pending is kept before the final commit.
    fn destroy(&mut self) {
        if let Err(e) = self.settle_all() {
            eprintln!("lstore: the last modification times could not be kept: {e}");
        }
    }

    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Large writes: fewer calls for a big file.
        let _ = config.set_max_write(1 << 20);
        // Where only this mount writes what it serves, writes gather in the kernel's page
        // cache and come here in large pieces (a program's 4 KiB writes would each rewrite a
        // whole block otherwise). Its rules are kept: the kernel then owns a file's size and
        // mtime (sent here by setattr) and may read through a write-only handle (reads here
        // never look at the handle's mode); O_APPEND offsets are the kernel's.
        if self.view.writable().is_some() && self.keep_cache == FopenFlags::FOPEN_KEEP_CACHE {
            self.writeback = config.add_capabilities(fuser::InitFlags::FUSE_WRITEBACK_CACHE).is_ok();
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.path(parent) {
            Ok(dir) => self.entry(&join(&dir, name), reply),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let mut st = self.state();
        if st.nodes.forget(ino.0, nlookup) && st.open.get(&ino.0).copied().unwrap_or(0) == 0 {
            st.nodes.drop_inode(ino.0);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let path = self.state().nodes.path(ino.0).unwrap_or_default();
        match self.getattr_ino(ino) {
            Ok(a) => reply.attr(&self.ttl_of(&path), &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let done = self
            .setattr_path(ino, mode, uid, gid, size, mtime)
            .map_err(|e| errno(&e));
        let path = self.state().nodes.path(ino.0).unwrap_or_default();
        match done.and_then(|_| self.getattr_ino(ino)) {
            Ok(a) => reply.attr(&self.ttl_of(&path), &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.attrs_of(ino) {
            Ok((_, a)) => match a.link_target {
                Some(t) => reply.data(&t),
                None => reply.error(Errno::EINVAL),
            },
            Err(e) => reply.error(e),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let kind = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => FileKind::Regular,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            // What `bind` of a unix socket makes (the kernel keeps the socket itself).
            libc::S_IFSOCK => FileKind::Socket,
            _ => return reply.error(Errno::EINVAL),
        };
        let attrs = Attrs {
            rdev: u64::from(rdev),
            ..Self::new_attrs(req, kind, mode, umask)
        };
        match self.make(parent, name, attrs) {
            Ok(p) => self.entry(&p, reply),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        match self.make(parent, name, Self::new_attrs(req, FileKind::Directory, mode, umask)) {
            Ok(p) => self.entry(&p, reply),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &std::path::Path, reply: ReplyEntry) {
        let attrs = Attrs {
            link_target: Some(target.as_os_str().as_bytes().to_vec()),
            ..Self::new_attrs(req, FileKind::Symlink, 0o777, 0)
        };
        match self.make(parent, link_name, attrs) {
            Ok(p) => self.entry(&p, reply),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let paths = self
            .path(parent)
            .and_then(|a| Ok((join(&a, name), join(&self.path(newparent)?, newname))));
        match paths.and_then(|(from, to)| self.rename_paths(&from, &to, flags).map_err(|e| errno(&e))) {
            Ok(()) => {
                self.dir_changed(parent.0);
                self.dir_changed(newparent.0);
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let done = (|| {
            let c = self.view.rw().map_err(|e| errno(&e))?;
            let _names = self.names.write().unwrap_or_else(|p| p.into_inner());
            let from = self.path(ino)?;
            let to = join(&self.path(newparent)?, newname);
            c.link(&from, &to).map_err(|e| errno(&e))?;
            self.dir_changed(newparent.0);
            Ok(to)
        })();
        match done {
            Ok(p) => self.entry(&p, reply),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let writes = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        if writes && self.view.writable().is_none() {
            return reply.error(Errno::EROFS);
        }
        // A name looked up just before a rename replaced it: ESTALE has the kernel look the
        // name up again (and open the new file), as a reader of a renamed-over file expects.
        if self.orphan(ino.0).is_none() {
            let _names = self.names.read().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = self.live_path(ino.0) {
                return reply.error(errno(&e));
            }
        }
        let mut st = self.state();
        *st.open.entry(ino.0).or_insert(0) += 1;
        st.next_fh += 1;
        let fh = st.next_fh;
        drop(st);
        reply.opened(FileHandle(fh), self.cache_flags(ino.0, false));
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read_data(ino, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.write_data(ino, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        match self.settle(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _ = self.settle(ino.0);
        let mut st = self.state();
        let left = st.open.get_mut(&ino.0).map_or(0, |n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left == 0 {
            st.open.remove(&ino.0);
            st.orphans.remove(&ino.0);
            st.nodes.drop_inode(ino.0);
        }
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let done = self.settle_all().and_then(|_| (self.commit)());
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fh = {
            let mut st = self.state();
            st.next_fh += 1;
            st.next_fh
        };
        // The kernel drops a kept listing itself when an entry is made, removed or renamed
        // through this mount.
        reply.opened(FileHandle(fh), self.cache_flags(ino.0, true));
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let listed = self.state().listings.get(&fh.0).cloned();
        let entries = match listed {
            Some(e) if offset > 0 => e,
            _ => match self.listing(ino) {
                Ok(e) => {
                    self.state().listings.insert(fh.0, e.clone());
                    e
                }
                Err(e) => return reply.error(e),
            },
        };
        for (i, (n, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(n), i as u64 + 1, kind, OsStr::from_bytes(&name)) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.state().listings.remove(&fh.0);
        // A pending folder mtime is kept here, or at fsync or unmount (not at every close of a
        // file in it: one tree write per folder, not per file).
        let _ = self.settle(ino.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match self.settle_all().and_then(|_| (self.commit)()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // The store file's file system: the space the container can still grow into.
        match rustix::fs::fstatvfs(&self.store_dir) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                255,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e.raw_os_error())),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let name = name.as_bytes().to_vec();
        // The kernel checks permissions by the mode alone here: an ACL set would not be
        // enforced, nor would the mode follow it. Refused, `cp -p`, `cp -a` and `tar` set
        // the mode with chmod instead (an image's stored ACLs still read back).
        if name.starts_with(b"system.posix_acl_") {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let done = self.path(ino).and_then(|path| {
            self.set_xattrs(&path, |x| {
                let at = x.iter().position(|(n, _)| *n == name);
                match (at, flags) {
                    (Some(_), f) if f & libc::XATTR_CREATE != 0 => Err(Errno::EEXIST),
                    (None, f) if f & libc::XATTR_REPLACE != 0 => Err(Errno::ENODATA),
                    (Some(i), _) => {
                        x[i].1 = value.to_vec();
                        Ok(())
                    }
                    (None, _) => {
                        x.push((name.clone(), value.to_vec()));
                        Ok(())
                    }
                }
            })
        });
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.attrs_of(ino) {
            Ok((_, a)) => match a.xattrs.into_iter().find(|(n, _)| n.as_slice() == name.as_bytes()) {
                Some((_, v)) => Self::xattr_reply(v, size, reply),
                None => reply.error(Errno::ENODATA),
            },
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.attrs_of(ino) {
            Ok((_, a)) => {
                let list: Vec<u8> = a
                    .xattrs
                    .iter()
                    .flat_map(|(n, _)| n.iter().copied().chain([0]))
                    .collect();
                Self::xattr_reply(list, size, reply)
            }
            Err(e) => reply.error(e),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.as_bytes().to_vec();
        let done = self.path(ino).and_then(|path| {
            self.set_xattrs(&path, |x| {
                let before = x.len();
                x.retain(|(n, _)| *n != name);
                if x.len() == before {
                    Err(Errno::ENODATA)
                } else {
                    Ok(())
                }
            })
        });
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    /// Space cannot be set aside in a copy-on-write store (btrfs says the same), so
    /// `fallocate` makes the file long enough (mode 0) or, keeping its size, does nothing;
    /// punching or zeroing ranges is `EOPNOTSUPP`, and callers fall back to writing.
    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let done = match mode {
            0 => offset
                .checked_add(length)
                .ok_or(Errno::EFBIG)
                .and_then(|end| self.grow(ino, end).map_err(|e| errno(&e))),
            libc::FALLOC_FL_KEEP_SIZE => Ok(()),
            _ => Err(Errno::EOPNOTSUPP),
        };
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let made = self.make(parent, name, Self::new_attrs(req, FileKind::Regular, mode, umask));
        match made.and_then(|p| self.lookup_path(&p)) {
            Ok(a) => {
                let mut st = self.state();
                st.nodes.looked_up(a.ino.0);
                *st.open.entry(a.ino.0).or_insert(0) += 1;
                st.next_fh += 1;
                // O_EXCL and O_TRUNC are the kernel's: it asked for a new file.
                let _ = flags;
                let (fh, path) = (st.next_fh, st.nodes.path(a.ino.0).unwrap_or_default());
                drop(st);
                let flags = self.cache_flags(a.ino.0, false);
                reply.created(&self.ttl_of(&path), &a, Generation(0), FileHandle(fh), flags);
            }
            Err(e) => reply.error(e),
        }
    }
}

/// The wall clock in nanoseconds since the Unix epoch (0 before it), as an mtime.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
