//! A layer's tree of keys, with the operations of a writable layer on top of the B-tree,
//! the block maps and the chunk store: put, read_at, write_at, truncate, delete, list.
//! Committed layers use it read-only; containers and layer builders write through it.
//! Values being written keep their block maps in memory until the tree is flushed, so many
//! small writes into one value copy each map node once per commit, not once per write.

use crate::chunk::{self, Hash, Ready};
use crate::error::{Error, Result};
use crate::format::compression::Compression;
use crate::format::ptr::ChunkPtr;
use crate::format::treekey;
use crate::format::value::{self, Attrs, Body, Entry, FileKind, ValueInfo, INLINE_MAX};
use crate::io::{Source, Writer};
use crate::tree::blockmap::{BlockMap, Resolve};
use crate::tree::btree::Tree;
use crate::tree::chunk_index::ChunkIndex;
use crate::tree::pack::{self, Packer};
use std::collections::{HashMap, VecDeque};

/// Blocks prepared (hashed, compressed) per parallel batch.
const BATCH_BLOCKS: usize = 256;

/// Clusters hashed at once when a write's blocks were not hashed before the lock.
const HASH_BATCH: usize = 8;

/// Everything a write needs: the appender, the chunk index and the store's defaults.
pub(crate) struct Ctx<'a> {
    pub w: Writer<'a>,
    pub chunks: &'a mut ChunkIndex,
    pub compression: Compression,
    pub block_shift: u8,
    /// Blocks of this write hashed and compressed before the lock was taken.
    pub ready: Ready<'a>,
}

/// How to store a value; every field falls back to the store's default.
#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// File attributes to keep with the value.
    pub attrs: Option<Attrs>,
    /// Block size for this value (a power of two, 4 KiB to 1 MiB), like ZFS's recordsize.
    pub block_size: Option<u64>,
    /// Compression for this value's chunks.
    pub compression: Option<Compression>,
}

pub(super) struct Open {
    pub(super) entry: Entry,
    map: BlockMap,
}

impl Open {
    /// Writes the value's block map and gives its entry, pointing at it. `resolve` gives the
    /// real pointer of a block in a pack written since it was mapped.
    fn flushed(mut self, w: &mut Writer, resolve: &Resolve) -> Result<Entry> {
        let (height, root) = self.map.flush(w, resolve)?;
        let shift = shift_of(&self.entry);
        self.entry.body = Body::Blocks { shift, height, root };
        Ok(self.entry)
    }
}

pub(crate) struct WorkTree {
    pub(super) tree: Tree,
    /// Values open for block writes, by the tree key their entry lives at.
    pub(super) open: HashMap<Vec<u8>, Open>,
    pub(super) keys: u64,
    /// The next inode number to give out, once read; written back at flush when changed.
    pub(super) next_ino: Option<u64>,
    pub(super) ino_changed: bool,
    /// The packs and clusters of a layer being built (small files and tails packed together,
    /// whole blocks compressed a cluster at a time); `None` for trees written in place
    /// (containers, volumes), whose blocks stand alone.
    pub(crate) pack: Option<Packer>,
    /// Values kept open by `put` only because a block points into a pack or cluster not yet
    /// written, with that record's number: flushed once it is, so a large import holds a few
    /// records' files in memory, not all of them.
    waiting: VecDeque<(Vec<u8>, u64)>,
}

fn shift_of(e: &Entry) -> u8 {
    match e.body {
        Body::Blocks { shift, .. } => shift,
        Body::Inline(_) | Body::Link(_) => 0,
    }
}

fn map_of(e: &Entry) -> Result<BlockMap> {
    match e.body {
        Body::Blocks { height, root, .. } => BlockMap::at(height, root),
        Body::Inline(_) | Body::Link(_) => Ok(BlockMap::empty()),
    }
}

/// The error for bytes or a kind change asked of a file of another kind: a folder says so as
/// `EISDIR` does.
fn kind_error(path: &[u8], kind: FileKind, what: &str) -> Error {
    let shown = String::from_utf8_lossy(path).into_owned();
    match kind {
        FileKind::Directory => Error::IsADirectory(shown),
        _ => Error::InvalidArgument(format!("{shown} is a {}: it {what}", kind.name())),
    }
}

