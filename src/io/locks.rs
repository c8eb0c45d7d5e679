//! Cross-process coordination through open-file-description (OFD) byte-range locks on the
//! store file, at offsets far past any data (a lock there writes nothing). The kernel drops
//! a process's locks when it dies, so a killed writer or reader never leaves one behind, and
//! no lock file or shared table can go stale (LMDB's reader table needs a liveness check; this
//! needs none).
//!
//! - Every writer holds a shared lock on [`WRITER`], and a shared one on `HOLDER + pid`, which
//!   names it. gc turns the first into an exclusive lock: it runs only as the one writer.
//! - A commit holds [`COMMIT`], and a writer taking a new extent [`ALLOC`], each briefly.
//! - A writer that takes an extent from the free pool holds `CLAIMS + extent index` until a
//!   published commit no longer lists that extent in the pool.
//! - A writer of a container or volume holds the lock of its item slot (a hash of it), with
//!   the slot's own `+ 1 + pid` naming it, for as long as it has it open.
//! - A reader holds a shared lock on `READERS + g` for each generation `g` it reads; gc in
//!   the writer gives back no space that a generation below its own could still reach while
//!   any such lock is held.

use std::fs::File;
use std::os::fd::AsRawFd;

/// The writer's lock.
const WRITER: u64 = 1 << 62;
/// `HOLDER + pid`: the writer's process id.
const HOLDER: u64 = WRITER + 1;
/// Process ids are below 2^22 on Linux.
const HOLDER_SPAN: u64 = 1 << 22;
/// `READERS + generation`: a reader of that generation.
const READERS: u64 = 1 << 61;
/// Held while a commit publishes.
const COMMIT: u64 = WRITER + (1 << 23);
/// Held while a writer grows the file by a segment.
const ALLOC: u64 = COMMIT + 1;
/// `CLAIMS + extent index`: an extent taken from the free pool, not yet out of it in a
/// published commit. Above every item lock (`ITEMS + ITEM_SLOTS * HOLDER_SPAN` < 2^62 + 2^53).
const CLAIMS: u64 = WRITER + (1 << 60);
/// `ITEMS + slot * HOLDER_SPAN`: the writer of a container or volume; `+ 1 + pid` names it.
const ITEMS: u64 = WRITER + (1 << 24);
/// Item slots: a container or volume hashes to one of these.
pub(crate) const ITEM_SLOTS: u64 = 1 << 30;

/// A lock one process at a time holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exclusive {
    /// Publishing a commit.
    Commit,
    /// Growing the file.
    Alloc,
    /// Writing one container or volume (its slot, below [`ITEM_SLOTS`]).
    Item(u64),
    /// Being the only writer (gc).
    OnlyWriter,
    /// Writing into an extent taken from the free pool (its index from the data start).
    Claim(u64),
}

impl Exclusive {
    /// Where the lock is, and where the locks naming its holder are.
    fn offsets(self) -> (u64, Option<u64>) {
        match self {
            Exclusive::Commit => (COMMIT, None),
            Exclusive::Alloc => (ALLOC, None),
            Exclusive::Item(slot) => {
                let at = ITEMS + slot.min(ITEM_SLOTS - 1) * HOLDER_SPAN;
                (at, Some(at + 1))
            }
            Exclusive::OnlyWriter => (WRITER, Some(HOLDER)),
            Exclusive::Claim(extent) => (CLAIMS + extent.min((1 << 40) - 1), None),
        }
    }
}

fn pid() -> u64 {
    u64::from(std::process::id()).min(HOLDER_SPAN - 2)
}

/// Takes `lock` without waiting, or says who holds it (when that is known).
pub(crate) fn try_exclusive(file: &File, lock: Exclusive) -> std::io::Result<Result<(), Option<u32>>> {
    let (at, names) = lock.offsets();
    if !try_lock(file, at, 1, true)? {
        let holder = match names {
            Some(n) => conflicting(file, n, HOLDER_SPAN - 1)?.map(|x| (x - n) as u32),
            None => None,
        };
        return Ok(Err(holder));
    }
    if let (Some(n), false) = (names, lock == Exclusive::OnlyWriter) {
        try_lock(file, n + pid(), 1, false)?;
    }
    Ok(Ok(()))
}

