//! How a layer tree spells its keys (format-spec §7). A path is stored with one NUL byte
//! inserted after its last `/` (at the front when it has none): `etc/ssh/sshd_config` is
//! `etc/ssh/\0sshd_config`. Paths hold no NUL, so the mapping is one-to-one, and in key order
//! the entries of one folder are contiguous (`etc/ssh/\0...`) and come before any entry deeper
//! down (`etc/ssh/x/\0...`, as `\0` sorts first): listing a folder reads only its entries,
//! and the whole subtree below `etc/ssh` is the one range `etc/ssh/...`.
//!
//! Keys with two leading NULs are no path's: `\0\0` alone holds the tree's next inode number,
//! and `\0\0` + `ino u64` (big-endian, so in number order) the shared entry of a hard-linked
//! file.

/// The key holding the next inode number to give out.
pub const NEXT_INO: &[u8] = b"\0\0";

/// The inode counter's value: the next inode number (an inline entry of 8 bytes).
pub fn encode_next_ino(next: u64) -> Vec<u8> {
    next.to_le_bytes().to_vec()
}

/// The next inode number an inode counter's value holds, or `None` when it is malformed.
pub fn decode_next_ino(v: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(v.try_into().ok()?))
}

/// The key of the root folder's own entry (the empty path's: no listing returns it).
pub const ROOT: &[u8] = b"\0";

/// The root folder's inode number, as FUSE numbers it.
pub const ROOT_INO: u64 = 1;

/// Where the tree's keys for paths start: past every inode key.
const PATHS_FROM: &[u8] = b"\0\x01";

/// The tree key of a path (checked by `value::check_key`: no NUL).
pub fn of_path(path: &[u8]) -> Vec<u8> {
    let cut = path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let mut k = Vec::with_capacity(path.len() + 1);
    k.extend_from_slice(&path[..cut]);
    k.push(0);
    k.extend_from_slice(&path[cut..]);
    k
}

/// The path a tree key spells, or `None` for the tree's own keys (inode entries, the counter).
/// A key without exactly one NUL where paths keep it is damage the caller reports.
pub fn path_of(key: &[u8]) -> Option<Vec<u8>> {
    if key.starts_with(NEXT_INO) {
        return None;
    }
    let nul = key.iter().position(|&b| b == 0)?;
    let (dir, name) = (&key[..nul], &key[nul + 1..]);
    if name.contains(&0) || name.contains(&b'/') || !(dir.is_empty() || dir.ends_with(b"/")) {
        return None;
    }
    Some([dir, name].concat())
}

/// True for keys that stand for paths below the root (not the root's entry, inode entries or
/// the counter): what a tree's key count counts.
pub fn is_path(key: &[u8]) -> bool {
    !key.starts_with(NEXT_INO) && key != ROOT
}

/// The tree key of a hard-linked file's shared entry.
pub fn of_inode(ino: u64) -> Vec<u8> {
    let mut k = NEXT_INO.to_vec();
    k.extend_from_slice(&ino.to_be_bytes());
    k
}

/// The inode number of an inode key.
pub fn inode_of(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(NEXT_INO)?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// A contiguous run of tree keys: those from `from` on that start with `prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub from: Vec<u8>,
    pub prefix: Vec<u8>,
}

/// The entries directly in folder `dir` (`""` is the root): one range.
pub fn folder(dir: &[u8]) -> Range {
    if dir.is_empty() {
        return Range {
            from: PATHS_FROM.to_vec(),
            prefix: vec![0],
        };
    }
    let mut p = dir.to_vec();
    p.extend_from_slice(b"/\0");
    Range {
        from: p.clone(),
        prefix: p,
    }
}

/// Every path starting with `prefix` (any bytes, not only whole components), as at most two
/// ranges in key order: the matching names in the prefix's own folder, then every key below.
pub fn starting_with(prefix: &[u8]) -> Vec<Range> {
    if prefix.is_empty() {
        return vec![Range {
            from: PATHS_FROM.to_vec(),
            prefix: Vec::new(),
        }];
    }
    let cut = prefix.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let below = Range {
        from: prefix.to_vec(),
        prefix: prefix.to_vec(),
    };
    if cut == prefix.len() {
        // `a/b/`: the folder's entries are keys starting `a/b/\0`, already below the prefix.
        return vec![below];
    }
    let here = of_path(prefix);
    vec![
        Range {
            from: here.clone(),
            prefix: here,
        },
        below,
    ]
}

/// The subtree below folder `dir` (not `dir` itself): one range.
pub fn below(dir: &[u8]) -> Range {
    let mut p = dir.to_vec();
    p.push(b'/');
    Range {
        from: p.clone(),
        prefix: p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_gets_one_nul_after_its_folder_and_comes_back() {
        assert_eq!(of_path(b"etc/ssh/sshd_config"), b"etc/ssh/\0sshd_config");
        assert_eq!(of_path(b"hostname"), b"\0hostname");
        assert_eq!(of_path(b"/x"), b"/\0x");
        assert_eq!(of_path(b"a/"), b"a/\0");
        for p in [&b"etc/ssh/sshd_config"[..], b"hostname", b"/x", b"a/", b"n\xff/\xfe"] {
            assert_eq!(path_of(&of_path(p)).unwrap(), p);
        }
        assert_eq!(path_of(&of_inode(7)), None);
        assert_eq!(path_of(NEXT_INO), None);
        assert_eq!(inode_of(&of_inode(7)), Some(7));
    }

    #[test]
    fn a_folders_entries_are_contiguous_and_before_anything_deeper() {
        let mut keys: Vec<Vec<u8>> = ["a", "a/b", "a/b/c", "a/bz", "a/b/c/d", "ab", "a/c"]
            .iter()
            .map(|p| of_path(p.as_bytes()))
            .collect();
        keys.push(of_inode(1));
        keys.push(NEXT_INO.to_vec());
        keys.sort();
        let paths: Vec<String> = keys
            .iter()
            .filter_map(|k| path_of(k))
            .map(|p| String::from_utf8(p).unwrap())
            .collect();
        assert_eq!(paths, ["a", "ab", "a/b", "a/bz", "a/c", "a/b/c", "a/b/c/d"]);
        let in_range = |r: &Range| -> Vec<String> {
            keys.iter()
                .filter(|k| k.as_slice() >= r.from.as_slice() && k.starts_with(&r.prefix))
                .map(|k| String::from_utf8(path_of(k).unwrap()).unwrap())
                .collect()
        };
        assert_eq!(in_range(&folder(b"")), ["a", "ab"]);
        assert_eq!(in_range(&folder(b"a")), ["a/b", "a/bz", "a/c"]);
        assert_eq!(in_range(&below(b"a/b")), ["a/b/c", "a/b/c/d"]);
        let by_prefix: Vec<String> = starting_with(b"a/b").iter().flat_map(in_range).collect();
        assert_eq!(by_prefix, ["a/b", "a/bz", "a/b/c", "a/b/c/d"]);
    }
}
