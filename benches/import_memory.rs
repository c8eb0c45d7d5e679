//! Target 8's memory half: peak resident memory of a process importing 10 GiB in 100k values
//! (LSTORE_BENCH_GIB scales it). A one-shot measurement, printed; criterion times, it does
//! not watch memory.

use lstore::{Durability, Options, Store};

fn status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let gib: f64 = std::env::var("LSTORE_BENCH_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let total = (10.0 * gib * (1u64 << 30) as f64) as usize;
    let per = total / 100_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let mut buf = vec![0u8; per];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for c in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    let before = status("VmRSS:");
    let _ = std::fs::write("/proc/self/clear_refs", "5"); // reset VmHWM to the current RSS
    let t = std::time::Instant::now();
    let mut b = store.new_layer(None).unwrap();
    for i in 0..100_000usize {
        buf[..8].copy_from_slice(&(i as u64).to_le_bytes());
        b.put(format!("v/{i:06}"), &buf).unwrap();
        if i % 10_000 == 9_999 {
            store.commit_with(Durability::None).unwrap();
        }
    }
    b.finish(None).unwrap();
    store.commit().unwrap();
    let peak = status("VmHWM:");
    println!(
        "import_memory: {:.1} GiB in 100k values in {:.1} s; peak resident memory {} MiB above the {} MiB before \
         (heap, buffers and any map pages read; the 10 GiB itself is never resident)",
        total as f64 / (1u64 << 30) as f64,
        t.elapsed().as_secs_f64(),
        peak.saturating_sub(before) >> 20,
        before >> 20
    );
}
