//! The persistent copy-on-write B-tree. Committed nodes are immutable records; a change
//! loads the nodes on its path into memory (`Ref::Mem`) and leaves every other node shared.
//! `flush` writes the changed nodes bottom-up and hands back the new root address, so a
//! snapshot is nothing but a root address and taking one costs O(1).

use super::mem::{Node, Ref};
use crate::error::{Error, Result};
use crate::format::compression::Compression;
use crate::format::node::{self, branch_entry_size, leaf_entry_size, NodeView, NODE_HEADER, TARGET};
use crate::format::record::{self, Kind};
use crate::io::{Source, Writer};

/// A B-tree of byte keys to byte values, sorted by key.
#[derive(Default)]
pub struct Tree {
    root: Option<Ref>,
    /// Changed since the last flush (a removal can leave no in-memory node behind).
    changed: bool,
}

pub(crate) fn load_view<S: Source + ?Sized>(src: &S, addr: u64) -> Result<NodeView<'_>> {
    let rec = src.record(addr)?.expect(Kind::Node)?;
    if rec.header.codec != 0 {
        return Err(Error::corrupt(format!("tree node at {addr:#x} is compressed")));
    }
    NodeView::parse(rec.stored, addr)
}

fn load<S: Source + ?Sized>(src: &S, addr: u64) -> Result<Node> {
    let view = load_view(src, addr)?;
    let n = view.len();
    let mut node = Node::with_capacity(view.is_leaf(), n, TARGET + 256);
    for i in 0..n {
        let key = view.key(i)?;
        if view.is_leaf() {
            node.insert_leaf(i, key, view.val(i)?);
        } else {
            node.insert_branch(i, key, Ref::Disk(view.child(i)?));
        }
    }
    Ok(node)
}

impl Ref {
    fn make_mut<S: Source + ?Sized>(&mut self, src: &S) -> Result<&mut Node> {
        if let Ref::Disk(addr) = *self {
            *self = Ref::Mem(Box::new(load(src, addr)?));
        }
        match self {
            Ref::Mem(node) => Ok(node),
            Ref::Disk(_) => unreachable!("made resident above"),
        }
    }
}

/// Splits a node in two of about equal bytes. Each half of a branch keeps at least two
/// children, so however long the keys (up to 4 KiB), every level at least halves what is
/// below it and a tree of n keys stays under log2(n) + 1 levels.
fn split(node: &mut Node) -> (Vec<u8>, Ref) {
    let half = node.bytes / 2;
    let least = if node.leaf { 1 } else { 2 };
    let mut acc = NODE_HEADER;
    let mut m = 0;
    while m < node.len() - 1 && acc < half {
        acc += node.entry_size(m);
        m += 1;
    }
    let right = node.split_off(m.clamp(least, node.len() - least));
    (right.key(0).to_vec(), Ref::Mem(Box::new(right)))
}

/// Past the target size, and with enough entries that both halves keep what `split` needs:
/// a node of a few huge entries stays whole rather than make a level of one child.
fn too_big(node: &Node) -> bool {
    let least = if node.leaf { 2 } else { 4 };
    node.bytes > TARGET && node.len() >= least
}

/// After a removal below entry `i` of a branch: drop an emptied child, merge a thin one.
fn rebalance<S: Source + ?Sized>(node: &mut Node, i: usize, src: &S) -> Result<()> {
    let (empty, small) = match &node.kids[i] {
        Ref::Mem(c) => (c.is_empty(), c.bytes < TARGET / 4),
        Ref::Disk(_) => return Ok(()),
    };
    if empty {
        node.remove(i);
        return Ok(());
    }
    if !small || node.len() < 2 {
        return Ok(());
    }
    let j = if i + 1 < node.len() { i } else { i - 1 };
    let (sep, _, right) = node.remove(j + 1);
    let mut right = match right.expect("a branch entry has a child") {
        Ref::Mem(n) => *n,
        Ref::Disk(a) => load(src, a)?,
    };
    let left = node.kids[j].make_mut(src)?;
    if !left.leaf {
        right.set_key(0, &sep);
    }
    left.append(right);
    if too_big(left) {
        let (k, r) = split(left);
        node.insert_branch(j + 1, &k, r);
    }
    Ok(())
}

