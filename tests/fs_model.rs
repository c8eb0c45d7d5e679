//! Model-based test of the file-system operations: random folders, files, symlinks, FIFOs,
//! hard links, renames, removals, modes and xattrs, applied to a container and to a plain
//! in-memory model (paths to inodes), must never disagree: not in what each path holds, not in
//! each folder's listing, not in which names share an inode, not in what `diff` says changed
//! since the last commit; across commits, reopens and gc.

use lstore::{Attrs, Container, Error, FileKind, Options, PutOptions, Store};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug, PartialEq)]
struct Inode {
    kind: FileKind,
    mode: u32,
    data: Vec<u8>,
    target: Option<Vec<u8>>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    nlink: u32,
    /// Once a file has had a second name its entry lives apart from its names (the store's
    /// representation changes, so a diff sees it).
    shared: bool,
}

#[derive(Clone, Default)]
struct Model {
    paths: BTreeMap<Vec<u8>, usize>,
    inodes: HashMap<usize, Inode>,
    next: usize,
}

impl Model {
    fn dirs(&self) -> Vec<Vec<u8>> {
        let mut d = vec![Vec::new()];
        d.extend(
            (self.paths.iter())
                .filter(|(_, i)| self.inodes[i].kind == FileKind::Directory)
                .map(|(p, _)| p.clone()),
        );
        d
    }

    fn pick(&self, i: usize) -> Option<Vec<u8>> {
        (!self.paths.is_empty()).then(|| self.paths.keys().nth(i % self.paths.len()).unwrap().clone())
    }

    fn add(&mut self, path: Vec<u8>, inode: Inode) {
        self.next += 1;
        self.inodes.insert(self.next, inode);
        self.paths.insert(path, self.next);
    }

    fn below(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let mut pre = dir.to_vec();
        pre.push(b'/');
        self.paths.keys().filter(|p| p.starts_with(&pre)).cloned().collect()
    }

    fn unlink(&mut self, path: &[u8]) {
        let ino = self.paths.remove(path).unwrap();
        let n = self.inodes.get_mut(&ino).unwrap();
        n.nlink -= 1;
        if n.nlink == 0 {
            self.inodes.remove(&ino);
        }
    }

