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

#[test]
fn value_handles_read_write_and_seek_like_files() {
    use std::io::{Read, Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(
        dir.path().join("s"),
        Options {
            block_size: 4096,
            ..Default::default()
        },
    )
    .unwrap();
    let mut b = store.new_layer(None).unwrap();
    b.put("log", &vec![b'.'; 10_000]).unwrap();
    let image = b.finish(None).unwrap();
    let c = store.create_container(&image, None).unwrap();
    let mut h = c.open("log").unwrap();
    h.seek(SeekFrom::Start(4094)).unwrap();
    h.write_all(b"HELLO").unwrap();
    assert_eq!(h.seek(SeekFrom::End(-2)).unwrap(), 9998);
    h.write_all(b"END!").unwrap();
    h.seek(SeekFrom::Current(-9)).unwrap();
    let mut tail = String::new();
    h.read_to_string(&mut tail).unwrap();
    assert_eq!(tail, ".....END!");
    let mut new = c.open("new/file").unwrap();
    new.write_all(b"created on open").unwrap();
    store.commit().unwrap();
    let v = c.get("log").unwrap().unwrap();
    assert_eq!((&v[4094..4099], v.len()), (&b"HELLO"[..], 10_002));
    assert_eq!(c.get("new/file").unwrap().unwrap(), b"created on open");
    // The image is untouched, and its reader seeks too.
    let mut r = image.open("log").unwrap();
    r.seek(SeekFrom::Start(4094)).unwrap();
    let mut five = [0u8; 5];
    r.read_exact(&mut five).unwrap();
    assert_eq!(&five, b".....");
    assert!(r.seek(SeekFrom::Current(-100_000)).is_err());
}

#[test]
fn a_sparse_10_gib_value_costs_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(
        dir.path().join("s"),
        Options {
            block_size: 4096,
            ..Default::default()
        },
    )
    .unwrap();
    let img = store.new_layer(None).unwrap().finish(None).unwrap();
    store.commit().unwrap();
    let before = store.stats().unwrap().used_bytes;
    let c = store.create_container(&img, None).unwrap();
    c.write_at("disk.raw", (10 << 30) - 4096, &[0xAB; 4096]).unwrap();
    store.commit().unwrap();
    let grew = store.stats().unwrap().used_bytes - before;
    assert!(
        grew < 64 << 10,
        "a 10 GiB sparse value with 4 KiB written grew the store by {grew} bytes"
    );
    let info = c.stat("disk.raw").unwrap().unwrap();
    assert_eq!(info.size, 10 << 30);
    let mut buf = [1u8; 8192];
    assert_eq!(c.read_at("disk.raw", (10 << 30) - 8192, &mut buf).unwrap(), 8192);
    assert!(buf[..4096].iter().all(|&b| b == 0) && buf[4096..].iter().all(|&b| b == 0xAB));
}

#[test]
fn containers_are_written_from_many_threads_while_layers_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let mut b = store.new_layer(None).unwrap();
    for i in 0..2000 {
        b.put(format!("k{i}"), format!("image {i}").as_bytes()).unwrap();
    }
    let image = b.finish(Some("img")).unwrap();
    store.commit().unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = store.clone();
            let image = image.clone();
            s.spawn(move || {
                let c = store.create_container(&image, Some(&format!("c{t}"))).unwrap();
                for i in 0..500 {
                    c.put(format!("k{i}"), format!("thread {t} wrote {i}").as_bytes())
                        .unwrap();
                    if i % 100 == 0 {
                        store.commit().unwrap();
                    }
                }
            });
        }
        for _ in 0..2 {
            let image = image.clone();
            s.spawn(move || {
                for round in 0..20 {
                    for i in (round..2000).step_by(97) {
                        assert_eq!(
                            image.get(format!("k{i}")).unwrap().unwrap(),
                            format!("image {i}").as_bytes()
                        );
                    }
                }
            });
        }
    });
    store.commit().unwrap();
    for t in 0..4 {
        let c = store.container(&format!("c{t}")).unwrap();
        assert_eq!(
            c.get("k42").unwrap().unwrap(),
            format!("thread {t} wrote 42").as_bytes()
        );
        assert_eq!(c.get("k1999").unwrap().unwrap(), b"image 1999");
    }
    assert_eq!(image.get("k42").unwrap().unwrap(), b"image 42");
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn the_store_and_its_handles_are_send_and_sync() {
    assert_send_sync::<Store>();
    assert_send_sync::<lstore::Layer>();
    assert_send_sync::<lstore::Container>();
}

#[test]
fn get_ref_borrows_small_values_and_assembles_large_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let mut b = store.new_layer(None).unwrap();
    b.put("small", b"inline bytes").unwrap();
    let attrs = lstore::Attrs {
        mode: 0o644,
        ..Default::default()
    };
    b.put_with(
        "with-attrs",
        b"x",
        &lstore::PutOptions {
            attrs: Some(attrs),
            ..Default::default()
        },
    )
    .unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    b.put("big", &big).unwrap();
    let l = b.finish(None).unwrap();
    store.commit().unwrap();
    let small = l.get_ref("small").unwrap().unwrap();
    assert!(matches!(small, std::borrow::Cow::Borrowed(_)));
    assert_eq!(&*small, b"inline bytes");
    assert_eq!(&*l.get_ref("with-attrs").unwrap().unwrap(), b"x");
    assert!(l.get_ref("big").unwrap().unwrap() == big);
    assert!(l.get_ref("absent").unwrap().is_none());
    let empty = store.new_layer(None).unwrap().finish(None).unwrap();
    assert!(empty.get_ref("anything").unwrap().is_none());
}
