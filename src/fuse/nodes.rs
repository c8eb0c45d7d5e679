//! The kernel's inode numbers and the paths they stand for. A file of the mounted tree keeps
//! the inode number the store gave it (stable across remounts, shared by hard links); a file
//! with none (a value put without attributes) or in a volume (a tree with its own numbers) is
//! given one here, above 2^62. Each inode keeps every name it was seen by, so a hard link's
//! other names still lead to it when one goes.

use std::collections::{BTreeMap, HashMap};

const OWN_LIMIT: u64 = 1 << 62;

#[derive(Default)]
pub(crate) struct Nodes {
    /// The names each inode is known by, the latest last.
    names: HashMap<u64, Vec<Vec<u8>>>,
    /// The inode each known name stands for: renames and removals touch only their subtree.
    by_path: BTreeMap<Vec<u8>, u64>,
    given: HashMap<(usize, u64, Vec<u8>), u64>,
    next: u64,
    /// The kernel's references (lookups not yet forgotten) per inode: names go at zero.
    lookups: HashMap<u64, u64>,
}

impl Nodes {
    /// `root`: the path of the mount's root (inode 1).
    pub(crate) fn new(root: Vec<u8>) -> Nodes {
        let mut n = Nodes {
            next: OWN_LIMIT,
            ..Default::default()
        };
        n.names.insert(1, vec![root]);
        n
    }

    /// A path the kernel's `ino` stands for (the name it was last seen by).
    pub(crate) fn path(&self, ino: u64) -> Option<Vec<u8>> {
        self.names.get(&ino).and_then(|p| p.last().cloned())
    }

    /// The kernel's number for the file at `path`: `store_ino` in the mounted tree's own
    /// files (`tree` 0), else one given here for (tree, number), or for the path when the
    /// file has no number.
    pub(crate) fn ino(&mut self, path: &[u8], tree: usize, store_ino: u64) -> u64 {
        let ino = self.number(path, tree, store_ino);
        self.name(ino, path);
        ino
    }

    /// The number `ino` would give, its name not registered (a listing: the kernel holds no
    /// reference to what it lists, so nothing would ever free it).
    pub(crate) fn number(&mut self, path: &[u8], tree: usize, store_ino: u64) -> u64 {
        if tree == 0 && (1..OWN_LIMIT).contains(&store_ino) {
            store_ino
        } else {
            let key_path = if store_ino == 0 { path.to_vec() } else { Vec::new() };
            let next = &mut self.next;
            *self.given.entry((tree, store_ino, key_path)).or_insert_with(|| {
                *next += 1;
                *next
            })
        }
    }

    fn name(&mut self, ino: u64, path: &[u8]) {
        if path.is_empty() {
            return;
        }
        if let Some(old) = self.by_path.insert(path.to_vec(), ino) {
            if old != ino {
                self.drop_name(old, path);
            }
        }
        let names = self.names.entry(ino).or_default();
        names.retain(|p| p != path);
        names.push(path.to_vec());
    }

    /// The kernel took a reference to `ino` (a lookup, create, mkdir... answered).
    pub(crate) fn looked_up(&mut self, ino: u64) {
        *self.lookups.entry(ino).or_insert(0) += 1;
    }

    fn drop_name(&mut self, ino: u64, path: &[u8]) {
        if let Some(names) = self.names.get_mut(&ino) {
            names.retain(|p| p != path);
            if names.is_empty() && ino != 1 {
                self.names.remove(&ino);
            }
        }
    }

    /// The known names at `path` and below it.
    fn subtree(&self, path: &[u8]) -> Vec<(Vec<u8>, u64)> {
        let below = [path, b"/"].concat();
        let own = self.by_path.get_key_value(path).map(|(p, &i)| (p.clone(), i));
        own.into_iter()
            .chain(
                (self.by_path.range(below.clone()..))
                    .take_while(|(p, _)| p.starts_with(&below))
                    .map(|(p, &i)| (p.clone(), i)),
            )
            .collect()
    }

    /// The name `path` (and what was below it) is gone; the inodes keep their other names.
    pub(crate) fn gone(&mut self, path: &[u8]) {
        for (p, ino) in self.subtree(path) {
            self.by_path.remove(&p);
            self.drop_name(ino, &p);
        }
    }

    /// A file or folder moved from `from` to `to` (replacing what was there): the names of
    /// what is below it follow.
    pub(crate) fn renamed(&mut self, from: &[u8], to: &[u8]) {
        if from == to {
            return;
        }
        self.gone(to);
        for (p, ino) in self.subtree(from) {
            let new = [to, &p[from.len()..]].concat();
            self.by_path.remove(&p);
            self.by_path.insert(new.clone(), ino);
            if let Some(names) = self.names.get_mut(&ino) {
                for n in names.iter_mut().filter(|n| **n == p) {
                    *n = new.clone();
                }
            }
        }
    }

    /// `a` and `b` swapped places, with what is below them.
    pub(crate) fn exchanged(&mut self, a: &[u8], b: &[u8]) {
        let (sa, sb) = (self.subtree(a), self.subtree(b));
        for (p, _) in sa.iter().chain(&sb) {
            self.by_path.remove(p);
        }
        let moved = |list: Vec<(Vec<u8>, u64)>, from: &[u8], to: &[u8]| -> Vec<(Vec<u8>, Vec<u8>, u64)> {
            list.into_iter()
                .map(|(p, i)| (p.clone(), [to, &p[from.len()..]].concat(), i))
                .collect()
        };
        for (old, new, ino) in moved(sa, a, b).into_iter().chain(moved(sb, b, a)) {
            self.by_path.insert(new.clone(), ino);
            if let Some(names) = self.names.get_mut(&ino) {
                for n in names.iter_mut().filter(|n| **n == old) {
                    *n = new.clone();
                }
            }
        }
    }

    /// The kernel dropped `n` references to `ino`; true when it holds none now.
    pub(crate) fn forget(&mut self, ino: u64, n: u64) -> bool {
        let left = self.lookups.get(&ino).map_or(0, |c| c.saturating_sub(n));
        if left > 0 {
            self.lookups.insert(ino, left);
            return false;
        }
        self.lookups.remove(&ino);
        true
    }

    /// Drops what is known of `ino` (the kernel holds no reference and no handle is open).
    pub(crate) fn drop_inode(&mut self, ino: u64) {
        if ino == 1 || self.lookups.contains_key(&ino) {
            return;
        }
        for p in self.names.remove(&ino).unwrap_or_default() {
            if self.by_path.get(&p) == Some(&ino) {
                self.by_path.remove(&p);
            }
        }
    }
}
