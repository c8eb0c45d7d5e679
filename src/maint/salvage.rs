//! `salvage`: copies every layer, container and volume that can still be read out of a
//! damaged store into a new one, key by key, and lists what could not be saved. A damaged
//! tree node loses only the keys below it; a damaged chunk loses only the values using it.
//!
//! Values are copied block by block, holes staying holes, so memory stays bounded whatever
//! the values' sizes. What a layer shares with its parent (the same entry: the same chunks)
//! is not copied again. The new store is built under a temporary name and appears at the
//! destination only when complete.

use crate::error::{Error, Result};
use crate::format::catalog::{
    ContainerInfo, Id, ImageInfo, LayerInfo, VolumeInfo, ANNOTATIONS, CONTAINER, IMAGE, LAYER, VOLUME,
};
use crate::format::mount::{Mount, MountSource};
use crate::format::treekey;
use crate::format::value::{Body, Entry};
use crate::io::Pread;
use crate::store::mount::route;
use crate::store::{Container, Layer, LayerBuilder, Options, Store};
use crate::tree::blockmap;
use crate::tree::btree::{load_view, MAX_DEPTH};
use crate::tree::worktree::PutOptions;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What salvage saved and lost.
#[derive(Clone, Debug, Default)]
pub struct SalvageReport {
    /// Trees copied whole: "layer NAME (old id -> new id)", ...
    pub saved: Vec<String>,
    /// What could not be copied: trees, subtrees and keys, with why.
    pub lost: Vec<String>,
}

/// Encoded entries of a tree, by key.
type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

/// Every readable (key, encoded entry) below `root`; a node that cannot be read is reported
/// and skipped.
fn entries_of(src: &mut Pread, root: u64, lost: &mut Vec<String>, what: &str) -> Entries {
    let mut out = Entries::new();
    let mut stack = vec![(root, 0u32)];
    let mut seen = std::collections::HashSet::new();
    while let Some((addr, depth)) = stack.pop() {
        if addr == 0 {
            continue;
        }
        if !seen.insert(addr) {
            lost.push(format!("{what}: tree node {addr:#x} is reached twice (a cycle?)"));
            continue;
        }
        src.trim();
        let view = match load_view(src, addr) {
            Ok(v) if depth <= MAX_DEPTH => v,
            Ok(_) => {
                lost.push(format!("{what}: tree deeper than {MAX_DEPTH} levels at {addr:#x}"));
                continue;
            }
            Err(e) => {
                lost.push(format!("{what}: keys below tree node {addr:#x}: {e}"));
                continue;
            }
        };
        for i in 0..view.len() {
            match (view.is_leaf(), view.key(i), view.val(i), view.child(i)) {
                (true, Ok(k), Ok(v), _) => {
                    out.insert(k.to_vec(), v.to_vec());
                }
                (false, _, _, Ok(c)) => stack.push((c, depth + 1)),
                _ => lost.push(format!("{what}: entry {i} of node {addr:#x} is unreadable")),
            }
        }
    }
    by_path(out, lost, what)
}

/// Tree entries by path: each name of a hard link gets the file's own entry (the copy keeps
/// the bytes and attributes, not the sharing); inode entries and the counter go.
fn by_path(raw: Entries, lost: &mut Vec<String>, what: &str) -> Entries {
    let mut out = Entries::new();
    for (k, v) in &raw {
        // The root's own entry (the empty path) has no key to copy under.
        let Some(path) = treekey::path_of(k).filter(|p| !p.is_empty()) else {
            continue;
        };
        let entry = match Entry::decode(v) {
            Ok(Entry {
                body: Body::Link(ino), ..
            }) => match raw.get(&treekey::of_inode(ino)).map(|b| Entry::decode(b)) {
                Some(Ok(mut e)) => {
                    if let Some(a) = e.attrs.as_mut() {
                        a.nlink = 1;
                    }
                    e.encode()
                }
                _ => {
                    let name = String::from_utf8_lossy(&path);
                    lost.push(format!(
                        "{what}: key {name}: its hard-linked file (inode {ino}) is unreadable"
                    ));
                    continue;
                }
            },
            _ => v.clone(),
        };
        out.insert(path, entry);
    }
    out
}

/// An error of the store being written, carried through the source walk's callback so that
/// it is told apart from damage in the source.
#[derive(Debug)]
struct SinkError(Error);

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SinkError {}

