//! Positioned reads of records, for the tools that must survive a damaged or shrinking file
//! (`verify`, `salvage`): nothing is mapped, so a file cut short under them is an error
//! naming the record, never a SIGBUS. Every read checks the record's crc.

use super::segments::{check_address, check_extent, Segments, Source};
use super::Io;
use crate::error::{Error, Result};
use crate::format::record::{Header, Kind, Record, HEADER_LEN};
use bumpalo::Bump;
use std::sync::Arc;

/// Reads records into owned buffers; cheap to share between threads.
#[derive(Clone)]
pub(crate) struct Preader {
    store_id: u64,
    io: Arc<dyn Io>,
    seg_size: u64,
    limit: u64,
}

/// A record read into its own buffer.
pub(crate) struct OwnedRecord {
    addr: u64,
    header: Header,
    bytes: Vec<u8>,
}

impl OwnedRecord {
    pub fn record(&self) -> Record<'_> {
        record_in(self.addr, self.header, &self.bytes)
    }
}

fn record_in(addr: u64, header: Header, bytes: &[u8]) -> Record<'_> {
    let stored_end = if header.kind == Kind::Pad {
        HEADER_LEN
    } else {
        HEADER_LEN + header.stored_len as usize
    };
    Record {
        addr,
        header,
        stored: &bytes[HEADER_LEN..stored_end],
        raw_header: &bytes[..HEADER_LEN],
    }
}

impl Preader {
    /// Reads the records `segs` can see (below its written end) from the same file.
    pub fn new(segs: &Segments) -> Preader {
        Preader {
            store_id: segs.store_id(),
            io: segs.io().clone(),
            seg_size: segs.segment_size(),
            limit: segs.limit(),
        }
    }

    /// The file's length now.
    pub fn file_len(&self) -> Result<u64> {
        self.io.len()
    }

    /// The header at `addr`, checked to lie where a record can, and of a size its kind can
    /// have: a damaged length never drives an allocation past the format's largest record.
    fn header(&self, addr: u64) -> Result<Header> {
        check_address(addr, self.limit)?;
        let mut raw = [0u8; HEADER_LEN];
        self.read(addr, &mut raw)?;
        let header = Header::parse(&raw, addr)?;
        check_extent(&header, addr, self.seg_size, self.limit)?;
        if header.kind != Kind::Pad && header.stored_len as u64 > header.kind.max_stored() {
            return Err(Error::corrupt(format!(
                "record at {addr:#x}: {} bytes is more than a {:?} holds",
                header.stored_len, header.kind
            )));
        }
        Ok(header)
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        self.io.read_at(addr, buf).map_err(|e| match e {
            Error::Io(ref io) | Error::File { source: ref io, .. }
                if io.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                Error::corrupt(format!("record at {addr:#x} is cut off by the end of the file"))
            }
            e => e,
        })
    }

    /// Fills `buf` (header and stored bytes) and checks the crc.
    fn fill(&self, addr: u64, header: &Header, buf: &mut [u8]) -> Result<()> {
        self.read(addr, buf)?;
        let (head, stored) = buf.split_at(HEADER_LEN);
        header.check(head, stored, addr)
    }

    fn len_of(header: &Header) -> usize {
        HEADER_LEN
            + if header.kind == Kind::Pad {
                0
            } else {
                header.stored_len as usize
            }
    }

    /// Reads the record at `addr` into a buffer of its own.
    pub fn read_owned(&self, addr: u64) -> Result<OwnedRecord> {
        let header = self.header(addr)?;
        let mut bytes = vec![0u8; Self::len_of(&header)];
        self.fill(addr, &header, &mut bytes)?;
        Ok(OwnedRecord { addr, header, bytes })
    }
}

/// A [`Preader`] that hands out borrowed records, as tree code expects, from an arena that
/// its owner clears between units of work ([`Pread::trim`]), so memory stays bounded.
pub(crate) struct Pread {
    reader: Preader,
    arena: Bump,
}

/// The arena is cleared once it holds this much.
const ARENA_MAX: usize = 64 << 20;

impl Pread {
    pub fn new(segs: &Segments) -> Pread {
        Pread {
            reader: Preader::new(segs),
            arena: Bump::new(),
        }
    }

    pub fn reader(&self) -> &Preader {
        &self.reader
    }

    /// Frees the records read so far once they take much memory. Taking `&mut self` means
    /// no record read from here is still borrowed.
    pub fn trim(&mut self) {
        if self.arena.allocated_bytes() > ARENA_MAX {
            self.arena.reset();
        }
    }
}

impl Source for Pread {
    fn store_id(&self) -> u64 {
        self.reader.store_id
    }

    fn record(&self, addr: u64) -> Result<Record<'_>> {
        let header = self.reader.header(addr)?;
        let bytes = self.arena.alloc_slice_fill_copy(Preader::len_of(&header), 0u8);
        self.reader.fill(addr, &header, bytes)?;
        Ok(record_in(addr, header, bytes))
    }
}
