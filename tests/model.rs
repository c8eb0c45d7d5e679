//! Model-based test: random operations on layers and containers, applied to the store and
//! to plain in-memory maps, must never disagree — across commits and reopens.

use lstore::{Options, Store};
use proptest::prelude::*;
use std::collections::BTreeMap;

type Model = BTreeMap<String, Vec<u8>>;

#[derive(Debug, Clone)]
enum Op {
    Put {
        c: usize,
        key: usize,
        len: usize,
        seed: u8,
    },
    WriteAt {
        c: usize,
        key: usize,
        off: u64,
        len: usize,
        seed: u8,
    },
    Truncate {
        c: usize,
        key: usize,
        len: u64,
    },
    Delete {
        c: usize,
        key: usize,
    },
    CommitLayer {
        c: usize,
    },
    NewContainer {
        layer: usize,
    },
    RemoveContainer {
        c: usize,
    },
    StoreCommit,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![0usize..300, 300usize..20_000, Just(4096usize), Just(8192usize)];
    let off = prop_oneof![0u64..100, 0u64..40_000, (0u64..10).prop_map(|b| b * 4096)];
    prop_oneof![
        4 => (0..4usize, 0..8usize, len.clone(), any::<u8>()).prop_map(|(c, key, len, seed)| Op::Put { c, key, len, seed }),
        5 => (0..4usize, 0..8usize, off, len, any::<u8>()).prop_map(|(c, key, off, len, seed)| Op::WriteAt { c, key, off, len, seed }),
        2 => (0..4usize, 0..8usize, 0u64..30_000).prop_map(|(c, key, len)| Op::Truncate { c, key, len }),
        2 => (0..4usize, 0..8usize).prop_map(|(c, key)| Op::Delete { c, key }),
        1 => (0..4usize).prop_map(|c| Op::CommitLayer { c }),
        1 => (0..8usize).prop_map(|layer| Op::NewContainer { layer }),
        1 => (0..4usize).prop_map(|c| Op::RemoveContainer { c }),
        1 => Just(Op::StoreCommit),
        1 => Just(Op::Reopen),
    ]
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    // Some runs of zeros, so holes and trimmed chunks are exercised too.
    (0..len)
        .map(|i| {
            if (i / 1000) % 3 == 2 {
                0
            } else {
                (i as u8).wrapping_mul(31).wrapping_add(seed)
            }
        })
        .collect()
}

struct World {
    layers: Vec<(String, Model)>,
    containers: Vec<(String, Model)>,
    committed_containers: Vec<(String, Model)>,
    committed_layers: usize,
    next: usize,
}

/// Compares values without printing megabytes: length and first differing offset.
fn same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} bytes, want {}; first difference at {at:?}",
            got.len(),
            want.len()
        );
    }
}

