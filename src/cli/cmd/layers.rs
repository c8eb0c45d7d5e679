//! Read-only layers: `import`, `layers`, `tag`, `rmi`, `build`.

use crate::cli::cmd::Ctx;
use crate::cli::output::{or_dash, JsonFlag, List, Report, Row};
use clap::Args;
use lstore::{Error, Layerfile, Result};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

// `lstore import`.
#[derive(Args)]
pub struct ImportArgs {
    /// Folder to import: every entry below it (files, folders, symlinks, devices, FIFOs, hard
    /// links) with its mode, owner, mtime and xattrs; sockets kept as names. Or an OCI
    /// layer tar (plain, gzip or zstd; `-` for standard input), applied on the parent with its
    /// whiteouts.
    dir: PathBuf,
    /// Layer to build on (name, id or id prefix). The new layer is exactly DIR: what the
    /// parent has and DIR does not is deleted; what is the same is shared, not stored again.
    #[arg(long, value_name = "LAYER")]
    parent: Option<String>,
    /// Add DIR's entries to the parent's instead (as a COPY into an image): nothing deleted.
    #[arg(long, requires = "parent")]
    add: bool,
    /// Name for the new layer.
    #[arg(long)]
    name: Option<String>,
}

/// What `import` did: the new layer's id on the first line, then what changed and what was
/// skipped.
#[derive(Serialize)]
pub struct ImportReport {
    id: String,
    added: u64,
    changed: u64,
    deleted: u64,
    unchanged: u64,
    skipped: Vec<(String, String)>,
}

impl Report for ImportReport {
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        writeln!(w, "{}", self.id)?;
        if !self.skipped.is_empty() {
            eprintln!(
                "lstore: skipped {} entries that a layer cannot hold:",
                self.skipped.len()
            );
            for (path, why) in &self.skipped {
                eprintln!("lstore: skipped {path}: {why}");
            }
        }
        Ok(())
    }
}

pub fn import(ctx: &Ctx, a: ImportArgs) -> Result<ImportReport> {
    let store = ctx.open()?;
    let parent = a.parent.map(|p| store.layer(&p)).transpose()?;
    let is_tar = a.dir.as_os_str() == "-" || std::fs::metadata(&a.dir).is_ok_and(|m| m.is_file());
    if is_tar {
        if a.add {
            return Err(Error::InvalidArgument(
                "--add is for folders: a layer tar is a changeset, applied as it says".into(),
            ));
        }
        let done = match a.dir.as_os_str() == "-" {
            true => lstore::import_tar(&store, std::io::stdin().lock(), parent.as_ref(), a.name.as_deref())?,
            false => {
                let file = std::fs::File::open(&a.dir).map_err(|e| Error::File {
                    path: a.dir.clone(),
                    source: e,
                })?;
                lstore::import_tar(&store, file, parent.as_ref(), a.name.as_deref())?
            }
        };
        store.commit()?;
        return Ok(ImportReport {
            id: done.layer.id().to_string(),
            added: done.entries,
            changed: 0,
            deleted: done.whiteouts,
            unchanged: 0,
            skipped: Vec::new(),
        });
    }
    let opts = lstore::ImportOptions {
        parent: parent.as_ref(),
        name: a.name.as_deref(),
        add: a.add,
    };
    let done = lstore::import_dir(&store, &a.dir, &opts)?;
    store.commit()?;
    Ok(ImportReport {
        id: done.layer.id().to_string(),
        added: done.added,
        changed: done.changed,
        deleted: done.deleted,
        unchanged: done.unchanged,
        skipped: (done.skipped.into_iter())
            .map(|(p, why)| (lstore::escape_path(p.as_os_str().as_encoded_bytes()), why))
            .collect(),
    })
}

/// One layer in `layers`.
#[derive(Serialize)]
pub struct LayerRow {
    id: String,
    name: Option<String>,
    parent: Option<String>,
    keys: u64,
}

impl Row for LayerRow {
    fn line(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        let parent = self.parent.as_deref().unwrap_or("-");
        writeln!(w, "{}\t{}\t{parent}\t{}", self.id, or_dash(&self.name), self.keys)
    }
}

