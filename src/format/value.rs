//! What a key maps to in a layer tree: the value's size, its attributes, and either its
//! bytes inline (small values, as btrfs inlines small extents) or the root of its block map.
//!
//! Encoding: `tag u8` (bits 0-1: 0 inline, 1 blocks, 2 hard link; bit 2: attributes follow;
//! bit 3: a compression override follows), then `[attr_len u32, attrs]`, then
//! `[codec u8, level u8]`, then the body: inline bytes to the end, `size u64 | block_shift u8 |
//! height u8 | root u64`, or a hard link's inode number `ino u64`.

use super::compression::Compression;
use super::le::{Cursor, U32, U64};
use crate::error::{Error, Result};
use bytemuck::{Pod, Zeroable};

/// Values up to this many bytes live inside the tree leaf.
pub const INLINE_MAX: usize = 256;
/// The largest value, 2^62 bytes: every offset and block boundary of a value stays far from
/// 2^64, so block arithmetic cannot overflow, and a block map of any block size holds it.
pub const MAX_VALUE_SIZE: u64 = 1 << 62;
pub const MIN_BLOCK_SHIFT: u8 = 12;
pub const MAX_BLOCK_SHIFT: u8 = 20;

/// What kind of file-system object a key stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum FileKind {
    #[default]
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    /// A unix socket's name (what `bind` made); no process listens on it once stored.
    Socket,
}

impl FileKind {
    /// The `S_IFMT` bits of this kind.
    pub fn type_bits(self) -> u32 {
        match self {
            FileKind::Regular => libc::S_IFREG,
            FileKind::Directory => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::CharDevice => libc::S_IFCHR,
            FileKind::BlockDevice => libc::S_IFBLK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
        }
    }

    /// The kind named by a mode's `S_IFMT` bits; `None` for an unknown type.
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::Regular,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            _ => return None,
        })
    }

    /// The short name `stat` prints.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Regular => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::CharDevice => "char-device",
            FileKind::BlockDevice => "block-device",
            FileKind::Fifo => "fifo",
            FileKind::Socket => "socket",
        }
    }
}

/// File attributes kept with a value; optional, so plain key-value use pays nothing.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Attrs {
    pub kind: FileKind,
    /// The full `st_mode`: permission bits, setuid, setgid, sticky and the type bits (stored
    /// from `kind`, whatever type bits are given here).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// The file's inode number in its tree, given by the store to every file it stores with
    /// attributes (what a caller puts here is not taken). Kept across reopen and commit; the
    /// names of a hard link share it.
    pub ino: u64,
    /// Names of this file in its tree: more than 1 for a hard link; kept by the store.
    pub nlink: u32,
    /// Device number of a character or block device.
    pub rdev: u64,
    /// Target of a symlink, as bytes.
    pub link_target: Option<Vec<u8>>,
    /// Extended attributes, name to value, sorted by name (POSIX ACLs are among them).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Limits on stored attributes, as Linux's: an xattr name is at most 255 bytes, a value at
/// most 64 KiB; a symlink target at most 4095 bytes; all xattrs of a file at most 1 MiB.
pub const XATTR_NAME_MAX: usize = 255;
pub const XATTR_VALUE_MAX: usize = 64 << 10;
pub const XATTRS_MAX: usize = 1 << 20;
pub const LINK_TARGET_MAX: usize = 4095;

/// The entry's tag byte: the body's kind in the low two bits, then flags.
const BODY: u8 = 0b11;
const INLINE: u8 = 0;
const BLOCKS: u8 = 1;
const LINK: u8 = 2;
const HAS_ATTRS: u8 = 4;
const HAS_COMPRESSION: u8 = 8;

