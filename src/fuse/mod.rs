//! A layer or a container as a real file system, through FUSE (the `fuser` crate; no libfuse):
//! a layer read-only, a container read-write, its writes going block by block into its layer
//! (4 KiB written into a 1 GiB file copies one block, never the file), its volumes and bind
//! mounts at their targets. The kernel checks permissions (`default_permissions`).
//!
//! Durability: `fsync`, `fdatasync` and a folder's `fsync` commit the store durably. Linux does
//! not forward `sync` to a FUSE server, so the mount also commits every few seconds when
//! something changed, and at unmount. A killed mount loses at most what was written since
//! the last of those; the store opens clean.

mod nodes;
mod ops;
mod view;

use crate::{Error, Result, Store, Target};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to mount.
#[derive(Clone, Debug)]
pub struct FuseOptions {
    /// Mount a container read-only (a layer always is).
    pub read_only: bool,
    /// Let other users in (`allow_other`), with device files and setuid honoured (`dev`,
    /// `suid`): what a container's root file system needs. Only root may ask.
    pub allow_other: bool,
    /// How often changes are committed when nobody asked (fsync).
    pub commit_every: Duration,
}

impl Default for FuseOptions {
    fn default() -> Self {
        FuseOptions {
            read_only: false,
            allow_other: false,
            commit_every: Duration::from_secs(5),
        }
    }
}

/// Set by SIGINT, SIGTERM and SIGHUP: the mount unmounts, commits and returns.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Mounts `r` (a layer, an image or a container) at `mountpoint` and serves it until it is
/// unmounted (`umount`, `fusermount3 -u`) or the process gets SIGINT or SIGTERM; then commits.
/// `ready` is called once the mount is in place.
pub fn mount_fuse(store: &Store, r: &str, mountpoint: &Path, opts: &FuseOptions, ready: impl FnOnce()) -> Result<()> {
    let (view, targets) = match store.resolve(r)? {
        Target::Layer(id) => (view::View::Layer(store.layer_by_id(id)?), Vec::new()),
        Target::Container(_) if opts.read_only => (view::View::Layer(store.snapshot(r)?), Vec::new()),
        Target::Container(_) => {
            let c = store.container(r)?;
            let targets = c.info()?.mounts.iter().map(|m| m.target.as_bytes().to_vec()).collect();
            (view::View::Container(c), targets)
        }
    };
    let read_only = view.writable().is_none();
    let committer = store.clone();
    let commit = Box::new(move || committer.commit());
    let ttl = if read_only {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(1)
    };
    let dir_path = (store.path().parent())
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
    let store_dir = rustix::fs::open(dir_path, flags, rustix::fs::Mode::empty()).map_err(|e| Error::File {
        path: dir_path.to_path_buf(),
        source: e.into(),
    })?;
    // The kernel mounts over a file too, and every call on it then fails.
    let meta = std::fs::metadata(mountpoint).map_err(|e| Error::File {
        path: mountpoint.to_path_buf(),
        source: e,
    })?;
    if !meta.is_dir() {
        return Err(Error::NotADirectory(mountpoint.display().to_string()));
    }
    let fs = ops::LstoreFs::new(view, targets, ttl, commit, store_dir);
    let dirty = fs.dirty.clone();
    let config = config(r, read_only, opts)?;
    // Before the mount exists, so a signal never leaves one nobody serves.
    STOP.store(false, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let session = fuser::Session::new(fs, mountpoint, &config).map_err(|e| Error::File {
        path: mountpoint.to_path_buf(),
        source: e,
    })?;
    let background = session.spawn().map_err(Error::Io)?;
    ready();
    serve(store, &background, &dirty, opts.commit_every);
    // A lazy unmount (the kernel detaches at once and ends the session when the last open
    // file closes); then the last changes are committed.
    let ended = if background.guard.is_finished() {
        background.join()
    } else {
        background.umount_and_join()
    };
    let committed = store.commit();
    ended.map_err(|e| Error::File {
        path: mountpoint.to_path_buf(),
        source: e,
    })?;
    committed
}

/// Commits every `every` while changes come, until the mount ends or a signal asks. A commit
/// that fails (a full disk, say) is said and tried again at the next period; the mount stays.
fn serve(store: &Store, session: &fuser::BackgroundSession, dirty: &Arc<AtomicBool>, every: Duration) {
    let mut last = Instant::now();
    while !STOP.load(Ordering::SeqCst) && !session.guard.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() >= every && dirty.swap(false, Ordering::AcqRel) {
            if let Err(e) = store.commit() {
                eprintln!("lstore: the periodic commit failed (tried again in {every:?}): {e}");
                dirty.store(true, Ordering::Release);
            }
            last = Instant::now();
        }
    }
}

fn config(r: &str, read_only: bool, opts: &FuseOptions) -> Result<fuser::Config> {
    use fuser::MountOption as O;
    let mut options = vec![
        O::FSName(format!("lstore:{r}")),
        O::Subtype("lstore".into()),
        O::DefaultPermissions,
        if read_only { O::RO } else { O::RW },
    ];
    let mut config = fuser::Config::default();
    if opts.allow_other {
        if !rustix::process::geteuid().is_root() {
            return Err(Error::InvalidArgument(
                "allow_other (other users, devices, setuid) is for root to ask".into(),
            ));
        }
        options.extend([O::Dev, O::Suid]);
        config.acl = fuser::SessionACL::All;
    }
    config.mount_options = options;
    config.n_threads = Some(2);
    Ok(config)
}