impl SinkError {
    fn wrap(e: Error) -> Error {
        Error::Io(std::io::Error::other(SinkError(e)))
    }

    /// `Ok` with the copy's own error, or `Err` with the source's damage.
    fn unwrap(e: Error) -> std::result::Result<Error, Error> {
        match e {
            Error::Io(io) if io.get_ref().is_some_and(|r| r.is::<SinkError>()) => {
                let inner = io.into_inner().expect("checked above");
                Ok(inner
                    .downcast::<SinkError>()
                    .map(|b| b.0)
                    .unwrap_or_else(|e| Error::Io(std::io::Error::other(e))))
            }
            e => Err(e),
        }
    }
}

/// Where salvaged values go: a layer being built, or a container (with a key prefix for a
/// volume written through it).
trait Sink {
    fn put(&mut self, key: &[u8], data: &[u8], opts: &PutOptions) -> Result<()>;
    fn write_at(&mut self, key: &[u8], off: u64, data: &[u8]) -> Result<()>;
    fn truncate(&mut self, key: &[u8], len: u64) -> Result<()>;
    fn delete(&mut self, key: &[u8]) -> Result<()>;
}

impl Sink for LayerBuilder {
    fn put(&mut self, key: &[u8], data: &[u8], opts: &PutOptions) -> Result<()> {
        self.put_with(key, data, opts)
    }
    fn write_at(&mut self, key: &[u8], off: u64, data: &[u8]) -> Result<()> {
        LayerBuilder::write_at(self, key, off, data)
    }
    fn truncate(&mut self, key: &[u8], len: u64) -> Result<()> {
        LayerBuilder::truncate(self, key, len)
    }
    fn delete(&mut self, key: &[u8]) -> Result<()> {
        LayerBuilder::delete(self, key).map(|_| ())
    }
}

/// A container, with every key under `prefix`.
struct Under<'c> {
    c: &'c Container,
    prefix: &'static [u8],
}

impl Under<'_> {
    fn key(&self, k: &[u8]) -> Vec<u8> {
        [self.prefix, k].concat()
    }
}

impl Sink for Under<'_> {
    fn put(&mut self, key: &[u8], data: &[u8], opts: &PutOptions) -> Result<()> {
        self.c.put_with(self.key(key), data, opts)
    }
    fn write_at(&mut self, key: &[u8], off: u64, data: &[u8]) -> Result<()> {
        self.c.write_at(self.key(key), off, data)
    }
    fn truncate(&mut self, key: &[u8], len: u64) -> Result<()> {
        self.c.truncate(self.key(key), len)
    }
    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.c.delete(self.key(key)).map(|_| ())
    }
}

/// Copies one value, block by block; a hole is not written. A block that cannot be read is
/// left a hole too, and its offset returned: the rest of the value is worth more than nothing.
fn copy_value(src: &Pread, sink: &mut dyn Sink, key: &[u8], entry: &[u8]) -> Result<Vec<(Option<u64>, Error)>> {
    let e = Entry::decode(entry)?;
    let mut opts = PutOptions {
        attrs: e.attrs.clone(),
        compression: e.compression,
        block_size: None,
    };
    let Body::Blocks { shift, height, root } = e.body else {
        let Body::Inline(data) = e.body else {
            return Err(Error::corrupt("a hard link where a file's entry was expected"));
        };
        return sink
            .put(key, &data, &opts)
            .map(|()| Vec::new())
            .map_err(SinkError::wrap);
    };
    opts.block_size = Some(1 << shift);
    sink.put(key, &[], &opts).map_err(SinkError::wrap)?;
    let mut damaged = Vec::new();
    // Errors reading the source (bad crc, a cut file, a media error) are damage to list;
    // errors writing the copy are the copy's, and end the salvage.
    let walked = blockmap::for_each_block(src, height, root, &mut |idx, ptr| {
        let Some(offset) = idx.checked_mul(1 << shift).filter(|&o| o < e.size) else {
            damaged.push((None, Error::corrupt(format!("block {idx} lies past the value's end"))));
            return Ok(());
        };
        let owned = src.reader().read_owned(ptr.addr);
        let payload = owned.and_then(|o| {
            let rec = o.record();
            ptr.check(&rec.header)?;
            rec.slice(ptr.offset, ptr.len).map(|p| p.into_owned())
        });
        match payload {
            Ok(data) => sink.write_at(key, offset, &data).map_err(SinkError::wrap),
            Err(e) => {
                damaged.push((Some(offset), e));
                Ok(())
            }
        }
    });
    match walked {
        Ok(()) => {}
        Err(e) => match SinkError::unwrap(e) {
            Ok(sink_error) => return Err(sink_error),
            // A block-map node could not be read: the blocks below it are lost.
            Err(source_error) => damaged.push((None, source_error)),
        },
    }
    sink.truncate(key, e.size).map_err(SinkError::wrap)?;
    Ok(damaged)
}

