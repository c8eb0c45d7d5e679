//! Defects a hostile user and a careful reviewer found (the "Trust" issue), each pinned by a
//! test that failed before its fix.

mod common;
use common::{fails, lstore, noise, ok};
use lstore::{Error, Layerfile, Mount, MountSource, Options, Store};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn store_in(dir: &Path) -> Store {
    Store::create(dir.join("s"), Options::default()).unwrap()
}

#[test]
fn a_write_ending_near_2_pow_64_is_out_of_range_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let img = store.new_layer(None).unwrap().finish(None).unwrap();
    let c = store.create_container(&img, None).unwrap();
    for off in [u64::MAX - 3, u64::MAX - 4096, (1 << 62) - 1, 1 << 62] {
        assert!(
            matches!(c.write_at("k", off, b"data"), Err(Error::OutOfRange(_))),
            "{off}"
        );
    }
    assert!(matches!(
        c.truncate("k", u64::MAX),
        Err(Error::OutOfRange(_)) | Err(Error::KeyNotFound(_))
    ));
    c.put("k", b"x").unwrap();
    assert!(matches!(c.truncate("k", u64::MAX), Err(Error::OutOfRange(_))));
    // The last byte below the limit is fine, and reads back.
    c.write_at("k", (1 << 62) - 4, b"tail").unwrap();
    let mut buf = [0u8; 4];
    c.read_at("k", (1 << 62) - 4, &mut buf).unwrap();
    assert_eq!(&buf, b"tail");
    store.commit().unwrap();

    drop((c, img, store));
    let path = dir.path().join("s");
    let id = ok(&path, &["containers"]).split('\t').next().unwrap().to_string();
    fails(
        &path,
        &["write", &id, "k", "--offset", "18446744073709551612", "/etc/hostname"],
        "out of range",
    );
}

#[test]
fn a_closed_pipe_stops_get_at_once_and_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    ok(&path, &["init"]);
    let big = dir.path().join("big");
    std::fs::write(&big, vec![7u8; 64 << 20]).unwrap();
    let img = dir.path().join("img");
    std::fs::create_dir(&img).unwrap();
    std::fs::write(img.join("big"), vec![7u8; 8 << 20]).unwrap();
    ok(&path, &["import", img.to_str().unwrap(), "--name", "img"]);
    let c = ok(&path, &["create", "img"]).trim().to_string();
    // A value of 2^50 bytes of holes: reading it all would take hours.
    lstore(
        &path,
        &["write", &c, "huge", "--offset", "1125899906842624", "-"],
        Some(b"!"),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lstore"))
        .args(["--store", path.to_str().unwrap(), "get", &c, "huge"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    drop(out);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "get kept running after its reader left"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "exit {status:?}");
    assert_eq!(err, "", "nothing on stderr");
}

#[test]
fn ls_of_a_folder_with_a_trailing_slash_lists_each_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    ok(&path, &["init"]);
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    std::fs::write(src.join("dir/a"), b"a").unwrap();
    std::fs::write(src.join("dirt"), b"t").unwrap();
    ok(&path, &["import", src.to_str().unwrap(), "--name", "img"]);
    // The folder's own entry, then what is in it; never `dirt`.
    assert_eq!(ok(&path, &["ls", "img", "dir/"]), "dir\t0\ndir/a\t1\n");
    assert_eq!(ok(&path, &["ls", "img", "dir"]), "dir\t0\ndir/a\t1\n");
}

#[test]
fn a_folder_a_fifo_or_a_device_is_not_a_store_and_never_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for p in [dir.path().to_path_buf(), fifo.clone(), PathBuf::from("/dev/null")] {
        // On another thread: an open that blocks fails the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        let q = p.clone();
        std::thread::spawn(move || {
            let ro = matches!(Store::open_read_only(&q), Err(Error::NotAStore(_)));
            let rw = matches!(Store::open(&q), Err(Error::NotAStore(_)));
            let _ = tx.send(ro && rw);
        });
        let answer = rx.recv_timeout(Duration::from_secs(10));
        assert_eq!(answer, Ok(true), "{} is NotAStore at once", p.display());
    }
    fails(&fifo, &["layers"], "not an lstore store");
    let missing = dir.path().join("missing.lstore");
    let e = Store::open(&missing).unwrap_err().to_string();
    assert!(e.contains("missing.lstore"), "the error names the path: {e}");
}

