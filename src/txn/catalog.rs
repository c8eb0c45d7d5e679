//! The catalog as one writer changes it: the B-tree of its base commit with this process's
//! changes on top, and the log of those changes, so that a commit can replay them on the
//! newer catalog another writer process published meanwhile (a rebase, as git's).

use crate::error::{Error, Result};
use crate::format::catalog::{self, ContainerInfo, Id, ImageInfo, LayerInfo, BUILD, CONTAINER, IMAGE, LAYER, VOLUME};
use crate::format::mount::MountSource;
use crate::format::names;
use crate::io::{Source, Writer};
use crate::tree::btree::{Tree, Visitor};

pub(crate) struct Catalog {
    tree: Tree,
    /// Every change since the base commit, in order: a key and its new value (or removal).
    log: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Catalog {
    pub fn at(root: u64) -> Catalog {
        Catalog {
            tree: Tree::at(root),
            log: Vec::new(),
        }
    }

    pub fn get<'a, S: Source + ?Sized>(&'a self, src: &'a S, key: &[u8]) -> Result<Option<&'a [u8]>> {
        self.tree.get(src, key)
    }

    pub fn scan<S: Source + ?Sized>(&self, src: &S, from: &[u8], f: &mut Visitor) -> Result<()> {
        self.tree.scan(src, from, f)
    }

    pub fn insert<S: Source + ?Sized>(&mut self, src: &S, key: &[u8], val: Vec<u8>) -> Result<Option<Vec<u8>>> {
        self.log.push((key.to_vec(), Some(val.clone())));
        self.tree.insert(src, key, val)
    }

    pub fn remove<S: Source + ?Sized>(&mut self, src: &S, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.log.push((key.to_vec(), None));
        self.tree.remove(src, key)
    }

    pub fn is_dirty(&self) -> bool {
        self.tree.is_dirty()
    }

    /// Writes the changed nodes; the log is done with once the commit is published.
    pub fn flush(&mut self, w: &mut Writer) -> Result<u64> {
        self.tree.flush(w)
    }

    /// Changes logged so far.
    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    /// The commit that wrote the first `n` logged changes is published: they are in the base
    /// now. Changes logged since (by other threads while it synced) stay to be replayed.
    pub fn published(&mut self, n: usize) {
        self.log.drain(..n.min(self.log.len()));
    }

    /// Replays this process's changes on `newer` (another writer's catalog, built on `base`
    /// like this one). A key the other writer changed too, a layer or container whose parent
    /// is gone, or a removed layer that something now builds on is a conflict: the
    /// other writer's commit stands, and this one is refused.
    ///
    /// On an error nothing changes. A build-cache entry both writers made keeps the other's
    /// (either layer is the step's result).
    pub fn rebase<S: Source + ?Sized>(&mut self, src: &S, base: u64, newer: u64) -> Result<()> {
        let (before, after) = (Tree::at(base), Tree::at(newer));
        let mut tree = Tree::at(newer);
        let mut kept = Vec::with_capacity(self.log.len());
        for (key, val) in &self.log {
            if changed_by_other(src, &before, &after, key)? {
                if key.first() == Some(&BUILD) {
                    continue;
                }
                return Err(conflict(key));
            }
            kept.push((key.clone(), val.clone()));
            match val {
                Some(v) => tree.insert(src, key, v.clone())?,
                None => tree.remove(src, key)?,
            };
        }
        check_references(src, &tree, &kept)?;
        // A skipped entry leaves the log too: a later rebase must not write it over theirs.
        self.tree = tree;
        self.log = kept;
        Ok(())
    }
}

/// Whether the other writer changed `key` (for a name, the name in any kind and its aliases:
/// layers, containers and image tags share one namespace, and `web` is `web:latest`).
fn changed_by_other<S: Source + ?Sized>(src: &S, before: &Tree, after: &Tree, key: &[u8]) -> Result<bool> {
    let mut keys = vec![key.to_vec()];
    if let [b'n', _, name @ ..] = key {
        for alias in names::aliases(&String::from_utf8_lossy(name)) {
            for kind in [LAYER, CONTAINER, IMAGE] {
                keys.push([&[b'n', kind][..], alias.as_bytes()].concat());
            }
        }
    }
    for k in &keys {
        if before.get(src, k)? != after.get(src, k)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// After a rebase onto `tree`: every layer and container the log added still has its parent
/// or image and its volumes, and nothing builds on or mounts what the log removed.
fn check_references<S: Source + ?Sized>(src: &S, tree: &Tree, log: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
    for (key, val) in log {
        if tree.get(src, key)?.is_some() != val.is_some() {
            continue; // a later entry of the log changed it again
        }
        let removed_volume = key.first() == Some(&VOLUME) && val.is_none();
        if removed_volume && used_by(src, tree, |_, c| mounts_volume(c, &key[1..]))? {
            return Err(conflict(key));
        }
        // An image added needs its top layer.
        if let (Some(&IMAGE), Some(v), 33) = (key.first(), val, key.len()) {
            let top = ImageInfo::decode([0; 32], v)?.layer;
            if let Some(t) = top {
                if tree.get(src, &catalog::key(LAYER, &t))?.is_none() {
                    return Err(conflict(key));
                }
            }
            continue;
        }
        let Some(id) = (key.len() == 17).then(|| Id::from_slice(&key[1..])).transpose()? else {
            continue;
        };
        let needs = match (key[0], val) {
            (LAYER, Some(v)) => LayerInfo::decode(id, v)?
                .parent
                .map(|p| catalog::key(LAYER, &p))
                .into_iter()
                .collect(),
            (CONTAINER, Some(v)) => {
                let c = ContainerInfo::decode(id, v)?;
                let vols = c.mounts.iter().filter_map(|m| match &m.source {
                    MountSource::Volume(name) => Some(catalog::volume_key(name)),
                    MountSource::Bind(_) => None,
                });
                std::iter::once(catalog::key(LAYER, &c.image)).chain(vols).collect()
            }
            (LAYER, None) if used_by(src, tree, |parent, _| parent == Some(id))? || image_on(src, tree, id)? => {
                return Err(conflict(key))
            }
            _ => Vec::new(),
        };
        for k in needs {
            if tree.get(src, &k)?.is_none() {
                return Err(conflict(key));
            }
        }
    }
    Ok(())
}

fn mounts_volume(c: Option<&ContainerInfo>, name: &[u8]) -> bool {
    c.is_some_and(|c| {
        c.mounts
            .iter()
            .any(|m| matches!(&m.source, MountSource::Volume(v) if v.as_bytes() == name))
    })
}

/// Whether any layer or container in `tree` matches: `f(its parent or image, the container)`.
fn used_by<S: Source + ?Sized>(
    src: &S,
    tree: &Tree,
    f: impl Fn(Option<Id>, Option<&ContainerInfo>) -> bool,
) -> Result<bool> {
    let mut found = false;
    let mut err = None;
    tree.scan(src, &[], &mut |k, v| {
        if k.len() == 17 && (k[0] == LAYER || k[0] == CONTAINER) {
            let hit = Id::from_slice(&k[1..]).and_then(|kid| {
                Ok(if k[0] == LAYER {
                    f(LayerInfo::decode(kid, v)?.parent, None)
                } else {
                    let c = ContainerInfo::decode(kid, v)?;
                    f(Some(c.image), Some(&c))
                })
            });
            match hit {
                Ok(h) => found |= h,
                Err(e) => err = Some(e),
            }
        }
        Ok(!found && err.is_none())
    })?;
    err.map_or(Ok(found), Err)
}

/// Whether an image in `tree` has layer `id` as its top.
fn image_on<S: Source + ?Sized>(src: &S, tree: &Tree, id: Id) -> Result<bool> {
    let mut found = false;
    let mut err = None;
    tree.scan(src, &[IMAGE], &mut |k, v| {
        if k.first() != Some(&IMAGE) {
            return Ok(false);
        }
        if k.len() == 33 {
            match ImageInfo::decode([0; 32], v) {
                Ok(i) => found |= i.layer == Some(id),
                Err(e) => err = Some(e),
            }
        }
        Ok(!found && err.is_none())
    })?;
    err.map_or(Ok(found), Err)
}

fn conflict(key: &[u8]) -> Error {
    Error::InUse(format!(
        "another process committed a change to {} first; this commit is refused and its changes are dropped (reopen the store, or run the command again)",
        catalog::describe_key(key)
    ))
}