/// Reads `buf.len()` bytes at `off` of a chunked value; returns how many were in range.
fn read_blocks<S: Source + ?Sized>(
    src: &S,
    pack: Option<&Packer>,
    map: &BlockMap,
    shift: u8,
    size: u64,
    off: u64,
    buf: &mut [u8],
) -> Result<usize> {
    if off >= size {
        return Ok(0);
    }
    let n = (buf.len() as u64).min(size - off) as usize;
    let bs = 1usize << shift;
    let mut done = 0;
    while done < n {
        let pos = off + done as u64;
        let in_off = (pos & (bs as u64 - 1)) as usize;
        let take = (bs - in_off).min(n - done);
        let out = &mut buf[done..done + take];
        let ptr = map.get(src, pos >> shift)?;
        let unwritten = pack.and_then(|pk| pk.unwritten(ptr));
        if ptr.is_hole() {
            out.fill(0);
        } else if let Some(p) = unwritten {
            let have = p.len().saturating_sub(in_off).min(take);
            if have > 0 {
                out[..have].copy_from_slice(&p[in_off..in_off + have]);
            }
            out[have..].fill(0);
        } else {
            let ptr = match pack {
                Some(pk) => pk.resolve(ptr)?,
                None => pack::no_packs(ptr)?,
            };
            let rec = src.record(ptr.addr)?;
            ptr.check(&rec.header)?;
            let p = pack::block_bytes(src.store_id(), &rec, &ptr)?;
            if p.len() > bs {
                return Err(Error::corrupt(format!(
                    "chunk at {:#x} is larger than its block",
                    ptr.addr
                )));
            }
            let have = p.len().saturating_sub(in_off).min(take);
            if have > 0 {
                out[..have].copy_from_slice(&p[in_off..in_off + have]);
            }
            out[have..].fill(0);
        }
        done += take;
    }
    Ok(n)
}

fn read_block<S: Source + ?Sized>(
    src: &S,
    pack: Option<&Packer>,
    map: &BlockMap,
    shift: u8,
    idx: u64,
) -> Result<Vec<u8>> {
    let mut b = vec![0u8; 1 << shift];
    read_blocks(src, pack, map, shift, u64::MAX, idx << shift, &mut b)?;
    Ok(b)
}

/// Blocks of a value to store: `(index, bytes)`.
type Blocks<'d> = Vec<(u64, &'d [u8])>;

/// Stores blocks `(index, bytes)` of a value and points its map at them. Holes cost nothing.
/// With a packer, the partial blocks it takes go into its pack, and whole blocks compressed
/// as its records are into clusters.
fn store_blocks(
    cx: &mut Ctx,
    pack: Option<&mut Packer>,
    map: &mut BlockMap,
    shift: u8,
    compression: Compression,
    blocks: &[(u64, &[u8])],
) -> Result<()> {
    let bs = 1usize << shift;
    let packs = |d: &[u8]| {
        pack.as_ref()
            .is_some_and(|p| p.takes(d.len(), chunk::trimmed_len(d), bs, compression))
    };
    let (packed, mut alone): (Blocks, Blocks) = blocks.iter().partition(|(_, d)| packs(d));
    if let Some(p) = pack {
        for (idx, d) in packed {
            // Trimmed again rather than kept: only partial blocks come here, a few per write.
            let t = &d[..chunk::trimmed_len(d)];
            let hash = *blake3::hash(t).as_bytes();
            let ptr = p.store(&mut cx.w, cx.chunks, t, hash)?;
            map.set(&cx.w, idx, ptr)?;
        }
        if p.compression() == compression {
            let whole: Blocks;
            (whole, alone) = alone.into_iter().partition(|(_, d)| d.len() == bs);
            store_clusters(cx, p, map, shift, compression, &whole)?;
        }
    }
    for batch in alone.chunks(BATCH_BLOCKS) {
        let mut taken: Vec<_> = batch
            .iter()
            .map(|(i, d)| cx.ready.take(*i, d, shift, compression))
            .collect();
        let missing: Vec<&[u8]> = batch
            .iter()
            .zip(&taken)
            .filter(|(_, t)| t.is_none())
            .map(|((_, d), _)| *d)
            .collect();
        let mut fresh = chunk::prepare_blocks(&missing, compression).into_iter();
        for t in taken.iter_mut().filter(|t| t.is_none()) {
            *t = fresh.next();
        }
        for ((idx, _), rec) in batch.iter().zip(taken.into_iter().map(|t| t.expect("prepared above"))) {
            let ptr = match rec {
                Some(r) => cx.chunks.store(&mut cx.w, &r)?,
                None => ChunkPtr::HOLE,
            };
            map.set(&cx.w, *idx, ptr)?;
        }
    }
    Ok(())
}

