//! Applying an OCI layer tar (a changeset) on a parent layer, as the image spec says: entries
//! are added or replace what the parent has at their path (of any kind), `.wh.NAME` removes
//! NAME from the lower layers, `.wh..wh..opq` hides every lower child of its folder, wherever it
//! stands in the tar. Hard links, PAX long names and link targets, `SCHILY.xattr.*` attributes,
//! devices and FIFOs are kept. A parent path through a symlink of a lower layer resolves inside
//! the image root, as containerd resolves it; an entry that climbs out (`..`, an absolute path,
//! a symlink of the same tar on its way), a bare `.wh.`, a hard link to nothing and entry types a
//! layer cannot hold are refused, and the store is left as it was.

use super::tar_split::{self, Recorder};
use crate::{Attrs, FileKind, Layer, LayerBuilder, PutOptions, Store};
use crate::{Error, Result};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{BufReader, Read};

/// What applying a layer tar did.
#[derive(Debug)]
pub struct TarImported {
    pub layer: Layer,
    /// Entries added or replaced, and paths removed by whiteouts.
    pub entries: u64,
    pub whiteouts: u64,
    /// The uncompressed tar's sha256 (`sha256:HEX`), the OCI diffID.
    pub diff_id: String,
}

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
/// Symlinks followed while resolving one path, as the kernel's limit.
const MAX_HOPS: usize = 40;
/// Bytes of a file read at a time.
const PIECE: usize = 8 << 20;

/// Applies the layer tar read from `input` (plain, gzip or zstd, told by its first bytes) on
/// `parent` as a new layer named `name`.
pub fn import_tar(store: &Store, input: impl Read, parent: Option<&Layer>, name: Option<&str>) -> Result<TarImported> {
    let reader = decompressed(input)?;
    let (rec, reader) = Recorder::new(reader, parent.map(|p| p.id()));
    let mut apply = Apply {
        b: store.new_layer(parent)?,
        rec,
        content_at: BTreeMap::new(),
        n: 0,
        parent,
        own: HashSet::new(),
        own_links: HashSet::new(),
        opaque: std::collections::BTreeSet::new(),
        entries: 0,
        whiteouts: 0,
    };
    let mut archive = tar::Archive::new(reader);
    // Raw entries: PAX records and GNU long names are read here, by their lengths (the tar
    // crate's own reading splits PAX records at newlines, which binary xattrs hold).
    let entries = archive.entries().map_err(bad_tar)?.raw(true);
    let mut pending = Pending::default();
    for entry in entries {
        let mut entry = entry.map_err(bad_tar)?;
        match entry.header().entry_type() {
            tar::EntryType::XHeader => {
                let records = pax_records(&read_meta(&mut entry)?)?;
                pending.pax.get_or_insert_with(Vec::new).extend(records);
            }
            // Archive-wide records (comments, charsets) say nothing a layer keeps.
            tar::EntryType::XGlobalHeader => drop(read_meta(&mut entry)?),
            tar::EntryType::GNULongName => pending.name = Some(trim_nul(read_meta(&mut entry)?)),
            tar::EntryType::GNULongLink => pending.link = Some(trim_nul(read_meta(&mut entry)?)),
            _ => {
                apply.n += 1;
                let meta = std::mem::take(&mut pending).resolve(&entry)?;
                let shown = crate::escape_path(&meta.path);
                apply.entry(&mut entry, &meta).map_err(|e| Error::At {
                    place: format!("tar entry {} ({shown})", apply.n),
                    source: Box::new(e),
                })?;
            }
        }
        apply.rec.tick(&mut apply.b)?;
    }
    if pending.pax.is_some() || pending.name.is_some() || pending.link.is_some() {
        return Err(Error::InvalidArgument("the tar ends inside an entry's records".into()));
    }
    // Read to the end, so that a gzip or zstd stream's own checksum is checked (and what
    // follows the end blocks is kept for the re-export).
    let mut rest = archive.into_inner();
    let mut buf = vec![0u8; 1 << 20];
    while rest.read(&mut buf).map_err(bad_tar)? > 0 {
        apply.rec.tick(&mut apply.b)?;
    }
    apply.opaque_folders()?;
    let diff_id = apply.rec.finish(&mut apply.b, apply.n)?;
    Ok(TarImported {
        layer: apply.b.finish(name)?,
        entries: apply.entries,
        whiteouts: apply.whiteouts,
        diff_id: crate::sha256_string(&diff_id),
    })
}

