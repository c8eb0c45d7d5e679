//! Images, as Docker keeps them: a config (whose sha256 is the image id) over a chain of
//! layers, named by tags. A tag names one image; an image may have several or none (dangling).
//! Removing an image's last tag removes the image and the layers of its chain that nothing
//! else uses (no name, no container, no child layer, no other image).

use super::*;
use crate::format::catalog::{ImageInfo, IMAGE};

/// The most tags one image has.
const MAX_TAGS: usize = 1024;

/// The key of a tag: `'n' 'i'` + the tag.
fn tag_key(tag: &str) -> Vec<u8> {
    catalog::name_key(IMAGE, tag)
}

pub use crate::format::names::normalize_tag;

/// An image tag checked as `docker tag` checks one (`[HOST[:PORT]/]NAME[/NAME...][:TAG]`,
/// names in lowercase letters and digits with `.`, `_`, `__` or dashes between, a tag of up
/// to 128 letters, digits, `_`, `.` and `-`), in its stored form (`REPO` becomes
/// `REPO:latest`).
pub fn check_tag(tag: &str) -> Result<String> {
    let t = normalize_tag(tag.trim());
    let bad = |why: &str| {
        Err(Error::InvalidArgument(format!(
            "image tag '{}': {why} (write REPO[:TAG] as docker tag takes it)",
            crate::escape_path(tag.as_bytes())
        )))
    };
    if t.len() > 255 {
        return bad("longer than 255 bytes");
    }
    let Some((repo, version)) = t.rsplit_once(':') else {
        return bad("no tag");
    };
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let v = version.as_bytes();
    if v.is_empty() || v.len() > 128 || !word(v[0]) || !v.iter().all(|&c| word(c) || c == b'.' || c == b'-') {
        return bad("the tag after ':' is 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'");
    }
    let parts: Vec<&str> = repo.split('/').collect();
    let host = parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost");
    for (i, p) in parts.iter().enumerate() {
        let ok = if i == 0 && host { is_host(p) } else { is_component(p) };
        if !ok {
            return bad(&format!(
                "'{p}' is no repository name part (lowercase letters and digits, with '.', '_', '__' or '-' between)"
            ));
        }
    }
    if repo == "sha256" {
        return bad("a repository named sha256 reads as an image id");
    }
    Ok(t)
}

/// A registry host, `name.domain` or `localhost`, with an optional `:PORT`.
fn is_host(p: &str) -> bool {
    let (name, port) = p.split_once(':').unwrap_or((p, "1"));
    !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|c| c.is_ascii_digit())
}

/// A repository path component: lowercase letters and digits, runs joined by one `.`, one or
/// two `_`, or any number of `-`.
fn is_component(p: &str) -> bool {
    let b = p.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

/// What removing an image reference did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageRemoval {
    /// Tags taken off.
    pub untagged: Vec<String>,
    /// The image removed, when its last tag went (or it was named by id).
    pub deleted: Option<[u8; 32]>,
    /// Layers of its chain that nothing else used, removed with it.
    pub layers: Vec<Id>,
}

impl Store {
    /// Adds the image whose config is `config` over the layer `top` (its file system's top),
    /// or finds it when the store has it, and gives it `tags` (each moved from another image
    /// that had it). The config is kept byte for byte: its sha256 is the image id. All or
    /// nothing: a tag that cannot be given changes nothing.
    pub fn add_image(&self, config: &[u8], top: Option<&Layer>, tags: &[&str]) -> Result<ImageInfo> {
        self.add_image_with(config, top, tags, false).map(|(info, _)| info)
    }

