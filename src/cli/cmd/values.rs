//! Values in a layer or container: `put`, `get`, `del`, `ls`, `write`, `read`.
//!
//! Keys are bytes: a key on the command line is taken byte for byte (one leading `/` is
//! dropped, as paths have one), and `ls` prints keys as the bytes they are.

use crate::cli::cmd::Ctx;
use crate::cli::output::{out, JsonFlag, List, Row};
use clap::Args;
use lstore::{Container, Error, Layer, Result, Store, Target, ValueInfo};
use serde::{Serialize, Serializer};
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A key from the command line: its bytes, without one leading `/`.
fn key_arg(k: &OsStr) -> Result<&[u8]> {
    let k = k.as_bytes();
    let k = k.strip_prefix(b"/").unwrap_or(k);
    lstore::check_key(k)?;
    Ok(k)
}

/// A key in an error message (for people, so a lossy rendering is fine).
fn shown(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// FILE, or standard input when FILE is absent or `-`.
fn input(file: &Option<PathBuf>) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    match file.as_deref() {
        Some(p) if p != Path::new("-") => {
            data = std::fs::read(p).map_err(|e| Error::InvalidArgument(format!("{}: {e}", p.display())))?;
        }
        _ => {
            std::io::stdin().read_to_end(&mut data)?;
        }
    }
    Ok(data)
}

/// What the reading commands read from: a layer or a container.
enum View {
    Layer(Layer),
    Container(Container),
}

impl View {
    fn of(store: &Store, r: &str) -> Result<View> {
        Ok(match store.resolve(r)? {
            Target::Layer(id) => View::Layer(store.layer_by_id(id)?),
            Target::Container(_) => View::Container(store.container(r)?),
        })
    }

    fn stat(&self, key: &[u8]) -> Result<Option<ValueInfo>> {
        match self {
            View::Layer(l) => l.stat(key),
            View::Container(c) => c.stat(key),
        }
    }

    fn read_at(&self, key: &[u8], off: u64, buf: &mut [u8]) -> Result<usize> {
        match self {
            View::Layer(l) => l.read_at(key, off, buf),
            View::Container(c) => c.read_at(key, off, buf),
        }
    }

    fn list(&self, prefix: &[u8]) -> Result<Vec<ValueInfo>> {
        match self {
            View::Layer(l) => l.list(prefix)?.collect(),
            View::Container(c) => Ok(c.list(prefix)?.collect()),
        }
    }
}

/// Container values up to this size are read in one operation, so from one commit.
const WHOLE_READ_MAX: u64 = 64 << 20;

/// Streams a value (or part of it) to stdout in bounded pieces.
fn copy_out(v: &View, key: &[u8], offset: u64, length: Option<u64>) -> Result<()> {
    let info = v.stat(key)?.ok_or_else(|| Error::KeyNotFound(shown(key)))?;
    let end = match length {
        Some(l) => offset
            .checked_add(l)
            .ok_or_else(|| Error::OutOfRange(format!("offset {offset} + length {l}")))?,
        None => info.size,
    }
    .min(info.size);
    // A container read by a reader moves to the newest commit at every operation, so a value
    // read in pieces could mix two commits: one that fits is read whole in one operation.
    if let (View::Container(c), true) = (v, info.size <= WHOLE_READ_MAX) {
        let whole = c.get(key)?.ok_or_else(|| Error::KeyNotFound(shown(key)))?;
        // The range is taken from the value as read, not as the earlier stat saw it.
        let from = offset.min(whole.len() as u64);
        let to = length.map_or(whole.len() as u64, |l| from.saturating_add(l).min(whole.len() as u64));
        let (from, to) = (from as usize, to as usize);
        return out(&whole[from..to]);
    }
    let mut pos = offset;
    let mut buf = vec![0u8; 1 << 20];
    while pos < end {
        let want = ((end - pos) as usize).min(buf.len());
        let n = v.read_at(key, pos, &mut buf[..want])?;
        if n == 0 {
            break;
        }
        out(&buf[..n])?;
        pos += n as u64;
    }
    Ok(())
}

// `lstore put`.
#[derive(Args)]
pub struct PutArgs {
    /// The container to write to (name, id or id prefix); layers are read-only.
    target: String,
    /// The key (a leading `/` is dropped).
    key: OsString,
    /// File with the value; standard input when absent or `-`.
    file: Option<PathBuf>,
}

pub fn put(ctx: &Ctx, a: PutArgs) -> Result<()> {
    let store = ctx.open()?;
    let c = store.container(&a.target)?;
    let data = input(&a.file)?;
    let key = key_arg(&a.key)?;
    c.put(key, &data)?;
    touched(&c, key)?;
    store.commit()
}

