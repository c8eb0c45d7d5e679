//! Bind mounts: keys under a mount target are the files under a host folder. Every key is
//! resolved component by component and refused if it could leave the folder (`..`, `.`, empty
//! components, or a symlink that leads out).

use crate::error::{Error, Result};
use crate::format::value::ValueInfo;
use crate::io::walk;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

fn escape(sub: &[u8]) -> Error {
    Error::InvalidKey(format!("'{}' would leave the bind mount", String::from_utf8_lossy(sub)))
}

/// The host path of `sub` under `root`, after the traversal checks.
pub fn resolve(root: &Path, sub: &[u8]) -> Result<PathBuf> {
    let s = std::str::from_utf8(sub).map_err(|_| Error::InvalidKey("bind-mounted keys must be UTF-8".into()))?;
    let canon_root = root
        .canonicalize()
        .map_err(|e| Error::InvalidArgument(format!("bind source {}: {e}", root.display())))?;
    let mut p = canon_root.clone();
    if s.is_empty() {
        return Ok(p);
    }
    for c in s.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err(escape(sub));
        }
        p.push(c);
        if let Ok(md) = fs::symlink_metadata(&p) {
            if md.file_type().is_symlink() {
                let real = p.canonicalize().map_err(|_| escape(sub))?;
                if !real.starts_with(&canon_root) {
                    return Err(escape(sub));
                }
            }
        }
    }
    Ok(p)
}

fn not_found(sub: &[u8]) -> Error {
    Error::KeyNotFound(String::from_utf8_lossy(sub).into_owned())
}

fn file_io(e: std::io::Error, sub: &[u8]) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => not_found(sub),
        // A host-file failure is the user's to fix; it does not poison the store.
        _ => Error::InvalidArgument(format!("bind mount file '{}': {e}", String::from_utf8_lossy(sub))),
    }
}

pub fn stat(root: &Path, key: &[u8], sub: &[u8]) -> Result<Option<ValueInfo>> {
    let p = resolve(root, sub)?;
    match fs::metadata(&p) {
        Ok(md) if md.is_file() => Ok(Some(ValueInfo {
            key: key.to_vec(),
            size: md.len(),
            inline: false,
            block_size: 0,
            attrs: None,
        })),
        _ => Ok(None),
    }
}

pub fn get(root: &Path, sub: &[u8]) -> Result<Option<Vec<u8>>> {
    let p = resolve(root, sub)?;
    if !p.is_file() {
        return Ok(None);
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut regular(OpenOptions::new().read(true), &p, sub)?, &mut out)
        .map_err(|e| file_io(e, sub))?;
    Ok(Some(out))
}

pub fn read_at(root: &Path, sub: &[u8], off: u64, buf: &mut [u8]) -> Result<usize> {
    let p = resolve(root, sub)?;
    let f = regular(OpenOptions::new().read(true), &p, sub)?;
    let mut done = 0;
    while done < buf.len() {
        let n = f
            .read_at(&mut buf[done..], off + done as u64)
            .map_err(|e| file_io(e, sub))?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

fn open_for_write(root: &Path, sub: &[u8]) -> Result<fs::File> {
    if sub.is_empty() {
        return Err(Error::InvalidKey(
            "the bind mount's root is a folder, not a value".into(),
        ));
    }
    let p = resolve(root, sub)?;
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).map_err(|e| file_io(e, sub))?;
    }
    regular(OpenOptions::new().write(true).create(true).truncate(false), &p, sub)
}

/// Opens `p` only if it is a regular file: a FIFO, a device or a symlink swapped in is
/// refused (opening never blocks, and never follows a last-component link).
fn regular(opts: &mut OpenOptions, p: &Path, sub: &[u8]) -> Result<fs::File> {
    match crate::io::open_regular(opts, p, false).map_err(|e| file_io(e, sub))? {
        Some((f, _)) => Ok(f),
        None => Err(Error::InvalidKey(format!(
            "'{}' is not a regular file on the host",
            String::from_utf8_lossy(sub)
        ))),
    }
}

pub fn put(root: &Path, sub: &[u8], data: &[u8]) -> Result<()> {
    let f = open_for_write(root, sub)?;
    f.set_len(0).map_err(|e| file_io(e, sub))?;
    f.write_all_at(data, 0).map_err(|e| file_io(e, sub))
}

pub fn write_at(root: &Path, sub: &[u8], off: u64, data: &[u8]) -> Result<()> {
    open_for_write(root, sub)?
        .write_all_at(data, off)
        .map_err(|e| file_io(e, sub))
}

pub fn truncate(root: &Path, sub: &[u8], len: u64) -> Result<()> {
    let p = resolve(root, sub)?;
    let f = regular(OpenOptions::new().write(true), &p, sub)?;
    f.set_len(len).map_err(|e| file_io(e, sub))
}

pub fn delete(root: &Path, sub: &[u8]) -> Result<bool> {
    let p = resolve(root, sub)?;
    // Only what the mount shows as a value (a regular file) can be deleted through it.
    match fs::symlink_metadata(&p) {
        Ok(md) if !md.is_file() => return Ok(false),
        _ => {}
    }
    match fs::remove_file(&p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(file_io(e, sub)),
    }
}

/// Files under the folder as keys `target/relative/path`, sorted, filtered by `prefix`.
pub fn list(root: &Path, target: &str, prefix: &[u8]) -> Result<Vec<ValueInfo>> {
    let canon = resolve(root, b"")?;
    if !canon.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "bind source {} is not a folder",
            root.display()
        )));
    }
    let files = walk::regular_files(&canon)?;
    Ok(files
        .into_iter()
        .map(|f| ValueInfo {
            key: [target.as_bytes(), b"/", &f.key].concat(),
            size: f.len,
            inline: false,
            block_size: 0,
            attrs: None,
        })
        .filter(|v| v.key.starts_with(prefix))
        .collect())
}
