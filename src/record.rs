//! Records: the unit appended to segments. A 64-byte header (kind, codec, lengths, blake3 of
//! the raw payload, crc32 over header and stored bytes) followed by the stored bytes, padded
//! to a 64-byte boundary. Records are position-independent and never rewritten while live.

use crate::error::{Error, Result};
use std::borrow::Cow;

pub const HEADER_LEN: usize = 64;
pub const ALIGN: u64 = 64;
const MAGIC: [u8; 4] = *b"LREC";

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
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            0 => Kind::Pad,
            1 => Kind::Chunk,
            2 => Kind::Node,
            3 => Kind::MapNode,
            _ => return None,
        })
    }
}

/// Per-store or per-value compression of chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    /// zstd at the given level (1..=22).
    Zstd(i32),
}

impl Compression {
    pub(crate) fn to_bytes(self) -> [u8; 2] {
        match self {
            Compression::None => [0, 0],
            Compression::Zstd(l) => [1, l.clamp(1, 22) as u8],
        }
    }
    pub(crate) fn from_bytes(b: [u8; 2]) -> Result<Self> {
        match b[0] {
            0 => Ok(Compression::None),
            1 if (1..=22).contains(&b[1]) => Ok(Compression::Zstd(b[1] as i32)),
            _ => Err(Error::corrupt(format!("unknown compression code {:?}", b))),
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidArgument(format!("compression '{s}': use none, zstd or zstd:LEVEL (1-22)"));
        match s {
            "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::Zstd(3)),
            _ => {
                let level = s.strip_prefix("zstd:").ok_or_else(bad)?;
                let level: i32 = level.parse().map_err(|_| bad())?;
                if (1..=22).contains(&level) {
                    Ok(Compression::Zstd(level))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// A record ready to append: header complete (crc included), payload as stored.
pub struct Prepared<'a> {
    pub header: [u8; HEADER_LEN],
    pub stored: Cow<'a, [u8]>,
}

impl Prepared<'_> {
    pub fn hash(&self) -> [u8; 32] {
        self.header[16..48].try_into().unwrap()
    }
    pub fn crc(&self) -> u32 {
        u32::from_le_bytes(self.header[60..64].try_into().unwrap())
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
        Compression::Zstd(level) if raw.len() >= 64 => match zstd::bulk::compress(raw, level) {
            // A chunk that does not shrink is kept raw: no inflation on random data.
            Ok(c) if c.len() + 16 < raw.len() => (1, Cow::Owned(c)),
            _ => (0, Cow::Borrowed(raw)),
        },
        _ => (0, Cow::Borrowed(raw)),
    };
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&MAGIC);
    header[4] = kind as u8;
    header[5] = codec;
    header[8..12].copy_from_slice(&(stored.len() as u32).to_le_bytes());
    header[12..16].copy_from_slice(&(raw.len() as u32).to_le_bytes());
    header[16..48].copy_from_slice(&hash);
    let crc = checksum(&header, &stored);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
    Prepared { header, stored }
}

/// A pad record that fills `total` bytes (a multiple of [`ALIGN`], at least one header).
pub fn pad(total: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&MAGIC);
    header[4] = Kind::Pad as u8;
    header[8..12].copy_from_slice(&((total - HEADER_LEN as u64) as u32).to_le_bytes());
    let crc = checksum(&header, &[]);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
    header
}

fn checksum(header: &[u8; HEADER_LEN], stored: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header[..60]);
    h.update(stored);
    h.finalize()
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
        let b = bytes.get(..HEADER_LEN).ok_or_else(|| bad("truncated header"))?;
        if b[0..4] != MAGIC {
            return Err(bad("bad magic"));
        }
        let kind = Kind::from_u8(b[4]).ok_or_else(|| bad("unknown kind"))?;
        let codec = b[5];
        if codec > 1 {
            return Err(bad("unknown codec"));
        }
        let stored_len = u32::from_le_bytes(b[8..12].try_into().unwrap());
        let raw_len = u32::from_le_bytes(b[12..16].try_into().unwrap());
        if codec == 0 && kind != Kind::Pad && stored_len != raw_len {
            return Err(bad("raw record with differing lengths"));
        }
        Ok(Header {
            kind,
            codec,
            stored_len,
            raw_len,
            crc: u32::from_le_bytes(b[60..64].try_into().unwrap()),
        })
    }

    pub fn size(&self) -> u64 {
        padded(self.stored_len as usize)
    }

    /// Checks the crc against the header bytes and the stored payload.
    pub fn check(&self, header_bytes: &[u8], stored: &[u8], addr: u64) -> Result<()> {
        let mut h = crc32fast::Hasher::new();
        h.update(&header_bytes[..60]);
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

    /// The blake3 of the raw payload, as the header records it.
    pub fn hash(&self) -> [u8; 32] {
        self.raw_header[16..48].try_into().unwrap()
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