/// `input` decompressed: gzip or zstd as its first bytes tell, else as it is.
pub(crate) fn decompressed<'a>(input: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    // The first four bytes tell the compression; a pipe may hand them over in pieces.
    let mut input = input;
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    let input = BufReader::with_capacity(1 << 20, std::io::Cursor::new(head[..got].to_vec()).chain(input));
    let head = &head[..got];
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(input))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(input).map_err(Error::Io)?)
    } else {
        Box::new(input)
    })
}

fn bad_tar(e: std::io::Error) -> Error {
    // The tar reader's messages may quote the input's bytes: escaped, so a file cannot write
    // to the terminal.
    let why = match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "it ends early (truncated?)".to_string(),
        _ => crate::escape_path(e.to_string().as_bytes()),
    };
    Error::InvalidArgument(format!("not a readable tar: {why}"))
}

/// The most bytes of PAX records or a long name one entry may carry.
const META_MAX: u64 = 2 << 20;

/// Records read for the next entry.
#[derive(Default)]
struct Pending {
    pax: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    name: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
}

/// What a tar says of one entry, its records applied: PAX over GNU long names over the header.
struct Meta {
    path: Vec<u8>,
    link: Option<Vec<u8>>,
    pax: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Pending {
    fn resolve<R: Read>(self, entry: &tar::Entry<'_, R>) -> Result<Meta> {
        let pax = self.pax.unwrap_or_default();
        let find = |k: &[u8]| pax.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        if let Some(size) = find(b"size") {
            // The entry's data was framed by the header's size: a PAX size that says otherwise
            // (a file past 8 GiB) cannot be read here.
            if std::str::from_utf8(&size).ok().and_then(|s| s.parse::<u64>().ok())
                != Some(entry.header().entry_size().map_err(bad_tar)?)
            {
                return Err(Error::InvalidArgument(
                    "an entry whose PAX size differs from its header's (a file past 8 GiB) is not supported".into(),
                ));
            }
        }
        let path = find(b"path")
            .or(self.name)
            .unwrap_or_else(|| entry.header().path_bytes().into_owned());
        let link = find(b"linkpath")
            .or(self.link)
            .or_else(|| entry.header().link_name_bytes().map(|l| l.into_owned()));
        Ok(Meta { path, link, pax })
    }
}

/// The data of a record entry (PAX records, a long name), bounded.
fn read_meta(entry: &mut impl Read) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    entry.take(META_MAX + 1).read_to_end(&mut v).map_err(bad_tar)?;
    if v.len() as u64 > META_MAX {
        return Err(Error::InvalidArgument("PAX records or a long name past 2 MiB".into()));
    }
    Ok(v)
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// PAX records, `LEN key=value\n` each, read by their lengths (a value may hold any byte).
fn pax_records(data: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let bad = || Error::InvalidArgument("a malformed PAX record".into());
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad());
        }
        let record = &rest[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

/// A tar being applied.
struct Apply<'p> {
    b: LayerBuilder,
    /// The tar's bytes that are not file content, kept for a byte-identical re-export.
    rec: Recorder,
    /// The tar entry whose content each path holds (by number, from 1).
    content_at: BTreeMap<Vec<u8>, u64>,
    /// The number of the entry being applied.
    n: u64,
    parent: Option<&'p Layer>,
    /// Paths this tar made: an opaque folder keeps them, and a symlink among them may not be
    /// gone through.
    own: HashSet<Vec<u8>>,
    own_links: HashSet<Vec<u8>>,
    /// Folders with an opaque marker, applied once the whole tar is read: the marker hides
    /// the lower children whatever the order of the entries.
    opaque: std::collections::BTreeSet<Vec<u8>>,
    entries: u64,
    whiteouts: u64,
}

