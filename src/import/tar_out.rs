//! Writing the changeset from one layer to another as an OCI layer tar: what was added or
//! changed as entries (hard links as links to the first name written, long names, targets,
//! xattrs and ns mtimes as PAX records), what was deleted as `.wh.NAME` whiteouts, and a folder
//! that was replaced (a new folder where the old one was) as its entry, an opaque marker and
//! everything it holds. The output is deterministic: the same two trees always give the same
//! bytes (entries in path order, no user or group names, whiteouts dated 0).

use crate::{ChangeKind, FileKind, Layer, ValueInfo};
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

/// What changed, by path: the entry to write (`None`: a whiteout) and whether the folder was
/// replaced (an opaque marker follows it).
type Plan = BTreeMap<Vec<u8>, Option<(ValueInfo, bool)>>;

/// Writes the changeset from `from` (or from nothing: the whole layer) to `to` as a tar into
/// `out`; returns the number of entries written.
pub fn export_tar(from: Option<&Layer>, to: &Layer, mut out: impl Write) -> Result<u64> {
    // A layer applied from a tar on `from` gives that tar back, byte for byte.
    if let Some(n) = super::tar_split::replay(from, to, &mut out)? {
        return Ok(n);
    }
    let plan = plan(from, to)?;
    let mut tar = tar::Builder::new(out);
    // The name each hard-linked file is written under first (or an unchanged lower name).
    let mut first_name: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut written = 0u64;
    // The root's own attributes, as `./`, when they are new.
    let root = to.root_attrs()?;
    let old_root = match from {
        Some(f) => f.root_attrs()?,
        None => None,
    };
    if let Some(a) = root.filter(|r| Some(r) != old_root.as_ref()) {
        append(
            &mut tar,
            b"./",
            tar::EntryType::Directory,
            &Meta::of(&a),
            std::io::empty(),
        )?;
        written += 1;
    }
    // A hard-linked file in the changeset whose other names are unchanged (so not written)
    // links to one of those: applied, it stays one file with them.
    let linked = (plan.values().flatten()).any(|(i, _)| i.attrs.as_ref().is_some_and(|a| a.nlink > 1));
    if linked {
        for item in to.list("")? {
            let item = item?;
            if let Some(a) = item
                .attrs
                .as_ref()
                .filter(|a| a.nlink > 1 && a.kind != FileKind::Directory)
            {
                if !plan.contains_key(&item.key) {
                    first_name.entry(a.ino).or_insert(item.key);
                }
            }
        }
    }
    for (path, what) in &plan {
        // A socket is left out of a tar; where it replaces a lower file, that file is whited
        // out, so that applying the tar does not bring it back.
        let socket = matches!(what, Some((i, _)) if i.attrs.as_ref().is_some_and(|a| a.kind == FileKind::Socket));
        let lower = match from {
            Some(f) if socket => f.stat(path)?.is_some(),
            _ => false,
        };
        match what {
            None => whiteout(&mut tar, path)?,
            Some(_) if lower => whiteout(&mut tar, path)?,
            Some((info, replaced)) => {
                entry(&mut tar, to, path, info, &mut first_name)?;
                if *replaced {
                    let mut marker = path.clone();
                    marker.extend_from_slice(b"/.wh..wh..opq");
                    written += 1;
                    append(
                        &mut tar,
                        &marker,
                        tar::EntryType::Regular,
                        &Meta::whiteout(),
                        std::io::empty(),
                    )?;
                }
            }
        }
        written += 1;
    }
    tar.into_inner().map_err(Error::Io)?.flush().map_err(Error::Io)?;
    Ok(written)
}

