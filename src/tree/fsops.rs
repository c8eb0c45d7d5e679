//! File-system operations on a layer's tree: create each kind of object, change attributes,
//! hard links, remove a subtree, rename, list one folder. Paths are checked as a file system
//! checks them: every component named, the parent an existing folder.

use super::worktree::WorkTree;
use crate::error::{Error, Result};
use crate::format::treekey;
use crate::format::value::{self, Attrs, Body, Entry, FileKind, ValueInfo};
use crate::io::Source;

/// The first inode number a tree gives out (1 is the root folder's, as FUSE numbers it).
const FIRST_INO: u64 = 2;

fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Checks a file-system path: a key whose components are non-empty and neither `.` nor `..`.
pub fn check_path(path: &[u8]) -> Result<()> {
    value::check_key(path)?;
    if path
        .split(|&b| b == b'/')
        .any(|c| c.is_empty() || c == b"." || c == b"..")
    {
        return Err(Error::InvalidKey(format!(
            "'{}': a path names each component (no empty, '.' or '..' part, no leading or trailing '/')",
            shown(path)
        )));
    }
    Ok(())
}

/// The folder a path is in (`""` for the root) and its last component.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

fn kind_of(e: &Entry) -> FileKind {
    e.attrs.as_ref().map_or(FileKind::Regular, |a| a.kind)
}

impl WorkTree {
    /// A fresh inode number for this tree.
    pub fn next_ino<S: Source + ?Sized>(&mut self, src: &S) -> Result<u64> {
        let next = match self.next_ino {
            Some(n) => n,
            None => match self.tree.get(src, treekey::NEXT_INO)? {
                Some(v) => match Entry::decode(v)?.body {
                    Body::Inline(b) => treekey::decode_next_ino(&b)
                        .ok_or_else(|| Error::corrupt("the tree's inode counter is malformed"))?,
                    _ => return Err(Error::corrupt("the tree's inode counter is malformed")),
                },
                None => FIRST_INO,
            },
        };
        let after = next
            .checked_add(1)
            .ok_or_else(|| Error::Full("the layer's inode numbers are used up".into()))?;
        self.next_ino = Some(after);
        self.ino_changed = true;
        Ok(next)
    }

    /// The root folder's attributes, if they were ever set.
    pub fn root_attrs<S: Source + ?Sized>(&self, src: &S) -> Result<Option<Attrs>> {
        Ok(self.raw_entry(src, treekey::ROOT)?.and_then(|e| e.attrs))
    }

    /// Sets the root folder's attributes (its kind is a folder, its inode number 1).
    pub fn set_root_attrs<S: Source + ?Sized>(&mut self, src: &S, mut attrs: Attrs) -> Result<()> {
        (attrs.kind, attrs.ino, attrs.nlink, attrs.link_target) = (FileKind::Directory, treekey::ROOT_INO, 1, None);
        attrs.check()?;
        let mut e = Entry::inline(Vec::new());
        e.attrs = Some(attrs.normalized());
        self.set_raw(src, treekey::ROOT, e.encode())
    }

    /// Fails unless `path`'s parent is the root or an existing folder.
    fn check_parent<S: Source + ?Sized>(&self, src: &S, path: &[u8]) -> Result<()> {
        let (dir, _) = split(path);
        if dir.is_empty() {
            return Ok(());
        }
        match self.locate(src, dir)? {
            None => Err(Error::KeyNotFound(format!(
                "{} (the folder of {})",
                shown(dir),
                shown(path)
            ))),
            Some((_, e)) if kind_of(&e) != FileKind::Directory => Err(Error::NotADirectory(shown(dir))),
            Some(_) => Ok(()),
        }
    }

    /// Creates an object with no content (a folder, symlink, device, FIFO or empty file) at
    /// `path`, which must not exist; its inode number is given here.
    pub fn create<S: Source + ?Sized>(&mut self, src: &S, path: &[u8], mut attrs: Attrs) -> Result<u64> {
        check_path(path)?;
        attrs.check()?;
        self.check_parent(src, path)?;
        if self.locate(src, path)?.is_some() {
            return Err(Error::Exists(shown(path)));
        }
        // The store numbers inodes (a caller's number is never taken).
        attrs.ino = self.next_ino(src)?;
        attrs.nlink = 1;
        let ino = attrs.ino;
        let mut e = Entry::inline(Vec::new());
        e.attrs = Some(attrs.normalized());
        self.set_raw(src, &treekey::of_path(path), e.encode())?;
        Ok(ino)
    }

