//! `load`: images from an OCI layout (a folder or a tar of one) or a `docker save` tar. Every
//! blob's size and digest and every layer's diffID are checked before anything is kept; layers
//! the store has already (same diffID on the same parent: the same chain ID) are reused; the
//! rest are applied each on the one before; the config's bytes are kept, so the image id holds.

use super::source::Source;
use super::spec::{self, ConfigView, Descriptor, DockerEntry, Index, Manifest, Platform};
use crate::{parse_sha256, sha256_string};
use crate::{Error, Result};
use crate::{Id, ImageInfo, Layer, Store};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// The most bytes an index, manifest or config may have.
const JSON_MAX: u64 = 8 << 20;
/// Nested indexes followed to reach a manifest.
const MAX_DEPTH: usize = 4;

/// How to load.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions<'a> {
    /// The tag to give the image (`REPO:TAG`), in place of the names the archive gives;
    /// only when it holds one image.
    pub tag: Option<&'a str>,
    /// `os/arch[/variant]` to pick from a multi-platform index (default: this machine's).
    pub platform: Option<&'a str>,
}

/// One image loaded.
#[derive(Debug)]
pub struct LoadedImage {
    pub image: ImageInfo,
    /// The layers of its chain, bottom first.
    pub layers: Vec<Layer>,
    /// How many of them were applied now (the rest the store had).
    pub imported: usize,
    /// Names the archive gave that the image was not given, and why.
    pub skipped_tags: Vec<SkippedTag>,
}

/// A name an archive gave an image that `load` did not give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedTag {
    /// The name as the archive wrote it (a tag held by a name: in its stored form).
    pub name: String,
    /// Why it was left off.
    pub why: SkipReason,
}

/// Why a name of an archive was not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// It is no image tag (a digest reference, say, or uppercase letters).
    NotATag,
    /// A layer or container of the store has the name it stands for (`web` for `web:latest`).
    HeldByName,
}

/// The most images one archive may name.
const MAX_IMAGES: usize = 1024;

/// Loads every image of the OCI layout or `docker save` tar at `path`, one after the other:
/// each is all or nothing (a failure takes back the layers it applied), and the images before
/// a failing one stay loaded, as `docker load` has it.
pub fn load(store: &Store, path: &Path, opts: &LoadOptions) -> Result<Vec<LoadedImage>> {
    let src = Source::open(path)?;
    let want = opts.platform.map(parse_platform).transpose()?;
    let found = if src.open_member("index.json")?.is_some() {
        oci_found(&src, want.as_ref())?
    } else if src.open_member("manifest.json")?.is_some() {
        docker_found(&src)?
    } else {
        return Err(Error::InvalidArgument(format!(
            "{}: neither an OCI layout (index.json) nor a docker save archive (manifest.json)",
            path.display()
        )));
    };
    if found.is_empty() {
        return Err(Error::InvalidArgument(format!("{}: holds no image", path.display())));
    }
    if opts.tag.is_some() && found.len() > 1 {
        return Err(Error::InvalidArgument(format!(
            "{}: holds {} images; a tag names one",
            path.display(),
            found.len()
        )));
    }
    let forced = opts.tag.map(crate::check_tag).transpose()?;
    if let Some(t) = &forced {
        // Refused now rather than after every layer is applied (and checked again then).
        store.check_tag_free(t)?;
    }
    let mut chains = Chains::of(store)?;
    let mut out = Vec::new();
    for f in found {
        let plan = match f {
            Found::Oci { desc, tags } => plan_of(&src, pick_manifest(&src, &desc, want.as_ref(), 0)?, tags)?,
            Found::Docker(e) => docker_plan(&src, e)?,
        };
        // The archive's names that cannot be given are left off, and said so: those that are
        // no tag now, those a layer's or container's name holds as the image is added. A tag
        // asked for is given or the load fails.
        let (tags, skipped) = match &forced {
            Some(t) => (vec![t.clone()], Vec::new()),
            None => usable_tags(&plan.tags),
        };
        let mut loaded = load_one(store, &src, plan, &tags, forced.is_none(), &mut chains)?;
        loaded.skipped_tags.splice(0..0, skipped);
        out.push(loaded);
    }
    Ok(out)
}

