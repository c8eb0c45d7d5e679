//! A store written by an earlier build (format v4, `tests/fixtures/v4.lstore.zst`, made with
//! the CLI: a folder import, a container with a volume, a commit, a later put) opens, verifies
//! and reads identically: code changes that claim to keep the bytes on disk are held to it.

use lstore::Store;

fn fixture() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.lstore");
    let packed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v4.lstore.zst")).unwrap();
    std::fs::write(&path, zstd::decode_all(&packed[..]).unwrap()).unwrap();
    (dir, path)
}

fn numbers() -> Vec<u8> {
    (1..=20000).map(|i| format!("{i}\n")).collect::<String>().into_bytes()
}

#[test]
fn a_v4_store_opens_verifies_and_reads_as_written() {
    let (_dir, path) = fixture();
    let before = std::fs::read(&path).unwrap();
    let store = Store::open_read_only(&path).unwrap();
    assert!(store.recovery().is_none());
    let report = store.verify(true).unwrap();
    assert!(report.is_clean(), "{report:?}");

    let base = store.layer("base").unwrap();
    assert_eq!(base.get("etc/hostname").unwrap().unwrap(), b"box\n");
    assert_eq!(base.get("usr/lib/numbers.txt").unwrap().unwrap(), numbers());
    let original = base.get("usr/lib/big.so").unwrap().unwrap();
    assert_eq!(original.len(), 100_000);

    let v2 = store.layer("web:v2").unwrap();
    assert_eq!(v2.info().parent, Some(base.id()));
    let mut patched = original.clone();
    patched[70_000..70_005].copy_from_slice(b"PATCH");
    assert_eq!(v2.get("usr/lib/big.so").unwrap().unwrap(), patched);
    assert_eq!(v2.get("etc/motd").unwrap().unwrap(), b"hello");
    assert!(
        v2.get("var/lib/db/rows").unwrap().is_none(),
        "volumes stay out of commits"
    );
    assert!(v2.get("etc/after").unwrap().is_none());

    let web = store.container("web").unwrap();
    assert_eq!(web.get("etc/after").unwrap().unwrap(), b"after");
    assert_eq!(web.get("var/lib/db/rows").unwrap().unwrap(), b"row1");
    let keys: Vec<Vec<u8>> = web.list("").unwrap().map(|v| v.key).collect();
    assert_eq!(keys.len(), 6);
    assert_eq!(store.volume("data").unwrap().keys, 1);
    assert_eq!(store.block_size(), 64 << 10);
    drop(store);
    assert!(
        std::fs::read(&path).unwrap() == before,
        "a read-only open changed the file"
    );
}