/// The paths to write, in path order (a folder before what it holds).
fn plan(from: Option<&Layer>, to: &Layer) -> Result<Plan> {
    let mut plan = Plan::new();
    let Some(from) = from else {
        for item in to.list("")? {
            let item = item?;
            plan.insert(item.key.clone(), Some((item, false)));
        }
        return Ok(plan);
    };
    let mut replaced_dirs = Vec::new();
    for change in from.diff(to)? {
        if change.kind == ChangeKind::Deleted {
            plan.insert(change.path, None);
            continue;
        }
        let info = to
            .stat(&change.path)?
            .ok_or_else(|| Error::corrupt("a changed path is missing from its layer"))?;
        let kind = |i: &ValueInfo| i.attrs.as_ref().map_or(FileKind::Regular, |a| a.kind);
        let ino = |i: &ValueInfo| i.attrs.as_ref().map_or(0, |a| a.ino);
        // A folder made anew where another was: lower children must not show through.
        let replaced = kind(&info) == FileKind::Directory
            && from
                .stat(&change.path)?
                .is_some_and(|old| kind(&old) == FileKind::Directory && ino(&old) != ino(&info));
        if replaced {
            replaced_dirs.push(change.path.clone());
        }
        plan.insert(change.path, Some((info, replaced)));
    }
    // A deleted path below something that is no folder now (a folder become a file or a
    // symlink) or below a replaced folder needs no whiteout: its parent's entry, or the opaque
    // marker, already hides it, and a whiteout there would go through the new entry.
    let hidden: Vec<Vec<u8>> = (plan.iter())
        .filter(|(_, what)| what.is_none())
        .map(|(p, _)| p.clone())
        .filter(|p| {
            ancestors(p).any(|a| match plan.get(a) {
                Some(Some((info, replaced))) => {
                    *replaced || info.attrs.as_ref().is_none_or(|x| x.kind != FileKind::Directory)
                }
                _ => false,
            })
        })
        .collect();
    for p in hidden {
        plan.remove(&p);
    }
    // An opaque folder hides all the lower layer had there: write everything it holds now.
    for dir in replaced_dirs {
        let mut below = dir.clone();
        below.push(b'/');
        for item in to.list(&below)? {
            let item = item?;
            plan.entry(item.key.clone()).or_insert(Some((item, false)));
        }
    }
    Ok(plan)
}

/// The folders above a path, nearest first.
fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut end = path.len();
    std::iter::from_fn(move || {
        let i = path[..end].iter().rposition(|&b| b == b'/')?;
        end = i;
        Some(&path[..i])
    })
}

/// Header fields of one entry.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
    size: u64,
    link: Option<Vec<u8>>,
    rdev: Option<(u32, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    /// The header fields of an entry with attributes `a` (no data, target or device yet).
    fn of(a: &crate::Attrs) -> Meta {
        Meta {
            mode: a.mode & 0o7777,
            uid: a.uid,
            gid: a.gid,
            mtime_ns: a.mtime_ns,
            size: 0,
            link: None,
            rdev: None,
            xattrs: a.xattrs.clone(),
        }
    }

    fn whiteout() -> Meta {
        Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            size: 0,
            link: None,
            rdev: None,
            xattrs: Vec::new(),
        }
    }
}

fn whiteout<W: Write>(tar: &mut tar::Builder<W>, path: &[u8]) -> Result<()> {
    let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => (&b""[..], path),
    };
    let marker = [dir, b".wh.", name].concat();
    append(
        tar,
        &marker,
        tar::EntryType::Regular,
        &Meta::whiteout(),
        std::io::empty(),
    )
}

fn entry<W: Write>(
    tar: &mut tar::Builder<W>,
    layer: &Layer,
    path: &[u8],
    info: &ValueInfo,
    first_name: &mut HashMap<u64, Vec<u8>>,
) -> Result<()> {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    if name.starts_with(b".wh.") {
        return Err(Error::InvalidArgument(format!(
            "{}: a name starting .wh. reads as a whiteout in a layer tar",
            crate::escape_path(path)
        )));
    }
    let a = info
        .attrs
        .clone()
        .unwrap_or_else(|| crate::Attrs::new(FileKind::Regular, 0o644));
    // A tar has no kind for a socket: left out, as GNU tar and Docker's archiver leave it.
    if a.kind == FileKind::Socket {
        return Ok(());
    }
    let mut meta = Meta::of(&a);
    if a.nlink > 1 && a.kind != FileKind::Directory {
        if let Some(first) = first_name.get(&a.ino) {
            meta.link = Some(first.clone());
            return append(tar, path, tar::EntryType::Link, &meta, std::io::empty());
        }
        first_name.insert(a.ino, path.to_vec());
    }
    let ty = match a.kind {
        FileKind::Regular => {
            meta.size = info.size;
            return append(tar, path, tar::EntryType::Regular, &meta, layer.open(path)?);
        }
        FileKind::Directory => {
            let mut dir = path.to_vec();
            dir.push(b'/');
            return append(tar, &dir, tar::EntryType::Directory, &meta, std::io::empty());
        }
        FileKind::Symlink => {
            meta.link = a.link_target.clone();
            tar::EntryType::Symlink
        }
        FileKind::CharDevice => tar::EntryType::Char,
        FileKind::BlockDevice => tar::EntryType::Block,
        FileKind::Fifo => tar::EntryType::Fifo,
        FileKind::Socket => unreachable!("sockets are left out above"),
    };
    if matches!(a.kind, FileKind::CharDevice | FileKind::BlockDevice) {
        let (major, minor) = (libc::major(a.rdev), libc::minor(a.rdev));
        if u64::from(major.max(minor)) > USTAR_MAX {
            return Err(Error::InvalidArgument(format!(
                "{}: device {major}:{minor} does not fit a tar header",
                crate::escape_path(path)
            )));
        }
        meta.rdev = Some((major, minor));
    }
    append(tar, path, ty, &meta, std::io::empty())
}