/// The archive's names of an image split into tags (each once, in stored form) and names
/// that are no tag (each once).
fn usable_tags(names: &[String]) -> (Vec<String>, Vec<SkippedTag>) {
    // An archive may list any number of names: each is looked at once.
    let mut seen = std::collections::HashSet::new();
    let (mut ok, mut skipped) = (Vec::new(), Vec::new());
    for name in names {
        match crate::check_tag(name) {
            Ok(tag) => {
                if seen.insert(tag.clone()) {
                    ok.push(tag);
                }
            }
            Err(_) if seen.insert(name.clone()) => skipped.push(SkippedTag {
                name: name.clone(),
                why: SkipReason::NotATag,
            }),
            Err(_) => {}
        }
    }
    (ok, skipped)
}

/// An image an archive names, before its manifest and config are read.
enum Found {
    Oci { desc: Descriptor, tags: Vec<String> },
    Docker(DockerEntry),
}

/// An image found in the archive, its blobs not yet read (but the config checked).
struct Plan {
    config: Vec<u8>,
    diff_ids: Vec<[u8; 32]>,
    /// Each layer's file in the archive and, for an OCI layout, its digest and size.
    layers: Vec<(String, Option<Descriptor>)>,
    tags: Vec<String>,
}

/// Applies one image's layers and adds it with `tags`; with `skip_held`, a tag a layer's or
/// container's name holds is left off (and told in `skipped_tags`) instead of failing it.
fn load_one(
    store: &Store,
    src: &Source,
    plan: Plan,
    tags: &[String],
    skip_held: bool,
    chains: &mut Chains,
) -> Result<LoadedImage> {
    let mut layers: Vec<Layer> = Vec::new();
    let mut made: Vec<Id> = Vec::new();
    let mut built = || -> Result<()> {
        for ((file, desc), diff_id) in plan.layers.iter().zip(&plan.diff_ids) {
            let parent = layers.last().map(|l| l.id());
            let (reader, size) = src
                .open_member(file)?
                .ok_or_else(|| Error::InvalidArgument(format!("{}: layer {file} is missing", src.path().display())))?;
            if let Some(id) = chains.get(parent, diff_id) {
                check_stored(src, file, reader, size, desc.as_ref(), diff_id)?;
                layers.push(store.layer_by_id(id)?);
                continue;
            }
            let mut blob = Checked::new(reader, file, desc.as_ref().map(|d| (d, size)))?;
            let imported = match crate::import_tar(store, &mut blob, layers.last(), None) {
                Ok(i) => i,
                // A damaged blob is told as such, not as the tar error it caused.
                Err(e) => {
                    blob.finish()?;
                    return Err(Error::At {
                        place: format!("layer {file}"),
                        source: Box::new(e),
                    });
                }
            };
            made.push(imported.layer.id());
            blob.finish()?;
            if imported.diff_id != sha256_string(diff_id) {
                return Err(Error::InvalidArgument(format!(
                    "{}: layer {file} is {} uncompressed, but the config says {}",
                    src.path().display(),
                    imported.diff_id,
                    sha256_string(diff_id)
                )));
            }
            chains.insert(parent, *diff_id, imported.layer.id());
            layers.push(imported.layer);
        }
        Ok(())
    };
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let done = built().and_then(|_| store.add_image_with(&plan.config, layers.last(), &tag_refs, skip_held));
    match done {
        Ok((image, held)) => Ok(LoadedImage {
            image,
            imported: made.len(),
            layers,
            skipped_tags: held
                .into_iter()
                .map(|name| SkippedTag {
                    name,
                    why: SkipReason::HeldByName,
                })
                .collect(),
        }),
        Err(e) => {
            // What this image brought is taken back: the store is as it was.
            drop(layers);
            for id in made.iter().rev() {
                chains.forget(*id);
                if let Err(undo) = store.remove_layer(&id.to_string()) {
                    return Err(Error::InvalidArgument(format!(
                        "{e}; and layer {id}, applied before, could not be taken back: {undo}"
                    )));
                }
            }
            Err(e)
        }
    }
}