    /// [`add_image`](Self::add_image), leaving off (with `skip_held`) the tags a layer's or a
    /// container's name holds (`web` holds `web:latest`), decided in the same transaction that
    /// gives the others; those left off are returned.
    pub(crate) fn add_image_with(
        &self,
        config: &[u8],
        top: Option<&Layer>,
        tags: &[&str],
        skip_held: bool,
    ) -> Result<(ImageInfo, Vec<String>)> {
        let id: [u8; 32] = sha2::Sha256::digest(config).into();
        let tags = tags.iter().map(|t| check_tag(t)).collect::<Result<Vec<_>>>()?;
        self.write(|inner, st| {
            if let Some(t) = top {
                layer_info(inner, st, t.id())?;
            }
            let (mut free, mut held) = (Vec::new(), Vec::new());
            for t in tags.iter() {
                match tag_free(inner, st, t) {
                    Ok(()) => free.push(t),
                    Err(Error::NameInUse(_)) if skip_held => held.push(t.clone()),
                    Err(e) => return Err(e),
                }
            }
            let existing = image_info(inner, st, &id)?;
            // Checked before anything changes, as the tags are: all or nothing.
            let had = existing.as_ref().map_or(&[][..], |i| &i.tags[..]);
            let mut new: Vec<&String> = free.iter().copied().filter(|t| !had.contains(t)).collect();
            new.sort();
            new.dedup();
            if had.len() + new.len() > MAX_TAGS {
                return Err(Error::InvalidArgument(format!(
                    "image {} would have {} tags; an image has at most {MAX_TAGS}",
                    crate::format::digest::sha256_string(&id),
                    had.len() + new.len()
                )));
            }
            let info = match existing {
                Some(existing) => existing,
                None => {
                    let mut tree = WorkTree::at(0, 0);
                    let mut cx = ctx(inner, &mut st.txn.app, &mut st.txn.chunks, Ready::none());
                    tree.put(&mut cx, b"config", config, &PutOptions::default())?;
                    let root = tree.flush(&mut cx.w)?;
                    st.txn.app.flush(&inner.segs)?;
                    let info = ImageInfo {
                        id,
                        layer: top.map(|t| t.id()),
                        root,
                        keys: tree.keys(),
                        created_ns: catalog::now_ns(),
                        tags: Vec::new(),
                    };
                    put_image(inner, st, &info)?;
                    info
                }
            };
            let info = free
                .into_iter()
                .try_fold(info, |info, t| give_tag(inner, st, info, t))?;
            Ok((info, held))
        })
    }

    /// Every image, in id order.
    pub fn images(&self) -> Result<Vec<ImageInfo>> {
        let st = self.lock()?;
        all_images(&self.inner, &st)
    }

    /// An image by tag (`REPO` means `REPO:latest`) or by id (`sha256:` and 4 to 64 hex
    /// digits, unique).
    pub fn image(&self, r: &str) -> Result<ImageInfo> {
        let st = self.lock()?;
        find_image(&self.inner, &st, r)?.ok_or_else(|| Error::UnknownRef(r.to_string()))
    }

    /// The config's bytes, as loaded.
    pub fn image_config(&self, image: &ImageInfo) -> Result<Vec<u8>> {
        let st = self.lock()?;
        let now = image_info(&self.inner, &st, &image.id)?
            .ok_or_else(|| Error::UnknownRef(format!("image {}", image.id_string())))?;
        let w = Writer::view(&self.inner.segs, &st.txn.app);
        WorkTree::at(now.root, now.keys)
            .get(&w, b"config")?
            .ok_or_else(|| Error::corrupt(format!("image {} has no config", image.id_string())))
    }

    /// Gives the image `r` the tag `tag`, moved from another image that had it.
    pub fn tag_image(&self, r: &str, tag: &str) -> Result<ImageInfo> {
        let tag = check_tag(tag)?;
        self.write(|inner, st| {
            let info = find_image(inner, st, r)?.ok_or_else(|| Error::UnknownRef(r.to_string()))?;
            tag_free(inner, st, &tag)?;
            give_tag(inner, st, info, &tag)
        })
    }

    /// Refuses a tag (checked) that a layer's or a container's name holds (`web` holds
    /// `web:latest`), as giving it would: to fail before work that would be undone.
    pub(crate) fn check_tag_free(&self, tag: &str) -> Result<()> {
        let st = self.lock()?;
        tag_free(&self.inner, &st, tag)
    }

