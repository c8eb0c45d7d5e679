//! Helpers shared by the CLI tests: run `lstore` as a separate process.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

pub fn lstore(store: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lstore"));
    cmd.arg("--store").arg(store).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut sin = child.stdin.take().unwrap();
        if let Some(d) = stdin {
            sin.write_all(d).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

pub fn ok(store: &Path, args: &[&str]) -> String {
    let o = lstore(store, args, None);
    assert!(
        o.status.success(),
        "lstore {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A failing command prints exactly one line on stderr and exits non-zero.
pub fn fails(store: &Path, args: &[&str], needle: &str) {
    let o = lstore(store, args, None);
    assert!(!o.status.success(), "lstore {args:?} should fail");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one line on stderr, got: {err}");
    assert!(
        err.to_lowercase().contains(needle),
        "stderr of {args:?} should mention '{needle}': {err}"
    );
}

/// What a store shows: every layer's and container's keys with the blake3 of their values.
pub type Fingerprint = BTreeMap<String, Vec<(String, [u8; 32])>>;

pub fn fingerprint(store: &lstore::Store) -> lstore::Result<Fingerprint> {
    let mut fp = Fingerprint::new();
    for l in store.layers()? {
        let layer = store.layer_by_id(l.id)?;
        let mut items = Vec::new();
        for i in layer.list("")? {
            let k = i?.key;
            let v = layer.get(&k)?.unwrap_or_default();
            items.push((String::from_utf8_lossy(&k).into_owned(), *blake3::hash(&v).as_bytes()));
        }
        fp.insert(format!("layer {}", l.name.unwrap_or_else(|| l.id.to_string())), items);
    }
    for c in store.containers()? {
        let h = store.container(&c.id.to_string())?;
        let mut items = Vec::new();
        for i in h.list("")? {
            let v = h.get(&i.key)?.unwrap_or_default();
            items.push((
                String::from_utf8_lossy(&i.key).into_owned(),
                *blake3::hash(&v).as_bytes(),
            ));
        }
        fp.insert(
            format!("container {}", c.name.unwrap_or_else(|| c.id.to_string())),
            items,
        );
    }
    Ok(fp)
}

/// Incompressible, non-repeating bytes (xorshift), the same for the same seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = vec![0u8; len];
    for c in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    v
}

/// A new store at `path` with the smallest segments (4 MiB), so that a few MiB of data fill
/// several and gc's choices show; `block_size` overrides the default.
pub fn small_segment_store(path: &Path, block_size: Option<u64>) -> lstore::Store {
    let defaults = lstore::Options::default();
    let opts = lstore::Options {
        segment_size: 4 << 20,
        block_size: block_size.unwrap_or(defaults.block_size),
        ..defaults
    };
    lstore::Store::create(path, opts).unwrap()
}

/// A tmpfs of `size` (such as `"16m"`) mounted at `dir/full` until dropped: a real file
/// system that fills up. Mounting needs root, as CI has.
pub struct Tmpfs(pub std::path::PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        let mnt = dir.join("full");
        std::fs::create_dir(&mnt).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .status()
            .unwrap();
        assert!(mounted.success(), "this test mounts a tmpfs and needs root");
        Tmpfs(mnt)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A small deterministic generator (xorshift), so a failing sequence is found again by its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A new store at `path` compressing with zstd level 3 (so layers being built pack their
/// small blocks and cluster their whole ones).
pub fn zstd_store(path: &Path) -> lstore::Store {
    lstore::Store::create(
        path,
        lstore::Options {
            compression: lstore::Compression::Zstd(3),
            ..Default::default()
        },
    )
    .unwrap()
}

/// What `files` cost written by a container, in a zstd store of their own at `path`: each
/// block compressed alone, as containers store them (never packed nor clustered).
pub fn cost_in_a_container(path: &Path, files: &[(String, Vec<u8>)]) -> u64 {
    let store = zstd_store(path);
    let empty = store.new_layer(None).unwrap().finish(Some("empty")).unwrap();
    let c = store.create_container(&empty, Some("c")).unwrap();
    for (p, data) in files {
        c.put(p, data).unwrap();
    }
    store.commit().unwrap();
    store.usage().unwrap().stored_bytes
}

/// Removes the layer `name`, commits, and runs gc.
pub fn remove_layer_and_gc(store: &lstore::Store, name: &str) {
    store.remove_layer(name).unwrap();
    store.commit().unwrap();
    store.gc().unwrap();
}

/// The bytes only the store's first container holds, as `df` counts them.
pub fn first_container_exclusive_bytes(store: &lstore::Store) -> u64 {
    store.usage().unwrap().containers[0].1.exclusive_bytes
}

/// A layer named `name` on `parent` holding `files`, built with `put` and committed.
pub fn build_layer(
    store: &lstore::Store,
    parent: Option<&lstore::Layer>,
    files: &[(String, Vec<u8>)],
    name: &str,
) -> lstore::Layer {
    let mut b = store.new_layer(parent).unwrap();
    for (path, data) in files {
        b.put(path, data).unwrap();
    }
    let layer = b.finish(Some(name)).unwrap();
    store.commit().unwrap();
    layer
}
