//! Unmounting a mount another process serves, and waiting for it to commit. Linux does not
//! tell a FUSE server of an unmount before it returns, so the serving process commits just
//! after; the server's pid is in the mount's source (`lstore[PID]:REF`) so that waiting for
//! its end means waiting for that commit.

use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The mount source a serving process gives its mounts.
pub(crate) fn source(r: &str) -> String {
    format!("lstore[{}]:{r}", std::process::id())
}

/// Unmounts the lstore mount at `mountpoint`, with everything mounted inside it (a
/// container's volumes and bind mounts), and waits until the process serving it has
/// committed and ended. The unmount is lazy: a file still open on it keeps the server (and
/// this wait) going until it is closed; after `wait`, this fails naming the server. Returns
/// the server's process id (how it ended is its own to tell: `lstore mount` in the
/// background leaves its last error in [`server_error_file`]).
///
/// A mount served by this process ([`crate::FuseMount`]) is refused: unmount that one itself.
/// One whose server is `lstore run` stays served, detached, until its program ends.
pub fn unmount_fuse(mountpoint: &Path, wait: Duration) -> Result<u32> {
    let at = match std::fs::canonicalize(mountpoint) {
        Ok(at) => at,
        // A mount whose server died answers ENOTCONN: its path as given still names it.
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => std::path::absolute(mountpoint).map_err(Error::Io)?,
        Err(e) => {
            return Err(Error::File {
                path: mountpoint.to_path_buf(),
                source: e,
            })
        }
    };
    let pid = server_of(&at)?;
    if pid == std::process::id() {
        return Err(Error::InvalidArgument(format!(
            "{}: served by this process; unmount it through its FuseMount",
            at.display()
        )));
    }
    rustix::mount::unmount(&at, rustix::mount::UnmountFlags::DETACH).map_err(|e| Error::File {
        path: at.clone(),
        source: e.into(),
    })?;
    let deadline = Instant::now() + wait;
    while alive(pid) {
        if Instant::now() >= deadline {
            return Err(Error::InUse(format!(
                "{}: unmounted, but its server (process {pid}) has not ended: a file is still open on it",
                at.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(pid)
}

/// Where a background mount server (process `pid`) leaves the error it ended with, for the
/// `umount` that waits for it: nobody else reads its standard error.
pub fn server_error_file(pid: u32) -> PathBuf {
    Path::new("/run/lstore").join(format!("mount-{pid}.error"))
}

fn alive(pid: u32) -> bool {
    // Signal 0 checks existence; a zombie (ended, not yet reaped) counts as ended.
    let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    // Only "no such process" means gone (EPERM: it lives, as another user's).
    if rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH) {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    !matches!(state, Some(Some('Z')) | None)
}

/// The serving process of the lstore mount at `at`, from the mount table.
fn server_of(at: &Path) -> Result<u32> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").map_err(Error::Io)?;
    let not_ours = || Error::InvalidArgument(format!("{}: not an lstore mount", at.display()));
    let mounts: Vec<Entry> = table.lines().filter_map(parse_line).collect();
    let found = mounts.iter().rev().find(|m| m.point == at).ok_or_else(not_ours)?;
    let server = |m: &Entry| {
        let rest = m.source.strip_prefix("lstore[")?;
        rest.split_once("]:")?.0.parse::<u32>().ok()
    };
    let pid = server(found).ok_or_else(not_ours)?;
    // A volume of a container mount: unmounting it alone would leave the container served.
    if let Some(parent) = mounts
        .iter()
        .find(|m| m.id == found.parent)
        .filter(|p| server(p) == Some(pid))
    {
        return Err(Error::InvalidArgument(format!(
            "{}: a volume of the container mounted at {}; unmount that",
            at.display(),
            parent.point.display()
        )));
    }
    Ok(pid)
}

/// One line of the mount table.
struct Entry {
    id: u64,
    parent: u64,
    point: PathBuf,
    source: String,
}

/// A mountinfo line's ids, mount point and source (fields 1, 2, 5 and the second after `-`).
fn parse_line(line: &str) -> Option<Entry> {
    let fields: Vec<&str> = line.split(' ').collect();
    let point = unescape(fields.get(4)?);
    let dash = fields.iter().position(|f| *f == "-")?;
    let source = unescape(fields.get(dash + 2)?);
    use std::os::unix::ffi::OsStringExt;
    Some(Entry {
        id: fields.first()?.parse().ok()?,
        parent: fields.get(1)?.parse().ok()?,
        point: PathBuf::from(std::ffi::OsString::from_vec(point)),
        source: String::from_utf8(source).ok()?,
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mountinfo_line_gives_its_mount_point_and_source() {
        let line = "42 27 0:39 / /tmp/a\\040b rw,nosuid - fuse lstore[77]:c1 rw,user_id=0";
        let e = parse_line(line).unwrap();
        assert_eq!((e.id, e.parent), (42, 27));
        assert_eq!(e.point, Path::new("/tmp/a b"));
        assert_eq!(e.source, "lstore[77]:c1");
    }
}
