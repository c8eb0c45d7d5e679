//! The fixed front of the store file: a header page written once at creation (and its copy),
//! and two superblock slots of two copies each. A commit writes both copies of the slot not
//! holding the last durable commit; the valid copy with the highest generation whose commit
//! checks out wins at open (see format-spec.md, "Commit protocol"). One damaged page, or one
//! damaged bit anywhere in these pages, loses no commit.

use super::compression::Compression;
use super::le::{view, U32, U64};
use super::value::{MAX_BLOCK_SHIFT, MIN_BLOCK_SHIFT};
use crate::error::{Error, Result};
use bytemuck::{Pod, Zeroable};
use std::path::Path;

pub const FORMAT_VERSION: u32 = 15;
pub const PAGE: usize = 4096;
pub const FILE_MAGIC: [u8; 8] = *b"LSTORE\0\0";
const SUPER_MAGIC: [u8; 8] = *b"LSSUPER\0";
/// The two slots, each as its two copies' offsets.
pub const SLOT_OFFSETS: [[u64; 2]; 2] = [[4096, 8192], [12288, 16384]];
/// Offsets of the file header and of its copy.
pub const HEADER_OFFSETS: [u64; 2] = [0, 20480];
/// Where the first segment starts: after the header, the four superblock pages and the
/// header's copy.
pub const DATA_START: u64 = 24576;

/// Most runs the superblock can name.
pub const MAX_RUNS: usize = 24;

/// One immutable run of the chunk index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub root: u64,
    pub count: u64,
}

/// Settings fixed when the store is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub segment_size: u64,
    pub block_shift: u8,
    pub compression: Compression,
}

/// The file header as it sits at offset 0 (the rest of the page is zero but its crc).
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct RawFileHeader {
    magic: [u8; 8],
    version: U32,
    zero: [u8; 4],
    segment_size: U64,
    block_shift: u8,
    compression: [u8; 2],
    reserved: [u8; 5],
}

/// A run as the superblock names it.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct RawRun {
    root: U64,
    count: U64,
}

/// A superblock as it sits at the start of its slot page.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct RawSuperblock {
    magic: [u8; 8],
    version: U32,
    flags: U32,
    generation: U64,
    tail: U64,
    verify_from: U64,
    chain_crc: U32,
    chain_count: U32,
    catalog_root: U64,
    used: U64,
    run_count: U32,
    zero2: [u8; 4],
    runs: [RawRun; MAX_RUNS],
    high: U64,
    pool: U64,
    pooled: U64,
    pool_crc: U32,
}

/// Writes `layout` at the front of a zeroed page and its crc32 in the last 4 bytes.
fn sealed_page<T: Pod>(layout: &T) -> [u8; PAGE] {
    let mut page = [0u8; PAGE];
    let bytes = bytemuck::bytes_of(layout);
    page[..bytes.len()].copy_from_slice(bytes);
    let crc = crc32fast::hash(&page[..PAGE - 4]);
    page[PAGE - 4..].copy_from_slice(&crc.to_le_bytes());
    page
}

fn is_sealed(page: &[u8; PAGE]) -> bool {
    crc32fast::hash(&page[..PAGE - 4]).to_le_bytes() == page[PAGE - 4..]
}

impl FileHeader {
    pub fn encode(&self) -> [u8; PAGE] {
        sealed_page(&RawFileHeader {
            magic: FILE_MAGIC,
            version: U32::new(FORMAT_VERSION),
            segment_size: U64::new(self.segment_size),
            block_shift: self.block_shift,
            compression: self.compression.to_bytes(),
            ..Zeroable::zeroed()
        })
    }

    pub fn decode(p: &[u8; PAGE], path: &Path) -> Result<FileHeader> {
        let raw: &RawFileHeader = view(p).ok_or_else(|| Error::corrupt("file header is short"))?;
        if raw.magic != FILE_MAGIC {
            return Err(Error::NotAStore(path.to_path_buf()));
        }
        // The crc first: a version read from a damaged page means nothing.
        if !is_sealed(p) {
            return Err(Error::corrupt("file header checksum mismatch"));
        }
        if raw.version.get() != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: raw.version.get(),
                supported: FORMAT_VERSION,
            });
        }
        let h = FileHeader {
            segment_size: raw.segment_size.get(),
            block_shift: raw.block_shift,
            compression: Compression::from_bytes(raw.compression)?,
        };
        if !(MIN_BLOCK_SHIFT..=MAX_BLOCK_SHIFT).contains(&h.block_shift)
            || !h.segment_size.is_power_of_two()
            || !(MIN_SEGMENT..=MAX_SEGMENT).contains(&h.segment_size)
        {
            return Err(Error::corrupt("file header holds impossible sizes"));
        }
        Ok(h)
    }
}

