//! Damage that passes every checksum: a small store image with every kind of record, edited
//! by fuzzer bytes and then resealed (record crcs, commit chains, page crcs recomputed), so
//! hostile trees, block maps, catalogs and superblocks get past the checks that stop a plain
//! byte fuzzer at the header and reach the code that trusts what the checks admit.

use crate::format::compression::Compression;
use crate::format::mount::{Mount, MountSource};
use crate::format::node::NodeView;
use crate::format::record::{self, Header, HEADER_LEN};
use crate::format::superblock::{Superblock, DATA_START, HEADER_OFFSETS, PAGE, SLOT_OFFSETS};
use crate::store::{Options, Store};
use std::sync::OnceLock;

/// The seed image and where its records are.
pub struct Image {
    pub bytes: Vec<u8>,
    /// Start of every record below the newest tail, in file order.
    pub records: Vec<u64>,
    /// Bytes worth aiming at: record headers, tree and block-map nodes, header and slot pages.
    pub structure: Vec<(u64, u64)>,
}

/// The seed, built once per process: layers with inline and block-mapped values (raw and
/// zstd chunks, shared chunks), a child layer with a delete, a container with a partial
/// write, a volume, and several commits so both slots hold a superblock.
pub fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| build().expect("the seed image builds"))
}

fn build() -> crate::Result<Image> {
    let dir = std::env::temp_dir().join(format!("lstore-seed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| crate::Error::file(&dir, e))?;
    let path = dir.join("seed.lstore");
    let opts = Options {
        block_size: 4096,
        segment_size: 4 << 20,
        compression: Compression::Zstd(1),
    };
    {
        let store = Store::create(&path, opts)?;
        let mut b = store.new_layer(None)?;
        b.put("etc/small", b"inline value")?;
        b.put("bin/tool", &pattern(3 * 4096 + 100, 7))?;
        b.put("lib/same", &pattern(2 * 4096, 7))?;
        b.write_at("sparse", 40 * 4096, b"far away")?;
        // Small files that compress, packed together into one compressed pack (format-spec
        // §5), so damage reaches prefix decompression and packed-block reads.
        for i in 0..6 {
            let text = format!("config file {i}: the same words compress together\n").repeat(8 + i * 6);
            b.put(format!("etc/conf{i}"), text.as_bytes())?;
        }
        // Enough keys for a two-level tree: branch nodes are where cycles can hide.
        for i in 0..200 {
            b.put(format!("many/{i:03}"), format!("value {i}").as_bytes())?;
        }
        let base = b.finish(Some("base"))?;
        store.commit()?;
        let mut child = store.new_layer(Some(&base))?;
        child.delete("etc/small")?;
        child.put("etc/new", &pattern(5000, 3))?;
        let child = child.finish(Some("child"))?;
        store.create_volume("data")?;
        let data = Mount {
            source: MountSource::Volume("data".into()),
            target: "data".into(),
            readonly: false,
            nocopy: false,
        };
        let c = store.create_container_with(&child, Some("web"), &[data])?;
        c.write_at("bin/tool", 4096 + 10, b"patched")?;
        c.put("data/db", &pattern(6000, 9))?;
        store.commit()?;
    }
    let mut bytes = std::fs::read(&path).map_err(|e| crate::Error::file(&path, e))?;
    let _ = std::fs::remove_dir_all(&dir);
    let tail = newest(&bytes).map_or(DATA_START, |sb| sb.tail);
    bytes.truncate(tail as usize);
    let records = walk(&bytes, DATA_START, tail);
    let mut structure: Vec<(u64, u64)> = HEADER_OFFSETS
        .iter()
        .chain(SLOT_OFFSETS.iter().flatten())
        .map(|&o| (o, PAGE as u64))
        .collect();
    for &r in &records {
        let h = Header::parse(&bytes[r as usize..], r).expect("seed records parse");
        let whole = matches!(h.kind, record::Kind::Node | record::Kind::MapNode);
        structure.push((r, if whole { h.size() } else { HEADER_LEN as u64 }));
    }
    Ok(Image {
        bytes,
        records,
        structure,
    })
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 9) as u8)
        .collect()
}

fn page(bytes: &[u8], off: u64) -> Option<&[u8; PAGE]> {
    bytes.get(off as usize..off as usize + PAGE)?.try_into().ok()
}

fn newest(bytes: &[u8]) -> Option<Superblock> {
    SLOT_OFFSETS
        .iter()
        .flatten()
        .filter_map(|&o| Superblock::decode(page(bytes, o)?))
        .max_by_key(|sb| sb.generation)
}

/// Record starts from `from` up to `to`, following each header's size while it parses.
fn walk(bytes: &[u8], from: u64, to: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let Some(h) = bytes.get(at as usize..).and_then(|b| Header::parse(b, at).ok()) else {
            break;
        };
        out.push(at);
        at += h.size();
    }
    out
}

