//! `verify`: checks a store like ZFS's scrub and dm-thin's `thin_check`. Superblocks, every
//! reachable record's crc (re-read, not trusted from a cache), tree invariants (key order
//! within and across nodes, fanout, no dangling references), value entries and block maps,
//! the chunk index, and with `deep` every chunk's blake3. Damage is named: the record, and
//! the layers, containers, volumes and keys that reach it.

use crate::error::{Error, Result};
use crate::format::catalog::{
    describe_key, ContainerInfo, Id, ImageInfo, LayerInfo, ANNOTATIONS, CONTAINER, IMAGE, LAYER,
};
use crate::format::node::NodeView;
use crate::format::pool::Pool;
use crate::format::ptr::ChunkPtr;
use crate::format::record::Kind;
use crate::format::superblock::{FileHeader, Run, Superblock, DATA_START, HEADER_OFFSETS, SLOT_OFFSETS};
use crate::format::value::{Body, Entry};
use crate::io::{Pread, Segments, Source, EXTENT};
use crate::maint::gc;
use crate::store::Store;
use crate::tree::blockmap;
use rayon::prelude::*;
use std::collections::{BTreeSet, HashMap, HashSet};

/// One damaged thing and what it affects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, with the record's address.
    pub what: String,
    /// Layers, containers and volumes that reach it.
    pub affects: BTreeSet<String>,
    /// Keys whose values reach it (a few; empty for tree structure).
    pub keys: BTreeSet<String>,
}

/// What `verify` found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    pub records_checked: u64,
    pub chunks_checked: u64,
    pub bytes_checked: u64,
    pub problems: Vec<Problem>,
    /// Not damage to committed data: e.g. a superblock slot torn by a crash mid-commit,
    /// which the next commit overwrites.
    pub warnings: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

struct Walk {
    /// Positioned reads, each crc checked: a file cut short under verify is reported, never
    /// a crash, and no crc cached by earlier reads is trusted.
    src: Pread,
    good: HashSet<u64>,
    /// Size of each tree and block-map node read, for the pool check (no second read).
    sizes: HashMap<u64, u64>,
    bad: HashMap<u64, String>,
    /// Chunks reached, each with the pointer that reached it first.
    chunks: HashMap<u64, ChunkPtr>,
    records: u64,
    /// The branch nodes above the node being checked.
    path: Vec<u64>,
    /// The level each tree node's parent says it has.
    levels: HashMap<u64, u8>,
    /// While attributing: the tree being walked, the damaged records with what reaches them,
    /// and the nodes this tree has visited.
    attribute: Option<(String, HashMap<u64, Problem>, HashSet<u64>)>,
}

/// True for the keys a layer tree may hold: paths, inode entries and the counter.
fn layer_key(k: &[u8]) -> bool {
    use crate::format::treekey;
    treekey::path_of(k).is_some() || treekey::inode_of(k).is_some() || k == treekey::NEXT_INO
}

/// A tree key as the path it spells (escaped), or the inode entry it is.
fn key_str(k: &[u8]) -> String {
    match crate::format::treekey::path_of(k) {
        Some(p) => crate::format::escape::escape_path(&p),
        None => match crate::format::treekey::inode_of(k) {
            Some(ino) => format!("(hard-linked file, inode {ino})"),
            None if k == crate::format::treekey::NEXT_INO => "(the tree's inode counter)".into(),
            None => format!("(a malformed key: {})", crate::format::escape::escape_path(k)),
        },
    }
}

impl Walk {
    fn fail(&mut self, addr: u64, e: Error) {
        self.bad.entry(addr).or_insert_with(|| e.to_string());
    }

    fn touch(&mut self, addr: u64, key: Option<&[u8]>) -> bool {
        if let Some((tree, found, seen)) = &mut self.attribute {
            if let Some(p) = found.get_mut(&addr) {
                p.affects.insert(tree.clone());
                if let Some(k) = key.filter(|_| p.keys.len() < 20) {
                    p.keys.insert(key_str(k));
                }
                return false;
            }
            return seen.insert(addr);
        }
        if self.bad.contains_key(&addr) || !self.good.insert(addr) {
            return false;
        }
        self.records += 1;
        true
    }

