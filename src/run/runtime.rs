//! Starting a bundle with a standard OCI runtime (runc, which Docker uses, or crun, which
//! Podman uses) in the foreground: its exit code passes through, and the signals this process
//! gets are passed on to it (the runtime passes them on to the container's process).

use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The runtime to use: `explicit`, else `LSTORE_RUNTIME`, else runc or crun from `PATH`.
pub(crate) fn find(explicit: Option<&Path>) -> Result<PathBuf> {
    let wanted = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("LSTORE_RUNTIME").map(PathBuf::from));
    if let Some(w) = wanted {
        return in_path(&w).ok_or_else(|| Error::InvalidArgument(format!("OCI runtime {}: not found", w.display())));
    }
    ["runc", "crun"]
        .iter()
        .find_map(|n| in_path(Path::new(n)))
        .ok_or_else(|| {
            Error::InvalidArgument(
                "no OCI runtime: install runc or crun (apt-get install runc), or name one with --runtime".into(),
            )
        })
}

fn in_path(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Signals received and not yet passed on, one bit per signal number.
static PENDING: AtomicU64 = AtomicU64::new(0);

extern "C" fn note_signal(sig: libc::c_int) {
    PENDING.fetch_or(1 << sig, Ordering::SeqCst);
}

const FORWARDED: [libc::c_int; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// Runs `runtime run --bundle BUNDLE ID` with this process's standard streams and returns
/// the container process's exit code (128 + the signal that killed it, as shells say).
pub(crate) fn run(runtime: &Path, bundle: &Path, id: &str) -> Result<i32> {
    // A container of that id left by a killed run would make `run` refuse.
    delete(runtime, id);
    let failed = |e: std::io::Error| Error::File {
        path: runtime.to_path_buf(),
        source: e,
    };
    PENDING.store(0, Ordering::SeqCst);
    let previous: Vec<libc::sighandler_t> = FORWARDED
        .iter()
        // SAFETY: the handler only does an atomic or, which is async-signal-safe.
        .map(|&s| unsafe { libc::signal(s, note_signal as *const () as libc::sighandler_t) })
        .collect();
    let child = Command::new(runtime)
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::inherit())
        .spawn();
    let status = child.and_then(|mut child| loop {
        if let Some(st) = child.try_wait()? {
            break Ok(st);
        }
        let pending = PENDING.swap(0, Ordering::SeqCst);
        for &s in FORWARDED.iter().filter(|&&s| pending & (1 << s) != 0) {
            // SAFETY: kill has no memory effects; the child is ours and not yet reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, s) };
        }
        std::thread::sleep(Duration::from_millis(10));
    });
    for (&s, &h) in FORWARDED.iter().zip(&previous) {
        // SAFETY: puts back the handler that was there before.
        unsafe { libc::signal(s, h) };
    }
    let status = status.map_err(failed)?;
    delete(runtime, id);
    use std::os::unix::process::ExitStatusExt;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Removes the runtime's record of container `id`, if it has one.
fn delete(runtime: &Path, id: &str) {
    let _ = Command::new(runtime)
        .args(["delete", "--force", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