pub const MIN_SEGMENT: u64 = 4 << 20;
pub const MAX_SEGMENT: u64 = 1 << 30;

/// One commit's roots: everything needed to find every live record.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Superblock {
    pub generation: u64,
    /// Where the next record goes.
    pub tail: u64,
    /// Records in `[verify_from, tail)` were not known durable when this was written: open
    /// walks them and checks their crcs against `chain_crc` and `chain_count`.
    pub verify_from: u64,
    pub chain_crc: u32,
    pub chain_count: u32,
    pub catalog_root: u64,
    /// Bytes of all records appended (padding included).
    pub used: u64,
    pub runs: Vec<Run>,
    /// A non-durable commit: records it reaches may not be on disk yet, so a commit built on
    /// it syncs them before its own superblock.
    pub unsynced: bool,
    /// The end of the highest record any commit up to this one wrote: past it, nothing is
    /// live (writers append into segments of their own, so this may lie past `tail`).
    pub high: u64,
    /// Address of the free pool record (`format::pool`), 0 = the pool is empty.
    pub pool: u64,
    /// The pool record's crc: a writer that reads the pool of a commit nobody checked (the
    /// newest in the file, maybe torn) takes it only if the record is this very one.
    pub pool_crc: u32,
    /// The generation of the last commit that added extents to the pool or cut the file
    /// short: a process that sees it change forgets which records it already checked, since
    /// their places may now hold others.
    pub pooled: u64,
}

/// Superblock flag: a non-durable commit.
const UNSYNCED: u32 = 1;

/// Bytes at the start of a slot copy that say its generation.
pub const HEAD_LEN: usize = 24;

/// Whether a slot copy's first bytes claim a generation above `g` (unchecked: only a full,
/// crc-checked read of the page decides).
pub fn claims_newer(head: &[u8; HEAD_LEN], g: u64) -> bool {
    let head: RawHead = bytemuck::cast(*head);
    head.magic == SUPER_MAGIC && head.generation.get() > g
}

/// The first fields of [`RawSuperblock`], all a reader looking for a newer commit needs.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct RawHead {
    magic: [u8; 8],
    version: U32,
    flags: U32,
    generation: U64,
}

impl Superblock {
    /// Says every record up to the tail is synced: open need not re-check their chain.
    pub fn mark_records_durable(&mut self) {
        self.verify_from = self.tail;
        self.chain_crc = crc32fast::Hasher::new().finalize();
        self.chain_count = 0;
    }

    pub fn encode(&self) -> [u8; PAGE] {
        let mut raw = RawSuperblock {
            magic: SUPER_MAGIC,
            version: U32::new(FORMAT_VERSION),
            generation: U64::new(self.generation),
            tail: U64::new(self.tail),
            verify_from: U64::new(self.verify_from),
            chain_crc: U32::new(self.chain_crc),
            chain_count: U32::new(self.chain_count),
            catalog_root: U64::new(self.catalog_root),
            used: U64::new(self.used),
            flags: U32::new(if self.unsynced { UNSYNCED } else { 0 }),
            high: U64::new(self.high),
            pool: U64::new(self.pool),
            pooled: U64::new(self.pooled),
            pool_crc: U32::new(self.pool_crc),
            run_count: U32::new(self.runs.len() as u32),
            ..Zeroable::zeroed()
        };
        for (slot, r) in raw.runs.iter_mut().zip(&self.runs) {
            *slot = RawRun {
                root: U64::new(r.root),
                count: U64::new(r.count),
            };
        }
        sealed_page(&raw)
    }

    /// A slot's superblock, or `None` when it is blank or torn.
    pub fn decode(p: &[u8; PAGE]) -> Option<Superblock> {
        let raw: &RawSuperblock = view(p)?;
        if raw.magic != SUPER_MAGIC || !is_sealed(p) || raw.version.get() != FORMAT_VERSION {
            return None;
        }
        if raw.flags.get() & !UNSYNCED != 0 {
            return None;
        }
        let n = raw.run_count.get() as usize;
        let runs = raw.runs.get(..n)?;
        Some(Superblock {
            generation: raw.generation.get(),
            tail: raw.tail.get(),
            verify_from: raw.verify_from.get(),
            chain_crc: raw.chain_crc.get(),
            chain_count: raw.chain_count.get(),
            catalog_root: raw.catalog_root.get(),
            used: raw.used.get(),
            unsynced: raw.flags.get() & UNSYNCED != 0,
            high: raw.high.get(),
            pool: raw.pool.get(),
            pooled: raw.pooled.get(),
            pool_crc: raw.pool_crc.get(),
            runs: runs
                .iter()
                .map(|r| Run {
                    root: r.root.get(),
                    count: r.count.get(),
                })
                .collect(),
        })
    }
}