    /// A B-tree below `addr` whose keys must lie in `[lo, hi)`; `values` for layer trees.
    fn tree(&mut self, addr: u64, lo: Option<&[u8]>, hi: Option<&[u8]>, values: bool, depth: u32) {
        if addr == 0 || !self.touch(addr, None) {
            return;
        }
        self.src.trim();
        if let Err(e) = self.tree_node(addr, lo, hi, values, depth) {
            self.good.remove(&addr);
            self.fail(addr, e);
        }
    }

    fn tree_node(&mut self, addr: u64, lo: Option<&[u8]>, hi: Option<&[u8]>, values: bool, depth: u32) -> Result<()> {
        crate::tree::btree::too_deep(depth, addr)?;
        let rec = self.src.record(addr)?.expect(Kind::Node)?;
        self.sizes.insert(addr, rec.header.size());
        let view = NodeView::parse(rec.stored, addr)?;
        if let Some(want) = self.levels.get(&addr).filter(|&&l| l != view.level()) {
            return Err(Error::corrupt(format!(
                "tree node at {addr:#x}: level {} where its parent says {want}",
                view.level()
            )));
        }
        let mut entries = Vec::with_capacity(view.len());
        let mut maps = Vec::new();
        for i in 0..view.len() {
            let k = view.key(i)?.to_vec();
            if view.prefix(i) != crate::format::node::prefix(&k) {
                return Err(Error::corrupt(format!(
                    "tree node at {addr:#x}: key prefix {i} disagrees with its key"
                )));
            }
            if let Some(prev) = entries.last().map(|(p, _): &(Vec<u8>, u64)| p.clone()) {
                if k <= prev && !(i == 1 && !view.is_leaf() && prev.is_empty()) {
                    return Err(Error::corrupt(format!("tree node at {addr:#x}: keys out of order")));
                }
            }
            let in_range = (view.is_leaf() || i > 0)
                && (lo.is_some_and(|lo| k.as_slice() < lo) || hi.is_some_and(|hi| k.as_slice() >= hi));
            if in_range {
                return Err(Error::corrupt(format!(
                    "tree node at {addr:#x}: key outside its parent's range"
                )));
            }
            let child = if view.is_leaf() { 0 } else { view.child(i)? };
            // Shared nodes are seen once, so a child pointing back up would go unnoticed.
            if child != 0 && (child == addr || self.path.contains(&child)) {
                return Err(Error::corrupt(format!(
                    "tree node at {addr:#x}: child {i} points back at an ancestor (a cycle)"
                )));
            }
            if view.is_leaf() && values && !layer_key(&k) {
                return Err(Error::corrupt(format!(
                    "tree node at {addr:#x}: key {i} is neither a path nor an inode entry"
                )));
            }
            entries.push((k, child));
            if child != 0 {
                self.levels.insert(child, view.level() - 1);
            }
            if view.is_leaf() && values {
                let e = Entry::decode(view.val(i)?)?;
                if let Body::Blocks { height, root, .. } = e.body {
                    maps.push((height, root, view.key(i)?.to_vec()));
                }
            }
        }
        let leaf = view.is_leaf();
        for (height, root, key) in maps {
            self.map(height, root, &key);
        }
        if !leaf {
            self.path.push(addr);
            for i in 0..entries.len() {
                let clo = if i == 0 {
                    lo.map(<[u8]>::to_vec)
                } else {
                    Some(entries[i].0.clone())
                };
                let chi = entries.get(i + 1).map(|e| e.0.clone()).or(hi.map(<[u8]>::to_vec));
                self.tree(entries[i].1, clo.as_deref(), chi.as_deref(), values, depth + 1);
            }
            self.path.pop();
        }
        Ok(())
    }

    fn map(&mut self, h: u8, addr: u64, key: &[u8]) {
        if addr == 0 || !self.touch(addr, Some(key)) {
            return;
        }
        self.src.trim();
        let slots = if h == 1 {
            blockmap::leaf_ptrs(&self.src, addr).map(|p| p.into_iter().map(Err).collect::<Vec<_>>())
        } else {
            blockmap::interior_kids(&self.src, addr, h).map(|k| k.into_iter().map(Ok).collect())
        };
        if let Ok(s) = &slots {
            // The node's payload is its header and its slots, trailing holes trimmed.
            let slot = if h == 1 { crate::format::ptr::PTR_LEN } else { 8 };
            self.sizes
                .insert(addr, crate::format::record::padded(8 + slot * s.len()));
        }
        match slots {
            Err(e) => {
                self.good.remove(&addr);
                self.fail(addr, e);
            }
            Ok(slots) => {
                for s in slots {
                    match s {
                        Ok(0) => {}
                        Ok(kid) => self.map(h - 1, kid, key),
                        Err(p) if p.is_hole() => {}
                        Err(p) if self.attribute.is_some() => {
                            self.touch(p.addr, Some(key));
                        }
                        Err(p) => {
                            if !self.bad.contains_key(&p.addr) {
                                self.note_chunk(p);
                            }
                        }
                    }
                }
            }
        }
    }

