//! Maintenance over a whole store: garbage collection, space accounting, verification and
//! salvage. Each works on the store's committed state.

pub(crate) mod gc;
pub(crate) mod salvage;
pub(crate) mod usage;
pub(crate) mod verify;
