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
}

struct Frame<'a> {
    node: NodeView<'a>,
    at: usize,
    low: &'a [u8],
}

/// What a walk is at: a whole subtree (not yet read), or one entry of a leaf.
enum Item<'a> {
    Subtree { addr: u64, level: u8 },
    Entry(&'a [u8], &'a [u8]),
}

impl<'a, S: Source + ?Sized> Walk<'a, S> {
    fn new(src: &'a S, root: u64) -> Result<Self> {
        let mut w = Walk { src, stack: Vec::new() };
        if root != 0 {
            w.stack.push(Frame {
                node: load_view(src, root)?,
                at: 0,
                low: &[],
            });
        }
        Ok(w)
    }

    fn current(&mut self) -> Result<Option<Item<'a>>> {
        loop {
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
            return Ok(Some(Item::Subtree {
                addr: node.child(at)?,
                level: node.level() - 1,
            }));
        }
    }

    /// The lowest key the current subtree may hold (read only when a comparison needs it).
    fn low(&self) -> Result<&'a [u8]> {
        let f = self.stack.last().expect("at a subtree");
        if f.at == 0 {
            Ok(f.low)
        } else {
            f.node.key(f.at)
        }
    }

    /// The frame on top, if any.
    fn top(&self) -> Option<&Frame<'a>> {
        self.stack.last()
    }

    /// Moves past `n` items of the top frame.
    fn skip(&mut self, n: usize) {
        if let Some(f) = self.stack.last_mut() {
            f.at += n;
        }
    }

    /// The current leaf entry's stored bytes, if the walk is at one.
    fn next_entry(&self) -> Option<&'a [u8]> {
        let f = self.stack.last()?;
        (f.node.is_leaf() && f.at < f.node.len())
            .then(|| f.node.raw_entry(f.at).ok())
            .flatten()
    }

    /// The child the current branch slot points at, if the walk is at one.
    fn next_child(&self) -> Option<u64> {
        let f = self.stack.last()?;
        (!f.node.is_leaf() && f.at < f.node.len())
            .then(|| f.node.child(f.at).ok())
            .flatten()
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
        let parent = self.stack.last().map_or(u8::MAX, |f| f.node.level());
        if node.level().checked_add(1) != Some(parent) {
            return Err(crate::error::Error::corrupt(format!(
                "tree node at {addr:#x}: level {} under a node of level {parent}",
                node.level()
            )));
        }
        self.stack.push(Frame { node, at: 0, low });
        Ok(())
    }
}

/// What a diff calls for each key that differs: `(key, old value, new value)`.
pub(crate) type OnChange<'f> = dyn FnMut(&[u8], Option<&[u8]>, Option<&[u8]>) -> Result<()> + 'f;

/// How many bytes two slices share from their start.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const STEP: usize = 64;
    let n = a.len().min(b.len());
    let mut at = 0;
    // Whole blocks compare with memcmp; only the block that differs is searched byte by byte.
    while at + STEP <= n && a[at..at + STEP] == b[at..at + STEP] {
        at += STEP;
    }
    at + a[at..n].iter().zip(&b[at..n]).take_while(|(x, y)| x == y).count()
}

