//! Records: the unit appended to segments. A 64-byte header (kind, codec, lengths, blake3 of
//! the raw payload, crc32 over header and stored bytes) followed by the stored bytes, padded
//! to a 64-byte boundary. Records are position-independent and never rewritten while live.

use super::compression::Compression;
use super::le::{view, U32};
use super::value::MAX_BLOCK_SHIFT;
use crate::error::{Error, Result};
use bytemuck::{Pod, Zeroable};
use std::borrow::Cow;

pub const HEADER_LEN: usize = 64;
pub const ALIGN: u64 = 64;
const MAGIC: [u8; 4] = *b"LREC";

/// A record header as stored. The crc covers its first 60 bytes and the stored payload.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct RawHeader {
    magic: [u8; 4],
    kind: u8,
    codec: u8,
    zero: [u8; 2],
    stored_len: U32,
    raw_len: U32,
    hash: [u8; 32],
    zero2: [u8; 12],
    crc: U32,
}

/// The header bytes the crc covers (all but the crc itself).
const CRC_COVERS: usize = HEADER_LEN - 4;

impl RawHeader {
    fn new(kind: Kind, codec: u8, stored_len: usize, raw_len: usize, hash: [u8; 32]) -> RawHeader {
        RawHeader {
            magic: MAGIC,
            kind: kind as u8,
            codec,
            stored_len: U32::new(stored_len as u32),
            raw_len: U32::new(raw_len as u32),
            hash,
            ..Zeroable::zeroed()
        }
    }

    /// The header's bytes with the crc over them and `stored` filled in.
    fn sealed(mut self, stored: &[u8]) -> [u8; HEADER_LEN] {
        let mut bytes: [u8; HEADER_LEN] = bytemuck::cast(self);
        self.crc = U32::new(checksum(&bytes, stored));
        bytes = bytemuck::cast(self);
        bytes
    }
}

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Filler to the end of a segment; its payload is not written.
    Pad = 0,
    /// One block of a value (trailing zeros trimmed).
    Chunk = 1,
    /// A B-tree node (layer trees, catalog, chunk-index runs).
    Node = 2,
    /// A block-map node.
    MapNode = 3,
    /// The free pool (`format::pool`).
    Pool = 4,
}

impl Kind {
    /// The most payload a record of this kind holds: a chunk is one block at most; a block-map
    /// node is 512 slots; a tree node splits past 4 KiB but one entry may hold a 4 KiB key and
    /// a container's mounts (up to 1 MiB), so 4 MiB, the smallest segment, bounds it.
    pub fn max_stored(self) -> u64 {
        match self {
            Kind::Chunk => 1 << MAX_BLOCK_SHIFT,
            Kind::MapNode => 64 << 10,
            Kind::Node | Kind::Pad | Kind::Pool => 4 << 20,
        }
    }

    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            0 => Kind::Pad,
            1 => Kind::Chunk,
            2 => Kind::Node,
            3 => Kind::MapNode,
            4 => Kind::Pool,
            _ => return None,
        })
    }
}

/// A record ready to append: header complete (crc included), payload as stored.
pub struct Prepared<'a> {
    pub header: [u8; HEADER_LEN],
    pub stored: Cow<'a, [u8]>,
}

impl Prepared<'_> {
    fn raw(&self) -> RawHeader {
        bytemuck::cast(self.header)
    }
    pub fn hash(&self) -> [u8; 32] {
        self.raw().hash
    }
    pub fn crc(&self) -> u32 {
        self.raw().crc.get()
    }
    /// `(stored_len, raw_len)` as the header holds them.
    pub fn lengths(&self) -> (u32, u32) {
        let r = self.raw();
        (r.stored_len.get(), r.raw_len.get())
    }
    /// Bytes the record takes in a segment, padding included.
    pub fn size(&self) -> u64 {
        padded(self.stored.len())
    }
}

pub fn padded(stored_len: usize) -> u64 {
    (HEADER_LEN as u64 + stored_len as u64).div_ceil(ALIGN) * ALIGN
}

