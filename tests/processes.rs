//! Many processes on one store: readers never wait for or fail because of a writer, gc never
//! takes what an older reader still reads, and a dead writer leaves no lock behind.

mod common;
use common::{lstore, noise, ok};
use lstore::{Error, Options, Store};
use std::time::{Duration, Instant};

#[test]
fn reader_processes_never_fail_while_a_writer_commits_and_see_each_commit_as_it_lands() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::create(&path, Options::default()).unwrap();
    let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
    let c = store.create_container(&img, Some("c")).unwrap();
    c.put("counter", b"0").unwrap();
    store.commit().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                c.put("counter", n.to_string().as_bytes()).unwrap();
                c.put(format!("k{}", n % 50), &vec![n as u8; 5000]).unwrap();
                store.commit().unwrap();
            }
            n
        })
    };
    let started = Instant::now();
    let (mut reads, mut last) = (0, 0u64);
    while started.elapsed() < Duration::from_secs(3) {
        // Each reader is its own process; none may fail, and none may go back in time.
        let seen: u64 = ok(&path, &["get", "c", "counter"]).trim().parse().unwrap();
        assert!(seen >= last, "a read went back from commit {last} to {seen}");
        last = seen;
        ok(&path, &["ls", "c"]);
        reads += 1;
    }
    let verify = lstore(&path, &["verify", "--deep"], None);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let commits = writer.join().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    assert!(reads > 5 && commits > reads, "{reads} reads beside {commits} commits");
    assert!(last > 0, "the readers saw the writer's commits");
}

#[test]
fn gc_gives_back_nothing_an_older_reader_still_reads_and_all_of_it_once_the_reader_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let writer = Store::create(&path, Options::default()).unwrap();
    let data = noise(8 << 20, 3);
    let mut b = writer.new_layer(None).unwrap();
    b.put("big", &data).unwrap();
    b.finish(Some("old")).unwrap();
    writer.commit().unwrap();

    // Another open file description: to the locks, another process.
    let reader = Store::open_read_only(&path).unwrap();
    let old = reader.layer("old").unwrap();
    writer.remove_layer("old").unwrap();
    writer.commit().unwrap();
    let report = writer.gc().unwrap();
    assert!(report.deferred_for_reader.is_some(), "{report:?}");
    assert!(old.get("big").unwrap().unwrap() == data, "the old snapshot still reads");
    assert!(reader.verify(true).unwrap().is_clean());

    drop(old);
    assert!(
        reader.layers().unwrap().is_empty(),
        "the reader moved on to the newest commit"
    );
    // A reader of the commit gc marks keeps what that commit's chunk index still names; the
    // index gc writes names only live chunks, so once the reader moves on again, all is freed.
    let first = writer.gc().unwrap();
    assert_eq!(first.deferred_for_reader, None, "{first:?}");
    assert!(reader.verify(true).unwrap().is_clean());
    let second = writer.gc().unwrap();
    assert!(
        first.bytes_freed + second.bytes_freed >= 8 << 20,
        "{first:?} {second:?}"
    );
}

/// Creates a store at `path` with an empty image `img` and containers `names` on it, committed.
fn store_with_containers(path: &std::path::Path, names: &[&str]) {
    let store = Store::create(path, Options::default()).unwrap();
    let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
    for n in names {
        store.create_container(&img, Some(n)).unwrap();
    }
    store.commit().unwrap();
}

