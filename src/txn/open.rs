//! Creating a store file, and opening one at its newest whole commit.

use super::Catalog;
use super::Txn;
use crate::error::{Error, Result};
use crate::format::superblock::{
    self, FileHeader, Superblock, DATA_START, FILE_MAGIC, HEADER_OFFSETS, PAGE, SLOT_OFFSETS,
};
use crate::io::{Appender, Io, Segments};
use crate::tree::chunk_index::ChunkIndex;
use std::path::Path;
use std::sync::Arc;

/// A file opened at a commit.
pub(crate) struct Opened {
    pub segs: Segments,
    pub header: FileHeader,
    pub txn: Txn,
    /// What open rolled back, if the newest commit in the file was incomplete.
    pub recovery: Option<Recovery>,
}

/// A newer commit that open passed over.
#[derive(Clone, Debug)]
pub(crate) struct Recovery {
    pub note: String,
    /// The commit was whole when written (its records were durable before its superblock,
    /// or the bytes it needs are cut off below where a crash can reach): a crash cannot
    /// explain passing it over, so something acknowledged was lost.
    pub lost: bool,
}

/// Writes the header page, its copy, and a first, empty commit in both copies of slot 0.
pub(crate) fn create(io: &dyn Io, header: &FileHeader) -> Result<()> {
    io.set_len(DATA_START)?;
    for off in HEADER_OFFSETS {
        io.write_at(off, &header.encode())?;
    }
    let sb = Superblock {
        generation: 1,
        tail: DATA_START,
        high: DATA_START,
        verify_from: DATA_START,
        ..Default::default()
    };
    write_slot(io, 0, &sb)?;
    // Slot 1 blank but written: every fixed page is allocated now, so no commit ever needs a
    // new block there (on a full disk, gc's first commit must still go through).
    for off in SLOT_OFFSETS[1] {
        io.write_at(off, &[0u8; PAGE])?;
    }
    io.sync()
}

/// Writes both copies of a superblock slot (not synced).
pub(crate) fn write_slot(io: &dyn Io, slot: usize, sb: &Superblock) -> Result<()> {
    let page = sb.encode();
    for off in SLOT_OFFSETS[slot] {
        io.write_at(off, &page)?;
    }
    Ok(())
}

pub(crate) fn read_page(io: &dyn Io, offset: u64) -> Result<[u8; PAGE]> {
    let mut p = [0u8; PAGE];
    io.read_at(offset, &mut p)?;
    Ok(p)
}

/// A reader's move to the newest whole commit another process published: the new state, or
/// `None` when there is none newer than `generation`. `segs` learns the file's new length.
/// The commit is checked through the reader's own maps (a new map per refresh would cost
/// more than the reads it serves).
pub(crate) fn reload(io: &Arc<dyn Io>, segs: &Segments, generation: u64) -> Result<Option<Txn>> {
    Ok(newest_whole(io, segs, generation)?.map(|(slot, sb)| txn_at(slot, sb)))
}

/// The newest whole commit newer than `generation`, with its slot, checked through `segs`
/// (which learn the file's new length).
pub(crate) fn newest_whole(io: &Arc<dyn Io>, segs: &Segments, generation: u64) -> Result<Option<(usize, Superblock)>> {
    // The common case, nothing new, costs four small reads: only a copy that claims a newer
    // generation is read and checked whole.
    let mut claimed = false;
    for off in SLOT_OFFSETS.iter().flatten() {
        let mut head = [0u8; superblock::HEAD_LEN];
        segs.fixed_bytes(*off, &mut head)?;
        claimed |= superblock::claims_newer(&head, generation);
    }
    if !claimed {
        return Ok(None);
    }
    let newer: Vec<_> = valid_superblocks(io.as_ref())?
        .into_iter()
        .filter(|(_, sb)| sb.generation > generation)
        .collect();
    if newer.is_empty() {
        return Ok(None);
    }
    let file_len = io.len()?;
    for (slot, sb) in newer {
        if !tail_in_file(&sb, file_len) {
            continue;
        }
        // Growing the reader's bounds before the check is harmless if it fails: only records
        // an accepted commit reaches are ever read, each checked against its crc.
        // Other writers' records of this commit may lie anywhere in the file, not only below
        // its tail (which is where the committing writer's own records end).
        segs.advance(file_len, file_len);
        if records_whole(segs, &sb).is_ok() {
            return Ok(Some((slot, sb)));
        }
    }
    Ok(None)
}

