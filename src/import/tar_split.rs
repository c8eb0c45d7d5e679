//! What makes a layer tar come back byte for byte: while a tar is applied, every byte that is
//! not a regular file's content (headers, PAX records, padding, the end blocks, anything after
//! them) is kept, in order, beside the layer as its `tar-split` annotation, with where each
//! file's content now lives. Replaying it against the same parent gives the original tar, so
//! its sha256, the OCI diffID, is preserved, as tar-split does for containers/storage.
//!
//! A file's content is read back from the layer at the path the tar wrote it to. When a later
//! entry of the same tar replaced or removed that path, the content was moved first into a
//! `tar-split.stash/N` annotation (stored once anyway: chunks are content-addressed).
//!
//! The annotation's bytes are laid out in format-spec.md §16.

use crate::import::digest::Sha256Writer;
use crate::{Error, Result};
use crate::{Id, Layer, LayerBuilder};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::rc::Rc;

pub(crate) const ANNOTATION: &str = "lstore.tar-split";
const STASH: &str = "lstore.tar-split.stash/";
const MAGIC: &[u8; 16] = b"lstore tarsplit1";
/// Magic, parent (presence byte and 16 bytes), tar size, entry count, diffID.
const HEAD_LEN: usize = 16 + 17 + 8 + 8 + 32;
const RAW: u8 = 1;
const CONTENT: u8 = 2;
const END: u8 = 0;
/// Record bytes gathered before they are written to the annotation.
const FLUSH_AT: usize = 1 << 20;
/// The most bytes a tar may carry between two entries that no file keeps (data of folders,
/// links or devices, skipped record entries): they are gathered in memory.
const RAW_MAX: usize = 64 << 20;

/// What the recorder has seen, shared by the reader the tar crate reads through and the code
/// that applies the entries.
#[derive(Default)]
struct Seen {
    sha: Sha256,
    total: u64,
    /// Bytes of a file's content still to come: they are not kept.
    content_left: u64,
    raw: Vec<u8>,
}

/// The reader between the decompressor and the tar reader: it hashes every byte and keeps
/// those that are not file content.
pub(crate) struct Tee<R> {
    inner: R,
    seen: Rc<RefCell<Seen>>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut seen = self.seen.borrow_mut();
        let got = &buf[..n];
        seen.sha.update(got);
        seen.total += n as u64;
        let content = (seen.content_left.min(n as u64)) as usize;
        seen.content_left -= content as u64;
        let raw = &got[content..];
        if seen.raw.len() + raw.len() > RAW_MAX {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "more than 64 MiB of data between two entries that no file keeps",
            ));
        }
        seen.raw.extend_from_slice(raw);
        Ok(n)
    }
}

/// The recording of one tar, written as it goes into the builder's `tar-split` annotation.
pub(crate) struct Recorder {
    seen: Rc<RefCell<Seen>>,
    parent: Option<Id>,
    /// Encoded records not yet written.
    out: Vec<u8>,
    /// Where the next records go in the annotation (after the head, written last).
    at: u64,
    entries: u64,
}

impl Recorder {
    pub(crate) fn new<R: Read>(inner: R, parent: Option<Id>) -> (Recorder, Tee<R>) {
        let seen = Rc::new(RefCell::new(Seen::default()));
        let tee = Tee {
            inner,
            seen: seen.clone(),
        };
        let rec = Recorder {
            seen,
            parent,
            out: Vec::new(),
            at: HEAD_LEN as u64,
            entries: 0,
        };
        (rec, tee)
    }

    /// The raw bytes seen so far become a record.
    fn take_raw(&mut self) {
        let raw = std::mem::take(&mut self.seen.borrow_mut().raw);
        for piece in raw.chunks(u32::MAX as usize) {
            self.out.push(RAW);
            self.out.extend_from_slice(&(piece.len() as u32).to_le_bytes());
            self.out.extend_from_slice(piece);
        }
    }

