use lstore::{Options, Store};

#[test]
fn basic_roundtrip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.lstore");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    {
        let store = Store::create(
            &path,
            Options {
                segment_size: 4 << 20,
                ..Default::default()
            },
        )
        .unwrap();
        let mut b = store.new_layer(None).unwrap();
        for i in 0..5000 {
            b.put(format!("k/{i:05}"), format!("value {i}").as_bytes()).unwrap();
        }
        b.put("big", &big).unwrap();
        let base = b.finish(Some("base")).unwrap();
        let c = store.create_container(&base, Some("c1")).unwrap();
        c.write_at("big", 100_000, b"HELLO").unwrap();
        c.delete("k/00007").unwrap();
        store.commit().unwrap();
        assert_eq!(base.get("k/00007").unwrap().unwrap(), b"value 7");
        assert!(c.get("k/00007").unwrap().is_none());
    }
    let store = Store::open(&path).unwrap();
    let base = store.layer("base").unwrap();
    assert_eq!(base.get("big").unwrap().unwrap(), big);
    for i in (0..5000).step_by(37) {
        assert_eq!(
            base.get(format!("k/{i:05}")).unwrap().unwrap(),
            format!("value {i}").as_bytes()
        );
    }
    let c = store.container("c1").unwrap();
    let mut exp = big.clone();
    exp[100_000..100_005].copy_from_slice(b"HELLO");
    assert_eq!(c.get("big").unwrap().unwrap(), exp);
    assert_eq!(c.list("k/").unwrap().count(), 4999);
    assert_eq!(base.list("k/").unwrap().count(), 5000);
}

#[test]
fn container_commit_keeps_container_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let base = store.new_layer(None).unwrap().finish(Some("L0")).unwrap();
    let c = store.create_container(&base, Some("C0")).unwrap();
    store.commit().unwrap();
    c.put("dir/k0", b"").unwrap();
    assert_eq!(c.list("").unwrap().count(), 1);
    let l = c.commit(Some("L1")).unwrap();
    assert_eq!(l.list("").unwrap().count(), 1);
    assert_eq!(c.list("").unwrap().count(), 1);
    store.commit().unwrap();
    drop((c, l, base));
    drop(store);
    let store = Store::open(dir.path().join("s")).unwrap();
    assert_eq!(store.container("C0").unwrap().list("").unwrap().count(), 1);
}
