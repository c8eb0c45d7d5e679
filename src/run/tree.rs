//! Reading a container's (or image's) files by path as a program inside it would: symlinks
//! in any part followed inside the tree (an absolute target starts at its root, `..` stops
//! there), never out to the host.

use crate::{Container, Error, FileKind, Layer, Result, ValueInfo};

/// A tree to read: an image's layer, or a container.
pub(crate) trait Tree {
    fn stat(&self, path: &[u8]) -> Result<Option<ValueInfo>>;
    fn get(&self, path: &[u8]) -> Result<Option<Vec<u8>>>;
}

impl Tree for Layer {
    fn stat(&self, path: &[u8]) -> Result<Option<ValueInfo>> {
        Layer::stat(self, path)
    }
    fn get(&self, path: &[u8]) -> Result<Option<Vec<u8>>> {
        Layer::get(self, path)
    }
}

impl Tree for Container {
    fn stat(&self, path: &[u8]) -> Result<Option<ValueInfo>> {
        Container::stat(self, path)
    }
    fn get(&self, path: &[u8]) -> Result<Option<Vec<u8>>> {
        Container::get(self, path)
    }
}

/// As many symlinks as Linux follows in one lookup.
const MAX_LINKS: usize = 40;

/// The path `path` leads to, every symlink followed, and what is there (`None`: nothing,
/// or the root itself, or something below a file).
pub(crate) fn resolve(t: &dyn Tree, path: &str) -> Result<(String, Option<ValueInfo>)> {
    let mut todo: Vec<String> = parts(path).rev().map(str::to_string).collect();
    let mut at: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            at.pop();
            continue;
        }
        at.push(part);
        let here = at.join("/");
        let Some(info) = t.stat(here.as_bytes())? else {
            return Ok((here, None));
        };
        let attrs = info.attrs.as_ref();
        let Some(target) = attrs.and_then(|a| a.link_target.clone()) else {
            if !todo.is_empty() && attrs.is_some_and(|a| a.kind != FileKind::Directory) {
                // Below a file there is nothing (ENOTDIR).
                return Ok((here, None));
            }
            continue;
        };
        links += 1;
        if links > MAX_LINKS {
            return Err(Error::InvalidArgument(format!(
                "/{path}: too many levels of symbolic links"
            )));
        }
        at.pop();
        let target = String::from_utf8_lossy(&target).into_owned();
        if target.starts_with('/') {
            at.clear();
        }
        todo.extend(parts(&target).rev().map(str::to_string));
    }
    let here = at.join("/");
    if here.is_empty() {
        return Ok((here, None));
    }
    let info = t.stat(here.as_bytes())?;
    Ok((here, info))
}

fn parts(p: &str) -> impl DoubleEndedIterator<Item = &str> {
    p.split('/').filter(|s| !s.is_empty() && *s != ".")
}

/// The bytes of the regular file `path` leads to, if there is one.
pub(crate) fn read(t: &dyn Tree, path: &str) -> Result<Option<Vec<u8>>> {
    match resolve(t, path)? {
        (p, Some(i)) if i.attrs.as_ref().is_none_or(|a| a.kind == FileKind::Regular) => t.get(p.as_bytes()),
        _ => Ok(None),
    }
}

/// Whether `path` leads to a file someone may run (a regular file with an x bit).
pub(crate) fn executable(t: &dyn Tree, path: &str) -> Result<bool> {
    Ok(match resolve(t, path)? {
        (_, Some(i)) => i
            .attrs
            .as_ref()
            .is_some_and(|a| a.kind == FileKind::Regular && a.mode & 0o111 != 0),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Attrs;
    use std::collections::HashMap;

    /// A tree of paths to kinds and link targets.
    struct Mock(HashMap<&'static str, (FileKind, Option<&'static str>)>);

    impl Tree for Mock {
        fn stat(&self, path: &[u8]) -> Result<Option<ValueInfo>> {
            let path = std::str::from_utf8(path).unwrap();
            Ok(self.0.get(path).map(|(kind, link)| ValueInfo {
                key: path.as_bytes().to_vec(),
                size: 0,
                inline: true,
                block_size: 0,
                attrs: Some(Attrs {
                    link_target: link.map(|l| l.as_bytes().to_vec()),
                    ..Attrs::new(*kind, 0o755)
                }),
            }))
        }
        fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(None)
        }
    }

    #[test]
    fn symlinks_are_followed_inside_the_tree_and_files_have_nothing_below() {
        use FileKind::*;
        let t = Mock(HashMap::from([
            ("etc", (Directory, None)),
            ("etc/passwd", (Symlink, Some("../usr/lib/passwd"))),
            ("usr", (Directory, None)),
            ("usr/lib", (Directory, None)),
            ("usr/lib/passwd", (Regular, None)),
            ("bin", (Symlink, Some("/usr/lib"))),
            ("up", (Symlink, Some("../../.."))),
            ("loop", (Symlink, Some("loop"))),
        ]));
        let resolved = |p| resolve(&t, p).map(|(p, i)| (p, i.is_some()));
        assert_eq!(resolved("/etc/passwd").unwrap(), ("usr/lib/passwd".into(), true));
        assert_eq!(resolved("bin/passwd").unwrap(), ("usr/lib/passwd".into(), true));
        assert_eq!(resolved("usr/lib/..").unwrap(), ("usr".into(), true));
        assert_eq!(resolved("up/etc").unwrap(), ("etc".into(), true));
        assert_eq!(resolved("up").unwrap(), ("".into(), false));
        assert_eq!(
            resolved("usr/lib/passwd/../passwd").unwrap(),
            ("usr/lib/passwd".into(), false)
        );
        assert_eq!(resolved("etc/missing/deeper").unwrap(), ("etc/missing".into(), false));
        assert!(resolve(&t, "loop").is_err());
    }
}
