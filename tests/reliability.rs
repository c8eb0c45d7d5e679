//! Damage: bit flips anywhere are caught or harmless, verify names what is damaged, salvage
//! saves what is intact, and a process killed mid-write leaves a committed state.

mod common;
use common::{fingerprint, lstore, ok, Fingerprint};
use lstore::{Error, Mount, Options, Store};
use std::path::Path;

/// Bytes unique to `tag` (no block of one equals a block of another, so nothing dedups).
fn pattern(len: usize, tag: u8) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new().update(&[tag]).finalize_xof().fill(&mut out);
    out
}

/// A small real store: two layers, a container with a volume, two commits.
fn build(path: &Path) -> (Fingerprint, Fingerprint) {
    let store = Store::create(
        path,
        Options {
            block_size: 4096,
            segment_size: 4 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let mut b = store.new_layer(None).unwrap();
    for i in 0..300 {
        b.put(format!("etc/file{i:03}"), format!("config {i}").as_bytes())
            .unwrap();
    }
    b.put("lib/big.so", &pattern(300_000, 1)).unwrap();
    let base = b.finish(Some("base")).unwrap();
    let mut b = store.new_layer(Some(&base)).unwrap();
    b.put("app/bin", &pattern(100_000, 2)).unwrap();
    let app = b.finish(Some("app")).unwrap();
    let c = store
        .create_container_with(&app, Some("web"), &[Mount::parse_volume_flag("logs:/var/log").unwrap()])
        .unwrap();
    c.write_at("lib/big.so", 5000, b"patched").unwrap();
    c.put("var/log/one", &pattern(20_000, 3)).unwrap();
    store.commit().unwrap();
    let prev = fingerprint(&store).unwrap();
    c.put("tmp/last", b"in the last commit").unwrap();
    store.commit().unwrap();
    (prev, fingerprint(&store).unwrap())
}

#[test]
fn every_bit_flip_is_caught_or_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let (prev, last) = build(&path);
    let len = std::fs::metadata(&path).unwrap().len();
    let tail = { Store::open(&path).unwrap().stats().unwrap().used_bytes + 24576 };
    let mut bytes = std::fs::read(&path).unwrap();
    let mut x = 0x1234_5678_9abc_def1u64;
    let (mut caught, mut harmless) = (0, 0);
    for trial in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Two in three flips land where records are written; the rest anywhere.
        let at = (if trial % 3 == 2 { x % len } else { x % tail }) as usize;
        let bit = 1u8 << (x >> 60 & 7);
        bytes[at] ^= bit;
        std::fs::write(&path, &bytes).unwrap();
        match Store::open(&path) {
            Err(Error::Corrupt(_) | Error::NotAStore(_) | Error::UnsupportedVersion { .. }) => caught += 1,
            Err(e) => panic!("flip at {at}: open failed with an untyped kind of error: {e}"),
            Ok(store) => {
                let report = store.verify(true).unwrap();
                if !report.is_clean() {
                    caught += 1;
                } else {
                    let fp = fingerprint(&store)
                        .unwrap_or_else(|e| panic!("flip at {at}: verify clean but a read failed: {e}"));
                    // A damaged newest superblock, or damage in the newest commit's records (which
                    // open cannot tell from a torn write), rolls back to the commit before, with
                    // a warning.
                    let fell_back = !report.warnings.is_empty() && fp == prev;
                    assert!(
                        fp == last || fell_back,
                        "flip at {at} changed data without verify noticing"
                    );
                    harmless += 1;
                }
            }
        }
        bytes[at] ^= bit;
    }
    assert!(caught > 100, "caught {caught}, harmless {harmless}");
}