    /// A chunk to check; two pointers to one address that disagree about the record are
    /// damage (blocks packed in one record differ only in their place in it).
    fn note_chunk(&mut self, p: ChunkPtr) {
        match self.chunks.get(&p.addr) {
            None => {
                self.chunks.insert(p.addr, p);
            }
            Some(q) if !q.same_record(&p) => {
                self.bad.insert(
                    p.addr,
                    "two block maps point at this chunk with different lengths or crc".into(),
                );
            }
            Some(_) => {}
        }
    }
}

/// The trees a catalog names: (description, root).
pub(crate) type Roots = Vec<(String, u64)>;

/// Checks everything reachable from the catalog and the chunk index.
pub(crate) fn verify(
    segs: &Segments,
    catalog_root: u64,
    roots: &Roots,
    runs: &[Run],
    (pool, pool_crc): (u64, u32),
    deep: bool,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<VerifyReport> {
    let mut w = Walk {
        src: Pread::new(segs),
        good: HashSet::new(),
        sizes: HashMap::new(),
        bad: HashMap::new(),
        chunks: HashMap::new(),
        records: 0,
        path: Vec::new(),
        levels: HashMap::new(),
        attribute: None,
    };
    w.tree(catalog_root, None, None, false, 0);
    for (_, root) in roots {
        w.tree(*root, None, None, true, 0);
    }
    for run in runs {
        w.tree(run.root, None, None, false, 0);
    }
    let mut report = check_chunks(&mut w, deep, progress);
    check_index(&mut w, runs, deep);
    check_pool(&mut w, pool, pool_crc);
    report.records_checked += w.records;
    if !w.bad.is_empty() {
        report.problems = attribute(&mut w, catalog_root, roots);
    }
    Ok(report)
}

/// Every chunk the walk reached: crc always, blake3 when `deep`; in parallel.
fn check_chunks(w: &mut Walk, deep: bool, progress: &(dyn Fn(u64, u64) + Sync)) -> VerifyReport {
    let chunks: Vec<ChunkPtr> = w.chunks.values().copied().collect();
    let reader = w.src.reader().clone();
    let done = std::sync::atomic::AtomicU64::new(0);
    let total = chunks.len() as u64;
    let results: Vec<(u64, u64, Option<String>)> = chunks
        .par_iter()
        .map(|&p| {
            let c = p.addr;
            let r = reader.read_owned(c).and_then(|owned| {
                let rec = owned.record();
                p.check(&rec.header)?;
                if deep {
                    rec.check_hash()?;
                }
                Ok(rec.header.stored_len as u64)
            });
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n.is_multiple_of(1024) || n == total {
                progress(n, total);
            }
            match r {
                Ok(bytes) => (c, bytes, None),
                Err(e) => (c, 0, Some(e.to_string())),
            }
        })
        .collect();
    let mut report = VerifyReport {
        chunks_checked: total,
        records_checked: total,
        ..Default::default()
    };
    for (c, bytes, err) in results {
        report.bytes_checked += bytes;
        if let Some(e) = err {
            w.bad.insert(c, e);
        }
    }
    report
}

/// The chunk index must point at chunks with the hashes it names. Read in batches, so the
/// reader's arena is cleared between them however large the index. A block packed with
/// others must point at a pack with the lengths and crc it names (each pack read once); with
/// `deep`, its bytes there must have its hash (each pack decompressed once per run).
fn check_index(w: &mut Walk, runs: &[Run], deep: bool) {
    const BATCH: usize = 4096;
    let mut packs: HashMap<u64, Option<(u32, u32, u32)>> = HashMap::new();
    for run in runs {
        let mut packed: Vec<(ChunkPtr, [u8; 32])> = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        loop {
            let batch: Vec<(Vec<u8>, Option<ChunkPtr>)> = {
                let Ok(it) = crate::tree::btree::DiskIter::new(&w.src, run.root, &from) else {
                    break;
                };
                it.take(BATCH)
                    .map_while(|item| item.ok())
                    .map(|(k, v)| (k.to_vec(), crate::tree::chunk_index::entry_ptr(v).ok()))
                    .collect()
            };
            for (k, ptr) in &batch {
                if let Some(p) = ptr.filter(|p| !p.is_whole()) {
                    let header = *packs.entry(p.addr).or_insert_with(|| {
                        let r = w.src.reader().read_owned(p.addr).ok()?;
                        let h = r.record().header;
                        (h.kind == Kind::Chunk).then_some((h.stored_len, h.raw_len, h.crc))
                    });
                    if header != Some((p.stored_len, p.raw_len, p.crc)) {
                        bad_entry(w, p.addr);
                    } else if let (true, Ok(hash)) = (deep, <[u8; 32]>::try_from(&k[..])) {
                        packed.push((p, hash));
                    }
                    continue;
                }
                let ok = ptr.is_some_and(|p| {
                    w.src.reader().read_owned(p.addr).is_ok_and(|r| {
                        let r = r.record();
                        p.check(&r.header).is_ok() && r.hash()[..] == k[..]
                    })
                });
                if !ok {
                    bad_entry(w, ptr.map_or(0, |p| p.addr));
                }
            }
            w.src.trim();
            match batch.last() {
                // A damaged index out of order must not send the scan back: it ends instead.
                Some((k, _)) if batch.len() == BATCH && [&k[..], &[0]].concat() > from => {
                    from = [&k[..], &[0]].concat()
                }
                _ => break,
            }
        }
        check_packed(w, run.root, packed);
    }
}

fn bad_entry(w: &mut Walk, addr: u64) {
    w.bad
        .entry(addr)
        .or_insert_with(|| format!("chunk index entry points at {addr:#x}, which does not hold that chunk"));
}

/// Index entries (of the run at `run`) of blocks packed with others, whose packs' headers
/// matched: each pack is decompressed once, and each block's bytes in it must have the hash
/// its entry names. A pack that cannot be read is the pack's damage; a block of another hash
/// is the index's (the run's), not every file's in the pack.
fn check_packed(w: &mut Walk, run: u64, mut packed: Vec<(ChunkPtr, [u8; 32])>) {
    packed.sort_unstable_by_key(|(p, _)| p.addr);
    for group in packed.chunk_by(|a, b| a.0.addr == b.0.addr) {
        let addr = group[0].0.addr;
        let payload = w
            .src
            .reader()
            .read_owned(addr)
            .and_then(|r| Ok(r.record().payload()?.into_owned()));
        let Ok(data) = payload else {
            bad_entry(w, addr);
            continue;
        };
        let wrong = group.iter().find(|(p, hash)| {
            data.get(p.offset as usize..p.offset as usize + p.len as usize)
                .is_none_or(|b| blake3::hash(b).as_bytes() != hash)
        });
        if let Some((p, _)) = wrong {
            w.bad.entry(run).or_insert_with(|| {
                format!(
                    "chunk index run: an entry names bytes {}+{} of the pack at {addr:#x}, which have another hash",
                    p.offset, p.len
                )
            });
        }
        w.src.trim();
    }
}

/// The free pool must be the well-formed raw record the superblock names, and no reachable
/// record may reach into an extent of it (a writer would overwrite it).
fn check_pool(w: &mut Walk, pool: u64, pool_crc: u32) {
    if pool == 0 {
        return;
    }
    let decoded = w.src.reader().file_len().and_then(|len| {
        let r = w.src.record(pool)?.expect(Kind::Pool)?;
        if r.header.codec != 0 || r.header.crc != pool_crc {
            return Err(Error::corrupt("not the raw record the superblock names"));
        }
        Pool::decode(r.stored, pool, DATA_START, EXTENT, len)
    });
    let pool_runs = match decoded {
        Ok(p) => p,
        Err(e) => {
            w.bad.insert(pool, format!("free pool: {e}"));
            return;
        }
    };
    let extent_of = |a: u64| a - (a - DATA_START) % EXTENT;
    // Every record's first and last byte: one may straddle two extents of a writer's run.
    let mut spans: Vec<(u64, u64)> = w.chunks.values().map(|p| (p.addr, p.size())).collect();
    for &a in &w.good {
        spans.push((a, w.sizes.get(&a).copied().unwrap_or(crate::format::record::ALIGN)));
    }
    for (a, size) in spans {
        let last = a + size.max(1) - 1;
        if pool_runs.contains(extent_of(a), EXTENT) || pool_runs.contains(extent_of(last), EXTENT) {
            w.bad
                .insert(a, "lies in an extent of the free pool, where writers append".into());
        }
    }
    w.src.trim();
}

/// Each damaged record, with the trees and keys that reach it (a second walk).
fn attribute(w: &mut Walk, catalog_root: u64, roots: &Roots) -> Vec<Problem> {
    let found: HashMap<u64, Problem> = w
        .bad
        .iter()
        .map(|(a, e)| {
            let problem = Problem {
                what: format!("record {a:#x}: {e}"),
                affects: BTreeSet::new(),
                keys: BTreeSet::new(),
            };
            (*a, problem)
        })
        .collect();
    w.attribute = Some((String::from("catalog"), found, HashSet::new()));
    w.tree(catalog_root, None, None, false, 0);
    for (name, root) in roots {
        if let Some(a) = w.attribute.as_mut() {
            a.0 = name.clone();
            a.2.clear();
        }
        w.tree(*root, None, None, true, 0);
    }
    let mut problems: Vec<Problem> = w
        .attribute
        .take()
        .map(|a| a.1.into_values().collect())
        .unwrap_or_default();
    problems.sort_by(|a, b| a.what.cmp(&b.what));
    problems
}

impl Store {
    /// Checks the last commit: superblocks, every reachable record's crc, tree invariants, the
    /// chunk index, and with `deep` every chunk's blake3.
    pub fn verify(&self, deep: bool) -> Result<VerifyReport> {
        self.verify_with_progress(deep, &|_, _| {})
    }

    /// As [`Store::verify`], calling `progress(done, total)` as chunks are checked.
    pub fn verify_with_progress(&self, deep: bool, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<VerifyReport> {
        // Commits write slot pages with the state unlocked while they sync: hold them off
        // while the slots are read.
        // Only exclusion is needed: a thread that panicked in a commit does not stop a verify.
        let serial = self
            .inner
            .commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let st = self.lock()?;
        let inner = &self.inner;
        let sb = st.txn.last_sb.clone();
        let runs = sb.runs.clone();
        // Registered under the lock, so a gc either ran before or waits for the walk.
        let _walking = Verifying::start(self)?;
        // Other writer processes write slot pages under the commit lock (a reader cannot take
        // it: its file is open read-only, and a copy torn under it is a warning, not damage).
        let commit_lock = match self.inner.writable {
            true => Some(crate::store::writers::CommitLock::take(self.segments().io().as_ref())?),
            false => None,
        };
        let slot_problems = fixed_page_warnings(self)?;
        drop(commit_lock);
        drop((st, serial));
        let mut roots = Vec::new();
        let mut catalog_problems = Vec::new();
        match gc::catalog_entries(&Pread::new(&inner.segs), sb.catalog_root) {
            Ok(entries) => {
                for (k, v) in &entries {
                    if let Ok(Some(root)) = gc::tree_root_of(k, v) {
                        roots.push((describe_entry(k, v), root));
                    }
                }
                catalog_problems = dangling(&entries);
            }
            Err(e) => catalog_problems.push(format!("catalog: {e}")),
        }
        let mut report = crate::maint::verify::verify(
            &inner.segs,
            sb.catalog_root,
            &roots,
            &runs,
            (sb.pool, sb.pool_crc),
            deep,
            progress,
        )?;
        report.warnings = slot_problems;
        match &inner.recovery {
            Some(r) if r.lost => report.problems.push(crate::maint::verify::Problem {
                what: format!("a committed generation was lost: {}", r.note),
                affects: Default::default(),
                keys: Default::default(),
            }),
            Some(r) => report.warnings.push(r.note.clone()),
            None => {}
        }
        for what in catalog_problems {
            report.problems.push(crate::maint::verify::Problem {
                what,
                affects: Default::default(),
                keys: Default::default(),
            });
        }
        Ok(report)
    }
}

/// Catalog entries that name what the catalog does not hold: an image's top layer, a tag's
/// image, the layer of an annotations tree.
fn dangling(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    let keys: std::collections::HashSet<&[u8]> = entries.iter().map(|(k, _)| k.as_slice()).collect();
    let has_layer = |id: &[u8]| keys.contains([&[LAYER][..], id].concat().as_slice());
    let mut out = Vec::new();
    for (k, v) in entries {
        match (k.first(), k.len()) {
            (Some(&IMAGE), 33) => {
                let id: [u8; 32] = k[1..].try_into().unwrap_or([0; 32]);
                match ImageInfo::decode(id, v) {
                    Ok(i) => {
                        if let Some(l) = i.layer.filter(|l| !has_layer(&l.0)) {
                            out.push(format!(
                                "image {}: its top layer {l} is not in the catalog",
                                i.id_string()
                            ));
                        }
                    }
                    Err(e) => out.push(format!("{}: {e}", describe_key(k))),
                }
            }
            (Some(&ANNOTATIONS), 17) if !has_layer(&k[1..]) => {
                out.push(format!("{}: the layer is not in the catalog", describe_key(k)))
            }
            (Some(&b'n'), _) if k.get(1) == Some(&IMAGE) && !keys.contains([&[IMAGE][..], v].concat().as_slice()) => {
                out.push(format!(
                    "the tag '{}' names an image the catalog does not hold",
                    crate::escape_path(&k[2..])
                ))
            }
            _ => {}
        }
    }
    out
}

/// Damaged copies of the header and superblock pages. Each has a twin, so none of these
/// loses anything by itself; a writable open rewrites the damaged copy.
fn fixed_page_warnings(store: &Store) -> Result<Vec<String>> {
    let io = store.segments().io().as_ref();
    let mut out = Vec::new();
    for (i, off) in HEADER_OFFSETS.iter().enumerate() {
        if FileHeader::decode(&crate::txn::read_page(io, *off)?, store.path()).is_err() {
            out.push(format!(
                "file header copy {i} is damaged; the other copy holds the settings (a writable open rewrites it)"
            ));
        }
    }
    for (i, copies) in SLOT_OFFSETS.iter().enumerate() {
        for (j, off) in copies.iter().enumerate() {
            let page = crate::txn::read_page(io, *off)?;
            if Superblock::decode(&page).is_none() && page.iter().any(|&b| b != 0) {
                out.push(format!(
                    "superblock slot {i} copy {j} is not a valid superblock (torn by a crash mid-commit, or damaged); its twin or the other slot holds the store"
                ));
            }
        }
    }
    Ok(out)
}

/// Counts a verify walking the last commit without the lock, until dropped.
/// Also holds, in a reader, the generation it walks against other processes' gc.
struct Verifying<'a>(&'a crate::store::Inner, Option<crate::store::generations::Hold>);

impl<'a> Verifying<'a> {
    fn start(store: &'a Store) -> Result<Self> {
        let inner = &*store.inner;
        let hold = store.hold_generation()?;
        inner.verifying.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Verifying(inner, hold))
    }
}

