//! The file-system side of layers and containers: creating each kind of object, attributes,
//! hard links, rename, removing a subtree, listing one folder, and what changed between two
//! trees (`docker diff`).

use super::container::{flush_container, load_container, Place};
use super::*;
use crate::format::treekey;
use crate::format::value::{Attrs, Body, Entry, FileKind};
use crate::io::Source;
use std::collections::HashSet;

/// How a path differs between two trees, as `docker diff` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// `A`: only in the newer tree.
    Added,
    /// `C`: in both, with other bytes or attributes.
    Changed,
    /// `D`: only in the older tree (a removed folder stands for everything below it).
    Deleted,
}

impl ChangeKind {
    /// The letter `docker diff` prints.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One path that differs between two trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub path: Vec<u8>,
    pub kind: ChangeKind,
}

/// The changes from the tree at `a` to the tree at `b`, folder by folder (a folder's entry
/// before what is in it). Costs what differs: shared subtrees are skipped unread. A hard-linked
/// file whose bytes changed is reported under each of its names, found by one scan of `b`.
pub(crate) fn changes<S: Source + ?Sized>(src: &S, a: u64, b: u64) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    let mut inodes = HashSet::new();
    let mut gone_dirs: HashSet<Vec<u8>> = HashSet::new();
    crate::tree::diff::diff(src, a, b, &mut |k, old, new| {
        let Some(path) = treekey::path_of(k) else {
            if let (Some(ino), Some(_), Some(_)) = (treekey::inode_of(k), old, new) {
                inodes.insert(ino);
            }
            return Ok(());
        };
        // The root's own attributes are not a path `docker diff` reports.
        if path.is_empty() {
            return Ok(());
        }
        let kind = match (old, new) {
            (None, _) => ChangeKind::Added,
            (_, None) => ChangeKind::Deleted,
            _ => ChangeKind::Changed,
        };
        if kind == ChangeKind::Deleted {
            let mut up = path.as_slice();
            while let Some(i) = up.iter().rposition(|&b| b == b'/') {
                up = &up[..i];
                if gone_dirs.contains(up) {
                    return Ok(());
                }
            }
            let e = Entry::decode(old.expect("deleted: old present"))?;
            if e.attrs.is_some_and(|a| a.kind == FileKind::Directory) {
                gone_dirs.insert(path.clone());
            }
        }
        out.push(Change { path, kind });
        Ok(())
    })?;
    if !inodes.is_empty() {
        let listed: HashSet<Vec<u8>> = out.iter().map(|c| c.path.clone()).collect();
        for item in crate::tree::btree::DiskIter::new(src, b, &[])? {
            let (k, v) = item?;
            if let (Some(path), Body::Link(ino)) = (treekey::path_of(k), Entry::decode(v)?.body) {
                if inodes.contains(&ino) && !listed.contains(&path) {
                    out.push(Change {
                        path,
                        kind: ChangeKind::Changed,
                    });
                }
            }
        }
        out.sort_by_cached_key(|c| treekey::of_path(&c.path));
    }
    Ok(out)
}

impl Store {
    /// What changed from `from` to `to`, each a layer or a container (by name or id), as
    /// `docker diff` reports it, in time proportional to what changed. A container's changes
    /// not yet committed are included (its tree is written out first).
    pub fn diff(&self, from: &str, to: &str) -> Result<std::vec::IntoIter<Change>> {
        // Both handles are held through the walk: gc leaves what they read alone.
        let (a, b) = (self.snapshot(from)?, self.snapshot(to)?);
        a.diff(&b)
    }

