//! Replays the fuzz corpus (fuzz/corpus/<target>/*) through the same entry points the
//! cargo-fuzz targets call, so CI catches regressions without a fuzzer.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        run(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "the {target} corpus is empty");
}

#[test]
fn decode_corpus() {
    replay("decode", lstore::testing::fuzz::decode);
}

#[test]
fn open_corpus() {
    replay("open", lstore::testing::fuzz::open);
}

#[test]
fn ops_corpus() {
    replay("ops", lstore::testing::fuzz::ops);
}

#[test]
fn sealed_corpus() {
    replay("sealed", lstore::testing::fuzz::sealed);
}