#[test]
fn names_never_look_like_ids_and_layers_and_containers_share_one_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let x = store.new_layer(None).unwrap().finish(Some("x")).unwrap();
    for bad in ["abcd", "0123456789abcdef", "DEADBEEF"] {
        assert!(matches!(store.tag("x", bad), Err(Error::InvalidArgument(_))), "{bad}");
        assert!(store.new_layer(None).unwrap().finish(Some(bad)).is_err(), "{bad}");
        assert!(store.create_container(&x, Some(bad)).is_err(), "{bad}");
    }
    // Names that merely contain hex, or are too short to be an id prefix, are fine.
    // (A layer has one name: tagging moves it.)
    store.tag("x", "abc").unwrap();
    store.tag("abc", "cafe-1").unwrap();
    // A container may not take a layer's name, nor a layer a container's.
    assert!(matches!(
        store.create_container(&x, Some("cafe-1")),
        Err(Error::NameInUse(_))
    ));
    store.create_container(&x, Some("web")).unwrap();
    assert!(matches!(store.tag("cafe-1", "web"), Err(Error::NameInUse(_))));
    assert!(store.new_layer(None).unwrap().finish(Some("web")).is_err());
    // So `rmi ID` always means the layer with that id.
    let y = store.new_layer(None).unwrap().finish(Some("y")).unwrap();
    let x_id = x.id().to_string();
    assert!(store.tag("y", &x_id).is_err());
    store.remove_container("web").unwrap();
    store.remove_layer(&x_id).unwrap();
    assert!(store.layer("y").is_ok());
    drop(y);
}

#[test]
fn copy_never_reads_outside_the_build_context_and_can_copy_to_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("app")).unwrap();
    std::fs::write(ctx.join("app/main"), b"main").unwrap();
    std::fs::write(dir.path().join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), ctx.join("link")).unwrap();
    for src in ["/etc/hostname", "../secret", "app/../../secret", "link"] {
        let lf = Layerfile::parse(&format!("FROM scratch\nCOPY {src} x\n"), "Layerfile", ctx.clone());
        let built = lf.and_then(|lf| lf.build(&store));
        let refused = match &built {
            Err(Error::InvalidArgument(_)) => true,
            Err(Error::At { source, .. }) => matches!(**source, Error::InvalidArgument(_)),
            _ => false,
        };
        assert!(refused, "COPY {src}: {built:?}");
    }
    for dst in ["/", ".", "./"] {
        let lf = Layerfile::parse(&format!("FROM scratch\nCOPY app {dst}\n"), "Layerfile", ctx.clone()).unwrap();
        let (layer, _) = lf.build(&store).unwrap();
        let keys: Vec<Vec<u8>> = layer.unwrap().list("").unwrap().map(|i| i.unwrap().key).collect();
        assert_eq!(keys, [b"main".to_vec()], "COPY app {dst}");
    }
}

#[test]
fn mounts_that_do_not_fit_their_record_are_refused_and_any_bind_path_round_trips() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let odd = dir.path().join(std::ffi::OsStr::from_bytes(b"host-\xff-dir"));
    std::fs::create_dir(&odd).unwrap();
    std::fs::write(odd.join("f"), b"on the host").unwrap();
    {
        let store = Store::create(&path, Options::default()).unwrap();
        let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
        let many: Vec<Mount> = (0..65_537)
            .map(|i| Mount {
                source: MountSource::Volume(format!("v{i}")),
                target: format!("m/{i}"),
                readonly: false,
                nocopy: true,
            })
            .collect();
        assert!(matches!(
            store.create_container_with(&img, None, &many),
            Err(Error::InvalidArgument(_))
        ));
        assert!(
            store.volumes().unwrap().is_empty(),
            "nothing was made of a refused container"
        );
        let bind = Mount {
            source: MountSource::Bind(odd.clone()),
            target: "host".into(),
            readonly: false,
            nocopy: false,
        };
        store.create_container_with(&img, Some("c"), &[bind]).unwrap();
        store.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.containers().unwrap().len(), 1);
    let c = store.container("c").unwrap();
    assert_eq!(c.info().unwrap().mounts[0].source, MountSource::Bind(odd));
    assert_eq!(c.get("host/f").unwrap().unwrap(), b"on the host");
    store.gc().unwrap();
}

#[test]
fn a_file_that_changes_during_import_never_crashes_it_nor_corrupts_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let file = src.join("moving");
    let full: Vec<u8> = (0..48u32 << 20).map(|i| ((i * 31) >> 7) as u8).collect();
    std::fs::write(&file, &full).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Shrink and regrow the file, over and over, while it is imported.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
                f.set_len(1 << 20).unwrap();
                std::thread::sleep(Duration::from_millis(2));
                std::fs::write(&file, &full).unwrap();
            }
        });
        for _ in 0..5 {
            // Any outcome but a crash: the value is some mix of what the file held.
            let _ = lstore::import_dir(&store, &src, &Default::default());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    store.commit().unwrap();
    let report = store.verify(true).unwrap();
    assert!(report.is_clean(), "{report:?}");
    // The file is whole again: its import reads back exactly, even where its blocks dedup
    // onto chunks stored while it was moving (a chunk's hash always matches its bytes).
    let layer = named_import(&store, &src, "still").unwrap();
    assert!(layer.get("moving").unwrap().unwrap() == full);
}