/// Stores whole blocks `(index, bytes)` of a value in a layer being built into clusters:
/// hashed before the lock where the write could be, here otherwise (in parallel, a batch of
/// clusters at a time so that the packer's threads compress one batch while the next is
/// hashed), and compressed on the packer's threads.
fn store_clusters(
    cx: &mut Ctx,
    p: &mut Packer,
    map: &mut BlockMap,
    shift: u8,
    compression: Compression,
    whole: &[(u64, &[u8])],
) -> Result<()> {
    let groups: Vec<&[(u64, &[u8])]> = chunk::cluster_groups(whole, shift).collect();
    for batch in groups.chunks(HASH_BATCH) {
        let blocks = || batch.iter().flat_map(|g| g.iter());
        let mut hashes: Vec<Option<Option<Hash>>> = blocks()
            .map(|&(i, d)| cx.ready.hash(i, d, shift, compression))
            .collect();
        let missing: Vec<&[u8]> = blocks()
            .zip(&hashes)
            .filter(|(_, h)| h.is_none())
            .map(|(b, _)| b.1)
            .collect();
        let mut fresh = chunk::hash_blocks(&missing).into_iter();
        for h in hashes.iter_mut().filter(|h| h.is_none()) {
            *h = fresh.next();
        }
        let mut hashes = hashes.into_iter().map(|h| h.expect("hashed above"));
        for group in batch {
            let hashed: Vec<(&[u8], Option<Hash>)> = group
                .iter()
                .map(|&(_, d)| (&d[..chunk::trimmed_len(d)], hashes.next().expect("one per block")))
                .collect();
            let ptrs = p.store_cluster(&mut cx.w, cx.chunks, &hashed)?;
            for ((idx, _), ptr) in group.iter().zip(ptrs) {
                map.set(&cx.w, *idx, ptr)?;
            }
        }
    }
    Ok(())
}

/// Writes `data` at `off` into a chunked value: whole blocks straight from `data`, the
/// partial blocks at either edge read, patched and rewritten.
fn write_blocks(cx: &mut Ctx, mut pack: Option<&mut Packer>, o: &mut Open, off: u64, data: &[u8]) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let shift = shift_of(&o.entry);
    let compression = o.entry.compression.unwrap_or(cx.compression);
    let bs = 1u64 << shift;
    let end = off + data.len() as u64;
    let mut edges: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut whole: Vec<(u64, &[u8])> = Vec::new();
    for idx in off >> shift..=(end - 1) >> shift {
        let (bstart, bend) = (idx << shift, (idx << shift) + bs);
        let (from, to) = (bstart.max(off), bend.min(end));
        let src = &data[(from - off) as usize..(to - off) as usize];
        // Nothing old to keep: a whole block, or one whose old bytes all lie under the write
        // (bytes past the value's size are always zero).
        if from == bstart && (to == bend || to >= o.entry.size) {
            whole.push((idx, src));
            continue;
        }
        let mut block = read_block(&cx.w, pack.as_deref(), &o.map, shift, idx)?;
        block[(from - bstart) as usize..(to - bstart) as usize].copy_from_slice(src);
        edges.push((idx, block));
    }
    let edge_refs: Vec<(u64, &[u8])> = edges.iter().map(|(i, b)| (*i, b.as_slice())).collect();
    store_blocks(cx, pack.as_deref_mut(), &mut o.map, shift, compression, &edge_refs)?;
    store_blocks(cx, pack, &mut o.map, shift, compression, &whole)?;
    o.entry.size = o.entry.size.max(end);
    Ok(())
}