/// Lets go of `lock` (the only-writer lock goes back to the shared writer's lock).
pub(crate) fn release(file: &File, lock: Exclusive) -> std::io::Result<()> {
    let (at, names) = lock.offsets();
    if lock == Exclusive::OnlyWriter {
        return try_lock(file, at, 1, false).map(|_| ());
    }
    unlock(file, at, 1)?;
    if let Some(n) = names {
        unlock(file, n + pid(), 1)?;
    }
    Ok(())
}

fn flock(kind: libc::c_int, start: u64, len: u64) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is a valid value (l_pid must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    fl
}

fn fcntl(file: &File, cmd: libc::c_int, fl: &mut libc::flock) -> std::io::Result<()> {
    // SAFETY: an fcntl lock call on a descriptor we own, with a valid flock struct.
    if unsafe { libc::fcntl(file.as_raw_fd(), cmd, fl as *mut libc::flock) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Takes a lock on `[start, start + len)` without waiting; `false` when another holds it.
fn try_lock(file: &File, start: u64, len: u64, exclusive: bool) -> std::io::Result<bool> {
    let kind = if exclusive { libc::F_WRLCK } else { libc::F_RDLCK };
    match fcntl(file, libc::F_OFD_SETLK, &mut flock(kind, start, len)) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn unlock(file: &File, start: u64, len: u64) -> std::io::Result<()> {
    fcntl(file, libc::F_OFD_SETLK, &mut flock(libc::F_UNLCK, start, len))
}

/// The start of a lock another open file holds that conflicts with an exclusive one on
/// `[start, start + len)`, if any.
fn conflicting(file: &File, start: u64, len: u64) -> std::io::Result<Option<u64>> {
    let mut fl = flock(libc::F_WRLCK, start, len);
    fcntl(file, libc::F_OFD_GETLK, &mut fl)?;
    Ok((fl.l_type != libc::F_UNLCK as libc::c_short).then_some(fl.l_start as u64))
}

/// Lets go of every lock this open file holds. Closing the file would too, but only once no
/// copy of the descriptor is left, and a child another thread forks holds a copy until it
/// execs: an explicit unlock frees the store at once.
pub(crate) fn release_all(file: &File) -> std::io::Result<()> {
    // Length 0: to the end of all offsets, so the writer's, holder's and readers' locks.
    unlock(file, READERS, 0)
}

/// Joins the writers: a shared lock that only gc's exclusive one conflicts with. Refused
/// (naming gc's process when it can) while gc runs.
pub(crate) fn try_writer(file: &File) -> std::io::Result<Result<(), Option<u32>>> {
    if !try_lock(file, WRITER, 1, false)? {
        let holder = conflicting(file, HOLDER, HOLDER_SPAN - 1)?.map(|at| (at - HOLDER) as u32);
        return Ok(Err(holder));
    }
    try_lock(file, HOLDER + pid(), 1, false)?;
    Ok(Ok(()))
}

/// Marks generation `g` as read by this open file (`hold`), or no longer.
pub(crate) fn reader(file: &File, g: u64, hold: bool) -> std::io::Result<()> {
    let at = READERS + g.min(READERS - 1);
    if hold {
        // Shared locks never conflict with each other, and the writer never locks here.
        try_lock(file, at, 1, false).map(|_| ())
    } else {
        unlock(file, at, 1)
    }
}

/// The oldest generation below `below` that another open file reads, if any. Binary search
/// over the lock range: each probe asks the kernel whether any reader lock lies in a range.
pub(crate) fn oldest_reader(file: &File, below: u64) -> std::io::Result<Option<u64>> {
    let below = below.min(READERS - 1);
    if below == 0 || conflicting(file, READERS, below)?.is_none() {
        return Ok(None);
    }
    let (mut lo, mut hi) = (0u64, below);
    // Invariant: some reader lies in [lo, hi); narrow to the lowest.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if conflicting(file, READERS + lo, mid - lo)?.is_some() {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(Some(lo))
}
