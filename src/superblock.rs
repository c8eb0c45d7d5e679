//! The fixed front of the store file: a header page written once at creation, then two
//! superblock slots. A commit writes the slot not holding the last durable commit; the valid
//! slot with the highest generation wins at open (see format-spec.md, "Commit protocol").

use crate::chunk::{Run, MAX_RUNS};
use crate::error::{Error, Result};
use crate::record::Compression;
use std::path::Path;

pub const FORMAT_VERSION: u32 = 4;
pub const PAGE: usize = 4096;
const FILE_MAGIC: [u8; 8] = *b"LSTORE\0\0";
const SUPER_MAGIC: [u8; 8] = *b"LSSUPER\0";
pub const SLOT_OFFSETS: [u64; 2] = [4096, 8192];

/// Settings fixed when the store is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub segment_size: u64,
    pub block_shift: u8,
    pub compression: Compression,
}

fn seal(page: &mut [u8; PAGE]) {
    let crc = crc32fast::hash(&page[..PAGE - 4]);
    page[PAGE - 4..].copy_from_slice(&crc.to_le_bytes());
}

fn sealed(page: &[u8; PAGE]) -> bool {
    crc32fast::hash(&page[..PAGE - 4]).to_le_bytes() == page[PAGE - 4..]
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
}

impl FileHeader {
    pub fn encode(&self) -> [u8; PAGE] {
        let mut p = [0u8; PAGE];
        p[0..8].copy_from_slice(&FILE_MAGIC);
        p[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        p[16..24].copy_from_slice(&self.segment_size.to_le_bytes());
        p[24] = self.block_shift;
        p[25..27].copy_from_slice(&self.compression.to_bytes());
        seal(&mut p);
        p
    }

    pub fn decode(p: &[u8; PAGE], path: &Path) -> Result<FileHeader> {
        if p[0..8] != FILE_MAGIC {
            return Err(Error::NotAStore(path.to_path_buf()));
        }
        let version = u32_at(p, 8);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if !sealed(p) {
            return Err(Error::corrupt("file header checksum mismatch"));
        }
        let h = FileHeader {
            segment_size: u64_at(p, 16),
            block_shift: p[24],
            compression: Compression::from_bytes([p[25], p[26]])?,
        };
        if !(crate::value::MIN_BLOCK_SHIFT..=crate::value::MAX_BLOCK_SHIFT).contains(&h.block_shift)
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
}

impl Superblock {
    pub fn encode(&self) -> [u8; PAGE] {
        let mut p = [0u8; PAGE];
        p[0..8].copy_from_slice(&SUPER_MAGIC);
        p[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        p[16..24].copy_from_slice(&self.generation.to_le_bytes());
        p[24..32].copy_from_slice(&self.tail.to_le_bytes());
        p[32..40].copy_from_slice(&self.verify_from.to_le_bytes());
        p[40..44].copy_from_slice(&self.chain_crc.to_le_bytes());
        p[44..48].copy_from_slice(&self.chain_count.to_le_bytes());
        p[48..56].copy_from_slice(&self.catalog_root.to_le_bytes());
        p[56..64].copy_from_slice(&self.used.to_le_bytes());
        p[64..68].copy_from_slice(&(self.runs.len() as u32).to_le_bytes());
        for (i, r) in self.runs.iter().enumerate() {
            let at = 72 + 16 * i;
            p[at..at + 8].copy_from_slice(&r.root.to_le_bytes());
            p[at + 8..at + 16].copy_from_slice(&r.count.to_le_bytes());
        }
        seal(&mut p);
        p
    }

    /// A slot's superblock, or `None` when it is blank or torn.
    pub fn decode(p: &[u8; PAGE]) -> Option<Superblock> {
        if p[0..8] != SUPER_MAGIC || !sealed(p) || u32_at(p, 8) != FORMAT_VERSION {
            return None;
        }
        let n = u32_at(p, 64) as usize;
        if n > MAX_RUNS {
            return None;
        }
        let runs = (0..n)
            .map(|i| Run {
                root: u64_at(p, 72 + 16 * i),
                count: u64_at(p, 80 + 16 * i),
            })
            .collect();
        Some(Superblock {
            generation: u64_at(p, 16),
            tail: u64_at(p, 24),
            verify_from: u64_at(p, 32),
            chain_crc: u32_at(p, 40),
            chain_count: u32_at(p, 44),
            catalog_root: u64_at(p, 48),
            used: u64_at(p, 56),
            runs,
        })
    }
}