impl WorkTree {
    pub fn at(root: u64, keys: u64) -> WorkTree {
        WorkTree {
            tree: Tree::at(root),
            open: HashMap::new(),
            keys,
            next_ino: None,
            ino_changed: false,
            pack: None,
            waiting: VecDeque::new(),
        }
    }

    /// Paths in the tree (inode entries and the counter are not counted).
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Changes are held in memory that a flush would write.
    pub fn is_dirty(&self) -> bool {
        self.tree.is_dirty() || !self.open.is_empty() || self.ino_changed
    }

    /// The entry at tree key `k`, as changed in memory.
    pub(super) fn raw_entry<S: Source + ?Sized>(&self, src: &S, k: &[u8]) -> Result<Option<Entry>> {
        if let Some(o) = self.open.get(k) {
            return Ok(Some(o.entry.clone()));
        }
        self.tree.get(src, k)?.map(Entry::decode).transpose()
    }

    /// Where the file named `path` lives: the path's own key, or for a name of a hard link
    /// the shared inode entry's; with the entry.
    pub(super) fn locate<S: Source + ?Sized>(&self, src: &S, path: &[u8]) -> Result<Option<(Vec<u8>, Entry)>> {
        // No path holds a NUL: such a key names nothing (it would reach the tree's own keys).
        if path.is_empty() || path.contains(&0) {
            return Ok(None);
        }
        let k = treekey::of_path(path);
        match self.raw_entry(src, &k)? {
            Some(Entry {
                body: Body::Link(ino), ..
            }) => Ok(Some(self.inode(src, ino)?)),
            Some(e) => Ok(Some((k, e))),
            None => Ok(None),
        }
    }

    /// The shared entry of a hard-linked file, with its key.
    pub(super) fn inode<S: Source + ?Sized>(&self, src: &S, ino: u64) -> Result<(Vec<u8>, Entry)> {
        let ik = treekey::of_inode(ino);
        match self.raw_entry(src, &ik)? {
            Some(e) if !matches!(e.body, Body::Link(_)) => Ok((ik, e)),
            _ => Err(Error::corrupt(format!(
                "a hard link names inode {ino}, which is missing"
            ))),
        }
    }

    /// Inserts an encoded entry at tree key `k`, counting new paths.
    pub(super) fn set_raw<S: Source + ?Sized>(&mut self, src: &S, k: &[u8], entry: Vec<u8>) -> Result<()> {
        if self.tree.insert(src, k, entry)?.is_none() && treekey::is_path(k) {
            self.keys += 1;
        }
        Ok(())
    }

    /// Removes tree key `k` (and what is open of it); true when it was there.
    pub(super) fn remove_raw<S: Source + ?Sized>(&mut self, src: &S, k: &[u8]) -> Result<bool> {
        self.open.remove(k);
        let existed = self.tree.remove(src, k)?.is_some();
        if existed && treekey::is_path(k) {
            self.keys = self.keys.saturating_sub(1);
        }
        Ok(existed)
    }

    pub fn stat<S: Source + ?Sized>(&self, src: &S, key: &[u8]) -> Result<Option<ValueInfo>> {
        Ok(self.locate(src, key)?.map(|(_, e)| e.info(key)))
    }

    pub fn get<S: Source + ?Sized>(&self, src: &S, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some((k, e)) = self.locate(src, key)? else {
            return Ok(None);
        };
        match e.body {
            Body::Inline(d) => Ok(Some(d)),
            Body::Link(_) => unreachable!("locate resolves hard links"),
            Body::Blocks { shift, .. } => {
                // The size comes from disk: an allocation that cannot be made is an error, not
                // an abort (a read of part of the value needs no such buffer).
                let too_big = || Error::OutOfRange(format!("value of {} bytes does not fit in memory", e.size));
                let len = usize::try_from(e.size).map_err(|_| too_big())?;
                let mut out = Vec::new();
                out.try_reserve_exact(len).map_err(|_| too_big())?;
                out.resize(len, 0);
                let pack = self.pack.as_ref();
                match self.open.get(&k) {
                    Some(o) => read_blocks(src, pack, &o.map, shift, e.size, 0, &mut out)?,
                    None => read_blocks(src, pack, &map_of(&e)?, shift, e.size, 0, &mut out)?,
                };
                Ok(Some(out))
            }
        }
    }

