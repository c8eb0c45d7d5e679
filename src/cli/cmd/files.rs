//! The file-system side: `export`, `stat`, `diff`, and the verbs that change a container's
//! files (`mkdir`, `symlink`, `link`, `mv`, `chmod`, `chown`, `touch`, `setxattr`).
//!
//! Paths on the command line are taken byte for byte (one leading `/` dropped); paths printed
//! are escaped as `lstore::escape_path` writes them (`\xff` for a byte that is not UTF-8), in
//! text and in JSON alike, so every name round-trips.

use crate::cli::cmd::Ctx;
use crate::cli::output::{JsonFlag, Line, List, Report, Row};
use clap::Args;
use lstore::{escape_path, Attrs, Error, FileKind, Result, ValueInfo};
use serde::Serialize;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// A path from the command line: its bytes, without one leading `/`.
fn path_arg(p: &OsString) -> Result<Vec<u8>> {
    let p = p.as_bytes();
    let p = p.strip_prefix(b"/").unwrap_or(p);
    lstore::check_key(p)?;
    Ok(p.to_vec())
}

// `lstore export`.
#[derive(Args)]
pub struct ExportArgs {
    /// The layer or container to write out (name, id or id prefix).
    target: String,
    /// Folder to write into: created when missing, and it must be empty.
    dir: PathBuf,
}

/// What `export` did.
#[derive(Serialize)]
pub struct ExportReport {
    entries: u64,
    warnings: Vec<String>,
}

impl Report for ExportReport {
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        writeln!(w, "{} entries written", self.entries)?;
        if !self.warnings.is_empty() {
            // One line for a script to see on stderr, the list on stdout.
            eprintln!(
                "lstore: warning: {} attributes or entries could not be set as the layer has them",
                self.warnings.len()
            );
        }
        self.warnings.iter().try_for_each(|x| writeln!(w, "warning: {x}"))
    }
}

pub fn export(ctx: &Ctx, a: ExportArgs) -> Result<ExportReport> {
    let store = ctx.open_read_only()?;
    let layer = store.snapshot(&a.target)?;
    let done = lstore::export_dir(&layer, &a.dir)?;
    Ok(ExportReport {
        entries: done.entries,
        warnings: done.warnings,
    })
}

// `lstore export-tar`.
#[derive(Args)]
pub struct ExportTarArgs {
    /// The layer or container whose changes to write (name, id or id prefix).
    target: String,
    /// The layer the changes are from; without it, the whole tree.
    #[arg(long, value_name = "LAYER")]
    parent: Option<String>,
    /// Where to write the tar; standard output when absent or `-`.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn export_tar(ctx: &Ctx, a: ExportTarArgs) -> Result<()> {
    let store = ctx.open_read_only()?;
    let to = store.snapshot(&a.target)?;
    let from = a.parent.map(|p| store.snapshot(&p)).transpose()?;
    match a.output.as_deref().filter(|p| *p != std::path::Path::new("-")) {
        Some(path) => {
            // Written beside, then renamed: a failed export leaves no half tar.
            let name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(&name);
            tmp_name.push(format!(".lstore-partial-{}", std::process::id()));
            let tmp = path.with_file_name(tmp_name);
            let file = std::fs::File::create(&tmp).map_err(|e| Error::File {
                path: tmp.clone(),
                source: e,
            })?;
            let mut w = std::io::BufWriter::new(file);
            let done = lstore::export_tar(from.as_ref(), &to, &mut w).and_then(|_| {
                let f = w.into_inner().map_err(|e| Error::Io(e.into_error()))?;
                f.sync_all().map_err(Error::Io)
            });
            if let Err(e) = done {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            std::fs::rename(&tmp, path).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Error::File {
                    path: path.to_path_buf(),
                    source: e,
                }
            })
        }
        None => {
            let out = std::io::stdout().lock();
            lstore::export_tar(from.as_ref(), &to, std::io::BufWriter::new(out)).map(|_| ())
        }
    }
}

// `lstore stat`.
#[derive(Args)]
pub struct StatArgs {
    /// The layer or container (name, id or id prefix).
    target: String,
    /// The path (a leading `/` is dropped).
    path: OsString,
    #[command(flatten)]
    pub json: JsonFlag,
}

/// An entry as `stat` shows it.
#[derive(Serialize)]
pub struct StatReport {
    path: String,
    kind: &'static str,
    size: u64,
    mode: String,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
    ino: u64,
    nlink: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    rdev: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    /// Name to value, both escaped.
    xattrs: Vec<(String, String)>,
}

impl StatReport {
    fn of(info: ValueInfo) -> StatReport {
        // A plain value is shown as the regular file an export makes of it.
        let a = info.attrs.unwrap_or_else(|| Attrs::new(FileKind::Regular, 0o644));
        StatReport {
            path: escape_path(&info.key),
            kind: a.kind.name(),
            size: info.size,
            mode: format!("{:o}", a.kind.type_bits() | (a.mode & 0o7777)),
            uid: a.uid,
            gid: a.gid,
            mtime_ns: a.mtime_ns,
            ino: a.ino,
            nlink: a.nlink.max(1),
            rdev: matches!(a.kind, FileKind::CharDevice | FileKind::BlockDevice).then_some(a.rdev),
            target: a.link_target.as_deref().map(escape_path),
            xattrs: a.xattrs.iter().map(|(n, v)| (escape_path(n), escape_path(v))).collect(),
        }
    }
}