/// Runs the test `name` of this binary in a child process, with `LSTORE_TEST_CHILD` naming
/// the store: that test is then the child's body (and a no-op in an ordinary run).
fn child(name: &str, store: &std::path::Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("LSTORE_TEST_CHILD", store)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's output up to a line `ready`.
fn wait_ready(child: &mut std::process::Child) {
    use std::io::BufRead;
    let out = child.stdout.as_mut().unwrap();
    for l in std::io::BufReader::new(out).lines() {
        // The harness may print the test's name on the same line first.
        if l.unwrap().trim_end().ends_with("ready") {
            return;
        }
    }
    panic!("the child ended before it was ready");
}

#[test]
fn child_writes_container_c_and_waits() {
    let Some(path) = std::env::var_os("LSTORE_TEST_CHILD") else {
        return;
    };
    let store = Store::open(&path).unwrap();
    let c = store.container("c").unwrap();
    c.put("k", b"uncommitted").unwrap();
    println!("ready");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_writer_killed_while_writing_a_container_leaves_no_lock_and_a_second_writer_learns_who_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    ok(&path, &["init"]);
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    ok(&path, &["import", src.to_str().unwrap(), "--name", "img"]);
    ok(&path, &["create", "img", "--name", "c"]);
    ok(&path, &["create", "img", "--name", "d"]);
    let mut writer = child("child_writes_container_c_and_waits", &path);
    wait_ready(&mut writer);
    let store = Store::open(&path).unwrap();
    // Its container is its alone; the store and other containers are not.
    match store.container("c").unwrap().put("k", b"mine") {
        Err(Error::Busy { holder, what, .. }) => {
            assert_eq!(holder, Some(writer.id()));
            assert!(what.starts_with("container "), "{what}");
        }
        other => panic!("a second writer of c was not refused: {other:?}"),
    }
    store.container("d").unwrap().put("k", b"beside it").unwrap();
    store.commit().unwrap();
    ok(&path, &["ls", "c"]);
    writer.kill().unwrap();
    writer.wait().unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    let c = store.container("c").unwrap();
    assert!(c.get("k").unwrap().is_none(), "nothing half-written");
    c.put("k", b"now mine").unwrap();
    store.commit().unwrap();
    assert_eq!(store.container("d").unwrap().get("k").unwrap().unwrap(), b"beside it");
    assert!(store.verify(true).unwrap().is_clean());
}

#[test]
fn a_reader_verifying_the_commit_gc_works_on_stays_clean_while_gc_cleans_around_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let writer = Store::create(
        &path,
        Options {
            block_size: 4096,
            ..Default::default()
        },
    )
    .unwrap();
    let mut b = writer.new_layer(None).unwrap();
    b.put("live", &noise(2 << 20, 1)).unwrap();
    b.finish(Some("live")).unwrap();
    let mut b = writer.new_layer(None).unwrap();
    b.put("gone", &noise(2 << 20, 2)).unwrap();
    b.finish(Some("gone")).unwrap();
    writer.remove_layer("gone").unwrap();
    writer.commit().unwrap();
    // A reader of exactly the commit gc marks: its chunk index still names the dead chunks.
    let reader = Store::open_read_only(&path).unwrap();
    assert!(reader.verify(true).unwrap().is_clean());
    let report = writer.gc().unwrap();
    let after = reader.verify(true).unwrap();
    assert!(after.is_clean(), "{:?} after {report:?}", after.problems);
    drop(reader);
    let report = writer.gc().unwrap();
    assert!(
        report.bytes_freed >= 2 << 20,
        "freed once the reader is gone: {report:?}"
    );
}

#[test]
fn threads_writing_two_containers_and_committing_at_will_lose_nothing_and_mix_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::create(
        &path,
        Options {
            compression: lstore::Compression::Zstd(1),
            block_size: 16 << 10,
            ..Default::default()
        },
    )
    .unwrap();
    let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
    let names = ["a", "b"];
    for n in names {
        store.create_container(&img, Some(n)).unwrap();
    }
    store.commit().unwrap();
    // Each thread writes its own container at aligned, unaligned and growing offsets, and
    // commits (durably or not) whenever it likes; the model is what it wrote.
    let models: Vec<Vec<u8>> = std::thread::scope(|s| {
        let workers: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(t, name)| {
                let store = &store;
                s.spawn(move || {
                    let c = store.container(name).unwrap();
                    let mut model = Vec::new();
                    let mut seed = 7 + t as u64;
                    for round in 0..300u64 {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let len = 1 + (seed >> 40) as usize % (40 << 10);
                        let off = match round % 3 {
                            0 => model.len() as u64,
                            1 => ((seed >> 20) % (model.len() as u64 + 1)) & !0x3fff,
                            _ => (seed >> 20) % (model.len() as u64 + 1),
                        };
                        let data = noise(len, seed);
                        c.write_at("v", off, &data).unwrap();
                        let end = off as usize + len;
                        if model.len() < end {
                            model.resize(end, 0);
                        }
                        model[off as usize..end].copy_from_slice(&data);
                        match round % 7 {
                            0 => store.commit().unwrap(),
                            3 => store.commit_with(lstore::Durability::None).unwrap(),
                            _ => {}
                        }
                    }
                    model
                })
            })
            .collect();
        // Meanwhile a third thread reads both and checks the store.
        let reader = s.spawn(|| {
            for _ in 0..20 {
                for n in names {
                    let c = store.container(n).unwrap();
                    let _ = c.get("v").unwrap();
                }
                assert!(store.verify(false).unwrap().is_clean());
            }
        });
        reader.join().unwrap();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    store.commit().unwrap();
    for (n, model) in names.iter().zip(&models) {
        assert_eq!(
            &store.container(n).unwrap().get("v").unwrap().unwrap(),
            model,
            "container {n}"
        );
    }
    drop((img, store));
    let store = Store::open(&path).unwrap();
    assert!(store.verify(false).unwrap().is_clean());
    for (n, model) in names.iter().zip(&models) {
        assert_eq!(
            &store.container(n).unwrap().get("v").unwrap().unwrap(),
            model,
            "container {n} after reopen"
        );
    }
}