    /// The next `size` bytes the tar reader reads are entry `entry`'s content, written to
    /// `path`.
    pub(crate) fn content(&mut self, b: &mut LayerBuilder, entry: u64, path: &[u8], size: u64) -> Result<()> {
        self.take_raw();
        self.out.push(CONTENT);
        self.out.extend_from_slice(&entry.to_le_bytes());
        self.out.extend_from_slice(&(path.len() as u16).to_le_bytes());
        self.out.extend_from_slice(path);
        self.out.extend_from_slice(&size.to_le_bytes());
        self.seen.borrow_mut().content_left = size;
        self.flush(b, false)
    }

    /// Another piece of the tar was read: written out once enough has gathered.
    pub(crate) fn tick(&mut self, b: &mut LayerBuilder) -> Result<()> {
        self.flush(b, false)
    }

    fn flush(&mut self, b: &mut LayerBuilder, all: bool) -> Result<()> {
        if self.seen.borrow().raw.len() >= FLUSH_AT {
            self.take_raw();
        }
        if self.out.len() >= FLUSH_AT || (all && !self.out.is_empty()) {
            b.annotate_own_at(ANNOTATION, self.at, &self.out)?;
            self.at += self.out.len() as u64;
            self.out.clear();
        }
        Ok(())
    }

    /// The whole tar was read (`entries` of them, PAX and long-name records aside): the last
    /// records and the head. Gives the diffID.
    pub(crate) fn finish(mut self, b: &mut LayerBuilder, entries: u64) -> Result<[u8; 32]> {
        self.entries = entries;
        self.take_raw();
        self.out.push(END);
        self.flush(b, true)?;
        let seen = self.seen.borrow();
        let digest: [u8; 32] = seen.sha.clone().finalize().into();
        let mut head = Vec::with_capacity(HEAD_LEN);
        head.extend_from_slice(MAGIC);
        head.push(self.parent.is_some() as u8);
        head.extend_from_slice(&self.parent.map_or([0; 16], |p| p.0));
        head.extend_from_slice(&seen.total.to_le_bytes());
        head.extend_from_slice(&self.entries.to_le_bytes());
        head.extend_from_slice(&digest);
        b.annotate_own_at(ANNOTATION, 0, &head)?;
        Ok(digest)
    }
}

/// Moves the content entry `entry` wrote at `path` into a stash annotation, before the tar
/// replaces or removes that path.
pub(crate) fn stash(b: &mut LayerBuilder, entry: u64, path: &[u8], size: u64) -> Result<()> {
    let name = format!("{STASH}{entry}");
    let mut buf = vec![0u8; size.clamp(1, 8 << 20) as usize];
    let mut off = 0u64;
    loop {
        let n = b.read_at(path, off, &mut buf)?;
        if n == 0 {
            // Written even when empty, so a replay finds it.
            return if off == 0 {
                b.annotate_own_at(&name, 0, &[])
            } else {
                Ok(())
            };
        }
        b.annotate_own_at(&name, off, &buf[..n])?;
        off += n as u64;
    }
}

/// What a layer's `tar-split` says of the tar it came from.
pub struct TarOrigin {
    /// The layer the tar was applied on.
    pub parent: Option<Id>,
    /// The uncompressed tar's size in bytes.
    pub size: u64,
    /// Its entries (PAX and long-name records aside).
    pub entries: u64,
    /// The uncompressed tar's sha256: the OCI diffID.
    pub diff_id: [u8; 32],
}

impl TarOrigin {
    /// The diffID as OCI writes it: `sha256:` and 64 hex digits.
    pub fn diff_id_string(&self) -> String {
        crate::sha256_string(&self.diff_id)
    }
}

