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

/// The path `path` leads to, every symlink followed, and what is there (`None`: nothing).
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
            // Missing: so is what is below it.
            let rest: Vec<String> = todo.into_iter().rev().collect();
            let whole = [here, rest.join("/")]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>();
            return Ok((whole.join("/"), None));
        };
        let Some(target) = info.attrs.as_ref().and_then(|a| a.link_target.clone()) else {
            if todo.is_empty() {
                return Ok((here, Some(info)));
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
    // The root itself.
    Ok((String::new(), None))
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