#[test]
fn writers_with_their_own_handles_write_their_own_containers_at_once_and_a_model_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let store = Store::create(&path, Options::default()).unwrap();
        let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
        for n in ["w0", "w1", "w2"] {
            store.create_container(&img, Some(n)).unwrap();
        }
        store.commit().unwrap();
    }
    // Each writer has its own handle of the file, as a process of its own would: its own
    // segments, its own locks, only the disk in common.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let models: Vec<std::collections::BTreeMap<String, Vec<u8>>> = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let ro = Store::open_read_only(&path).unwrap();
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for n in ["w0", "w1", "w2"] {
                    for v in ro.container(n).unwrap().list("").unwrap() {
                        // Every value a reader sees is whole: its bytes are its key's pattern.
                        // (Each get sees the newest commit: a key listed before may be gone.)
                        if let Some(got) = ro.container(n).unwrap().get(&v.key).unwrap() {
                            let seed = got.first().copied().unwrap_or(0);
                            assert!(got.iter().all(|&b| b == seed), "a torn value in {n}");
                        }
                    }
                }
                reads += 1;
            }
            reads
        });
        let writers: Vec<_> = (0..3u8)
            .map(|t| {
                let path = &path;
                s.spawn(move || {
                    let store = Store::open_waiting(path, Duration::from_secs(30)).unwrap();
                    let name = format!("w{t}");
                    let c = store.container(&name).unwrap();
                    let mut model = std::collections::BTreeMap::new();
                    for step in 0..60u32 {
                        let key = format!("k{}", step % 7);
                        let fill = (t as u32 * 60 + step) as u8 | 1;
                        let v = vec![fill; 1 + (step as usize * 3001) % 150_000];
                        c.put(&key, &v).unwrap();
                        model.insert(key, v);
                        if step % 9 == 4 {
                            c.delete("k0").unwrap();
                            model.remove("k0");
                        }
                        if step % 10 == 9 {
                            let l = c.commit(Some(&format!("snap-{t}-{step}"))).unwrap();
                            assert_eq!(l.list("").unwrap().count(), model.len());
                        }
                        match step % 4 {
                            0 => store.commit_with(lstore::Durability::None).unwrap(),
                            _ => store.commit().unwrap(),
                        }
                    }
                    model
                })
            })
            .collect();
        let models = writers.into_iter().map(|w| w.join().unwrap()).collect();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(reader.join().unwrap() > 0);
        models
    });
    let check = |store: &Store| {
        for (t, model) in models.iter().enumerate() {
            let c = store.container(&format!("w{t}")).unwrap();
            let keys: Vec<String> = c.list("").unwrap().map(|v| String::from_utf8(v.key).unwrap()).collect();
            assert_eq!(keys, model.keys().cloned().collect::<Vec<_>>(), "w{t}'s keys");
            for (k, v) in model {
                assert_eq!(&c.get(k).unwrap().unwrap(), v, "w{t}/{k}");
            }
            for step in (9..60).step_by(10) {
                store.layer(&format!("snap-{t}-{step}")).unwrap();
            }
        }
        assert!(store.verify(true).unwrap().is_clean());
    };
    check(&Store::open_read_only(&path).unwrap());
    let store = Store::open(&path).unwrap();
    check(&store);
    // gc, alone now, moves its appends past every segment the writers left, frees what is
    // dead, and loses nothing.
    store.gc().unwrap();
    check(&store);
    drop(store);
    check(&Store::open(&path).unwrap());
}