/// Makes `sink`, which starts as the tree `base`, hold `want`: keys gone are deleted, keys
/// whose entry differs are copied, and keys with the same entry (the same chunks) are left
/// as they are. Returns the keys that could not be copied, with why.
fn copy_tree(
    src: &mut Pread,
    sink: &mut dyn Sink,
    want: &Entries,
    base: Option<&Entries>,
    what: &str,
) -> Result<Vec<(Option<Vec<u8>>, String)>> {
    let mut lost = Vec::new();
    for k in base
        .into_iter()
        .flat_map(|b| b.keys())
        .filter(|k| !want.contains_key(*k))
    {
        sink.delete(k)?;
    }
    for (k, entry) in want {
        if base.and_then(|b| b.get(k)) == Some(entry) {
            continue;
        }
        src.trim();
        let name = String::from_utf8_lossy(k);
        match copy_value(src, sink, k, entry) {
            Ok(damaged) => lost.extend(damaged.into_iter().map(|(off, e)| {
                let why = match off {
                    Some(off) => format!("{what}: key {name}: the block at offset {off} is zeros in the copy: {e}"),
                    None => format!("{what}: key {name}: blocks that could not be found are zeros in the copy: {e}"),
                };
                // Kept (in part): children sharing the entry may still count on it.
                (None, why)
            })),
            Err(e) => match SinkError::unwrap(e) {
                Ok(sink_error) => return Err(sink_error),
                Err(e) => {
                    lost.push((Some(k.clone()), format!("{what}: key {name}: {e}")));
                    let _ = sink.delete(k);
                }
            },
        }
    }
    Ok(lost)
}

/// Layers by their old id: the new layer, and the old one's entries.
type Copied = (HashMap<Id, Layer>, HashMap<Id, Entries>);

/// Copies what can be read of `src` into a new store at `dst`. The destination appears only
/// when the copy is complete; on failure nothing is left there.
pub fn salvage(src: &Path, dst: &Path) -> Result<SalvageReport> {
    let old = Store::open_read_only(src)?;
    if dst.symlink_metadata().is_ok() {
        return Err(Error::AlreadyExists(dst.to_path_buf()));
    }
    remove_stale_temps(dst);
    let tmp = temp_beside(dst);
    let result = build(&old, &tmp).map(|(new, mut report)| {
        if let Some(r) = old.inner.recovery.as_ref().filter(|r| r.lost) {
            report.lost.insert(0, format!("the newest commit: {}", r.note));
        }
        (new, report)
    });
    let report = result.and_then(|(new, report)| {
        // A hard link appears atomically and refuses to replace anything made meanwhile; the
        // new store stays open (its lock held) until then, so no other salvage takes it for
        // a killed one's leftovers.
        std::fs::hard_link(&tmp, dst).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists(dst.to_path_buf()),
            _ => Error::file(dst, e),
        })?;
        drop(new);
        Ok(report)
    });
    let _ = std::fs::remove_file(&tmp);
    report.map_err(|e| match e {
        // The temporary name means nothing to the user: name the destination.
        Error::File { path, source } if path == tmp => Error::file(dst, source),
        e => e,
    })
}