impl Drop for Verifying<'_> {
    fn drop(&mut self) {
        self.0.verifying.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(hold) = self.1 {
            let _ = self.0.generations.put(self.0.segs.io().as_ref(), hold);
        }
    }
}

/// "layer NAME (ID)", "container ID", "volume NAME" for a catalog entry that names a tree.
fn describe_entry(k: &[u8], v: &[u8]) -> String {
    let id = || Id::from_slice(&k[1..]).map(|i| i.to_string()).unwrap_or_default();
    match k[0] {
        LAYER => match LayerInfo::decode(Id::from_slice(&k[1..]).unwrap_or(Id([0; 16])), v)
            .ok()
            .and_then(|l| l.name)
        {
            Some(n) => format!("layer {n} ({})", id()),
            None => format!("layer {}", id()),
        },
        CONTAINER => match ContainerInfo::decode(Id::from_slice(&k[1..]).unwrap_or(Id([0; 16])), v)
            .ok()
            .and_then(|c| c.name)
        {
            Some(n) => format!("container {n} ({})", id()),
            None => format!("container {}", id()),
        },
        ANNOTATIONS => format!("the annotations of layer {}", id()),
        IMAGE => crate::format::catalog::describe_key(k),
        _ => format!("volume {}", String::from_utf8_lossy(&k[1..])),
    }
}