/// How many items the top frames of both walks share from where they stand, found from the
/// stored bytes of their slots (and, in leaves, of their entries) without decoding any: two
/// copies of one node differ in a slot or two, so a walk skips the rest at memcmp speed.
fn shared_run<S: Source + ?Sized>(wa: &Walk<'_, S>, wb: &Walk<'_, S>) -> usize {
    let (Some(fa), Some(fb)) = (wa.top(), wb.top()) else {
        return 0;
    };
    if fa.node.is_leaf() != fb.node.is_leaf() || fa.node.level() != fb.node.level() {
        return 0;
    }
    let size = fa.node.slot_len();
    let same_slots = common_prefix(fa.node.slots_from(fa.at), fb.node.slots_from(fb.at)) / size;
    if !fa.node.is_leaf() || same_slots == 0 {
        // A branch slot holds its child's address: equal slots are equal subtrees.
        return same_slots;
    }
    // Equal leaf slots mean equal key prefixes and offsets; the entries must match too.
    let (Some((start_a, _)), Some((start_b, _))) = (fa.node.entry_span(fa.at), fb.node.entry_span(fb.at)) else {
        return 0;
    };
    let same_bytes = common_prefix(fa.node.bytes_from(start_a), fb.node.bytes_from(start_b));
    // An entry counts only when its own lengths fill its span exactly (a damaged node's
    // entry is compared the slow way, which reports it).
    (0..same_slots)
        .take_while(|&j| {
            fa.node.entry_span(fa.at + j).is_some_and(|(start, end)| {
                end - start_a <= same_bytes && fa.node.raw_entry(fa.at + j).is_ok_and(|e| e.len() == end - start)
            })
        })
        .count()
}

/// Calls `f(key, old, new)` for every key whose value differs between the trees at roots `a`
/// and `b` (0 = empty), in key order: `old` is `None` for a key only in `b`, `new` for one only
/// in `a`.
pub(crate) fn diff<S: Source + ?Sized>(src: &S, a: u64, b: u64, f: &mut OnChange) -> Result<()> {
    let mut wa = Walk::new(src, a)?;
    let mut wb = Walk::new(src, b)?;
    loop {
        let shared = shared_run(&wa, &wb);
        if shared > 0 {
            wa.skip(shared);
            wb.skip(shared);
        }
        match (wa.current()?, wb.current()?) {
            (None, None) => return Ok(()),
            (Some(Item::Subtree { addr: x, level: ha }), Some(Item::Subtree { addr: y, level: hb })) => {
                if x == y {
                    skip_shared_children(&mut wa, &mut wb);
                    continue;
                }
                let (la, lb) = (wa.low()?, wb.low()?);
                if la < lb || (la == lb && ha > hb) {
                    wa.descend(x, la)?;
                } else if lb < la || hb > ha {
                    wb.descend(y, lb)?;
                } else {
                    wa.descend(x, la)?;
                    wb.descend(y, lb)?;
                }
            }
            (Some(Item::Subtree { addr, .. }), other) => {
                let low = wa.low()?;
                match other {
                    Some(Item::Entry(k, v)) if low > k => {
                        f(k, None, Some(v))?;
                        wb.advance();
                    }
                    _ => wa.descend(addr, low)?,
                }
            }
            (other, Some(Item::Subtree { addr, .. })) => {
                let low = wb.low()?;
                match other {
                    Some(Item::Entry(k, v)) if low > k => {
                        f(k, Some(v), None)?;
                        wa.advance();
                    }
                    _ => wb.descend(addr, low)?,
                }
            }
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
                    skip_equal_entries(&mut wa, &mut wb);
                }
            },
        }
    }
}

/// Steps both walks past a subtree they share and past the run of shared children after it:
/// copies of one branch share most children, compared straight from the slots, reading no key.
fn skip_shared_children<S: Source + ?Sized>(wa: &mut Walk<'_, S>, wb: &mut Walk<'_, S>) {
    wa.advance();
    wb.advance();
    while let (Some(p), Some(q)) = (wa.next_child(), wb.next_child()) {
        if p != q {
            break;
        }
        wa.advance();
        wb.advance();
    }
}

/// Steps both walks past an entry they both hold and past the run of equal entries after it:
/// copies of one leaf share most entries, compared by their stored bytes, one comparison each.
fn skip_equal_entries<S: Source + ?Sized>(wa: &mut Walk<'_, S>, wb: &mut Walk<'_, S>) {
    wa.advance();
    wb.advance();
    while let (Some(p), Some(q)) = (wa.next_entry(), wb.next_entry()) {
        if p != q {
            break;
        }
        wa.advance();
        wb.advance();
    }
}
