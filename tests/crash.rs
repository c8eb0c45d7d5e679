//! Power-loss simulation: a randomized workload runs on the recording backend; the file is
//! then rebuilt as it could be after a power cut at many points (unsynced writes dropped,
//! torn or reordered), reopened, and must show exactly some commit that may have happened:
//! every commit acknowledged as durable before the cut is there, nothing uncommitted is.
//! `LSTORE_CRASH_CUTS` raises the number of cut points (default 3000 over 3 workloads).

mod common;
use common::{Fingerprint, Rng};
use lstore::testing::crashsim::{Cut, RecordingIo};
use lstore::{Durability, Mount, Options, Store};
use std::path::Path;
use std::sync::Arc;

/// One commit: the operations it spanned, whether it was acknowledged durable, what it showed.
struct State {
    start: usize,
    end: usize,
    durable: bool,
    fp: Fingerprint,
}

/// A new store on the recording backend with 4 MiB segments and `block_size` blocks: the
/// backend, the store, the operations creation took, and creation as the first state.
fn recorded(path: &Path, block_size: u64) -> (Arc<RecordingIo>, Store, usize, Vec<State>) {
    let rec = Arc::new(RecordingIo::create(path).unwrap());
    let opts = Options {
        block_size,
        segment_size: 4 << 20,
        ..Default::default()
    };
    let store = Store::create_with_io(rec.clone(), path, opts).unwrap();
    let created = rec.ops();
    let states = vec![State {
        start: 0,
        end: created,
        durable: true,
        fp: common::fingerprint(&store).unwrap(),
    }];
    (rec, store, created, states)
}

fn workload(path: &Path, seed: u64) -> (Arc<RecordingIo>, usize, Vec<State>) {
    let (rec, store, created, mut states) = recorded(path, 4096);
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let commit = |store: &Store, durability: Durability, states: &mut Vec<State>| {
        let start = rec.ops();
        store.commit_with(durability).unwrap();
        states.push(State {
            start,
            end: rec.ops(),
            durable: durability == Durability::Immediate,
            fp: common::fingerprint(store).unwrap(),
        });
    };
    {
        let mut b = store.new_layer(None).unwrap();
        b.put("etc/os", b"lstore").unwrap();
        b.put("data/base.bin", &vec![7u8; 20_000]).unwrap();
        let img = b.finish(Some("img")).unwrap();
        store
            .create_container_with(&img, Some("c0"), &[Mount::parse_volume_flag("vol:/data").unwrap()])
            .unwrap();
        store.create_container(&img, Some("c1")).unwrap();
    }
    commit(&store, Durability::Immediate, &mut states);
    let mut next_name = 2;
    for step in 0..70 {
        let names: Vec<String> = store
            .containers()
            .unwrap()
            .into_iter()
            .map(|c| c.name.unwrap())
            .collect();
        let c = store.container(&names[rng.below(names.len() as u64) as usize]).unwrap();
        let key = format!("{}/k{}", if rng.below(3) == 0 { "data" } else { "app" }, rng.below(12));
        match rng.below(10) {
            0..=2 => {
                let len = [10, 300, 5000, 40_000][rng.below(4) as usize];
                let v: Vec<u8> = (0..len).map(|i| (i as u64 ^ seed ^ step) as u8).collect();
                c.put(&key, &v).unwrap();
            }
            3..=4 => {
                let off = rng.below(50_000);
                c.write_at(&key, off, &vec![step as u8 | 1; 1 + rng.below(9000) as usize])
                    .unwrap();
            }
            5 => {
                c.delete(&key).unwrap();
            }
            6 => {
                c.commit(Some(&format!("L{step}"))).unwrap();
            }
            7 => {
                let img = store.layer("img").unwrap();
                store.create_container(&img, Some(&format!("c{next_name}"))).unwrap();
                next_name += 1;
            }
            8 if names.len() > 2 => {
                store.remove_container(&names[names.len() - 1]).unwrap();
            }
            _ => {
                drop(c);
                let start = rec.ops();
                store.gc_with([0.0, 0.5][rng.below(2) as usize]).unwrap();
                states.push(State {
                    start,
                    end: rec.ops(),
                    durable: true,
                    fp: common::fingerprint(&store).unwrap(),
                });
                continue;
            }
        }
        if rng.below(3) == 0 {
            let d = if rng.below(4) == 0 {
                Durability::None
            } else {
                Durability::Immediate
            };
            commit(&store, d, &mut states);
        }
    }
    commit(&store, Durability::Immediate, &mut states);
    drop(store);
    (rec, created, states)
}

