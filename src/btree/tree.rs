//! The persistent copy-on-write B-tree. Committed nodes are immutable records; a change
//! loads the nodes on its path into memory (`Ref::Mem`) and leaves every other node shared.
//! `flush` writes the changed nodes bottom-up and hands back the new root address, so a
//! snapshot is nothing but a root address and taking one costs O(1).

use super::node::{self, branch_entry_size, leaf_entry_size, NodeView, NODE_HEADER, TARGET};
use crate::error::{Error, Result};
use crate::record::{self, Compression, Kind};
use crate::segment::{Source, Writer};

/// A child pointer: a committed node on disk, or a changed node held in memory.
pub enum Ref {
    Disk(u64),
    Mem(Box<Node>),
}

/// An in-memory node. Leaves use `vals`, branches `kids`; `keys[i]` is the first key of
/// entry `i` (a branch ignores its first key when searching).
pub struct Node {
    leaf: bool,
    keys: Vec<Vec<u8>>,
    vals: Vec<Vec<u8>>,
    kids: Vec<Ref>,
    bytes: usize,
}

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
    let mut node = Node {
        leaf: view.is_leaf(),
        keys: Vec::with_capacity(n + 1),
        vals: Vec::new(),
        kids: Vec::new(),
        bytes: NODE_HEADER,
    };
    for i in 0..n {
        let key = view.key(i)?.to_vec();
        if view.is_leaf() {
            let val = view.val(i)?.to_vec();
            node.bytes += leaf_entry_size(&key, &val);
            node.vals.push(val);
        } else {
            node.bytes += branch_entry_size(&key);
            node.kids.push(Ref::Disk(view.child(i)?));
        }
        node.keys.push(key);
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

fn child_index(keys: &[Vec<u8>], key: &[u8]) -> usize {
    keys[1..].partition_point(|k| k.as_slice() <= key)
}

impl Node {
    fn split(&mut self) -> (Vec<u8>, Ref) {
        let half = self.bytes / 2;
        let mut acc = NODE_HEADER;
        let mut m = 0;
        while m < self.keys.len() - 1 && acc < half {
            acc += self.entry_size(m);
            m += 1;
        }
        let m = m.max(1);
        let keys = self.keys.split_off(m);
        let vals = if self.leaf { self.vals.split_off(m) } else { Vec::new() };
        let kids = if self.leaf { Vec::new() } else { self.kids.split_off(m) };
        let mut right = Node {
            leaf: self.leaf,
            keys,
            vals,
            kids,
            bytes: NODE_HEADER,
        };
        right.bytes += (0..right.keys.len()).map(|i| right.entry_size(i)).sum::<usize>();
        self.bytes -= right.bytes - NODE_HEADER;
        (right.keys[0].clone(), Ref::Mem(Box::new(right)))
    }

    fn entry_size(&self, i: usize) -> usize {
        if self.leaf {
            leaf_entry_size(&self.keys[i], &self.vals[i])
        } else {
            branch_entry_size(&self.keys[i])
        }
    }

    fn too_big(&self) -> bool {
        self.bytes > TARGET && self.keys.len() >= 2
    }

    /// After a removal below entry `i`: drop an emptied child, merge a thin one.
    fn rebalance<S: Source + ?Sized>(&mut self, i: usize, src: &S) -> Result<()> {
        let (empty, small) = match &self.kids[i] {
            Ref::Mem(c) => (c.keys.is_empty(), c.bytes < TARGET / 4),
            Ref::Disk(_) => return Ok(()),
        };
        if empty {
            self.kids.remove(i);
            let k = self.keys.remove(i);
            self.bytes -= branch_entry_size(&k);
            return Ok(());
        }
        if !small || self.kids.len() < 2 {
            return Ok(());
        }
        let j = if i + 1 < self.kids.len() { i } else { i - 1 };
        let right = self.kids.remove(j + 1);
        let sep = self.keys.remove(j + 1);
        self.bytes -= branch_entry_size(&sep);
        let mut right = match right {
            Ref::Mem(n) => *n,
            Ref::Disk(a) => load(src, a)?,
        };
        let left = self.kids[j].make_mut(src)?;
        if !left.leaf {
            right.bytes = right.bytes - branch_entry_size(&right.keys[0]) + branch_entry_size(&sep);
            right.keys[0] = sep;
        }
        left.bytes += right.bytes - NODE_HEADER;
        left.keys.extend(right.keys);
        left.vals.extend(right.vals);
        left.kids.extend(right.kids);
        if left.too_big() {
            let (k, r) = left.split();
            self.bytes += branch_entry_size(&k);
            self.keys.insert(j + 1, k);
            self.kids.insert(j + 1, r);
        }
        Ok(())
    }
}

type Split = Option<(Vec<u8>, Ref)>;

/// Called with each (key, value) of a scan; returns whether to go on.
pub type Visitor<'v> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'v;

fn insert_rec<S: Source + ?Sized>(r: &mut Ref, src: &S, key: &[u8], val: Vec<u8>) -> Result<(Option<Vec<u8>>, Split)> {
    let node = r.make_mut(src)?;
    let old = if node.leaf {
        match node.keys.binary_search_by(|k| k.as_slice().cmp(key)) {
            Ok(i) => {
                node.bytes = node.bytes + val.len() - node.vals[i].len();
                Some(std::mem::replace(&mut node.vals[i], val))
            }
            Err(i) => {
                node.bytes += leaf_entry_size(key, &val);
                node.keys.insert(i, key.to_vec());
                node.vals.insert(i, val);
                None
            }
        }
    } else {
        let i = child_index(&node.keys, key);
        let (old, split) = insert_rec(&mut node.kids[i], src, key, val)?;
        if let Some((k, child)) = split {
            node.bytes += branch_entry_size(&k);
            node.keys.insert(i + 1, k);
            node.kids.insert(i + 1, child);
        }
        old
    };
    let split = if node.too_big() { Some(node.split()) } else { None };
    Ok((old, split))
}

fn remove_rec<S: Source + ?Sized>(r: &mut Ref, src: &S, key: &[u8]) -> Result<Option<Vec<u8>>> {
    let node = r.make_mut(src)?;
    if node.leaf {
        return Ok(match node.keys.binary_search_by(|k| k.as_slice().cmp(key)) {
            Ok(i) => {
                let k = node.keys.remove(i);
                let v = node.vals.remove(i);
                node.bytes -= leaf_entry_size(&k, &v);
                Some(v)
            }
            Err(_) => None,
        });
    }
    let i = child_index(&node.keys, key);
    let old = remove_rec(&mut node.kids[i], src, key)?;
    if old.is_some() {
        node.rebalance(i, src)?;
    }
    Ok(old)
}

fn flush_rec(r: &mut Ref, w: &mut Writer) -> Result<u64> {
    let node = match r {
        Ref::Disk(addr) => return Ok(*addr),
        Ref::Mem(node) => node,
    };
    let bytes = if node.leaf {
        node::encode_leaf(
            node.keys
                .iter()
                .map(|k| k.as_slice())
                .zip(node.vals.iter().map(|v| v.as_slice())),
        )
    } else {
        let mut addrs = Vec::with_capacity(node.kids.len());
        for kid in &mut node.kids {
            addrs.push(flush_rec(kid, w)?);
        }
        node::encode_branch(node.keys.iter().map(|k| k.as_slice()).zip(addrs))
    };
    let addr = w.append(&record::prepare(Kind::Node, &bytes, Compression::None))?;
    *r = Ref::Disk(addr);
    Ok(addr)
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
                        return Ok(node
                            .keys
                            .binary_search_by(|k| k.as_slice().cmp(key))
                            .ok()
                            .map(|i| node.vals[i].as_slice()));
                    }
                    cur = &node.kids[child_index(&node.keys, key)];
                }
                Ref::Disk(addr) => return get_disk(src, *addr, key),
            }
        }
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert<S: Source + ?Sized>(&mut self, src: &S, key: &[u8], val: Vec<u8>) -> Result<Option<Vec<u8>>> {
        self.changed = true;
        let Some(root) = self.root.as_mut() else {
            let bytes = NODE_HEADER + leaf_entry_size(key, &val);
            let node = Node {
                leaf: true,
                keys: vec![key.to_vec()],
                vals: vec![val],
                kids: Vec::new(),
                bytes,
            };
            self.root = Some(Ref::Mem(Box::new(node)));
            return Ok(None);
        };
        let (old, split) = insert_rec(root, src, key, val)?;
        if let Some((k, right)) = split {
            let left = self.root.take().expect("root present");
            let bytes = NODE_HEADER + branch_entry_size(&[]) + branch_entry_size(&k);
            let node = Node {
                leaf: false,
                keys: vec![Vec::new(), k],
                vals: Vec::new(),
                kids: vec![left, right],
                bytes,
            };
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
        let old = remove_rec(root, src, key)?;
        loop {
            match &mut self.root {
                Some(Ref::Mem(n)) if n.keys.is_empty() => self.root = None,
                Some(Ref::Mem(n)) if !n.leaf && n.kids.len() == 1 => self.root = n.kids.pop(),
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
            Some(r) => flush_rec(r, w),
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

pub(crate) fn get_disk<'a, S: Source + ?Sized>(src: &'a S, mut addr: u64, key: &[u8]) -> Result<Option<&'a [u8]>> {
    for _ in 0..64 {
        let view = load_view(src, addr)?;
        if view.is_leaf() {
            return match view.search(key)? {
                Ok(i) => Ok(Some(view.val(i)?)),
                Err(_) => Ok(None),
            };
        }
        addr = view.child(view.child_for(key)?)?;
    }
    Err(Error::corrupt(format!("tree deeper than 64 levels below {addr:#x}")))
}

fn scan_rec<S: Source + ?Sized>(r: &Ref, src: &S, from: &[u8], f: &mut Visitor) -> Result<bool> {
    match r {
        Ref::Mem(node) if node.leaf => {
            let start = node.keys.partition_point(|k| k.as_slice() < from);
            for i in start..node.keys.len() {
                if !f(&node.keys[i], &node.vals[i])? {
                    return Ok(false);
                }
            }
        }
        Ref::Mem(node) => {
            for kid in &node.kids[child_index(&node.keys, from)..] {
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
                if stack.len() > 64 {
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
            if self.stack.len() > 64 {
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
    while level.len() > 1 {
        let mut next = Vec::new();
        let mut start = 0;
        while start < level.len() {
            let mut end = start;
            let mut bytes = NODE_HEADER;
            while end < level.len() && (end == start || bytes + branch_entry_size(&level[end].0) <= TARGET) {
                bytes += branch_entry_size(&level[end].0);
                end += 1;
            }
            let enc = node::encode_branch(level[start..end].iter().map(|(k, a)| (k.as_slice(), *a)));
            let addr = w.append(&record::prepare(Kind::Node, &enc, Compression::None))?;
            next.push((level[start].0.clone(), addr));
            start = end;
        }
        level = next;
    }
    Ok(level.first().map_or(0, |(_, a)| *a))
}
