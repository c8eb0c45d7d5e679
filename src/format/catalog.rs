//! The catalog: the store's few mutable names, kept in one B-tree like git's refs.
//! Keys: `l`+id → layer record, `c`+id → container record, `nl`+name / `nc`+name → id,
//! `v`+name → volume record, `b`+hash(parent, step) → layer id (the build cache).
//! Everything else in the store is an immutable record reached from here.

use super::le::{Cursor, U64};
use super::mount::Mount;
use crate::error::{Error, Result};
use bytemuck::{Pod, Zeroable};
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
/// An image: `'i'` + its id (the sha256 of its config's bytes).
pub(crate) const IMAGE: u8 = b'i';
/// A layer's annotations: a tree of named blobs kept with the layer (see `store/annotation.rs`).
pub(crate) const ANNOTATIONS: u8 = b'a';

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

/// What a catalog key names, for messages: "layer 3f2a…", "the name 'web'", "volume 'data'".
pub(crate) fn describe_key(k: &[u8]) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match k {
        [LAYER, id @ ..] if id.len() == 16 => format!(
            "layer {}",
            Id::from_slice(id).map_or_else(|_| "?".into(), |i| i.to_string())
        ),
        [CONTAINER, id @ ..] if id.len() == 16 => {
            format!(
                "container {}",
                Id::from_slice(id).map_or_else(|_| "?".into(), |i| i.to_string())
            )
        }
        [IMAGE, id @ ..] if id.len() == 32 => format!(
            "image {}",
            id.try_into()
                .map_or_else(|_| "?".into(), crate::format::digest::sha256_string)
        ),
        [ANNOTATIONS, id @ ..] if id.len() == 16 => format!(
            "the annotations of layer {}",
            Id::from_slice(id).map_or_else(|_| "?".into(), |i| i.to_string())
        ),
        [b'n', _, name @ ..] => format!("the name '{}'", text(name)),
        [VOLUME, name @ ..] => format!("volume '{}'", text(name)),
        [BUILD, ..] => "a build-cache entry".into(),
        _ => "a catalog entry".into(),
    }
}

/// A read-only layer as the catalog records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    pub id: Id,
    pub name: Option<String>,
    pub parent: Option<Id>,
    /// Root of the layer's tree (0 when empty): an address inside the file, not for users.
    pub(crate) root: u64,
    /// Entries in the layer's tree (files, folders, links, and the tree's own records).
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
    pub(crate) root: u64,
    /// Entries in the container's tree at the last store commit.
    pub keys: u64,
    pub created_ns: i64,
    /// Volumes and bind mounts, in the order given.
    pub mounts: Vec<Mount>,
    /// What its creator keeps with it, at most 65535 bytes (`lstore run`: the image and the
    /// process, as JSON, for `lstore start`); empty when nothing.
    pub config: Vec<u8>,
}

/// An image as the catalog records it: its config's bytes (whose sha256 is its id) and the
/// top layer of its file system; tags name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The sha256 of the config's bytes: the image id Docker shows.
    pub id: [u8; 32],
    /// The top layer of the image's file system (none for an image without layers).
    pub layer: Option<Id>,
    /// The tree holding the config's bytes under `config`.
    pub(crate) root: u64,
    pub(crate) keys: u64,
    pub created_ns: i64,
    /// Its tags, in order.
    pub tags: Vec<String>,
}

pub(crate) fn image_key(id: &[u8; 32]) -> Vec<u8> {
    let mut k = vec![IMAGE];
    k.extend_from_slice(id);
    k
}

impl ImageInfo {
    /// The id as `sha256:` and 64 hex digits.
    pub fn id_string(&self) -> String {
        crate::format::digest::sha256_string(&self.id)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = bytemuck::bytes_of(&Head::of(self.root, self.keys, self.created_ns)).to_vec();
        put_id(&mut out, self.layer);
        out.extend_from_slice(&(self.tags.len() as u16).to_le_bytes());
        for t in &self.tags {
            put_name(&mut out, &Some(t.clone()));
        }
        out
    }

    pub(crate) fn decode(id: [u8; 32], b: &[u8]) -> Result<ImageInfo> {
        let mut c = Cursor::new(b, "image record");
        let head = Head::read(&mut c)?;
        let layer = read_id(&mut c)?;
        let n = c.u16()?;
        let mut tags = Vec::with_capacity(usize::from(n).min(b.len()));
        for _ in 0..n {
            tags.push(read_name(&mut c)?.ok_or_else(|| Error::corrupt("an empty image tag"))?);
        }
        Ok(ImageInfo {
            id,
            layer,
            root: head.root.get(),
            keys: head.keys.get(),
            created_ns: head.created_ns.get() as i64,
            tags,
        })
    }
}

