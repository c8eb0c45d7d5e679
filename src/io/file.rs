//! The file seam. Everything the store writes goes through [`Io`] as positioned writes and
//! explicit syncs; everything it reads comes back through read-only maps of the same file.
//! Keeping writes behind this small trait lets tests stand in a backend that records,
//! drops, tears or reorders unsynced writes to simulate a power cut.

use super::locks::{self, Exclusive};
use crate::error::{Error, Result};
use crate::host::open_regular;
use memmap2::{Mmap, MmapOptions};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A file the store can write at positions, sync, and map for reading.
#[allow(clippy::len_without_is_empty)] // a store file is never empty
pub trait Io: Send + Sync + 'static {
    /// Current length of the file in bytes.
    fn len(&self) -> Result<u64>;
    /// Grows (or shrinks) the file; new bytes read as zero.
    fn set_len(&self, len: u64) -> Result<()>;
    /// Writes all of `data` at `offset`. Not durable until [`Io::sync`].
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()>;
    /// Fills `buf` from `offset`; a short file is an error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Makes every write so far durable (fdatasync).
    fn sync(&self) -> Result<()>;
    /// Starts writing a range to the disk without waiting, so that a large commit's
    /// [`Io::sync`] finds most of its bytes written. Promises nothing: doing nothing is correct.
    fn start_writeback(&self, _offset: u64, _len: u64) {}
    /// Maps `len` bytes at page-aligned `offset` read-only.
    fn map(&self, offset: u64, len: usize) -> Result<Mmap>;
    /// Gives the blocks of a range back to the file system; it reads as zeros after.
    fn punch_hole(&self, offset: u64, len: u64) -> Result<()>;
    /// Bytes the file system has allocated for the file (what `du` shows).
    fn allocated(&self) -> Result<u64>;
    /// Bytes holding data (not holes) at or past `offset`, to the end of the file.
    fn allocated_from(&self, offset: u64) -> Result<u64>;
    /// Tells other processes that this handle reads generation `g` (`hold`), or no longer.
    fn hold_generation(&self, g: u64, hold: bool) -> Result<()>;
    /// The oldest generation below `below` that another handle of the file reads, if any.
    fn oldest_reader(&self, below: u64) -> Result<Option<u64>>;
    /// Takes a lock that one handle of the file at a time holds, waiting up to `wait` for
    /// another to let go; then [`Error::Busy`], naming its process when known.
    fn lock(&self, lock: Exclusive, wait: Duration) -> Result<()>;
    /// Lets go of a lock taken with [`Io::lock`].
    fn unlock(&self, lock: Exclusive) -> Result<()>;
}

/// The real backend: one file, locked against other processes for as long as it is open.
pub struct FileIo {
    file: File,
    /// Named in every error, so "No space left on device" says which file.
    path: std::path::PathBuf,
}

impl FileIo {
    /// Creates a new file; fails if it exists.
    pub fn create(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::AlreadyExists(path.to_path_buf()),
                _ => Error::file(path, e),
            })?;
        become_writer(&file, path, Duration::ZERO)?;
        Ok(FileIo::with(file, path))
    }

    /// Opens an existing file for a reader, or for the writer if none holds it now.
    pub fn open(path: &Path, writable: bool) -> Result<Self> {
        Self::open_waiting(path, writable, Duration::ZERO)
    }

    /// Opens an existing file; a writer waits up to `wait` for another writer to finish, then
    /// is `Busy`. Readers never wait: they take no lock a writer holds. Only a regular file can
    /// be a store: a folder, a FIFO or a device is `NotAStore` at once (the open does not
    /// block, so a FIFO with no writer cannot hang it).
    pub fn open_waiting(path: &Path, writable: bool, wait: Duration) -> Result<Self> {
        use std::os::unix::fs::MetadataExt;
        // Not even opened unless a regular file: opening a device can act on it.
        let before = std::fs::metadata(path).map_err(|e| Error::file(path, e))?;
        if !before.is_file() {
            return Err(Error::NotAStore(path.to_path_buf()));
        }
        let opened = open_regular(OpenOptions::new().read(true).write(writable), path, true)
            .map_err(|e| Error::file(path, e))?;
        let file = match opened {
            Some((f, md)) if (md.dev(), md.ino()) == (before.dev(), before.ino()) => f,
            _ => return Err(Error::NotAStore(path.to_path_buf())),
        };
        if writable {
            become_writer(&file, path, wait)?;
        }
        Ok(FileIo::with(file, path))
    }

    /// Positioned reads through this handle (metadata walks: df, verify) read exactly what
    /// they ask for: no readahead pulls the chunk data around a node into memory. Reads of
    /// values go through maps, whose own read-around this leaves alone.
    fn with(file: File, path: &Path) -> FileIo {
        // Advice only: a file system that ignores it reads ahead as before.
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Random);
        FileIo {
            file,
            path: path.to_path_buf(),
        }
    }
}

