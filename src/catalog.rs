//! The catalog: the store's few mutable names, kept in one B-tree like git's refs.
//! Keys: `l`+id → layer record, `c`+id → container record, `nl`+name / `nc`+name → id,
//! `v`+name → volume record, `b`+hash(parent, step) → layer id (the build cache).
//! Everything else in the store is an immutable record reached from here.

use crate::error::{Error, Result};
use crate::mount::Mount;
use std::fmt;

/// A layer's or container's identity: 16 bytes, shown as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub [u8; 16]);

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}

impl Id {
    pub(crate) fn from_slice(b: &[u8]) -> Result<Id> {
        Ok(Id(b
            .try_into()
            .map_err(|_| Error::corrupt("catalog id of wrong length"))?))
    }

    /// A fresh id: unique within a store and, in practice, across stores.
    pub(crate) fn fresh(generation: u64, counter: u64) -> Id {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut h = blake3::Hasher::new();
        h.update(b"lstore id");
        h.update(&generation.to_le_bytes());
        h.update(&counter.to_le_bytes());
        h.update(&nanos.to_le_bytes());
        h.update(&std::process::id().to_le_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        Id(id)
    }
}

pub(crate) const LAYER: u8 = b'l';
pub(crate) const CONTAINER: u8 = b'c';

pub(crate) fn key(kind: u8, id: &Id) -> Vec<u8> {
    let mut k = vec![kind];
    k.extend_from_slice(&id.0);
    k
}

pub(crate) fn name_key(kind: u8, name: &str) -> Vec<u8> {
    let mut k = vec![b'n', kind];
    k.extend_from_slice(name.as_bytes());
    k
}

/// A read-only layer as the catalog records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    pub id: Id,
    pub name: Option<String>,
    pub parent: Option<Id>,
    /// Root of the layer's tree (0 when empty).
    pub root: u64,
    pub keys: u64,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_ns: i64,
}

/// A container (writable layer on an image) as the catalog records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: Id,
    pub name: Option<String>,
    pub image: Id,
    /// Root of the container's tree at the last store commit.
    pub root: u64,
    pub keys: u64,
    pub created_ns: i64,
    /// Volumes and bind mounts, in the order given.
    pub mounts: Vec<Mount>,
}

/// A named volume: a writable tree of its own, outside every layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    pub root: u64,
    pub keys: u64,
    pub created_ns: i64,
}

pub(crate) const VOLUME: u8 = b'v';
pub(crate) const BUILD: u8 = b'b';

pub(crate) fn volume_key(name: &str) -> Vec<u8> {
    let mut k = vec![VOLUME];
    k.extend_from_slice(name.as_bytes());
    k
}

/// Build-cache entry of (parent, step): `b` + blake3(parent id or nothing, step key).
pub(crate) fn build_key(parent: Option<Id>, step: &[u8]) -> Vec<u8> {
    let mut h = blake3::Hasher::new();
    h.update(b"lstore build step");
    match parent {
        Some(p) => h.update(&[1]).update(&p.0),
        None => h.update(&[0]),
    };
    h.update(&(step.len() as u64).to_le_bytes()).update(step);
    let mut k = vec![BUILD];
    k.extend_from_slice(h.finalize().as_bytes());
    k
}

impl VolumeInfo {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_VERSION];
        out.extend_from_slice(&self.root.to_le_bytes());
        out.extend_from_slice(&self.keys.to_le_bytes());
        out.extend_from_slice(&self.created_ns.to_le_bytes());
        out
    }

    pub(crate) fn decode(name: &str, b: &[u8]) -> Result<VolumeInfo> {
        let mut r = Reader { b };
        if r.take(1)?[0] != RECORD_VERSION {
            return Err(Error::corrupt("volume record of unknown version"));
        }
        Ok(VolumeInfo {
            name: name.to_string(),
            root: r.u64()?,
            keys: r.u64()?,
            created_ns: r.u64()? as i64,
        })
    }
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(Error::corrupt("catalog record is truncated"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn id(&mut self) -> Result<Option<Id>> {
        let b = self.take(17)?;
        Ok((b[0] == 1).then(|| Id(b[1..].try_into().unwrap())))
    }
    fn name(&mut self) -> Result<Option<String>> {
        let n = u16::from_le_bytes(self.take(2)?.try_into().unwrap()) as usize;
        if n == 0 {
            return Ok(None);
        }
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| Error::corrupt("catalog name is not UTF-8"))?;
        Ok(Some(s.to_string()))
    }
}

