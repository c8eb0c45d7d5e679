//! Many writer processes on one store. Each appends into extents of its own; a commit takes
//! the store's commit lock, takes up whatever commit another writer published since (replaying
//! its own catalog changes on the newer catalog), and publishes. A container or volume has one
//! writer at a time: the first write takes its item lock, held until a commit publishes the
//! changes, and a second writer waits (bounded) or is `Busy`, never losing an update.

use super::{Inner, State};
use crate::error::{Error, Result};
use crate::format::catalog::Id;
use crate::io::{Exclusive, Io, Writer};
use crate::txn;

/// What one writer at a time writes.
pub(crate) enum Item<'a> {
    Container(Id),
    Volume(&'a str),
}

impl Item<'_> {
    fn slot(&self) -> u64 {
        match self {
            Item::Container(id) => container_item(id),
            Item::Volume(name) => volume_item(name),
        }
    }
}

impl std::fmt::Display for Item<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Container(id) => write!(f, "container {id}"),
            Item::Volume(name) => write!(f, "volume '{name}'"),
        }
    }
}

/// The item lock slot of a container.
pub(crate) fn container_item(id: &Id) -> u64 {
    item(b"c", &id.0)
}

/// The item lock slot of a volume.
pub(crate) fn volume_item(name: &str) -> u64 {
    item(b"v", name.as_bytes())
}

fn item(kind: &[u8], name: &[u8]) -> u64 {
    let h = blake3::Hasher::new().update(kind).update(name).finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b) % crate::io::ITEM_SLOTS
}

/// Makes this writer the one writer of an item, waiting (as the store was opened to wait)
/// without the state locked, so the holder, in this process or another, goes on meanwhile.
/// Then takes up the newest commit, so that the item's tree is read as its last writer left it.
pub(crate) fn hold(store: &super::Store, item: Item) -> Result<()> {
    let inner = &store.inner;
    if !inner.writable {
        return Err(Error::ReadOnly("the store (opened read-only)".into()));
    }
    let slot = item.slot();
    if store.lock()?.held.contains(&slot) {
        return Ok(());
    }
    lock_item(inner, &item, inner.wait)?;
    let mut st = store.lock()?;
    // Taken up before the slot counts as held, so that a tree of it loaded earlier is dropped.
    // (While a commit of this process syncs, it holds the commit lock: nobody else can have
    // published since it took up the newest.)
    take_up_newest(inner, &mut st)?;
    st.held.insert(slot);
    Ok(())
}

/// Holds an item until [`unpin`], across commits (a mount serving it): a writer, a mount or a
/// removal of it in another process is `Busy` (after the store's wait), naming this one; a
/// second pin of it in this process is refused at once.
pub(crate) fn pin(store: &super::Store, item: Item) -> Result<()> {
    let inner = &store.inner;
    if !inner.writable {
        return Err(Error::ReadOnly("the store (opened read-only)".into()));
    }
    let slot = item.slot();
    // Claimed at once, under one lock: two threads never both pin it.
    if !store.lock()?.pinned.insert(slot) {
        return Err(Error::Busy {
            path: store.path().to_path_buf(),
            what: format!("{item} (held by this process)"),
            holder: Some(std::process::id()),
        });
    }
    // Waits as the store was opened to: a mount just unmounted may still be committing.
    let taken = lock_item(inner, &item, inner.wait).and_then(|_| {
        let mut st = store.lock()?;
        if !st.held.contains(&slot) {
            take_up_newest(inner, &mut st)?;
            st.held.insert(slot);
        }
        Ok(())
    });
    if taken.is_err() {
        if let Ok(mut st) = store.lock() {
            st.pinned.remove(&slot);
        }
    }
    taken
}

/// Ends a [`pin`]: the item's lock goes with the next commit that leaves it unchanged.
pub(crate) fn unpin(store: &super::Store, item: Item) {
    if let Ok(mut st) = store.lock() {
        st.pinned.remove(&item.slot());
    }
}