    /// Changes a file's attributes with `f` (kind, inode number and link count stay); a plain
    /// value gets a regular file's attributes first. Returns the attributes as changed.
    pub fn update_attrs<S: Source + ?Sized>(
        &mut self,
        src: &S,
        path: &[u8],
        f: impl FnOnce(&mut Attrs),
    ) -> Result<Attrs> {
        value::check_key(path)?;
        let (k, e) = self.locate(src, path)?.ok_or_else(|| Error::KeyNotFound(shown(path)))?;
        let mut attrs = match e.attrs {
            Some(a) => a,
            None => {
                let mut a = Attrs::new(FileKind::Regular, 0o644);
                a.ino = self.next_ino(src)?;
                a
            }
        };
        let (kind, ino, nlink) = (attrs.kind, attrs.ino, attrs.nlink);
        f(&mut attrs);
        (attrs.kind, attrs.ino, attrs.nlink) = (kind, ino, nlink);
        attrs.check()?;
        let attrs = attrs.normalized();
        let out = attrs.clone();
        self.modify(src, &k, |e| e.attrs = Some(attrs))?;
        Ok(out)
    }

    /// Gives the file at `existing` another name, `new` (which must not exist). The first time,
    /// the file's entry moves to a shared inode entry both names point at.
    pub fn link<S: Source + ?Sized>(&mut self, src: &S, existing: &[u8], new: &[u8]) -> Result<()> {
        check_path(existing)?;
        check_path(new)?;
        let (k, e) = self
            .locate(src, existing)?
            .ok_or_else(|| Error::KeyNotFound(shown(existing)))?;
        if kind_of(&e) == FileKind::Directory {
            return Err(Error::IsADirectory(shown(existing)));
        }
        self.check_parent(src, new)?;
        if self.locate(src, new)?.is_some() {
            return Err(Error::Exists(shown(new)));
        }
        let ino = match treekey::inode_of(&k) {
            Some(ino) => {
                self.modify(src, &k, |e| {
                    if let Some(a) = e.attrs.as_mut() {
                        a.nlink = a.nlink.saturating_add(1);
                    }
                })?;
                ino
            }
            None => self.share(src, &k, e)?,
        };
        let link = Entry {
            size: 0,
            attrs: None,
            compression: None,
            body: Body::Link(ino),
        };
        self.set_raw(src, &treekey::of_path(new), link.encode())
    }

    /// Moves the file at path key `k` (entry `e`, the open copy when open) to an inode entry
    /// with two links, leaving a link at `k`.
    fn share<S: Source + ?Sized>(&mut self, src: &S, k: &[u8], mut e: Entry) -> Result<u64> {
        let mut attrs = e.attrs.take().unwrap_or_else(|| Attrs::new(FileKind::Regular, 0o644));
        if attrs.ino == 0 {
            attrs.ino = self.next_ino(src)?;
        }
        attrs.nlink = 2;
        let ino = attrs.ino;
        let ik = treekey::of_inode(ino);
        if self.raw_entry(src, &ik)?.is_some() {
            return Err(Error::corrupt(format!(
                "inode {ino} is both a file's and a hard link's"
            )));
        }
        e.attrs = Some(attrs);
        if let Some(mut o) = self.open.remove(k) {
            // The open copy stays the truth; the tree's copy is replaced at flush.
            o.entry.attrs = e.attrs.clone();
            self.open.insert(ik.clone(), o);
        }
        let link = Entry {
            size: 0,
            attrs: None,
            compression: None,
            body: Body::Link(ino),
        };
        self.set_raw(src, &ik, e.encode())?;
        self.set_raw(src, k, link.encode())?;
        Ok(ino)
    }

    /// Removes `path`: a file (one link of it), an empty folder, or with `recursive` a folder
    /// and everything below it, in one change. False when nothing was there.
    pub fn remove<S: Source + ?Sized>(&mut self, src: &S, path: &[u8], recursive: bool) -> Result<bool> {
        value::check_key(path)?;
        let Some((_, e)) = self.locate(src, path)? else {
            return Ok(false);
        };
        if kind_of(&e) == FileKind::Directory {
            let below = self.below(src, path)?;
            if !below.is_empty() && !recursive {
                return Err(Error::NotEmpty(shown(path)));
            }
            // Deepest first is not needed: names go one by one, links counted down.
            for p in below {
                self.delete(src, &p)?;
            }
        }
        self.delete(src, path)
    }

