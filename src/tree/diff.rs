//! The difference of two committed trees in time proportional to what differs: both trees are
//! walked together in key order and every subtree whose node address is the same on both
//! sides is skipped unread, as btrfs send compares two snapshots. Trees that share history
//! (a layer and its parent, sibling layers, a container and its image) share every node off
//! the paths that changed, and gc keeps that sharing when it moves nodes.

use super::btree::{load_view, too_deep, MAX_DEPTH};
use crate::error::Result;
use crate::format::node::NodeView;
use crate::io::Source;

/// One walk position: a stack of nodes with the index of the current item in each, and the
/// lowest key each node may hold (a branch's first key is not kept exact).
struct Walk<'a, S: Source + ?Sized> {
    src: &'a S,
    stack: Vec<Frame<'a>>,
    /// Levels of the tree: a leaf is level 0, the root level `height - 1`.
    height: usize,
}

struct Frame<'a> {
    node: NodeView<'a>,
    at: usize,
    low: &'a [u8],
}

/// What a walk is at: a whole subtree (not yet read), or one entry of a leaf.
enum Item<'a> {
    Subtree { addr: u64, low: &'a [u8], level: usize },
    Entry(&'a [u8], &'a [u8]),
}

impl<'a, S: Source + ?Sized> Walk<'a, S> {
    fn new(src: &'a S, root: u64) -> Result<Self> {
        let mut w = Walk {
            src,
            stack: Vec::new(),
            height: 0,
        };
        if root == 0 {
            return Ok(w);
        }
        let top = load_view(src, root)?;
        // Every leaf is at the same depth: the leftmost path gives the height.
        let mut node = top;
        w.height = 1;
        while !node.is_leaf() {
            too_deep(w.height as u32, root)?;
            node = load_view(src, node.child(0)?)?;
            w.height += 1;
        }
        w.stack.push(Frame {
            node: top,
            at: 0,
            low: &[],
        });
        Ok(w)
    }

    fn current(&mut self) -> Result<Option<Item<'a>>> {
        loop {
            let depth = self.stack.len();
            let Some(f) = self.stack.last() else {
                return Ok(None);
            };
            if f.at >= f.node.len() {
                self.stack.pop();
                self.advance();
                continue;
            }
            let (node, at) = (f.node, f.at);
            if node.is_leaf() {
                return Ok(Some(Item::Entry(node.key(at)?, node.val(at)?)));
            }
            let low = if at == 0 { f.low } else { node.key(at)? };
            return Ok(Some(Item::Subtree {
                addr: node.child(at)?,
                low,
                level: self.height.saturating_sub(depth + 1),
            }));
        }
    }

    /// Past the current item.
    fn advance(&mut self) {
        if let Some(f) = self.stack.last_mut() {
            f.at += 1;
        }
    }

    /// Into the current subtree.
    fn descend(&mut self, addr: u64, low: &'a [u8]) -> Result<()> {
        if self.stack.len() > MAX_DEPTH as usize {
            too_deep(MAX_DEPTH + 1, addr)?;
        }
        let node = load_view(self.src, addr)?;
        self.stack.push(Frame { node, at: 0, low });
        Ok(())
    }
}

/// What a diff calls for each key that differs: `(key, old value, new value)`.
pub(crate) type OnChange<'f> = dyn FnMut(&[u8], Option<&[u8]>, Option<&[u8]>) -> Result<()> + 'f;

/// Calls `f(key, old, new)` for every key whose value differs between the trees at roots `a`
/// and `b` (0 = empty), in key order: `old` is `None` for a key only in `b`, `new` for one only
/// in `a`.
pub(crate) fn diff<S: Source + ?Sized>(src: &S, a: u64, b: u64, f: &mut OnChange) -> Result<()> {
    let mut wa = Walk::new(src, a)?;
    let mut wb = Walk::new(src, b)?;
    loop {
        match (wa.current()?, wb.current()?) {
            (None, None) => return Ok(()),
            (
                Some(Item::Subtree {
                    addr: x,
                    low: la,
                    level: ha,
                }),
                Some(Item::Subtree {
                    addr: y,
                    low: lb,
                    level: hb,
                }),
            ) => {
                if x == y {
                    wa.advance();
                    wb.advance();
                } else if la < lb || (la == lb && ha > hb) {
                    wa.descend(x, la)?;
                } else if lb < la || hb > ha {
                    wb.descend(y, lb)?;
                } else {
                    wa.descend(x, la)?;
                    wb.descend(y, lb)?;
                }
            }
            (Some(Item::Subtree { addr, low, .. }), other) => match other {
                Some(Item::Entry(k, v)) if low > k => {
                    f(k, None, Some(v))?;
                    wb.advance();
                }
                _ => wa.descend(addr, low)?,
            },
            (other, Some(Item::Subtree { addr, low, .. })) => match other {
                Some(Item::Entry(k, v)) if low > k => {
                    f(k, Some(v), None)?;
                    wa.advance();
                }
                _ => wb.descend(addr, low)?,
            },
            (Some(Item::Entry(k, v)), None) => {
                f(k, Some(v), None)?;
                wa.advance();
            }
            (None, Some(Item::Entry(k, v))) => {
                f(k, None, Some(v))?;
                wb.advance();
            }
            (Some(Item::Entry(ka, va)), Some(Item::Entry(kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    f(ka, Some(va), None)?;
                    wa.advance();
                }
                std::cmp::Ordering::Greater => {
                    f(kb, None, Some(vb))?;
                    wb.advance();
                }
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        f(ka, Some(va), Some(vb))?;
                    }
                    wa.advance();
                    wb.advance();
                }
            },
        }
    }
}