/// Joins the store's writers, waiting up to `wait` while gc has it to itself; then `Busy`,
/// naming gc's process.
fn become_writer(file: &File, path: &Path, wait: Duration) -> Result<()> {
    // A writer opening holds the store to itself for a moment; gc for as long as it runs.
    let wait = wait.max(Duration::from_secs(5));
    wait_for(
        path,
        "the store (gc or an opening writer has it to itself)",
        wait,
        || locks::try_writer(file),
    )
}

/// Retries `attempt` with growing pauses until it succeeds or `wait` has passed; then `Busy`,
/// naming the holder it last reported.
fn wait_for(
    path: &Path,
    what: &str,
    wait: Duration,
    mut attempt: impl FnMut() -> std::io::Result<std::result::Result<(), Option<u32>>>,
) -> Result<()> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_micros(100);
    loop {
        match attempt().map_err(|e| Error::file(path, e))? {
            Ok(()) => return Ok(()),
            Err(holder) if Instant::now() >= deadline => {
                return Err(Error::Busy {
                    path: path.to_path_buf(),
                    what: what.to_string(),
                    holder,
                })
            }
            Err(_) => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for FileIo {
    fn drop(&mut self) {
        let _ = locks::release_all(&self.file);
    }
}

impl FileIo {
    fn err(&self, e: std::io::Error) -> Error {
        Error::file(&self.path, e)
    }
}

impl Io for FileIo {
    fn len(&self) -> Result<u64> {
        Ok(self.file.metadata().map_err(|e| self.err(e))?.len())
    }
    fn set_len(&self, len: u64) -> Result<()> {
        self.file.set_len(len).map_err(|e| self.err(e))
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.file.write_all_at(data, offset).map_err(|e| self.err(e))
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file.read_exact_at(buf, offset).map_err(|e| self.err(e))
    }
    fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| self.err(e))
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: a plain system call on a descriptor this handle owns; no memory is passed.
        // Its result is ignored on purpose: where it is not supported, or fails, the commit's
        // fdatasync writes the range and reports any error.
        unsafe { libc::sync_file_range(self.file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
    }
    fn map(&self, offset: u64, len: usize) -> Result<Mmap> {
        // SAFETY: the store never rewrites bytes of a live record and holds a lock that keeps
        // other lstore processes from writing; bytes under a map only change where no reader
        // is looking (beyond the committed tail).
        unsafe { MmapOptions::new().offset(offset).len(len).map(&self.file) }.map_err(|e| self.err(e))
    }
    fn punch_hole(&self, offset: u64, len: u64) -> Result<()> {
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: a plain syscall on a file descriptor we own.
        let r = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, offset as libc::off_t, len as libc::off_t) };
        if r != 0 {
            return Err(self.err(std::io::Error::last_os_error()));
        }
        Ok(())
    }
    fn allocated(&self) -> Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.file.metadata().map_err(|e| self.err(e))?.blocks() * 512)
    }
    fn hold_generation(&self, g: u64, hold: bool) -> Result<()> {
        locks::reader(&self.file, g, hold).map_err(|e| self.err(e))
    }
    fn lock(&self, lock: Exclusive, wait: Duration) -> Result<()> {
        let what = match lock {
            Exclusive::Commit => "a commit",
            Exclusive::Alloc => "a new segment",
            Exclusive::Item(_) => "a container or volume",
            Exclusive::OnlyWriter => "the store (gc needs it to itself)",
            Exclusive::Claim(_) => "an extent of the free pool",
        };
        wait_for(&self.path, what, wait, || locks::try_exclusive(&self.file, lock))
    }
    fn unlock(&self, lock: Exclusive) -> Result<()> {
        locks::release(&self.file, lock).map_err(|e| self.err(e))
    }
    fn oldest_reader(&self, below: u64) -> Result<Option<u64>> {
        locks::oldest_reader(&self.file, below).map_err(|e| self.err(e))
    }
    fn allocated_from(&self, offset: u64) -> Result<u64> {
        use rustix::fs::{seek, SeekFrom};
        let end = self.len()?;
        let (mut at, mut total) = (offset, 0u64);
        // Data extents by SEEK_DATA / SEEK_HOLE: as many steps as extents, never the bytes.
        while at < end {
            let data = match seek(&self.file, SeekFrom::Data(at)) {
                Ok(d) => d,
                Err(rustix::io::Errno::NXIO) => break,
                Err(e) => return Err(self.err(e.into())),
            };
            let hole = seek(&self.file, SeekFrom::Hole(data)).map_err(|e| self.err(e.into()))?;
            total += hole.min(end).saturating_sub(data);
            at = hole;
        }
        Ok(total)
    }
}
