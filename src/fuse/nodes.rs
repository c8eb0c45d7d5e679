//! The kernel's inode numbers and the paths they stand for. A file of the mounted tree keeps
//! the inode number the store gave it (stable across remounts, shared by hard links); a file
//! with none (a value put without attributes) or in a volume (a tree with its own numbers) is
//! given one here, above 2^62.

use std::collections::HashMap;

const OWN_LIMIT: u64 = 1 << 62;

#[derive(Default)]
pub(crate) struct Nodes {
    paths: HashMap<u64, Vec<u8>>,
    given: HashMap<(usize, u64, Vec<u8>), u64>,
    next: u64,
}

impl Nodes {
    pub(crate) fn new() -> Nodes {
        let mut n = Nodes {
            next: OWN_LIMIT,
            ..Default::default()
        };
        n.paths.insert(1, Vec::new());
        n
    }

    /// The path the kernel's `ino` stands for.
    pub(crate) fn path(&self, ino: u64) -> Option<Vec<u8>> {
        self.paths.get(&ino).cloned()
    }

    /// The kernel's number for the file at `path`: `store_ino` in the mounted tree's own
    /// files (`tree` 0), else one given here for (tree, number), or for the path when the
    /// file has no number.
    pub(crate) fn ino(&mut self, path: &[u8], tree: usize, store_ino: u64) -> u64 {
        let ino = if tree == 0 && (1..OWN_LIMIT).contains(&store_ino) {
            store_ino
        } else {
            let key_path = if store_ino == 0 { path.to_vec() } else { Vec::new() };
            let next = &mut self.next;
            *self.given.entry((tree, store_ino, key_path)).or_insert_with(|| {
                *next += 1;
                *next
            })
        };
        self.paths.insert(ino, path.to_vec());
        ino
    }

    /// A file or folder moved from `from` to `to`: the paths of what is below it follow.
    pub(crate) fn renamed(&mut self, from: &[u8], to: &[u8]) {
        let below = [from, b"/"].concat();
        for p in self.paths.values_mut() {
            if p.as_slice() == from {
                *p = to.to_vec();
            } else if p.starts_with(&below) {
                *p = [to, &p[from.len()..]].concat();
            }
        }
    }

    /// The kernel forgot `ino`.
    pub(crate) fn forget(&mut self, ino: u64) {
        if ino != 1 {
            self.paths.remove(&ino);
        }
    }
}
