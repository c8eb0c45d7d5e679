//! A writer in a process of its own, for the reader target: the runner re-executes itself with
//! `LSTORE_PAIRED_WRITER=STORE`; the child commits continuously into container `c` (a counter
//! and 4 KiB of data per commit, durable) until the file `STORE.stop` appears, and after each
//! commit prints `counter nanoseconds` (wall clock), so the parent knows when each commit
//! was published.

use crate::data::noise;
use lstore::Store;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const ENV: &str = "LSTORE_PAIRED_WRITER";

pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn stop_file(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(".stop");
    PathBuf::from(p)
}

/// In the child: writes and commits until told to stop, then exits. Returns in the parent.
pub fn child_main() {
    let Some(path) = std::env::var_os(ENV) else { return };
    let path = PathBuf::from(path);
    let store = Store::open(&path).unwrap();
    let c = store.container("c").unwrap();
    let mut n: u64 = c
        .get("counter")
        .unwrap()
        .map_or(0, |v| String::from_utf8(v).unwrap().parse().unwrap());
    let data = noise(4096, 12);
    let mut out = std::io::stdout().lock();
    while !stop_file(&path).exists() {
        n += 1;
        c.put("counter", n.to_string().as_bytes()).unwrap();
        c.write_at("data", (n % 256) * 4096, &data).unwrap();
        store.commit().unwrap();
        writeln!(out, "{n} {}", now_ns()).unwrap();
        out.flush().unwrap();
    }
    std::process::exit(0);
}

/// A writer child running on `store` until [`Writer::stop`].
pub struct Writer {
    child: std::process::Child,
    stop: PathBuf,
}

impl Writer {
    pub fn start(store: &Path) -> Writer {
        let stop = stop_file(store);
        let _ = std::fs::remove_file(&stop);
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .env(ENV, store)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Writer { child, stop }
    }

    /// Stops the child and returns `(counter, published at)` of each commit it made.
    pub fn stop(mut self) -> Vec<(u64, u64)> {
        std::fs::write(&self.stop, b"").unwrap();
        let mut stdout = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "writer child failed");
        stdout
            .lines()
            .map(|l| {
                let (a, b) = l.split_once(' ').unwrap();
                (a.parse().unwrap(), b.parse().unwrap())
            })
            .collect()
    }
}

impl Drop for Writer {
    /// A parent that panics does not leave the child writing.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