fn check_cuts(seed: u64, cuts: usize) {
    check_cuts_of(workload, seed, cuts)
}

type Workload = fn(&Path, u64) -> (Arc<RecordingIo>, usize, Vec<State>);

fn check_cuts_of(workload: Workload, seed: u64, cuts: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let (rec, created, states) = workload(&path, seed);
    let total = rec.ops();
    let image = dir.path().join("after-cut");
    let mut rng = Rng(seed + 99);
    let mut checked = 0;
    let mut rolled_back = 0;
    for i in 0..cuts {
        let at = if i == 0 {
            total
        } else {
            created + rng.below((total - created + 1) as u64) as usize
        };
        let mode = [Cut::DropAll, Cut::Tear, Cut::Reorder][i % 3];
        std::fs::write(&image, rec.image_at(at, mode, rng.next())).unwrap();
        let store = match Store::open(&image) {
            Ok(s) => s,
            Err(e) => panic!("cut at op {at}/{total} ({mode:?}) does not open: {e}"),
        };
        let fp = common::fingerprint(&store).unwrap();
        let last_durable = states
            .iter()
            .rposition(|s| s.durable && s.end <= at)
            .expect("creation commit is durable");
        let ok = states[last_durable..]
            .iter()
            .enumerate()
            .any(|(j, s)| (j == 0 || s.start < at) && s.fp == fp);
        let newest_started = states.iter().rposition(|s| s.start < at).unwrap_or(0);
        if states[newest_started].fp != fp {
            rolled_back += 1;
        }
        assert!(
            ok,
            "cut at op {at}/{total} ({mode:?}, seed {seed}): the store shows no state that commit could have left"
        );
        let report = store.verify(true).unwrap();
        assert!(
            report.is_clean(),
            "cut at op {at} ({mode:?}): verify found {:?}",
            report.problems
        );
        checked += 1;
    }
    assert_eq!(checked, cuts);
    // The cuts must land inside commits too, where the newest commit is not (yet) visible.
    assert!(
        rolled_back > cuts / 20,
        "only {rolled_back} of {cuts} cuts fell inside a commit"
    );
}