#[test]
fn gc_and_verify_beside_builders_writers_and_readers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let base = {
        let mut b = store.new_layer(None).unwrap();
        for i in 0..200 {
            b.put(format!("base/{i}"), &vec![i as u8; 5000]).unwrap();
        }
        b.finish(Some("base")).unwrap()
    };
    store.commit().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let rounds = 40;
    std::thread::scope(|s| {
        // Writers: each its own container; every acknowledged commit is checked at the end.
        let writers: Vec<_> = (0..2)
            .map(|t| {
                let (store, base) = (&store, &base);
                s.spawn(move || {
                    let c = store.create_container(base, Some(&format!("w{t}"))).unwrap();
                    for r in 0..rounds {
                        c.put(format!("k{r}"), &vec![(t * 50 + r) as u8; 3000 + r]).unwrap();
                        store.commit().unwrap();
                    }
                })
            })
            .collect();
        // A builder: layers built, named, and some removed again.
        let builder = s.spawn(|| {
            for r in 0..rounds {
                let mut b = store.new_layer(Some(&base)).unwrap();
                b.put("step", &vec![r as u8; 70_000]).unwrap();
                let l = b.finish(Some(&format!("step-{r}"))).unwrap();
                if r % 2 == 0 {
                    drop(l);
                    store.remove_layer(&format!("step-{r}")).unwrap();
                }
                store.commit().unwrap();
            }
        });
        // Readers of pinned layers, gc and verify, until the writers are done.
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for i in (0..200).step_by(17) {
                    assert_eq!(base.get(format!("base/{i}")).unwrap().unwrap(), vec![i as u8; 5000]);
                }
            }
        });
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match store.gc() {
                    Ok(_) | Err(Error::InUse(_)) => {}
                    Err(e) => panic!("gc: {e}"),
                }
            }
        });
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let report = store.verify(false).unwrap();
                assert!(report.is_clean(), "verify beside gc: {report:?}");
            }
        });
        for w in writers {
            w.join().unwrap();
        }
        builder.join().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    store.gc().unwrap();
    for t in 0..2usize {
        let c = store.container(&format!("w{t}")).unwrap();
        for r in 0..rounds {
            assert_eq!(
                c.get(format!("k{r}")).unwrap().unwrap(),
                vec![(t * 50 + r) as u8; 3000 + r]
            );
        }
    }
    for r in (1..rounds).step_by(2) {
        let l = store.layer(&format!("step-{r}")).unwrap();
        assert_eq!(l.get("step").unwrap().unwrap(), vec![r as u8; 70_000]);
    }
    let report = store.verify(true).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn gc_gives_back_the_space_of_work_that_never_committed() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let allocated = || std::fs::metadata(&path).unwrap().blocks() * 512;
    {
        let store = Store::create(&path, Options::default()).unwrap();
        store.new_layer(None).unwrap().finish(Some("base")).unwrap();
        store.commit().unwrap();
        // An import that dies before its commit: 64 MiB appended, never referenced.
        let mut b = store.new_layer(None).unwrap();
        let noise = noise(64 << 20, 1);
        b.put("big", &noise).unwrap();
        drop(b); // an import that failed: never finished, never committed
    }
    let before = allocated();
    assert!(before > 60 << 20, "the failed work took space: {before}");
    let store = Store::open(&path).unwrap();
    let df = store.usage().unwrap();
    assert!(df.unused_tail_bytes > 60 << 20, "df counts the failed work: {df:?}");
    assert!(df.garbage_bytes >= df.unused_tail_bytes);
    store.gc().unwrap();
    let after = allocated();
    assert!(after < 8 << 20, "gc gave back {} of {before} bytes", before - after);
    assert!(store.usage().unwrap().unused_tail_bytes < 8 << 20);
    assert!(store.layer("base").is_ok());
    assert!(store.verify(true).unwrap().is_clean());
}