fn put_id(out: &mut Vec<u8>, id: Option<Id>) {
    out.push(id.is_some() as u8);
    out.extend_from_slice(&id.map_or([0; 16], |i| i.0));
}

fn put_name(out: &mut Vec<u8>, name: &Option<String>) {
    let n = name.as_deref().unwrap_or("");
    out.extend_from_slice(&(n.len() as u16).to_le_bytes());
    out.extend_from_slice(n.as_bytes());
}

const RECORD_VERSION: u8 = 1;

impl LayerInfo {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_VERSION];
        out.extend_from_slice(&self.root.to_le_bytes());
        out.extend_from_slice(&self.keys.to_le_bytes());
        out.extend_from_slice(&self.created_ns.to_le_bytes());
        put_id(&mut out, self.parent);
        put_name(&mut out, &self.name);
        out
    }

    pub(crate) fn decode(id: Id, b: &[u8]) -> Result<LayerInfo> {
        let mut r = Reader { b };
        if r.take(1)?[0] != RECORD_VERSION {
            return Err(Error::corrupt("layer record of unknown version"));
        }
        Ok(LayerInfo {
            id,
            root: r.u64()?,
            keys: r.u64()?,
            created_ns: r.u64()? as i64,
            parent: r.id()?,
            name: r.name()?,
        })
    }
}

impl ContainerInfo {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_VERSION];
        out.extend_from_slice(&self.root.to_le_bytes());
        out.extend_from_slice(&self.keys.to_le_bytes());
        out.extend_from_slice(&self.created_ns.to_le_bytes());
        put_id(&mut out, Some(self.image));
        put_name(&mut out, &self.name);
        out.extend_from_slice(&(self.mounts.len() as u16).to_le_bytes());
        for m in &self.mounts {
            m.encode(&mut out);
        }
        out
    }

    pub(crate) fn decode(id: Id, b: &[u8]) -> Result<ContainerInfo> {
        let mut r = Reader { b };
        if r.take(1)?[0] != RECORD_VERSION {
            return Err(Error::corrupt("container record of unknown version"));
        }
        let root = r.u64()?;
        let keys = r.u64()?;
        let created_ns = r.u64()? as i64;
        let image = r
            .id()?
            .ok_or_else(|| Error::corrupt("container record without image"))?;
        let name = r.name()?;
        let n = u16::from_le_bytes(r.take(2)?.try_into().unwrap());
        let mut mounts = Vec::with_capacity(n as usize);
        for _ in 0..n {
            mounts.push(Mount::decode(&mut r.b)?);
        }
        Ok(ContainerInfo {
            id,
            name,
            image,
            root,
            keys,
            created_ns,
            mounts,
        })
    }
}

/// The record `v` under catalog key `k` (a layer, container or volume) pointing at another
/// tree root, and with another key count when given.
pub(crate) fn with_tree(k: &[u8], v: &[u8], root: u64, keys: Option<u64>) -> Result<Vec<u8>> {
    let id = || Id::from_slice(&k[1..]);
    Ok(match k.first() {
        Some(&LAYER) => {
            let mut i = LayerInfo::decode(id()?, v)?;
            i.root = root;
            i.keys = keys.unwrap_or(i.keys);
            i.encode()
        }
        Some(&CONTAINER) => {
            let mut i = ContainerInfo::decode(id()?, v)?;
            i.root = root;
            i.keys = keys.unwrap_or(i.keys);
            i.encode()
        }
        Some(&VOLUME) => {
            let mut i = VolumeInfo::decode("", v)?;
            i.root = root;
            i.keys = keys.unwrap_or(i.keys);
            i.encode()
        }
        _ => return Err(Error::corrupt("catalog entry names no tree")),
    })
}

/// Checks a volume name as Docker does: a letter or digit, then letters, digits or `_.-`.
pub fn check_volume_name(name: &str) -> Result<()> {
    let ok = name.len() <= 128
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "volume name '{name}': use a letter or digit, then letters, digits or _.- (a bind mount needs an absolute path)"
        )));
    }
    Ok(())
}

/// Checks a user-given name: 1-128 bytes of letters, digits, `_.-:/`, not all hex.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-:/".contains(&b));
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "name '{name}': use 1-128 letters, digits or _.-:/"
        )));
    }
    Ok(())
}