#[test]
fn two_writers_claiming_one_name_at_once_the_second_commit_is_refused_and_the_first_stands() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    drop(Store::create(&path, Options::default()).unwrap());
    let (one, two) = (Store::open(&path).unwrap(), Store::open(&path).unwrap());
    one.new_layer(None).unwrap().finish(Some("base")).unwrap();
    two.new_layer(None).unwrap().finish(Some("base")).unwrap();
    one.commit().unwrap();
    let err = two.commit().unwrap_err();
    assert!(err.to_string().contains("the name 'base'"), "{err}");
    // The refused writer writes nothing more until reopened; the first's layer stands.
    assert!(two.new_layer(None).and_then(|b| b.finish(Some("other"))).is_err());
    drop(two);
    let two = Store::open(&path).unwrap();
    assert_eq!(two.layers().unwrap().len(), 1);
    assert!(two.verify(true).unwrap().is_clean());
    // gc needs the store to itself.
    match two.gc() {
        Err(Error::Busy { what, .. }) => assert!(what.contains("gc"), "{what}"),
        other => panic!("gc beside another writer: {other:?}"),
    }
    drop(one);
    two.gc().unwrap();
}

#[test]
fn writer_processes_of_different_containers_all_succeed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    store_with_containers(&path, &["c0", "c1", "c2", "c3"]);
    let children: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn({
                let path = path.clone();
                move || {
                    for round in 0..15 {
                        let body = format!("c{i} round {round}");
                        let o = lstore(
                            &path,
                            &["--wait", "0", "put", &format!("c{i}"), "k", "-"],
                            Some(body.as_bytes()),
                        );
                        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                    }
                }
            })
        })
        .collect();
    for c in children {
        c.join().unwrap();
    }
    for i in 0..4 {
        assert_eq!(ok(&path, &["get", &format!("c{i}"), "k"]), format!("c{i} round 14"));
    }
    ok(&path, &["verify", "--deep"]);
}

#[test]
fn child_commits_and_acknowledges_until_killed() {
    let Some(path) = std::env::var_os("LSTORE_TEST_CHILD") else {
        return;
    };
    let store = Store::open_waiting(&path, Duration::from_secs(30)).unwrap();
    let c = store.container("c").unwrap();
    for n in 1u64.. {
        c.put("n", n.to_string().as_bytes()).unwrap();
        c.put(format!("big{}", n % 5), &vec![n as u8; 300_000]).unwrap();
        store.commit().unwrap();
        println!("acked {n}");
    }
}

#[test]
fn a_writer_killed_at_any_moment_of_its_commits_holds_up_no_other_writer_and_loses_no_acknowledged_commit() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    store_with_containers(&path, &["c", "d"]);
    let mut seed = 5u64;
    for round in 0..8 {
        let mut child = child("child_commits_and_acknowledges_until_killed", &path);
        let out = child.stdout.take().unwrap();
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let reader = std::thread::spawn({
            let acked = acked.clone();
            move || {
                for l in std::io::BufReader::new(out).lines() {
                    if let Some(n) = l
                        .unwrap()
                        .trim_end()
                        .rsplit("acked ")
                        .next()
                        .and_then(|n| n.parse().ok())
                    {
                        acked.store(n, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
        });
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(30 + (seed >> 33) % 200));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let acked = acked.load(std::sync::atomic::Ordering::SeqCst);
        // Another writer goes on at once: no lock is left, no commit lock held.
        let store = Store::open(&path).unwrap();
        let d = store.container("d").unwrap();
        d.put("round", round.to_string().as_bytes()).unwrap();
        store.commit().unwrap();
        let n: u64 = store
            .container("c")
            .unwrap()
            .get("n")
            .unwrap()
            .map_or(0, |v| String::from_utf8(v).unwrap().parse().unwrap());
        assert!(
            n >= acked,
            "round {round}: acknowledged commit {acked} lost (store shows {n})"
        );
        assert!(store.verify(true).unwrap().is_clean(), "round {round}");
    }
}

#[test]
fn a_name_taken_as_a_layer_by_one_writer_and_as_a_container_by_another_is_refused_to_the_second() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let s = Store::create(&path, Options::default()).unwrap();
        s.new_layer(None).unwrap().finish(Some("img")).unwrap();
        s.commit().unwrap();
    }
    let (one, two) = (Store::open(&path).unwrap(), Store::open(&path).unwrap());
    one.new_layer(None).unwrap().finish(Some("x")).unwrap();
    two.create_container(&two.layer("img").unwrap(), Some("x")).unwrap();
    one.commit().unwrap();
    assert!(two.commit().unwrap_err().to_string().contains("the name 'x'"));
    drop((one, two));
    let s = Store::open(&path).unwrap();
    assert!(matches!(s.resolve("x").unwrap(), lstore::Target::Layer(_)));
}

