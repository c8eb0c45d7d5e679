//! Named volumes: writable trees of their own, outside every layer.

use super::*;

impl Store {
    /// Creates an empty named volume.
    pub fn create_volume(&self, name: &str) -> Result<VolumeInfo> {
        names::check_volume_name(name)?;
        self.write(|inner, st| {
            let w = Writer::view(&inner.segs, &st.txn.app);
            if st.txn.catalog.get(&w, &catalog::volume_key(name))?.is_some() {
                return Err(Error::NameInUse(format!("'{name}'")));
            }
            load_volume(inner, st, name, true)?;
            volume_info(inner, st, name)
        })
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Result<Vec<VolumeInfo>> {
        let st = self.lock()?;
        self.volumes_locked(&st)
    }

    pub(crate) fn volumes_locked(&self, st: &State) -> Result<Vec<VolumeInfo>> {
        let w = Writer::view(&self.inner.segs, &st.txn.app);
        let mut names = Vec::new();
        st.txn.catalog.scan(&w, &[VOLUME], &mut |k, _| {
            if k.first() != Some(&VOLUME) {
                return Ok(false);
            }
            names.push(String::from_utf8_lossy(&k[1..]).into_owned());
            Ok(true)
        })?;
        names.iter().map(|n| volume_info(&self.inner, st, n)).collect()
    }

    pub fn volume(&self, name: &str) -> Result<VolumeInfo> {
        let st = self.lock()?;
        volume_info(&self.inner, &st, name)
    }

    /// Removes a volume and its data. Refused while a container mounts it.
    /// The checks and the removal happen under one lock: no container can mount it between.
    pub fn remove_volume(&self, name: &str) -> Result<()> {
        super::writers::hold(self, super::writers::Item::Volume(name))?;
        self.write(|inner, st| {
            super::writers::take_item(inner, st, super::writers::Item::Volume(name))?;
            volume_info(inner, st, name)?;
            for (id, v) in self.scan_catalog(st, CONTAINER)? {
                let c = ContainerInfo::decode(id, &v)?;
                if c.mounts
                    .iter()
                    .any(|m| m.source == MountSource::Volume(name.to_string()))
                {
                    return Err(Error::InUse(format!("volume '{name}' is mounted by container {id}")));
                }
            }
            let w = Writer::view(&inner.segs, &st.txn.app);
            st.txn.catalog.remove(&w, &catalog::volume_key(name))?;
            st.volumes.remove(name);
            Ok(())
        })
    }
}

/// Loads a volume's tree (creating the volume when asked and missing).
pub(super) fn load_volume<'s>(inner: &Inner, st: &'s mut State, name: &str, create: bool) -> Result<&'s mut WorkTree> {
    if !st.volumes.contains_key(name) {
        let w = Writer::view(&inner.segs, &st.txn.app);
        let k = catalog::volume_key(name);
        let info = match st.txn.catalog.get(&w, &k)? {
            Some(v) => VolumeInfo::decode(name, v)?,
            None if create => {
                names::check_volume_name(name)?;
                let info = VolumeInfo {
                    name: name.to_string(),
                    root: 0,
                    keys: 0,
                    created_ns: catalog::now_ns(),
                };
                st.txn.catalog.insert(&w, &k, info.encode())?;
                info
            }
            None => return Err(Error::NoSuchVolume(name.to_string())),
        };
        st.volumes.insert(name.to_string(), WorkTree::at(info.root, info.keys));
    }
    Ok(st.volumes.get_mut(name).expect("loaded above"))
}

pub(super) fn volume_info(inner: &Inner, st: &State, name: &str) -> Result<VolumeInfo> {
    let w = Writer::view(&inner.segs, &st.txn.app);
    let v = st
        .txn
        .catalog
        .get(&w, &catalog::volume_key(name))?
        .ok_or_else(|| Error::NoSuchVolume(name.to_string()))?;
    let mut info = VolumeInfo::decode(name, v)?;
    if let Some(t) = st.volumes.get(name) {
        info.keys = t.keys();
    }
    Ok(info)
}

/// Fills a fresh volume with the image's keys under `target`: the entries are copied, so the
/// volume shares the image's chunks and block maps; no data is copied.
pub(super) fn fill_volume(inner: &Inner, st: &mut State, name: &str, image_root: u64, target: &str) -> Result<()> {
    let entries =
        WorkTree::at(image_root, 0).entries_below(&Writer::view(&inner.segs, &st.txn.app), target.as_bytes())?;
    super::writers::take_item(inner, st, super::writers::Item::Volume(name))?;
    load_volume(inner, st, name, true)?;
    st.touched_volumes.insert(name.to_string());
    let State { txn, volumes, .. } = st;
    let w = Writer::view(&inner.segs, &txn.app);
    let tree = volumes.get_mut(name).expect("loaded above");
    for (k, v) in entries {
        tree.put_entry(&w, &k, v)?;
    }
    Ok(())
}
