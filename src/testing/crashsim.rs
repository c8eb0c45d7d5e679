//! A power-cut simulator behind the [`Io`] seam, as SQLite's and redb's crash tests do. It
//! forwards every operation to a real file (so maps work) and logs it; afterwards it can
//! produce the file as it could be after a power cut at any operation: everything before the
//! last completed sync is there, and each write after it is dropped, torn at 512-byte sector
//! boundaries, or applied, in any order. It can also fail writes once a byte budget is spent
//! (a full disk) or fail every operation after a count (a process that died).

use crate::error::{Error, Result};
use crate::io::{FileIo, Io};
use memmap2::Mmap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// One logged operation.
#[derive(Clone, Debug)]
pub enum Op {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
    Sync,
    Punch { offset: u64, len: u64 },
}

/// How unsynced writes fare at the cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Every unsynced write is lost.
    DropAll,
    /// Each unsynced write is kept, lost or torn (a random subset of its sectors), at random.
    Tear,
    /// Unsynced writes land in a random order, a random prefix of them survives.
    Reorder,
}

/// The recording backend.
pub struct RecordingIo {
    inner: FileIo,
    /// Shared by every handle of the file: one disk, one order of operations.
    log: std::sync::Arc<Mutex<Vec<Op>>>,
    budget: AtomicU64,
    die_after: AtomicUsize,
    /// Microseconds each sync takes at least: a slow disk, so that other threads' work lands
    /// while a commit waits for its sync.
    sync_micros: AtomicU64,
}

impl RecordingIo {
    /// Creates `path` and records everything done to it.
    pub fn create(path: &Path) -> Result<RecordingIo> {
        Ok(RecordingIo {
            inner: FileIo::create(path)?,
            log: Default::default(),
            budget: AtomicU64::new(u64::MAX),
            die_after: AtomicUsize::new(usize::MAX),
            sync_micros: AtomicU64::new(0),
        })
    }

    /// Another handle of the same file (as another writer process opens it), recording into
    /// the same log.
    pub fn another_handle(&self, path: &Path) -> Result<RecordingIo> {
        Ok(RecordingIo {
            inner: FileIo::open(path, true)?,
            log: self.log.clone(),
            budget: AtomicU64::new(u64::MAX),
            die_after: AtomicUsize::new(usize::MAX),
            sync_micros: AtomicU64::new(self.sync_micros.load(Ordering::SeqCst)),
        })
    }

    /// Writes fail with ENOSPC once `bytes` more have been written.
    pub fn set_space(&self, bytes: u64) {
        self.budget.store(bytes, Ordering::SeqCst);
    }

    /// Every operation fails once `ops` more have been logged (the process died).
    pub fn die_after(&self, ops: usize) {
        let n = self.log.lock().unwrap().len();
        self.die_after.store(n.saturating_add(ops), Ordering::SeqCst);
    }

    /// Every sync takes at least `d` from now on.
    pub fn slow_syncs(&self, d: std::time::Duration) {
        self.sync_micros.store(d.as_micros() as u64, Ordering::SeqCst);
    }