pub fn layers(ctx: &Ctx) -> Result<List<LayerRow>> {
    let rows = (ctx.open_read_only()?.layers()?.into_iter())
        .map(|l| LayerRow {
            id: l.id.to_string(),
            name: l.name,
            parent: l.parent.map(|p| p.to_string()),
            keys: l.keys,
        })
        .collect();
    Ok(List(rows))
}

// `lstore tag`.
#[derive(Args)]
pub struct TagArgs {
    /// The image (tag or sha256: id) to tag, or the layer (name, id or id prefix) to name.
    layer: String,
    /// The new tag (REPO[:TAG]) or name; an image or layer that had it loses it.
    name: String,
}

pub fn tag(ctx: &Ctx, a: TagArgs) -> Result<()> {
    let store = ctx.open()?;
    match store.image(&a.layer) {
        Ok(_) => drop(store.tag_image(&a.layer, &a.name)?),
        Err(Error::UnknownRef(_)) => store.tag(&a.layer, &a.name)?,
        Err(e) => return Err(e),
    }
    store.commit()
}

// `lstore rmi`.
#[derive(Args)]
pub struct RmiArgs {
    /// The image (tag or sha256: id) or layer (name, id or id prefix) to remove.
    layer: String,
}

/// What `rmi` did, as docker rmi prints it.
#[derive(Serialize)]
pub struct Removed {
    untagged: Vec<String>,
    deleted: Vec<String>,
}

impl Report for Removed {
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        for t in &self.untagged {
            writeln!(w, "Untagged: {t}")?;
        }
        for d in &self.deleted {
            writeln!(w, "Deleted: {d}")?;
        }
        Ok(())
    }
}

pub fn rmi(ctx: &Ctx, a: RmiArgs) -> Result<Removed> {
    let store = ctx.open()?;
    let out = match store.image(&a.layer) {
        Ok(_) => {
            let r = store.remove_image(&a.layer)?;
            let deleted = r.deleted.map(|d| lstore::sha256_string(&d));
            Removed {
                untagged: r.untagged,
                deleted: deleted
                    .into_iter()
                    .chain(r.layers.iter().map(|l| l.to_string()))
                    .collect(),
            }
        }
        Err(Error::UnknownRef(_)) => {
            let id = store.layer(&a.layer)?.id();
            store.remove_layer(&id.to_string())?;
            Removed {
                untagged: Vec::new(),
                deleted: vec![id.to_string()],
            }
        }
        Err(e) => return Err(e),
    };
    store.commit()?;
    Ok(out)
}

// `lstore build`.
#[derive(Args)]
pub struct BuildArgs {
    /// The Layerfile; COPY sources are relative to its folder.
    file: PathBuf,
    /// Name for the final layer.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    pub json: JsonFlag,
}

/// What `build` did: each step, built or cached, and the final layer.
#[derive(Serialize)]
pub struct Build {
    steps: Vec<StepRow>,
    layer: String,
}

#[derive(Serialize)]
struct StepRow {
    instruction: String,
    cached: bool,
    layer: String,
}

pub fn build(ctx: &Ctx, a: &BuildArgs) -> Result<Build> {
    let lf = Layerfile::parse_file(&a.file)?;
    let store = ctx.open()?;
    let (last, steps) = lf.build(&store)?;
    let last = last
        .ok_or_else(|| Error::InvalidArgument(format!("{}: nothing to build after FROM scratch", a.file.display())))?;
    if let Some(n) = &a.name {
        store.tag(&last.id().to_string(), n)?;
    }
    store.commit()?;
    let steps = (steps.into_iter())
        .map(|s| StepRow {
            instruction: s.instruction,
            cached: s.cached,
            layer: s.layer.id().to_string(),
        })
        .collect();
    Ok(Build {
        steps,
        layer: last.id().to_string(),
    })
}

impl Report for Build {
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        let n = self.steps.len();
        for (i, s) in self.steps.iter().enumerate() {
            let how = if s.cached { "cached" } else { "built" };
            writeln!(w, "step {}/{n}: {} -> {how} {}", i + 1, s.instruction, s.layer)?;
        }
        writeln!(w, "{}", self.layer)
    }
}