    /// A read-only handle on a layer, or on a container's tree as it is now (its pending
    /// changes written out first): what [`crate::export_dir`] and `diff` read. The handle keeps
    /// what it reads from gc, like any layer handle; a container's is not in the catalog.
    pub fn snapshot(&self, r: &str) -> Result<Layer> {
        let id = match self.resolve(r)? {
            Target::Layer(id) => return self.layer_by_id(id),
            Target::Container(id) => id,
        };
        let as_layer = |c: ContainerInfo| LayerInfo {
            id: c.id,
            name: c.name,
            parent: Some(c.image),
            root: c.root,
            keys: c.keys,
            created_ns: c.created_ns,
        };
        {
            let st = self.lock()?;
            if !st.containers.get(&id).is_some_and(|t| t.is_dirty()) {
                let info = as_layer(container_info(&self.inner, &st, id)?);
                return Ok(Layer::new(self.clone(), info));
            }
        }
        self.write(|inner, st| {
            let info = as_layer(flush_container(inner, st, id)?);
            Ok(Layer::new(self.clone(), info))
        })
    }
}

impl Layer {
    /// What changed from this layer to `to` (see [`Store::diff`]).
    pub fn diff(&self, to: &Layer) -> Result<std::vec::IntoIter<Change>> {
        let st = self.store.lock()?;
        let src = Writer::view(&self.store.inner.segs, &st.txn.app);
        Ok(changes(&src, self.info.root, to.info.root)?.into_iter())
    }
}

/// Attributes of an object made now: `kind`, permission bits `perm`, owned by root.
fn made_now(kind: FileKind, perm: u32) -> Attrs {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    Attrs {
        mtime_ns: now,
        ..Attrs::new(kind, perm)
    }
}

/// A tree a file-system change goes to: the container's own or a volume's.
fn in_tree<R>(p: Place, f: impl FnOnce(&mut WorkTree, &[u8]) -> Result<R>) -> Result<R> {
    match p {
        Place::Tree(t, k) => f(t, k),
        Place::Bind(root, sub) => Err(Error::InvalidArgument(format!(
            "{}: only values are written through a bind mount; change folders, links and attributes on the host",
            root.join(std::ffi::OsStr::from_bytes(sub)).display()
        ))),
        Place::MountPoint(_, k) => Err(Error::InvalidArgument(format!(
            "{}: a mount point is the mount's folder and cannot be changed",
            String::from_utf8_lossy(k)
        ))),
    }
}

use std::os::unix::ffi::OsStrExt;

impl Container {
    /// Runs a change of one path on the tree it lives in.
    fn fs_op<R>(&self, path: &[u8], f: impl FnOnce(&mut WorkTree, &[u8], &Writer) -> Result<R>) -> Result<R> {
        self.op(true, path, |p, cx| in_tree(p, |t, k| f(t, k, &cx.w)))
    }

    /// Runs a change of two paths, which must live in the same tree (not across a mount).
    fn fs_op2<R>(
        &self,
        a: &[u8],
        b: &[u8],
        f: impl FnOnce(&mut WorkTree, &[u8], &[u8], &Writer) -> Result<R>,
    ) -> Result<R> {
        let sub_b = {
            let mut st = self.store.lock()?;
            load_container(&self.store.inner, &mut st, self.id)?;
            let mounts = &st.mounts[&self.id];
            let ra = crate::store::mount::route(mounts, a).map(|(m, _)| m.target.clone());
            let rb = crate::store::mount::route(mounts, b);
            if ra != rb.map(|(m, _)| m.target.clone()) {
                return Err(Error::CrossMount(format!(
                    "{} -> {}",
                    String::from_utf8_lossy(a),
                    String::from_utf8_lossy(b)
                )));
            }
            rb.map_or(b.to_vec(), |(_, s)| s.to_vec())
        };
        self.fs_op(a, |t, ka, w| f(t, ka, &sub_b, w))
    }