type Split = Option<(Vec<u8>, Ref)>;

/// No real tree is this deep (fanout is at least 2 and a store holds under 2^64 keys): a
/// deeper walk is following a damaged tree's cycle, and stops with an error, not a stack overflow.
pub(crate) const MAX_DEPTH: u32 = 64;

pub(crate) fn too_deep(depth: u32, addr: u64) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::corrupt(format!(
            "tree deeper than {MAX_DEPTH} levels at {addr:#x} (a cycle?)"
        )));
    }
    Ok(())
}

fn depth_check(r: &Ref, depth: u32) -> Result<()> {
    too_deep(depth, if let Ref::Disk(a) = r { *a } else { 0 })
}

/// Called with each (key, value) of a scan; returns whether to go on.
pub type Visitor<'v> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'v;

fn insert_rec<S: Source + ?Sized>(
    r: &mut Ref,
    src: &S,
    key: &[u8],
    val: &[u8],
    depth: u32,
) -> Result<(Option<Vec<u8>>, Split)> {
    depth_check(r, depth)?;
    let node = r.make_mut(src)?;
    let old = if node.leaf {
        match node.search(key) {
            Ok(i) => Some(node.replace_val(i, val)),
            Err(i) => {
                node.insert_leaf(i, key, val);
                None
            }
        }
    } else {
        let i = node.child_index(key);
        let (old, split) = insert_rec(&mut node.kids[i], src, key, val, depth + 1)?;
        if let Some((k, child)) = split {
            node.insert_branch(i + 1, &k, child);
        }
        old
    };
    let split = if too_big(node) { Some(split(node)) } else { None };
    Ok((old, split))
}

fn remove_rec<S: Source + ?Sized>(r: &mut Ref, src: &S, key: &[u8], depth: u32) -> Result<Option<Vec<u8>>> {
    depth_check(r, depth)?;
    let node = r.make_mut(src)?;
    if node.leaf {
        return Ok(node.search(key).ok().map(|i| node.remove(i).1));
    }
    let i = node.child_index(key);
    let old = remove_rec(&mut node.kids[i], src, key, depth + 1)?;
    if old.is_some() {
        rebalance(node, i, src)?;
    }
    Ok(old)
}

/// Writes a changed subtree; returns its address and, when it wrote it, its level (a
/// committed node's level is read only when a branch has no changed child to learn it from).
fn flush_rec(r: &mut Ref, w: &mut Writer) -> Result<(u64, Option<u8>)> {
    let node = match r {
        Ref::Disk(addr) => return Ok((*addr, None)),
        Ref::Mem(node) => node,
    };
    let (bytes, level) = if node.leaf {
        (
            node::encode_leaf((0..node.len()).map(|i| (node.key(i), node.val(i)))),
            0,
        )
    } else {
        let mut addrs = Vec::with_capacity(node.kids.len());
        let mut below = None;
        for kid in &mut node.kids {
            let (addr, level) = flush_rec(kid, w)?;
            addrs.push(addr);
            below = below.or(level);
        }
        let below = match below {
            Some(l) => l,
            None => load_view(w, addrs[0])?.level(),
        };
        let level = below + 1;
        (
            node::encode_branch(level, (0..node.len()).map(|i| node.key(i)).zip(addrs)),
            level,
        )
    };
    let addr = w.append(&record::prepare(Kind::Node, &bytes, Compression::None))?;
    *r = Ref::Disk(addr);
    Ok((addr, Some(level)))
}

impl Tree {
    /// The tree whose root node is at `addr` (0 means empty).
    pub fn at(addr: u64) -> Tree {
        Tree {
            root: (addr != 0).then_some(Ref::Disk(addr)),
            changed: false,
        }
    }