    /// Every path below folder `dir`.
    fn below<S: Source + ?Sized>(&self, src: &S, dir: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let r = treekey::below(dir);
        self.tree.scan(src, &r.from, &mut |k, _| {
            if !k.starts_with(&r.prefix) {
                return Ok(false);
            }
            out.extend(treekey::path_of(k));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Swaps `a` and `b` (`RENAME_EXCHANGE`): each keeps its kind, attributes, inode number
    /// and what is below it. Both must exist, and neither may hold the other. One change:
    /// no reader sees the moment between the three moves.
    pub fn exchange<S: Source + ?Sized>(&mut self, src: &S, a: &[u8], b: &[u8]) -> Result<()> {
        check_path(a)?;
        check_path(b)?;
        for p in [a, b] {
            if self.raw_entry(src, &treekey::of_path(p))?.is_none() {
                return Err(Error::KeyNotFound(shown(p)));
            }
        }
        if a == b {
            return Ok(());
        }
        let inside = |x: &[u8], y: &[u8]| y.starts_with(x) && y.get(x.len()) == Some(&b'/');
        if inside(a, b) || inside(b, a) {
            return Err(Error::InvalidArgument(format!(
                "cannot exchange {} with what it holds ({})",
                shown(a),
                shown(b)
            )));
        }
        let dir = a.iter().rposition(|&c| c == b'/').map_or(&a[..0], |i| &a[..=i]);
        let mut n = 0u32;
        let tmp = loop {
            let t = [dir, format!(".lstore-exchange-{n}").as_bytes()].concat();
            if self.raw_entry(src, &treekey::of_path(&t))?.is_none() && self.below(src, &t)?.is_empty() {
                break t;
            }
            n += 1;
        };
        self.rename(src, a, &tmp, true)?;
        self.rename(src, b, a, true)?;
        self.rename(src, &tmp, b, true)
    }

    /// Renames `from` to `to` atomically: a file over a file (or nothing), a folder over an
    /// empty folder (or nothing) with everything below it. `no_replace` refuses an existing
    /// `to`. A folder cannot move into itself.
    pub fn rename<S: Source + ?Sized>(&mut self, src: &S, from: &[u8], to: &[u8], no_replace: bool) -> Result<()> {
        check_path(from)?;
        check_path(to)?;
        let from_k = treekey::of_path(from);
        let e = self
            .raw_entry(src, &from_k)?
            .ok_or_else(|| Error::KeyNotFound(shown(from)))?;
        if from == to {
            return Ok(());
        }
        let is_dir = match &e.body {
            Body::Link(_) => false,
            _ => kind_of(&e) == FileKind::Directory,
        };
        if is_dir && to.starts_with(from) && to.get(from.len()) == Some(&b'/') {
            return Err(Error::InvalidArgument(format!(
                "cannot move folder {} into itself ({})",
                shown(from),
                shown(to)
            )));
        }
        self.check_parent(src, to)?;
        if let Some((old_k, old)) = self.locate(src, to)? {
            if no_replace {
                return Err(Error::Exists(shown(to)));
            }
            // Two names of one file: POSIX has rename do nothing.
            if treekey::inode_of(&old_k).is_some() && self.locate(src, from)?.map(|(k, _)| k) == Some(old_k.clone()) {
                return Ok(());
            }
            match (is_dir, kind_of(&old) == FileKind::Directory) {
                (true, false) => return Err(Error::NotADirectory(shown(to))),
                (false, true) => return Err(Error::IsADirectory(shown(to))),
                _ => {}
            }
            self.remove(src, to, false)?;
        } else if !self.below(src, to)?.is_empty() {
            // Keys below a path with no entry (plain values put there): moving onto them
            // would merge two subtrees.
            return Err(Error::NotEmpty(shown(to)));
        }
        let mut moves = vec![(from_k, treekey::of_path(to))];
        if is_dir {
            let r = treekey::below(from);
            let mut new_prefix = to.to_vec();
            new_prefix.push(b'/');
            self.tree.scan(src, &r.from, &mut |k, _| {
                if !k.starts_with(&r.prefix) {
                    return Ok(false);
                }
                moves.push((k.to_vec(), [&new_prefix[..], &k[r.prefix.len()..]].concat()));
                Ok(true)
            })?;
        }
        for (old, new) in moves {
            let open = self.open.remove(&old);
            let bytes = self
                .tree
                .remove(src, &old)?
                .ok_or_else(|| Error::corrupt("a key listed a moment ago is gone"))?;
            self.keys = self.keys.saturating_sub(1);
            self.set_raw(src, &new, bytes)?;
            if let Some(o) = open {
                self.open.insert(new, o);
            }
        }
        Ok(())
    }

    /// The entries directly in folder `dir` (`""`: the root), in name order, hard links
    /// resolved; reads only those entries.
    pub fn read_dir<S: Source + ?Sized>(&self, src: &S, dir: &[u8]) -> Result<Vec<ValueInfo>> {
        if !dir.is_empty() {
            value::check_key(dir)?;
            match self.locate(src, dir)? {
                None => return Err(Error::KeyNotFound(shown(dir))),
                Some((_, e)) if kind_of(&e) != FileKind::Directory => return Err(Error::NotADirectory(shown(dir))),
                Some(_) => {}
            }
        }
        let mut out = Vec::new();
        self.scan_range(src, &treekey::folder(dir), &mut |path, e| {
            out.push(e.info(&path));
            Ok(true)
        })?;
        Ok(out)
    }
}
