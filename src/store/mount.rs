//! Routing: the mount that covers a key of a container.

use crate::format::mount::Mount;

impl Mount {
    /// The key below this mount (`target/x/y` → `x/y`, `target` → empty), if it is under it.
    pub(crate) fn sub_key<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        let t = self.target.as_bytes();
        let rest = key.strip_prefix(t)?;
        match rest.first() {
            None => Some(rest),
            Some(b'/') => Some(&rest[1..]),
            _ => None,
        }
    }
}

/// The mount covering `key`: the one with the longest target, as nested mounts shadow.
pub fn route<'m, 'k>(mounts: &'m [Mount], key: &'k [u8]) -> Option<(&'m Mount, &'k [u8])> {
    mounts
        .iter()
        .filter_map(|m| m.sub_key(key).map(|s| (m, s)))
        .max_by_key(|(m, _)| m.target.len())
}
