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
mod served;
mod unmount;
mod view;

pub use unmount::{server_error_file, unmount_fuse};

use crate::{Error, MountSource, Result, Store, Target};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
/// unmounted (`umount`, `fusermount3 -u`, [`unmount_fuse`]) or the process gets SIGINT,
/// SIGTERM or SIGHUP; then commits. `ready` is called once the mount is in place. See
/// [`FuseMount`] for a mount served in the background of a program that goes on.
pub fn mount_fuse(store: &Store, r: &str, mountpoint: &Path, opts: &FuseOptions, ready: impl FnOnce()) -> Result<()> {
    // Before the mount exists, so a signal never leaves one nobody serves.
    STOP.store(false, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let mount = FuseMount::new(store, r, mountpoint, opts)?;
    ready();
    while !STOP.load(Ordering::SeqCst) && !mount.ended() {
        std::thread::sleep(Duration::from_millis(100));
    }
    mount.unmount()
}

/// A layer or container mounted through FUSE and served by threads of this process, with a
/// commit every [`FuseOptions::commit_every`] while changes come, until [`FuseMount::unmount`]
/// (or drop, which unmounts too but cannot report) or until someone unmounts it.
///
/// A container's named volumes are served as FUSE mounts of their own at their targets, and
/// its bind mounts are the kernel's (root only), so each has its own `st_dev` and the kernel
/// answers `EXDEV` across them. The container and its writable volumes are held for the
/// mount's life ([`Container::hold`](crate::Container::hold)): another mount, writer or
/// removal of them is `Busy`, naming this process. The kernel caches what it is served, so
/// while mounted, change the container through the mount only (not through the library in
/// this process).
pub struct FuseMount {
    store: Store,
    mountpoint: std::path::PathBuf,
    served: served::Served,
    held: Option<crate::ContainerHold>,
    committer: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl FuseMount {
    /// Mounts `r` at `mountpoint`: it is in place when this returns.
    pub fn new(store: &Store, r: &str, mountpoint: &Path, opts: &FuseOptions) -> Result<FuseMount> {
        check_mountpoint(mountpoint)?;
        let (view, mounts) = match store.resolve(r)? {
            Target::Layer(id) => (view::View::Layer(store.layer_by_id(id)?), Vec::new()),
            Target::Container(_) if opts.read_only => (view::View::Layer(store.snapshot(r)?), Vec::new()),
            Target::Container(_) => {
                let c = store.container(r)?;
                let mut mounts = c.info()?.mounts;
                // A parent before what is mounted inside it.
                mounts.sort_by_key(|m| m.target.len());
                (view::View::Container(c), mounts)
            }
        };
        for m in &mounts {
            m.check_target()?;
        }
        if mounts.iter().any(|m| matches!(m.source, MountSource::Bind(_))) && !rustix::process::geteuid().is_root() {
            return Err(Error::InvalidArgument(format!(
                "{r}: the container has bind mounts, which the kernel makes: mounting it needs root"
            )));
        }
        let mut mount = FuseMount {
            store: store.clone(),
            mountpoint: mountpoint.to_path_buf(),
            served: served::Served::default(),
            held: None,
            committer: None,
        };
        if let view::View::Container(c) = &view {
            mount.held = Some(c.hold()?);
            c.make_mount_points()?;
        }
        let read_only = view.writable().is_none();
        if let Err(e) = mount.start_all(r, view, read_only, &mounts, opts) {
            // What it held goes with a commit (the folders made for the targets with it).
            mount.held.take();
            let _ = store.commit();
            return Err(e);
        }
        mount.committer = Some(mount.served.committer(store, opts.commit_every));
        Ok(mount)
    }

    /// The container's tree, then each volume and bind mount, a parent before what is inside
    /// it. On a failure what was mounted is unmounted.
    fn start_all(
        &mut self,
        r: &str,
        view: view::View,
        read_only: bool,
        mounts: &[crate::Mount],
        opts: &FuseOptions,
    ) -> Result<()> {
        let store_dir = open_store_dir(&self.store)?;
        let targets: Vec<Vec<u8>> = mounts.iter().map(|m| m.target.as_bytes().to_vec()).collect();
        let container = view.writable().cloned();
        let main = served::Part {
            view,
            root: Vec::new(),
            below: targets.clone(),
            read_only,
            stable: true,
        };
        let (store, mountpoint, served) = (&self.store, &self.mountpoint, &mut self.served);
        let started = served
            .start(store, r, main, mountpoint, opts, &store_dir)
            .and_then(|_| {
                for m in mounts {
                    // A checked target: relative, no `.` or `..`, and every folder on the way a
                    // folder of the container's (made so), never a symlink.
                    let at = mountpoint.join(&m.target);
                    let t = m.target.as_bytes();
                    let below = (targets.iter())
                        .filter(|b| b.len() > t.len() && b.starts_with(t) && b[t.len()] == b'/')
                        .cloned()
                        .collect();
                    match &m.source {
                        MountSource::Volume(_) => {
                            let c = container.clone().expect("volumes are a container's");
                            let part = served::Part {
                                view: view::View::Container(c),
                                root: t.to_vec(),
                                below,
                                read_only: m.readonly,
                                // A read-only volume is not held: another container may write it.
                                stable: !m.readonly,
                            };
                            served.start(store, r, part, &at, opts, &store_dir)?;
                        }
                        MountSource::Bind(host) => served.bind(host, &at, m.readonly)?,
                    }
                }
                Ok(())
            });
        if started.is_err() {
            // Why it could not start is the error worth telling; undoing is best effort.
            let _ = served.stop();
        }
        started
    }

    /// Whether it was unmounted from outside (`umount`, [`unmount_fuse`]): then
    /// [`FuseMount::unmount`] only commits.
    pub fn ended(&self) -> bool {
        self.served.ended()
    }

    /// Unmounts, lazily (the kernel detaches it at once), waits until its sessions end (a
    /// file still open on it keeps its session until closed), and commits.
    pub fn unmount(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        if let Some((stop, thread)) = self.committer.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = thread.join();
        }
        let ended = self.served.stop();
        // Held until every session ended, then let go with the commit.
        self.held.take();
        let committed = self.store.commit();
        ended.map_err(|e| Error::File {
            path: self.mountpoint.clone(),
            source: e,
        })?;
        committed
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        if self.committer.is_some() {
            let _ = self.finish();
        }
    }
}

fn check_mountpoint(mountpoint: &Path) -> Result<()> {
    // The kernel mounts over a file too, and every call on it then fails.
    let meta = std::fs::metadata(mountpoint).map_err(|e| Error::File {
        path: mountpoint.to_path_buf(),
        source: e,
    })?;
    if !meta.is_dir() {
        return Err(Error::NotADirectory(mountpoint.display().to_string()));
    }
    Ok(())
}

/// The folder of the store file, opened before anything is mounted: `statfs` asks it through
/// this descriptor, never through a path that could lead into the mount itself.
fn open_store_dir(store: &Store) -> Result<Arc<std::os::fd::OwnedFd>> {
    let dir_path = (store.path().parent())
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
    let fd = rustix::fs::open(dir_path, flags, rustix::fs::Mode::empty()).map_err(|e| Error::File {
        path: dir_path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(Arc::new(fd))
}

fn config(r: &str, read_only: bool, opts: &FuseOptions) -> Result<fuser::Config> {
    use fuser::MountOption as O;
    let mut options = vec![
        O::FSName(unmount::source(r)),
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