/// The largest number a ustar numeric field of 8 bytes holds (7 octal digits).
const USTAR_MAX: u64 = 0o7777777;

/// Writes one entry: a PAX record header first when a field does not fit ustar (a long name
/// or target, a large id, a time before 1970 or with nanoseconds, xattrs).
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &[u8],
    ty: tar::EntryType,
    m: &Meta,
    data: impl std::io::Read,
) -> Result<()> {
    let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
    if path.len() > 100 {
        pax.push(("path", path.to_vec()));
    }
    if let Some(l) = m.link.as_ref().filter(|l| l.len() > 100) {
        pax.push(("linkpath", l.clone()));
    }
    let (secs, nanos) = (
        m.mtime_ns.div_euclid(1_000_000_000),
        m.mtime_ns.rem_euclid(1_000_000_000),
    );
    if nanos != 0 || secs < 0 || secs as u64 > 0o77777777777 {
        pax.push(("mtime", pax_time(m.mtime_ns).into_bytes()));
    }
    for (key, id) in [("uid", m.uid), ("gid", m.gid)] {
        if u64::from(id) > USTAR_MAX {
            pax.push((key, id.to_string().into_bytes()));
        }
    }
    let xattr_keys: Vec<String> = (m.xattrs.iter())
        .map(|(n, _)| format!("SCHILY.xattr.{}", String::from_utf8_lossy(n)))
        .collect();
    for ((n, v), key) in m.xattrs.iter().zip(&xattr_keys) {
        if std::str::from_utf8(n).is_err() || n.contains(&b'=') {
            return Err(Error::InvalidArgument(format!(
                "{}: xattr name {} (not UTF-8, or holding '=') cannot be a PAX record's key",
                crate::escape_path(path),
                crate::escape_path(n)
            )));
        }
        pax.push((key.as_str(), v.clone()));
    }
    if !pax.is_empty() {
        let records = pax_records(&pax);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(records.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        set_name(&mut h, b"PaxHeader")?;
        h.set_cksum();
        tar.append(&h, records.as_slice()).map_err(Error::Io)?;
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(ty);
    h.set_mode(m.mode);
    h.set_uid(u64::from(m.uid).min(USTAR_MAX));
    h.set_gid(u64::from(m.gid).min(USTAR_MAX));
    h.set_mtime(secs.clamp(0, 0o77777777777) as u64);
    h.set_size(m.size);
    // The ustar name holds what fits; the PAX record above holds the whole name.
    set_name(&mut h, &path[..path.len().min(100)])?;
    if let Some(l) = &m.link {
        h.set_link_name_literal(&l[..l.len().min(100)]).map_err(Error::Io)?;
    }
    if let Some((major, minor)) = m.rdev {
        h.set_device_major(major).map_err(Error::Io)?;
        h.set_device_minor(minor).map_err(Error::Io)?;
    }
    h.set_cksum();
    tar.append(&h, data).map_err(Error::Io)
}

/// Puts up to 100 bytes of name into a ustar header's name field as they are.
fn set_name(h: &mut tar::Header, name: &[u8]) -> Result<()> {
    let ustar = h
        .as_ustar_mut()
        .ok_or_else(|| Error::InvalidArgument("not a ustar header".into()))?;
    ustar.name = [0; 100];
    ustar.name[..name.len()].copy_from_slice(name);
    Ok(())
}

/// PAX records: `LEN key=value\n`, where LEN counts the whole record, itself included.
fn pax_records(pax: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pax {
        let body = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// A time in ns as PAX writes it: `SECONDS.NANOSECONDS`.
fn pax_time(ns: i64) -> String {
    let (s, n) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    if s < 0 && n != 0 {
        // PAX times before 1970 count the fraction away from zero.
        return format!("-{}.{:09}", -(s + 1), 1_000_000_000 - n);
    }
    format!("{s}.{n:09}")
}