/// Removes what a killed salvage into `dst` left behind: its temporary stores, recognised by
/// name and by no process holding their lock (a live salvage always does).
fn remove_stale_temps(dst: &Path) {
    let Some(name) = dst.file_name() else { return };
    let prefix = [name.as_encoded_bytes(), b".salvage-"].concat();
    let folder = dst
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(folder) else { return };
    for e in entries.flatten() {
        let file_name = e.file_name();
        let rest = file_name.as_encoded_bytes().strip_prefix(&prefix[..]);
        if !rest.is_some_and(|r| !r.is_empty() && r.iter().all(u8::is_ascii_digit)) {
            continue;
        }
        // Only an lstore store nobody writes: never a user's file that happens to match.
        let is_store = std::fs::File::open(e.path()).is_ok_and(|f| {
            let mut magic = [0u8; 8];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut magic, 0).is_ok()
                && magic == crate::format::superblock::FILE_MAGIC
        });
        // Nobody writes it: this handle can be the only writer.
        let unheld = || {
            use crate::io::Io;
            crate::io::FileIo::open(&e.path(), true)
                .and_then(|io| io.lock(crate::io::Exclusive::OnlyWriter, std::time::Duration::ZERO))
                .is_ok()
        };
        if is_store && unheld() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A name for the store being built, in the destination's folder.
fn temp_beside(dst: &Path) -> PathBuf {
    let name = dst.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    let mut tmp = name;
    tmp.push(format!(".salvage-{}", std::process::id()));
    dst.with_file_name(tmp)
}

fn build(old: &Store, at: &Path) -> Result<(Store, SalvageReport)> {
    let options = Options {
        block_size: old.block_size(),
        compression: old.compression(),
        ..Default::default()
    };
    let new = Store::create(at, options)?;
    let mut report = SalvageReport::default();
    let mut src = Pread::new(old.segments());
    let catalog = read_catalog(old, &src, &mut report)?;
    let (by_id, entries) = copy_layers(&mut src, &catalog.layers, &new, &mut report)?;
    copy_volumes(&mut src, &catalog.volumes, &new, &mut report)?;
    copy_containers(&mut src, &catalog.containers, &new, &mut report, &by_id, &entries)?;
    new.commit()?;
    Ok((new, report))
}

/// What the old catalog names, read with positioned reads (a file cut under salvage is
/// damage to report, never a SIGBUS); an entry that cannot be decoded is listed as lost.
struct Catalog {
    layers: Vec<LayerInfo>,
    containers: Vec<ContainerInfo>,
    volumes: Vec<VolumeInfo>,
}

fn read_catalog(old: &Store, src: &Pread, report: &mut SalvageReport) -> Result<Catalog> {
    let root = old.lock()?.txn.last_sb.catalog_root;
    let mut out = Catalog {
        layers: Vec::new(),
        containers: Vec::new(),
        volumes: Vec::new(),
    };
    let entries = match crate::maint::gc::catalog_entries(src, root) {
        Ok(e) => e,
        Err(e) => {
            report.lost.push(format!("the catalog: {e}"));
            return Ok(out);
        }
    };
    for (k, v) in entries {
        let id = || Id::from_slice(&k[1..]);
        let decoded = match k.first() {
            Some(&LAYER) => id()
                .and_then(|id| LayerInfo::decode(id, &v))
                .map(|l| out.layers.push(l)),
            Some(&CONTAINER) => id()
                .and_then(|id| ContainerInfo::decode(id, &v))
                .map(|c| out.containers.push(c)),
            Some(&VOLUME) => {
                let name = String::from_utf8_lossy(&k[1..]).into_owned();
                VolumeInfo::decode(&name, &v).map(|vol| out.volumes.push(vol))
            }
            // Not carried over (the layers get new ids), but said so: load the image again,
            // and export-tar builds a layer's changeset from its tree.
            Some(&IMAGE) if k.len() == 33 => {
                let id: [u8; 32] = k[1..].try_into().unwrap_or([0; 32]);
                ImageInfo::decode(id, &v).map(|i| {
                    let tags = if i.tags.is_empty() {
                        "untagged".to_string()
                    } else {
                        i.tags.join(", ")
                    };
                    report.lost.push(format!(
                        "image {} ({tags}): images are not salvaged; its layers are",
                        i.id_string()
                    ))
                })
            }
            Some(&ANNOTATIONS) => id().map(|id| {
                report.lost.push(format!(
                    "the annotations of layer {id} (its layer tar's headers): not salvaged"
                ))
            }),
            _ => Ok(()),
        };
        if let Err(e) = decoded {
            report
                .lost
                .push(format!("catalog entry {}: {e}", String::from_utf8_lossy(&k)));
        }
    }
    Ok(out)
}

/// Copies the layers, parents before children, so each is built on its new parent.
fn copy_layers(src: &mut Pread, layers: &[LayerInfo], new: &Store, report: &mut SalvageReport) -> Result<Copied> {
    let mut by_id: HashMap<Id, Layer> = HashMap::new();
    let mut entries: HashMap<Id, Entries> = HashMap::new();
    let mut pending = layers.to_vec();
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for l in pending {
            let parent_ready = l
                .parent
                .is_none_or(|p| by_id.contains_key(&p) || !layers.iter().any(|x| x.id == p));
            if !parent_ready {
                rest.push(l);
                continue;
            }
            let what = format!("layer {}", l.name.clone().unwrap_or_else(|| l.id.to_string()));
            let mut lost = Vec::new();
            let mut want = entries_of(src, l.root, &mut lost, &what);
            let parent = l.parent.and_then(|p| by_id.get(&p));
            let base = l.parent.and_then(|p| entries.get(&p));
            let mut b = new.new_layer(parent)?;
            for (k, why) in copy_tree(src, &mut b, &want, base, &what)? {
                // Not in the new layer: children that share the entry must not count on it.
                if let Some(k) = k {
                    want.remove(&k);
                }
                lost.push(why);
            }
            let layer = b.finish(l.name.as_deref())?;
            note(report, &what, l.id, layer.id(), lost);
            entries.insert(l.id, want);
            by_id.insert(l.id, layer);
        }
        if rest.len() == before {
            return Err(Error::corrupt("layer parents form a cycle"));
        }
        pending = rest;
    }
    Ok((by_id, entries))
}

