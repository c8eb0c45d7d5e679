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

const PARALLEL_ENV: &str = "LSTORE_PAIRED_PARALLEL_WRITER";

/// In a child: makes `LSTORE_PAIRED_BYTES` compressible bytes and opens `STORE` (from
/// `LSTORE_PAIRED_PARALLEL_WRITER=STORE:NAME`), says `ready`, and on a line from its parent
/// writes them into container `NAME` as the parallel writer target does, then exits. So only
/// the writing is timed. Returns in the parent.
pub fn parallel_child_main() {
    let Some(spec) = std::env::var_os(PARALLEL_ENV) else {
        return;
    };
    let spec = spec.into_string().unwrap();
    let (store, name) = spec.rsplit_once(':').unwrap();
    let bytes: usize = std::env::var("LSTORE_PAIRED_BYTES").unwrap().parse().unwrap();
    let seed: u64 = name.bytes().map(u64::from).sum();
    let mut text = crate::data::compressible(bytes + 4096);
    // Each writer its own bytes: nothing dedups between them.
    text.rotate_left((seed as usize * 997) % 4096);
    text.truncate(bytes);
    let store = Store::open_waiting(store, std::time::Duration::from_secs(60)).unwrap();
    let c = store.container(name).unwrap();
    println!("ready");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    crate::targets::write_into(&store, &c, &text);
    std::process::exit(0);
}

/// Starts a writer process on container `name` of `store` writing `bytes`.
pub fn spawn_parallel(store: &Path, name: &str, bytes: usize) -> std::process::Child {
    let mut spec = store.as_os_str().to_owned();
    spec.push(":");
    spec.push(name);
    std::process::Command::new(std::env::current_exe().unwrap())
        .env(PARALLEL_ENV, spec)
        .env("LSTORE_PAIRED_BYTES", bytes.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a writer process to say it is ready.
pub fn wait_ready(child: &mut std::process::Child) {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "writer process did not start");
}

/// Tells a ready writer process to write.
pub fn go(child: &mut std::process::Child) {
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    child.stdin.as_mut().unwrap().flush().unwrap();
}
