//! `salvage`: copies every layer, container and volume that can still be read out of a
//! damaged store into a new one, key by key, and lists what could not be saved. A damaged
//! tree node loses only the keys below it; a damaged chunk loses only the values using it.

use crate::error::{Error, Result};
use crate::format::catalog::Id;
use crate::format::mount::{Mount, MountSource};
use crate::io::Source;
use crate::store::mount::route;
use crate::store::{Layer, Options, Store};
use crate::tree::btree::load_view;
use crate::tree::worktree::WorkTree;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// What salvage saved and lost.
#[derive(Clone, Debug, Default)]
pub struct SalvageReport {
    /// Trees copied whole: "layer NAME (old id -> new id)", ...
    pub saved: Vec<String>,
    /// What could not be copied: trees, subtrees and keys, with why.
    pub lost: Vec<String>,
}

/// Every key reachable below `root`; a node that cannot be read is reported and skipped.
fn keys_of<S: Source + ?Sized>(src: &S, root: u64, lost: &mut Vec<String>, what: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![(root, 0u32)];
    while let Some((addr, depth)) = stack.pop() {
        if addr == 0 {
            continue;
        }
        let view = match load_view(src, addr) {
            Ok(v) if depth <= 64 => v,
            Ok(_) => {
                lost.push(format!("{what}: tree deeper than 64 levels at {addr:#x}"));
                continue;
            }
            Err(e) => {
                lost.push(format!("{what}: keys below tree node {addr:#x}: {e}"));
                continue;
            }
        };
        for i in (0..view.len()).rev() {
            match (view.is_leaf(), view.key(i), view.child(i)) {
                (true, Ok(k), _) => out.push(k.to_vec()),
                (false, _, Ok(c)) => stack.push((c, depth + 1)),
                _ => lost.push(format!("{what}: entry {i} of node {addr:#x} is unreadable")),
            }
        }
    }
    out.sort();
    out
}

/// Readable (key, value) pairs of a tree, with the keys that could not be read.
fn contents<S: Source + ?Sized>(src: &S, root: u64, what: &str, lost: &mut Vec<String>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let tree = WorkTree::at(root, 0);
    let mut out = BTreeMap::new();
    for k in keys_of(src, root, lost, what) {
        match tree.get(src, &k) {
            Ok(Some(v)) => {
                out.insert(k, v);
            }
            Ok(None) => lost.push(format!("{what}: key {} vanished", String::from_utf8_lossy(&k))),
            Err(e) => lost.push(format!("{what}: key {}: {e}", String::from_utf8_lossy(&k))),
        }
    }
    out
}

/// Layers by their old id: the new layer, and what the old one held.
type Copied = (HashMap<Id, Layer>, HashMap<Id, BTreeMap<Vec<u8>, Vec<u8>>>);

/// Copies what can be read of `src` into a new store at `dst`.
pub fn salvage(src: &Path, dst: &Path) -> Result<SalvageReport> {
    let old = Store::open_read_only(src)?;
    let options = Options {
        block_size: old.block_size(),
        compression: old.compression(),
        ..Default::default()
    };
    let new = Store::create(dst, options)?;
    let mut report = SalvageReport::default();
    let (by_id, contents_of) = copy_layers(&old, &new, &mut report)?;
    copy_volumes(&old, &new, &mut report)?;
    copy_containers(&old, &new, &mut report, &by_id, &contents_of)?;
    new.commit()?;
    Ok(report)
}

/// Copies the layers, parents before children, so each is built on its new parent.
fn copy_layers(old: &Store, new: &Store, report: &mut SalvageReport) -> Result<Copied> {
    let segs = old.segments();
    let layers = old.layers()?;
    // Parents before children, so each new layer is built on its new parent.
    let mut by_id: HashMap<Id, Layer> = HashMap::new();
    let mut pending: Vec<_> = layers.clone();
    let mut contents_of: HashMap<Id, BTreeMap<Vec<u8>, Vec<u8>>> = HashMap::new();
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
            let want = contents(segs, l.root, &what, &mut lost);
            let parent = l.parent.and_then(|p| by_id.get(&p));
            let base = l.parent.and_then(|p| contents_of.get(&p));
            let mut b = new.new_layer(parent)?;
            copy_diff(&want, base, |k, v| match v {
                Some(v) => b.put(k, v),
                None => b.delete(k).map(|_| ()),
            })?;
            let layer = b.finish(l.name.as_deref())?;
            note(report, &what, l.id, layer.id(), lost);
            contents_of.insert(l.id, want);
            by_id.insert(l.id, layer);
        }
        if rest.len() == before {
            return Err(Error::corrupt("layer parents form a cycle"));
        }
        pending = rest;
    }
    Ok((by_id, contents_of))
}

