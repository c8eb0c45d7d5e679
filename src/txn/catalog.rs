//! The catalog as one writer changes it: the B-tree of its base commit with this process's
//! changes on top, and the log of those changes, so that a commit can replay them on the
//! newer catalog another writer process published meanwhile (a rebase, as git's).

use crate::error::{Error, Result};
use crate::format::catalog::{self, ContainerInfo, Id, LayerInfo, CONTAINER, LAYER};
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

    /// The commit that wrote the catalog is published: what it changed is the base now.
    pub fn published(&mut self) {
        self.log.clear();
    }

    /// Replays this process's changes on `newer` (another writer's catalog, built on `base`
    /// like this one). A key the other writer changed too, a layer or container whose parent
    /// is gone, or a removed layer that something now builds on is a conflict: the
    /// other writer's commit stands, and this one is refused.
    pub fn rebase<S: Source + ?Sized>(&mut self, src: &S, base: u64, newer: u64) -> Result<()> {
        let (before, after) = (Tree::at(base), Tree::at(newer));
        let mut tree = Tree::at(newer);
        for (key, val) in &self.log {
            if before.get(src, key)? != after.get(src, key)? {
                return Err(conflict(key));
            }
            match val {
                Some(v) => tree.insert(src, key, v.clone())?,
                None => tree.remove(src, key)?,
            };
        }
        self.tree = tree;
        self.check_references(src)
    }

    /// After a rebase: every layer and container this process added still has its parent,
    /// and no layer this process removed is built on by anything.
    fn check_references<S: Source + ?Sized>(&self, src: &S) -> Result<()> {
        for (key, val) in &self.log {
            let Some(id) = (key.len() == 17).then(|| Id::from_slice(&key[1..])).transpose()? else {
                continue;
            };
            let parent = match (key[0], val) {
                (LAYER, Some(v)) => LayerInfo::decode(id, v)?.parent,
                (CONTAINER, Some(v)) => Some(ContainerInfo::decode(id, v)?.image),
                (LAYER, None) if self.tree.get(src, key)?.is_none() && self.builds_on(src, id)? => {
                    return Err(conflict(key));
                }
                _ => None,
            };
            if let Some(p) = parent {
                if self.tree.get(src, &catalog::key(LAYER, &p))?.is_none() {
                    return Err(conflict(key));
                }
            }
        }
        Ok(())
    }

    /// Whether any layer or container names `id` as its parent or image.
    fn builds_on<S: Source + ?Sized>(&self, src: &S, id: Id) -> Result<bool> {
        let mut found = false;
        let mut err = None;
        self.tree.scan(src, &[], &mut |k, v| {
            if k.len() == 17 && (k[0] == LAYER || k[0] == CONTAINER) {
                let parent = Id::from_slice(&k[1..]).and_then(|kid| {
                    Ok(if k[0] == LAYER {
                        LayerInfo::decode(kid, v)?.parent
                    } else {
                        Some(ContainerInfo::decode(kid, v)?.image)
                    })
                });
                match parent {
                    Ok(p) => found |= p == Some(id),
                    Err(e) => err = Some(e),
                }
            }
            Ok(!found && err.is_none())
        })?;
        err.map_or(Ok(found), Err)
    }
}

fn conflict(key: &[u8]) -> Error {
    Error::InUse(format!(
        "another process changed {} at the same time; this commit is refused (reopen the store to continue from the other's commit)",
        catalog::describe_key(key)
    ))
}