/// A layer the store has already: the archive's blob is still read and checked (its digest,
/// and its uncompressed bytes against the diffID), so a damaged or mismatched archive never
/// loads. A docker save layer (no descriptor) is a plain tar: its digest is its diffID.
fn check_stored(
    src: &Source,
    file: &str,
    reader: Box<dyn Read + '_>,
    size: u64,
    desc: Option<&Descriptor>,
    diff_id: &[u8; 32],
) -> Result<()> {
    let Some(desc) = desc else {
        let want = Descriptor {
            media_type: spec::LAYER_TAR.into(),
            digest: sha256_string(diff_id),
            size,
            platform: None,
            annotations: Default::default(),
        };
        return Checked::new(reader, file, Some((&want, size)))?.finish();
    };
    let mut blob = Checked::new(reader, file, Some((desc, size)))?;
    let mut plain = crate::import::digest::Sha256Writer::new(std::io::sink());
    let copied = crate::import::tar_in::decompressed(&mut blob)
        .and_then(|mut r| std::io::copy(&mut r, &mut plain).map_err(Error::Io));
    blob.finish()?;
    copied?;
    let (got, _, _) = plain.finish();
    if got != *diff_id {
        return Err(Error::InvalidArgument(format!(
            "{}: layer {file} is {} uncompressed, but the config says {}",
            src.path().display(),
            sha256_string(&got),
            sha256_string(diff_id)
        )));
    }
    Ok(())
}

/// Layers the store has from tars, by (parent, diffID): the chain ID's two halves.
struct Chains(HashMap<(Option<Id>, [u8; 32]), Id>);

impl Chains {
    fn of(store: &Store) -> Result<Chains> {
        let mut map = HashMap::new();
        for info in store.layers()? {
            let layer = store.layer_by_id(info.id)?;
            if let Some(o) = crate::tar_origin(&layer)? {
                if o.parent == info.parent {
                    map.insert((o.parent, o.diff_id), info.id);
                }
            }
        }
        Ok(Chains(map))
    }

    fn get(&self, parent: Option<Id>, diff_id: &[u8; 32]) -> Option<Id> {
        self.0.get(&(parent, *diff_id)).copied()
    }

    fn insert(&mut self, parent: Option<Id>, diff_id: [u8; 32], id: Id) {
        self.0.insert((parent, diff_id), id);
    }

    fn forget(&mut self, id: Id) {
        self.0.retain(|_, v| *v != id);
    }
}

/// A blob read through its digest and size check: a mismatch is an error at the end, and a
/// blob longer than its descriptor says is one as soon as it shows.
struct Checked<'r> {
    inner: Box<dyn Read + 'r>,
    name: String,
    want: Option<([u8; 32], u64)>,
    sha: Sha256,
    read: u64,
}

impl<'r> Checked<'r> {
    fn new(inner: Box<dyn Read + 'r>, name: &str, desc: Option<(&Descriptor, u64)>) -> Result<Checked<'r>> {
        let want = match desc {
            Some((d, on_disk)) => {
                if d.size != on_disk {
                    return Err(Error::InvalidArgument(format!(
                        "blob {name} has {on_disk} bytes, its descriptor says {}",
                        d.size
                    )));
                }
                Some((parse_sha256(&d.digest)?, d.size))
            }
            None => None,
        };
        Ok(Checked {
            inner,
            name: name.to_string(),
            want,
            sha: Sha256::new(),
            read: 0,
        })
    }

    /// Reads what is left and checks size and digest.
    fn finish(mut self) -> Result<()> {
        std::io::copy(&mut self, &mut std::io::sink()).map_err(Error::Io)?;
        let Some((digest, size)) = self.want else {
            return Ok(());
        };
        let got: [u8; 32] = self.sha.finalize().into();
        if got != digest || self.read != size {
            return Err(Error::InvalidArgument(format!(
                "blob {} does not match its digest {} (it is {})",
                self.name,
                sha256_string(&digest),
                sha256_string(&got)
            )));
        }
        Ok(())
    }
}

impl Read for Checked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.read += n as u64;
        if let Some((_, size)) = self.want {
            if self.read > size {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("blob {} is longer than its descriptor says", self.name),
                ));
            }
        }
        Ok(n)
    }
}

/// A JSON blob of an OCI layout, its size and digest checked.
fn read_blob(src: &Source, d: &Descriptor) -> Result<Vec<u8>> {
    let digest = parse_sha256(&d.digest)?;
    if d.size > JSON_MAX {
        return Err(Error::InvalidArgument(format!(
            "{}: {} has {} bytes, more than the {JSON_MAX} a manifest or config may have",
            src.path().display(),
            d.digest,
            d.size
        )));
    }
    let name = blob_path(&d.digest);
    let data = src
        .read_small(&name, JSON_MAX)?
        .ok_or_else(|| Error::InvalidArgument(format!("{}: blob {} is missing", src.path().display(), d.digest)))?;
    let got: [u8; 32] = Sha256::digest(&data).into();
    if data.len() as u64 != d.size || got != digest {
        return Err(Error::InvalidArgument(format!(
            "{}: blob {} does not match its descriptor (size {}, sha256 {})",
            src.path().display(),
            d.digest,
            data.len(),
            sha256_string(&got)
        )));
    }
    Ok(data)
}

