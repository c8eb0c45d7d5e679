//! Writable containers: `create`, `containers`, `inspect`, `commit`, `rm`.

use crate::cli::args;
use crate::cli::cmd::Ctx;
use crate::cli::output::{or_dash, to_json, JsonFlag, Line, List, Report, Row};
use clap::Args;
use lstore::{ContainerInfo, Mount, MountSource, Result};
use serde::Serialize;
use std::io::Write;

// `lstore create`.
#[derive(Args)]
pub struct CreateArgs {
    /// The layer to start from (name, id or id prefix); nothing is copied.
    image: String,
    /// Name for the container.
    #[arg(long)]
    name: Option<String>,
    /// Mount NAME:/TARGET[:ro] (a volume) or /HOST/DIR:/TARGET[:ro] (a folder), as docker -v.
    ///
    /// A named volume that does not exist is created; an empty one starts with the image's
    /// keys under TARGET. A bind mount reads and writes the host folder's files. Repeatable.
    #[arg(short = 'v', long = "volume", value_name = "SPEC", value_parser = args::volume)]
    volumes: Vec<Mount>,
    /// Mount type=volume|bind,source=S,target=T[,readonly][,volume-nocopy], as docker --mount.
    ///
    /// volume-nocopy leaves a new volume empty instead of filling it from the image.
    /// Repeatable.
    #[arg(long = "mount", value_name = "SPEC", value_parser = args::mount)]
    mounts: Vec<Mount>,
}

pub fn create(ctx: &Ctx, a: CreateArgs) -> Result<Line> {
    let specs: Vec<Mount> = a.volumes.into_iter().chain(a.mounts).collect();
    let store = ctx.open()?;
    let layer = store.layer(&a.image)?;
    let c = store.create_container_with(&layer, a.name.as_deref(), &specs)?;
    store.commit()?;
    Ok(Line::of(c.id()))
}

/// A container as `containers` and `inspect` show it.
#[derive(Serialize)]
pub struct ContainerRow {
    id: String,
    name: Option<String>,
    image: String,
    keys: u64,
    mounts: Vec<MountRow>,
}

/// One mount of a container.
#[derive(Serialize)]
struct MountRow {
    #[serde(rename = "type")]
    kind: &'static str,
    source: String,
    target: String,
    readonly: bool,
}

impl ContainerRow {
    fn new(c: ContainerInfo) -> ContainerRow {
        let mounts = c.mounts.iter().map(MountRow::new).collect();
        ContainerRow {
            id: c.id.to_string(),
            name: c.name,
            image: c.image.to_string(),
            keys: c.keys,
            mounts,
        }
    }
}

impl MountRow {
    fn new(m: &Mount) -> MountRow {
        let (kind, source) = match &m.source {
            MountSource::Volume(v) => ("volume", v.clone()),
            // A host path, shown for people and JSON; it is never turned into a key.
            MountSource::Bind(p) => ("bind", p.display().to_string()),
        };
        MountRow {
            kind,
            source,
            target: format!("/{}", m.target),
            readonly: m.readonly,
        }
    }
}

impl Row for ContainerRow {
    fn line(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        writeln!(w, "{}\t{}\t{}\t{}", self.id, or_dash(&self.name), self.image, self.keys)
    }
}

pub fn containers(ctx: &Ctx) -> Result<List<ContainerRow>> {
    let cs = ctx.open_read_only()?.containers()?;
    Ok(List(cs.into_iter().map(ContainerRow::new).collect()))
}

// `lstore inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// The container (name, id or id prefix).
    container: String,
    #[command(flatten)]
    pub json: JsonFlag,
}

/// `inspect` shows a container as indented JSON, or as one line with `--json`.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Inspect(ContainerRow);

impl Report for Inspect {
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        let v = to_json(self).map_err(std::io::Error::other)?;
        serde_json::to_writer_pretty(&mut *w, &v)?;
        writeln!(w)
    }
}

pub fn inspect(ctx: &Ctx, a: &InspectArgs) -> Result<Inspect> {
    let info = ctx.open_read_only()?.container(&a.container)?.info()?;
    Ok(Inspect(ContainerRow::new(info)))
}

// `lstore commit`.
#[derive(Args)]
pub struct CommitArgs {
    /// The container (name, id or id prefix); it keeps running on its own state.
    container: String,
    /// Name for the new layer.
    #[arg(long)]
    name: Option<String>,
}

pub fn commit(ctx: &Ctx, a: CommitArgs) -> Result<Line> {
    let store = ctx.open()?;
    let layer = store.container(&a.container)?.commit(a.name.as_deref())?;
    store.commit()?;
    Ok(Line::of(layer.id()))
}

// `lstore rm`.
#[derive(Args)]
pub struct RmArgs {
    /// The container (name, id or id prefix); its volumes stay.
    container: String,
}

pub fn rm(ctx: &Ctx, a: RmArgs) -> Result<()> {
    let store = ctx.open()?;
    let c = store.container(&a.container)?;
    // What a killed run of it left (a run going on is left alone, and makes rm Busy).
    lstore::sweep_runs(&c);
    store.remove_container(&a.container)?;
    store.commit()
}
