//! Model-based test: random operations on layers, containers, volumes and the build cache,
//! applied to the store and to plain in-memory maps, must never disagree — across commits
//! and reopens.

use lstore::{Error, Mount, Options, Store};
use proptest::prelude::*;
use std::collections::BTreeMap;

type Model = BTreeMap<String, Vec<u8>>;

#[derive(Debug, Clone)]
enum Op {
    Put {
        c: usize,
        key: usize,
        vol: bool,
        len: usize,
        seed: u8,
    },
    WriteAt {
        c: usize,
        key: usize,
        vol: bool,
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
        vol: bool,
    },
    CommitLayer {
        c: usize,
    },
    NewContainer {
        layer: usize,
        volume: Option<(u8, bool)>,
    },
    RemoveContainer {
        c: usize,
    },
    RemoveVolume {
        v: u8,
    },
    Build {
        layer: usize,
        step: u8,
    },
    StoreCommit,
    Reopen,
    Gc {
        threshold: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![0usize..300, 300usize..20_000, Just(4096usize), Just(8192usize)];
    let off = prop_oneof![0u64..100, 0u64..40_000, (0u64..10).prop_map(|b| b * 4096)];
    prop_oneof![
        4 => (0..4usize, 0..8usize, any::<bool>(), len.clone(), any::<u8>())
            .prop_map(|(c, key, vol, len, seed)| Op::Put { c, key, vol, len, seed }),
        5 => (0..4usize, 0..8usize, any::<bool>(), off, len, any::<u8>())
            .prop_map(|(c, key, vol, off, len, seed)| Op::WriteAt { c, key, vol, off, len, seed }),
        2 => (0..4usize, 0..8usize, 0u64..30_000).prop_map(|(c, key, len)| Op::Truncate { c, key, len }),
        2 => (0..4usize, 0..8usize, any::<bool>()).prop_map(|(c, key, vol)| Op::Delete { c, key, vol }),
        1 => (0..4usize).prop_map(|c| Op::CommitLayer { c }),
        2 => (0..8usize, proptest::option::of((0..3u8, any::<bool>())))
            .prop_map(|(layer, volume)| Op::NewContainer { layer, volume }),
        1 => (0..4usize).prop_map(|c| Op::RemoveContainer { c }),
        1 => (0..3u8).prop_map(|v| Op::RemoveVolume { v }),
        2 => (0..8usize, 0..3u8).prop_map(|(layer, step)| Op::Build { layer, step }),
        1 => Just(Op::StoreCommit),
        1 => (0..3u8).prop_map(|threshold| Op::Gc { threshold }),
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

#[derive(Clone)]
struct Ctr {
    name: String,
    /// The container's own tree (image keys under a mount target stay here, hidden).
    own: Model,
    /// Volume mounted at `vol/`, and whether read-only.
    volume: Option<(String, bool)>,
}

#[derive(Clone)]
struct World {
    layers: Vec<(String, Model)>,
    containers: Vec<Ctr>,
    volumes: BTreeMap<String, Model>,
    /// (parent layer name, step) → built layer name.
    cache: BTreeMap<(String, u8), String>,
    next: usize,
}

impl World {
    /// What a container shows: its own keys outside `vol/`, and the volume's under it.
    fn visible(&self, c: &Ctr) -> Model {
        match &c.volume {
            None => c.own.clone(),
            Some((v, _)) => {
                let mut m: Model = c
                    .own
                    .iter()
                    .filter(|(k, _)| !k.starts_with("vol/"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                for (k, val) in &self.volumes[v] {
                    m.insert(format!("vol/{k}"), val.clone());
                }
                m
            }
        }
    }
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
    for c in &w.containers {
        let model = w.visible(c);
        let h = store.container(&c.name).unwrap();
        let keys: Vec<String> = h.list("").unwrap().map(|i| String::from_utf8(i.key).unwrap()).collect();
        assert_eq!(
            keys,
            model.keys().cloned().collect::<Vec<_>>(),
            "keys of container {}",
            c.name
        );
        for (k, v) in &model {
            same(&h.get(k).unwrap().unwrap(), v, &format!("container {} key {k}", c.name));
            let mut buf = vec![0u8; 777];
            let n = h.read_at(k, 1000, &mut buf).unwrap();
            let want = v.get(1000..).map_or(&[][..], |s| &s[..s.len().min(777)]);
            same(&buf[..n], want, &format!("read_at of container {} key {k}", c.name));
        }
    }
    let vols: Vec<(String, u64)> = store.volumes().unwrap().into_iter().map(|v| (v.name, v.keys)).collect();
    let want: Vec<(String, u64)> = w.volumes.iter().map(|(n, m)| (n.clone(), m.len() as u64)).collect();
    assert_eq!(vols, want, "volumes");
}

/// The model map a container write goes to, or `None` when it must be refused as read-only.
fn target<'w>(w: &'w mut World, c: usize, key: &str) -> Option<&'w mut Model> {
    let ctr = &mut w.containers[c];
    match &ctr.volume {
        Some((v, ro)) if key.starts_with("vol/") => {
            if *ro {
                None
            } else {
                w.volumes.get_mut(v)
            }
        }
        _ => Some(&mut ctr.own),
    }
}

fn sub(key: &str, c: &Ctr) -> String {
    match &c.volume {
        Some(_) if key.starts_with("vol/") => key["vol/".len()..].to_string(),
        _ => key.to_string(),
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
        containers: vec![Ctr {
            name: "C0".into(),
            own: Model::new(),
            volume: None,
        }],
        volumes: BTreeMap::new(),
        cache: BTreeMap::new(),
        next: 1,
    };
    let mut committed = w.clone();
    for op in ops {
        let nc = w.containers.len();
        match op {
            Op::Put { c, key, vol, len, seed } if nc > 0 => {
                let c = c % nc;
                let k = format!("{}/k{key}", if vol { "vol" } else { "dir" });
                let d = data(len, seed);
                let r = store.container(&w.containers[c].name).unwrap().put(&k, &d);
                let s = sub(&k, &w.containers[c]);
                match target(&mut w, c, &k) {
                    Some(m) => {
                        r.unwrap();
                        m.insert(s, d);
                    }
                    None => assert!(matches!(r, Err(Error::ReadOnly(_)))),
                }
            }
            Op::WriteAt {
                c,
                key,
                vol,
                off,
                len,
                seed,
            } if nc > 0 => {
                let c = c % nc;
                let k = format!("{}/k{key}", if vol { "vol" } else { "dir" });
                let d = data(len, seed);
                let r = store.container(&w.containers[c].name).unwrap().write_at(&k, off, &d);
                let s = sub(&k, &w.containers[c]);
                match target(&mut w, c, &k) {
                    Some(m) => {
                        r.unwrap();
                        let v = m.entry(s).or_default();
                        // As with pwrite, writing nothing extends nothing (but creates the key).
                        let end = off as usize + len;
                        if len > 0 && v.len() < end {
                            v.resize(end, 0);
                        }
                        if len > 0 {
                            v[off as usize..end].copy_from_slice(&d);
                        }
                    }
                    None => assert!(matches!(r, Err(Error::ReadOnly(_)))),
                }
            }
            Op::Truncate { c, key, len } if nc > 0 => {
                let ctr = &mut w.containers[c % nc];
                let k = format!("dir/k{key}");
                let r = store.container(&ctr.name).unwrap().truncate(&k, len);
                match ctr.own.get_mut(&k) {
                    Some(v) => {
                        r.unwrap();
                        v.resize(len as usize, 0);
                    }
                    None => assert!(matches!(r, Err(Error::KeyNotFound(_)))),
                }
            }
            Op::Delete { c, key, vol } if nc > 0 => {
                let c = c % nc;
                let k = format!("{}/k{key}", if vol { "vol" } else { "dir" });
                let r = store.container(&w.containers[c].name).unwrap().delete(&k);
                let s = sub(&k, &w.containers[c]);
                match target(&mut w, c, &k) {
                    Some(m) => assert_eq!(r.unwrap(), m.remove(&s).is_some()),
                    None => assert!(matches!(r, Err(Error::ReadOnly(_)))),
                }
            }
            Op::CommitLayer { c } if nc > 0 => {
                let ctr = &w.containers[c % nc];
                let lname = format!("L{}", w.next);
                w.next += 1;
                store.container(&ctr.name).unwrap().commit(Some(&lname)).unwrap();
                // Volume data never goes into the layer; the image's keys under the mount do.
                w.layers.push((lname, ctr.own.clone()));
            }
            Op::NewContainer { layer, volume } => {
                let (lname, m) = w.layers[layer % w.layers.len()].clone();
                let cname = format!("C{}", w.next);
                w.next += 1;
                let l = store.layer(&lname).unwrap();
                let volume = volume.map(|(v, ro)| (format!("v{v}"), ro));
                let mounts: Vec<Mount> = volume
                    .iter()
                    .map(|(v, ro)| {
                        Mount::parse_volume_flag(&format!("{v}:/vol{}", if *ro { ":ro" } else { "" })).unwrap()
                    })
                    .collect();
                store.create_container_with(&l, Some(&cname), &mounts).unwrap();
                if let Some((v, _)) = &volume {
                    let vm = w.volumes.entry(v.clone()).or_default();
                    if vm.is_empty() {
                        for (k, val) in m.iter().filter(|(k, _)| k.starts_with("vol/")) {
                            vm.insert(k["vol/".len()..].to_string(), val.clone());
                        }
                    }
                }
                w.containers.push(Ctr {
                    name: cname,
                    own: m,
                    volume,
                });
            }
            Op::RemoveContainer { c } if nc > 0 => {
                let ctr = w.containers.remove(c % nc);
                store.remove_container(&ctr.name).unwrap();
            }
            Op::RemoveVolume { v } => {
                let name = format!("v{v}");
                let r = store.remove_volume(&name);
                let used = w
                    .containers
                    .iter()
                    .any(|c| c.volume.as_ref().map(|x| &x.0) == Some(&name));
                match (w.volumes.contains_key(&name), used) {
                    (false, _) => assert!(matches!(r, Err(Error::NoSuchVolume(_)))),
                    (true, true) => assert!(matches!(r, Err(Error::InUse(_)))),
                    (true, false) => {
                        r.unwrap();
                        w.volumes.remove(&name);
                    }
                }
            }
            Op::Build { layer, step } => {
                let (pname, pm) = w.layers[layer % w.layers.len()].clone();
                let parent = store.layer(&pname).unwrap();
                let key = format!("built/{step}");
                let (built, cached) = store
                    .build(Some(&parent), format!("SET {key}").as_bytes(), |b| {
                        b.put(&key, &[step; 300])
                    })
                    .unwrap();
                match w.cache.get(&(pname.clone(), step)) {
                    Some(prev) => {
                        assert!(cached, "build step hit the cache");
                        assert_eq!(store.layer(prev).unwrap().id(), built.id());
                    }
                    None => {
                        assert!(!cached);
                        let lname = format!("L{}", w.next);
                        w.next += 1;
                        store.tag(&built.id().to_string(), &lname).unwrap();
                        let mut m = pm;
                        m.insert(key, vec![step; 300]);
                        w.layers.push((lname.clone(), m));
                        w.cache.insert((pname, step), lname);
                    }
                }
            }
            Op::Gc { threshold } => {
                // gc commits first; layer handles from before are not held here.
                store.gc_with([0.0, 0.05, 0.9][threshold as usize]).unwrap();
                committed = w.clone();
            }
            Op::StoreCommit => {
                store.commit().unwrap();
                committed = w.clone();
            }
            Op::Reopen => {
                // Uncommitted changes are dropped with the handle, as an uncommitted
                // transaction is: the store comes back at its last commit.
                drop(store);
                store = Store::open(&path).unwrap();
                w = committed.clone();
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
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops);
    }
}

#[test]
fn regression_empty_write_then_delete_after_commit() {
    run(vec![
        Op::Truncate { c: 0, key: 0, len: 0 },
        Op::WriteAt {
            c: 0,
            key: 5,
            vol: false,
            off: 0,
            len: 0,
            seed: 0,
        },
        Op::StoreCommit,
        Op::Delete {
            c: 0,
            key: 5,
            vol: false,
        },
    ]);
}
