//! Mounts of a container (named volumes and bind mounts at a key prefix) and their bytes in
//! a container's catalog record.

use super::le::Cursor;
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

impl Mount {
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

    pub(crate) fn decode(c: &mut Cursor) -> Result<Mount> {
        let corrupt = || Error::corrupt("container mount record is malformed");
        let [kind, flags] = *c.fixed::<[u8; 2]>()?;
        let src = c.bytes16()?.to_vec();
        let target = String::from_utf8(c.bytes16()?.to_vec()).map_err(|_| corrupt())?;
        let source = match kind {
            0 => MountSource::Volume(String::from_utf8(src).map_err(|_| corrupt())?),
            1 => MountSource::Bind(PathBuf::from(String::from_utf8(src).map_err(|_| corrupt())?)),
            _ => return Err(corrupt()),
        };
        Ok(Mount {
            source,
            target,
            readonly: flags & 1 != 0,
            nocopy: flags & 2 != 0,
        })
    }
}