/// Whether this process pins `item`.
pub(crate) fn pinned(st: &State, item: Item) -> bool {
    st.pinned.contains(&item.slot())
}

/// As [`hold`], under the state lock, for an item not known in advance: no waiting there.
pub(crate) fn take_item(inner: &Inner, st: &mut State, item: Item) -> Result<()> {
    let slot = item.slot();
    if st.held.contains(&slot) {
        return Ok(());
    }
    lock_item(inner, &item, std::time::Duration::ZERO)?;
    take_up_newest(inner, st)?;
    st.held.insert(slot);
    Ok(())
}

fn lock_item(inner: &Inner, item: &Item, wait: std::time::Duration) -> Result<()> {
    let io = inner.segs.io();
    io.lock(Exclusive::Item(item.slot()), wait).map_err(|e| match e {
        Error::Busy { path, holder, .. } => Error::Busy {
            path,
            what: item.to_string(),
            holder,
        },
        e => e,
    })
}

/// Takes up the newest commit another writer process published, if any. On a conflict with it
/// nothing changes: reads go on from this state, and the commit that meets the same conflict
/// is refused.
pub(crate) fn take_up_newest(inner: &Inner, st: &mut State) -> Result<()> {
    if st.publishing || st.txn.poisoned {
        // This writer's own commit is between its superblock and its sync; or its state is
        // refused for writes and reads go on from it as it is.
        return Ok(());
    }
    let Some((slot, sb)) = txn::newest_whole(inner.segs.io(), &inner.segs, st.txn.generation)? else {
        return Ok(());
    };
    rebase(inner, st, slot, sb)
}

fn rebase(inner: &Inner, st: &mut State, slot: usize, sb: crate::format::superblock::Superblock) -> Result<()> {
    let t = &mut st.txn;
    {
        let w = Writer::view(&inner.segs, &t.app);
        t.catalog.rebase(&w, t.last_sb.catalog_root, sb.catalog_root)?;
        if let Err(e) = t.chunks.rebase(&w, sb.runs.clone()) {
            // The catalog moved on already: this state matches no commit now.
            t.poisoned = true;
            return Err(e);
        }
    }
    t.app.rebase_used(t.last_sb.used, sb.used);
    inner.segs.note_pooled(sb.pooled);
    t.take_up(sb, slot);
    // Trees loaded from the old catalog are stale unless this writer is the one writing them.
    let held = &st.held;
    st.containers.retain(|id, _| held.contains(&container_item(id)));
    st.mounts.retain(|id, _| held.contains(&container_item(id)));
    st.volumes.retain(|name, _| held.contains(&volume_item(name)));
    Ok(())
}

/// The store's commit lock, let go when dropped.
pub(crate) struct CommitLock<'a>(&'a dyn Io);

impl<'a> CommitLock<'a> {
    pub(crate) fn take(io: &'a dyn Io) -> Result<CommitLock<'a>> {
        // Held only while a commit publishes; a dead holder's lock is dropped by the kernel.
        io.lock(Exclusive::Commit, std::time::Duration::from_secs(300))?;
        Ok(CommitLock(io))
    }
}

impl Drop for CommitLock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock(Exclusive::Commit);
    }
}

/// After a commit: lets go of the items this writer no longer has changes of, so that a
/// long-lived writer holds only what it is writing (and the kernel's lock list stays short).
/// A tree of a released item stays cached until a newer commit shows up: until then nobody
/// else can have changed it.
pub(crate) fn release_committed(inner: &Inner, st: &mut State) {
    let mut busy: std::collections::HashSet<u64> = st.touched.iter().map(container_item).collect();
    busy.extend(st.touched_volumes.iter().map(|n| volume_item(n)));
    let io = inner.segs.io();
    st.held.retain(|slot| {
        let keep = busy.contains(slot) || st.pinned.contains(slot);
        if !keep {
            let _ = io.unlock(Exclusive::Item(*slot));
        }
        keep
    });
}