#[test]
fn verify_names_the_damage_and_salvage_saves_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    build(&path);
    ok(&path, &["verify", "--deep"]);
    // Damage one block of app/bin (its bytes are unique in the file).
    let mut bytes = std::fs::read(&path).unwrap();
    let needle = &pattern(100_000, 2)[40_960..41_000];
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the block is stored raw");
    bytes[at + 10] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let o = lstore(&path, &["verify", "--deep", "--json"], None);
    assert!(!o.status.success(), "verify exits non-zero on damage");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clean"], false);
    let p = &v["problems"][0];
    assert!(p["what"].as_str().unwrap().contains("checksum"), "{p}");
    let affects: Vec<&str> = p["affects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(affects.iter().any(|a| a.starts_with("layer app")), "{affects:?}");
    assert!(affects.iter().any(|a| a.starts_with("container web")), "{affects:?}");
    assert!(!affects.iter().any(|a| a.starts_with("layer base")), "{affects:?}");
    assert_eq!(p["keys"], serde_json::json!(["app/bin"]));
    // Reading the damaged value is an error, never the damaged bytes.
    let store = Store::open_read_only(&path).unwrap();
    assert!(matches!(
        store.layer("app").unwrap().get("app/bin"),
        Err(Error::Corrupt(_))
    ));
    let mut buf = [0u8; 100];
    assert_eq!(
        store.layer("app").unwrap().read_at("app/bin", 0, &mut buf).unwrap(),
        100,
        "undamaged blocks still read"
    );
    drop(store);

    let dst = dir.path().join("saved");
    let o = lstore(&path, &["salvage", path.to_str().unwrap(), dst.to_str().unwrap()], None);
    assert!(!o.status.success(), "salvage reports what it lost");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("saved layer base"), "{text}");
    assert!(
        text.contains("LOST layer app: key app/bin: the block at offset"),
        "{text}"
    );
    ok(&dst, &["verify", "--deep"]);
    let saved = Store::open(&dst).unwrap();
    assert!(saved.layer("base").unwrap().get("lib/big.so").unwrap().unwrap() == pattern(300_000, 1));
    // The value is kept, its unreadable block a hole of zeros (reported above).
    let bin = saved.layer("app").unwrap().get("app/bin").unwrap().unwrap();
    let want = pattern(100_000, 2);
    assert_eq!(bin.len(), want.len());
    assert!(bin[40_960..41_000].iter().all(|&b| b == 0), "the bad block is zeros");
    let differs = (0..want.len()).filter(|&i| bin[i] != want[i]);
    let (lo, hi) = (differs.clone().min().unwrap(), differs.max().unwrap());
    assert!(
        hi - lo < 64 << 10 && lo <= 40_960 && hi >= 41_000,
        "only that block differs"
    );
    let web = saved.container("web").unwrap();
    assert_eq!(web.get("tmp/last").unwrap().unwrap(), b"in the last commit");
    assert!(
        web.get("var/log/one").unwrap().unwrap() == pattern(20_000, 3),
        "volume data saved"
    );
    let mut want = pattern(300_000, 1);
    want[5000..5007].copy_from_slice(b"patched");
    assert!(web.get("lib/big.so").unwrap().unwrap() == want);
    assert_eq!(
        saved.layer("app").unwrap().info().parent,
        Some(saved.layer("base").unwrap().id())
    );
}

#[test]
fn a_killed_writer_leaves_a_committed_prefix() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    for round in 0..6u64 {
        let path = dir.path().join(format!("k{round}"));
        ok(&path, &["init", "--segment-size", "4M"]);
        // This test binary again, running only `committing_writer` below on the store.
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "committing_writer", "--nocapture", "--test-threads", "1"])
            .env(WRITER_STORE, &path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let wait = std::time::Duration::from_millis(20 + round * 37);
        let mut acked = 0u64;
        // The clock starts at the first acknowledged commit, so a slow process start never
        // leaves a store without the writer's container.
        let mut t = None::<std::time::Instant>;
        while t.is_none_or(|t| t.elapsed() < wait) {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(n) = l.split("acked ").nth(1) {
                        acked = n.trim().parse().unwrap();
                        t.get_or_insert_with(std::time::Instant::now);
                    }
                }
                _ => break,
            }
        }
        assert!(acked > 0, "round {round}: the writer acknowledged nothing");
        child.kill().unwrap();
        child.wait().unwrap();
        let store = Store::open(&path).unwrap();
        let c = store.container("torture").unwrap();
        // Every acknowledged commit is there; past it, at most a prefix of later ones.
        let mut seen = 0;
        while let Some(v) = c.get(format!("k{seen}")).unwrap() {
            assert_eq!(v, format!("value {seen}").repeat(1 + (seen as usize % 50)).into_bytes());
            seen += 1;
        }
        assert!(
            seen >= acked,
            "round {round}: acknowledged {acked} commits, found {seen}"
        );
        assert!(store.verify(true).unwrap().is_clean());
    }
}

const WRITER_STORE: &str = "LSTORE_TEST_WRITER_STORE";