/// Hashes, optionally compresses, and checksums `raw`. Pure: safe to run on many threads.
pub fn prepare(kind: Kind, raw: &[u8], compression: Compression) -> Prepared<'_> {
    let hash = blake3::hash(raw);
    prepare_hashed(kind, raw, *hash.as_bytes(), compression)
}

pub fn prepare_hashed(kind: Kind, raw: &[u8], hash: [u8; 32], compression: Compression) -> Prepared<'_> {
    let (codec, stored): (u8, Cow<[u8]>) = match compression {
        Compression::Zstd(level) if raw.len() >= 64 => match compress(raw, level) {
            // A chunk that does not shrink is kept raw: no inflation on random data.
            Ok(c) if c.len() + 16 < raw.len() => (1, Cow::Owned(c)),
            _ => (0, Cow::Borrowed(raw)),
        },
        _ => (0, Cow::Borrowed(raw)),
    };
    let header = RawHeader::new(kind, codec, stored.len(), raw.len(), hash).sealed(&stored);
    Prepared { header, stored }
}

thread_local! {
    /// One compression context per thread, kept between records: making one allocates and
    /// clears its tables, a few percent of a small block's compression.
    static ENCODER: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// The largest zstd block lstore writes (zstd's own limit is 128 KiB). A read of a block in
/// a pack or a cluster decompresses the record up to that block's end, rounded up to a zstd
/// block: smaller zstd blocks stop it sooner, and measured on a Debian root file system's
/// small files they also store a little less (each block's entropy tables fit its bytes).
const ZSTD_BLOCK: usize = 16 << 10;

/// Levels below this keep zstd's own block size: they are chosen for speed, and building
/// entropy tables for 16 KiB blocks costs level 1 about a tenth of its rate (measured on a
/// 1 GiB ingest).
const SMALL_BLOCKS_FROM: i32 = 3;

/// `raw` compressed as one zstd frame at `level`.
fn compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    ENCODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            let mut c = zstd::bulk::Compressor::new(level)?;
            if level >= SMALL_BLOCKS_FROM {
                // A zstd that does not know the parameter keeps its own block size: records
                // are larger to read into, nothing else.
                let _ = c.set_parameter(zstd::zstd_safe::CParameter::MaxBlockSize(ZSTD_BLOCK as u32));
            }
            *slot = Some((level, c));
        }
        let (_, c) = slot.as_mut().expect("made above");
        c.compress(raw)
    })
}

/// A pad record that fills `total` bytes (a multiple of [`ALIGN`], at least one header).
pub fn pad(total: u64) -> [u8; HEADER_LEN] {
    RawHeader::new(Kind::Pad, 0, (total - HEADER_LEN as u64) as usize, 0, [0; 32]).sealed(&[])
}

fn checksum(header: &[u8; HEADER_LEN], stored: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header[..CRC_COVERS]);
    h.update(stored);
    h.finalize()
}

/// Recomputes the crc of the record that starts `bytes`, whatever its header says, as far
/// as the bytes reach; returns the new crc. Test machinery: the structure-aware fuzzer damages
/// records and then makes them pass their checks, so hostile content reaches the decoders.
#[cfg(feature = "test-support")]
pub(crate) fn reseal(bytes: &mut [u8]) -> Option<u32> {
    let raw: RawHeader = *view::<RawHeader>(bytes)?;
    let stored_end = (HEADER_LEN + raw.stored_len.get() as usize).min(bytes.len());
    let covered: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().ok()?;
    let stored = if raw.kind == Kind::Pad as u8 {
        &[][..]
    } else {
        &bytes[HEADER_LEN..stored_end]
    };
    let crc = checksum(&covered, stored);
    bytes[CRC_COVERS..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    Some(crc)
}

/// The decoded header of a record.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub kind: Kind,
    pub codec: u8,
    pub stored_len: u32,
    pub raw_len: u32,
    pub crc: u32,
}

