//! Whole-store upkeep: garbage collection, space accounting and verification, each driving
//! its engine module (`gc`, `usage`, `verify`) under the store's lock.

use super::*;

impl Store {
    /// Collects garbage: finds what is live (every layer, container and volume, and every
    /// snapshot an open [`Layer`] handle reads), moves the live records out of segments that
    /// are almost all garbage (under 5% live), commits durably, then gives every dead page
    /// back to the file system (hole punching), so the file's allocated size drops. A crash at
    /// any point leaves the last commit intact.
    pub fn gc(&self) -> Result<GcReport> {
        self.gc_with(0.05)
    }

    /// As [`Store::gc`], evacuating segments whose live share is below `threshold` (0..=1):
    /// more moving, less fragmentation.
    pub fn gc_with(&self, threshold: f64) -> Result<GcReport> {
        if self.inner.builders.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            return Err(Error::InUse(
                "a layer is being built; finish or drop it before gc".into(),
            ));
        }
        self.write(|inner, st| {
            // gc's commits are about giving space back, not zeroing more ahead.
            st.no_zero_ahead = true;
            let r = collect(inner, st, threshold);
            st.no_zero_ahead = false;
            r
        })
    }
}

/// gc's work under the writer lock; see [`Store::gc`].
fn collect(inner: &Inner, st: &mut State, threshold: f64) -> Result<GcReport> {
    commit_locked(inner, st, Durability::Immediate)?;
    let seg_size = inner.header.segment_size;
    let tail_seg = (st.app.tail() - DATA_START) / seg_size;
    let segments = inner.segs.segment_count();
    let pinned_roots: Vec<u64> = inner
        .pins
        .lock()
        .map(|p| p.keys().copied().collect())
        .unwrap_or_default();
    let catalog_root = st.last_sb.catalog_root;
    let view = Writer::view(&inner.segs, &st.app);
    let mut live = gc::Mark::new(&view, seg_size, segments);
    // The catalog itself is rebuilt below, so its old nodes are not kept.
    live.catalog_trees(catalog_root)?;
    let mut pinned = gc::Mark::new(&view, seg_size, segments);
    for r in &pinned_roots {
        pinned.tree(*r)?;
    }
    let freed_before = gc::freed_segments(&view, catalog_root)?;
    let victims: Vec<u64> = (0..tail_seg)
        .filter(|s| !freed_before.contains(s) && pinned.live[*s as usize] == 0)
        .filter(|s| (live.live[*s as usize] as f64) < threshold * seg_size as f64)
        .collect();
    let mut report = GcReport {
        live_records: live.records,
        live_bytes: live.bytes,
        segments_scanned: segments,
        ..Default::default()
    };
    let old_tail = st.app.tail();
    let allocated_before = inner.segs.io().allocated()?;
    let chunks = std::mem::take(&mut live.chunks);
    let mut is_victim = vec![false; segments as usize];
    for v in &victims {
        is_victim[*v as usize] = true;
    }
    // What stays where it is: live and pinned records outside the victim segments.
    let mut keep: Vec<(u64, u64)> = live.ranges.iter().chain(pinned.ranges.iter()).copied().collect();
    keep.retain(|(a, _)| !is_victim[((a - DATA_START) / seg_size) as usize]);
    keep.sort_unstable();
    keep.dedup();
    let kept_bytes: u64 = keep.iter().map(|r| r.1).sum();
    // The index is always rebuilt from live chunks: dead ones must not be found by dedup.
    let mut w = Writer {
        segs: &inner.segs,
        app: &mut st.app,
    };
    let mut ev = gc::Evacuate::new(&mut w, seg_size, is_victim);
    let runs = ev.index(&chunks)?;
    let new_catalog = ev.catalog(catalog_root, &victims)?;
    report.records_moved = ev.records_moved;
    report.bytes_moved = ev.bytes_moved;
    st.catalog = Tree::at(new_catalog);
    st.chunks = ChunkIndex::new(runs);
    st.containers.clear();
    st.mounts.clear();
    st.volumes.clear();
    // Set before the commit so that the superblock records it (the commit appends no more).
    st.app.set_used(kept_bytes + (st.app.tail() - old_tail));
    commit_locked(inner, st, Durability::Immediate)?;
    // Zeros written ahead of the tail are allocated but hold nothing.
    if let Some((at, len)) = st.app.take_zeroed() {
        let start = at.div_ceil(4096) * 4096;
        if at + len > start {
            inner.segs.io().punch_hole(start, at + len - start)?;
        }
    }
    // Only now, with the new state durable, give the dead bytes back.
    for v in &victims {
        inner.segs.io().punch_hole(DATA_START + v * seg_size, seg_size)?;
    }
    for s in (0..=tail_seg).filter(|s| !freed_before.contains(s) && !victims.contains(s)) {
        let start = DATA_START + s * seg_size;
        let end = (start + seg_size).min(old_tail);
        for (a, len) in gc::dead_ranges(&mut keep, start, end) {
            inner.segs.io().punch_hole(a, len)?;
        }
    }
    report.segments_freed = victims.len() as u64;
    report.bytes_freed = allocated_before.saturating_sub(inner.segs.io().allocated()?);
    Ok(report)
}

