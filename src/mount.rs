//! Mounts of a container: named volumes and bind mounts at a key prefix, parsed from Docker's
//! `-v` and `--mount` syntax, and the routing of a key to the mount that covers it.

use crate::error::{Error, Result};
use std::path::PathBuf;

/// Where a mount's keys live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountSource {
    /// A named volume inside the store.
    Volume(String),
    /// A folder of the host (absolute path).
    Bind(PathBuf),
}

/// One mount of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub source: MountSource,
    /// Key prefix it is mounted at, without leading or trailing `/`.
    pub target: String,
    pub readonly: bool,
    /// Do not fill an empty volume from the image (`volume-nocopy`).
    pub nocopy: bool,
}

fn bad(spec: &str, why: &str) -> Error {
    Error::InvalidArgument(format!("mount '{spec}': {why}"))
}

/// A target as a key prefix: `/data/db/` → `data/db`.
pub fn normalize_target(t: &str) -> Result<String> {
    let t = t.trim_matches('/');
    if t.is_empty() {
        return Err(Error::InvalidArgument("mount target must not be the root".into()));
    }
    if t.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(Error::InvalidArgument(format!(
            "mount target '{t}' has an empty, '.' or '..' component"
        )));
    }
    crate::value::check_key(t.as_bytes())?;
    Ok(t.to_string())
}

fn source_of(spec: &str, s: &str, bind: bool) -> Result<MountSource> {
    if bind || s.starts_with('/') {
        let p = PathBuf::from(s);
        if !p.is_absolute() {
            return Err(bad(spec, "a bind source must be an absolute path"));
        }
        if !p.is_dir() {
            return Err(bad(spec, &format!("bind source {s} does not exist or is not a folder")));
        }
        return Ok(MountSource::Bind(p));
    }
    crate::catalog::check_volume_name(s)?;
    Ok(MountSource::Volume(s.to_string()))
}

impl Mount {
    /// `-v NAME:/TARGET[:ro]` or `-v /HOST/DIR:/TARGET[:ro|rw]`.
    pub fn parse_volume_flag(spec: &str) -> Result<Mount> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (src, target, opts) = match parts.as_slice() {
            [s, t] => (*s, *t, ""),
            [s, t, o] => (*s, *t, *o),
            _ => return Err(bad(spec, "use SOURCE:/TARGET[:ro]")),
        };
        let readonly = match opts {
            "" | "rw" => false,
            "ro" => true,
            _ => return Err(bad(spec, &format!("unknown option '{opts}'"))),
        };
        if src.is_empty() {
            return Err(bad(spec, "missing source"));
        }
        Ok(Mount {
            source: source_of(spec, src, false)?,
            target: normalize_target(target)?,
            readonly,
            nocopy: false,
        })
    }

    /// `--mount type=volume|bind,source=S,target=T[,readonly][,volume-nocopy]`.
    pub fn parse_mount_flag(spec: &str) -> Result<Mount> {
        let (mut kind, mut src, mut target, mut readonly, mut nocopy) = (None, None, None, false, false);
        for field in spec.split(',') {
            let (k, v) = field.split_once('=').map_or((field, None), |(k, v)| (k, Some(v)));
            match (k, v) {
                ("type", Some(v)) => kind = Some(v),
                ("source" | "src", Some(v)) => src = Some(v),
                ("target" | "destination" | "dst", Some(v)) => target = Some(v),
                ("readonly" | "ro", None | Some("true" | "1")) => readonly = true,
                ("readonly" | "ro", Some("false" | "0")) => readonly = false,
                ("volume-nocopy", None | Some("true" | "1")) => nocopy = true,
                _ => return Err(bad(spec, &format!("unknown field '{field}'"))),
            }
        }
        let kind = kind.unwrap_or("volume");
        if kind != "volume" && kind != "bind" {
            return Err(bad(spec, &format!("unsupported type '{kind}' (volume or bind)")));
        }
        let target = normalize_target(target.ok_or_else(|| bad(spec, "missing target"))?)?;
        let src = src.ok_or_else(|| bad(spec, "missing source"))?;
        let source = match kind {
            "volume" => {
                crate::catalog::check_volume_name(src)?;
                MountSource::Volume(src.to_string())
            }
            "bind" => source_of(spec, src, true)?,
            other => return Err(bad(spec, &format!("unsupported type '{other}'"))),
        };
        if nocopy && matches!(source, MountSource::Bind(_)) {
            return Err(bad(spec, "volume-nocopy applies to volumes only"));
        }
        Ok(Mount {
            source,
            target,
            readonly,
            nocopy,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let (kind, src) = match &self.source {
            MountSource::Volume(n) => (0u8, n.as_bytes().to_vec()),
            MountSource::Bind(p) => (1u8, p.as_os_str().as_encoded_bytes().to_vec()),
        };
        out.push(kind);
        out.push(self.readonly as u8 | (self.nocopy as u8) << 1);
        for b in [&src[..], self.target.as_bytes()] {
            out.extend_from_slice(&(b.len() as u16).to_le_bytes());
            out.extend_from_slice(b);
        }
    }

    pub(crate) fn decode(b: &mut &[u8]) -> Result<Mount> {
        let corrupt = || Error::corrupt("container mount record is malformed");
        let mut take = |n: usize| -> Result<Vec<u8>> {
            if b.len() < n {
                return Err(corrupt());
            }
            let (h, t) = b.split_at(n);
            *b = t;
            Ok(h.to_vec())
        };
        let head = take(2)?;
        let mut strings = Vec::new();
        for _ in 0..2 {
            let n = take(2)?;
            strings.push(take(u16::from_le_bytes([n[0], n[1]]) as usize)?);
        }
        let target = String::from_utf8(strings.pop().unwrap()).map_err(|_| corrupt())?;
        let src = strings.pop().unwrap();
        let source = match head[0] {
            0 => MountSource::Volume(String::from_utf8(src).map_err(|_| corrupt())?),
            1 => MountSource::Bind(PathBuf::from(String::from_utf8(src).map_err(|_| corrupt())?)),
            _ => return Err(corrupt()),
        };
        Ok(Mount {
            source,
            target,
            readonly: head[1] & 1 != 0,
            nocopy: head[1] & 2 != 0,
        })
    }

    /// The key below this mount (`target/x/y` → `x/y`, `target` → empty), if it is under it.
    pub fn sub_key<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        let t = self.target.as_bytes();
        let rest = key.strip_prefix(t)?;
        match rest.first() {
            None => Some(rest),
            Some(b'/') => Some(&rest[1..]),
            _ => None,
        }
    }
}

/// The mount covering `key`: the one with the longest target, as nested mounts shadow.
pub fn route<'m, 'k>(mounts: &'m [Mount], key: &'k [u8]) -> Option<(&'m Mount, &'k [u8])> {
    mounts
        .iter()
        .filter_map(|m| m.sub_key(key).map(|s| (m, s)))
        .max_by_key(|(m, _)| m.target.len())
}
