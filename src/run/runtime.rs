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

/// Every signal received, the terminal's too: before the runtime starts, any of them ends
/// the run there.
static RECEIVED: AtomicU64 = AtomicU64::new(0);

/// Notes a signal sent by a process (`kill`, a supervisor). One the terminal's driver sent
/// (Ctrl-C: `SI_KERNEL`) went to the whole foreground process group, the runtime included,
/// so passing it on would deliver it twice.
extern "C" fn note_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; reading it is
    // async-signal-safe, as is the atomic or.
    let from_kernel = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    RECEIVED.fetch_or(1 << sig, Ordering::SeqCst);
    if !from_kernel {
        PENDING.fetch_or(1 << sig, Ordering::SeqCst);
    }
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

/// While alive, the signals a program gets are noted for it instead of ending this process;
/// the handlers that were there come back when it is dropped.
pub(crate) struct Signals {
    previous: Vec<libc::sigaction>,
}

impl Signals {
    pub(crate) fn catch() -> Signals {
        PENDING.store(0, Ordering::SeqCst);
        RECEIVED.store(0, Ordering::SeqCst);
        let previous = FORWARDED
            .iter()
            .map(|&s| {
                // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe.
                unsafe {
                    let mut new: libc::sigaction = std::mem::zeroed();
                    new.sa_sigaction = note_signal as *const () as libc::sighandler_t;
                    new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                    libc::sigemptyset(&mut new.sa_mask);
                    let mut old: libc::sigaction = std::mem::zeroed();
                    libc::sigaction(s, &new, &mut old);
                    old
                }
            })
            .collect();
        Signals { previous }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for (&s, old) in FORWARDED.iter().zip(&self.previous) {
            // SAFETY: puts back the action that was there before.
            unsafe { libc::sigaction(s, old, std::ptr::null_mut()) };
        }
    }
}

/// Runs `runtime run --bundle BUNDLE ID` with this process's standard streams and returns
/// the container process's exit code (128 + the signal that killed it, as shells say).
/// Signals noted by [`Signals`] are passed on to the runtime, which passes them on to the
/// container's process; one noted before the runtime started is passed on at once.
pub(crate) fn run(runtime: &Path, bundle: &Path, id: &str) -> Result<i32> {
    // A container of that id left by a killed run would make `run` refuse.
    delete(runtime, id);
    let failed = |e: std::io::Error| Error::File {
        path: runtime.to_path_buf(),
        source: e,
    };
    if let Some(s) = received() {
        return Ok(128 + s);
    }
    PENDING.store(0, Ordering::SeqCst);
    let mut child = Command::new(runtime)
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::inherit())
        .spawn()
        .map_err(failed)?;
    let status = loop {
        let pending = PENDING.swap(0, Ordering::SeqCst);
        for &s in FORWARDED.iter().filter(|&&s| pending & (1 << s) != 0) {
            // SAFETY: kill has no memory effects; the child is ours and not yet reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, s) };
        }
        if let Some(st) = child.try_wait().map_err(failed)? {
            break st;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    delete(runtime, id);
    use std::os::unix::process::ExitStatusExt;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// The first signal received since [`Signals::catch`], if any.
fn received() -> Option<i32> {
    let got = RECEIVED.load(Ordering::SeqCst);
    FORWARDED.iter().copied().find(|&s| got & (1 << s) != 0)
}

/// Fails when a signal came before the program started: the run stops there (what it made
/// is undone as for any failure).
pub(crate) fn not_interrupted() -> Result<()> {
    match received() {
        Some(s) => Err(Error::InvalidArgument(format!(
            "interrupted by signal {s} before the program started"
        ))),
        None => Ok(()),
    }
}

/// Removes the runtime's record of container `id`, if it has one, killing what runs in it.
pub(crate) fn delete(runtime: &Path, id: &str) {
    let _ = Command::new(runtime)
        .args(["delete", "--force", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
