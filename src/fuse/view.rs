//! What a mount shows: a layer (read-only) or a container (read-write, its volumes and bind
//! mounts at their targets), through one set of calls.

use crate::{Attrs, Container, Error, Layer, Result, ValueInfo};

pub(crate) enum View {
    Layer(Layer),
    Container(Container),
}

impl View {
    pub(crate) fn writable(&self) -> Option<&Container> {
        match self {
            View::Container(c) => Some(c),
            View::Layer(_) => None,
        }
    }

    /// A container, or `EROFS` for a layer.
    pub(crate) fn rw(&self) -> Result<&Container> {
        self.writable()
            .ok_or_else(|| Error::ReadOnly("a layer (mount a container to write)".into()))
    }

    pub(crate) fn stat(&self, path: &[u8]) -> Result<Option<ValueInfo>> {
        match self {
            View::Layer(l) => l.stat(path),
            View::Container(c) => c.stat(path),
        }
    }

    pub(crate) fn root_attrs(&self) -> Result<Option<Attrs>> {
        match self {
            View::Layer(l) => l.root_attrs(),
            View::Container(c) => c.root_attrs(),
        }
    }

    pub(crate) fn read_dir(&self, dir: &[u8]) -> Result<Vec<ValueInfo>> {
        match self {
            View::Layer(l) => l.read_dir(dir)?.collect(),
            View::Container(c) => c.read_dir(dir),
        }
    }

    pub(crate) fn read_at(&self, path: &[u8], off: u64, buf: &mut [u8]) -> Result<usize> {
        match self {
            View::Layer(l) => l.read_at(path, off, buf),
            View::Container(c) => c.read_at(path, off, buf),
        }
    }
}