impl Report for StatReport {
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        writeln!(w, "path\t{}", self.path)?;
        writeln!(w, "kind\t{}", self.kind)?;
        writeln!(w, "size\t{}", self.size)?;
        writeln!(w, "mode\t{}", self.mode)?;
        writeln!(w, "owner\t{}:{}", self.uid, self.gid)?;
        writeln!(w, "mtime_ns\t{}", self.mtime_ns)?;
        writeln!(w, "ino\t{}", self.ino)?;
        writeln!(w, "nlink\t{}", self.nlink)?;
        if let Some(r) = self.rdev {
            writeln!(w, "rdev\t{}:{}", libc::major(r), libc::minor(r))?;
        }
        if let Some(t) = &self.target {
            writeln!(w, "target\t{t}")?;
        }
        self.xattrs.iter().try_for_each(|(n, v)| writeln!(w, "xattr\t{n}\t{v}"))
    }
}

pub fn stat(ctx: &Ctx, a: &StatArgs) -> Result<StatReport> {
    let store = ctx.open_read_only()?;
    let layer = store.snapshot(&a.target)?;
    if matches!(a.path.as_bytes(), b"/" | b"") {
        // The root folder: its own attributes, when the layer keeps them.
        let attrs = layer
            .root_attrs()?
            .unwrap_or_else(|| Attrs::new(FileKind::Directory, 0o755));
        return Ok(StatReport::of(ValueInfo {
            key: Vec::new(),
            size: 0,
            inline: true,
            block_size: 0,
            attrs: Some(attrs),
        }));
    }
    let path = path_arg(&a.path)?;
    let info = layer
        .stat(&path)?
        .ok_or_else(|| Error::KeyNotFound(escape_path(&path)))?;
    Ok(StatReport::of(info))
}

// `lstore diff`.
#[derive(Args)]
pub struct DiffArgs {
    /// The older layer or container (name, id or id prefix).
    from: String,
    /// The newer one; when absent, FROM is a container compared with its image.
    to: Option<String>,
    #[command(flatten)]
    pub json: JsonFlag,
}

/// One changed path, as `docker diff` prints it.
#[derive(Serialize)]
pub struct ChangeRow {
    kind: char,
    path: String,
}

impl Row for ChangeRow {
    fn line(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        writeln!(w, "{} {}", self.kind, self.path)
    }
}

pub fn diff(ctx: &Ctx, a: &DiffArgs) -> Result<List<ChangeRow>> {
    let store = ctx.open_read_only()?;
    let changes = match &a.to {
        Some(to) => store.diff(&a.from, to)?,
        None => match store.resolve(&a.from)? {
            lstore::Target::Container(_) => store.container(&a.from)?.diff()?,
            lstore::Target::Layer(_) => {
                return Err(Error::InvalidArgument(format!(
                    "{} is a layer: give the one to compare it with (diff FROM TO)",
                    a.from
                )))
            }
        },
    };
    // Sorted by path, as docker diff prints.
    let mut changes: Vec<lstore::Change> = changes.collect();
    changes.sort_by(|x, y| x.path.cmp(&y.path));
    let rows = changes.into_iter().map(|c| ChangeRow {
        kind: c.kind.letter(),
        path: format!("/{}", escape_path(&c.path)),
    });
    Ok(List(rows.collect()))
}

// `lstore mkdir`.
#[derive(Args)]
pub struct MkdirArgs {
    /// The container (name, id or id prefix).
    target: String,
    /// The folder to make.
    path: OsString,
    /// Permission bits, in octal.
    #[arg(long, default_value = "755", value_parser = octal)]
    mode: u32,
    /// Make missing parent folders too, and succeed if the folder exists.
    #[arg(short = 'p', long)]
    parents: bool,
}

/// An octal mode such as `755` or `4755`.
fn octal(s: &str) -> std::result::Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("mode '{s}': octal digits up to 7777"))
}

pub fn mkdir(ctx: &Ctx, a: MkdirArgs) -> Result<()> {
    let store = ctx.open()?;
    let c = store.container(&a.target)?;
    let path = path_arg(&a.path)?;
    if a.parents {
        for (i, _) in path.iter().enumerate().filter(|(_, &b)| b == b'/') {
            make_folder_if_missing(&c, &path[..i], 0o755)?;
        }
        make_folder_if_missing(&c, &path, a.mode)?;
    } else {
        c.mkdir(&path, a.mode)?;
    }
    store.commit()
}

fn make_folder_if_missing(c: &lstore::Container, path: &[u8], mode: u32) -> Result<()> {
    match c.mkdir(path, mode) {
        Err(Error::Exists(_))
            if c.stat(path)?
                .and_then(|i| i.attrs)
                .is_some_and(|a| a.kind == FileKind::Directory) =>
        {
            Ok(())
        }
        r => r.map(|_| ()),
    }
}