    /// Fails when a mount's target lies below `path`: moving or removing `path` would leave
    /// the mount where nothing is (Linux says `EBUSY`).
    fn no_mount_below(&self, path: &[u8]) -> Result<()> {
        let mut st = self.store.lock()?;
        load_container(&self.store.inner, &mut st, self.id)?;
        for m in &st.mounts[&self.id] {
            let t = m.target.as_bytes();
            if t.len() > path.len() && t.starts_with(path) && t[path.len()] == b'/' {
                return Err(Error::InUse(format!(
                    "{}: the mount at /{} is below it",
                    String::from_utf8_lossy(path),
                    m.target
                )));
            }
        }
        Ok(())
    }

    /// Creates an object without content (folder, symlink, device, FIFO, empty file) at
    /// `path`, whose parent folder must exist; returns its inode number.
    ///
    /// ```
    /// use lstore::{Attrs, FileKind, Store};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::create(dir.path().join("s"), Default::default()).unwrap();
    /// let image = store.new_layer(None).unwrap().finish(None).unwrap();
    /// let c = store.create_container(&image, None).unwrap();
    /// c.mkdir("etc", 0o755).unwrap();
    /// c.symlink(b"/proc/mounts", "etc/mtab").unwrap();
    /// c.create("etc/null", Attrs { rdev: 0x103, ..Attrs::new(FileKind::CharDevice, 0o666) }).unwrap();
    /// let names: Vec<_> = c.read_dir("etc").unwrap().into_iter().map(|i| i.key).collect();
    /// assert_eq!(names, [b"etc/mtab".to_vec(), b"etc/null".to_vec()]);
    /// ```
    pub fn create(&self, path: impl AsRef<[u8]>, attrs: Attrs) -> Result<u64> {
        self.fs_op(path.as_ref(), |t, k, w| t.create(w, k, attrs))
    }

    /// Creates a folder (`mkdir`), owned by root, modified now.
    pub fn mkdir(&self, path: impl AsRef<[u8]>, mode: u32) -> Result<u64> {
        self.create(path, made_now(FileKind::Directory, mode))
    }

    /// Creates a symlink at `path` pointing at `target` (any bytes but NUL), modified now.
    pub fn symlink(&self, target: &[u8], path: impl AsRef<[u8]>) -> Result<u64> {
        let attrs = Attrs {
            link_target: Some(target.to_vec()),
            ..made_now(FileKind::Symlink, 0o777)
        };
        self.create(path, attrs)
    }

    /// Gives the file at `existing` a second name `new` (a hard link): a write through either
    /// name is seen through the other.
    pub fn link(&self, existing: impl AsRef<[u8]>, new: impl AsRef<[u8]>) -> Result<()> {
        self.fs_op2(existing.as_ref(), new.as_ref(), |t, a, b, w| t.link(w, a, b))
    }

