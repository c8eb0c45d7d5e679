//! Docker's `-v` and `--mount` syntax, parsed into [`Mount`]s.

use crate::error::{Error, Result};
use crate::format::mount::{Mount, MountSource};
use std::path::PathBuf;

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
    crate::format::value::check_key(t.as_bytes())?;
    Ok(t.to_string())
}

/// A flag's target, as Docker takes it: an absolute path in the container.
fn absolute_target(spec: &str, t: &str) -> Result<String> {
    if !t.starts_with('/') {
        return Err(bad(spec, &format!("the target '{t}' must be an absolute path")));
    }
    normalize_target(t)
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
    crate::format::names::check_volume_name(s)?;
    Ok(MountSource::Volume(s.to_string()))
}

impl Mount {
    /// Refuses a target not in the form [`normalize_target`] gives (`data/db`: relative, no
    /// empty, `.` or `..` part), so that a target never leads out of the container's root.
    pub fn check_target(&self) -> Result<()> {
        match normalize_target(&self.target) {
            Ok(t) if t == self.target => Ok(()),
            _ => Err(Error::InvalidArgument(format!(
                "mount target '{}': not a path inside the container (write it as data/db)",
                self.target
            ))),
        }
    }

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
            target: absolute_target(spec, target)?,
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
        let target = absolute_target(spec, target.ok_or_else(|| bad(spec, "missing target"))?)?;
        let src = src.ok_or_else(|| bad(spec, "missing source"))?;
        let source = match kind {
            "volume" => {
                crate::format::names::check_volume_name(src)?;
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
}