    /// The root address when nothing is held in memory, 0 when empty.
    pub fn clean_root(&self) -> Option<u64> {
        match &self.root {
            None => Some(0),
            Some(Ref::Disk(a)) => Some(*a),
            Some(Ref::Mem(_)) => None,
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.changed || self.clean_root().is_none()
    }

    pub fn get<'a, S: Source + ?Sized>(&'a self, src: &'a S, key: &[u8]) -> Result<Option<&'a [u8]>> {
        let mut cur = match &self.root {
            None => return Ok(None),
            Some(r) => r,
        };
        loop {
            match cur {
                Ref::Mem(node) => {
                    if node.leaf {
                        return Ok(node.search(key).ok().map(|i| node.val(i)));
                    }
                    cur = &node.kids[node.child_index(key)];
                }
                Ref::Disk(addr) => return get_disk(src, *addr, key),
            }
        }
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert<S: Source + ?Sized>(&mut self, src: &S, key: &[u8], val: Vec<u8>) -> Result<Option<Vec<u8>>> {
        self.changed = true;
        let Some(root) = self.root.as_mut() else {
            let mut node = Node::new(true);
            node.insert_leaf(0, key, &val);
            self.root = Some(Ref::Mem(Box::new(node)));
            return Ok(None);
        };
        let (old, split) = insert_rec(root, src, key, &val, 0)?;
        if let Some((k, right)) = split {
            let left = self.root.take().expect("root present");
            let mut node = Node::new(false);
            node.insert_branch(0, &[], left);
            node.insert_branch(1, &k, right);
            self.root = Some(Ref::Mem(Box::new(node)));
        }
        Ok(old)
    }

    /// Removes a key; returns its value. Copies no path when the key is absent.
    pub fn remove<S: Source + ?Sized>(&mut self, src: &S, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.get(src, key)?.is_none() {
            return Ok(None);
        }
        self.changed = true;
        let root = self.root.as_mut().expect("key found, so a root exists");
        let old = remove_rec(root, src, key, 0)?;
        loop {
            match &mut self.root {
                Some(Ref::Mem(n)) if n.is_empty() => self.root = None,
                Some(Ref::Mem(n)) if !n.leaf && n.len() == 1 => self.root = n.kids.pop(),
                _ => break,
            }
        }
        Ok(old)
    }

    /// Writes every changed node and returns the root address (0 when empty).
    pub fn flush(&mut self, w: &mut Writer) -> Result<u64> {
        self.changed = false;
        match self.root.as_mut() {
            None => Ok(0),
            Some(r) => flush_rec(r, w).map(|(addr, _)| addr),
        }
    }

    /// Visits entries with key >= `from` in order until `f` returns false.
    pub fn scan<S: Source + ?Sized>(&self, src: &S, from: &[u8], f: &mut Visitor) -> Result<()> {
        if let Some(r) = &self.root {
            scan_rec(r, src, from, f)?;
        }
        Ok(())
    }
}

/// A key's value in the committed tree at `root` (0 = empty).
pub(crate) fn get_disk_root<'a, S: Source + ?Sized>(src: &'a S, root: u64, key: &[u8]) -> Result<Option<&'a [u8]>> {
    if root == 0 {
        return Ok(None);
    }
    get_disk(src, root, key)
}

pub(crate) fn get_disk<'a, S: Source + ?Sized>(src: &'a S, mut addr: u64, key: &[u8]) -> Result<Option<&'a [u8]>> {
    for _ in 0..=MAX_DEPTH {
        let view = load_view(src, addr)?;
        if view.is_leaf() {
            return match view.search(key)? {
                Ok(i) => Ok(Some(view.val(i)?)),
                Err(_) => Ok(None),
            };
        }
        addr = view.child(view.child_for(key)?)?;
    }
    too_deep(MAX_DEPTH + 1, addr).map(|()| None)
}