/// Copies the volumes, through a short-lived container on an empty scratch layer.
fn copy_volumes(old: &Store, new: &Store, report: &mut SalvageReport) -> Result<()> {
    let segs = old.segments();
    let volumes = old.volumes()?;
    let scratch = if volumes.is_empty() {
        None
    } else {
        Some(new.new_layer(None)?.finish(None)?)
    };
    for v in volumes {
        let what = format!("volume {}", v.name);
        let mut lost = Vec::new();
        let want = contents(segs, v.root, &what, &mut lost);
        new.create_volume(&v.name)?;
        let c = new.create_container_with(
            scratch.as_ref().expect("made when there are volumes"),
            None,
            &[Mount {
                source: MountSource::Volume(v.name.clone()),
                target: "v".into(),
                readonly: false,
                nocopy: false,
            }],
        )?;
        for (k, val) in &want {
            let mut key = b"v/".to_vec();
            key.extend_from_slice(k);
            c.put(&key, val)?;
        }
        new.remove_container(&c.id().to_string())?;
        if lost.is_empty() {
            report.saved.push(what);
        } else {
            report.lost.extend(lost);
        }
    }
    if let Some(s) = scratch {
        new.remove_layer(&s.id().to_string())?;
    }
    Ok(())
}

/// Copies the containers whose image survived, as changes on their new image.
fn copy_containers(
    old: &Store,
    new: &Store,
    report: &mut SalvageReport,
    by_id: &HashMap<Id, Layer>,
    contents_of: &HashMap<Id, BTreeMap<Vec<u8>, Vec<u8>>>,
) -> Result<()> {
    let segs = old.segments();
    for c in old.containers()? {
        let what = format!("container {}", c.name.clone().unwrap_or_else(|| c.id.to_string()));
        let Some(image) = by_id.get(&c.image) else {
            report.lost.push(format!("{what}: its image layer {} is gone", c.image));
            continue;
        };
        let mut lost = Vec::new();
        let want = contents(segs, c.root, &what, &mut lost);
        let nc = new.create_container_with(image, c.name.as_deref(), &c.mounts)?;
        // Writes under a mount would go to the volume: the container's own keys there are
        // the image's, which the new container shares already.
        let own = |k: &[u8]| route(&c.mounts, k).is_none();
        let want: BTreeMap<_, _> = want.into_iter().filter(|(k, _)| own(k)).collect();
        let base: BTreeMap<_, _> = contents_of
            .get(&c.image)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| own(k))
            .collect();
        copy_diff(&want, Some(&base), |k, v| match v {
            Some(v) => nc.put(k, v),
            None => nc.delete(k).map(|_| ()),
        })?;
        note(report, &what, c.id, nc.id(), lost);
    }
    Ok(())
}

/// Makes a tree that starts as `base` hold exactly `want`: `set(key, Some(value))` puts,
/// `set(key, None)` deletes.
fn copy_diff(
    want: &BTreeMap<Vec<u8>, Vec<u8>>,
    base: Option<&BTreeMap<Vec<u8>, Vec<u8>>>,
    mut set: impl FnMut(&[u8], Option<&[u8]>) -> Result<()>,
) -> Result<()> {
    if let Some(base) = base {
        for k in base.keys().filter(|k| !want.contains_key(*k)) {
            set(k, None)?;
        }
    }
    for (k, v) in want {
        if base.and_then(|b| b.get(k)) != Some(v) {
            set(k, Some(v))?;
        }
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