#[test]
fn salvage_streams_sparse_values_keeps_holes_and_leaves_nothing_behind_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    {
        let store = Store::create(&src, Options::default()).unwrap();
        let mut b = store.new_layer(None).unwrap();
        b.put("etc/hostname", b"box").unwrap();
        b.write_at("disk.img", 1 << 50, b"far away").unwrap();
        let img = b.finish(Some("img")).unwrap();
        let c = store.create_container(&img, Some("c")).unwrap();
        c.write_at("disk.img", 4096, b"near").unwrap();
        store.commit().unwrap();
    }
    let dst = dir.path().join("dst");
    let report = lstore::salvage(&src, &dst).unwrap();
    assert!(report.lost.is_empty(), "{report:?}");
    let saved = Store::open(&dst).unwrap();
    let c = saved.container("c").unwrap();
    assert_eq!(c.stat("disk.img").unwrap().unwrap().size, (1 << 50) + 8);
    let mut buf = [0u8; 8];
    c.read_at("disk.img", 1 << 50, &mut buf).unwrap();
    assert_eq!(&buf, b"far away");
    c.read_at("disk.img", 4096, &mut buf[..4]).unwrap();
    assert_eq!(&buf[..4], b"near");
    assert!(saved.stats().unwrap().used_bytes < 1 << 20, "holes stayed holes");
    drop((c, saved));

    // An existing destination is refused, and nothing of the attempt is left behind.
    assert!(matches!(lstore::salvage(&src, &dst), Err(Error::AlreadyExists(_))));
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "only src and dst: {left:?}");
}

#[test]
fn errors_name_the_thing_they_are_about() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    ok(&path, &["init"]);
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    ok(&path, &["import", src.to_str().unwrap(), "--name", "img"]);
    fails(&path, &["volume", "rm", "nope"], "no volume named 'nope'");
    fails(&path, &["volume", "inspect", "nope"], "no volume named 'nope'");
    fails(
        &path,
        &["put", "img", "k", "/dev/null"],
        "layer 'img' (committed: create a container on it to write) is read-only",
    );
    fails(&dir.path().join("missing"), &["layers"], "missing");
    fails(&src, &["layers"], "not an lstore store");
    // Docker refuses a relative target: "mount path must be absolute".
    fails(&path, &["create", "img", "-v", "vol:data"], "must be an absolute path");
    fails(
        &path,
        &["create", "img", "--mount", "source=vol,target=data"],
        "must be an absolute path",
    );
    // A missing store is a usage error, as a missing argument is.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lstore"))
        .arg("layers")
        .env_remove("LSTORE_PATH")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no store given"));
}

#[test]
fn a_layerfile_build_error_names_its_file_and_line_and_a_copy_racing_an_edit_caches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("app"), b"v1").unwrap();
    let store = store_in(dir.path());
    let lf = Layerfile::parse("FROM scratch\n\nCOPY missing /x\n", "ctx/Layerfile", ctx.clone()).unwrap();
    let e = lf.build(&store).unwrap_err();
    assert!(e.to_string().starts_with("ctx/Layerfile:3: "), "{e}");
    let lf = Layerfile::parse("# base\nFROM nope\n", "Lf", ctx.clone()).unwrap();
    let e = lf.build(&store).unwrap_err();
    assert!(e.to_string().starts_with("Lf:2: ") && e.errno() == libc::ENOENT, "{e}");

    // The file changes between the cache key's digest and the import: the step fails, and a
    // later build of the original content is not served the edited bytes from the cache.
    let big: Vec<u8> = (0..4u32 << 20).map(|i| (i >> 3) as u8).collect();
    std::fs::write(ctx.join("app"), &big).unwrap();
    let lf = Layerfile::parse("FROM scratch\nCOPY app /app\n", "Lf", ctx.clone()).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let editor = {
        let (stop, app, big) = (stop.clone(), ctx.join("app"), big.clone());
        std::thread::spawn(move || {
            let mut edited = big;
            let mut n = 0u8;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n = n.wrapping_add(1);
                edited[1 << 20] = n;
                let f = std::fs::OpenOptions::new().write(true).open(&app).unwrap();
                std::os::unix::fs::FileExt::write_all_at(&f, &edited[1 << 20..(1 << 20) + 1], 1 << 20).unwrap();
            }
        })
    };
    let mut raced = 0;
    for _ in 0..30 {
        match lf.build(&store) {
            Ok((Some(layer), _)) => {
                // Whatever was stored is what the key digested: rebuild with those bytes hits
                // the cache only if they are what the layer holds.
                let _ = layer;
            }
            Ok((None, _)) => unreachable!(),
            Err(e) => {
                assert!(e.to_string().contains("changed while"), "{e}");
                raced += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    editor.join().unwrap();
    let settled = std::fs::read(ctx.join("app")).unwrap();
    let (layer, steps) = lf.build(&store).unwrap();
    assert_eq!(
        layer.unwrap().get("app").unwrap().unwrap(),
        settled,
        "cached: {}",
        steps[0].cached
    );
    assert!(raced > 0, "the edit raced at least one build");
}

#[test]
fn a_fifo_or_device_in_a_bind_mount_is_never_opened_and_a_layerfile_is_a_bounded_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let host = dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(host.join("fifo"))
        .status()
        .unwrap()
        .success());
    let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
    let c = store
        .create_container_with(
            &img,
            Some("c"),
            &[Mount::parse_volume_flag(&format!("{}:/t", host.display())).unwrap()],
        )
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let put = c.put("t/fifo", b"x");
        let write = c.write_at("t/fifo", 0, b"x");
        let del = c.delete("t/fifo");
        let _ = tx.send((put.is_err(), write.is_err(), del.ok()));
    });
    let answer = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a FIFO in a bind mount blocked");
    assert_eq!(answer, (true, true, Some(false)));
    assert!(host.join("fifo").exists(), "the FIFO was not deleted through the mount");

    let (tx, rx) = std::sync::mpsc::channel();
    let fifo = host.join("fifo");
    std::thread::spawn(move || {
        let zero = Layerfile::parse_file(Path::new("/dev/zero"));
        let fifo = Layerfile::parse_file(&fifo);
        let _ = tx.send((zero.is_err(), fifo.is_err()));
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok((true, true)));
}

