//! What a key maps to in a layer tree: the value's size, its attributes, and either its
//! bytes inline (small values, as btrfs inlines small extents) or the root of its block map.
//!
//! Encoding: `tag u8` (bits 0-1: 0 inline, 1 blocks; bit 2: attributes follow; bit 3: a
//! compression override follows), then `[attr_len u16, attrs]`, then `[codec u8, level u8]`,
//! then the body: inline bytes to the end, or `size u64 | block_shift u8 | height u8 | root u64`.

use super::compression::Compression;
use super::le::{view, Cursor, U32, U64};
use crate::error::{Error, Result};
use bytemuck::{Pod, Zeroable};

/// Values up to this many bytes live inside the tree leaf.
pub const INLINE_MAX: usize = 256;
/// The largest value, 2^62 bytes: every offset and block boundary of a value stays far from
/// 2^64, so block arithmetic cannot overflow, and a block map of any block size holds it.
pub const MAX_VALUE_SIZE: u64 = 1 << 62;
pub const MIN_BLOCK_SHIFT: u8 = 12;
pub const MAX_BLOCK_SHIFT: u8 = 20;

/// What kind of file a key stands for (for OCI import and export).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FileKind {
    #[default]
    Regular,
    Directory,
    Symlink,
}

/// File attributes kept with a value; optional, so plain key-value use pays nothing.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Attrs {
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Target of a symlink.
    pub link_target: Option<Vec<u8>>,
}

/// The entry's tag byte: the body's kind in the low two bits, then flags.
const BODY: u8 = 0b11;
const INLINE: u8 = 0;
const BLOCKS: u8 = 1;
const HAS_ATTRS: u8 = 4;
const HAS_COMPRESSION: u8 = 8;

/// The fixed part of stored attributes (a symlink's target follows).
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct RawAttrs {
    kind: u8,
    mode: U32,
    uid: U32,
    gid: U32,
    mtime_ns: U64,
}

/// The body of a chunked value: its size and block map.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct RawBlocks {
    size: U64,
    shift: u8,
    height: u8,
    root: U64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    Inline(Vec<u8>),
    Blocks { shift: u8, height: u8, root: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub size: u64,
    pub attrs: Option<Attrs>,
    pub compression: Option<Compression>,
    pub body: Body,
}

/// What `stat` and `list` say of a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueInfo {
    pub key: Vec<u8>,
    pub size: u64,
    /// Stored inside the tree leaf rather than as chunks.
    pub inline: bool,
    /// Block size of a chunked value (0 when inline).
    pub block_size: u32,
    pub attrs: Option<Attrs>,
}

impl Entry {
    pub fn inline(data: Vec<u8>) -> Entry {
        Entry {
            size: data.len() as u64,
            attrs: None,
            compression: None,
            body: Body::Inline(data),
        }
    }

    pub fn info(&self, key: &[u8]) -> ValueInfo {
        let (inline, block_size) = match self.body {
            Body::Inline(_) => (true, 0),
            Body::Blocks { shift, .. } => (false, 1u32 << shift),
        };
        ValueInfo {
            key: key.to_vec(),
            size: self.size,
            inline,
            block_size,
            attrs: self.attrs.clone(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut tag = match self.body {
            Body::Inline(_) => INLINE,
            Body::Blocks { .. } => BLOCKS,
        };
        if self.attrs.is_some() {
            tag |= HAS_ATTRS;
        }
        if self.compression.is_some() {
            tag |= HAS_COMPRESSION;
        }
        let mut out = vec![tag];
        if let Some(a) = &self.attrs {
            let link = a.link_target.as_deref().unwrap_or(&[]);
            out.extend_from_slice(&((size_of::<RawAttrs>() + link.len()) as u16).to_le_bytes());
            out.extend_from_slice(bytemuck::bytes_of(&RawAttrs::from(a)));
            out.extend_from_slice(link);
        }
        if let Some(c) = self.compression {
            out.extend_from_slice(&c.to_bytes());
        }
        match &self.body {
            Body::Inline(d) => out.extend_from_slice(d),
            Body::Blocks { shift, height, root } => {
                let raw = RawBlocks {
                    size: U64::new(self.size),
                    shift: *shift,
                    height: *height,
                    root: U64::new(*root),
                };
                out.extend_from_slice(bytemuck::bytes_of(&raw));
            }
        }
        out
    }

    /// The tag, the attributes' bytes and the compression's bytes of an encoded entry; the
    /// cursor is left at the body.
    fn head<'a>(c: &mut Cursor<'a>) -> Result<Head<'a>> {
        let tag = c.u8()?;
        if tag & !0b1111 != 0 || tag & BODY > BLOCKS {
            return Err(c.malformed());
        }
        let attrs = if tag & HAS_ATTRS != 0 { Some(c.bytes16()?) } else { None };
        let compression = if tag & HAS_COMPRESSION != 0 {
            Some(*c.fixed::<[u8; 2]>()?)
        } else {
            None
        };
        Ok((tag, attrs, compression))
    }

    /// The bytes of an inline value, borrowed from the encoded entry; `None` for a chunked one.
    pub fn inline_bytes(b: &[u8]) -> Result<Option<&[u8]>> {
        let mut c = Cursor::new(b, "value entry");
        let (tag, _, _) = Self::head(&mut c)?;
        Ok((tag & BODY == INLINE).then(|| c.remaining()))
    }