    /// What each path is (which file, and what it holds), for comparing two moments.
    fn view(&self) -> BTreeMap<Vec<u8>, (usize, Inode)> {
        self.paths
            .iter()
            .map(|(p, i)| (p.clone(), (*i, self.inodes[i].clone())))
            .collect()
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Mkdir { dir: usize, name: u8 },
    Create { dir: usize, name: u8, len: usize, seed: u8 },
    Write { path: usize, off: u16, len: u16, seed: u8 },
    Symlink { dir: usize, name: u8, target: u8 },
    Fifo { dir: usize, name: u8 },
    Link { from: usize, dir: usize, name: u8 },
    Rename { from: usize, dir: usize, name: u8 },
    Remove { path: usize, recursive: bool },
    Chmod { path: usize, mode: u16 },
    SetXattr { path: usize, name: u8, value: u8 },
    Commit,
    Reopen,
    Gc,
}

const NAMES: [&[u8]; 4] = [b"a", b"b", b"c\xff", b"d"];

fn op() -> impl Strategy<Value = Op> {
    let n = 0u8..4;
    prop_oneof![
        3 => (any::<usize>(), n.clone()).prop_map(|(dir, name)| Op::Mkdir { dir, name }),
        3 => (any::<usize>(), n.clone(), 0usize..70_000, any::<u8>())
            .prop_map(|(dir, name, len, seed)| Op::Create { dir, name, len, seed }),
        2 => (any::<usize>(), 0u16..5000, 1u16..3000, any::<u8>())
            .prop_map(|(path, off, len, seed)| Op::Write { path, off, len, seed }),
        1 => (any::<usize>(), n.clone(), any::<u8>()).prop_map(|(dir, name, target)| Op::Symlink { dir, name, target }),
        1 => (any::<usize>(), n.clone()).prop_map(|(dir, name)| Op::Fifo { dir, name }),
        2 => (any::<usize>(), any::<usize>(), n.clone()).prop_map(|(from, dir, name)| Op::Link { from, dir, name }),
        2 => (any::<usize>(), any::<usize>(), n.clone()).prop_map(|(from, dir, name)| Op::Rename { from, dir, name }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(path, recursive)| Op::Remove { path, recursive }),
        1 => (any::<usize>(), 0u16..0o7777).prop_map(|(path, mode)| Op::Chmod { path, mode }),
        1 => (any::<usize>(), 0u8..3, any::<u8>()).prop_map(|(path, name, value)| Op::SetXattr { path, name, value }),
        1 => Just(Op::Commit),
        1 => Just(Op::Reopen),
        1 => Just(Op::Gc),
    ]
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

fn inode(kind: FileKind, mode: u32) -> Inode {
    Inode {
        kind,
        mode: kind.type_bits() | mode,
        data: Vec::new(),
        target: None,
        xattrs: BTreeMap::new(),
        nlink: 1,
        shared: false,
    }
}

/// Applies `op` to the container and the model. The store's answer decides nothing: an error
/// the model expects must come as that error, and success must come where the model allows.
fn apply(c: &Container, m: &mut Model, op: &Op) {
    let dirs = m.dirs();
    let dir_of = |i: usize| dirs[i % dirs.len()].clone();
    match *op {
        Op::Mkdir { dir, name } => {
            let p = join(&dir_of(dir), NAMES[name as usize]);
            let r = c.mkdir(&p, 0o750);
            if m.paths.contains_key(&p) {
                assert!(matches!(r, Err(Error::Exists(_))), "{r:?}");
            } else {
                r.unwrap();
                m.add(p, inode(FileKind::Directory, 0o750));
            }
        }
        Op::Create { dir, name, len, seed } => {
            let p = join(&dir_of(dir), NAMES[name as usize]);
            if m.paths.contains_key(&p) {
                return;
            }
            let data = bytes(len, seed);
            let opts = PutOptions {
                attrs: Some(Attrs::new(FileKind::Regular, 0o640)),
                ..Default::default()
            };
            c.put_with(&p, &data, &opts).unwrap();
            let mut n = inode(FileKind::Regular, 0o640);
            n.data = data;
            m.add(p, n);
        }
        Op::Write { path, off, len, seed } => {
            let Some(p) = m.pick(path) else { return };
            let ino = m.paths[&p];
            if m.inodes[&ino].kind != FileKind::Regular {
                return;
            }
            let data = bytes(len as usize, seed);
            c.write_at(&p, off as u64, &data).unwrap();
            let d = &mut m.inodes.get_mut(&ino).unwrap().data;
            let end = off as usize + data.len();
            if d.len() < end {
                d.resize(end, 0);
            }
            d[off as usize..end].copy_from_slice(&data);
        }
        Op::Symlink { dir, name, target } => {
            let p = join(&dir_of(dir), NAMES[name as usize]);
            let t = vec![b't', target | 1];
            let r = c.symlink(&t, &p);
            if m.paths.contains_key(&p) {
                assert!(matches!(r, Err(Error::Exists(_))), "{r:?}");
            } else {
                r.unwrap();
                let mut n = inode(FileKind::Symlink, 0o777);
                n.target = Some(t);
                m.add(p, n);
            }
        }
        Op::Fifo { dir, name } => {
            let p = join(&dir_of(dir), NAMES[name as usize]);
            let r = c.create(&p, Attrs::new(FileKind::Fifo, 0o600));
            if m.paths.contains_key(&p) {
                assert!(matches!(r, Err(Error::Exists(_))), "{r:?}");
            } else {
                r.unwrap();
                m.add(p, inode(FileKind::Fifo, 0o600));
            }
        }
        Op::Link { from, dir, name } => {
            let Some(src) = m.pick(from) else { return };
            let p = join(&dir_of(dir), NAMES[name as usize]);
            let ino = m.paths[&src];
            let r = c.link(&src, &p);
            if m.inodes[&ino].kind == FileKind::Directory {
                assert!(matches!(r, Err(Error::IsADirectory(_))), "{r:?}");
            } else if m.paths.contains_key(&p) {
                assert!(matches!(r, Err(Error::Exists(_))), "{r:?}");
            } else {
                r.unwrap();
                let n = m.inodes.get_mut(&ino).unwrap();
                n.nlink += 1;
                n.shared = true;
                m.paths.insert(p, ino);
            }
        }
        Op::Rename { from, dir, name } => {
            let Some(src) = m.pick(from) else { return };
            let to = join(&dir_of(dir), NAMES[name as usize]);
            let is_dir = |m: &Model, p: &[u8]| m.inodes[&m.paths[p]].kind == FileKind::Directory;
            let r = c.rename(&src, &to);
            if src == to {
                r.unwrap();
                return;
            }
            if is_dir(m, &src) && to.starts_with(&[&src[..], b"/"].concat()) {
                assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
                return;
            }
            if m.paths.contains_key(&to) {
                match (is_dir(m, &src), is_dir(m, &to)) {
                    (true, false) => return assert!(matches!(r, Err(Error::NotADirectory(_))), "{r:?}"),
                    (false, true) => return assert!(matches!(r, Err(Error::IsADirectory(_))), "{r:?}"),
                    (true, true) if !m.below(&to).is_empty() => {
                        return assert!(matches!(r, Err(Error::NotEmpty(_))), "{r:?}")
                    }
                    _ => {}
                }
                // Two names of one file: rename does nothing, as POSIX says.
                if m.paths[&src] == m.paths[&to] {
                    r.unwrap();
                    return;
                }
                m.unlink(&to.clone());
            }
            r.unwrap();
            let mut moves = vec![(src.clone(), to.clone())];
            for p in m.below(&src) {
                let new = [&to[..], &p[src.len()..]].concat();
                moves.push((p, new));
            }
            for (old, new) in moves {
                let ino = m.paths.remove(&old).unwrap();
                m.paths.insert(new, ino);
            }
        }
        Op::Remove { path, recursive } => {
            let Some(p) = m.pick(path) else { return };
            let below = m.below(&p);
            let r = c.remove(&p, recursive);
            if !below.is_empty() && !recursive {
                assert!(matches!(r, Err(Error::NotEmpty(_))), "{r:?}");
                return;
            }
            assert!(r.unwrap());
            for q in below {
                m.unlink(&q);
            }
            m.unlink(&p);
        }
        Op::Chmod { path, mode } => {
            let Some(p) = m.pick(path) else { return };
            c.set_attrs(&p, |a| a.mode = mode as u32).unwrap();
            let n = m.inodes.get_mut(&m.paths[&p]).unwrap();
            n.mode = n.kind.type_bits() | mode as u32;
        }
        Op::SetXattr { path, name, value } => {
            let Some(p) = m.pick(path) else { return };
            let xname = format!("user.x{name}").into_bytes();
            let v = vec![0, value];
            c.set_attrs(&p, |a| a.set_xattr(&xname, &v)).unwrap();
            m.inodes.get_mut(&m.paths[&p]).unwrap().xattrs.insert(xname, v);
        }
        Op::Commit | Op::Reopen | Op::Gc => unreachable!("handled by the runner"),
    }
}

/// The container and the model agree on every path, every folder's listing and the links.
fn check(c: &Container, m: &Model) {
    let listed: Vec<Vec<u8>> = c.list("").unwrap().map(|i| i.key).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, m.paths.keys().cloned().collect::<Vec<_>>());
    let mut ino_of: HashMap<usize, u64> = HashMap::new();
    let mut seen_inos: HashMap<u64, usize> = HashMap::new();
    for (p, id) in &m.paths {
        let want = &m.inodes[id];
        let info = c.stat(p).unwrap().unwrap();
        let a = info.attrs.unwrap();
        assert_eq!((a.kind, a.mode, a.nlink), (want.kind, want.mode, want.nlink), "{p:?}");
        assert_eq!(a.link_target, want.target, "{p:?}");
        let xattrs: BTreeMap<Vec<u8>, Vec<u8>> = a.xattrs.into_iter().collect();
        assert_eq!(xattrs, want.xattrs, "{p:?}");
        if want.kind == FileKind::Regular {
            assert_eq!(c.get(p).unwrap().unwrap(), want.data, "{p:?}");
        }
        assert_eq!(
            *ino_of.entry(*id).or_insert(a.ino),
            a.ino,
            "names of one file share an inode"
        );
        assert_eq!(
            *seen_inos.entry(a.ino).or_insert(*id),
            *id,
            "files differ in inode number"
        );
    }
    for d in m.dirs() {
        let mut want: Vec<Vec<u8>> = (m.paths.keys())
            .filter(|p| {
                p.len() > d.len() && p.starts_with(&d) && {
                    let rest = if d.is_empty() { &p[..] } else { &p[d.len() + 1..] };
                    (d.is_empty() || p[d.len()] == b'/') && !rest.contains(&b'/')
                }
            })
            .cloned()
            .collect();
        want.sort();
        let got: Vec<Vec<u8>> = c.read_dir(&d).unwrap().into_iter().map(|i| i.key).collect();
        assert_eq!(got, want, "folder {d:?}");
    }
}

/// What the model says changed between two moments, as diff reports it.
fn model_diff(
    old: &BTreeMap<Vec<u8>, (usize, Inode)>,
    new: &BTreeMap<Vec<u8>, (usize, Inode)>,
) -> Vec<(char, Vec<u8>)> {
    let mut out = Vec::new();
    let mut gone_dirs: Vec<Vec<u8>> = Vec::new();
    for (p, o) in old {
        match new.get(p) {
            None => {
                if !gone_dirs.iter().any(|d| p.starts_with(&[&d[..], b"/"].concat())) {
                    out.push(('D', p.clone()));
                }
                if o.1.kind == FileKind::Directory {
                    gone_dirs.push(p.clone());
                }
            }
            Some(n) if n != o => out.push(('C', p.clone())),
            Some(_) => {}
        }
    }
    out.extend(new.keys().filter(|p| !old.contains_key(*p)).map(|p| ('A', p.clone())));
    out.sort();
    out
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut store = Store::create(&path, Options::default()).unwrap();
    let image = store.new_layer(None).unwrap().finish(Some("l0")).unwrap();
    let mut c = store.create_container(&image, Some("c")).unwrap();
    // No layer handle is held across the run: gc wants no readers of old commits.
    drop(image);
    let mut m = Model::default();
    let mut layers = 0;
    let mut at_last_layer = m.view();
    for op in &ops {
        match op {
            Op::Commit => {
                let name = format!("l{}", layers + 1);
                c.commit(Some(&name)).unwrap();
                let mut got: Vec<(char, Vec<u8>)> = (store.diff(&format!("l{layers}"), &name).unwrap())
                    .map(|ch| (ch.kind.letter(), ch.path))
                    .collect();
                got.sort();
                assert_eq!(got, model_diff(&at_last_layer, &m.view()), "diff since the last layer");
                layers += 1;
                at_last_layer = m.view();
                store.commit().unwrap();
            }
            Op::Reopen => {
                store.commit().unwrap();
                drop(c);
                drop(store);
                store = Store::open(&path).unwrap();
                c = store.container("c").unwrap();
            }
            Op::Gc => {
                store.commit().unwrap();
                store.gc().unwrap();
            }
            op => apply(&c, &mut m, op),
        }
        check(&c, &m);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn file_system_operations_match_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