impl Store {
    /// Space accounting as of the last commit: per layer, container and volume, logical,
    /// referenced and exclusive bytes, and the store's totals. Walks metadata, never data.
    pub fn usage(&self) -> Result<SpaceReport> {
        let stats = self.stats()?;
        let layers = self.layers()?;
        let volumes = self.volumes()?;
        let st = self.lock()?;
        let inner = &self.inner;
        let view = Writer::view(&inner.segs, &st.app);
        let mut containers = Vec::new();
        for (id, v) in self.scan_catalog(&st, CONTAINER)? {
            containers.push(ContainerInfo::decode(id, &v)?);
        }
        let roots: Vec<u64> = layers
            .iter()
            .map(|l| l.root)
            .chain(containers.iter().map(|c| c.root))
            .chain(volumes.iter().map(|v| v.root))
            .collect();
        let mut owners = crate::usage::Owners::new(&view);
        for (t, r) in roots.iter().enumerate() {
            owners.walk(t, *r)?;
        }
        let (excl, stored, distinct_raw, _) = owners.finish(roots.len());
        let mut cache = inner
            .totals
            .lock()
            .map_err(|_| Error::InUse("usage cache poisoned".into()))?;
        let mut totals = Vec::with_capacity(roots.len());
        for r in &roots {
            totals.push(cache.tree(&view, *r)?);
        }
        drop(cache);
        let mut live = gc::Mark::new(&view, inner.header.segment_size, inner.segs.segment_count());
        live.catalog(st.last_sb.catalog_root)?;
        for run in st.chunks.runs() {
            live.nodes(run.root)?;
        }
        let referenced_raw: u64 = totals.iter().map(|t| t.raw()).sum();
        let stored_payload: u64 = owners_payload(&view, &live.chunks)?;
        let logical_bytes = totals.iter().map(|t| t.usage(0).logical_bytes).sum();
        let mut usage = totals.iter().zip(excl).map(|(t, e)| t.usage(e));
        let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        Ok(SpaceReport {
            file_allocated_bytes: inner.segs.io().allocated()?,
            logical_bytes,
            stored_bytes: stored,
            live_bytes: live.bytes,
            garbage_bytes: stats.used_bytes.saturating_sub(live.bytes),
            dedup_ratio: ratio(referenced_raw, distinct_raw),
            compression_ratio: ratio(distinct_raw, stored_payload),
            layers: layers
                .into_iter()
                .map(|l| (l, usage.next().unwrap_or_default()))
                .collect(),
            containers: containers
                .into_iter()
                .map(|c| (c, usage.next().unwrap_or_default()))
                .collect(),
            volumes: volumes
                .into_iter()
                .map(|v| (v, usage.next().unwrap_or_default()))
                .collect(),
            stats,
        })
    }

    /// Checks the last commit: superblocks, every reachable record's crc, tree invariants, the
    /// chunk index, and with `deep` every chunk's blake3. See [`crate::verify`].
    pub fn verify(&self, deep: bool) -> Result<VerifyReport> {
        self.verify_with_progress(deep, &|_, _| {})
    }

    /// As [`Store::verify`], calling `progress(done, total)` as chunks are checked.
    pub fn verify_with_progress(&self, deep: bool, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<VerifyReport> {
        let st = self.lock()?;
        let inner = &self.inner;
        let sb = st.last_sb.clone();
        let runs = sb.runs.clone();
        drop(st);
        let mut slot_problems = Vec::new();
        for (i, off) in SLOT_OFFSETS.iter().enumerate() {
            let page = read_page(inner.segs.io().as_ref(), *off)?;
            if Superblock::decode(&page).is_none() && page.iter().any(|&b| b != 0) {
                slot_problems.push(format!(
                    "superblock slot {i} does not hold a valid superblock (torn by a crash mid-commit, or damaged); the other slot holds the store"
                ));
            }
        }
        let mut roots = Vec::new();
        let mut catalog_problem = None;
        match gc::catalog_entries(&inner.segs, sb.catalog_root) {
            Ok(entries) => {
                for (k, v) in entries {
                    if let Ok(Some(root)) = gc::tree_root_of(&k, &v) {
                        roots.push((describe_entry(&k, &v), root));
                    }
                }
            }
            Err(e) => catalog_problem = Some(format!("catalog: {e}")),
        }
        let mut report = crate::verify::verify(&inner.segs, sb.catalog_root, &roots, &runs, deep, progress)?;
        report.warnings = slot_problems;
        report.warnings.extend(inner.recovery.clone());
        if let Some(what) = catalog_problem {
            report.problems.push(crate::verify::Problem {
                what,
                affects: Default::default(),
                keys: Default::default(),
            });
        }
        Ok(report)
    }
}

/// Where the bytes go (`df`), as of the last commit.
#[derive(Clone, Debug)]
pub struct SpaceReport {
    pub stats: Stats,
    /// What the file system has allocated for the file (`du`).
    pub file_allocated_bytes: u64,
    /// Sum of value sizes over all layers, containers and volumes, holes excluded.
    pub logical_bytes: u64,
    /// Stored bytes of the distinct live chunks.
    pub stored_bytes: u64,
    /// Bytes of all live records (chunks, tree and map nodes, catalog, index).
    pub live_bytes: u64,
    /// Record bytes no longer reachable: what gc can give back.
    pub garbage_bytes: u64,
    /// Raw bytes referenced, counted per reference, over raw bytes of distinct chunks.
    pub dedup_ratio: f64,
    /// Raw bytes of distinct chunks over their stored payload bytes.
    pub compression_ratio: f64,
    pub layers: Vec<(LayerInfo, TreeUsage)>,
    pub containers: Vec<(ContainerInfo, TreeUsage)>,
    pub volumes: Vec<(VolumeInfo, TreeUsage)>,
}

/// Stored payload bytes (without record headers) of distinct chunks.
fn owners_payload<S: crate::segment::Source + ?Sized>(src: &S, chunks: &[u64]) -> Result<u64> {
    let mut total = 0;
    for &c in chunks {
        total += src.record(c)?.header.stored_len as u64;
    }
    Ok(total)
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
        _ => format!("volume {}", String::from_utf8_lossy(&k[1..])),
    }
}