fn cuts() -> usize {
    std::env::var("LSTORE_CRASH_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

#[test]
fn power_cuts_leave_a_committed_state_seed_1() {
    check_cuts(1, cuts() / 3);
}

#[test]
fn power_cuts_leave_a_committed_state_seed_2() {
    check_cuts(2, cuts() / 3);
}

#[test]
fn power_cuts_leave_a_committed_state_seed_3() {
    check_cuts(3, cuts() / 3);
}

/// Containers of a few MiB come and go with gc between: extents are pooled, reused by later
/// writes and cut off the end of the file, all under power cuts.
fn reuse_workload(path: &Path, seed: u64) -> (Arc<RecordingIo>, usize, Vec<State>) {
    let (rec, store, created, mut states) = recorded(path, 65536);
    let record = |store: &Store, start: usize, durable: bool, states: &mut Vec<State>| {
        states.push(State {
            start,
            end: rec.ops(),
            durable,
            fp: common::fingerprint(store).unwrap(),
        });
    };
    let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
    let keep = store.create_container(&img, Some("keep")).unwrap();
    let start = rec.ops();
    store.commit().unwrap();
    record(&store, start, true, &mut states);
    let mut rng = Rng(seed | 1);
    let mut reports = Vec::new();
    for round in 0..6u64 {
        let c = store.create_container(&img, Some(&format!("c{round}"))).unwrap();
        for piece in 0..5u64 {
            let v = common::noise(700_000, seed * 1000 + round * 10 + piece);
            c.put(format!("p{piece}"), &v).unwrap();
            keep.put(format!("r{round}"), &round.to_le_bytes()).unwrap();
            let d = if rng.below(3) == 0 {
                Durability::None
            } else {
                Durability::Immediate
            };
            let start = rec.ops();
            store.commit_with(d).unwrap();
            record(&store, start, d == Durability::Immediate, &mut states);
        }
        drop(c);
        if round > 0 {
            store.remove_container(&format!("c{}", round - 1)).unwrap();
        }
        let start = rec.ops();
        store.commit().unwrap();
        record(&store, start, true, &mut states);
        let start = rec.ops();
        let t = [0.05, 0.5][rng.below(2) as usize];
        reports.push(store.gc_with(t).unwrap());
        record(&store, start, true, &mut states);
    }
    // The workload does what it is for: space pooled, reused and cut (18 MiB written in all).
    assert!(reports.iter().any(|r| r.pool_bytes > 0), "{reports:?}");
    assert!(reports.iter().any(|r| r.cut_bytes > 0), "{reports:?}");
    assert!(std::fs::metadata(path).unwrap().len() < 12 << 20, "{reports:?}");
    drop((img, keep));
    drop(store);
    (rec, created, states)
}

#[test]
fn power_cuts_while_gc_pools_cuts_and_writers_reuse_space_keep_every_durable_commit() {
    check_cuts_of(reuse_workload, 11, cuts() / 6);
}

#[test]
fn a_crash_anywhere_in_gc_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for attempt in 0..12u64 {
        let path = dir.path().join(format!("g{attempt}"));
        let (rec, store, _, _) = recorded(&path, 4096);
        let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
        let keep = store.create_container(&img, Some("keep")).unwrap();
        let gone = store.create_container(&img, Some("gone")).unwrap();
        for i in 0..30u64 {
            keep.put(format!("k{i}"), &vec![i as u8 + 1; 30_000]).unwrap();
            gone.put(format!("k{i}"), &vec![i as u8 + 100; 200_000]).unwrap();
            store.commit().unwrap();
        }
        store.remove_container("gone").unwrap();
        store.commit().unwrap();
        let before = common::fingerprint(&store).unwrap();
        drop((img, keep, gone));
        // The process dies after a random number of gc's operations.
        rec.die_after(1 + (attempt * 7919 % 60) as usize);
        let r = store.gc_with(0.5);
        drop(store);
        drop(rec);
        let reopened = Store::open(&path).unwrap();
        assert_eq!(
            common::fingerprint(&reopened).unwrap(),
            before,
            "attempt {attempt} (gc returned {r:?})"
        );
        assert!(reopened.verify(true).unwrap().is_clean());
        // And a gc that completes afterwards still works.
        reopened.gc().unwrap();
        assert_eq!(common::fingerprint(&reopened).unwrap(), before);
    }
}

#[test]
fn a_full_disk_fails_the_operation_and_keeps_the_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let rec = Arc::new(RecordingIo::create(&path).unwrap());
    let store = Store::create_with_io(rec.clone(), &path, Options::default()).unwrap();
    let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
    let c = store.create_container(&img, Some("c")).unwrap();
    c.put("a", b"committed").unwrap();
    store.commit().unwrap();
    let before = common::fingerprint(&store).unwrap();
    rec.set_space(100_000);
    // Distinct blocks (identical ones would dedup into one chunk).
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i / 4093) as u8 ^ (i % 251) as u8).collect();
    let r = c.put("b", &big).and_then(|_| store.commit());
    assert!(r.is_err(), "the disk is full");
    // The store refuses further writes until reopened, and reopens at its last commit.
    assert!(c.put("x", b"y").is_err());
    drop((img, c, store, rec));
    let reopened = Store::open(&path).unwrap();
    assert_eq!(common::fingerprint(&reopened).unwrap(), before);
}

/// The keys `k0..` a writer thread put into container `b`, each holding its own number: after
/// any cut they must be a prefix (never a later key without an earlier one) of at least `at_least`.
fn check_prefix(store: &Store, at_least: u64, what: &str) {
    let b = store.container("b").unwrap();
    let n = b.list("k").unwrap().count() as u64;
    assert!(
        n >= at_least,
        "{what}: container b lost writes: {n} keys, {at_least} were durable"
    );
    for i in 0..n {
        let v = b.get(format!("k{i:05}")).unwrap();
        assert_eq!(
            v.as_deref(),
            Some(format!("{i}").repeat(300).as_bytes()),
            "{what}: k{i:05}"
        );
    }
}