/// A real full disk (a 16 MiB tmpfs, so this test needs root, as CI has): an import fails
/// with ENOSPC, gc still runs on the full disk and gives the space back, and the store takes
/// new work after it.
#[test]
fn on_a_full_disk_gc_still_runs_and_gives_the_space_back() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = common::Tmpfs::mount(dir.path(), "16m");
    let mnt = tmpfs.0.clone();
    let path = mnt.join("s");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let noise = noise(24 << 20, 2);
    std::fs::write(src.join("big"), &noise).unwrap();
    {
        let store = Store::create(
            &path,
            Options {
                segment_size: 4 << 20,
                ..Default::default()
            },
        )
        .unwrap();
        let r = named_import(&store, &src, "big");
        let Err(e) = r.map(|_| ()) else {
            panic!("24 MiB do not fit in 16 MiB")
        };
        let e = e.to_string();
        assert!(
            e.contains(path.to_str().unwrap()) && e.contains("No space"),
            "names the store: {e}"
        );
    }
    let store = Store::open(&path).unwrap();
    let report = store.gc().unwrap();
    assert!(report.bytes_freed > 8 << 20, "{report:?}");
    assert!(std::fs::metadata(&path).unwrap().blocks() * 512 < 1 << 20);
    std::fs::write(src.join("big"), b"small now").unwrap();
    let layer = named_import(&store, &src, "small").unwrap();
    assert_eq!(layer.get("big").unwrap().unwrap(), b"small now");
    store.commit().unwrap();
    assert!(store.verify(true).unwrap().is_clean());
}

#[test]
fn a_store_cut_short_below_a_synced_commit_is_reported_as_a_loss_never_as_clean() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let store = store_in(dir.path());
        let mut b = store.new_layer(None).unwrap();
        // Over a megabyte: its records are synced before its superblock is written.
        let big: Vec<u8> = (0..3u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        b.put("big", &big).unwrap();
        b.finish(Some("base")).unwrap();
        store.commit().unwrap();
    }
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(1 << 20).unwrap();
    drop(f);
    let store = Store::open_read_only(&path).unwrap();
    assert!(store.layers().unwrap().is_empty(), "opened at the commit before");
    let report = store.verify(false).unwrap();
    assert!(!report.is_clean(), "a lost commit must not verify clean");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.what.contains("generation 2") && p.what.contains("lost")),
        "{:?}",
        report.problems
    );
    let out = lstore(&path, &["verify"], None);
    assert!(!out.status.success(), "verify exits non-zero");
    assert!(String::from_utf8_lossy(&out.stdout).contains("lost"));
    // Writing would build over what is left of the lost commit: refused, the file untouched.
    drop(store);
    let before = std::fs::read(&path).unwrap();
    match Store::open(&path) {
        Err(Error::Corrupt(why)) => assert!(why.contains("not opened for writing"), "{why}"),
        other => panic!("a writable open must be refused: {:?}", other.map(|_| ())),
    }
    assert!(std::fs::read(&path).unwrap() == before);
}