fn check(store: &Store, w: &World) {
    for (name, model) in &w.layers {
        let l = store.layer(name).unwrap();
        let keys: Vec<String> = l
            .list("")
            .unwrap()
            .map(|i| String::from_utf8(i.unwrap().key).unwrap())
            .collect();
        assert_eq!(keys, model.keys().cloned().collect::<Vec<_>>(), "keys of layer {name}");
        for (k, v) in model {
            same(&l.get(k).unwrap().unwrap(), v, &format!("layer {name} key {k}"));
        }
    }
    for (name, model) in &w.containers {
        let c = store.container(name).unwrap();
        let keys: Vec<String> = c.list("").unwrap().map(|i| String::from_utf8(i.key).unwrap()).collect();
        assert_eq!(
            keys,
            model.keys().cloned().collect::<Vec<_>>(),
            "keys of container {name}"
        );
        for (k, v) in model {
            same(&c.get(k).unwrap().unwrap(), v, &format!("container {name} key {k}"));
            let mut buf = vec![0u8; 777];
            let n = c.read_at(k, 1000, &mut buf).unwrap();
            let want = v.get(1000..).map_or(&[][..], |s| &s[..s.len().min(777)]);
            same(&buf[..n], want, &format!("read_at of container {name} key {k}"));
        }
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.lstore");
    let opts = Options {
        block_size: 4096,
        segment_size: 4 << 20,
        ..Default::default()
    };
    let mut store = Store::create(&path, opts).unwrap();
    {
        // Layer and container handles keep the store open; these go out of scope here.
        let base = store.new_layer(None).unwrap().finish(Some("L0")).unwrap();
        store.create_container(&base, Some("C0")).unwrap();
    }
    store.commit().unwrap();
    let mut w = World {
        layers: vec![("L0".into(), Model::new())],
        containers: vec![("C0".into(), Model::new())],
        committed_containers: vec![("C0".into(), Model::new())],
        committed_layers: 1,
        next: 1,
    };
    for op in ops {
        let nc = w.containers.len();
        match op {
            Op::Put { c, key, len, seed } if nc > 0 => {
                let (name, m) = &mut w.containers[c % nc];
                let k = format!("dir/k{key}");
                let d = data(len, seed);
                store.container(name).unwrap().put(&k, &d).unwrap();
                m.insert(k, d);
            }
            Op::WriteAt { c, key, off, len, seed } if nc > 0 => {
                let (name, m) = &mut w.containers[c % nc];
                let k = format!("dir/k{key}");
                let d = data(len, seed);
                store.container(name).unwrap().write_at(&k, off, &d).unwrap();
                let v = m.entry(k).or_default();
                // As with pwrite, writing nothing extends nothing (but creates the key).
                let end = off as usize + len;
                if len > 0 && v.len() < end {
                    v.resize(end, 0);
                }
                if len > 0 {
                    v[off as usize..end].copy_from_slice(&d);
                }
            }
            Op::Truncate { c, key, len } if nc > 0 => {
                let (name, m) = &mut w.containers[c % nc];
                let k = format!("dir/k{key}");
                let r = store.container(name).unwrap().truncate(&k, len);
                match m.get_mut(&k) {
                    Some(v) => {
                        r.unwrap();
                        v.resize(len as usize, 0);
                    }
                    None => assert!(matches!(r, Err(lstore::Error::KeyNotFound(_)))),
                }
            }
            Op::Delete { c, key } if nc > 0 => {
                let (name, m) = &mut w.containers[c % nc];
                let k = format!("dir/k{key}");
                let existed = store.container(name).unwrap().delete(&k).unwrap();
                assert_eq!(existed, m.remove(&k).is_some());
            }
            Op::CommitLayer { c } if nc > 0 => {
                let (name, m) = &w.containers[c % nc];
                let lname = format!("L{}", w.next);
                w.next += 1;
                store.container(name).unwrap().commit(Some(&lname)).unwrap();
                w.layers.push((lname, m.clone()));
            }
            Op::NewContainer { layer } => {
                let (lname, m) = w.layers[layer % w.layers.len()].clone();
                let cname = format!("C{}", w.next);
                w.next += 1;
                let l = store.layer(&lname).unwrap();
                store.create_container(&l, Some(&cname)).unwrap();
                w.containers.push((cname, m));
            }
            Op::RemoveContainer { c } if nc > 0 => {
                let (name, _) = w.containers.remove(c % nc);
                store.remove_container(&name).unwrap();
            }
            Op::StoreCommit => {
                store.commit().unwrap();
                w.committed_containers = w.containers.clone();
                w.committed_layers = w.layers.len();
            }
            Op::Reopen => {
                // Uncommitted changes are dropped with the handle, as an uncommitted
                // transaction is: the store comes back at its last commit.
                drop(store);
                store = Store::open(&path).unwrap();
                w.containers = w.committed_containers.clone();
                w.layers.truncate(w.committed_layers);
            }
            _ => {}
        }
        check(&store, &w);
    }
    store.commit().unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    check(&store, &w);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