fn scan_rec<S: Source + ?Sized>(r: &Ref, src: &S, from: &[u8], f: &mut Visitor) -> Result<bool> {
    match r {
        Ref::Mem(node) if node.leaf => {
            let start = match node.search(from) {
                Ok(i) | Err(i) => i,
            };
            for i in start..node.len() {
                if !f(node.key(i), node.val(i))? {
                    return Ok(false);
                }
            }
        }
        Ref::Mem(node) => {
            for kid in &node.kids[node.child_index(from)..] {
                if !scan_rec(kid, src, from, f)? {
                    return Ok(false);
                }
            }
        }
        Ref::Disk(addr) => {
            for item in DiskIter::new(src, *addr, from)? {
                let (k, v) = item?;
                if !f(k, v)? {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

/// In-order iterator over a committed tree, lazily walking nodes with an explicit stack.
pub struct DiskIter<'a, S: Source + ?Sized> {
    src: &'a S,
    stack: Vec<(NodeView<'a>, usize)>,
    failed: bool,
}

impl<'a, S: Source + ?Sized> DiskIter<'a, S> {
    /// Positions at the first key >= `from`.
    pub fn new(src: &'a S, root: u64, from: &[u8]) -> Result<Self> {
        let mut stack = Vec::new();
        if root != 0 {
            let mut addr = root;
            loop {
                if stack.len() > MAX_DEPTH as usize {
                    return Err(Error::corrupt("tree deeper than 64 levels"));
                }
                let view = load_view(src, addr)?;
                if view.is_leaf() {
                    let i = match view.search(from)? {
                        Ok(i) | Err(i) => i,
                    };
                    stack.push((view, i));
                    break;
                }
                let i = view.child_for(from)?;
                stack.push((view, i + 1));
                addr = view.child(i)?;
            }
        }
        Ok(DiskIter {
            src,
            stack,
            failed: false,
        })
    }

    fn step(&mut self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        loop {
            let Some((view, i)) = self.stack.last_mut() else {
                return Ok(None);
            };
            let (view, at) = (*view, *i);
            if at >= view.len() {
                self.stack.pop();
                continue;
            }
            *i += 1;
            if view.is_leaf() {
                return Ok(Some((view.key(at)?, view.val(at)?)));
            }
            if self.stack.len() > MAX_DEPTH as usize {
                return Err(Error::corrupt("tree deeper than 64 levels"));
            }
            let child = load_view(self.src, view.child(at)?)?;
            self.stack.push((child, 0));
        }
    }
}

impl<'a, S: Source + ?Sized> Iterator for DiskIter<'a, S> {
    type Item = Result<(&'a [u8], &'a [u8])>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.step().transpose();
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }
}

/// Builds a packed tree bottom-up from entries already sorted by key; returns its root.
pub fn build<I>(w: &mut Writer, entries: I) -> Result<u64>
where
    I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
{
    let mut level: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut vals: Vec<Vec<u8>> = Vec::new();
    let mut bytes = NODE_HEADER;
    let mut emit_leaf = |keys: &mut Vec<Vec<u8>>, vals: &mut Vec<Vec<u8>>, w: &mut Writer| -> Result<()> {
        let enc = node::encode_leaf(keys.iter().map(|k| k.as_slice()).zip(vals.iter().map(|v| v.as_slice())));
        let addr = w.append(&record::prepare(Kind::Node, &enc, Compression::None))?;
        level.push((std::mem::take(&mut keys[0]), addr));
        keys.clear();
        vals.clear();
        Ok(())
    };
    for (k, v) in entries {
        let size = leaf_entry_size(&k, &v);
        if !keys.is_empty() && bytes + size > TARGET {
            emit_leaf(&mut keys, &mut vals, w)?;
            bytes = NODE_HEADER;
        }
        bytes += size;
        keys.push(k);
        vals.push(v);
    }
    if !keys.is_empty() {
        emit_leaf(&mut keys, &mut vals, w)?;
    }
    let mut height = 0u8;
    while level.len() > 1 {
        height += 1;
        let mut next = Vec::new();
        let mut start = 0;
        while start < level.len() {
            let mut end = start;
            let mut bytes = NODE_HEADER;
            // At least two children per branch, however long the keys, and no lone child
            // left over for the next branch.
            while end < level.len() && (end - start < 2 || bytes + branch_entry_size(&level[end].0) <= TARGET) {
                bytes += branch_entry_size(&level[end].0);
                end += 1;
            }
            if level.len() - end == 1 {
                end += 1;
            }
            let enc = node::encode_branch(height, level[start..end].iter().map(|(k, a)| (k.as_slice(), *a)));
            let addr = w.append(&record::prepare(Kind::Node, &enc, Compression::None))?;
            next.push((level[start].0.clone(), addr));
            start = end;
        }
        level = next;
    }
    Ok(level.first().map_or(0, |(_, a)| *a))
}
