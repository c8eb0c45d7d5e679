//! What one mount consists of: FUSE sessions (the container's tree, then each volume at its
//! target) and kernel bind mounts, each remembered with the kernel's id for it, so that
//! unmounting never takes down a mount that came to stand at the same path meanwhile.

use super::{ops, view, FuseOptions};
use crate::{Error, Result, Store};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One file system to serve: the mounted tree, or one of its volumes.
pub(super) struct Part {
    pub view: view::View,
    /// Its root's path in the view.
    pub root: Vec<u8>,
    /// Mount targets inside it (served by mounts of their own above it).
    pub below: Vec<Vec<u8>>,
    pub read_only: bool,
    /// Whether only this mount changes what it serves (a layer; a container or volume it
    /// holds), so the kernel may keep names, attributes and pages: not so for a read-only
    /// volume, which another container may be writing.
    pub stable: bool,
}

struct Session {
    session: fuser::BackgroundSession,
    dirty: Arc<AtomicBool>,
    at: PathBuf,
    mount_id: Option<u64>,
}

/// The mounts made so far, the container's first.
#[derive(Default)]
pub(super) struct Served {
    sessions: Vec<Session>,
    binds: Vec<(PathBuf, Option<u64>)>,
}

/// The kernel's id of the mount at `at` (what stands there now).
fn mount_id(at: &Path) -> Option<u64> {
    use rustix::fs::{statx, AtFlags, StatxFlags, CWD};
    statx(CWD, at, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::MNT_ID)
        .ok()
        .map(|s| s.stx_mnt_id)
}

impl Served {
    pub(super) fn start(
        &mut self,
        store: &Store,
        r: &str,
        part: Part,
        at: &Path,
        opts: &FuseOptions,
        store_dir: &Arc<std::os::fd::OwnedFd>,
    ) -> Result<()> {
        let committer = store.clone();
        let commit = Box::new(move || committer.commit());
        let ttl = Duration::from_secs(if part.stable { 60 } else { 1 });
        let config = super::config(r, part.read_only, opts)?;
        let fs = ops::LstoreFs::new(
            part.view,
            part.root,
            part.below,
            ttl,
            part.stable,
            commit,
            store_dir.clone(),
        );
        let dirty = fs.dirty.clone();
        let session = fuser::Session::new(fs, at, &config).map_err(|e| Error::File {
            path: at.to_path_buf(),
            source: e,
        })?;
        let session = session.spawn().map_err(Error::Io)?;
        self.sessions.push(Session {
            session,
            dirty,
            at: at.to_path_buf(),
            mount_id: mount_id(at),
        });
        Ok(())
    }

    /// A host folder (with what is mounted below it) at `at`, as `mount --rbind` (and
    /// `-o remount,bind,ro`) makes it.
    pub(super) fn bind(&mut self, host: &Path, at: &Path, read_only: bool) -> Result<()> {
        use rustix::mount::{mount_bind_recursive, mount_remount, MountFlags};
        let failed = |e: rustix::io::Errno| Error::File {
            path: at.to_path_buf(),
            source: e.into(),
        };
        mount_bind_recursive(host, at).map_err(failed)?;
        self.binds.push((at.to_path_buf(), mount_id(at)));
        if read_only {
            mount_remount(at, MountFlags::BIND | MountFlags::RDONLY, c"").map_err(failed)?;
        }
        Ok(())
    }

    /// Whether its root file system was unmounted from outside (a volume unmounted alone
    /// ends only itself: the container goes on being served).
    pub(super) fn ended(&self) -> bool {
        self.sessions.first().is_some_and(|s| s.session.guard.is_finished())
    }

    /// A thread that commits every `every` while changes come, until told to stop. A commit
    /// that fails (a full disk, say) is said and tried again at the next period.
    pub(super) fn committer(&self, store: &Store, every: Duration) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let stop = Arc::new(AtomicBool::new(false));
        let dirty: Vec<Arc<AtomicBool>> = self.sessions.iter().map(|s| s.dirty.clone()).collect();
        let (store, told) = (store.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut last = Instant::now();
            while !told.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                if last.elapsed() < every {
                    continue;
                }
                // Every flag taken, not just the first set one.
                let changed = dirty.iter().fold(false, |any, d| d.swap(false, Ordering::AcqRel) | any);
                if changed {
                    if let Err(e) = store.commit() {
                        eprintln!("lstore: the periodic commit failed (tried again in {every:?}): {e}");
                        dirty[0].store(true, Ordering::Release);
                    }
                    last = Instant::now();
                }
            }
        });
        (stop, thread)
    }

    /// Unmounts everything, what is mounted inside first, each lazily (the kernel detaches
    /// it at once; a file still open on it keeps its server until closed), then waits for
    /// each session to end. A path whose mount is no longer the one made here (unmounted
    /// from outside) is left alone.
    pub(super) fn stop(&mut self) -> std::io::Result<()> {
        let mut first_error = Ok(());
        let mut keep = |r: std::io::Result<()>| {
            if first_error.is_ok() {
                first_error = r;
            }
        };
        for (at, id) in self.binds.drain(..).rev() {
            if id.is_some() && mount_id(&at) == id {
                keep(detach(&at));
            }
        }
        for s in self.sessions.drain(..).rev() {
            if !s.session.guard.is_finished() && s.mount_id.is_some() && mount_id(&s.at) == s.mount_id {
                keep(detach(&s.at));
            }
            keep(s.session.join());
        }
        first_error
    }
}

/// A lazy unmount: `umount2(MNT_DETACH)` as root, else `fusermount3 -u -z`.
fn detach(at: &Path) -> std::io::Result<()> {
    if rustix::process::geteuid().is_root() {
        return match rustix::mount::unmount(at, rustix::mount::UnmountFlags::DETACH) {
            // Gone already (`umount -R` of what holds it).
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => Ok(()),
            r => r.map_err(std::io::Error::from),
        };
    }
    let st = std::process::Command::new("fusermount3")
        .args(["-u", "-z", "-q"])
        .arg(at)
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "fusermount3 -u -z {} failed",
            at.display()
        )))
    }
}