/// The valid superblock copies of both slots, newest first, each distinct one once.
fn valid_superblocks(io: &dyn Io) -> Result<Vec<(usize, Superblock)>> {
    let mut slots: Vec<(usize, Superblock)> = Vec::new();
    for (i, copies) in SLOT_OFFSETS.iter().enumerate() {
        for off in copies {
            if let Some(sb) = Superblock::decode(&read_page(io, *off)?) {
                if !slots.contains(&(i, sb.clone())) {
                    slots.push((i, sb));
                }
            }
        }
    }
    slots.sort_by_key(|(_, sb)| std::cmp::Reverse(sb.generation));
    Ok(slots)
}

fn txn_at(slot: usize, sb: Superblock) -> Txn {
    Txn {
        app: Appender::new(sb.tail, sb.used),
        chunks: ChunkIndex::new(sb.runs.clone()),
        catalog: Catalog::at(sb.catalog_root),
        generation: sb.generation,
        slot,
        own: 0,
        last_sb: sb,
        poisoned: false,
        counter: 0,
        no_zero_ahead: false,
        pool_add: Vec::new(),
        pool_cut: None,
        pool_rewrite: false,
    }
}

/// Opens the file at the newest superblock whose commit is whole.
/// `alone`: no other writer has the file open, so damaged copies of the fixed pages may be
/// rewritten.
pub(crate) fn open(io: Arc<dyn Io>, path: &Path, writable: bool, alone: bool) -> Result<Opened> {
    open_at(io, path, writable, alone).map_err(|e| match e {
        Error::Corrupt(why) => Error::Corrupt(format!("{}: {why}", path.display())),
        e => e,
    })
}

fn open_at(io: Arc<dyn Io>, path: &Path, writable: bool, alone: bool) -> Result<Opened> {
    let file_len = io.len()?;
    if file_len < DATA_START {
        let mut magic = [0u8; 8];
        if file_len >= 8 {
            io.read_at(0, &mut magic)?;
        }
        return Err(if magic == FILE_MAGIC {
            Error::corrupt("file is shorter than its header")
        } else {
            Error::NotAStore(path.to_path_buf())
        });
    }
    let header = read_header(io.as_ref(), path)?;
    let (slot, sb, segs, recovery) = newest_whole_commit_settled(&io, &header)?;
    // Writing would build on the older commit over the lost one's records, erasing what is
    // left of it: the store stays readable (verify, salvage) and refuses writes.
    if let Some(r) = recovery.as_ref().filter(|r| writable && r.lost) {
        return Err(Error::corrupt(format!(
            "{}; a committed generation was lost, so the store is not opened for writing (read it, or salvage it into a new store)",
            r.note
        )));
    }
    // Rewriting a fixed page beside another writer could undo its newer superblock.
    if writable && alone {
        repair_copies(io.as_ref(), &header, slot, &sb)?;
    }
    if writable && (sb.verify_from < sb.tail || sb.unsynced) {
        // A commit that was checked but maybe not synced: make it durable before building on it.
        io.sync()?;
    }
    let mut txn = txn_at(slot, sb);
    if writable {
        // Synced, so as good as this writer's own: its next commit may be a one-sync one.
        txn.own = txn.generation;
    }
    Ok(Opened {
        segs,
        header,
        txn,
        recovery,
    })
}

/// The file header, from its first copy or, when that one is damaged, its second. A valid
/// header of another format version is refused, never passed over.
fn read_header(io: &dyn Io, path: &Path) -> Result<FileHeader> {
    let first = FileHeader::decode(&read_page(io, HEADER_OFFSETS[0])?, path);
    match first {
        Ok(h) => Ok(h),
        Err(e @ Error::UnsupportedVersion { .. }) => Err(e),
        Err(e) => match FileHeader::decode(&read_page(io, HEADER_OFFSETS[1])?, path) {
            Ok(h) => Ok(h),
            Err(e2 @ Error::UnsupportedVersion { .. }) => Err(e2),
            Err(_) => Err(e),
        },
    }
}

/// Rewrites a damaged copy of the header or of the chosen superblock with the good one's
/// bytes: the same content, so a crash while doing it loses nothing (the other copy is whole).
fn repair_copies(io: &dyn Io, header: &FileHeader, slot: usize, sb: &Superblock) -> Result<()> {
    let (good_header, good_sb) = (header.encode(), sb.encode());
    let mut repaired = false;
    for (offs, good) in [(&HEADER_OFFSETS, &good_header), (&SLOT_OFFSETS[slot], &good_sb)] {
        for &off in offs.iter() {
            if read_page(io, off)? != *good {
                io.write_at(off, good)?;
                repaired = true;
            }
        }
    }
    if repaired {
        io.sync()?;
    }
    Ok(())
}