impl Header {
    /// Decodes and sanity-checks a header; `addr` only names the place in errors.
    pub fn parse(bytes: &[u8], addr: u64) -> Result<Header> {
        let bad = |what: &str| Error::corrupt(format!("record at {addr:#x}: {what}"));
        let b: &RawHeader = view(bytes).ok_or_else(|| bad("truncated header"))?;
        if b.magic != MAGIC {
            return Err(bad("bad magic"));
        }
        let kind = Kind::from_u8(b.kind).ok_or_else(|| bad("unknown kind"))?;
        let codec = b.codec;
        if codec > 1 {
            return Err(bad("unknown codec"));
        }
        let (stored_len, raw_len) = (b.stored_len.get(), b.raw_len.get());
        if codec == 0 && kind != Kind::Pad && stored_len != raw_len {
            return Err(bad("raw record with differing lengths"));
        }
        // Only chunks are compressed, and a chunk is at most one block: the length a
        // decompression allocates is bounded before anything trusts it.
        if codec == 1 && (kind != Kind::Chunk || raw_len > 1 << MAX_BLOCK_SHIFT) {
            return Err(bad("compressed record of impossible kind or length"));
        }
        Ok(Header {
            kind,
            codec,
            stored_len,
            raw_len,
            crc: b.crc.get(),
        })
    }

    pub fn size(&self) -> u64 {
        padded(self.stored_len as usize)
    }

    /// Checks the crc against the header bytes and the stored payload.
    pub fn check(&self, header_bytes: &[u8], stored: &[u8], addr: u64) -> Result<()> {
        let mut h = crc32fast::Hasher::new();
        h.update(header_bytes.get(..CRC_COVERS).unwrap_or(header_bytes));
        if self.kind != Kind::Pad {
            h.update(stored);
        }
        if h.finalize() != self.crc {
            return Err(Error::corrupt(format!("record at {addr:#x}: checksum mismatch")));
        }
        Ok(())
    }
}

/// A record as read: its header and its stored bytes, borrowed from a map or a buffer.
pub struct Record<'a> {
    pub addr: u64,
    pub header: Header,
    pub stored: &'a [u8],
    /// The header bytes as stored (for copying a record verbatim).
    pub raw_header: &'a [u8],
}

impl<'a> Record<'a> {
    /// The raw payload: borrowed (zero-copy) when stored raw, decompressed otherwise.
    pub fn payload(&self) -> Result<Cow<'a, [u8]>> {
        match self.header.codec {
            0 => Ok(Cow::Borrowed(self.stored)),
            _ => {
                let raw = zstd::bulk::decompress(self.stored, self.header.raw_len as usize)
                    .map_err(|e| Error::corrupt(format!("record at {:#x}: zstd: {e}", self.addr)))?;
                if raw.len() != self.header.raw_len as usize {
                    return Err(Error::corrupt(format!(
                        "record at {:#x}: decompressed length",
                        self.addr
                    )));
                }
                Ok(Cow::Owned(raw))
            }
        }
    }

    /// Bytes `offset..offset + len` of the raw payload (`len` ≥ 1). A compressed record is
    /// decompressed only as far as `offset + len`, so a block packed near the start of a pack
    /// costs less than one near its end.
    pub fn slice(&self, offset: u32, len: u32) -> Result<Cow<'a, [u8]>> {
        let end = offset as usize + len as usize;
        if end > self.header.raw_len as usize || len == 0 {
            return Err(Error::corrupt(format!(
                "record at {:#x}: a block past the end of its payload",
                self.addr
            )));
        }
        match self.header.codec {
            0 => Ok(Cow::Borrowed(&self.stored[offset as usize..end])),
            _ if end == self.header.raw_len as usize && offset == 0 => self.payload(),
            _ => Ok(Cow::Owned(self.prefix(end as u32)?[offset as usize..].to_vec())),
        }
    }

    /// The first `upto` (≤ `raw_len`) bytes of a compressed record's payload, decompressing
    /// no further.
    pub fn prefix(&self, upto: u32) -> Result<Vec<u8>> {
        let bad = |what: &str| Error::corrupt(format!("record at {:#x}: {what}", self.addr));
        if upto > self.header.raw_len || self.header.codec == 0 {
            return Err(bad("a prefix past its payload, or of a raw record"));
        }
        // The frame says how long it decompresses: it must be the header's length, so the
        // decoder's memory is bounded by what the header allows (1 MiB), not by the frame.
        match zstd::zstd_safe::get_frame_content_size(self.stored) {
            Ok(Some(n)) if n == self.header.raw_len as u64 => {}
            _ => return Err(bad("zstd frame of another length than its header's")),
        }
        let mut out = vec![0u8; upto as usize];
        let got = decompress_prefix(self.stored, &mut out).map_err(|e| bad(&format!("zstd: {e}")))?;
        if got != out.len() {
            return Err(bad("decompressed length"));
        }
        Ok(out)
    }

    /// The blake3 of the raw payload, as the header records it.
    pub fn hash(&self) -> [u8; 32] {
        view::<RawHeader>(self.raw_header).map_or([0; 32], |h| h.hash)
    }

    /// Recomputes the blake3 of the payload (deep verification).
    pub fn check_hash(&self) -> Result<()> {
        let payload = self.payload()?;
        if blake3::hash(&payload).as_bytes() != &self.hash() {
            return Err(Error::corrupt(format!(
                "record at {:#x}: content hash mismatch",
                self.addr
            )));
        }
        Ok(())
    }

    /// The record ready to append elsewhere, byte for byte.
    pub fn to_prepared(&self) -> Prepared<'static> {
        Prepared {
            header: self.raw_header[..HEADER_LEN].try_into().unwrap(),
            stored: Cow::Owned(self.stored.to_vec()),
        }
    }

    pub fn expect(self, kind: Kind) -> Result<Self> {
        if self.header.kind != kind {
            return Err(Error::corrupt(format!(
                "record at {:#x}: expected {:?}, found {:?}",
                self.addr, kind, self.header.kind
            )));
        }
        Ok(self)
    }
}

