//! `save`: an image (or a layer with its parents) as an OCI image layout folder: `oci-layout`,
//! `index.json`, and blobs named by their sha256: each layer's changeset on its parent as a
//! plain tar (a layer loaded from a tar gives that tar back, so its digest is its diffID), the
//! config (a loaded image's own bytes), and the manifest.

use super::load::blob_path;
use super::spec::{self, Descriptor, Index, Layout, Manifest, NewConfig, RootFs};
use crate::import::digest::Sha256Writer;
use crate::sha256_string;
use crate::{Error, Result};
use crate::{Layer, Store};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What `save` wrote.
#[derive(Debug)]
pub struct Saved {
    /// The manifest's digest, `sha256:HEX`.
    pub manifest: String,
    /// The config's digest: the image id.
    pub config: String,
    /// The layers' digests (their diffIDs: the blobs are plain tars), bottom first.
    pub layers: Vec<String>,
    /// The tag the index names the image by, if any.
    pub tag: Option<String>,
    /// The saved layer's name when it is no valid image tag (see [`check_tag`]), so the
    /// image was saved with no tag (`load` would refuse it as one).
    ///
    /// [`check_tag`]: crate::check_tag
    pub skipped_tag: Option<String>,
}

/// Writes the image `r` (a tag or `sha256:` id; or any layer, with a config made for it) into
/// a new OCI layout at `dir`, which must not exist or be an empty folder.
pub fn save(store: &Store, r: &str, dir: &Path) -> Result<Saved> {
    let mut skipped_tag = None;
    let (config, top, tag) = match store.image(r) {
        Ok(image) => {
            let config = store.image_config(&image)?;
            let top = image.layer.map(|id| store.layer_by_id(id)).transpose()?;
            let tag = if r.starts_with("sha256:") {
                image.tags.first().cloned()
            } else {
                Some(crate::normalize_tag(r.trim()))
            };
            (Some(config), top, tag)
        }
        Err(Error::UnknownRef(_)) => {
            let layer = store.layer(r)?;
            // The layer's name, if it has one, tags the image, as a tag must be written.
            let name = layer.info().name.clone();
            let tag = name.as_deref().and_then(|n| crate::check_tag(n).ok());
            if tag.is_none() {
                skipped_tag = name;
            }
            (None, Some(layer), tag)
        }
        Err(e) => return Err(e),
    };
    let chain = chain_of(store, top)?;
    let made = prepare(dir)?;
    let done = write_layout(dir, &chain, config, tag);
    if done.is_err() {
        // What this run wrote goes: the folder it made, or what it put in an empty one.
        if made {
            let _ = std::fs::remove_dir_all(dir);
        } else {
            let _ = std::fs::remove_dir_all(dir.join("blobs"));
            let _ = std::fs::remove_file(dir.join("index.json"));
            let _ = std::fs::remove_file(dir.join("oci-layout"));
        }
    }
    let mut saved = done?;
    saved.skipped_tag = skipped_tag;
    Ok(saved)
}

fn write_layout(dir: &Path, chain: &[Layer], config: Option<Vec<u8>>, tag: Option<String>) -> Result<Saved> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| file_err(&blobs, e))?;
    let mut layers = Vec::new();
    let mut parent: Option<&Layer> = None;
    for layer in chain {
        let (digest, size) = write_blob(&blobs, |w| crate::export_tar(parent, layer, w).map(|_| ()))?;
        layers.push(Descriptor {
            media_type: spec::LAYER_TAR.into(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
        });
        parent = Some(layer);
    }
    let diff_ids: Vec<String> = layers.iter().map(|d| d.digest.clone()).collect();
    let config = match config {
        Some(c) => {
            check_config(&c, &diff_ids)?;
            c
        }
        None => new_config(&diff_ids)?,
    };
    let config_desc = blob_bytes(&blobs, spec::CONFIG, &config)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(spec::MANIFEST.into()),
        config: config_desc.clone(),
        layers,
    };
    let manifest_bytes = json(&manifest)?;
    let mut manifest_desc = blob_bytes(&blobs, spec::MANIFEST, &manifest_bytes)?;
    if let Some(t) = &tag {
        let short = t.rsplit_once(':').map_or(t.as_str(), |(_, s)| s);
        manifest_desc.annotations.insert(spec::REF_NAME.into(), short.into());
        manifest_desc.annotations.insert(spec::IMAGE_NAME.into(), t.clone());
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(spec::INDEX.into()),
        manifests: vec![manifest_desc.clone()],
    };
    write_file(&dir.join("index.json"), &json(&index)?)?;
    write_file(
        &dir.join("oci-layout"),
        &json(&Layout {
            version: "1.0.0".into(),
        })?,
    )?;
    Ok(Saved {
        manifest: manifest_desc.digest,
        config: config_desc.digest,
        layers: diff_ids,
        tag,
        skipped_tag: None,
    })
}