    /// Renames a file or a folder with everything below it, atomically; replaces a file, or an
    /// empty folder, at `to`.
    pub fn rename(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<()> {
        self.no_mount_below(from.as_ref())?;
        self.no_mount_below(to.as_ref())?;
        self.fs_op2(from.as_ref(), to.as_ref(), |t, a, b, w| t.rename(w, a, b, false))
    }

    /// Swaps two files or folders atomically (`RENAME_EXCHANGE`); both must exist, in one
    /// tree (not across a mount), and neither may hold the other.
    pub fn exchange(&self, a: impl AsRef<[u8]>, b: impl AsRef<[u8]>) -> Result<()> {
        self.no_mount_below(a.as_ref())?;
        self.no_mount_below(b.as_ref())?;
        self.fs_op2(a.as_ref(), b.as_ref(), |t, a, b, w| t.exchange(w, a, b))
    }

    /// As [`Container::rename`], refusing to replace anything (`RENAME_NOREPLACE`).
    pub fn rename_no_replace(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<()> {
        self.no_mount_below(from.as_ref())?;
        self.fs_op2(from.as_ref(), to.as_ref(), |t, a, b, w| t.rename(w, a, b, true))
    }

    /// Removes a file (one name of it), an empty folder, or with `recursive` a folder and all
    /// below it in one change. False when nothing was there.
    pub fn remove(&self, path: impl AsRef<[u8]>, recursive: bool) -> Result<bool> {
        self.no_mount_below(path.as_ref())?;
        self.op(true, path.as_ref(), |p, cx| match p {
            // A host file goes as `delete` takes it; a host folder stays the host's to remove.
            Place::Bind(root, sub) if !recursive => super::bind::delete(&root, sub),
            p => in_tree(p, |t, k| t.remove(&cx.w, k, recursive)),
        })
    }

    /// Changes a file's attributes: mode, owner, mtime, xattrs (`chmod`, `chown`, `touch`,
    /// `setfattr`). The kind, inode number and link count stay. Returns the new attributes.
    /// At a volume's mount target, the volume's root folder changes.
    pub fn set_attrs(&self, path: impl AsRef<[u8]>, f: impl FnOnce(&mut Attrs)) -> Result<Attrs> {
        self.op(true, path.as_ref(), |p, cx| match p {
            Place::MountPoint(t, _) => {
                let mut a = (t.root_attrs(&cx.w)?).unwrap_or_else(|| Attrs::new(FileKind::Directory, 0o755));
                f(&mut a);
                a.kind = FileKind::Directory;
                t.set_root_attrs(&cx.w, a.clone())?;
                Ok(a)
            }
            p => in_tree(p, |t, k| t.update_attrs(&cx.w, k, f)),
        })
    }

    /// The entries directly in folder `dir` (`""`: the root), in name order, a volume's
    /// folders included; costs what the folder holds. A mount's target is listed as a folder
    /// in its parent.
    pub fn read_dir(&self, dir: impl AsRef<[u8]>) -> Result<Vec<ValueInfo>> {
        let dir = dir.as_ref();
        let found = self.op(false, dir, |p, cx| match p {
            Place::Tree(t, k) => Ok((t.read_dir(&cx.w, k)?, k.len())),
            Place::MountPoint(t, _) => Ok((t.read_dir(&cx.w, b"")?, 0)),
            _ => Err(Error::InvalidArgument(format!(
                "{}: list a mount's folders through Container::list",
                String::from_utf8_lossy(dir)
            ))),
        })?;
        // A volume's paths are below its target: put the target back in front.
        let (items, sub_len) = found;
        let base = &dir[..dir.len() - sub_len];
        let mut items: Vec<ValueInfo> = items
            .into_iter()
            .map(|mut i| {
                if !base.is_empty() {
                    i.key = [base, if base.ends_with(b"/") { b"" } else { b"/" }, &i.key].concat();
                }
                i
            })
            .collect();
        for target in self.targets_in(dir)? {
            if let Err(at) = items.binary_search_by(|i| i.key.as_slice().cmp(&target)) {
                if let Some(info) = self.stat(&target)? {
                    items.insert(at, info);
                }
            }
        }
        Ok(items)
    }

    /// The mount targets directly in folder `dir`.
    fn targets_in(&self, dir: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut st = self.store.lock()?;
        load_container(&self.store.inner, &mut st, self.id)?;
        fn parent_of(t: &[u8]) -> &[u8] {
            t.iter().rposition(|&b| b == b'/').map_or(&t[..0], |i| &t[..i])
        }
        Ok((st.mounts[&self.id].iter())
            .map(|m| m.target.as_bytes())
            .filter(|t| parent_of(t) == dir)
            .map(<[u8]>::to_vec)
            .collect())
    }

    /// Creates the folders that lead to each mount's target where the container has none (as
    /// a runtime does in a root file system), so that every target can be reached by a path.
    /// Fails when something other than a folder stands on the way to a target.
    pub fn make_mount_points(&self) -> Result<()> {
        let targets: Vec<String> = self.info()?.mounts.iter().map(|m| m.target.clone()).collect();
        for target in targets {
            let t = target.as_bytes();
            let ancestors = (t.iter().enumerate()).filter(|(_, &b)| b == b'/').map(|(i, _)| &t[..i]);
            for up in ancestors {
                match self.stat(up)?.and_then(|i| i.attrs).map(|a| a.kind) {
                    None => {
                        self.mkdir(up, 0o755)?;
                    }
                    Some(FileKind::Directory) => {}
                    Some(_) => {
                        return Err(Error::NotADirectory(format!(
                            "/{} (on the way to the mount at /{target})",
                            String::from_utf8_lossy(up)
                        )))
                    }
                }
            }
        }
        Ok(())
    }

    /// The attributes of the container's root folder, if they were ever set.
    pub fn root_attrs(&self) -> Result<Option<Attrs>> {
        self.op(false, b"", |p, cx| match p {
            Place::Tree(t, _) => t.root_attrs(&cx.w),
            _ => Ok(None),
        })
    }

    /// Sets the attributes of the container's root folder.
    pub fn set_root_attrs(&self, attrs: Attrs) -> Result<()> {
        self.op(true, b"", |p, cx| match p {
            Place::Tree(t, _) => t.set_root_attrs(&cx.w, attrs),
            _ => Err(Error::InvalidArgument("the root is a mount".into())),
        })
    }

    /// What changed in this container from its image (`docker diff`), its pending changes
    /// included.
    pub fn diff(&self) -> Result<std::vec::IntoIter<Change>> {
        let image = self.info()?.image;
        self.store.diff(&image.to_string(), &self.id.to_string())
    }
}

impl LayerBuilder {
    fn fs<R>(&mut self, f: impl FnOnce(&mut WorkTree, &Writer) -> Result<R>) -> Result<R> {
        self.with(|t, cx| f(t, &cx.w))
    }

    /// As [`Container::create`].
    pub fn create(&mut self, path: impl AsRef<[u8]>, attrs: Attrs) -> Result<u64> {
        self.fs(|t, w| t.create(w, path.as_ref(), attrs))
    }

    /// As [`Container::mkdir`].
    pub fn mkdir(&mut self, path: impl AsRef<[u8]>, mode: u32) -> Result<u64> {
        self.create(path, made_now(FileKind::Directory, mode))
    }

    /// Sets the attributes of the layer's root folder (`import` takes them from the folder).
    pub fn set_root_attrs(&mut self, attrs: Attrs) -> Result<()> {
        self.fs(|t, w| t.set_root_attrs(w, attrs))
    }

    /// As [`Container::link`].
    pub fn link(&mut self, existing: impl AsRef<[u8]>, new: impl AsRef<[u8]>) -> Result<()> {
        self.fs(|t, w| t.link(w, existing.as_ref(), new.as_ref()))
    }

    /// As [`Container::rename`].
    pub fn rename(&mut self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<()> {
        self.fs(|t, w| t.rename(w, from.as_ref(), to.as_ref(), false))
    }

    /// As [`Container::remove`].
    pub fn remove(&mut self, path: impl AsRef<[u8]>, recursive: bool) -> Result<bool> {
        self.fs(|t, w| t.remove(w, path.as_ref(), recursive))
    }

    /// As [`Container::set_attrs`].
    pub fn set_attrs(&mut self, path: impl AsRef<[u8]>, f: impl FnOnce(&mut Attrs)) -> Result<Attrs> {
        self.fs(|t, w| t.update_attrs(w, path.as_ref(), f))
    }

    /// As [`Container::read_dir`], of what is built so far.
    pub fn read_dir(&mut self, dir: impl AsRef<[u8]>) -> Result<Vec<ValueInfo>> {
        self.fs(|t, w| t.read_dir(w, dir.as_ref()))
    }

    /// What `stat` says of a path as built so far.
    pub fn stat(&mut self, path: impl AsRef<[u8]>) -> Result<Option<ValueInfo>> {
        self.fs(|t, w| t.stat(w, path.as_ref()))
    }
}