pub(crate) fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

fn parse<'a, T: serde::Deserialize<'a>>(src: &Source, what: &str, data: &'a [u8]) -> Result<T> {
    serde_json::from_slice(data)
        .map_err(|e| Error::InvalidArgument(format!("{}: {what} is not valid: {e}", src.path().display())))
}

/// The images an OCI layout's `index.json` names (one per manifest digest, their names
/// merged).
fn oci_found(src: &Source, want: Option<&Platform>) -> Result<Vec<Found>> {
    let data = src.read_small("index.json", JSON_MAX)?.unwrap_or_default();
    let mut index: Index = parse(src, "index.json", &data)?;
    // Manifests for several platforms side by side in index.json: the one asked for (or this
    // machine's), as from a nested index.
    if index.manifests.iter().any(|d| d.platform.is_some()) {
        let host = spec::host_platform();
        let want = want.unwrap_or(&host);
        let have: Vec<String> = (index.manifests.iter())
            .filter_map(|m| m.platform.as_ref().map(|p| p.to_string()))
            .collect();
        index
            .manifests
            .retain(|d| d.platform.as_ref().is_none_or(|p| fits(p, want)));
        if index.manifests.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{}: no image for {want} (it has {}); choose with --platform",
                src.path().display(),
                have.join(", ")
            )));
        }
    }
    let stem = src
        .path()
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| crate::check_tag(s).is_ok())
        .unwrap_or("image")
        .to_string();
    let mut found: Vec<Found> = Vec::new();
    for d in index.manifests {
        let tag = tag_of(&d.annotations, &stem);
        let same = found
            .iter_mut()
            .find(|f| matches!(f, Found::Oci { desc, .. } if desc.digest == d.digest));
        match same {
            Some(Found::Oci { tags, .. }) => tags.extend(tag),
            _ => found.push(Found::Oci {
                desc: d,
                tags: tag.into_iter().collect(),
            }),
        }
        too_many(src, found.len())?;
    }
    Ok(found)
}

fn too_many(src: &Source, n: usize) -> Result<()> {
    if n > MAX_IMAGES {
        return Err(Error::InvalidArgument(format!(
            "{}: names more than {MAX_IMAGES} images",
            src.path().display()
        )));
    }
    Ok(())
}

/// The name an index entry gives: containerd's whole name, else the OCI tag on the layout's
/// name (`skopeo copy ... oci:busybox:1.36` is `busybox:1.36`).
fn tag_of(annotations: &std::collections::BTreeMap<String, String>, stem: &str) -> Option<String> {
    if let Some(n) = annotations.get(spec::IMAGE_NAME) {
        return Some(n.clone());
    }
    let r = annotations.get(spec::REF_NAME)?;
    Some(if r.contains(':') || r.contains('/') {
        r.clone()
    } else {
        format!("{stem}:{r}")
    })
}

fn parse_platform(p: &str) -> Result<Platform> {
    let parts: Vec<&str> = p.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        }),
        _ => Err(Error::InvalidArgument(format!(
            "platform '{p}': write it as os/arch or os/arch/variant (linux/amd64)"
        ))),
    }
}

/// The image manifest `d` leads to: itself, or through an index the entry for the platform.
fn pick_manifest(src: &Source, d: &Descriptor, want: Option<&Platform>, depth: usize) -> Result<Manifest> {
    if depth > MAX_DEPTH {
        return Err(Error::InvalidArgument(format!(
            "{}: indexes nested more than {MAX_DEPTH} deep",
            src.path().display()
        )));
    }
    let data = read_blob(src, d)?;
    match d.media_type.as_str() {
        spec::INDEX | spec::DOCKER_LIST => {
            let index: Index = parse(src, &d.digest, &data)?;
            let host = spec::host_platform();
            let want = want.unwrap_or(&host);
            let chosen = if index.manifests.len() == 1 && d.platform.is_none() && index.manifests[0].platform.is_none()
            {
                index.manifests.first()
            } else {
                index
                    .manifests
                    .iter()
                    .find(|m| m.platform.as_ref().is_some_and(|p| fits(p, want)))
            };
            let Some(m) = chosen else {
                let have: Vec<String> = index
                    .manifests
                    .iter()
                    .filter_map(|m| m.platform.as_ref().map(|p| p.to_string()))
                    .collect();
                return Err(Error::InvalidArgument(format!(
                    "{}: no image for {want} (it has {}); choose with --platform",
                    src.path().display(),
                    have.join(", ")
                )));
            };
            pick_manifest(src, m, Some(want), depth + 1)
        }
        spec::MANIFEST | spec::DOCKER_MANIFEST => parse(src, &d.digest, &data),
        other => Err(Error::InvalidArgument(format!(
            "{}: {} is a {other}, not an image manifest or index",
            src.path().display(),
            d.digest
        ))),
    }
}