/// The fixed part of stored attributes (the symlink target and the xattrs follow).
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct RawAttrs {
    kind: u8,
    mode: U32,
    uid: U32,
    gid: U32,
    mtime_ns: U64,
    ino: U64,
    nlink: U32,
    rdev: U64,
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
    Blocks {
        shift: u8,
        height: u8,
        root: u64,
    },
    /// One name of a hard-linked file: the file itself is the tree's inode entry `ino`.
    Link(u64),
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
            Body::Inline(_) | Body::Link(_) => (true, 0),
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
            Body::Link(_) => LINK,
        };
        if self.attrs.is_some() {
            tag |= HAS_ATTRS;
        }
        if self.compression.is_some() {
            tag |= HAS_COMPRESSION;
        }
        let mut out = vec![tag];
        if let Some(a) = &self.attrs {
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            a.encode_into(&mut out);
            let len = (out.len() - at - 4) as u32;
            out[at..at + 4].copy_from_slice(&len.to_le_bytes());
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
            Body::Link(ino) => out.extend_from_slice(&ino.to_le_bytes()),
        }
        out
    }

    /// The tag, the attributes' bytes and the compression's bytes of an encoded entry; the
    /// cursor is left at the body.
    fn head<'a>(c: &mut Cursor<'a>) -> Result<Head<'a>> {
        let tag = c.u8()?;
        if tag & !0b1111 != 0 || tag & BODY > LINK {
            return Err(c.malformed());
        }
        let attrs = if tag & HAS_ATTRS != 0 {
            let len = c.u32()? as usize;
            Some(c.take(len)?)
        } else {
            None
        };
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
        if tag & BODY == LINK {
            let ino = c.u64()?;
            if !c.is_empty() || attrs.is_some() || ino == 0 {
                return Err(Error::corrupt("value entry: hard link"));
            }
            return Ok(Entry {
                size: 0,
                attrs: None,
                compression,
                body: Body::Link(ino),
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
    /// Attributes of a new object of `kind` with permission bits `perm`, owned by root.
    pub fn new(kind: FileKind, perm: u32) -> Attrs {
        Attrs {
            kind,
            mode: kind.type_bits() | (perm & 0o7777),
            nlink: 1,
            ..Default::default()
        }
    }

    /// The same attributes with the type bits of `mode` set from `kind`, as they are stored.
    pub(crate) fn normalized(mut self) -> Attrs {
        self.mode = self.kind.type_bits() | (self.mode & 0o7777);
        self.nlink = self.nlink.max(1);
        self
    }

    /// The value of extended attribute `name`.
    pub fn xattr(&self, name: &[u8]) -> Option<&[u8]> {
        self.xattrs
            .binary_search_by(|(n, _)| n.as_slice().cmp(name))
            .ok()
            .map(|i| self.xattrs[i].1.as_slice())
    }

    /// Sets extended attribute `name`, keeping the list sorted.
    pub fn set_xattr(&mut self, name: &[u8], value: &[u8]) {
        match self.xattrs.binary_search_by(|(n, _)| n.as_slice().cmp(name)) {
            Ok(i) => self.xattrs[i].1 = value.to_vec(),
            Err(i) => self.xattrs.insert(i, (name.to_vec(), value.to_vec())),
        }
    }

    /// Removes extended attribute `name`; true when it was there.
    pub fn remove_xattr(&mut self, name: &[u8]) -> bool {
        match self.xattrs.binary_search_by(|(n, _)| n.as_slice().cmp(name)) {
            Ok(i) => {
                self.xattrs.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Checks what a caller gives against the limits the format keeps (names, values, sizes,
    /// a target on a symlink and only there).
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        let link = self.link_target.as_deref();
        match (self.kind, link) {
            (FileKind::Symlink, Some(t)) if !t.is_empty() && t.len() <= LINK_TARGET_MAX && !t.contains(&0) => {}
            (FileKind::Symlink, _) => return bad("a symlink target is 1 to 4095 bytes without NUL".into()),
            (_, Some(_)) => return bad("only a symlink has a target".into()),
            _ => {}
        }
        if self.uid == u32::MAX || self.gid == u32::MAX {
            return bad("owner 4294967295 is the kernel's 'no change', not an id".into());
        }
        let mut total = 0;
        for (i, (n, v)) in self.xattrs.iter().enumerate() {
            if n.is_empty() || n.len() > XATTR_NAME_MAX || n.contains(&0) {
                return bad(format!("xattr name of {} bytes: 1 to 255 bytes without NUL", n.len()));
            }
            let known = [&b"user."[..], b"trusted.", b"security.", b"system."]
                .iter()
                .any(|ns| n.len() > ns.len() && n.starts_with(ns));
            if !known {
                return bad(format!(
                    "xattr name '{}': it starts with user., trusted., security. or system., then a name",
                    crate::format::escape::escape_path(n)
                ));
            }
            if v.len() > XATTR_VALUE_MAX {
                return bad(format!("xattr value of {} bytes: at most 64 KiB", v.len()));
            }
            if i > 0 && self.xattrs[i - 1].0 >= *n {
                return bad("xattrs must be sorted by name, each name once".into());
            }
            total += n.len() + v.len();
        }
        if total > XATTRS_MAX {
            return bad(format!("{total} bytes of xattrs: at most 1 MiB per file"));
        }
        Ok(())
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let raw = RawAttrs {
            kind: self.kind as u8,
            mode: U32::new(self.kind.type_bits() | (self.mode & 0o7777)),
            uid: U32::new(self.uid),
            gid: U32::new(self.gid),
            mtime_ns: U64::new(self.mtime_ns as u64),
            ino: U64::new(self.ino),
            nlink: U32::new(self.nlink.max(1)),
            rdev: U64::new(self.rdev),
        };
        out.extend_from_slice(bytemuck::bytes_of(&raw));
        let link = self.link_target.as_deref().unwrap_or(&[]);
        out.extend_from_slice(&(link.len() as u16).to_le_bytes());
        out.extend_from_slice(link);
        out.extend_from_slice(&(self.xattrs.len() as u32).to_le_bytes());
        for (n, v) in &self.xattrs {
            out.push(n.len() as u8);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(n);
            out.extend_from_slice(v);
        }
    }

    /// Attributes from their stored bytes; every length is checked against the limits above
    /// before it drives a copy.
    fn decode(a: &[u8]) -> Result<Attrs> {
        let bad = || Error::corrupt("value entry: attributes");
        let mut c = Cursor::new(a, "value entry attributes");
        let raw: &RawAttrs = c.fixed()?;
        let kind = match raw.kind {
            0 => FileKind::Regular,
            1 => FileKind::Directory,
            2 => FileKind::Symlink,
            3 => FileKind::CharDevice,
            4 => FileKind::BlockDevice,
            5 => FileKind::Fifo,
            6 => FileKind::Socket,
            _ => return Err(Error::corrupt("value entry: file kind")),
        };
        let link_len = c.u16()? as usize;
        if link_len > LINK_TARGET_MAX {
            return Err(bad());
        }
        let link = c.take(link_len)?;
        let count = c.u32()? as usize;
        // Each xattr takes at least 6 bytes: a count past what is left is damage, not a size.
        if count > c.remaining_len() / 6 {
            return Err(bad());
        }
        let mut xattrs = Vec::with_capacity(count);
        for _ in 0..count {
            let nl = c.u8()? as usize;
            let vl = c.u32()? as usize;
            if vl > XATTR_VALUE_MAX {
                return Err(bad());
            }
            xattrs.push((c.take(nl)?.to_vec(), c.take(vl)?.to_vec()));
        }
        if !c.is_empty() || raw.mode.get() & libc::S_IFMT != kind.type_bits() {
            return Err(bad());
        }
        let attrs = Attrs {
            kind,
            mode: raw.mode.get(),
            uid: raw.uid.get(),
            gid: raw.gid.get(),
            mtime_ns: raw.mtime_ns.get() as i64,
            ino: raw.ino.get(),
            nlink: raw.nlink.get(),
            rdev: raw.rdev.get(),
            link_target: (!link.is_empty()).then(|| link.to_vec()),
            xattrs,
        };
        // What a writer could not have stored (unsorted xattrs, a target on a file) is damage.
        attrs
            .check()
            .map_err(|e| Error::corrupt(format!("value entry: attributes: {e}")))?;
        Ok(attrs)
    }
}

/// The end of a write of `len` bytes at `off`, when it stays within [`MAX_VALUE_SIZE`].
pub fn checked_end(off: u64, len: u64) -> Result<u64> {
    off.checked_add(len)
        .filter(|&end| end <= MAX_VALUE_SIZE)
        .ok_or_else(|| Error::OutOfRange(format!("offset {off} + length {len}: values end at 2^62 bytes")))
}

/// Checks a key: 1 to 4096 bytes, no NUL (a key is a path; the tree's own keys use NUL).
pub fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidKey("empty key".into()));
    }
    if key.len() > 4096 {
        return Err(Error::InvalidKey(format!("{} bytes, the limit is 4096", key.len())));
    }
    if key.contains(&0) {
        return Err(Error::InvalidKey(format!(
            "'{}' contains a NUL byte",
            String::from_utf8_lossy(key).escape_debug()
        )));
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
            ino: 77,
            nlink: 3,
            rdev: 0x0801,
            link_target: Some(b"../target".to_vec()),
            xattrs: vec![(b"user.a".to_vec(), vec![0, 1, 2]), (b"user.b".to_vec(), vec![])],
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
        assert!(Entry::decode(&[4, 200, 0, 0, 0]).is_err(), "attributes past the end");
        assert!(
            Entry::decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(),
            "a link to inode 0"
        );
        round_trip(Entry {
            size: 0,
            attrs: None,
            compression: None,
            body: Body::Link(9),
        });
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