/// As [`newest_whole_commit`], read again when the slots changed under it: a gc in another
/// process may commit twice and cut the file between this open's reads of the slots and of
/// the file's length, and then no commit it read fits the shorter file. Slots that stayed the
/// same give the answer as it is.
fn newest_whole_commit_settled(
    io: &Arc<dyn Io>,
    header: &FileHeader,
) -> Result<(usize, Superblock, Segments, Option<Recovery>)> {
    let mut tries = 0;
    loop {
        let before = valid_superblocks(io.as_ref())?;
        let found = newest_whole_commit(io, header);
        let settled = found.as_ref().is_ok_and(|f| f.3.is_none()) || tries >= 3;
        if settled || valid_superblocks(io.as_ref())? == before {
            return found;
        }
        tries += 1;
    }
}

/// The newest valid superblock whose commit checks out, its slot, the segments it sees, and
/// a note when a newer one was rolled back.
fn newest_whole_commit(
    io: &Arc<dyn Io>,
    header: &FileHeader,
) -> Result<(usize, Superblock, Segments, Option<Recovery>)> {
    let slots = valid_superblocks(io.as_ref())?;
    // The length after the superblocks: a commit another writer publishes meanwhile has
    // grown the file before its superblock was written.
    let file_len = io.len()?;
    let mut why: Option<(String, bool)> = None;
    for (slot, sb) in slots {
        match check_commit(io, header, file_len, &sb) {
            // A newer commit that did not check out was rolled back: after a power cut that
            // is the protocol working; on a disk that lost bits it is worth knowing, so it is kept.
            Ok(segs) => {
                let recovery = why.map(|(why, lost)| Recovery {
                    note: format!(
                        "{why}; the store was opened at the commit before it (generation {})",
                        sb.generation
                    ),
                    lost,
                });
                return Ok((slot, sb, segs, recovery));
            }
            Err(e) => {
                let lost = why.as_ref().is_some_and(|w| w.1) || beyond_any_crash(&sb, file_len);
                why = Some((format!("superblock generation {}: {e}", sb.generation), lost));
            }
        }
    }
    Err(Error::Corrupt(
        why.map_or_else(|| "no valid superblock".into(), |w| w.0),
    ))
}

/// A commit no power cut can undo: written after its records were synced (so only lost or
/// changed bytes can make it fail), needing bytes that were durable before it began and that
/// the file no longer has, or needing bytes past an end that no crash leaves.
fn beyond_any_crash(sb: &Superblock, file_len: u64) -> bool {
    // The file grows by whole extents, so a crash leaves it on the extent grid.
    let off_grid = !(file_len - DATA_START).is_multiple_of(crate::io::EXTENT);
    sb.verify_from >= sb.tail || sb.verify_from > file_len || (sb.tail > file_len && off_grid)
}

/// Checks that a superblock's commit is whole: its tail inside the file and, when its
/// records were not known durable, their chain of crcs intact.
fn check_commit(io: &Arc<dyn Io>, header: &FileHeader, file_len: u64, sb: &Superblock) -> Result<Segments> {
    if !tail_in_file(sb, file_len) {
        return Err(Error::corrupt("tail is outside the file"));
    }
    let segs = Segments::new(io.clone(), header.segment_size, file_len, file_len);
    records_whole(&segs, sb)?;
    Ok(segs)
}

fn tail_in_file(sb: &Superblock, file_len: u64) -> bool {
    (DATA_START..=file_len).contains(&sb.tail)
        && (DATA_START..=sb.tail).contains(&sb.verify_from)
        && (sb.tail..=file_len).contains(&sb.high)
}

/// The records a commit wrote without syncing them first are all there: their chain of crcs
/// matches the one its superblock holds.
fn records_whole(segs: &Segments, sb: &Superblock) -> Result<()> {
    if sb.verify_from < sb.tail {
        let (crc, count) = segs.chain_of(sb.verify_from, sb.tail)?;
        if (crc, count) != (sb.chain_crc, sb.chain_count) {
            return Err(Error::corrupt("the last commit's records are incomplete"));
        }
    }
    Ok(())
}