thread_local! {
    /// One decompression context per thread, reset between records: making one allocates
    /// more than a small block's decompression costs.
    static DECODER: std::cell::RefCell<Option<zstd::stream::raw::Decoder<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompresses the start of the zstd frame `stored` into `out`, stopping once `out` is full;
/// returns how many bytes it filled.
fn decompress_prefix(stored: &[u8], out: &mut [u8]) -> std::io::Result<usize> {
    use zstd::stream::raw::{Decoder, Operation};
    DECODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dec = match slot.as_mut() {
            Some(d) => {
                d.reinit()?;
                d
            }
            None => {
                let mut d = Decoder::new()?;
                // No frame lstore writes needs a window past its largest record (1 MiB).
                d.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(MAX_BLOCK_SHIFT as u32))?;
                slot.insert(d)
            }
        };
        let (mut read, mut written) = (0, 0);
        while written < out.len() {
            let st = dec.run_on_buffers(&stored[read..], &mut out[written..])?;
            read += st.bytes_read;
            written += st.bytes_written;
            if st.bytes_read == 0 && st.bytes_written == 0 {
                break;
            }
        }
        Ok(written)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_promising_a_huge_decompression_is_corrupt_before_anything_allocates() {
        let rec = prepare(Kind::Chunk, &[b'a'; 4096], Compression::Zstd(3));
        assert_eq!(Header::parse(&rec.header, 0).unwrap().codec, 1);
        let mut raw: RawHeader = bytemuck::cast(rec.header);
        raw.raw_len = U32::new(u32::MAX);
        let damaged = raw.sealed(&rec.stored);
        assert!(matches!(Header::parse(&damaged, 0), Err(Error::Corrupt(_))));
        let mut node: RawHeader = bytemuck::cast(rec.header);
        node.kind = Kind::Node as u8;
        assert!(
            Header::parse(&node.sealed(&rec.stored), 0).is_err(),
            "only chunks are compressed"
        );
    }

    #[test]
    fn a_short_or_foreign_header_is_corrupt_not_a_panic() {
        assert!(Header::parse(&[0u8; 10], 0).is_err());
        assert!(Header::parse(&[0u8; 64], 0).is_err());
        let pad = pad(128);
        assert_eq!(Header::parse(&pad, 0).unwrap().size(), 128);
    }
}
