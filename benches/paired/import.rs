//! Peak memory of an import, measured in a process of its own: the runner re-executes itself
//! with `LSTORE_PAIRED_IMPORT=PATH`, the child imports 10 GiB (scaled by `LSTORE_BENCH_GIB`) in
//! 100k values into a new store at PATH and prints its peak resident memory; the parent then
//! uses that store for the open target.

use crate::data::{gib, noise};
use lstore::{Durability, Options, Store};
use std::path::Path;

const ENV: &str = "LSTORE_PAIRED_IMPORT";

fn status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// In the child: runs the import and exits. Returns in the parent.
pub fn child_main() {
    let Some(path) = std::env::var_os(ENV) else { return };
    let per = 10 * gib() / 100_000;
    let mut buf = noise(per, 10);
    let store = Store::create(&path, Options::default()).unwrap();
    let before = status("VmRSS:");
    let _ = std::fs::write("/proc/self/clear_refs", "5"); // VmHWM restarts from the current RSS
    let mut b = store.new_layer(None).unwrap();
    for i in 0..100_000usize {
        // Distinct values: two words differ per value, so nothing dedups.
        buf[..8].copy_from_slice(&(i as u64).to_le_bytes());
        buf[per / 2..per / 2 + 8].copy_from_slice(&(i as u64).to_le_bytes());
        b.put(format!("v/{i:06}"), &buf).unwrap();
        if i % 10_000 == 9_999 {
            store.commit_with(Durability::None).unwrap();
        }
    }
    b.finish(None).unwrap();
    store.commit().unwrap();
    println!("{}", status("VmHWM:").saturating_sub(before));
    std::process::exit(0);
}

/// In the parent: imports into `path` in a child process and returns the child's peak
/// resident memory above its baseline, in bytes.
pub fn in_child(path: &Path) -> u64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(ENV, path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