    pub fn decode(b: &[u8]) -> Result<Entry> {
        let mut c = Cursor::new(b, "value entry");
        let (tag, attrs, compression) = Self::head(&mut c)?;
        let attrs = attrs.map(Attrs::decode).transpose()?;
        let compression = compression.map(Compression::from_bytes).transpose()?;
        if tag & BODY == INLINE {
            let data = c.remaining().to_vec();
            return Ok(Entry {
                size: data.len() as u64,
                attrs,
                compression,
                body: Body::Inline(data),
            });
        }
        let raw: &RawBlocks = c.fixed()?;
        if raw.size.get() > MAX_VALUE_SIZE {
            return Err(Error::corrupt("value entry: size past 2^62 bytes"));
        }
        if raw.height > super::mapnode::MAX_HEIGHT {
            return Err(Error::corrupt("value entry: block map taller than 7 levels"));
        }
        if !c.is_empty() {
            return Err(Error::corrupt("value entry: block body length"));
        }
        if !(MIN_BLOCK_SHIFT..=MAX_BLOCK_SHIFT).contains(&raw.shift) {
            return Err(Error::corrupt("value entry: block size"));
        }
        Ok(Entry {
            size: raw.size.get(),
            attrs,
            compression,
            body: Body::Blocks {
                shift: raw.shift,
                height: raw.height,
                root: raw.root.get(),
            },
        })
    }
}

/// The front of an encoded entry: its tag, and its attributes' and compression's bytes.
type Head<'a> = (u8, Option<&'a [u8]>, Option<[u8; 2]>);

impl Attrs {
    /// Attributes from their stored bytes: the fixed part, then a symlink's target.
    fn decode(a: &[u8]) -> Result<Attrs> {
        let bad = || Error::corrupt("value entry: attributes");
        let raw: &RawAttrs = view(a).ok_or_else(bad)?;
        let kind = match raw.kind {
            0 => FileKind::Regular,
            1 => FileKind::Directory,
            2 => FileKind::Symlink,
            _ => return Err(Error::corrupt("value entry: file kind")),
        };
        let link = &a[size_of::<RawAttrs>()..];
        Ok(Attrs {
            kind,
            mode: raw.mode.get(),
            uid: raw.uid.get(),
            gid: raw.gid.get(),
            mtime_ns: raw.mtime_ns.get() as i64,
            link_target: (!link.is_empty()).then(|| link.to_vec()),
        })
    }
}

impl From<&Attrs> for RawAttrs {
    fn from(a: &Attrs) -> RawAttrs {
        RawAttrs {
            kind: a.kind as u8,
            mode: U32::new(a.mode),
            uid: U32::new(a.uid),
            gid: U32::new(a.gid),
            mtime_ns: U64::new(a.mtime_ns as u64),
        }
    }
}

/// The end of a write of `len` bytes at `off`, when it stays within [`MAX_VALUE_SIZE`].
pub fn checked_end(off: u64, len: u64) -> Result<u64> {
    off.checked_add(len)
        .filter(|&end| end <= MAX_VALUE_SIZE)
        .ok_or_else(|| Error::OutOfRange(format!("offset {off} + length {len}: values end at 2^62 bytes")))
}

/// Checks a key: non-empty, at most 4096 bytes.
pub fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidKey("empty key".into()));
    }
    if key.len() > 4096 {
        return Err(Error::InvalidKey(format!("{} bytes, the limit is 4096", key.len())));
    }
    Ok(())
}

/// A block size as its shift; must be a power of two from 4 KiB to 1 MiB.
pub fn block_shift(size: u64) -> Result<u8> {
    if !size.is_power_of_two() || !(1u64 << MIN_BLOCK_SHIFT..=1u64 << MAX_BLOCK_SHIFT).contains(&size) {
        return Err(Error::InvalidArgument(format!(
            "block size {size}: must be a power of two from 4 KiB to 1 MiB"
        )));
    }
    Ok(size.trailing_zeros() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: Entry) {
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn every_entry_shape_decodes_to_what_was_encoded() {
        round_trip(Entry::inline(b"hello".to_vec()));
        let attrs = Attrs {
            kind: FileKind::Symlink,
            mode: 0o120777,
            uid: 1000,
            gid: 100,
            mtime_ns: -5,
            link_target: Some(b"../target".to_vec()),
        };
        round_trip(Entry {
            size: MAX_VALUE_SIZE,
            attrs: Some(attrs),
            compression: Some(Compression::Zstd(19)),
            body: Body::Blocks {
                shift: 16,
                height: 3,
                root: 0x1234_5678,
            },
        });
    }

    #[test]
    fn a_damaged_entry_is_corrupt() {
        let e = Entry::inline(b"x".to_vec()).encode();
        assert!(Entry::decode(&[0b1_0000]).is_err(), "unknown flag");
        assert!(Entry::decode(&[4, 200, 0]).is_err(), "attributes past the end");
        assert!(Entry::decode(&[1, 0, 0]).is_err(), "short block body");
        assert!(Entry::decode(&e).is_ok());
    }

    #[test]
    fn ranges_end_at_2_pow_62() {
        assert_eq!(checked_end(1, 2).unwrap(), 3);
        assert!(checked_end(u64::MAX, 1).is_err());
        assert!(checked_end(MAX_VALUE_SIZE, 1).is_err());
        assert_eq!(checked_end(MAX_VALUE_SIZE - 1, 1).unwrap(), MAX_VALUE_SIZE);
    }
}