/// The layers from the bottom of `top`'s chain up to it.
fn chain_of(store: &Store, top: Option<Layer>) -> Result<Vec<Layer>> {
    let mut chain = Vec::new();
    let mut next = top;
    while let Some(l) = next {
        next = l.info().parent.map(|p| store.layer_by_id(p)).transpose()?;
        chain.push(l);
        if chain.len() > 4096 {
            return Err(Error::corrupt("a layer chain of more than 4096 layers"));
        }
    }
    chain.reverse();
    Ok(chain)
}

/// A loaded config whose diffIDs are not the tars its layers give would make a broken image.
fn check_config(config: &[u8], diff_ids: &[String]) -> Result<()> {
    let view: spec::ConfigView = serde_json::from_slice(config)
        .map_err(|e| Error::corrupt(format!("the stored image config does not parse: {e}")))?;
    if view.rootfs.diff_ids != diff_ids {
        return Err(Error::corrupt(format!(
            "the image config's diffIDs {:?} are not its layers' tars {:?}",
            view.rootfs.diff_ids, diff_ids
        )));
    }
    Ok(())
}

fn new_config(diff_ids: &[String]) -> Result<Vec<u8>> {
    let host = spec::host_platform();
    json(&NewConfig {
        architecture: host.architecture,
        os: host.os,
        config: BTreeMap::new(),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: diff_ids.to_vec(),
        },
    })
}

fn json(v: &impl serde::Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::InvalidArgument(format!("JSON: {e}")))
}

/// `dir` made (`true`), or found empty (`false`).
fn prepare(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::Exists(format!(
                    "{} (save writes a new OCI layout into a missing or empty folder)",
                    dir.display()
                )));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
            Ok(true)
        }
        Err(e) => Err(file_err(dir, e)),
    }
}

fn file_err(path: &Path, e: std::io::Error) -> Error {
    Error::File {
        path: path.to_path_buf(),
        source: e,
    }
}

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(path, data).map_err(|e| file_err(path, e))
}

/// A blob of known bytes.
fn blob_bytes(blobs: &Path, media_type: &str, data: &[u8]) -> Result<Descriptor> {
    let (digest, size) = write_blob(blobs, |w| w.write_all(data).map_err(Error::Io))?;
    Ok(Descriptor {
        media_type: media_type.into(),
        digest,
        size,
        platform: None,
        annotations: BTreeMap::new(),
    })
}

/// Writes a blob through `fill` into a temporary file, then names it by its sha256.
fn write_blob(blobs: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<(String, u64)> {
    let tmp: PathBuf = blobs.join(".partial");
    let file = std::fs::File::create(&tmp).map_err(|e| file_err(&tmp, e))?;
    let mut w = Sha256Writer::new(std::io::BufWriter::with_capacity(1 << 20, file));
    // A write that fails is told with the file it was writing.
    let done = fill(&mut w)
        .and_then(|_| w.flush().map_err(Error::Io))
        .map_err(|e| match e {
            Error::Io(io) => file_err(&tmp, io),
            e => e,
        });
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let (digest, size, _) = w.finish();
    let digest = sha256_string(&digest);
    let path = blobs.join(blob_path(&digest).trim_start_matches("blobs/sha256/"));
    std::fs::rename(&tmp, &path).map_err(|e| file_err(&path, e))?;
    Ok((digest, size))
}
