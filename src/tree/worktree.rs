//! A layer's tree of keys, with the operations of a writable layer on top of the B-tree,
//! the block maps and the chunk store: put, read_at, write_at, truncate, delete, list.
//! Committed layers use it read-only; containers and layer builders write through it.
//! Values being written keep their block maps in memory until the tree is flushed, so many
//! small writes into one value copy each map node once per commit, not once per write.

use crate::chunk::{self, Ready};
use crate::error::{Error, Result};
use crate::format::compression::Compression;
use crate::format::ptr::ChunkPtr;
use crate::format::value::{self, Attrs, Body, Entry, ValueInfo, INLINE_MAX};
use crate::io::{Source, Writer};
use crate::tree::blockmap::BlockMap;
use crate::tree::btree::Tree;
use crate::tree::chunk_index::ChunkIndex;
use std::collections::HashMap;

/// Blocks prepared (hashed, compressed) per parallel batch.
const BATCH_BLOCKS: usize = 256;

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

struct Open {
    entry: Entry,
    map: BlockMap,
}

pub(crate) struct WorkTree {
    tree: Tree,
    open: HashMap<Vec<u8>, Open>,
    keys: u64,
}

fn shift_of(e: &Entry) -> u8 {
    match e.body {
        Body::Blocks { shift, .. } => shift,
        Body::Inline(_) => 0,
    }
}

fn map_of(e: &Entry) -> Result<BlockMap> {
    match e.body {
        Body::Blocks { height, root, .. } => BlockMap::at(height, root),
        Body::Inline(_) => Ok(BlockMap::empty()),
    }
}