/// A file whose bytes changed is modified now, as a write makes it (a plain value, which has
/// no attributes, stays one).
fn touched(c: &Container, key: &[u8]) -> Result<()> {
    if c.stat(key)?.is_some_and(|i| i.attrs.is_some()) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        c.set_attrs(key, |a| a.mtime_ns = now)?;
    }
    Ok(())
}

// `lstore get`.
#[derive(Args)]
pub struct GetArgs {
    /// The layer or container to read (name, id or id prefix).
    target: String,
    /// The key (a leading `/` is dropped).
    key: OsString,
}

pub fn get(ctx: &Ctx, a: GetArgs) -> Result<()> {
    let store = ctx.open_read_only()?;
    copy_out(&View::of(&store, &a.target)?, key_arg(&a.key)?, 0, None)
}

// `lstore del`.
#[derive(Args)]
pub struct DelArgs {
    /// The container to delete from (name, id or id prefix).
    target: String,
    /// The key (a leading `/` is dropped); deleting a missing key is an error.
    key: OsString,
    /// Remove a folder with everything below it, in one change (a folder is otherwise
    /// removed only when empty).
    #[arg(short = 'r', long)]
    recursive: bool,
}

pub fn del(ctx: &Ctx, a: DelArgs) -> Result<()> {
    let store = ctx.open()?;
    let c = store.container(&a.target)?;
    let key = key_arg(&a.key)?;
    if !c.remove(key, a.recursive)? {
        return Err(Error::KeyNotFound(shown(key)));
    }
    store.commit()
}

// `lstore ls`.
#[derive(Args)]
pub struct LsArgs {
    /// The layer or container to list (name, id or id prefix).
    target: String,
    /// Path to list: the key PREFIX and the keys under PREFIX/ (all keys when absent).
    prefix: Option<OsString>,
    #[command(flatten)]
    pub json: JsonFlag,
}

/// One key of `ls` and its size.
#[derive(Serialize)]
pub struct KeyRow {
    /// Escaped (`lstore::escape_path`): the same in text and JSON, and it round-trips.
    #[serde(serialize_with = "escaped")]
    key: Vec<u8>,
    size: u64,
}

fn escaped<S: Serializer>(key: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&lstore::escape_path(key))
}

impl Row for KeyRow {
    fn line(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        writeln!(w, "{}\t{}", lstore::escape_path(&self.key), self.size)
    }
}

pub fn ls(ctx: &Ctx, a: &LsArgs) -> Result<List<KeyRow>> {
    let store = ctx.open_read_only()?;
    let v = View::of(&store, &a.target)?;
    let prefix = a.prefix.as_deref().map(OsStrExt::as_bytes).unwrap_or_default();
    let prefix = &prefix[prefix.iter().take_while(|&&b| b == b'/').count()..];
    let items = if prefix.is_empty() {
        v.list(b"")?
    } else {
        // A path prefix names that key and the keys below it, not `p*`; `dir/` and `dir`
        // name the same folder.
        let name = prefix.strip_suffix(b"/").unwrap_or(prefix);
        let dir = [name, b"/"].concat();
        let mut items: Vec<ValueInfo> = v.stat(name)?.into_iter().collect();
        items.extend(v.list(&dir)?);
        items
    };
    let rows = items.into_iter().map(|i| KeyRow {
        key: i.key,
        size: i.size,
    });
    Ok(List(rows.collect()))
}

// `lstore write`.
#[derive(Args)]
pub struct WriteArgs {
    /// The container to write to (name, id or id prefix).
    target: String,
    /// The key (a leading `/` is dropped); a missing value is created.
    key: OsString,
    /// Byte offset to write at; writing past the end leaves a hole of zeros.
    #[arg(long)]
    offset: u64,
    /// File with the bytes to write; standard input when absent or `-`.
    file: Option<PathBuf>,
}

pub fn write(ctx: &Ctx, a: WriteArgs) -> Result<()> {
    let store = ctx.open()?;
    let c = store.container(&a.target)?;
    let data = input(&a.file)?;
    let key = key_arg(&a.key)?;
    c.write_at(key, a.offset, &data)?;
    touched(&c, key)?;
    store.commit()
}

// `lstore read`.
#[derive(Args)]
pub struct ReadArgs {
    /// The layer or container to read (name, id or id prefix).
    target: String,
    /// The key (a leading `/` is dropped).
    key: OsString,
    /// Byte offset to start at.
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Bytes to read at most; to the end of the value when absent.
    #[arg(long)]
    length: Option<u64>,
}

pub fn read(ctx: &Ctx, a: ReadArgs) -> Result<()> {
    let store = ctx.open_read_only()?;
    copy_out(&View::of(&store, &a.target)?, key_arg(&a.key)?, a.offset, a.length)
}
