//! Layerfiles: a Dockerfile-like recipe (`FROM`, `COPY`, `SET`, `DEL`), each instruction after
//! `FROM` one layer built through the store's build cache. A `COPY` step's cache key includes a
//! digest of the copied names, sizes and content, so an edited file invalidates it and an
//! untouched tree does not.

use crate::host::beneath::{self, Links};
use crate::host::walk;
use crate::{check_key, Attrs, FileKind, Layer, LayerBuilder, Store};
use crate::{Error, Result};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One instruction after `FROM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Files of a host folder (or one file) below a key prefix, with their modes and mtimes;
    /// owned by root, or by `chown` (uid, gid) as `COPY --chown` gives it.
    Copy {
        src: PathBuf,
        dst: String,
        chown: Option<(u32, u32)>,
    },
    Set {
        key: String,
        value: String,
    },
    Del {
        key: String,
    },
}

/// One instruction after `FROM`, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// Its source text.
    pub text: String,
    /// Its line in the file, from 1.
    pub line: usize,
    pub step: Step,
}

/// A parsed Layerfile.
#[derive(Clone, Debug)]
pub struct Layerfile {
    /// What errors call the file (its path, or the name given to [`Layerfile::parse`]).
    pub name: String,
    /// `None` for `FROM scratch`.
    pub from: Option<String>,
    /// The line of `FROM`.
    pub from_line: usize,
    pub steps: Vec<Instruction>,
    /// Folder host paths are relative to.
    pub dir: PathBuf,
}

/// What a build did at each step.
#[derive(Clone, Debug)]
pub struct StepResult {
    pub instruction: String,
    pub cached: bool,
    pub layer: Layer,
}

/// `UID` or `UID:GID` of `COPY --chown` (numbers: a layer keeps ids; the group defaults to
/// the uid, as Docker does).
fn owner(s: &str) -> std::result::Result<(u32, u32), String> {
    let bad = || format!("--chown={s}: give UID or UID:GID as numbers");
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    let (u, g): (u32, u32) = (u.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?);
    if u == u32::MAX || g == u32::MAX {
        return Err(format!("--chown={s}: 4294967295 is no id"));
    }
    Ok((u, g))
}

/// A COPY destination as a key prefix: `/`, `.` and `./` are the root; a leading `/` or `./`
/// is dropped.
fn prefix_of(dst: &str) -> String {
    let d = dst.trim_start_matches('/');
    let d = d.strip_prefix("./").unwrap_or(d);
    if d == "." {
        String::new()
    } else {
        d.to_string()
    }
}

/// A COPY source: relative to the context folder and never leaving it (no absolute paths, no
/// `..`), as Docker requires.
fn context_path(src: &str) -> Result<PathBuf> {
    let p = Path::new(src);
    let climbs = p
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
    if climbs {
        return Err(Error::InvalidArgument(format!(
            "COPY {src}: the source must be a path inside the build context (no '/' start, no '..')"
        )));
    }
    Ok(p.to_path_buf())
}

fn key_of(k: &str) -> Result<String> {
    let k = k.trim_start_matches('/');
    check_key(k.as_bytes())?;
    // A key names a path in the image: each part a name, never `.` or `..` (an export could
    // not write it).
    if k.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(Error::InvalidKey(format!(
            "'{k}': name each part of the path (no empty, '.' or '..' part)"
        )));
    }
    Ok(k.to_string())
}

impl Layerfile {
    /// Reads and parses a Layerfile: a regular file of at most 1 MiB of UTF-8.
    pub fn parse_file(path: &Path) -> Result<Layerfile> {
        const MAX: u64 = 1 << 20;
        let (file, md) = crate::host::open_regular(std::fs::OpenOptions::new().read(true), path, true)
            .map_err(|e| Error::file(path, e))?
            .ok_or_else(|| Error::InvalidArgument(format!("{} is not a regular file", path.display())))?;
        if md.len() > MAX {
            return Err(Error::InvalidArgument(format!(
                "{}: a Layerfile is at most 1 MiB",
                path.display()
            )));
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file.take(MAX + 1), &mut bytes).map_err(|e| Error::file(path, e))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::InvalidArgument(format!("{}: a Layerfile is UTF-8 text", path.display())))?;
        // A bare file name's parent is "": the build context is then the current folder.
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Self::parse(&text, &path.display().to_string(), dir)
    }

    pub fn parse(text: &str, name: &str, dir: PathBuf) -> Result<Layerfile> {
        let mut from: Option<Option<String>> = None;
        let mut from_line = 0;
        let mut steps = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let err = |why: String| Error::InvalidArgument(format!("{name}:{}: {why}", i + 1));
            let instruction = |step: Step| Instruction {
                text: raw.trim().to_string(),
                line: i + 1,
                step,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (op, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            let args: Vec<&str> = rest.split_whitespace().collect();
            match (op.to_ascii_uppercase().as_str(), from.is_some()) {
                ("FROM", false) => match args.as_slice() {
                    ["scratch"] => (from, from_line) = (Some(None), i + 1),
                    [r] => (from, from_line) = (Some(Some(r.to_string())), i + 1),
                    _ => return Err(err("FROM takes one layer name or id, or 'scratch'".into())),
                },
                ("FROM", true) => return Err(err("only one FROM is allowed".into())),
                (_, false) => return Err(err(format!("the first instruction must be FROM, not {op}"))),
                ("COPY", true) => {
                    let (chown, args) = match args.split_first() {
                        Some((flag, rest)) if flag.starts_with("--chown=") => {
                            (Some(owner(&flag["--chown=".len()..]).map_err(err)?), rest)
                        }
                        _ => (None, &args[..]),
                    };
                    match args {
                        [src, dst] => steps.push(instruction(Step::Copy {
                            src: context_path(src).map_err(|e| err(e.to_string()))?,
                            dst: prefix_of(dst),
                            chown,
                        })),
                        _ => {
                            return Err(err(
                                "COPY takes [--chown=UID[:GID]], a host path and a key prefix".into()
                            ))
                        }
                    }
                }
                ("SET", true) => {
                    let (key, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    if key.is_empty() {
                        return Err(err("SET takes a key and a value".into()));
                    }
                    let key = key_of(key).map_err(|e| err(e.to_string()))?;
                    steps.push(instruction(Step::Set {
                        key,
                        value: value.trim_start().to_string(),
                    }));
                }
                ("DEL", true) => match args.as_slice() {
                    [k] => steps.push(instruction(Step::Del {
                        key: key_of(k).map_err(|e| err(e.to_string()))?,
                    })),
                    _ => return Err(err("DEL takes one key".into())),
                },
                (other, true) => return Err(err(format!("unknown instruction '{other}'"))),
            }
        }
        let from = from.ok_or_else(|| Error::InvalidArgument(format!("{name}: no FROM instruction")))?;
        Ok(Layerfile {
            name: name.to_string(),
            from,
            from_line,
            steps,
            dir,
        })
    }

    /// Builds every step through the cache; the last result is the final layer.
    pub fn build(&self, store: &Store) -> Result<(Option<Layer>, Vec<StepResult>)> {
        let mut parent = match &self.from {
            None => None,
            Some(r) => Some(store.layer(r).map_err(|e| self.at(self.from_line, e))?),
        };
        let mut results = Vec::new();
        for ins in &self.steps {
            let (layer, cached) = self
                .build_step(store, parent.as_ref(), ins)
                .map_err(|e| self.at(ins.line, e))?;
            results.push(StepResult {
                instruction: ins.text.clone(),
                cached,
                layer: layer.clone(),
            });
            parent = Some(layer);
        }
        Ok((parent, results))
    }

    fn at(&self, line: usize, e: Error) -> Error {
        Error::At {
            place: format!("{}:{line}", self.name),
            source: Box::new(e),
        }
    }

    fn build_step(&self, store: &Store, parent: Option<&Layer>, ins: &Instruction) -> Result<(Layer, bool)> {
        let (key, files) = self.step_key(&ins.text, &ins.step)?;
        let digest = &key[key.len().saturating_sub(32)..];
        store.build(parent, &key, |b| apply(b, &ins.step, files.as_ref(), digest))
    }

    /// The cache key of a step, and for COPY the files it copies.
    fn step_key(&self, text: &str, step: &Step) -> Result<(Vec<u8>, Option<CopyList>)> {
        let mut key = text.as_bytes().to_vec();
        let Step::Copy { src, dst, chown } = step else {
            return Ok((key, None));
        };
        let files = self.copy_list(src, dst.as_bytes())?;
        let mut h = blake3::Hasher::new();
        if let Some((u, g)) = chown {
            h.update(b"chown").update(&u.to_le_bytes()).update(&g.to_le_bytes());
        }
        for (k, rel, shown) in &files.files {
            check_key(k)?;
            h.update(&(k.len() as u64).to_le_bytes()).update(k);
            let (f, md) = crate::import::folder::open_beneath(&files.root, rel, files.links, shown)?;
            hash_file(&mut h, f, &md, shown)?;
        }
        key.push(0);
        key.extend_from_slice(h.finalize().as_bytes());
        Ok((key, Some(files)))
    }

    /// What `COPY src dst` copies: every file of a folder (walked beneath it, opened through
    /// no symlink), or one file (opened beneath the context, symlinks inside it allowed).
    fn copy_list(&self, src: &Path, dst: &[u8]) -> Result<CopyList> {
        let shown = |e: std::io::Error| Error::InvalidArgument(format!("COPY {}: {e}", src.display()));
        let context = std::fs::File::open(&self.dir).map_err(shown)?;
        let context = OwnedFd::from(context);
        let out_of_context = || {
            Error::InvalidArgument(format!(
                "COPY {}: leads out of the build context {}",
                src.display(),
                self.dir.display()
            ))
        };
        let rel = if src.as_os_str().is_empty() {
            Path::new(".")
        } else {
            src
        };
        let at = match beneath::dir_at(&context, rel, Links::Beneath) {
            Ok(dir) => Some(dir),
            Err(Errno::NOTDIR) => None,
            Err(Errno::XDEV) => return Err(out_of_context()),
            Err(e) => return Err(shown(e.into())),
        };
        let Some(dir) = at else {
            let name = src.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
            let k = if dst.ends_with(b"/") || dst.is_empty() {
                [dst, name].concat()
            } else {
                dst.to_vec()
            };
            return Ok(CopyList {
                root: context,
                links: Links::Beneath,
                files: vec![(k, src.to_path_buf(), self.dir.join(src))],
            });
        };
        // Listing needs a descriptor that can be read (the reference above cannot).
        let walked = walk::regular_files_at(
            beneath::reopen_dir(&dir).map_err(|e| shown(e.into()))?,
            &self.dir.join(src),
        )?;
        let mut files: Vec<_> = (walked.files.into_iter())
            .map(|f| (under(dst, &f.key), PathBuf::from(OsStr::from_bytes(&f.key)), f.path))
            .collect();
        files.sort();
        Ok(CopyList {
            root: walked.root,
            links: Links::Never,
            files,
        })
    }
}

/// Adds a file's size, mode and bytes to a step's digest, reading it in bounded pieces.
fn hash_file(h: &mut blake3::Hasher, mut f: std::fs::File, md: &std::fs::Metadata, shown: &Path) -> Result<()> {
    crate::import::folder::digest_head(h, md);
    let len = md.len();
    let copied = std::io::copy(&mut (&mut f).take(len), h).map_err(|e| Error::file(shown, e))?;
    if copied != len {
        return Err(Error::InvalidArgument(format!(
            "COPY {}: the file changed while read",
            shown.display()
        )));
    }
    Ok(())
}

/// What a COPY step stores: (key, path beneath `root`, path shown in errors) for each file.
struct CopyList {
    root: OwnedFd,
    links: Links,
    files: Vec<(Vec<u8>, PathBuf, PathBuf)>,
}

/// `rel` below the COPY destination `dst`.
fn under(dst: &[u8], rel: &[u8]) -> Vec<u8> {
    let end = dst.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    let dst = &dst[..end];
    if dst.is_empty() {
        rel.to_vec()
    } else {
        [dst, b"/", rel].concat()
    }
}

/// Makes the folders above `key` that the layer lacks, as Docker's COPY does: mode 0755, owned
/// by the step's owner.
fn make_parents(b: &mut LayerBuilder, key: &[u8], uid: u32, gid: u32) -> Result<()> {
    for (i, _) in key.iter().enumerate().filter(|(_, &c)| c == b'/') {
        let dir = &key[..i];
        if b.stat(dir)?.is_none() {
            let attrs = Attrs {
                uid,
                gid,
                ..Attrs::new(FileKind::Directory, 0o755)
            };
            b.create(dir, attrs)?;
        }
    }
    Ok(())
}

/// Runs a step into the builder. A COPY digests what it imports exactly as the cache key
/// digested the files, and fails if the two differ: a file that changed in between must not
/// leave a layer that the cache would hand out for content it does not hold.
fn apply(b: &mut LayerBuilder, step: &Step, files: Option<&CopyList>, digest: &[u8]) -> Result<()> {
    match (step, files) {
        (Step::Copy { src, chown, .. }, Some(files)) => {
            let mut h = blake3::Hasher::new();
            if let Some((u, g)) = chown {
                h.update(b"chown").update(&u.to_le_bytes()).update(&g.to_le_bytes());
            }
            let (uid, gid) = chown.unwrap_or((0, 0));
            for (k, rel, shown) in &files.files {
                h.update(&(k.len() as u64).to_le_bytes()).update(k);
                make_parents(b, k, uid, gid)?;
                let (f, md) = crate::import::folder::open_beneath(&files.root, rel, files.links, shown)?;
                let attrs = Attrs {
                    uid,
                    gid,
                    ..crate::import::folder::attrs_of(&md)
                };
                crate::import::folder::import_file(b, k, shown, f, &md, Some(attrs), Some(&mut h))?;
            }
            if h.finalize().as_bytes()[..] != *digest {
                return Err(Error::InvalidArgument(format!(
                    "COPY {}: a file changed while the step ran; run the build again",
                    src.display()
                )));
            }
            Ok(())
        }
        (Step::Copy { .. }, None) => Err(Error::InvalidArgument("COPY without its file list".into())),
        (Step::Set { key, value }, _) => b.put(key, value.as_bytes()),
        (Step::Del { key }, _) => match b.remove(key, true)? {
            true => Ok(()),
            false => Err(Error::KeyNotFound(format!("DEL {key}: nothing there to delete"))),
        },
    }
}
