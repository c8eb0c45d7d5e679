//! The generations a read-only store reads, each locked against other processes' gc (see
//! `io::locks`) while anything reads it: the current one, and each older one while a handle
//! made at it (a `Layer`, a running `verify`) lives. One mutex holds the current generation
//! and the counts together, so a refresh and a handle's drop never unlock what the other uses.

use crate::error::{Error, Result};
use crate::io::Io;
use std::collections::HashMap;
use std::sync::Mutex;

pub(crate) struct Generations {
    state: Mutex<Held>,
}

struct Held {
    current: u64,
    /// Readers of each locked generation (the current one counts itself once).
    count: HashMap<u64, usize>,
}

/// A reader's hold on the generation it was taken at; give it back with [`Generations::put`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hold(pub u64);

impl Generations {
    /// Starts at `current`, which the caller has locked.
    pub fn new(current: u64) -> Generations {
        Generations {
            state: Mutex::new(Held {
                current,
                count: HashMap::from([(current, 1)]),
            }),
        }
    }

    fn held(&self) -> Result<std::sync::MutexGuard<'_, Held>> {
        self.state
            .lock()
            .map_err(|_| Error::InUse("reader generations poisoned".into()))
    }

    /// Moves to `new` (already locked through `io`), letting go of the old current
    /// generation unless a handle still reads it.
    pub fn advance(&self, io: &dyn Io, new: u64) -> Result<()> {
        let mut h = self.held()?;
        let old = std::mem::replace(&mut h.current, new);
        *h.count.entry(new).or_insert(0) += 1;
        release(&mut h, io, old)
    }

    /// A hold on the current generation, for a handle that will read it.
    pub fn take(&self) -> Result<Hold> {
        let mut h = self.held()?;
        let g = h.current;
        *h.count.entry(g).or_insert(0) += 1;
        Ok(Hold(g))
    }

    /// Gives a hold back; the generation is unlocked once nothing reads it.
    pub fn put(&self, io: &dyn Io, hold: Hold) -> Result<()> {
        let mut h = self.held()?;
        release(&mut h, io, hold.0)
    }
}

fn release(h: &mut Held, io: &dyn Io, g: u64) -> Result<()> {
    let Some(n) = h.count.get_mut(&g) else {
        return Ok(());
    };
    *n -= 1;
    if *n == 0 {
        h.count.remove(&g);
        io.hold_generation(g, false)?;
    }
    Ok(())
}
