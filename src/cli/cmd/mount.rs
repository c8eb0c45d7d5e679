//! `lstore mount`: a layer or container as a FUSE file system, in the background (a process
//! of its own that serves it until unmounted) or in the foreground.

use crate::cli::cmd::Ctx;
use clap::Args;
use lstore::{Error, Result};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Set in the serving process a background mount starts.
const DAEMON: &str = "LSTORE_MOUNT_DAEMON";

#[derive(Args)]
pub struct MountArgs {
    /// The layer, image or container to mount (a layer or image read-only).
    r: String,
    /// An existing folder to mount it on.
    mountpoint: PathBuf,
    /// Mount a container read-only.
    #[arg(long)]
    read_only: bool,
    /// Serve in this process until unmounted or Ctrl-C (default: in the background).
    #[arg(long)]
    foreground: bool,
    /// Let other users in, with devices and setuid honoured (root only).
    #[arg(long)]
    allow_other: bool,
    /// Seconds between the commits the mount makes by itself (fsync commits at once).
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    commit_every: u64,
}

pub fn mount(ctx: &Ctx, a: MountArgs) -> Result<()> {
    if a.foreground {
        return serve(ctx, &a);
    }
    // The serving process says "mounted" on its standard output once the mount is in place,
    // or fails with its one-line error.
    let mut cmd = Command::new(std::env::current_exe().map_err(Error::Io)?);
    // Absolute: the serving process runs from `/`.
    let store = std::path::absolute(ctx.path()?).map_err(Error::Io)?;
    let mountpoint = std::path::absolute(&a.mountpoint).map_err(Error::Io)?;
    cmd.arg("--store").arg(store);
    cmd.arg("--wait").arg(ctx.wait().as_secs_f64().to_string());
    cmd.arg("mount").arg(&a.r).arg(mountpoint).arg("--foreground");
    cmd.arg("--commit-every").arg(a.commit_every.to_string());
    if a.read_only {
        cmd.arg("--read-only");
    }
    if a.allow_other {
        cmd.arg("--allow-other");
    }
    cmd.env(DAEMON, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A session of its own: neither a Ctrl-C meant for this shell nor the terminal closing
    // unmounts it; and it runs from `/`, keeping no caller's folder busy.
    cmd.current_dir("/");
    // SAFETY: setsid is async-signal-safe, as code between fork and exec must be.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            rustix::process::setsid().map(|_| ()).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(Error::Io)?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    if line.trim() == "mounted" {
        return Ok(());
    }
    let out = child.wait_with_output().map_err(Error::Io)?;
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err
        .lines()
        .next()
        .unwrap_or("the mount process ended")
        .trim_start_matches("lstore: ");
    // Its one line as it said it (`InUse` adds no kind prefix of its own).
    Err(Error::InUse(err.to_string()))
}

#[derive(Args)]
pub struct UmountArgs {
    /// Where it is mounted.
    mountpoint: PathBuf,
    /// Seconds to wait for files still open on it to close.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS", value_parser = crate::cli::args::seconds)]
    timeout: f64,
}

pub fn umount(a: UmountArgs) -> Result<()> {
    let wait = std::time::Duration::from_secs_f64(a.timeout);
    let server = lstore::unmount_fuse(&a.mountpoint, wait)?;
    // A background server's last error (its final commit failed, say) is this command's.
    let file = lstore::server_error_file(server);
    match std::fs::read_to_string(&file) {
        Ok(e) => {
            let _ = std::fs::remove_file(&file);
            Err(Error::InUse(format!(
                "the mount's server failed at the end: {}",
                e.trim()
            )))
        }
        Err(_) => Ok(()),
    }
}

fn serve(ctx: &Ctx, a: &MountArgs) -> Result<()> {
    let store = ctx.open()?;
    let opts = lstore::FuseOptions {
        read_only: a.read_only,
        allow_other: a.allow_other,
        commit_every: std::time::Duration::from_secs(a.commit_every.max(1)),
    };
    let daemon = std::env::var_os(DAEMON).is_some();
    let error_file = lstore::server_error_file(std::process::id());
    // Left by an earlier process of this id.
    let _ = std::fs::remove_file(&error_file);
    let mut mounted = false;
    let served = lstore::mount_fuse(&store, &a.r, &a.mountpoint, &opts, || {
        mounted = true;
        use std::io::Write;
        // The starter may be gone already: nothing to tell, nothing to fail over.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "mounted").and_then(|_| out.flush());
        if std::env::var_os(DAEMON).is_some() {
            detach();
        }
    });
    if let (Err(e), true, true) = (&served, daemon, mounted) {
        // Its stderr is gone: the one waiting in `lstore umount` reads this instead.
        if error_file.parent().is_some_and(|d| std::fs::create_dir_all(d).is_ok()) {
            let _ = std::fs::write(&error_file, format!("{e}\n"));
        }
    }
    served
}

/// The serving process lets go of the pipes its starter reads, which is gone soon.
fn detach() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto the standard descriptors, which stay open: only their target changes.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(null.as_raw_fd(), 2);
        }
    }
}