/// A named volume: a writable tree of its own, outside every layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    pub(crate) root: u64,
    /// Entries in the volume's tree at the last store commit.
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
        bytemuck::bytes_of(&Head::of(self.root, self.keys, self.created_ns)).to_vec()
    }

    pub(crate) fn decode(name: &str, b: &[u8]) -> Result<VolumeInfo> {
        let mut c = Cursor::new(b, "volume record");
        let head = Head::read(&mut c)?;
        Ok(VolumeInfo {
            name: name.to_string(),
            root: head.root.get(),
            keys: head.keys.get(),
            created_ns: head.created_ns.get() as i64,
        })
    }
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

const RECORD_VERSION: u8 = 1;

/// The front every catalog record shares: version, tree root, key count, creation time.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Head {
    version: u8,
    root: U64,
    keys: U64,
    created_ns: U64,
}

impl Head {
    fn of(root: u64, keys: u64, created_ns: i64) -> Head {
        Head {
            version: RECORD_VERSION,
            root: U64::new(root),
            keys: U64::new(keys),
            created_ns: U64::new(created_ns as u64),
        }
    }

    fn read(c: &mut Cursor) -> Result<Head> {
        let head: Head = *c.fixed()?;
        if head.version != RECORD_VERSION {
            return Err(c.malformed());
        }
        Ok(head)
    }
}

/// An optional id: a presence byte and 16 bytes (zero when absent).
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct OptId {
    present: u8,
    id: [u8; 16],
}

fn put_id(out: &mut Vec<u8>, id: Option<Id>) {
    let raw = OptId {
        present: id.is_some() as u8,
        id: id.map_or([0; 16], |i| i.0),
    };
    out.extend_from_slice(bytemuck::bytes_of(&raw));
}

fn read_id(c: &mut Cursor) -> Result<Option<Id>> {
    let raw: &OptId = c.fixed()?;
    Ok((raw.present == 1).then_some(Id(raw.id)))
}

fn put_name(out: &mut Vec<u8>, name: &Option<String>) {
    let n = name.as_deref().unwrap_or("");
    out.extend_from_slice(&(n.len() as u16).to_le_bytes());
    out.extend_from_slice(n.as_bytes());
}

fn read_name(c: &mut Cursor) -> Result<Option<String>> {
    let n = c.bytes16()?;
    if n.is_empty() {
        return Ok(None);
    }
    let s = std::str::from_utf8(n).map_err(|_| Error::corrupt("catalog name is not UTF-8"))?;
    Ok(Some(s.to_string()))
}

impl LayerInfo {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = bytemuck::bytes_of(&Head::of(self.root, self.keys, self.created_ns)).to_vec();
        put_id(&mut out, self.parent);
        put_name(&mut out, &self.name);
        out
    }

    pub(crate) fn decode(id: Id, b: &[u8]) -> Result<LayerInfo> {
        let mut c = Cursor::new(b, "layer record");
        let head = Head::read(&mut c)?;
        Ok(LayerInfo {
            id,
            root: head.root.get(),
            keys: head.keys.get(),
            created_ns: head.created_ns.get() as i64,
            parent: read_id(&mut c)?,
            name: read_name(&mut c)?,
        })
    }
}

impl ContainerInfo {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = bytemuck::bytes_of(&Head::of(self.root, self.keys, self.created_ns)).to_vec();
        put_id(&mut out, Some(self.image));
        put_name(&mut out, &self.name);
        out.extend_from_slice(&(self.mounts.len() as u16).to_le_bytes());
        for m in &self.mounts {
            m.encode(&mut out);
        }
        // `create_container_with_config` refused a longer one.
        out.extend_from_slice(&(self.config.len().min(u16::MAX as usize) as u16).to_le_bytes());
        out.extend_from_slice(&self.config[..self.config.len().min(u16::MAX as usize)]);
        out
    }

    pub(crate) fn decode(id: Id, b: &[u8]) -> Result<ContainerInfo> {
        let mut c = Cursor::new(b, "container record");
        let head = Head::read(&mut c)?;
        let image = read_id(&mut c)?.ok_or_else(|| Error::corrupt("container record without image"))?;
        let name = read_name(&mut c)?;
        let n = c.u16()?;
        let mut mounts = Vec::with_capacity(n as usize);
        for _ in 0..n {
            mounts.push(Mount::decode(&mut c)?);
        }
        let config = c.bytes16()?.to_vec();
        Ok(ContainerInfo {
            id,
            name,
            image,
            root: head.root.get(),
            keys: head.keys.get(),
            created_ns: head.created_ns.get() as i64,
            mounts,
            config,
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
        Some(&IMAGE) => {
            let id: [u8; 32] = k[1..]
                .try_into()
                .map_err(|_| Error::corrupt("image key of wrong length"))?;
            let mut i = ImageInfo::decode(id, v)?;
            i.root = root;
            i.keys = keys.unwrap_or(i.keys);
            i.encode()
        }
        Some(&VOLUME | &ANNOTATIONS) => {
            let mut i = VolumeInfo::decode("", v)?;
            i.root = root;
            i.keys = keys.unwrap_or(i.keys);
            i.encode()
        }
        _ => return Err(Error::corrupt("catalog entry names no tree")),
    })
}