impl Image {
    /// The seed with `edits` applied and everything resealed. Each edit is 6 bytes: an
    /// offset (u32), an operation, and a value. Even operations aim at structure, odd ones
    /// anywhere; the operation picks between storing the value, flipping bits with it, and
    /// planting a 64-bit address (of a record, or a boundary) where a pointer may sit.
    pub fn damaged(&self, edits: &[u8]) -> Vec<u8> {
        let mut bytes = self.bytes.clone();
        let structure_len: u64 = self.structure.iter().map(|s| s.1).sum();
        for e in edits.chunks_exact(6) {
            let raw_off = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as u64;
            let (op, val) = (e[4], e[5]);
            let off = if op & 1 == 0 {
                self.structure_offset(raw_off % structure_len.max(1))
            } else {
                raw_off % bytes.len() as u64
            } as usize;
            match (op >> 1) % 4 {
                0 => bytes[off] = val,
                1 => bytes[off] ^= val | 1,
                2 => {
                    let addr = self.planted(val);
                    let end = (off + 8).min(bytes.len());
                    bytes[off..end].copy_from_slice(&addr.to_le_bytes()[..end - off]);
                }
                _ => bytes[off] = bytes[off].wrapping_add(val),
            }
        }
        self.reseal(&mut bytes);
        bytes
    }

    /// The seed with the first chunk pointer of every block-map leaf naming `addr` (its
    /// lengths and crc kept), resealed: a pointer the checksums admit that names bytes the
    /// file does not have, or bytes that are no record.
    pub fn with_leaf_pointers_at(&self, addr: u64) -> Vec<u8> {
        let mut bytes = self.bytes.clone();
        for &r in &self.records {
            let at = r as usize;
            let Ok(h) = Header::parse(&bytes[at..], r) else {
                continue;
            };
            let payload = at + HEADER_LEN;
            if h.kind == record::Kind::MapNode
                && bytes[payload] == 1
                && h.stored_len as usize >= 8 + crate::format::ptr::PTR_LEN
            {
                bytes[payload + 8..payload + 16].copy_from_slice(&addr.to_le_bytes());
            }
        }
        self.reseal(&mut bytes);
        bytes
    }

    /// Edits that point the first child of the first branch node back at the node itself:
    /// a cycle, which every walk of the tree must report rather than follow for ever.
    pub fn cycle_edits(&self) -> Option<Vec<u8>> {
        let n = self.records.len();
        let (i, &at) = self.records.iter().enumerate().find(|(_, &r)| {
            let bytes = &self.bytes[r as usize..];
            let Ok(h) = Header::parse(bytes, r) else { return false };
            let payload = &bytes[HEADER_LEN..HEADER_LEN + h.stored_len as usize];
            h.kind == record::Kind::Node && NodeView::parse(payload, r).is_ok_and(|v| !v.is_leaf() && v.len() > 0)
        })?;
        // The planted address is `records[val % n]` for a `val` of 5 or more.
        let val = (i..256).step_by(n).find(|&v| v >= 5)? as u8;
        // Past the node header (8 bytes) and the first slot's key prefix (8 bytes).
        let child = u32::try_from(at + HEADER_LEN as u64 + 16).ok()?;
        let mut edit = child.to_le_bytes().to_vec();
        edit.extend_from_slice(&[(2 << 1) | 1, val]);
        Some(edit)
    }

    fn structure_offset(&self, mut n: u64) -> u64 {
        for &(start, len) in &self.structure {
            if n < len {
                return start + n;
            }
            n -= len;
        }
        0
    }

    fn planted(&self, val: u8) -> u64 {
        let tail = self.bytes.len() as u64;
        match val {
            0 => 0,
            1 => u64::MAX,
            2 => tail,
            3 => tail + 64,
            4 => DATA_START - 64,
            _ => self.records[val as usize % self.records.len()],
        }
    }

    /// Recomputes what checksums would otherwise reject: every record's crc, each valid
    /// superblock's chain over its unsynced records, and every page crc.
    fn reseal(&self, bytes: &mut [u8]) {
        // Last first: a record grown over the next one's header keeps the crc it gets last.
        for &r in self.records.iter().rev() {
            let _ = record::reseal(&mut bytes[r as usize..]);
        }
        for &off in HEADER_OFFSETS.iter().chain(SLOT_OFFSETS.iter().flatten()) {
            seal_page(bytes, off);
            let Some(mut sb) = page(bytes, off).and_then(Superblock::decode) else {
                continue;
            };
            if sb.verify_from < sb.tail {
                let mut chain = crc32fast::Hasher::new();
                let recs = walk(bytes, sb.verify_from, sb.tail.min(bytes.len() as u64));
                for &r in &recs {
                    if let Ok(h) = Header::parse(&bytes[r as usize..], r) {
                        chain.update(&h.crc.to_le_bytes());
                    }
                }
                sb.chain_crc = chain.finalize();
                sb.chain_count = recs.len() as u32;
                bytes[off as usize..off as usize + PAGE].copy_from_slice(&sb.encode());
            }
        }
    }
}

fn seal_page(bytes: &mut [u8], off: u64) {
    let p = &mut bytes[off as usize..off as usize + PAGE];
    let crc = crc32fast::hash(&p[..PAGE - 4]);
    p[PAGE - 4..].copy_from_slice(&crc.to_le_bytes());
}