/// Reads `buf.len()` bytes at `off` of a chunked value; returns how many were in range.
fn read_blocks<S: Source + ?Sized>(
    src: &S,
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
        if ptr.is_hole() {
            out.fill(0);
        } else {
            let rec = src.record(ptr.addr)?;
            ptr.check(&rec.header)?;
            let p = rec.payload()?;
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

fn read_block<S: Source + ?Sized>(src: &S, map: &BlockMap, shift: u8, idx: u64) -> Result<Vec<u8>> {
    let mut b = vec![0u8; 1 << shift];
    read_blocks(src, map, shift, u64::MAX, idx << shift, &mut b)?;
    Ok(b)
}

/// Stores blocks `(index, bytes)` of a value and points its map at them. Holes cost nothing.
fn store_blocks(
    cx: &mut Ctx,
    map: &mut BlockMap,
    shift: u8,
    compression: Compression,
    blocks: &[(u64, &[u8])],
) -> Result<()> {
    for batch in blocks.chunks(BATCH_BLOCKS) {
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

/// Writes `data` at `off` into a chunked value: whole blocks straight from `data`, the
/// partial blocks at either edge read, patched and rewritten.
fn write_blocks(cx: &mut Ctx, o: &mut Open, off: u64, data: &[u8]) -> Result<()> {
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
        let mut block = read_block(&cx.w, &o.map, shift, idx)?;
        block[(from - bstart) as usize..(to - bstart) as usize].copy_from_slice(src);
        edges.push((idx, block));
    }
    let edge_refs: Vec<(u64, &[u8])> = edges.iter().map(|(i, b)| (*i, b.as_slice())).collect();
    store_blocks(cx, &mut o.map, shift, compression, &edge_refs)?;
    store_blocks(cx, &mut o.map, shift, compression, &whole)?;
    o.entry.size = o.entry.size.max(end);
    Ok(())
}

impl WorkTree {
    pub fn at(root: u64, keys: u64) -> WorkTree {
        WorkTree {
            tree: Tree::at(root),
            open: HashMap::new(),
            keys,
        }
    }

    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Changes are held in memory that a flush would write.
    pub fn is_dirty(&self) -> bool {
        self.tree.is_dirty() || !self.open.is_empty()
    }

    fn entry<S: Source + ?Sized>(&self, src: &S, key: &[u8]) -> Result<Option<Entry>> {
        if let Some(o) = self.open.get(key) {
            return Ok(Some(o.entry.clone()));
        }
        self.tree.get(src, key)?.map(Entry::decode).transpose()
    }

    pub fn stat<S: Source + ?Sized>(&self, src: &S, key: &[u8]) -> Result<Option<ValueInfo>> {
        Ok(self.entry(src, key)?.map(|e| e.info(key)))
    }

    pub fn get<S: Source + ?Sized>(&self, src: &S, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(e) = self.entry(src, key)? else {
            return Ok(None);
        };
        match e.body {
            Body::Inline(d) => Ok(Some(d)),
            Body::Blocks { shift, .. } => {
                // The size comes from disk: an allocation that cannot be made is an error, not
                // an abort (a read of part of the value needs no such buffer).
                let too_big = || Error::OutOfRange(format!("value of {} bytes does not fit in memory", e.size));
                let len = usize::try_from(e.size).map_err(|_| too_big())?;
                let mut out = Vec::new();
                out.try_reserve_exact(len).map_err(|_| too_big())?;
                out.resize(len, 0);
                match self.open.get(key) {
                    Some(o) => read_blocks(src, &o.map, shift, e.size, 0, &mut out)?,
                    None => read_blocks(src, &map_of(&e)?, shift, e.size, 0, &mut out)?,
                };
                Ok(Some(out))
            }
        }
    }

    pub fn read_at<S: Source + ?Sized>(&self, src: &S, key: &[u8], off: u64, buf: &mut [u8]) -> Result<usize> {
        let e = self
            .entry(src, key)?
            .ok_or_else(|| Error::KeyNotFound(String::from_utf8_lossy(key).into()))?;
        match &e.body {
            Body::Inline(d) => {
                let Ok(start) = usize::try_from(off) else { return Ok(0) };
                let avail = d.get(start..).unwrap_or(&[]);
                let n = avail.len().min(buf.len());
                buf[..n].copy_from_slice(&avail[..n]);
                Ok(n)
            }
            Body::Blocks { shift, .. } => match self.open.get(key) {
                Some(o) => read_blocks(src, &o.map, *shift, e.size, off, buf),
                None => read_blocks(src, &map_of(&e)?, *shift, e.size, off, buf),
            },
        }
    }

    pub fn put(&mut self, cx: &mut Ctx, key: &[u8], data: &[u8], opts: &PutOptions) -> Result<()> {
        value::check_key(key)?;
        self.open.remove(key);
        let shift = match opts.block_size {
            Some(bs) => value::block_shift(bs)?,
            None => cx.block_shift,
        };
        let mut entry = Entry::inline(Vec::new());
        entry.attrs = opts.attrs.clone();
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
            write_blocks(cx, &mut o, 0, data)?;
            let (height, root) = o.map.flush(&mut cx.w)?;
            entry = o.entry;
            entry.size = data.len() as u64;
            entry.body = Body::Blocks { shift, height, root };
        }
        if self.tree.insert(&cx.w, key, entry.encode())?.is_none() {
            self.keys += 1;
        }
        Ok(())
    }

    /// The value under `key` opened for block writes, converting an inline value.
    fn open_value(&mut self, cx: &mut Ctx, key: &[u8]) -> Result<&mut Open> {
        if !self.open.contains_key(key) {
            let entry = match self.tree.get(&cx.w, key)? {
                Some(b) => Entry::decode(b)?,
                None => {
                    self.tree.insert(&cx.w, key, Entry::inline(Vec::new()).encode())?;
                    self.keys += 1;
                    Entry::inline(Vec::new())
                }
            };
            let open = match &entry.body {
                Body::Blocks { .. } => Open {
                    map: map_of(&entry)?,
                    entry,
                },
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
                    write_blocks(cx, &mut o, 0, &d)?;
                    o
                }
            };
            self.open.insert(key.to_vec(), open);
        }
        Ok(self.open.get_mut(key).expect("inserted above"))
    }

    pub fn write_at(&mut self, cx: &mut Ctx, key: &[u8], off: u64, data: &[u8]) -> Result<()> {
        value::check_key(key)?;
        let end = value::checked_end(off, data.len() as u64)?;
        if data.is_empty() {
            // As pwrite: nothing written, nothing extended; the key exists afterwards.
            if self.entry(&cx.w, key)?.is_none() {
                self.tree.insert(&cx.w, key, Entry::inline(Vec::new()).encode())?;
                self.keys += 1;
            }
            return Ok(());
        }
        if !self.open.contains_key(key) {
            let current = match self.tree.get(&cx.w, key)? {
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
                    if self.tree.insert(&cx.w, key, e.encode())?.is_none() {
                        self.keys += 1;
                    }
                    return Ok(());
                }
            }
        }
        let o = self.open_value(cx, key)?;
        write_blocks(cx, o, off, data)
    }

    pub fn truncate(&mut self, cx: &mut Ctx, key: &[u8], len: u64) -> Result<()> {
        value::check_key(key)?;
        value::checked_end(0, len)?;
        if !self.open.contains_key(key) {
            let e = self.tree.get(&cx.w, key)?.map(Entry::decode).transpose()?;
            let mut e = e.ok_or_else(|| Error::KeyNotFound(String::from_utf8_lossy(key).into()))?;
            if let Body::Inline(d) = &mut e.body {
                if len as usize <= INLINE_MAX {
                    d.resize(len as usize, 0);
                    e.size = len;
                    self.tree.insert(&cx.w, key, e.encode())?;
                    return Ok(());
                }
            }
        }
        let o = self.open_value(cx, key)?;
        let shift = shift_of(&o.entry);
        if len < o.entry.size {
            let keep = len.div_ceil(1 << shift);
            o.map.truncate(&cx.w, keep)?;
            let tail = (len & ((1 << shift) - 1)) as usize;
            if tail != 0 {
                let mut block = read_block(&cx.w, &o.map, shift, keep - 1)?;
                block[tail..].fill(0);
                let compression = o.entry.compression.unwrap_or(cx.compression);
                store_blocks(cx, &mut o.map, shift, compression, &[(keep - 1, &block)])?;
            }
        }
        o.entry.size = len;
        Ok(())
    }

    /// Inserts an encoded entry as it is (sharing its chunks and block map).
    pub fn put_entry<S: Source + ?Sized>(&mut self, src: &S, key: &[u8], entry: Vec<u8>) -> Result<()> {
        value::check_key(key)?;
        Entry::decode(&entry)?;
        self.open.remove(key);
        if self.tree.insert(src, key, entry)?.is_none() {
            self.keys += 1;
        }
        Ok(())
    }

    /// Removes a key; true when it existed.
    pub fn delete<S: Source + ?Sized>(&mut self, src: &S, key: &[u8]) -> Result<bool> {
        value::check_key(key)?;
        self.open.remove(key);
        let existed = self.tree.remove(src, key)?.is_some();
        if existed {
            self.keys -= 1;
        }
        Ok(existed)
    }

    /// Values whose key starts with `prefix`, in key order.
    pub fn list<S: Source + ?Sized>(&self, src: &S, prefix: &[u8]) -> Result<Vec<ValueInfo>> {
        let mut out = Vec::new();
        self.tree.scan(src, prefix, &mut |k, v| {
            if !k.starts_with(prefix) {
                return Ok(false);
            }
            out.push(match self.open.get(k) {
                Some(o) => o.entry.info(k),
                None => Entry::decode(v)?.info(k),
            });
            Ok(true)
        })?;
        Ok(out)
    }

    /// Writes every change and returns the tree's root address (0 when empty).
    pub fn flush(&mut self, w: &mut Writer) -> Result<u64> {
        let mut open: Vec<(Vec<u8>, Open)> = self.open.drain().collect();
        open.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, mut o) in open {
            let (height, root) = o.map.flush(w)?;
            let shift = shift_of(&o.entry);
            o.entry.body = Body::Blocks { shift, height, root };
            self.tree.insert(w, &key, o.entry.encode())?;
        }
        self.tree.flush(w)
    }
}
