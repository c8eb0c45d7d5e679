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
    let mut lines = std::io::BufReader::new(out).lines();
    while let Some(l) = lines.next() {
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