    pub fn read_at<S: Source + ?Sized>(&self, src: &S, key: &[u8], off: u64, buf: &mut [u8]) -> Result<usize> {
        let (k, e) = self
            .locate(src, key)?
            .ok_or_else(|| Error::KeyNotFound(String::from_utf8_lossy(key).into()))?;
        match &e.body {
            Body::Inline(d) => {
                let Ok(start) = usize::try_from(off) else { return Ok(0) };
                let avail = d.get(start..).unwrap_or(&[]);
                let n = avail.len().min(buf.len());
                buf[..n].copy_from_slice(&avail[..n]);
                Ok(n)
            }
            Body::Link(_) => unreachable!("locate resolves hard links"),
            Body::Blocks { shift, .. } => match self.open.get(&k) {
                Some(o) => read_blocks(src, self.pack.as_ref(), &o.map, *shift, e.size, off, buf),
                None => read_blocks(src, self.pack.as_ref(), &map_of(&e)?, *shift, e.size, off, buf),
            },
        }
    }

    /// Replaces a value's bytes. Through a name of a hard link, every name sees the new bytes;
    /// the file keeps its inode number, link count and (when `opts` gives none) attributes.
    pub fn put(&mut self, cx: &mut Ctx, key: &[u8], data: &[u8], opts: &PutOptions) -> Result<()> {
        value::check_key(key)?;
        if let Some(a) = &opts.attrs {
            a.check()?;
        }
        let (k, old, old_kind) = match self.locate(&cx.w, key)? {
            // A plain value is a regular file.
            Some((k, e)) => {
                let kind = e.attrs.as_ref().map_or(FileKind::Regular, |a| a.kind);
                (k, e.attrs, Some(kind))
            }
            None => (treekey::of_path(key), None, None),
        };
        let new_kind = opts
            .attrs
            .as_ref()
            .map(|a| a.kind)
            .or(old_kind)
            .unwrap_or(FileKind::Regular);
        if let Some(old_kind) = old_kind.filter(|&k| k != new_kind) {
            return Err(kind_error(
                key,
                old_kind,
                &format!("cannot become a {}", new_kind.name()),
            ));
        }
        if new_kind != FileKind::Regular && !data.is_empty() {
            return Err(kind_error(key, new_kind, "holds no bytes"));
        }
        self.open.remove(&k);
        let shift = match opts.block_size {
            Some(bs) => value::block_shift(bs)?,
            None => cx.block_shift,
        };
        let mut entry = Entry::inline(Vec::new());
        // The store numbers inodes: a file keeps its number and link count, a new one gets the
        // next number (a caller's is never taken, so no two files can share one).
        entry.attrs = match (opts.attrs.clone(), old) {
            (Some(mut new), Some(old)) => {
                (new.ino, new.nlink) = (old.ino, old.nlink);
                Some(new)
            }
            (Some(mut new), None) => {
                (new.ino, new.nlink) = (self.next_ino(&cx.w)?, 1);
                Some(new)
            }
            (None, old) => old,
        }
        .map(Attrs::normalized);
        entry.compression = opts.compression.map(Compression::check).transpose()?;
        if data.len() <= INLINE_MAX && opts.block_size.is_none() {
            entry.body = Body::Inline(data.to_vec());
            entry.size = data.len() as u64;
        } else {
            entry.body = Body::Blocks {
                shift,
                height: 0,
                root: 0,
            };
            let mut o = Open {
                entry,
                map: BlockMap::empty(),
            };
            write_blocks(cx, self.pack.as_mut(), &mut o, 0, data)?;
            o.entry.size = data.len() as u64;
            if let Some(pack_no) = o.map.newest_pending() {
                // A block points into a pack not yet written: kept open until it is, as a
                // value being written is (its entry there says nothing of its blocks
                // meanwhile).
                self.set_raw(&cx.w, &k, o.entry.encode())?;
                self.open.insert(k.clone(), o);
                self.waiting.push_back((k, pack_no));
                return self.flush_waiting(&mut cx.w);
            }
            entry = o.flushed(&mut cx.w, &pack::no_packs)?;
        }
        self.set_raw(&cx.w, &k, entry.encode())
    }

