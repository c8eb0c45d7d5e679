//! The space targets: `df` reads metadata only (bytes the disk delivered with a cold page
//! cache, against the chunk bytes it accounts for), and a store whose containers come and go
//! stays within twice its live data plus a segment over a thousand cycles.

use crate::data::{gib, noise};
use crate::harness::{timed, Goal, Row, Unit};
use lstore::{Options, Store};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes read so far from the block device holding `path` (every process's: run quietly).
fn device_reads(path: &Path) -> Option<u64> {
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (
        (dev >> 8) & 0xfff | ((dev >> 32) & !0xfff),
        (dev & 0xff) | ((dev >> 12) & !0xff),
    );
    let stat = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/stat")).ok()?;
    let sectors: u64 = stat.split_whitespace().nth(2)?.parse().ok()?;
    Some(sectors * 512)
}

/// Empties the page cache (root only); `false` when it cannot.
fn drop_caches() -> bool {
    let synced = std::process::Command::new("sync").status().is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// A store at `path` with `bytes` of incompressible chunks in an image (64 MiB values) and a
/// container that changed a little of it.
fn store_of(path: &Path, bytes: usize) {
    let store = Store::create(path, Options::default()).unwrap();
    let mut b = store.new_layer(None).unwrap();
    let piece = 64 << 20;
    // Even seeds: the noise generator makes a seed odd, so neighbours would repeat.
    for i in 0..bytes.div_ceil(piece) {
        b.put(
            format!("data/f{i}"),
            &noise(piece.min(bytes - i * piece), 2000 + 2 * i as u64),
        )
        .unwrap();
    }
    let img = b.finish(Some("img")).unwrap();
    let c = store.create_container(&img, Some("c")).unwrap();
    c.write_at("data/f0", 4096, b"changed").unwrap();
    store.commit().unwrap();
}

/// `df` on stores of 1, 4 and 16 GiB (times `LSTORE_BENCH_GIB`) with a cold page cache.
pub fn df_cold() -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let cold = drop_caches();
    let mut rows = Vec::new();
    let mut first: Option<(f64, f64)> = None;
    for (id, what, n) in [
        (
            "df1",
            "df of a store with 1 GiB of chunks, cold cache: bytes read from disk, share of the chunk bytes",
            1,
        ),
        ("df4", "the same with 4 GiB", 4),
        ("df16", "the same with 16 GiB", 16),
    ] {
        let path = dir.path().join(format!("s{n}"));
        store_of(&path, n * gib());
        // Five cold runs: the bytes read of the first, the median time (a cold read's latency
        // moves from run to run).
        let mut times = Vec::new();
        let mut first_read = None;
        let mut report = None;
        let mut cold_now = true;
        for _ in 0..5 {
            cold_now &= drop_caches();
            let before = device_reads(&path).unwrap_or(0);
            times.push(timed(|| {
                report = Some(Store::open_read_only(&path).unwrap().usage().unwrap());
            }));
            first_read.get_or_insert(device_reads(&path).unwrap_or(0).saturating_sub(before));
        }
        times.sort();
        let took = times[times.len() / 2];
        let read = first_read.unwrap_or(0);
        let r = report.unwrap();
        let chunk_bytes = r.stored_bytes.max(1) as f64;
        let metadata = r.live_bytes.saturating_sub(r.stored_bytes) as f64;
        let secs = took.as_secs_f64();
        rows.push(Row::scalar(
            id,
            what,
            Unit::Percent,
            read as f64 / chunk_bytes * 100.0,
            if cold_now { Goal::AtMost(1.0) } else { Goal::Info },
            format!(
                "{} read of {:.0} MiB of chunks, {:.1} MiB of metadata; df took {:.0} ms (median of 5 cold runs){}",
                read,
                chunk_bytes / (1 << 20) as f64,
                metadata / (1 << 20) as f64,
                secs * 1e3,
                if cold_now {
                    ""
                } else {
                    " (not root: the page cache stayed warm)"
                }
            ),
        ));
        match first {
            None => first = Some((secs, metadata)),
            Some((s1, m1)) if n == 16 => rows.push(Row::scalar(
                "dfg",
                "df time from 1 to 16 GiB, over the growth of the metadata walked",
                Unit::Ratio,
                (secs / s1) / (metadata / m1),
                if cold { Goal::AtMost(1.5) } else { Goal::Info },
                format!(
                    "time {:.1}x for {:.1}x the metadata and 16x the data",
                    secs / s1,
                    metadata / m1
                ),
            )),
            Some(_) => {}
        }
        std::fs::remove_file(&path).unwrap();
    }
    rows
}

/// `LSTORE_BENCH_CYCLES` (default 1000) cycles of: create a container, write 64 MiB, durable
/// commit, remove it, gc. The file's apparent and allocated sizes, at their peaks, over twice
/// the peak live data plus one segment.
pub fn reuse_cycles() -> Vec<Row> {
    let cycles: u64 = std::env::var("LSTORE_BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::create(&path, Options::default()).unwrap();
    let seg = store.stats().unwrap().segment_size;
    let mut b = store.new_layer(None).unwrap();
    b.put("etc/os-release", b"lstore").unwrap();
    let img = b.finish(Some("img")).unwrap();
    store.commit().unwrap();
    let mut data = noise(64 << 20, 7);
    let (mut peak_len, mut peak_alloc, mut peak_live) = (0u64, 0u64, 0u64);
    let mut sample = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        peak_len = peak_len.max(m.len());
        peak_alloc = peak_alloc.max(m.blocks() * 512);
    };
    let took = timed(|| {
        for k in 0..cycles {
            // Each cycle's blocks differ from the last's: nothing dedups.
            for block in data.chunks_mut(64 << 10) {
                block[..8].copy_from_slice(&k.to_le_bytes());
            }
            let c = store.create_container(&img, Some("c")).unwrap();
            for (i, piece) in data.chunks(1 << 20).enumerate() {
                c.write_at("var/lib/data", (i as u64) << 20, piece).unwrap();
            }
            store.commit().unwrap();
            peak_live = peak_live.max(store.usage().unwrap().live_bytes);
            sample(&path);
            drop(c);
            store.remove_container("c").unwrap();
            store.gc().unwrap();
            sample(&path);
        }
    });
    let bound = (2 * peak_live + seg) as f64;
    let detail = |peak: u64| {
        format!(
            "{cycles} cycles in {:.0} s ({:.1} GiB written); peak {:.0} MiB, live {:.0} MiB, segment {} MiB",
            took.as_secs_f64(),
            (cycles * 64) as f64 / 1024.0,
            peak as f64 / (1 << 20) as f64,
            peak_live as f64 / (1 << 20) as f64,
            seg >> 20
        )
    };
    vec![
        Row::scalar(
            "sz",
            "create, write 64 MiB, commit, rm, gc, repeated: peak apparent file size",
            Unit::Ratio,
            peak_len as f64 / bound,
            Goal::AtMost(1.0),
            detail(peak_len),
        ),
        Row::scalar(
            "sza",
            "the same: peak allocated size",
            Unit::Ratio,
            peak_alloc as f64 / bound,
            Goal::AtMost(1.0),
            detail(peak_alloc),
        ),
    ]
}
