//! Named volumes: `volume create`, `volume ls`, `volume inspect`, `volume rm`.

use crate::cli::cmd::Ctx;
use crate::cli::output::{emit, to_json, Format, JsonFlag, Line, List, Report, Row};
use clap::Subcommand;
use lstore::{Result, VolumeInfo};
use serde::Serialize;
use std::io::Write;

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create an empty volume; prints its name.
    Create {
        /// Name: a letter or digit, then letters, digits or _.-
        name: String,
    },
    /// List volumes: name, key count.
    Ls {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show a volume as JSON.
    Inspect {
        /// The volume's name.
        name: String,
    },
    /// Remove a volume (refused while a container mounts it).
    Rm {
        /// The volume's name.
        name: String,
    },
}

/// Runs a `volume` command and prints its report.
pub fn run(ctx: &Ctx, cmd: VolumeCmd) -> Result<()> {
    match cmd {
        VolumeCmd::Create { name } => emit(create(ctx, name), Format::Text),
        VolumeCmd::Ls { json } => emit(ls(ctx), json.format()),
        VolumeCmd::Inspect { name } => emit(inspect(ctx, &name), Format::Text),
        VolumeCmd::Rm { name } => emit(rm(ctx, &name), Format::Text),
    }
}

/// A volume as `volume ls --json` and `volume inspect` show it.
#[derive(Serialize)]
pub struct VolumeRow {
    name: String,
    keys: u64,
    created_ns: i64,
}

impl VolumeRow {
    fn new(v: VolumeInfo) -> VolumeRow {
        VolumeRow {
            name: v.name,
            keys: v.keys,
            created_ns: v.created_ns,
        }
    }
}

impl Row for VolumeRow {
    fn line(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        writeln!(w, "{}\t{}", self.name, self.keys)
    }
}

/// `volume inspect` prints one line of JSON with or without `--json`.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Inspect(VolumeRow);

impl Report for Inspect {
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        let v = to_json(self).map_err(std::io::Error::other)?;
        writeln!(w, "{v}")
    }
}

fn create(ctx: &Ctx, name: String) -> Result<Line> {
    let store = ctx.open()?;
    store.create_volume(&name)?;
    store.commit()?;
    Ok(Line(name))
}

fn ls(ctx: &Ctx) -> Result<List<VolumeRow>> {
    let vs = ctx.open_read_only()?.volumes()?;
    Ok(List(vs.into_iter().map(VolumeRow::new).collect()))
}

fn inspect(ctx: &Ctx, name: &str) -> Result<Inspect> {
    Ok(Inspect(VolumeRow::new(ctx.open_read_only()?.volume(name)?)))
}

fn rm(ctx: &Ctx, name: &str) -> Result<()> {
    let store = ctx.open()?;
    store.remove_volume(name)?;
    store.commit()
}