    /// The value at tree key `k` opened for block writes, converting an inline value.
    fn open_value(&mut self, cx: &mut Ctx, k: &[u8]) -> Result<&mut Open> {
        if !self.open.contains_key(k) {
            let entry = match self.tree.get(&cx.w, k)? {
                Some(b) => Entry::decode(b)?,
                None => {
                    self.set_raw(&cx.w, k, Entry::inline(Vec::new()).encode())?;
                    Entry::inline(Vec::new())
                }
            };
            let open = match &entry.body {
                Body::Blocks { .. } => Open {
                    map: map_of(&entry)?,
                    entry,
                },
                Body::Link(_) => unreachable!("callers resolve hard links"),
                Body::Inline(d) => {
                    let d = d.clone();
                    let mut e = entry;
                    e.body = Body::Blocks {
                        shift: cx.block_shift,
                        height: 0,
                        root: 0,
                    };
                    e.size = 0;
                    let mut o = Open {
                        entry: e,
                        map: BlockMap::empty(),
                    };
                    write_blocks(cx, self.pack.as_mut(), &mut o, 0, &d)?;
                    o
                }
            };
            self.open.insert(k.to_vec(), open);
        }
        Ok(self.open.get_mut(k).expect("inserted above"))
    }

    /// The tree key a write of `path` goes to: the file's, or a new key for the path. Only a
    /// regular file takes bytes.
    fn write_key<S: Source + ?Sized>(&self, src: &S, path: &[u8]) -> Result<Vec<u8>> {
        value::check_key(path)?;
        Ok(match self.locate(src, path)? {
            Some((k, e)) => {
                let kind = e.attrs.map_or(FileKind::Regular, |a| a.kind);
                if kind != FileKind::Regular {
                    return Err(kind_error(path, kind, "holds no bytes"));
                }
                k
            }
            None => treekey::of_path(path),
        })
    }

    pub fn write_at(&mut self, cx: &mut Ctx, key: &[u8], off: u64, data: &[u8]) -> Result<()> {
        let k = self.write_key(&cx.w, key)?;
        let end = value::checked_end(off, data.len() as u64)?;
        if data.is_empty() {
            // As pwrite: nothing written, nothing extended; the key exists afterwards.
            if self.raw_entry(&cx.w, &k)?.is_none() {
                self.set_raw(&cx.w, &k, Entry::inline(Vec::new()).encode())?;
            }
            return Ok(());
        }
        if !self.open.contains_key(&k) {
            let current = match self.tree.get(&cx.w, &k)? {
                Some(b) => Some(Entry::decode(b)?),
                None => None,
            };
            let fits_inline = end as usize <= INLINE_MAX;
            if let Some(mut e) = current
                .clone()
                .or_else(|| fits_inline.then(|| Entry::inline(Vec::new())))
            {
                if let (Body::Inline(d), true) = (&mut e.body, fits_inline) {
                    let new_len = d.len().max(end as usize);
                    d.resize(new_len, 0);
                    d[off as usize..end as usize].copy_from_slice(data);
                    e.size = new_len as u64;
                    return self.set_raw(&cx.w, &k, e.encode());
                }
            }
        }
        self.open_value(cx, &k)?;
        let o = self.open.get_mut(&k).expect("opened above");
        write_blocks(cx, self.pack.as_mut(), o, off, data)
    }