#[test]
fn a_writer_alone_after_others_goes_on_past_every_commit_and_overwrites_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    store_with_containers(&path, &["a"]);
    let big = noise(1 << 20, 9);
    {
        // The second writer commits nothing of its own after the first's large commit.
        let (one, two) = (Store::open(&path).unwrap(), Store::open(&path).unwrap());
        one.container("a").unwrap().put("big", &big).unwrap();
        one.commit().unwrap();
        two.commit().unwrap();
    }
    let three = Store::open(&path).unwrap();
    let img = three.layer("img").unwrap();
    let c = three.create_container(&img, Some("b")).unwrap();
    c.put("other", &noise(3 << 20, 10)).unwrap();
    three.commit().unwrap();
    assert_eq!(three.container("a").unwrap().get("big").unwrap().unwrap(), big);
    assert!(three.verify(true).unwrap().is_clean());
}

#[test]
fn a_catalog_change_made_while_another_thread_s_commit_syncs_survives_the_next_writer_s_commit() {
    use lstore::testing::crashsim::RecordingIo;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let rec = std::sync::Arc::new(RecordingIo::create(&path).unwrap());
    let one = Store::create_with_io(rec.clone(), &path, Options::default()).unwrap();
    let img = one.new_layer(None).unwrap().finish(Some("img")).unwrap();
    one.commit().unwrap();
    rec.slow_syncs(Duration::from_millis(300));
    std::thread::scope(|s| {
        let committing = s.spawn(|| one.commit().unwrap());
        std::thread::sleep(Duration::from_millis(100));
        one.create_container(&img, Some("web")).unwrap();
        committing.join().unwrap();
    });
    rec.slow_syncs(Duration::ZERO);
    let two = Store::open(&path).unwrap();
    two.new_layer(None).unwrap().finish(Some("other")).unwrap();
    two.commit().unwrap();
    one.commit().unwrap();
    assert!(one.container("web").is_ok());
    drop((img, one, two));
    assert!(Store::open_read_only(&path).unwrap().container("web").is_ok());
}

#[test]
fn writer_processes_take_space_from_the_pool_at_once_and_never_share_an_extent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let store = common::small_segment_store(&path, None);
        let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
        for i in 0..4 {
            store.create_container(&img, Some(&format!("c{i}"))).unwrap();
        }
        let big = store.create_container(&img, Some("big")).unwrap();
        big.put("blob", &noise(40 << 20, 3)).unwrap();
        store.commit().unwrap();
        drop(big);
        store.remove_container("big").unwrap();
        let r = store.gc().unwrap();
        assert!(r.pool_bytes >= 32 << 20, "{r:?}");
    }
    let len_before = std::fs::metadata(&path).unwrap().len();
    let data: Vec<Vec<u8>> = (0..4).map(|i| noise(3 << 20, 10 + i)).collect();
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let (path, body) = (path.clone(), data[i].clone());
            std::thread::spawn(move || {
                let o = lstore(&path, &["--wait", "0", "put", &format!("c{i}"), "k", "-"], Some(&body));
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    // Every writer's bytes are its own: no two took the same extent of the pool.
    let store = Store::open_read_only(&path).unwrap();
    for (i, d) in data.iter().enumerate() {
        let c = store.container(&format!("c{i}")).unwrap();
        assert!(c.get("k").unwrap().unwrap() == *d, "c{i} reads back what it wrote");
    }
    assert!(store.verify(true).unwrap().is_clean());
    // 12 MiB written into space gc gave back: the file did not grow for it.
    let len_after = std::fs::metadata(&path).unwrap().len();
    assert!(len_after <= len_before, "file grew from {len_before} to {len_after}");
}