/// A tar path as components below the root: `./` and a trailing `/` dropped; `..` and an
/// absolute path refused.
fn components(raw: &[u8]) -> Result<Vec<Vec<u8>>> {
    if raw.len() > 4096 {
        return Err(Error::InvalidArgument(format!(
            "a path of {} bytes: at most 4096",
            raw.len()
        )));
    }
    if raw.starts_with(b"/") {
        return Err(Error::InvalidArgument(
            "an absolute path climbs out of the layer".into(),
        ));
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(Error::InvalidArgument("'..' climbs out of the layer".into())),
            c if c.contains(&0) => return Err(Error::InvalidArgument("a NUL byte in a path".into())),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

fn join(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.join(&b'/')
}

impl Apply<'_> {
    /// The path `parts` names in the image: folders on the way that are symlinks of a lower
    /// layer are followed inside the root (their `..` stops at the root); one this tar made
    /// is refused.
    fn resolve(&mut self, parts: &[Vec<u8>]) -> Result<Vec<u8>> {
        let Some((last, dirs)) = parts.split_last() else {
            return Ok(Vec::new());
        };
        let mut at = self.resolve_dir(dirs)?;
        at.push(last.clone());
        Ok(join(&at))
    }

    /// The folder `dirs` names in the image, as components, every symlink on the way followed
    /// (see `resolve`).
    fn resolve_dir(&mut self, dirs: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let mut at: Vec<Vec<u8>> = Vec::new();
        let mut todo: VecDeque<Vec<u8>> = dirs.iter().cloned().collect();
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    at.pop();
                    continue;
                }
                _ => {}
            }
            at.push(c);
            let path = join(&at);
            if path.len() > 4096 {
                return Err(Error::InvalidArgument(
                    "the path grows past 4096 bytes through symlinks".into(),
                ));
            }
            let Some(target) = self.symlink_target(&path)? else {
                continue;
            };
            if self.own_links.contains(&path) {
                return Err(Error::InvalidArgument(format!(
                    "goes through {}, a symlink of this same tar",
                    crate::escape_path(&path)
                )));
            }
            hops += 1;
            if hops > MAX_HOPS {
                return Err(Error::InvalidArgument("too many symlinks on the way".into()));
            }
            at.pop();
            if target.starts_with(b"/") {
                at.clear();
            }
            for t in target.split(|&b| b == b'/').rev() {
                todo.push_front(t.to_vec());
            }
        }
        Ok(at)
    }

    /// Removes `path` and what is below it, first moving aside the content of this tar's
    /// files there, which the re-export still needs.
    fn remove(&mut self, path: &[u8]) -> Result<bool> {
        let below = [path, b"/"].concat();
        // The path itself, then what is below it: `d.txt` sorts between `d` and `d/f`.
        let held: Vec<(Vec<u8>, u64)> = (self.content_at.get_key_value(path).into_iter())
            .chain(
                self.content_at
                    .range(below.clone()..)
                    .take_while(|(p, _)| p.starts_with(&below)),
            )
            .map(|(p, &n)| (p.clone(), n))
            .collect();
        for (p, n) in held {
            let size = self.b.stat(&p)?.map_or(0, |i| i.size);
            tar_split::stash(&mut self.b, n, &p, size)?;
            self.content_at.remove(&p);
        }
        self.b.remove(path, true)
    }

    fn symlink_target(&mut self, path: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .b
            .stat(path)?
            .and_then(|i| i.attrs)
            .filter(|a| a.kind == FileKind::Symlink)
            .and_then(|a| a.link_target))
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, meta: &Meta) -> Result<()> {
        let parts = components(&meta.path)?;
        let Some(name) = parts.last().cloned() else {
            // `./`: the root folder's own attributes.
            if entry.header().entry_type() != tar::EntryType::Directory {
                return Err(Error::InvalidArgument("the root entry is not a folder".into()));
            }
            let attrs = attrs_of(entry, meta, FileKind::Directory)?;
            return self.b.set_root_attrs(attrs);
        };
        if meta.pax.iter().any(|(k, _)| k.starts_with(b"GNU.sparse.")) {
            return Err(Error::InvalidArgument("GNU sparse entries are not supported".into()));
        }
        if name.starts_with(WHITEOUT) {
            return self.whiteout(&parts, &name);
        }
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => FileKind::Regular,
            tar::EntryType::Directory => FileKind::Directory,
            tar::EntryType::Symlink => FileKind::Symlink,
            tar::EntryType::Char => FileKind::CharDevice,
            tar::EntryType::Block => FileKind::BlockDevice,
            tar::EntryType::Fifo => FileKind::Fifo,
            tar::EntryType::Link => return self.hard_link(meta, &parts),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "tar entries of type '{}' ({}) cannot be stored in a layer",
                    crate::escape_path(&[other.as_byte()]),
                    other.as_byte()
                )))
            }
        };
        let path = self.resolve(&parts)?;
        self.make_parents(&path)?;
        let attrs = attrs_of(entry, meta, kind)?;
        let old = self.b.stat(&path)?;
        let old_kind = old
            .as_ref()
            .map(|o| o.attrs.as_ref().map_or(FileKind::Regular, |a| a.kind));
        match kind {
            // A folder over a folder keeps what the folder holds; only its attributes change.
            FileKind::Directory if old_kind == Some(FileKind::Directory) => {
                self.b.set_attrs(&path, |a| *a = attrs)?;
            }
            _ => {
                if old.is_some() {
                    self.remove(&path)?;
                }
                if kind == FileKind::Regular {
                    self.write_file(entry, &path, attrs)?;
                } else {
                    self.b.create(&path, attrs)?;
                }
            }
        }
        if kind == FileKind::Symlink {
            self.own_links.insert(path.clone());
        }
        self.own.insert(path);
        self.entries += 1;
        Ok(())
    }

    /// Folders a tar leaves out above an entry are made as `tar -x` makes them: mode 0755,
    /// owned by root.
    fn make_parents(&mut self, path: &[u8]) -> Result<()> {
        for (i, _) in path.iter().enumerate().filter(|(_, &c)| c == b'/') {
            let dir = &path[..i];
            match self.b.stat(dir)? {
                Some(i) if i.attrs.as_ref().is_some_and(|a| a.kind == FileKind::Directory) => {}
                Some(_) => {
                    return Err(Error::NotADirectory(format!(
                        "{} (it holds {})",
                        crate::escape_path(dir),
                        crate::escape_path(path)
                    )))
                }
                None => {
                    self.b.create(dir, Attrs::new(FileKind::Directory, 0o755))?;
                }
            }
        }
        Ok(())
    }

    fn write_file<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, path: &[u8], attrs: Attrs) -> Result<()> {
        let len = entry.size();
        self.rec.content(&mut self.b, self.n, path, len)?;
        self.content_at.insert(path.to_vec(), self.n);
        let mut buf = vec![0u8; (len as usize).clamp(1, PIECE)];
        let mut off = 0u64;
        let opts = PutOptions {
            attrs: Some(attrs),
            ..Default::default()
        };
        loop {
            let want = buf.len().min(usize::try_from(len - off).unwrap_or(usize::MAX));
            entry.read_exact(&mut buf[..want]).map_err(bad_tar)?;
            if off == 0 {
                self.b.put_with(path, &buf[..want], &opts)?;
            } else {
                self.b.write_at(path, off, &buf[..want])?;
            }
            off += want as u64;
            if off >= len {
                return Ok(());
            }
        }
    }

    fn hard_link(&mut self, meta: &Meta, parts: &[Vec<u8>]) -> Result<()> {
        let target_raw = meta
            .link
            .clone()
            .ok_or_else(|| Error::InvalidArgument("a hard link without a target".into()))?;
        let target = self.resolve(&components(&target_raw)?)?;
        match self.b.stat(&target)? {
            None => {
                return Err(Error::InvalidArgument(format!(
                    "a hard link to {}, which is not there",
                    crate::escape_path(&target_raw)
                )))
            }
            Some(i) if i.attrs.as_ref().is_some_and(|a| a.kind == FileKind::Directory) => {
                return Err(Error::IsADirectory(crate::escape_path(&target)))
            }
            Some(_) => {}
        }
        let path = self.resolve(parts)?;
        if path == target {
            return Ok(());
        }
        self.make_parents(&path)?;
        if self.b.stat(&path)?.is_some() {
            self.remove(&path)?;
        }
        self.b.link(&target, &path)?;
        if self.own_links.contains(&target) {
            self.own_links.insert(path.clone());
        }
        self.own.insert(path);
        self.entries += 1;
        Ok(())
    }

    /// `.wh.NAME` removes NAME from the lower layers (not what this tar wrote); `.wh..wh..opq`
    /// marks the folder opaque, applied at the end.
    fn whiteout(&mut self, parts: &[Vec<u8>], name: &[u8]) -> Result<()> {
        let dir_parts = &parts[..parts.len() - 1];
        if name == OPAQUE {
            let dir = join(&self.resolve_dir(dir_parts)?);
            self.opaque.insert(dir);
            return Ok(());
        }
        let gone = &name[WHITEOUT.len()..];
        if gone.is_empty() || gone == b"." || gone == b".." {
            return Err(Error::InvalidArgument("a whiteout names nothing".into()));
        }
        let path = self.resolve(&[dir_parts, &[gone.to_vec()]].concat())?;
        if !self.own.contains(&path) && self.remove(&path)? {
            self.whiteouts += 1;
        }
        Ok(())
    }

    /// Hides, below each opaque folder, everything the lower layer had that this tar did not
    /// write and that holds nothing this tar wrote (such a folder stays, emptied of the rest).
    fn opaque_folders(&mut self) -> Result<()> {
        let Some(parent) = self.parent else {
            return Ok(());
        };
        let mut keep: HashSet<Vec<u8>> = HashSet::new();
        for p in &self.own {
            let mut end = p.len();
            while let Some(i) = p[..end].iter().rposition(|&b| b == b'/') {
                end = i;
                if !keep.insert(p[..i].to_vec()) {
                    break;
                }
            }
        }
        for dir in std::mem::take(&mut self.opaque) {
            let prefix = if dir.is_empty() {
                Vec::new()
            } else {
                [&dir[..], b"/"].concat()
            };
            let lower: Vec<Vec<u8>> = parent.list(&prefix)?.map(|i| i.map(|i| i.key)).collect::<Result<_>>()?;
            for path in lower {
                if self.own.contains(&path) || keep.contains(&path) {
                    continue;
                }
                if self.remove(&path)? {
                    self.whiteouts += 1;
                }
            }
        }
        Ok(())
    }
}