/// Copies the volumes, through a short-lived container on an empty scratch layer.
fn copy_volumes(src: &mut Pread, volumes: &[VolumeInfo], new: &Store, report: &mut SalvageReport) -> Result<()> {
    if volumes.is_empty() {
        return Ok(());
    }
    let scratch = new.new_layer(None)?.finish(None)?;
    for v in volumes {
        let what = format!("volume {}", v.name);
        let mut lost = Vec::new();
        let want = entries_of(src, v.root, &mut lost, &what);
        new.create_volume(&v.name)?;
        let mount = Mount {
            source: MountSource::Volume(v.name.clone()),
            target: "v".into(),
            readonly: false,
            nocopy: true,
        };
        let c = new.create_container_with(&scratch, None, &[mount])?;
        let mut sink = Under { c: &c, prefix: b"v/" };
        lost.extend(copy_tree(src, &mut sink, &want, None, &what)?.into_iter().map(|l| l.1));
        new.remove_container(&c.id().to_string())?;
        if lost.is_empty() {
            report.saved.push(what);
        } else {
            report.lost.extend(lost);
        }
    }
    new.remove_layer(&scratch.id().to_string())
}

/// Copies the containers whose image survived, as changes on their new image.
fn copy_containers(
    src: &mut Pread,
    containers: &[ContainerInfo],
    new: &Store,
    report: &mut SalvageReport,
    by_id: &HashMap<Id, Layer>,
    entries: &HashMap<Id, Entries>,
) -> Result<()> {
    for c in containers {
        let what = format!("container {}", c.name.clone().unwrap_or_else(|| c.id.to_string()));
        let Some(image) = by_id.get(&c.image) else {
            report.lost.push(format!("{what}: its image layer {} is gone", c.image));
            continue;
        };
        let mut lost = Vec::new();
        let want = entries_of(src, c.root, &mut lost, &what);
        let nc = new.create_container_with_config(image, c.name.as_deref(), &c.mounts, &c.config)?;
        // Keys under a mount belong to the volume (copied above) or the host; the
        // container's own keys there are the image's, which the new container shares.
        let own = |k: &Vec<u8>| route(&c.mounts, k).is_none();
        let want: Entries = want.into_iter().filter(|(k, _)| own(k)).collect();
        let base: Entries = (entries.get(&c.image).into_iter().flatten())
            .filter(|(k, _)| own(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut sink = Under { c: &nc, prefix: b"" };
        lost.extend(
            copy_tree(src, &mut sink, &want, Some(&base), &what)?
                .into_iter()
                .map(|l| l.1),
        );
        note(report, &what, c.id, nc.id(), lost);
    }
    Ok(())
}

fn note(report: &mut SalvageReport, what: &str, old: Id, new: Id, lost: Vec<String>) {
    if lost.is_empty() {
        report.saved.push(format!("{what} ({old} -> {new})"));
    } else {
        report.lost.extend(lost);
        report.lost.push(format!("{what} was saved in part as {new}"));
    }
}
