//! Importing a folder of the host as a layer: every regular file becomes a value keyed by its
//! path below the folder, with its mode and modification time.

use crate::error::{Error, Result};
use crate::io::beneath::{self, Links};
use crate::io::walk;
use crate::{Attrs, Layer, LayerBuilder, PutOptions, Store};
use rustix::fs::OFlags;
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Imports the regular files below `dir` as a new layer on `parent`.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::create_dir(dir.path().join("etc")).unwrap();
/// std::fs::write(dir.path().join("etc/hostname"), b"box\n").unwrap();
/// let store = lstore::Store::create(dir.path().join("s"), Default::default()).unwrap();
/// let layer = lstore::import_dir(&store, &dir.path().join("etc"), None, Some("etc")).unwrap();
/// assert_eq!(layer.get("hostname").unwrap().unwrap(), b"box\n");
/// ```
pub fn import_dir(store: &Store, dir: &Path, parent: Option<&Layer>, name: Option<&str>) -> Result<Layer> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::InvalidArgument(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Error::InvalidArgument(format!("{} is not a directory", dir.display())));
    }
    let walked = walk::regular_files(dir)?;
    let mut b = store.new_layer(parent)?;
    for found in &walked.files {
        let (file, md) = open_found(&walked.root, found)?;
        import_file(&mut b, &found.key, &found.path, file, &md, None)?;
    }
    b.finish(name)
}

/// Bytes read from a file at a time: the unit of memory an import holds.
const READ_CHUNK: usize = 8 << 20;

/// Opens a file a walk found, beneath the walk's root and through no symlink: a folder
/// swapped for a link since the walk cannot lead the import outside the root.
pub(crate) fn open_found(root: &OwnedFd, found: &walk::Found) -> Result<(File, Metadata)> {
    open_beneath(
        root,
        Path::new(OsStr::from_bytes(&found.key)),
        Links::Never,
        &found.path,
    )
}

/// The regular file `rel` beneath `root` (`shown` names it in errors), opened to read.
pub(crate) fn open_beneath(root: &OwnedFd, rel: &Path, links: Links, shown: &Path) -> Result<(File, Metadata)> {
    let not_regular = || {
        Error::InvalidArgument(format!(
            "{} is not a regular file (or changed while read)",
            shown.display()
        ))
    };
    let (file, _) = match beneath::open_file(root, rel, OFlags::RDONLY, links) {
        Ok(Some(f)) => f,
        Ok(None) | Err(Errno::LOOP | Errno::XDEV) => return Err(not_regular()),
        Err(Errno::NOSYS) => {
            return Err(Error::InvalidArgument(format!(
                "{}: reading files safely needs openat2 (Linux 5.6 or later) and /proc mounted",
                shown.display()
            )))
        }
        Err(e) => return Err(Error::file(shown, e.into())),
    };
    let md = file.metadata().map_err(|e| Error::file(shown, e))?;
    Ok((file, md))
}

/// What a COPY step's cache key says about a file before its bytes: its size and mode.
pub(crate) fn digest_head(h: &mut blake3::Hasher, md: &Metadata) {
    h.update(&md.len().to_le_bytes());
    h.update(&md.permissions().mode().to_le_bytes());
}

/// Stores one file as a value. The bytes are read into an owned buffer and hashed,
/// checksummed and copied from it, so a file that changes under the import gives a value that
/// is some mix of its contents, never a chunk whose hash does not match its bytes; a file that
/// shrinks ends the value where it ends, and one that grows is read up to its size at open.
/// `digest` gets [`digest_head`] and then the bytes stored, as they were read.
pub(crate) fn import_file(
    b: &mut LayerBuilder,
    key: &[u8],
    path: &Path,
    mut file: File,
    md: &Metadata,
    mut digest: Option<&mut blake3::Hasher>,
) -> Result<()> {
    if let Some(h) = digest.as_deref_mut() {
        digest_head(h, md);
    }
    let opts = PutOptions {
        attrs: Some(attrs_of(md)),
        ..Default::default()
    };
    let len = md.len();
    let mut buf = vec![0u8; (len as usize).clamp(1, READ_CHUNK)];
    let mut off = 0u64;
    loop {
        let want = buf.len().min(usize::try_from(len - off).unwrap_or(usize::MAX));
        let n = read_full(&mut file, &mut buf[..want]).map_err(|e| Error::file(path, e))?;
        if let Some(h) = digest.as_deref_mut() {
            h.update(&buf[..n]);
        }
        if off == 0 {
            b.put_with(key, &buf[..n], &opts)?;
        } else if n > 0 {
            b.write_at(key, off, &buf[..n])?;
        }
        off += n as u64;
        if n < want || off >= len {
            return Ok(());
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn attrs_of(md: &std::fs::Metadata) -> Attrs {
    Attrs {
        mode: md.permissions().mode(),
        mtime_ns: md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64),
        ..Default::default()
    }
}
