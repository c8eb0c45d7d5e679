//! Where an image is read from: an OCI layout folder, or a tar of one (`docker save`, which
//! may also hold `manifest.json`). A tar is indexed once (names to data offsets) and then read
//! in place; a folder's files are opened beneath it, so no name in a manifest leads out.

use crate::host::beneath::{self, Links};
use crate::{Error, Result};
use rustix::fs::OFlags;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Symlinks followed inside a tar to reach one file.
const MAX_HOPS: usize = 16;

pub(crate) enum Source {
    Dir {
        root: OwnedFd,
        path: PathBuf,
    },
    Tar {
        file: File,
        path: PathBuf,
        files: HashMap<String, Member>,
    },
}

pub(crate) enum Member {
    Data { offset: u64, size: u64 },
    Link(String),
}

impl Source {
    /// `path` is a folder, a tar file, a compressed tar (gzip or zstd) or `-` (standard
    /// input); a stream or a compressed tar is first spooled, decompressed, to an unnamed
    /// temporary file.
    pub(crate) fn open(path: &Path) -> Result<Source> {
        let file_err = |e: std::io::Error| Error::File {
            path: path.to_path_buf(),
            source: e,
        };
        if path.as_os_str() == "-" {
            return Source::spooled(path, std::io::stdin().lock());
        }
        let meta = std::fs::metadata(path).map_err(file_err)?;
        if meta.is_dir() {
            let root = rustix::fs::open(
                path,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| file_err(e.into()))?;
            return Ok(Source::Dir {
                root,
                path: path.to_path_buf(),
            });
        }
        let mut file = File::open(path).map_err(file_err)?;
        let mut magic = [0u8; 4];
        let n = file.read(&mut magic).map_err(file_err)?;
        let compressed = magic[..n].starts_with(&[0x1f, 0x8b]) || magic[..n] == [0x28, 0xb5, 0x2f, 0xfd];
        if !meta.is_file() || compressed {
            let file = File::open(path).map_err(file_err)?;
            return Source::spooled(path, file);
        }
        Source::indexed(path, file)
    }

    fn spooled(path: &Path, input: impl Read) -> Result<Source> {
        let mut plain = crate::import::tar_in::decompressed(input)?;
        let mut file = tempfile::tempfile().map_err(Error::Io)?;
        std::io::copy(&mut plain, &mut file).map_err(|e| Error::File {
            path: path.to_path_buf(),
            source: e,
        })?;
        Source::indexed(path, file)
    }

    fn indexed(path: &Path, mut file: File) -> Result<Source> {
        file.seek(std::io::SeekFrom::Start(0)).map_err(Error::Io)?;
        let files = index_tar(&file).map_err(|e| match e {
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("{}: {m}", path.display())),
            e => e,
        })?;
        Ok(Source::Tar {
            file,
            path: path.to_path_buf(),
            files,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        match self {
            Source::Dir { path, .. } | Source::Tar { path, .. } => path,
        }
    }

    /// The file `name` (relative, `/`-separated) as a reader and its size; `None` when absent.
    pub(crate) fn open_member(&self, name: &str) -> Result<Option<(Box<dyn Read + '_>, u64)>> {
        match self {
            Source::Dir { root, path } => {
                let rel = Path::new(name.trim_start_matches('/'));
                match beneath::open_file(root, rel, OFlags::RDONLY, Links::Beneath) {
                    Ok(Some((f, size))) => Ok(Some((Box::new(f), size))),
                    Ok(None) => Err(Error::InvalidArgument(format!(
                        "{}: {name} is not a regular file",
                        path.display()
                    ))),
                    Err(rustix::io::Errno::NOENT) => Ok(None),
                    // RESOLVE_BENEATH's answer to a path that would leave the folder.
                    Err(rustix::io::Errno::XDEV) => Err(outside(path, name)),
                    Err(e) => Err(Error::File {
                        path: path.join(rel),
                        source: e.into(),
                    }),
                }
            }
            Source::Tar { file, files, path } => {
                let mut at = normalize(name).ok_or_else(|| outside(path, name))?;
                for _ in 0..MAX_HOPS {
                    match files.get(&at) {
                        None => return Ok(None),
                        Some(Member::Data { offset, size }) => {
                            let r = At {
                                file,
                                pos: *offset,
                                end: offset + size,
                            };
                            return Ok(Some((Box::new(r), *size)));
                        }
                        Some(Member::Link(target)) => {
                            let joined = match target.strip_prefix('/') {
                                // From the archive's root (a hard link's target always is).
                                Some(abs) => abs.to_string(),
                                None => {
                                    let dir = at.rsplit_once('/').map_or("", |(d, _)| d);
                                    format!("{dir}/{target}")
                                }
                            };
                            at = normalize(&joined).ok_or_else(|| outside(path, name))?;
                        }
                    }
                }
                Err(Error::InvalidArgument(format!(
                    "{}: too many symlinks on the way to {name}",
                    path.display()
                )))
            }
        }
    }

    /// A small file whole (JSON), refused past `max` bytes; `None` when absent.
    pub(crate) fn read_small(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let Some((r, size)) = self.open_member(name)? else {
            return Ok(None);
        };
        if size > max {
            return Err(Error::InvalidArgument(format!(
                "{}: {name} has {size} bytes, more than the {max} such a file may have",
                self.path().display()
            )));
        }
        let mut v = Vec::with_capacity(size as usize);
        r.take(max + 1).read_to_end(&mut v).map_err(Error::Io)?;
        Ok(Some(v))
    }
}

fn outside(path: &Path, name: &str) -> Error {
    Error::InvalidArgument(format!("{}: {name} leads out of the archive", path.display()))
}

/// A path inside the archive without `.`, `..` and empty components; `None` if `..` climbs
/// out.
fn normalize(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// Names of the tar's regular files and symlinks, with where their data is.
fn index_tar(file: &File) -> Result<HashMap<String, Member>> {
    let bad = |e: std::io::Error| {
        Error::InvalidArgument(format!(
            "not a readable tar or OCI layout: {}",
            crate::escape_path(e.to_string().as_bytes())
        ))
    };
    let mut archive = tar::Archive::new(file);
    let mut files = HashMap::new();
    for entry in archive.entries_with_seek().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        // Manifests name files in UTF-8 JSON: other names can never be asked for.
        let Some(name) = std::str::from_utf8(&entry.path_bytes()).ok().and_then(normalize) else {
            continue;
        };
        let member = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Member::Data {
                offset: entry.raw_file_position(),
                size: entry.size(),
            },
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let Some(target) = entry.link_name_bytes() else {
                    continue;
                };
                let Ok(target) = String::from_utf8(target.into_owned()) else {
                    continue;
                };
                if entry.header().entry_type() == tar::EntryType::Link {
                    // A hard link's target is a path from the archive's root.
                    Member::Link(format!("/{target}"))
                } else {
                    Member::Link(target)
                }
            }
            _ => continue,
        };
        files.insert(name, member);
    }
    Ok(files)
}

/// Reads `pos..end` of a file with positioned reads.
struct At<'f> {
    file: &'f File,
    pos: u64,
    end: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the archive ends inside a file",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}
