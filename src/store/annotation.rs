//! Layer annotations: named blobs written while a layer is built and kept, read-only, with it
//! (a tar's headers for a byte-identical re-export, its diffID). They live in a tree of their
//! own, named by the catalog's `'a'` + layer id record, so a child layer or container never
//! inherits them, and they go when the layer goes.

use super::*;
use crate::format::catalog::ANNOTATIONS;

/// The prefix of the annotation names the store itself writes.
pub(crate) const RESERVED: &str = "lstore.";

impl LayerBuilder {
    /// Writes `data` at `offset` of the annotation `name` (created when absent; a gap reads
    /// as zeros). A name is a key: 1 to 4096 bytes, no NUL; names starting with `lstore.` are
    /// the store's own (a layer tar's `lstore.tar-split`), which no caller may forge.
    pub fn annotate_at(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<()> {
        if name.starts_with(RESERVED) {
            return Err(Error::InvalidArgument(format!(
                "annotation '{name}': names starting with '{RESERVED}' are lstore's own"
            )));
        }
        self.annotate_own_at(name, offset, data)
    }

    /// As [`annotate_at`](Self::annotate_at), in the store's own `lstore.` namespace, which
    /// callers cannot write: the layer-tar import's `lstore.tar-split` (format-spec §16), whose
    /// bytes decide what export writes, is part of the file's contract. The one door from a
    /// front end into the store that is not public.
    pub(crate) fn annotate_own_at(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<()> {
        value::check_key(name.as_bytes())?;
        let ready = ready_for(&self.store.inner, data, offset, &PutOptions::default(), false);
        let notes = &mut self.annotations;
        self.store.write(|inner, st| {
            let mut cx = ctx(inner, &mut st.txn.app, &mut st.txn.chunks, ready);
            notes.write_at(&mut cx, name.as_bytes(), offset, data)
        })
    }
}

/// Records the annotations tree of layer `id`, under the writer lock that adds the layer.
pub(super) fn record(inner: &Inner, st: &mut State, id: Id, root: u64, keys: u64) -> Result<()> {
    let rec = VolumeInfo {
        name: String::new(),
        root,
        keys,
        created_ns: catalog::now_ns(),
    };
    let w = Writer::view(&inner.segs, &st.txn.app);
    st.txn
        .catalog
        .insert(&w, &catalog::key(ANNOTATIONS, &id), rec.encode())?;
    Ok(())
}

impl Layer {
    /// The layer's annotations, read from one snapshot (pinned like a layer), or `None` when
    /// it has none.
    pub fn annotations(&self) -> Result<Option<Annotations>> {
        Ok(self.annotations_tree()?.map(|tree| Annotations { tree }))
    }

    fn annotations_tree(&self) -> Result<Option<Layer>> {
        let st = self.store.lock()?;
        let w = Writer::view(&self.store.inner.segs, &st.txn.app);
        let Some(v) = st.txn.catalog.get(&w, &catalog::key(ANNOTATIONS, &self.info.id))? else {
            return Ok(None);
        };
        let rec = VolumeInfo::decode("", v)?;
        let info = LayerInfo {
            id: self.info.id,
            name: None,
            parent: None,
            root: rec.root,
            keys: rec.keys,
            created_ns: rec.created_ns,
        };
        Ok(Some(Layer::new(self.store.clone(), info)))
    }

    /// The layer's annotation `name` as a reader, or `None` when it has none of that name.
    pub fn annotation(&self, name: &str) -> Result<Option<Annotation>> {
        match self.annotations()? {
            Some(a) => a.open(name),
            None => Ok(None),
        }
    }
}

/// A layer's annotations, as one snapshot.
pub struct Annotations {
    tree: Layer,
}

impl Annotations {
    /// The annotation `name` as a reader, or `None` when there is none of that name.
    pub fn open(&self, name: &str) -> Result<Option<Annotation>> {
        let Some(info) = self.tree.stat(name)? else {
            return Ok(None);
        };
        Ok(Some(Annotation {
            tree: self.tree.clone(),
            name: name.as_bytes().to_vec(),
            size: info.size,
            pos: 0,
        }))
    }

    /// Their names, in order.
    pub fn names(&self) -> Result<Vec<String>> {
        let names = (self.tree.list("")?)
            .map(|i| i.map(|i| i.key))
            .collect::<Result<Vec<_>>>()?;
        names
            .into_iter()
            .map(|n| String::from_utf8(n).map_err(|_| Error::corrupt("an annotation name is not UTF-8")))
            .collect()
    }
}

/// `Read + Seek` over one annotation of a layer.
pub struct Annotation {
    tree: Layer,
    name: Vec<u8>,
    size: u64,
    pos: u64,
}

impl Annotation {
    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
}

impl std::io::Read for Annotation {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.tree.read_at(&self.name, self.pos, buf).map_err(io_err)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for Annotation {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.pos = seek_to(self.pos, self.size, to)?;
        Ok(self.pos)
    }
}
