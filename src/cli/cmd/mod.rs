//! The commands, one small function each, grouped by what they work on. Each returns a report
//! (see `output`); none prints JSON or text by hand.

pub mod containers;
pub mod files;
pub mod images;
pub mod layers;
pub mod mount;
pub mod run;
pub mod store;
pub mod values;
pub mod volume;

use lstore::{Error, Result, Store};
use std::path::{Path, PathBuf};

/// What every command shares: where the store is, and how long a writer waits for another.
pub struct Ctx {
    store: Option<PathBuf>,
    wait: std::time::Duration,
}

impl Ctx {
    pub fn new(store: Option<PathBuf>, wait: std::time::Duration) -> Ctx {
        Ctx { store, wait }
    }

    /// The store file if one was given.
    pub fn store(&self) -> Option<&Path> {
        self.store.as_deref()
    }

    /// How long a writer waits for another (`--wait`).
    pub fn wait(&self) -> std::time::Duration {
        self.wait
    }

    /// The store file, from `--store` or `LSTORE_PATH`.
    pub fn path(&self) -> Result<&Path> {
        self.store
            .as_deref()
            .ok_or_else(|| Error::InvalidArgument("no store given: pass --store PATH or set LSTORE_PATH".into()))
    }

    /// Opens the store for writing, waiting for another writer up to `--wait`.
    pub fn open(&self) -> Result<Store> {
        Store::open_waiting(self.path()?, self.wait)
    }

    /// Opens the store for reading.
    pub fn open_read_only(&self) -> Result<Store> {
        Store::open_read_only(self.path()?)
    }
}