/// The attributes a tar entry gives: mode, owner, mtime (to the ns with PAX), device numbers,
/// a symlink's target and `SCHILY.xattr.*` attributes.
fn attrs_of<R: Read>(entry: &tar::Entry<'_, R>, meta: &Meta, kind: FileKind) -> Result<Attrs> {
    let h = entry.header();
    let num = |r: std::io::Result<u64>| r.map_err(bad_tar);
    let mut attrs = Attrs {
        uid: u32::try_from(num(h.uid())?).map_err(|_| Error::InvalidArgument("uid past 32 bits".into()))?,
        gid: u32::try_from(num(h.gid())?).map_err(|_| Error::InvalidArgument("gid past 32 bits".into()))?,
        mtime_ns: match meta.pax.iter().rev().find(|(k, _)| k == b"mtime") {
            // A PAX time stands for the header's, which may not even parse (a negative
            // base-256 number).
            Some((_, v)) => pax_time(v).ok_or_else(|| Error::InvalidArgument("a malformed PAX mtime".into()))?,
            None => header_mtime(h)?
                .checked_mul(1_000_000_000)
                .ok_or_else(|| Error::InvalidArgument("mtime out of range".into()))?,
        },
        ..Attrs::new(kind, h.mode().map_err(bad_tar)?)
    };
    if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) {
        let major = h.device_major().map_err(bad_tar)?.unwrap_or(0);
        let minor = h.device_minor().map_err(bad_tar)?.unwrap_or(0);
        attrs.rdev = libc::makedev(major, minor);
    }
    if kind == FileKind::Symlink {
        attrs.link_target = Some(
            meta.link
                .clone()
                .ok_or_else(|| Error::InvalidArgument("a symlink without a target".into()))?,
        );
    }
    let id = |v: &[u8]| std::str::from_utf8(v).ok().and_then(|s| s.parse::<u32>().ok());
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (key, value) in &meta.pax {
        if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
            xattrs.push((x.to_vec(), value.clone()));
        } else if key == b"uid" {
            attrs.uid = id(value).ok_or_else(|| Error::InvalidArgument("a malformed PAX uid".into()))?;
        } else if key == b"gid" {
            attrs.gid = id(value).ok_or_else(|| Error::InvalidArgument("a malformed PAX gid".into()))?;
        }
    }
    // The last record of a name wins, as a reader applying them in turn would have it.
    xattrs.reverse();
    xattrs.sort_by(|a, b| a.0.cmp(&b.0));
    xattrs.dedup_by(|a, b| a.0 == b.0);
    attrs.xattrs = xattrs;
    attrs.check()?;
    Ok(attrs)
}

