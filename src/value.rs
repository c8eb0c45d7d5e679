//! What a key maps to in a layer tree: the value's size, its attributes, and either its
//! bytes inline (small values, as btrfs inlines small extents) or the root of its block map.
//!
//! Encoding: `tag u8` (bits 0-1: 0 inline, 1 blocks; bit 2: attributes follow; bit 3: a
//! compression override follows), then `[attr_len u16, attrs]`, then `[codec u8, level u8]`,
//! then the body: inline bytes to the end, or `size u64 | block_shift u8 | height u8 | root u64`.

use crate::error::{Error, Result};
use crate::record::Compression;

/// Values up to this many bytes live inside the tree leaf.
pub const INLINE_MAX: usize = 256;
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
            Body::Inline(_) => 0u8,
            Body::Blocks { .. } => 1,
        };
        if self.attrs.is_some() {
            tag |= 4;
        }
        if self.compression.is_some() {
            tag |= 8;
        }
        let mut out = vec![tag];
        if let Some(a) = &self.attrs {
            let link = a.link_target.as_deref().unwrap_or(&[]);
            out.extend_from_slice(&((21 + link.len()) as u16).to_le_bytes());
            out.push(a.kind as u8);
            out.extend_from_slice(&a.mode.to_le_bytes());
            out.extend_from_slice(&a.uid.to_le_bytes());
            out.extend_from_slice(&a.gid.to_le_bytes());
            out.extend_from_slice(&a.mtime_ns.to_le_bytes());
            out.extend_from_slice(link);
        }
        if let Some(c) = self.compression {
            out.extend_from_slice(&c.to_bytes());
        }
        match &self.body {
            Body::Inline(d) => out.extend_from_slice(d),
            Body::Blocks { shift, height, root } => {
                out.extend_from_slice(&self.size.to_le_bytes());
                out.push(*shift);
                out.push(*height);
                out.extend_from_slice(&root.to_le_bytes());
            }
        }
        out
    }

    /// The bytes of an inline value, borrowed from the encoded entry; `None` for a chunked one.
    pub fn inline_bytes(b: &[u8]) -> Result<Option<&[u8]>> {
        let bad = || Error::corrupt("value entry: malformed");
        let (&tag, mut rest) = b.split_first().ok_or_else(bad)?;
        if tag & !0b1111 != 0 || tag & 3 > 1 {
            return Err(bad());
        }
        if tag & 3 == 1 {
            return Ok(None);
        }
        if tag & 4 != 0 {
            let len = u16::from_le_bytes(rest.get(..2).ok_or_else(bad)?.try_into().unwrap()) as usize;
            rest = rest.get(2 + len..).ok_or_else(bad)?;
        }
        if tag & 8 != 0 {
            rest = rest.get(2..).ok_or_else(bad)?;
        }
        Ok(Some(rest))
    }

    pub fn decode(b: &[u8]) -> Result<Entry> {
        let bad = |what: &str| Error::corrupt(format!("value entry: {what}"));
        let (&tag, mut rest) = b.split_first().ok_or_else(|| bad("empty"))?;
        if tag & !0b1111 != 0 || tag & 3 > 1 {
            return Err(bad("unknown tag"));
        }
        let mut attrs = None;
        if tag & 4 != 0 {
            let len = u16::from_le_bytes(rest.get(..2).ok_or_else(|| bad("attributes"))?.try_into().unwrap()) as usize;
            let a = rest
                .get(2..2 + len)
                .filter(|a| a.len() >= 21)
                .ok_or_else(|| bad("attributes"))?;
            let kind = match a[0] {
                0 => FileKind::Regular,
                1 => FileKind::Directory,
                2 => FileKind::Symlink,
                _ => return Err(bad("file kind")),
            };
            let u32_at = |i: usize| u32::from_le_bytes(a[i..i + 4].try_into().unwrap());
            attrs = Some(Attrs {
                kind,
                mode: u32_at(1),
                uid: u32_at(5),
                gid: u32_at(9),
                mtime_ns: i64::from_le_bytes(a[13..21].try_into().unwrap()),
                link_target: (a.len() > 21).then(|| a[21..].to_vec()),
            });
            rest = &rest[2 + len..];
        }
        let mut compression = None;
        if tag & 8 != 0 {
            let c = rest.get(..2).ok_or_else(|| bad("compression"))?;
            compression = Some(Compression::from_bytes([c[0], c[1]])?);
            rest = &rest[2..];
        }
        if tag & 3 == 0 {
            return Ok(Entry {
                size: rest.len() as u64,
                attrs,
                compression,
                body: Body::Inline(rest.to_vec()),
            });
        }
        if rest.len() != 18 {
            return Err(bad("block body length"));
        }
        let size = u64::from_le_bytes(rest[0..8].try_into().unwrap());
        let (shift, height) = (rest[8], rest[9]);
        let root = u64::from_le_bytes(rest[10..18].try_into().unwrap());
        if !(MIN_BLOCK_SHIFT..=MAX_BLOCK_SHIFT).contains(&shift) {
            return Err(bad("block size"));
        }
        Ok(Entry {
            size,
            attrs,
            compression,
            body: Body::Blocks { shift, height, root },
        })
    }
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
