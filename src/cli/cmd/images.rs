//! Images: `load`, `save`, `images`, `image-prune` (and `tag`/`rmi` on an image, in `layers`).

use crate::cli::cmd::Ctx;
use crate::cli::output::{JsonFlag, List, Report, Row};
use clap::Args;
use lstore::Result;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

// `lstore load`.
#[derive(Args)]
pub struct LoadArgs {
    /// An OCI image layout (a folder, or a tar of one) or a `docker save` tar.
    path: PathBuf,
    /// Tag for the image (REPO:TAG), in place of the names the archive gives.
    #[arg(long)]
    tag: Option<String>,
    /// Platform to take from a multi-platform index: os/arch[/variant] (default: this machine's).
    #[arg(long)]
    platform: Option<String>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Serialize)]
pub struct Loaded {
    images: Vec<LoadedRow>,
}

#[derive(Serialize)]
struct LoadedRow {
    id: String,
    tags: Vec<String>,
    layers: Vec<String>,
    imported: usize,
    reused: usize,
    skipped_tags: Vec<String>,
    /// Why each of `skipped_tags` was not given: `not_a_tag` or `held_by_name`.
    skip_reasons: Vec<&'static str>,
    #[serde(skip)]
    skipped: Vec<lstore::SkippedTag>,
}

impl Report for Loaded {
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        for i in &self.images {
            for s in &i.skipped {
                eprintln!(
                    "lstore: {}: the name '{}' {}; not given",
                    i.id,
                    lstore::escape_path(s.name.as_bytes()),
                    reason(s.why).1
                );
            }
            let tags = if i.tags.is_empty() {
                "<none>".to_string()
            } else {
                i.tags.join(", ")
            };
            writeln!(
                w,
                "loaded {} {tags}: {} layers applied, {} already stored",
                i.id, i.imported, i.reused
            )?;
        }
        Ok(())
    }
}

/// A skipped name's reason: its code in JSON, and in words.
fn reason(why: lstore::SkipReason) -> (&'static str, &'static str) {
    match why {
        lstore::SkipReason::NotATag => ("not_a_tag", "is not a valid tag"),
        lstore::SkipReason::HeldByName => ("held_by_name", "is held by a layer's or container's name in this store"),
        _ => ("other", "cannot be given"),
    }
}

pub fn load(ctx: &Ctx, a: &LoadArgs) -> Result<Loaded> {
    let store = ctx.open()?;
    let opts = lstore::LoadOptions {
        tag: a.tag.as_deref(),
        platform: a.platform.as_deref(),
    };
    let loaded = lstore::load(&store, &a.path, &opts)?;
    store.commit()?;
    let images = loaded
        .into_iter()
        .map(|l| LoadedRow {
            id: l.image.id_string(),
            tags: l.image.tags.clone(),
            layers: l.layers.iter().map(|x| x.id().to_string()).collect(),
            imported: l.imported,
            reused: l.layers.len() - l.imported,
            skipped_tags: l.skipped_tags.iter().map(|s| s.name.clone()).collect(),
            skip_reasons: l.skipped_tags.iter().map(|s| reason(s.why).0).collect(),
            skipped: l.skipped_tags,
        })
        .collect();
    Ok(Loaded { images })
}

// `lstore save`.
#[derive(Args)]
pub struct SaveArgs {
    /// The image (tag or sha256: id), or a layer (its chain is saved with a config made for it).
    image: String,
    /// A new OCI image layout folder (missing or empty).
    dir: PathBuf,
}

#[derive(Serialize)]
pub struct SavedReport {
    manifest: String,
    config: String,
    layers: Vec<String>,
    #[serde(skip)]
    skipped_tag: Option<String>,
}

impl Report for SavedReport {
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        if let Some(name) = &self.skipped_tag {
            eprintln!(
                "lstore: the layer name '{}' is no valid image tag (lowercase REPO[:TAG], as docker tag takes one); saved with no tag",
                lstore::escape_path(name.as_bytes())
            );
        }
        writeln!(w, "{}", self.manifest)
    }
}

pub fn save(ctx: &Ctx, a: &SaveArgs) -> Result<SavedReport> {
    let store = ctx.open_read_only()?;
    let saved = lstore::save(&store, &a.image, &a.dir)?;
    Ok(SavedReport {
        manifest: saved.manifest,
        config: saved.config,
        layers: saved.layers,
        skipped_tag: saved.skipped_tag,
    })
}

/// One image in `images`.
#[derive(Serialize)]
pub struct ImageRow {
    id: String,
    tags: Vec<String>,
    layer: Option<String>,
}

impl Row for ImageRow {
    fn line(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        let tags = if self.tags.is_empty() {
            "<none>".to_string()
        } else {
            self.tags.join(",")
        };
        let layer = self.layer.as_deref().unwrap_or("-");
        writeln!(w, "{}\t{tags}\t{layer}", &self.id)
    }
}

pub fn images(ctx: &Ctx) -> Result<List<ImageRow>> {
    let rows = (ctx.open_read_only()?.images()?.into_iter())
        .map(|i| ImageRow {
            id: i.id_string(),
            tags: i.tags.clone(),
            layer: i.layer.map(|l| l.to_string()),
        })
        .collect();
    Ok(List(rows))
}

/// What `image-prune` removed.
#[derive(Serialize)]
pub struct Pruned {
    images: Vec<String>,
    layers: Vec<String>,
}

impl Report for Pruned {
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        for i in &self.images {
            writeln!(w, "deleted {i}")?;
        }
        writeln!(w, "{} images, {} layers removed", self.images.len(), self.layers.len())
    }
}

pub fn prune(ctx: &Ctx) -> Result<Pruned> {
    let store = ctx.open()?;
    let done = store.prune_images()?;
    store.commit()?;
    Ok(Pruned {
        images: done
            .iter()
            .filter_map(|r| r.deleted)
            .map(|d| lstore::sha256_string(&d))
            .collect(),
        layers: done
            .iter()
            .flat_map(|r| r.layers.iter().map(|l| l.to_string()))
            .collect(),
    })
}
