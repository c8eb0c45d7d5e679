//! Importing a folder of the host as a layer: every regular file becomes a value keyed by its
//! path below the folder, with its mode and modification time.

use crate::error::{Error, Result};
use crate::io::walk;
use crate::{Attrs, Layer, LayerBuilder, PutOptions, Store};
use std::io::Read;
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
    let mut b = store.new_layer(parent)?;
    for found in walk::regular_files(dir)? {
        import_file(&mut b, &found.key, &found.path, None)?;
    }
    b.finish(name)
}

/// Bytes read from a file at a time: the unit of memory an import holds.
const READ_CHUNK: usize = 8 << 20;

/// Stores one file as a value. The bytes are read into an owned buffer and hashed,
/// checksummed and copied from it, so a file that changes under the import gives a value that
/// is some mix of its contents, never a chunk whose hash does not match its bytes; a file that
/// shrinks ends the value where it ends, and one that grows is read up to its size at open.
/// `digest` gets the size at open and then the bytes stored, as they were read.
pub(crate) fn import_file(
    b: &mut LayerBuilder,
    key: &[u8],
    path: &Path,
    mut digest: Option<&mut blake3::Hasher>,
) -> Result<()> {
    let (mut file, md) = open_regular(path)?;
    if let Some(h) = digest.as_deref_mut() {
        h.update(&md.len().to_le_bytes());
    }
    let opts = PutOptions {
        attrs: Some(attrs_of(&md)),
        ..Default::default()
    };
    let mut buf = vec![0u8; (md.len() as usize).clamp(1, READ_CHUNK)];
    let mut off = 0u64;
    loop {
        let n = read_full(&mut file, &mut buf).map_err(|e| Error::file(path, e))?;
        if let Some(h) = digest.as_deref_mut() {
            h.update(&buf[..n]);
        }
        if off == 0 {
            b.put_with(key, &buf[..n], &opts)?;
        } else if n > 0 {
            b.write_at(key, off, &buf[..n])?;
        }
        off += n as u64;
        if n < buf.len() || off >= md.len() {
            return Ok(());
        }
    }
}

/// Opens a regular file to read: a symlink swapped in for it is not followed and a FIFO or
/// device swapped in is refused, so an import never blocks or reads where it did not walk.
pub(crate) fn open_regular(path: &Path) -> Result<(std::fs::File, std::fs::Metadata)> {
    crate::io::open_regular(std::fs::OpenOptions::new().read(true), path, false)
        .map_err(|e| Error::file(path, e))?
        .ok_or_else(|| Error::InvalidArgument(format!("{} is not a regular file", path.display())))
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