    /// Operations logged so far.
    pub fn ops(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn push(&self, op: Op) -> Result<()> {
        let mut log = self.log.lock().unwrap();
        if log.len() >= self.die_after.load(Ordering::SeqCst) {
            return Err(Error::Io(std::io::Error::other("simulated crash: the process is gone")));
        }
        log.push(op);
        Ok(())
    }

    /// The file as it could be after a power cut just before operation `at`.
    pub fn image_at(&self, at: usize, cut: Cut, seed: u64) -> Vec<u8> {
        let log = self.log.lock().unwrap();
        let at = at.min(log.len());
        let synced = log[..at]
            .iter()
            .rposition(|o| matches!(o, Op::Sync))
            .map_or(0, |p| p + 1);
        let mut file = Vec::new();
        for op in &log[..synced] {
            apply(&mut file, op, None);
        }
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut pending: Vec<&Op> = log[synced..at].iter().collect();
        match cut {
            Cut::DropAll => {
                // File-size changes are metadata a journal keeps; data is lost.
                for op in pending.iter().filter(|o| matches!(o, Op::SetLen(_))) {
                    apply(&mut file, op, None);
                }
            }
            Cut::Tear => {
                for op in pending {
                    match next() % 3 {
                        0 if matches!(op, Op::Write { .. }) => {}
                        1 => apply(&mut file, op, Some(next())),
                        _ => apply(&mut file, op, None),
                    }
                }
            }
            Cut::Reorder => {
                for i in (1..pending.len()).rev() {
                    pending.swap(i, (next() % (i as u64 + 1)) as usize);
                }
                let keep = if pending.is_empty() {
                    0
                } else {
                    (next() % (pending.len() as u64 + 1)) as usize
                };
                for op in &pending[..keep] {
                    apply(&mut file, op, None);
                }
                for op in pending[keep..].iter().filter(|o| matches!(o, Op::SetLen(_))) {
                    apply(&mut file, op, None);
                }
            }
        }
        file
    }
}

/// Applies one operation to an in-memory file; with `tear`, a write keeps only some sectors.
fn apply(file: &mut Vec<u8>, op: &Op, tear: Option<u64>) {
    match op {
        Op::SetLen(len) => file.resize(*len as usize, 0),
        Op::Sync => {}
        Op::Punch { offset, len } => {
            let end = ((offset + len) as usize).min(file.len());
            if (*offset as usize) < end {
                file[*offset as usize..end].fill(0);
            }
        }
        Op::Write { offset, data } => {
            let end = *offset as usize + data.len();
            if file.len() < end {
                file.resize(end, 0);
            }
            match tear {
                None => file[*offset as usize..end].copy_from_slice(data),
                Some(mut bits) => {
                    for (i, sector) in data.chunks(512).enumerate() {
                        if i % 64 == 0 {
                            bits = bits.rotate_left(17) ^ 0x5851_F42D_4C95_7F2D;
                        }
                        if bits >> (i % 64) & 1 == 1 {
                            let at = *offset as usize + i * 512;
                            file[at..at + sector.len()].copy_from_slice(sector);
                        }
                    }
                }
            }
        }
    }
}

impl Io for RecordingIo {
    fn len(&self) -> Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> Result<()> {
        self.push(Op::SetLen(len))?;
        self.inner.set_len(len)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let left = self.budget.load(Ordering::SeqCst);
        if (data.len() as u64) > left {
            return Err(Error::Io(std::io::Error::from_raw_os_error(libc::ENOSPC)));
        }
        self.budget.store(left - data.len() as u64, Ordering::SeqCst);
        self.push(Op::Write {
            offset,
            data: data.to_vec(),
        })?;
        self.inner.write_at(offset, data)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn sync(&self) -> Result<()> {
        self.push(Op::Sync)?;
        std::thread::sleep(std::time::Duration::from_micros(
            self.sync_micros.load(Ordering::SeqCst),
        ));
        self.inner.sync()
    }
    fn map(&self, offset: u64, len: usize) -> Result<Mmap> {
        self.inner.map(offset, len)
    }
    fn punch_hole(&self, offset: u64, len: u64) -> Result<()> {
        self.push(Op::Punch { offset, len })?;
        self.inner.punch_hole(offset, len)
    }
    fn allocated(&self) -> Result<u64> {
        self.inner.allocated()
    }
    fn allocated_from(&self, offset: u64) -> Result<u64> {
        self.inner.allocated_from(offset)
    }
    fn hold_generation(&self, g: u64, hold: bool) -> Result<()> {
        self.inner.hold_generation(g, hold)
    }
    fn oldest_reader(&self, below: u64) -> Result<Option<u64>> {
        self.inner.oldest_reader(below)
    }
    fn lock(&self, lock: crate::io::Exclusive, wait: std::time::Duration) -> Result<()> {
        self.inner.lock(lock, wait)
    }
    fn unlock(&self, lock: crate::io::Exclusive) -> Result<()> {
        self.inner.unlock(lock)
    }
}