    pub fn truncate(&mut self, cx: &mut Ctx, key: &[u8], len: u64) -> Result<()> {
        value::check_key(key)?;
        value::checked_end(0, len)?;
        let (k, mut e) = self
            .locate(&cx.w, key)?
            .ok_or_else(|| Error::KeyNotFound(String::from_utf8_lossy(key).into()))?;
        if let Some(kind) = e.attrs.as_ref().map(|a| a.kind).filter(|&k| k != FileKind::Regular) {
            return Err(kind_error(key, kind, "holds no bytes"));
        }
        if !self.open.contains_key(&k) {
            if let Body::Inline(d) = &mut e.body {
                if len as usize <= INLINE_MAX {
                    d.resize(len as usize, 0);
                    e.size = len;
                    return self.set_raw(&cx.w, &k, e.encode());
                }
            }
        }
        self.open_value(cx, &k)?;
        let o = self.open.get_mut(&k).expect("opened above");
        let shift = shift_of(&o.entry);
        if len < o.entry.size {
            let keep = len.div_ceil(1 << shift);
            o.map.truncate(&cx.w, keep)?;
            let tail = (len & ((1 << shift) - 1)) as usize;
            if tail != 0 {
                let mut block = read_block(&cx.w, self.pack.as_ref(), &o.map, shift, keep - 1)?;
                block[tail..].fill(0);
                let compression = o.entry.compression.unwrap_or(cx.compression);
                store_blocks(
                    cx,
                    self.pack.as_mut(),
                    &mut o.map,
                    shift,
                    compression,
                    &[(keep - 1, &block)],
                )?;
            }
        }
        o.entry.size = len;
        Ok(())
    }

    /// Inserts an encoded entry under a path as it is (sharing its chunks and block map).
    pub fn put_entry<S: Source + ?Sized>(&mut self, src: &S, key: &[u8], entry: Vec<u8>) -> Result<()> {
        value::check_key(key)?;
        let mut e = Entry::decode(&entry)?;
        if matches!(e.body, Body::Link(_)) {
            return Err(Error::InvalidArgument(
                "a hard link's entry cannot be copied alone".into(),
            ));
        }
        let k = treekey::of_path(key);
        let old = self.raw_entry(src, &k)?;
        if let Some(a) = e.attrs.as_mut() {
            // A copied file is a new file of this tree: the number is this tree's to give.
            a.ino = match old.and_then(|o| o.attrs) {
                Some(o) if o.ino != 0 => o.ino,
                _ => self.next_ino(src)?,
            };
            a.nlink = 1;
        }
        self.open.remove(&k);
        self.set_raw(src, &k, e.encode())
    }

    /// Removes one name; true when it existed. A hard-linked file loses one link and goes when
    /// its last name does. A folder's entry goes alone (see `remove` for a whole subtree).
    pub fn delete<S: Source + ?Sized>(&mut self, src: &S, key: &[u8]) -> Result<bool> {
        value::check_key(key)?;
        let k = treekey::of_path(key);
        let Some(e) = self.raw_entry(src, &k)? else {
            return Ok(false);
        };
        if let Body::Link(ino) = e.body {
            let (ik, inode) = self.inode(src, ino)?;
            match inode.attrs.map_or(1, |a| a.nlink) {
                0 | 1 => {
                    self.remove_raw(src, &ik)?;
                }
                _ => self.modify(src, &ik, |e| {
                    if let Some(a) = e.attrs.as_mut() {
                        a.nlink -= 1;
                    }
                })?,
            }
        }
        self.remove_raw(src, &k)
    }

    /// Changes the entry at tree key `k` in place (the open copy, when it is open).
    pub(super) fn modify<S: Source + ?Sized>(&mut self, src: &S, k: &[u8], f: impl FnOnce(&mut Entry)) -> Result<()> {
        if let Some(o) = self.open.get_mut(k) {
            f(&mut o.entry);
            return Ok(());
        }
        let mut e = self
            .tree
            .get(src, k)?
            .map(Entry::decode)
            .transpose()?
            .ok_or_else(|| Error::KeyNotFound(String::from_utf8_lossy(k).into()))?;
        f(&mut e);
        self.set_raw(src, k, e.encode())
    }