    /// `docker rmi`: a tag is taken off its image, and the image goes with its last tag; an
    /// id removes the image and all its tags. The layers of its chain that nothing else uses
    /// go with it. Refused while a container runs on the image.
    pub fn remove_image(&self, r: &str) -> Result<ImageRemoval> {
        self.write(|inner, st| {
            let mut info = find_image(inner, st, r)?.ok_or_else(|| Error::UnknownRef(r.to_string()))?;
            let by_tag = !r.trim().starts_with("sha256:");
            let mut out = ImageRemoval::default();
            let gone: Vec<String> = if by_tag {
                vec![normalize_tag(r.trim())]
            } else {
                info.tags.clone()
            };
            // Checked before anything changes: a refused removal leaves every tag in place.
            if info.tags.iter().all(|t| gone.contains(t)) {
                if let Some(cid) = running_on(inner, st, &info)? {
                    return Err(Error::InUse(format!(
                        "image {} is the image of container {cid}",
                        info.id_string()
                    )));
                }
            }
            let w = Writer::view(&inner.segs, &st.txn.app);
            for t in &gone {
                st.txn.catalog.remove(&w, &tag_key(t))?;
            }
            info.tags.retain(|t| !gone.contains(t));
            out.untagged = gone;
            if info.tags.is_empty() {
                delete_image(inner, st, &info, &mut out)?;
            } else {
                put_image(inner, st, &info)?;
            }
            Ok(out)
        })
    }

    /// `docker image prune`: removes every untagged image no container runs on.
    pub fn prune_images(&self) -> Result<Vec<ImageRemoval>> {
        self.write(|inner, st| {
            let mut out = Vec::new();
            for info in all_images(inner, st)? {
                if info.tags.is_empty() && running_on(inner, st, &info)?.is_none() {
                    let mut r = ImageRemoval::default();
                    delete_image(inner, st, &info, &mut r)?;
                    out.push(r);
                }
            }
            Ok(out)
        })
    }
}

use sha2::Digest;

fn put_image(inner: &Inner, st: &mut State, info: &ImageInfo) -> Result<()> {
    let w = Writer::view(&inner.segs, &st.txn.app);
    st.txn
        .catalog
        .insert(&w, &catalog::image_key(&info.id), info.encode())?;
    Ok(())
}

pub(super) fn image_info(inner: &Inner, st: &State, id: &[u8; 32]) -> Result<Option<ImageInfo>> {
    let w = Writer::view(&inner.segs, &st.txn.app);
    st.txn
        .catalog
        .get(&w, &catalog::image_key(id))?
        .map(|v| ImageInfo::decode(*id, v))
        .transpose()
}

pub(super) fn all_images(inner: &Inner, st: &State) -> Result<Vec<ImageInfo>> {
    let w = Writer::view(&inner.segs, &st.txn.app);
    let mut out = Vec::new();
    st.txn.catalog.scan(&w, &[IMAGE], &mut |k, v| {
        if k.first() != Some(&IMAGE) {
            return Ok(false);
        }
        if let Ok(id) = <[u8; 32]>::try_from(&k[1..]) {
            out.push(ImageInfo::decode(id, v)?);
        }
        Ok(true)
    })?;
    Ok(out)
}

/// The image a tag names.
pub(super) fn tagged(inner: &Inner, st: &State, tag: &str) -> Result<Option<ImageInfo>> {
    let w = Writer::view(&inner.segs, &st.txn.app);
    let Some(v) = st.txn.catalog.get(&w, &tag_key(&normalize_tag(tag)))? else {
        return Ok(None);
    };
    let id: [u8; 32] = v
        .try_into()
        .map_err(|_| Error::corrupt("an image tag names no image id"))?;
    image_info(inner, st, &id)
}

/// An image by tag or by `sha256:` id (prefix of at least 4 hex digits).
pub(super) fn find_image(inner: &Inner, st: &State, r: &str) -> Result<Option<ImageInfo>> {
    let r = r.trim();
    let Some(hex) = r.strip_prefix("sha256:") else {
        return tagged(inner, st, r);
    };
    if hex.len() < 4 || hex.len() > 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::InvalidArgument(format!(
            "'{r}': an image id is sha256: and 4 to 64 hex digits"
        )));
    }
    let hex = hex.to_ascii_lowercase();
    let found: Vec<ImageInfo> = all_images(inner, st)?
        .into_iter()
        .filter(|i| i.id_string()[7..].starts_with(&hex))
        .collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.into_iter().next()),
        _ => Err(Error::AmbiguousRef(r.to_string())),
    }
}