// `lstore symlink`.
#[derive(Args)]
pub struct SymlinkArgs {
    /// The container (name, id or id prefix).
    target: String,
    /// What the link points at (any bytes, kept as given).
    link_target: OsString,
    /// Where the link goes.
    path: OsString,
}

pub fn symlink(ctx: &Ctx, a: SymlinkArgs) -> Result<()> {
    let store = ctx.open()?;
    let c = store.container(&a.target)?;
    c.symlink(a.link_target.as_bytes(), path_arg(&a.path)?)?;
    store.commit()
}

// `lstore link` and `lstore mv`.
#[derive(Args)]
pub struct TwoPathArgs {
    /// The container (name, id or id prefix).
    target: String,
    /// The existing path.
    from: OsString,
    /// The new path.
    to: OsString,
}

pub fn link(ctx: &Ctx, a: TwoPathArgs) -> Result<()> {
    let store = ctx.open()?;
    store.container(&a.target)?.link(path_arg(&a.from)?, path_arg(&a.to)?)?;
    store.commit()
}

pub fn mv(ctx: &Ctx, a: TwoPathArgs) -> Result<()> {
    let store = ctx.open()?;
    store
        .container(&a.target)?
        .rename(path_arg(&a.from)?, path_arg(&a.to)?)?;
    store.commit()
}

// `lstore chmod`.
#[derive(Args)]
pub struct ChmodArgs {
    /// The container (name, id or id prefix).
    target: String,
    /// Permission bits, in octal (setuid 4000, setgid 2000, sticky 1000).
    #[arg(value_parser = octal)]
    mode: u32,
    path: OsString,
}

pub fn chmod(ctx: &Ctx, a: ChmodArgs) -> Result<Line> {
    set(ctx, &a.target, &a.path, |x| x.mode = a.mode)
}

// `lstore chown`.
#[derive(Args)]
pub struct ChownArgs {
    /// The container (name, id or id prefix).
    target: String,
    /// UID or UID:GID (numbers: a layer keeps ids, not names).
    owner: String,
    path: OsString,
}

pub fn chown(ctx: &Ctx, a: ChownArgs) -> Result<Line> {
    let bad = || Error::InvalidArgument(format!("owner '{}': UID or UID:GID, as numbers", a.owner));
    let mut parts = a.owner.splitn(2, ':');
    let uid: u32 = parts.next().unwrap_or_default().parse().map_err(|_| bad())?;
    let gid: Option<u32> = parts.next().map(|g| g.parse().map_err(|_| bad())).transpose()?;
    set(ctx, &a.target, &a.path, |x| {
        x.uid = uid;
        if let Some(g) = gid {
            x.gid = g;
        }
    })
}

// `lstore touch`.
#[derive(Args)]
pub struct TouchArgs {
    /// The container (name, id or id prefix).
    target: String,
    path: OsString,
    /// The mtime to set, nanoseconds since the Unix epoch (default: now).
    #[arg(long)]
    mtime_ns: Option<i64>,
}

pub fn touch(ctx: &Ctx, a: TouchArgs) -> Result<Line> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let t = a.mtime_ns.unwrap_or(now);
    set(ctx, &a.target, &a.path, |x| x.mtime_ns = t)
}

// `lstore setxattr`.
#[derive(Args)]
pub struct SetxattrArgs {
    /// The container (name, id or id prefix).
    target: String,
    path: OsString,
    /// The attribute's name, e.g. user.comment or security.capability.
    name: OsString,
    /// The value, escaped as paths are (`\x00` for a NUL byte); absent with --remove.
    value: Option<String>,
    /// Remove the attribute instead.
    #[arg(long, conflicts_with = "value")]
    remove: bool,
}

pub fn setxattr(ctx: &Ctx, a: SetxattrArgs) -> Result<Line> {
    let name = a.name.as_bytes().to_vec();
    let value = match (&a.value, a.remove) {
        (Some(v), false) => Some(lstore::unescape_path(v)?),
        (None, true) => None,
        _ => return Err(Error::InvalidArgument("give a VALUE, or --remove".into())),
    };
    let mut missing = false;
    let line = set(ctx, &a.target, &a.path, |x| match &value {
        Some(v) => x.set_xattr(&name, v),
        None => missing = !x.remove_xattr(&name),
    });
    if missing {
        return Err(Error::KeyNotFound(format!(
            "{}: no xattr {}",
            escape_path(&path_arg(&a.path)?),
            escape_path(&name)
        )));
    }
    line
}

/// Changes attributes of one path of a container and commits; prints the new mode and owner.
fn set(ctx: &Ctx, target: &str, path: &OsString, f: impl FnOnce(&mut Attrs)) -> Result<Line> {
    let store = ctx.open()?;
    let c = store.container(target)?;
    let a = c.set_attrs(path_arg(path)?, f)?;
    store.commit()?;
    Ok(Line(format!(
        "{:o} {}:{}",
        a.kind.type_bits() | (a.mode & 0o7777),
        a.uid,
        a.gid
    )))
}