/// The process the kill test kills: commits one small put after another on the store named by
/// `LSTORE_TEST_WRITER_STORE`, printing "acked N" after each durable commit. Does nothing
/// when run as an ordinary test.
#[test]
fn committing_writer() {
    let Some(path) = std::env::var_os(WRITER_STORE) else {
        return;
    };
    let store = Store::open(path).unwrap();
    let image = store.new_layer(None).unwrap().finish(None).unwrap();
    let c = store.create_container(&image, Some("torture")).unwrap();
    store.commit().unwrap();
    for i in 0..100_000u64 {
        c.put(
            format!("k{i}"),
            format!("value {i}").repeat(1 + (i as usize % 50)).as_bytes(),
        )
        .unwrap();
        store.commit().unwrap();
        println!("acked {}", i + 1);
    }
}

/// Every single-bit flip in the header and superblock pages (six pages, 196,608 bits): the
/// store still opens at its last commit, with nothing lost and nothing rolled back.
#[test]
fn a_bit_flip_anywhere_in_the_header_or_superblocks_loses_no_commit() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let store = Store::create(&path, Options::default()).unwrap();
        let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
        let c = store.create_container(&img, Some("c")).unwrap();
        for i in 0..3 {
            c.put(format!("k{i}"), b"acknowledged").unwrap();
            store.commit().unwrap();
        }
        c.delete("k0").unwrap();
        store.commit().unwrap();
    }
    let (generation, keys) = {
        let s = Store::open_read_only(&path).unwrap();
        let keys: Vec<Vec<u8>> = s.container("c").unwrap().list("").unwrap().map(|i| i.key).collect();
        (s.stats().unwrap().generation, keys)
    };
    const FIXED: usize = 6 * 4096;
    let pristine = std::fs::read(&path).unwrap();
    std::thread::scope(|s| {
        for half in 0..2 {
            let copy = dir.path().join(format!("copy{half}"));
            std::fs::write(&copy, &pristine).unwrap();
            let keys = &keys;
            let pristine = &pristine;
            s.spawn(move || {
                let f = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
                for at in (half * FIXED / 2)..((half + 1) * FIXED / 2) {
                    for bit in 0..8 {
                        f.write_all_at(&[pristine[at] ^ (1 << bit)], at as u64).unwrap();
                        let store =
                            Store::open_read_only(&copy).unwrap_or_else(|e| panic!("flip of bit {bit} at {at}: {e}"));
                        assert_eq!(
                            store.stats().unwrap().generation,
                            generation,
                            "flip of bit {bit} at {at}"
                        );
                        if bit == 0 && at % 512 == 0 {
                            let now: Vec<Vec<u8>> =
                                store.container("c").unwrap().list("").unwrap().map(|i| i.key).collect();
                            assert_eq!(&now, keys, "flip at {at}");
                        }
                    }
                    f.write_all_at(&pristine[at..at + 1], at as u64).unwrap();
                }
            });
        }
    });
}

/// A writable open rewrites a damaged copy of the header and of the superblock it opened
/// at, from the good copy, so one damaged page never becomes two over time.
#[test]
fn a_writable_open_repairs_a_damaged_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let store = Store::create(&path, Options::default()).unwrap();
        store.new_layer(None).unwrap().finish(Some("img")).unwrap();
        store.commit().unwrap();
    }
    let pristine = std::fs::read(&path).unwrap();
    let mut bytes = pristine.clone();
    // The header page and both copies of both slots each lose a byte in their first half.
    for page in 0..5 {
        bytes[page * 4096 + 100] ^= 0xff;
    }
    // One copy per slot must stay whole: put the twins back.
    bytes[8192..12288].copy_from_slice(&pristine[8192..12288]);
    bytes[16384..20480].copy_from_slice(&pristine[16384..20480]);
    std::fs::write(&path, &bytes).unwrap();
    let report = Store::open_read_only(&path).unwrap().verify(false).unwrap();
    assert!(report.warnings.len() >= 2, "{report:?}");
    drop(Store::open(&path).unwrap());
    let repaired = std::fs::read(&path).unwrap();
    assert!(repaired[..4096] == pristine[..4096], "the header page is whole again");
    let store = Store::open_read_only(&path).unwrap();
    assert!(store.layer("img").is_ok());
    let report = store.verify(true).unwrap();
    let slot_warnings = report.warnings.iter().filter(|w| w.contains("superblock")).count();
    assert!(slot_warnings <= 1, "the opened slot was repaired: {report:?}");
}