#[test]
fn a_bind_mount_is_never_escaped_by_a_folder_swapped_for_a_link_while_it_works() {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    let dir = tempfile::tempdir().unwrap();
    let (src, outside) = (dir.path().join("src"), dir.path().join("outside"));
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"host secret").unwrap();
    std::fs::write(outside.join("victim"), b"keep me").unwrap();
    std::os::unix::fs::symlink(&outside, src.join("link")).unwrap();
    let store = store_in(dir.path());
    let img = store.new_layer(None).unwrap().finish(None).unwrap();
    let bind = Mount {
        source: MountSource::Bind(src.clone()),
        target: "mnt".into(),
        readonly: false,
        nocopy: false,
    };
    let c = store.create_container_with(&img, None, &[bind]).unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, d, link) = (stop.clone(), src.join("d"), src.join("link"));
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                renameat_with(CWD, &d, CWD, &link, RenameFlags::EXCHANGE).unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let mut written = 0;
    for i in 0..1500 {
        written += usize::from(c.put(format!("mnt/d/f{i}"), b"x").is_ok());
        let _ = c.write_at(format!("mnt/d/sub{}/g", i % 7), 0, b"y");
        if let Ok(Some(v)) = c.get("mnt/d/secret") {
            assert_ne!(v, b"host secret", "read a file outside the bind source");
        }
        let _ = c.delete("mnt/d/victim");
        for v in c.list("mnt/").unwrap_or_default() {
            assert!(!v.key.ends_with(b"secret"), "listed a file outside the bind source");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(swapper.join().unwrap() > 100, "the swap raced the writes");
    assert!(
        written > 100,
        "writes through the mount still work while it races: {written}"
    );
    let mut names: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["secret", "victim"],
        "nothing was written or removed outside the source"
    );
    assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"keep me");
}

/// Four distinct 64 KiB blocks: each can be found in the store file by its bytes.
fn four_blocks() -> Vec<u8> {
    (0..4u32 << 16)
        .map(|i| ((i >> 16) as u8 + 1) ^ (i.wrapping_mul(40503) >> 7) as u8)
        .collect()
}

#[test]
fn salvage_keeps_a_value_with_one_bad_block_as_a_reported_hole_and_cleans_up_after_a_killed_run() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let data = four_blocks();
    {
        let store = store_in(dir.path());
        drop(store);
        std::fs::rename(dir.path().join("s"), &src).unwrap();
        let store = Store::open(&src).unwrap();
        let mut b = store.new_layer(None).unwrap();
        b.put("vm.img", &data).unwrap();
        b.put("etc/hostname", b"box").unwrap();
        b.finish(Some("img")).unwrap();
        store.commit().unwrap();
        // A later commit: the block is in durable, checked history, not in the newest
        // commit (whose records open re-checks, rolling it back as a crash would).
        store.create_volume("later").unwrap();
        store.commit().unwrap();
    }
    let mut bytes = std::fs::read(&src).unwrap();
    let block2 = &data[2 << 16..(2 << 16) + 64];
    let at = bytes
        .windows(64)
        .position(|w| w == block2)
        .expect("block 2 is in the file");
    bytes[at + 100] ^= 0x40;
    std::fs::write(&src, &bytes).unwrap();

    // What a killed salvage left: a temporary store nobody holds. A live one's stays.
    let dst = dir.path().join("dst");
    let stale = dir.path().join("dst.salvage-4000001");
    let live = dir.path().join("dst.salvage-4000002");
    Store::create(&stale, Options::default()).unwrap();
    let _held = Store::create(&live, Options::default()).unwrap();

    let report = lstore::salvage(&src, &dst).unwrap();
    assert_eq!(report.lost.len(), 2, "{:?}", report.lost);
    assert!(
        report.lost[0].contains("vm.img") && report.lost[0].contains("offset 131072"),
        "{:?}",
        report.lost
    );
    let saved = Store::open(&dst).unwrap();
    let img = saved.layer("img").unwrap();
    let got = img.get("vm.img").unwrap().unwrap();
    assert_eq!(got.len(), data.len());
    assert_eq!(got[..2 << 16], data[..2 << 16]);
    assert!(got[2 << 16..3 << 16].iter().all(|&b| b == 0), "the bad block is a hole");
    assert_eq!(got[3 << 16..], data[3 << 16..]);
    assert_eq!(img.get("etc/hostname").unwrap().unwrap(), b"box");
    assert!(!stale.exists(), "a killed salvage's leftovers are removed");
    assert!(live.exists(), "a running salvage's store is left alone");
}

#[test]
fn verify_and_salvage_of_a_store_cut_short_under_them_report_it_and_never_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let store = store_in(dir.path());
        let mut b = store.new_layer(None).unwrap();
        for i in 0..8 {
            b.put(format!("f{i}"), &four_blocks()[i << 14..]).unwrap();
        }
        b.finish(Some("img")).unwrap();
        store.commit().unwrap();
    }
    let len = std::fs::metadata(&path).unwrap().len();
    let reader = Store::open_read_only(&path).unwrap();
    // Another program cuts the file (unsupported for mapped readers, as in LMDB): the
    // tools for damaged disks read with positioned reads and report what is gone.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(600 << 10).unwrap();
    assert!(len > 600 << 10);
    let report = reader.verify(true).unwrap();
    assert!(!report.is_clean());
    assert!(
        report.problems.iter().any(|p| p.what.contains("end of the file")),
        "{:?}",
        report.problems
    );
    drop(reader);
    let report = lstore::salvage(&path, &dir.path().join("out")).unwrap();

    assert!(!report.lost.is_empty(), "the cut commit is reported lost");
}