/// A header's mtime in seconds: octal, or GNU base-256 (two's complement when the first byte
/// is 0xff, which is how GNU tar and Python write times before 1970).
fn header_mtime(h: &tar::Header) -> Result<i64> {
    let raw = &h.as_old().mtime;
    if raw[0] & 0x80 == 0 {
        return i64::try_from(h.mtime().map_err(bad_tar)?)
            .map_err(|_| Error::InvalidArgument("mtime out of range".into()));
    }
    let negative = raw[0] == 0xff;
    let mut v: i128 = if negative { -1 } else { 0 };
    for (i, &b) in raw.iter().enumerate() {
        let b = if i == 0 && !negative { b & 0x7f } else { b };
        v = (v << 8) | i128::from(b);
    }
    i64::try_from(v).map_err(|_| Error::InvalidArgument("mtime out of range".into()))
}

/// A PAX time, `SECONDS[.FRACTION]`, in nanoseconds.
fn pax_time(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let negative = sec.starts_with('-');
    let sec: i64 = sec.parse().ok()?;
    let mut ns: i64 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        if !d.is_ascii_digit() {
            return None;
        }
        ns += i64::from(d - b'0') * 10i64.pow(8 - i as u32);
    }
    // "-0.5" is half a second before 1970: the sign is the text's, not the seconds'.
    let ns = if negative { -ns } else { ns };
    sec.checked_mul(1_000_000_000)?.checked_add(ns)
}