/// Refuses a tag that a layer or container has as its name (or the name without `:latest`).
fn tag_free(inner: &Inner, st: &State, tag: &str) -> Result<()> {
    for alias in names::aliases(tag) {
        if name_holder(inner, st, &alias)?.is_some() {
            return Err(Error::NameInUse(format!(
                "'{tag}' (a layer or container is named '{alias}')"
            )));
        }
    }
    Ok(())
}

/// Refuses a layer or container name that an image has as a tag (`web` is `web:latest`).
pub(super) fn name_free_of_tags(inner: &Inner, st: &State, name: &str) -> Result<()> {
    for alias in names::aliases(name) {
        if tagged(inner, st, &alias)?.is_some() {
            return Err(Error::NameInUse(format!("'{name}' (an image is tagged '{alias}')")));
        }
    }
    Ok(())
}

/// Gives `info` the tag, taking it from the image that had it; the caller checked `tag_free`.
fn give_tag(inner: &Inner, st: &mut State, mut info: ImageInfo, tag: &str) -> Result<ImageInfo> {
    if info.tags.iter().any(|t| t == tag) {
        return Ok(info);
    }
    if info.tags.len() >= MAX_TAGS {
        return Err(Error::InvalidArgument(format!(
            "image {} has 1024 tags already",
            info.id_string()
        )));
    }
    if let Some(mut prev) = tagged(inner, st, tag)? {
        prev.tags.retain(|t| t != tag);
        put_image(inner, st, &prev)?;
    }
    info.tags.push(tag.to_string());
    put_image(inner, st, &info)?;
    let w = Writer::view(&inner.segs, &st.txn.app);
    st.txn.catalog.insert(&w, &tag_key(tag), info.id.to_vec())?;
    Ok(info)
}

/// A container whose image is this image's top layer, if any.
fn running_on(inner: &Inner, st: &State, info: &ImageInfo) -> Result<Option<Id>> {
    let Some(top) = info.layer else {
        return Ok(None);
    };
    for (cid, v) in scan_kind(inner, st, CONTAINER)? {
        if ContainerInfo::decode(cid, &v)?.image == top {
            return Ok(Some(cid));
        }
    }
    Ok(None)
}

/// Removes the image record, its tags, and the layers of its chain nothing else uses.
fn delete_image(inner: &Inner, st: &mut State, info: &ImageInfo, out: &mut ImageRemoval) -> Result<()> {
    if let Some(cid) = running_on(inner, st, info)? {
        return Err(Error::InUse(format!(
            "image {} is the image of container {cid}",
            info.id_string()
        )));
    }
    let w = Writer::view(&inner.segs, &st.txn.app);
    for t in &info.tags {
        st.txn.catalog.remove(&w, &tag_key(t))?;
        out.untagged.push(t.clone());
    }
    st.txn.catalog.remove(&w, &catalog::image_key(&info.id))?;
    out.deleted = Some(info.id);
    let mut next = info.layer;
    while let Some(id) = next {
        // A layer already gone (removed by hand, or by another process) ends the walk.
        let Ok(layer) = layer_info(inner, st, id) else {
            break;
        };
        if layer.name.is_some() || layer_used(inner, st, id)? {
            break;
        }
        let w = Writer::view(&inner.segs, &st.txn.app);
        st.txn.catalog.remove(&w, &catalog::key(LAYER, &id))?;
        st.txn.catalog.remove(&w, &catalog::key(catalog::ANNOTATIONS, &id))?;
        out.layers.push(id);
        next = layer.parent;
    }
    Ok(())
}

/// Whether a container, a child layer or an image stands on layer `id`.
pub(super) fn layer_used(inner: &Inner, st: &State, id: Id) -> Result<bool> {
    for (cid, v) in scan_kind(inner, st, CONTAINER)? {
        if ContainerInfo::decode(cid, &v)?.image == id {
            return Ok(true);
        }
    }
    for (lid, v) in scan_kind(inner, st, LAYER)? {
        if LayerInfo::decode(lid, &v)?.parent == Some(id) {
            return Ok(true);
        }
    }
    Ok(all_images(inner, st)?.iter().any(|i| i.layer == Some(id)))
}