    /// Entries of tree keys in `range`, in key order, hard links resolved: `f(path, entry)`
    /// until it returns false.
    pub(super) fn scan_range<S: Source + ?Sized>(
        &self,
        src: &S,
        range: &treekey::Range,
        f: &mut dyn FnMut(Vec<u8>, Entry) -> Result<bool>,
    ) -> Result<()> {
        let mut found = Vec::new();
        self.tree.scan(src, &range.from, &mut |k, v| {
            if !k.starts_with(&range.prefix) {
                return Ok(false);
            }
            found.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })?;
        for (k, v) in found {
            let Some(path) = treekey::path_of(&k) else {
                continue;
            };
            let e = match self.open.get(&k) {
                Some(o) => o.entry.clone(),
                None => Entry::decode(&v)?,
            };
            let e = match e.body {
                Body::Link(ino) => self.inode(src, ino)?.1,
                _ => e,
            };
            if !f(path, e)? {
                break;
            }
        }
        Ok(())
    }

    /// Values whose path starts with `prefix`, folder by folder: each folder's entries in name
    /// order, a folder's entry before what is in it.
    pub fn list<S: Source + ?Sized>(&self, src: &S, prefix: &[u8]) -> Result<Vec<ValueInfo>> {
        let mut out = Vec::new();
        if prefix.contains(&0) {
            return Ok(out);
        }
        for r in treekey::starting_with(prefix) {
            self.scan_range(src, &r, &mut |path, e| {
                out.push(e.info(&path));
                Ok(true)
            })?;
        }
        Ok(out)
    }

    /// Every path below folder `dir` with its entry encoded as a standalone value (a name of a
    /// hard link gets the file's own entry, with one link), for copying into another tree.
    pub fn entries_below<S: Source + ?Sized>(&self, src: &S, dir: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        self.scan_range(src, &treekey::below(dir), &mut |path, mut e| {
            if let Some(a) = e.attrs.as_mut() {
                a.nlink = 1;
            }
            out.push((path[dir.len() + 1..].to_vec(), e.encode()));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Flushes the values `put` kept open whose packs and clusters are written since.
    fn flush_waiting(&mut self, w: &mut Writer) -> Result<()> {
        let Some(pack) = self.pack.as_ref() else {
            return Ok(());
        };
        let written_below = pack.written_below();
        while let Some((key, pack_no)) = self.waiting.front().cloned() {
            if pack_no >= written_below {
                break;
            }
            self.waiting.pop_front();
            // Renamed or removed since: the value is flushed where it went, or not at all.
            let Some(newest) = self.open.get(&key).map(|o| o.map.newest_pending()) else {
                continue;
            };
            match newest {
                // Written to since, into a record not yet written: waits for that one (never
                // dropped: the tree's entry says nothing of its blocks meanwhile).
                Some(n) if n >= written_below => self.waiting.push_back((key, n)),
                _ => {
                    let o = self.open.remove(&key).expect("looked up above");
                    let entry = o.flushed(w, &|p| pack.resolve(p))?;
                    self.tree.insert(w, &key, entry.encode())?;
                }
            }
        }
        Ok(())
    }

    /// Writes the pack being filled and every cluster: a flush needs every block in its place.
    pub fn seal_pack(&mut self, w: &mut Writer, chunks: &mut ChunkIndex) -> Result<()> {
        match self.pack.as_mut() {
            Some(p) => p.finish(w, chunks),
            None => Ok(()),
        }
    }

    /// Writes every change and returns the tree's root address (0 when empty). A pack being
    /// filled must have been written first ([`seal_pack`](Self::seal_pack)).
    pub fn flush(&mut self, w: &mut Writer) -> Result<u64> {
        if self.ino_changed {
            let next = self.next_ino.expect("changed after read");
            self.tree.insert(
                w,
                treekey::NEXT_INO,
                Entry::inline(treekey::encode_next_ino(next)).encode(),
            )?;
            self.ino_changed = false;
        }
        let mut open: Vec<(Vec<u8>, Open)> = self.open.drain().collect();
        open.sort_by(|a, b| a.0.cmp(&b.0));
        let pack = self.pack.as_ref();
        let resolve = |p| pack.map_or_else(|| pack::no_packs(p), |pk| pk.resolve(p));
        for (key, o) in open {
            let entry = o.flushed(w, &resolve)?;
            self.tree.insert(w, &key, entry.encode())?;
        }
        self.tree.flush(w)
    }
}