/// The tar `layer` was imported from, if it was.
pub fn tar_origin(layer: &Layer) -> Result<Option<TarOrigin>> {
    let Some(mut a) = layer.annotation(ANNOTATION)? else {
        return Ok(None);
    };
    let mut head = [0u8; HEAD_LEN];
    a.read_exact(&mut head).map_err(|_| bad())?;
    if &head[..16] != MAGIC || head[16] > 1 {
        return Err(bad());
    }
    let u64_at = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().unwrap_or([0; 8]));
    Ok(Some(TarOrigin {
        parent: (head[16] == 1).then(|| Id(head[17..33].try_into().unwrap_or([0; 16]))),
        size: u64_at(33),
        entries: u64_at(41),
        diff_id: head[49..81].try_into().map_err(|_| bad())?,
    }))
}

fn bad() -> Error {
    Error::corrupt("a layer's tar-split annotation is malformed")
}

/// Writes the tar `to` was imported from, byte for byte, when it was applied on `from`;
/// `Ok(None)` (nothing written) when it was not imported from a tar on that parent.
pub(crate) fn replay(from: Option<&Layer>, to: &Layer, out: &mut impl Write) -> Result<Option<u64>> {
    let Some(origin) = tar_origin(to)? else {
        return Ok(None);
    };
    if origin.parent != from.map(|f| f.id()) {
        return Ok(None);
    }
    // One snapshot of the annotations for the whole replay.
    let Some(notes) = to.annotations()? else {
        return Ok(None);
    };
    let stashed: HashSet<String> = (notes.names()?.into_iter()).filter(|n| n.starts_with(STASH)).collect();
    let Some(a) = notes.open(ANNOTATION)? else {
        return Ok(None);
    };
    let mut r = std::io::BufReader::with_capacity(1 << 20, a);
    let mut head = [0u8; HEAD_LEN];
    r.read_exact(&mut head).map_err(|_| bad())?;
    let mut sink = Sha256Writer::new(out);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match read_u8(&mut r)? {
            END => break,
            RAW => {
                let len = u64::from(read_u32(&mut r)?);
                copy_exact(&mut (&mut r).take(len), &mut sink, len, &mut buf)?;
            }
            CONTENT => {
                let entry = read_u64(&mut r)?;
                let path_len = usize::from(read_u16(&mut r)?);
                let mut path = vec![0u8; path_len];
                r.read_exact(&mut path).map_err(|_| bad())?;
                let size = read_u64(&mut r)?;
                let stash = format!("{STASH}{entry}");
                if stashed.contains(&stash) {
                    let mut s = notes.open(&stash)?.ok_or_else(bad)?;
                    copy_exact(&mut s, &mut sink, size, &mut buf)?;
                } else {
                    copy_exact(&mut to.open(&path)?, &mut sink, size, &mut buf)?;
                }
            }
            _ => return Err(bad()),
        }
    }
    let (digest, written, _) = sink.finish();
    if digest != origin.diff_id || written != origin.size {
        return Err(Error::corrupt(format!(
            "the tar rebuilt from layer {} does not match its diffID {}",
            to.id(),
            origin.diff_id_string()
        )));
    }
    Ok(Some(origin.entries))
}

/// Copies exactly `len` bytes; fewer is the recording's fault.
fn copy_exact(from: &mut impl Read, to: &mut impl Write, len: u64, buf: &mut [u8]) -> Result<()> {
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match from.read(&mut buf[..want]) {
            Ok(0) => return Err(bad()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Io(e)),
        };
        to.write_all(&buf[..n]).map_err(Error::Io)?;
        left -= n as u64;
    }
    Ok(())
}

fn read_u8(r: &mut impl Read) -> Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b).map_err(|_| bad())?;
    Ok(b[0])
}

fn read_u16(r: &mut impl Read) -> Result<u16> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b).map_err(|_| bad())?;
    Ok(u16::from_le_bytes(b))
}

fn read_u32(r: &mut impl Read) -> Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(|_| bad())?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b).map_err(|_| bad())?;
    Ok(u64::from_le_bytes(b))
}