/// Whether a manifest's platform is the one wanted (any variant when none is asked for).
fn fits(p: &Platform, want: &Platform) -> bool {
    p.os == want.os && p.architecture == want.architecture && (want.variant.is_none() || p.variant == want.variant)
}

fn plan_of(src: &Source, m: Manifest, tags: Vec<String>) -> Result<Plan> {
    if let Some(l) = m.layers.iter().find(|l| !spec::is_layer(&l.media_type)) {
        return Err(Error::InvalidArgument(format!(
            "{}: layer {} is a {}, which lstore cannot apply",
            src.path().display(),
            l.digest,
            l.media_type
        )));
    }
    for l in &m.layers {
        parse_sha256(&l.digest)?;
    }
    let config = read_blob(src, &m.config)?;
    let diff_ids = diff_ids(src, &config, m.layers.len())?;
    let layers = m.layers.into_iter().map(|d| (blob_path(&d.digest), Some(d))).collect();
    Ok(Plan {
        config,
        diff_ids,
        layers,
        tags,
    })
}

/// The config's diffIDs, one per layer.
fn diff_ids(src: &Source, config: &[u8], layers: usize) -> Result<Vec<[u8; 32]>> {
    let view: ConfigView = parse(src, "the image config", config)?;
    if view.rootfs.diff_ids.len() != layers {
        return Err(Error::InvalidArgument(format!(
            "{}: the config lists {} diffIDs for {layers} layers",
            src.path().display(),
            view.rootfs.diff_ids.len()
        )));
    }
    view.rootfs.diff_ids.iter().map(|d| parse_sha256(d)).collect()
}

/// The images of a `docker save` archive's `manifest.json` (one per config, names merged).
fn docker_found(src: &Source) -> Result<Vec<Found>> {
    let data = src.read_small("manifest.json", JSON_MAX)?.unwrap_or_default();
    let entries: Vec<DockerEntry> = parse(src, "manifest.json", &data)?;
    let mut found: Vec<Found> = Vec::new();
    for e in entries {
        let same = found
            .iter_mut()
            .find(|f| matches!(f, Found::Docker(d) if d.config == e.config));
        match same {
            Some(Found::Docker(d)) => d
                .repo_tags
                .get_or_insert_with(Vec::new)
                .extend(e.repo_tags.unwrap_or_default()),
            _ => found.push(Found::Docker(e)),
        }
        too_many(src, found.len())?;
    }
    Ok(found)
}

/// One image of a `docker save` archive, its config read and checked.
fn docker_plan(src: &Source, e: DockerEntry) -> Result<Plan> {
    let config = src
        .read_small(&e.config, JSON_MAX)?
        .ok_or_else(|| Error::InvalidArgument(format!("{}: config {} is missing", src.path().display(), e.config)))?;
    // A config named by its digest must have it.
    if let Some(hex) = e.config.strip_prefix("blobs/sha256/") {
        let got = sha256_string(&Sha256::digest(&config).into());
        if got[7..] != *hex {
            return Err(Error::InvalidArgument(format!(
                "{}: config {} does not match its name (it is {got})",
                src.path().display(),
                e.config
            )));
        }
    }
    let diff_ids = diff_ids(src, &config, e.layers.len())?;
    Ok(Plan {
        config,
        diff_ids,
        layers: e.layers.into_iter().map(|l| (l, None)).collect(),
        tags: e.repo_tags.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archives_names_give_each_tag_once_and_tell_each_bad_name_once() {
        let names: Vec<String> = ["web", "web:latest", "Bad", "Bad", "db:1"].map(String::from).to_vec();
        let (ok, skipped) = usable_tags(&names);
        assert_eq!(ok, ["web:latest", "db:1"]);
        assert_eq!(
            skipped,
            [SkippedTag {
                name: "Bad".into(),
                why: SkipReason::NotATag
            }]
        );
    }
}