#[test]
fn power_cuts_while_another_thread_writes_during_a_commit_s_sync_keep_every_durable_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let rec = Arc::new(RecordingIo::create(&path).unwrap());
    let opts = Options {
        block_size: 4096,
        segment_size: 4 << 20,
        ..Default::default()
    };
    let store = Store::create_with_io(rec.clone(), &path, opts).unwrap();
    let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
    let a = store.create_container(&img, Some("a")).unwrap();
    store.create_container(&img, Some("b")).unwrap();
    store.commit().unwrap();
    rec.slow_syncs(std::time::Duration::from_millis(2));
    let created = rec.ops();
    let written = std::sync::atomic::AtomicU64::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Container a's commits, each with what `b` held for certain when it began.
    let mut commits: Vec<(usize, usize, bool, Vec<u8>, u64)> = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            let b = store.container("b").unwrap();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                b.put(format!("k{i:05}"), format!("{i}").repeat(300).as_bytes())
                    .unwrap();
                i += 1;
                written.store(i, std::sync::atomic::Ordering::SeqCst);
                // Paced, so that its writes spread over all of a's commits and their syncs.
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
        });
        for step in 0..60u64 {
            // Every fifth value is large enough for a two-sync commit (records, superblock).
            let len = [100, 9000, 70_000, 1000, 2_500_000][step as usize % 5];
            let v: Vec<u8> = (0..len).map(|j| (j as u64 ^ step ^ (j as u64 >> 12)) as u8).collect();
            a.put("v", &v).unwrap();
            let durable = step % 4 != 3;
            let b_before = written.load(std::sync::atomic::Ordering::SeqCst);
            let start = rec.ops();
            store
                .commit_with(if durable {
                    Durability::Immediate
                } else {
                    Durability::None
                })
                .unwrap();
            commits.push((start, rec.ops(), durable, v, b_before));
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    drop((a, img, store));
    let total = rec.ops();
    let image = dir.path().join("after-cut");
    let mut rng = Rng(7);
    for i in 0..300 {
        let at = if i == 0 {
            total
        } else {
            created + rng.below((total - created + 1) as u64) as usize
        };
        let mode = [Cut::DropAll, Cut::Tear, Cut::Reorder][i % 3];
        std::fs::write(&image, rec.image_at(at, mode, rng.next())).unwrap();
        let what = format!("cut at op {at}/{total} ({mode:?})");
        let store = Store::open(&image).unwrap_or_else(|e| panic!("{what} does not open: {e}"));
        let v = store.container("a").unwrap().get("v").unwrap();
        let last_durable = commits.iter().rposition(|c| c.2 && c.1 <= at);
        // a shows the last durable commit's value or a later commit's that had begun.
        let candidates = match last_durable {
            Some(d) => &commits[d..],
            None => &commits[..],
        };
        let shown = candidates.iter().any(|c| {
            (c.0 < at || last_durable.is_some_and(|d| std::ptr::eq(c, &commits[d]))) && v.as_deref() == Some(&c.3[..])
        });
        assert!(
            shown || (last_durable.is_none() && v.is_none()),
            "{what}: container a shows no state a commit left"
        );
        check_prefix(&store, last_durable.map_or(0, |d| commits[d].4), &what);
        assert!(store.verify(true).unwrap().is_clean(), "{what}: verify");
    }
}

/// A recorded store at `path` with small blocks and segments, an empty image and containers
/// `a` and `b` on it, committed.
fn recorded_store_with_a_and_b(path: &Path) -> (Arc<RecordingIo>, Store) {
    let rec = Arc::new(RecordingIo::create(path).unwrap());
    let opts = Options {
        block_size: 4096,
        segment_size: 4 << 20,
        ..Default::default()
    };
    let store = Store::create_with_io(rec.clone(), path, opts).unwrap();
    let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
    store.create_container(&img, Some("a")).unwrap();
    store.create_container(&img, Some("b")).unwrap();
    store.commit().unwrap();
    (rec, store)
}

/// One writer's commit: its first and last operation, whether durable, the value it showed.
type Acked = (usize, usize, bool, Vec<u8>);