#[test]
fn a_tree_whose_child_points_back_up_is_an_error_everywhere_never_a_stack_overflow() {
    let image = lstore::testing::reseal::image();
    let edits = image.cycle_edits().expect("the seed has a branch node");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    std::fs::write(&path, image.damaged(&edits)).unwrap();
    let store = Store::open(&path).unwrap();
    let report = store.verify(true).unwrap();
    assert!(
        report.problems.iter().any(|p| p.what.contains("cycle")),
        "{:?}",
        report.problems
    );
    assert!(matches!(store.usage(), Err(Error::Corrupt(_))));
    let base = store.layer("base").unwrap();
    for key in ["many/000", "many/199", "zzz"] {
        let _ = base.get(key);
    }
    let c = store.container("web").unwrap();
    for key in ["many/000", "many/199", "zzz"] {
        assert!(matches!(c.put(key, b"x"), Ok(()) | Err(Error::Corrupt(_))));
        assert!(matches!(c.delete(key), Ok(_) | Err(Error::Corrupt(_))));
    }
    assert!(matches!(store.gc(), Err(Error::Corrupt(_))));
}

#[test]
fn a_folder_wider_than_the_open_file_limit_imports_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let wide = dir.path().join("wide");
    for i in 0..1100 {
        std::fs::create_dir_all(wide.join(format!("d{i}"))).unwrap();
        std::fs::write(wide.join(format!("d{i}/f")), i.to_string()).unwrap();
    }
    let path = dir.path().join("s");
    ok(&path, &["init"]);
    let script = format!(
        "ulimit -n 256 && exec {} --store {} import {} --name wide",
        env!("CARGO_BIN_EXE_lstore"),
        path.display(),
        wide.display()
    );
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let store = Store::open_read_only(&path).unwrap();
    // 1,100 folders and a file in each.
    assert_eq!(store.layer("wide").unwrap().list("").unwrap().count(), 2200);
}

