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
}

pub fn mount(ctx: &Ctx, a: MountArgs) -> Result<()> {
    if a.foreground {
        return serve(ctx, &a);
    }
    // The serving process says "mounted" on its standard output once the mount is in place,
    // or fails with its one-line error.
    let mut cmd = Command::new(std::env::current_exe().map_err(Error::Io)?);
    cmd.arg("--store")
        .arg(ctx.path()?)
        .arg("mount")
        .arg(&a.r)
        .arg(&a.mountpoint)
        .arg("--foreground");
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
    // Its own process group: a Ctrl-C meant for this shell does not unmount it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
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
    Err(Error::InvalidArgument(err.to_string()))
}

fn serve(ctx: &Ctx, a: &MountArgs) -> Result<()> {
    let store = ctx.open()?;
    let opts = lstore::FuseOptions {
        read_only: a.read_only,
        allow_other: a.allow_other,
        ..Default::default()
    };
    lstore::mount_fuse(&store, &a.r, &a.mountpoint, &opts, || {
        println!("mounted");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        if std::env::var_os(DAEMON).is_some() {
            detach();
        }
    })
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