#[test]
fn power_cuts_while_two_writer_processes_commit_their_own_containers_keep_every_durable_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let (rec, store) = recorded_store_with_a_and_b(&path);
    drop(store);
    let created = rec.ops();
    // Two writers, each with its own handle of the file (as two processes have), each
    // writing its own container and committing, durably or not; each commit is logged with
    // the value it made visible.
    let commits: Vec<Vec<Acked>> = std::thread::scope(|s| {
        let writers: Vec<_> = ["a", "b"]
            .into_iter()
            .enumerate()
            .map(|(t, name)| {
                let io: Arc<dyn lstore::Io> = if t == 0 {
                    rec.clone()
                } else {
                    Arc::new(rec.another_handle(&path).unwrap())
                };
                let (rec, path) = (&rec, &path);
                s.spawn(move || {
                    let store = Store::open_with_io(io, path, true).unwrap();
                    let c = store.container(name).unwrap();
                    let mut log = Vec::new();
                    for step in 0..24u64 {
                        let len = [100, 9000, 70_000, 1000, 300_000][(step as usize + t) % 5];
                        let v: Vec<u8> = (0..len)
                            .map(|j| (j as u64 ^ step ^ t as u64 ^ (j as u64 >> 9)) as u8)
                            .collect();
                        c.put("v", &v).unwrap();
                        // One writer commits durably, the other mostly not: a durable commit
                        // then lands on the other's unsynced records.
                        let durable = t == 0 || step % 4 == 3;
                        let start = rec.ops();
                        store
                            .commit_with(if durable {
                                Durability::Immediate
                            } else {
                                Durability::None
                            })
                            .unwrap();
                        log.push((start, rec.ops(), durable, v));
                    }
                    log
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let total = rec.ops();
    let image = dir.path().join("after-cut");
    let mut rng = Rng(11);
    let mut rolled_back = 0;
    let all: Vec<&Acked> = commits.iter().flatten().collect();
    for i in 0..200 {
        // Half the cuts anywhere, half inside some commit (between its first write and its
        // last sync), where the protocol's ordering matters.
        let at = match i {
            0 => total,
            _ if i % 2 == 0 => created + rng.below((total - created + 1) as u64) as usize,
            _ => {
                let c = all[rng.below(all.len() as u64) as usize];
                c.0 + rng.below((c.1 - c.0 + 1) as u64) as usize
            }
        };
        let mode = if i % 2 == 1 {
            Cut::Reorder
        } else {
            [Cut::DropAll, Cut::Tear, Cut::Reorder][i % 3]
        };
        std::fs::write(&image, rec.image_at(at, mode, rng.next())).unwrap();
        let what = format!("cut at op {at}/{total} ({mode:?})");
        let store = Store::open(&image).unwrap_or_else(|e| panic!("{what} does not open: {e}"));
        for (name, log) in ["a", "b"].iter().zip(&commits) {
            let v = store.container(name).unwrap().get("v").unwrap();
            // At least the last commit acknowledged durable before the cut; at most one
            // that had begun.
            let durable = log.iter().rposition(|c| c.2 && c.1 <= at);
            let from = durable.unwrap_or(0);
            let shown = log[from..]
                .iter()
                .enumerate()
                .any(|(k, c)| (k == 0 || c.0 < at) && v.as_deref() == Some(&c.3[..]));
            let empty_ok = durable.is_none() && v.is_none();
            assert!(
                shown || empty_ok,
                "{what}: container {name} shows no state its commits could have left"
            );
        }
        let report = store.verify(true).unwrap();
        assert!(report.is_clean(), "{what}: verify found {:?}", report.problems);
        if store.recovery().is_some() {
            rolled_back += 1;
        }
    }
    assert!(rolled_back > 0, "no cut fell inside a commit");
}

#[test]
fn a_durable_commit_on_another_writer_s_unsynced_commit_syncs_its_records_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let (rec, first) = recorded_store_with_a_and_b(&path);
    let second = Store::open_with_io(Arc::new(rec.another_handle(&path).unwrap()), &path, true).unwrap();
    let v1 = vec![1u8; 50_000];
    let v2: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let b = second.container("b").unwrap();
    b.put("v", &v1).unwrap();
    second.commit().unwrap();
    b.put("v", &v2).unwrap();
    second.commit_with(Durability::None).unwrap();
    // The first writer's durable commit is built on the second's unsynced one.
    first.container("a").unwrap().put("v", b"a's").unwrap();
    let start = rec.ops();
    first.commit().unwrap();
    let end = rec.ops();
    let image = dir.path().join("after-cut");
    for at in start..=end {
        for seed in 0..12 {
            std::fs::write(&image, rec.image_at(at, Cut::Reorder, seed)).unwrap();
            let what = format!("cut at op {at} of the commit {start}..{end}, seed {seed}");
            let store = Store::open(&image).unwrap_or_else(|e| panic!("{what} does not open: {e}"));
            let got = store.container("b").unwrap().get("v");
            assert!(
                matches!(&got, Ok(Some(v)) if *v == v1 || *v == v2),
                "{what}: b reads {:?}",
                got.map(|v| v.map(|v| v.len()))
            );
            if at == end {
                assert_eq!(
                    store.container("a").unwrap().get("v").unwrap().unwrap(),
                    b"a's",
                    "{what}"
                );
            }
            assert!(store.verify(true).unwrap().is_clean(), "{what}");
        }
    }
}
