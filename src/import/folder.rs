//! Importing a folder of the host as a layer: every regular file becomes a value keyed by its
//! path below the folder, with its mode and modification time.

use crate::error::{Error, Result};
use crate::io::walk;
use crate::{Attrs, Layer, PutOptions, Store};
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
        let file = std::fs::File::open(&found.path)?;
        let md = file.metadata()?;
        let opts = PutOptions {
            attrs: Some(attrs_of(&md)),
            ..Default::default()
        };
        if md.len() > 1 << 20 {
            // SAFETY: a read-only map of a file we only read; a concurrent writer could change
            // what we store, never our memory safety beyond what any reader of a changing file sees.
            let map = unsafe { memmap2::Mmap::map(&file)? };
            b.put_with(&found.key, &map, &opts)?;
        } else {
            b.put_with(&found.key, &std::fs::read(&found.path)?, &opts)?;
        }
    }
    b.finish(name)
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
