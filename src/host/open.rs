//! Opening a host file by path without being tricked into blocking on a FIFO or device.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

/// Opens `path` without blocking (a FIFO or device swapped in cannot hang the open) and,
/// unless `follow`, without following a symlink in its last component. A regular file comes
/// back with its metadata, ready for ordinary blocking I/O; anything else is `None`.
pub(crate) fn open_regular(
    opts: &mut OpenOptions,
    path: &Path,
    follow: bool,
) -> std::io::Result<Option<(File, std::fs::Metadata)>> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = libc::O_NONBLOCK | if follow { 0 } else { libc::O_NOFOLLOW };
    let file = opts.custom_flags(flags).open(path)?;
    let md = file.metadata()?;
    if !md.is_file() {
        return Ok(None);
    }
    // SAFETY: a plain syscall on a file descriptor we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Some((file, md)))
}