#[test]
fn an_import_never_reads_outside_its_folder_while_a_subfolder_is_swapped_for_a_link() {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    let dir = tempfile::tempdir().unwrap();
    let (ctx, outside) = (dir.path().join("ctx"), dir.path().join("outside"));
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"SECRET").unwrap();
    std::fs::write(ctx.join("sub/secret"), b"decoy").unwrap();
    std::os::unix::fs::symlink("../outside", ctx.join("lnk")).unwrap();
    let store = store_in(dir.path());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, a, b) = (stop.clone(), ctx.join("sub"), ctx.join("lnk"));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                renameat_with(CWD, &a, CWD, &b, RenameFlags::EXCHANGE).unwrap();
            }
        })
    };
    let lf = Layerfile::parse("FROM scratch\nCOPY sub /s\n", "Lf", ctx.clone()).unwrap();
    let (mut imported, mut built) = (0, 0);
    for _ in 0..200 {
        if let Ok(layer) = lstore::import_dir(&store, &ctx, &Default::default()).map(|i| i.layer) {
            imported += 1;
            for key in ["sub/secret", "lnk/secret"] {
                assert_ne!(
                    layer.get(key).unwrap().as_deref(),
                    Some(&b"SECRET"[..]),
                    "import read outside"
                );
            }
        }
        if let Ok((Some(layer), _)) = lf.build(&store) {
            built += 1;
            assert_ne!(
                layer.get("s/secret").unwrap().as_deref(),
                Some(&b"SECRET"[..]),
                "COPY read outside"
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(
        imported > 0 && built > 0,
        "imports and builds still succeed: {imported} {built}"
    );
}

#[test]
fn a_sparse_value_too_large_for_memory_is_out_of_range_for_get_and_reads_in_parts() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let img = store.new_layer(None).unwrap().finish(None).unwrap();
    let c = store.create_container(&img, None).unwrap();
    c.write_at("huge", (1 << 61) - 4, b"tail").unwrap();
    assert!(matches!(c.get("huge"), Err(Error::OutOfRange(_))));
    let mut buf = [1u8; 8];
    assert_eq!(c.read_at("huge", (1 << 61) - 8, &mut buf).unwrap(), 8);
    assert_eq!(&buf, b"\0\0\0\0tail");
}

#[test]
fn after_a_clean_close_a_flipped_bit_in_the_last_small_commit_is_reported_not_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let value: Vec<u8> = (0..3000u32).map(|i| (i.wrapping_mul(2654435761) >> 9) as u8).collect();
    {
        let store = store_in(dir.path());
        let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
        let c = store.create_container(&img, Some("c")).unwrap();
        store.commit().unwrap();
        // A small commit: one sync, its records re-checked at open unless closed cleanly.
        c.put("k5", &value).unwrap();
        store.commit().unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(64)
        .position(|w| w == &value[..64])
        .expect("the value is stored raw");
    bytes[at + 1000] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let store = Store::open_read_only(&path).unwrap();
    assert!(store.recovery().is_none(), "not rolled back as a torn commit");
    assert!(matches!(
        store.container("c").unwrap().get("k5"),
        Err(Error::Corrupt(_))
    ));
    assert!(!store.verify(true).unwrap().is_clean(), "the damage is reported");
}

#[test]
fn a_zstd_level_outside_1_to_22_is_refused_not_clamped() {
    let dir = tempfile::tempdir().unwrap();
    for level in [0, -5, 23, i32::MAX] {
        let opts = Options {
            compression: lstore::Compression::Zstd(level),
            ..Default::default()
        };
        let err = Store::create(dir.path().join(format!("s{level}")), opts).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{level}: {err}");
    }
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let img = store.new_layer(None).unwrap().finish(None).unwrap();
    let c = store.create_container(&img, None).unwrap();
    for level in [0, 23] {
        let opts = lstore::PutOptions {
            compression: Some(lstore::Compression::Zstd(level)),
            ..Default::default()
        };
        let err = c.put_with("k", &[1u8; 100_000], &opts).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{level}: {err}");
    }
    assert!(c.get("k").unwrap().is_none());
}

#[test]
fn on_a_full_disk_gc_that_must_move_records_gives_dead_pages_back_first() {
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = common::Tmpfs::mount(dir.path(), "32m");
    let mnt = tmpfs.0.clone();
    let path = mnt.join("s");
    let store = common::small_segment_store(&path, Some(4096));
    let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
    // Small keepers between big junk: every segment ends up mostly dead but not empty.
    let mut kept = Vec::new();
    for i in 0..18u64 {
        let k = store.create_container(&img, Some(&format!("k{i}"))).unwrap();
        let data = noise(200_000, 50 + i);
        k.put("k", &data).unwrap();
        kept.push(data);
        store.commit().unwrap();
        let j = store.create_container(&img, Some(&format!("j{i}"))).unwrap();
        j.put("k", &noise(1_000_000, 90 + i)).unwrap();
        store.commit().unwrap();
    }
    for i in 0..18 {
        store.remove_container(&format!("j{i}")).unwrap();
    }
    store.commit().unwrap();
    // Reopened, so gc's own work is all that is past the last commit: the records it must
    // move (3.6 MB) do not fit what it can give back there.
    drop((img, store));
    let store = Store::open(&path).unwrap();
    let img = store.layer("img").unwrap();
    // The file system is full to the last block.
    let mut filler = std::fs::File::create(mnt.join("filler")).unwrap();
    let block = vec![0u8; 64 << 10];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    drop(filler);
    let r = store.gc_with(0.5).unwrap();
    assert!(r.records_moved > 0 && r.bytes_freed > 8 << 20, "{r:?}");
    for (i, data) in kept.iter().enumerate() {
        let k = store.container(&format!("k{i}")).unwrap();
        assert!(k.get("k").unwrap().unwrap() == *data, "k{i}");
    }
    assert!(store.verify(true).unwrap().is_clean());
    drop((img, store));
    let store = Store::open(&path).unwrap();
    assert!(store.verify(true).unwrap().is_clean());
}

#[test]
fn a_chunk_pointer_past_the_file_or_off_the_record_grid_is_corruption_to_gc_df_and_verify() {
    let image = lstore::testing::reseal::image();
    let dir = tempfile::tempdir().unwrap();
    let len = image.bytes.len() as u64;
    for addr in [len + (1 << 20), len * 16, 64, 24576 + 1, u64::MAX - 63] {
        let path = dir.path().join(format!("s{addr}"));
        std::fs::write(&path, image.with_leaf_pointers_at(addr)).unwrap();
        let store = Store::open(&path).unwrap();
        assert!(
            matches!(store.gc(), Err(Error::Corrupt(_))),
            "gc with a pointer to {addr:#x}"
        );
        assert!(
            matches!(store.usage(), Err(Error::Corrupt(_))),
            "df with a pointer to {addr:#x}"
        );
        assert!(
            !store.verify(true).unwrap().is_clean(),
            "verify with a pointer to {addr:#x}"
        );
        let base = store.layer("base").unwrap();
        assert!(
            matches!(base.get("bin/tool"), Err(Error::Corrupt(_))),
            "get via {addr:#x}"
        );
    }
}

/// Imports a folder as a new layer named `name`.
fn named_import(store: &Store, dir: &std::path::Path, name: &str) -> lstore::Result<lstore::Layer> {
    let opts = lstore::ImportOptions {
        name: Some(name),
        ..Default::default()
    };
    lstore::import_dir(store, dir, &opts).map(|i| i.layer)
}
