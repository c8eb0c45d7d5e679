//! A store written by an earlier build in format v4 (`tests/fixtures/v4.lstore.zst`, made with
//! the CLI: a folder import, a container with a volume, a commit, a later put) is refused with
//! a clear error naming both versions, by every way in: no migration before 1.0, and no
//! misreading either.

use lstore::{Error, Store};

fn fixture() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.lstore");
    let packed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v4.lstore.zst")).unwrap();
    std::fs::write(&path, zstd::decode_all(&packed[..]).unwrap()).unwrap();
    (dir, path)
}

#[test]
fn a_v4_store_is_refused_naming_both_versions_and_left_untouched() {
    let (dir, path) = fixture();
    let before = std::fs::read(&path).unwrap();
    let refused = |r: lstore::Result<Store>| match r {
        Err(Error::UnsupportedVersion { found: 4, supported }) => assert!(supported > 4),
        Err(e) => panic!("expected UnsupportedVersion, got {e}"),
        Ok(_) => panic!("a v4 store opened"),
    };
    refused(Store::open_read_only(&path));
    refused(Store::open(&path));
    let e = Store::open(&path).unwrap_err().to_string();
    assert!(e.contains('4') && e.contains("version"), "{e}");
    assert!(matches!(
        lstore::salvage(&path, &dir.path().join("copy")),
        Err(Error::UnsupportedVersion { found: 4, .. })
    ));
    assert!(
        std::fs::read(&path).unwrap() == before,
        "a refused open changed the file"
    );
}
