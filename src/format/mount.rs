//! Mounts of a container (named volumes and bind mounts at a key prefix) and their bytes in
//! a container's catalog record.

use super::le::Cursor;
use crate::error::{Error, Result};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
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

/// Most mounts a container record holds (its count is 16 bits).
pub const MAX_MOUNTS: usize = u16::MAX as usize;
/// Most bytes a container's mounts take in its record (a quarter of the smallest segment).
pub const MAX_MOUNTS_BYTES: usize = 1 << 20;

impl Mount {
    fn source_bytes(&self) -> (u8, &[u8]) {
        match &self.source {
            MountSource::Volume(n) => (0, n.as_bytes()),
            MountSource::Bind(p) => (1, p.as_os_str().as_bytes()),
        }
    }

    /// Checks that a container's mounts fit their record: at most [`MAX_MOUNTS`], and each
    /// source and target under 64 KiB. Called before anything is written.
    pub fn check_encodable(mounts: &[Mount]) -> Result<()> {
        if mounts.len() > MAX_MOUNTS {
            return Err(Error::InvalidArgument(format!(
                "{} mounts: a container takes at most {MAX_MOUNTS}",
                mounts.len()
            )));
        }
        // The container's record must fit a tree node's record in the smallest segment.
        let total: usize = mounts
            .iter()
            .map(|m| 6 + m.source_bytes().1.len() + m.target.len())
            .sum();
        if total > MAX_MOUNTS_BYTES {
            return Err(Error::InvalidArgument(format!(
                "mounts of {total} bytes: a container's mounts take at most {MAX_MOUNTS_BYTES} bytes"
            )));
        }
        for m in mounts {
            let (_, src) = m.source_bytes();
            if src.len() > u16::MAX as usize || m.target.len() > u16::MAX as usize {
                return Err(Error::InvalidArgument(format!(
                    "mount at /{}: source or target longer than 65535 bytes",
                    m.target.chars().take(64).collect::<String>()
                )));
            }
        }
        Ok(())
    }

    /// Appends the mount's bytes; [`Mount::check_encodable`] has checked its lengths.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let (kind, src) = self.source_bytes();
        out.push(kind);
        out.push(self.readonly as u8 | (self.nocopy as u8) << 1);
        for b in [src, self.target.as_bytes()] {
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
            // A host path is any bytes, as encode wrote them.
            1 => MountSource::Bind(PathBuf::from(std::ffi::OsString::from_vec(src))),
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
