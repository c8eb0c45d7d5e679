//! The store file as a whole: `init`, `df`, `gc`, `verify`, `salvage`.

use crate::cli::args;
use crate::cli::cmd::Ctx;
use crate::cli::output::{or_dash, JsonFlag, Report};
use clap::Args;
use lstore::{Compression, Error, Options, Result, Store, TreeUsage};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

// `lstore init`.
#[derive(Args)]
pub struct InitArgs {
    /// Default block size of values: a power of two from 4K to 1M.
    ///
    /// Sizes take the units K, M and G (powers of 1024); see SIZES below.
    #[arg(long, value_name = "SIZE", default_value = "64K", value_parser = args::size)]
    block_size: u64,
    /// Size of the segments the file grows by: a power of two from 4M to 1G.
    ///
    /// Sizes take the units K, M and G (powers of 1024); see SIZES below.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = args::size)]
    segment_size: u64,
    /// Default compression of chunks: none, zstd or zstd:LEVEL (LEVEL 1-22; zstd is level 3).
    #[arg(long, value_name = "HOW", default_value = "none", value_parser = args::compression)]
    compression: Compression,
}

pub fn init(ctx: &Ctx, a: InitArgs) -> Result<()> {
    let opts = Options {
        block_size: a.block_size,
        segment_size: a.segment_size,
        compression: a.compression,
    };
    Store::create(ctx.path()?, opts)?;
    Ok(())
}

/// What `df` prints: the store's totals, then one row per layer, container and volume.
#[derive(Serialize)]
pub struct Df {
    file_bytes: u64,
    file_allocated_bytes: u64,
    used_bytes: u64,
    live_bytes: u64,
    garbage_bytes: u64,
    unused_tail_bytes: u64,
    pool_bytes: u64,
    logical_bytes: u64,
    stored_bytes: u64,
    chunks: u64,
    dedup_ratio: f64,
    compression_ratio: f64,
    block_size: u64,
    segment_size: u64,
    generation: u64,
    layers: Vec<TreeRow>,
    containers: Vec<TreeRow>,
    volumes: Vec<TreeRow>,
}

/// The space of one layer, container or volume.
#[derive(Serialize)]
struct TreeRow {
    id: String,
    name: Option<String>,
    logical_bytes: u64,
    referenced_bytes: u64,
    exclusive_bytes: u64,
}

impl TreeRow {
    fn new(id: String, name: Option<String>, u: &TreeUsage) -> TreeRow {
        TreeRow {
            id,
            name,
            logical_bytes: u.logical_bytes,
            referenced_bytes: u.referenced_bytes,
            exclusive_bytes: u.exclusive_bytes,
        }
    }
}

pub fn df(ctx: &Ctx) -> Result<Df> {
    let r = ctx.open_read_only()?.usage()?;
    let s = &r.stats;
    Ok(Df {
        file_bytes: s.file_bytes,
        file_allocated_bytes: r.file_allocated_bytes,
        used_bytes: s.used_bytes,
        live_bytes: r.live_bytes,
        garbage_bytes: r.garbage_bytes,
        unused_tail_bytes: r.unused_tail_bytes,
        pool_bytes: r.pool_bytes,
        logical_bytes: r.logical_bytes,
        stored_bytes: r.stored_bytes,
        chunks: s.chunks,
        dedup_ratio: r.dedup_ratio,
        compression_ratio: r.compression_ratio,
        block_size: s.block_size,
        segment_size: s.segment_size,
        generation: s.generation,
        layers: r
            .layers
            .iter()
            .map(|(l, u)| TreeRow::new(l.id.to_string(), l.name.clone(), u))
            .collect(),
        containers: (r.containers.iter())
            .map(|(c, u)| TreeRow::new(c.id.to_string(), c.name.clone(), u))
            .collect(),
        volumes: (r.volumes.iter())
            .map(|(v, u)| TreeRow::new(v.name.clone(), Some(v.name.clone()), u))
            .collect(),
    })
}

impl Report for Df {
    /// `name<TAB>value` for every total in the JSON's (sorted) order, then the rows.
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        let v = serde_json::to_value(self).map_err(std::io::Error::other)?;
        for (k, val) in v.as_object().into_iter().flatten() {
            if !val.is_array() {
                writeln!(w, "{k}\t{val}")?;
            }
        }
        for (kind, rows) in [
            ("layer", &self.layers),
            ("container", &self.containers),
            ("volume", &self.volumes),
        ] {
            for t in rows {
                writeln!(
                    w,
                    "{kind}\t{}\t{}\tlogical={}\treferenced={}\texclusive={}",
                    t.id,
                    or_dash(&t.name),
                    t.logical_bytes,
                    t.referenced_bytes,
                    t.exclusive_bytes
                )?;
            }
        }
        Ok(())
    }
}

/// What `gc` did.
#[derive(Serialize)]
pub struct Gc {
    live_records: u64,
    live_bytes: u64,
    segments_scanned: u64,
    records_moved: u64,
    bytes_moved: u64,
    segments_freed: u64,
    bytes_freed: u64,
    pool_bytes: u64,
    cut_bytes: u64,
    /// A process reading an older commit (this generation) kept gc from giving it back.
    deferred_for_reader: Option<u64>,
}

pub fn gc(ctx: &Ctx) -> Result<Gc> {
    let r = ctx.open()?.gc()?;
    Ok(Gc {
        live_records: r.live_records,
        live_bytes: r.live_bytes,
        segments_scanned: r.segments_scanned,
        records_moved: r.records_moved,
        bytes_moved: r.bytes_moved,
        segments_freed: r.segments_freed,
        bytes_freed: r.bytes_freed,
        pool_bytes: r.pool_bytes,
        cut_bytes: r.cut_bytes,
        deferred_for_reader: r.deferred_for_reader,
    })
}

impl Report for Gc {
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        writeln!(
            w,
            "scanned {} segments, {} live records ({} bytes); moved {} records ({} bytes); freed {} bytes; {} bytes free for reuse; file cut by {} bytes",
            self.segments_scanned,
            self.live_records,
            self.live_bytes,
            self.records_moved,
            self.bytes_moved,
            self.bytes_freed,
            self.pool_bytes,
            self.cut_bytes
        )?;
        if let Some(g) = self.deferred_for_reader {
            writeln!(
                w,
                "a process reading generation {g} kept gc from giving back what that commit reaches; run gc again once it moves on"
            )?;
        }
        Ok(())
    }
}

// `lstore verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// Also check every chunk's blake3 against its content (reads every stored byte).
    #[arg(long)]
    deep: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

/// What `verify` found; the command fails when it found damage.
#[derive(Serialize)]
pub struct Verify {
    clean: bool,
    deep: bool,
    records_checked: u64,
    chunks_checked: u64,
    bytes_checked: u64,
    problems: Vec<ProblemRow>,
    warnings: Vec<String>,
}

/// One damaged record, and the trees and keys that reach it.
#[derive(Serialize)]
struct ProblemRow {
    what: String,
    affects: Vec<String>,
    keys: Vec<String>,
}

pub fn verify(ctx: &Ctx, a: &VerifyArgs) -> Result<Verify> {
    let store = ctx.open_read_only()?;
    let bar = progress_bar();
    let progress = |done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    };
    let r = store.verify_with_progress(a.deep, &progress)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let problems = (r.problems.iter())
        .map(|p| ProblemRow {
            what: p.what.clone(),
            affects: p.affects.iter().cloned().collect(),
            keys: p.keys.iter().cloned().collect(),
        })
        .collect();
    Ok(Verify {
        clean: r.is_clean(),
        deep: a.deep,
        records_checked: r.records_checked,
        chunks_checked: r.chunks_checked,
        bytes_checked: r.bytes_checked,
        problems,
        warnings: r.warnings,
    })
}

/// A progress bar on stderr when it is a terminal.
fn progress_bar() -> Option<indicatif::ProgressBar> {
    std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("verifying chunks {bar:40} {pos}/{len} {eta}")
                .expect("a valid template"),
        );
        b
    })
}

impl Report for Verify {
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        for warning in &self.warnings {
            writeln!(w, "warning: {warning}")?;
        }
        for p in &self.problems {
            let (affects, keys) = (p.affects.join(", "), p.keys.join(", "));
            writeln!(w, "DAMAGED {} | affects: {affects} | keys: {keys}", p.what)?;
        }
        writeln!(
            w,
            "{}: {} records, {} chunks ({} bytes) checked{}",
            if self.clean { "clean" } else { "damaged" },
            self.records_checked,
            self.chunks_checked,
            self.bytes_checked,
            if self.deep { " with blake3" } else { "" }
        )
    }

    fn verdict(&self) -> Result<()> {
        if self.clean {
            return Ok(());
        }
        Err(Error::Corrupt(format!(
            "verify found {} damaged records",
            self.problems.len()
        )))
    }
}

// `lstore salvage`.
#[derive(Args)]
pub struct SalvageArgs {
    /// The damaged store to read (opened read-only, never changed).
    src: PathBuf,
    /// The new store to write what can be read into (must not exist).
    dst: PathBuf,
}

/// What `salvage` saved and lost; the command fails when it lost anything.
#[derive(Serialize)]
pub struct Salvage {
    saved: Vec<String>,
    lost: Vec<String>,
}

pub fn salvage(a: &SalvageArgs) -> Result<Salvage> {
    let r = lstore::salvage(&a.src, &a.dst)?;
    Ok(Salvage {
        saved: r.saved,
        lost: r.lost,
    })
}

impl Report for Salvage {
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        self.saved.iter().try_for_each(|s| writeln!(w, "saved {s}"))?;
        self.lost.iter().try_for_each(|l| writeln!(w, "LOST {l}"))
    }

    fn verdict(&self) -> Result<()> {
        if self.lost.is_empty() {
            return Ok(());
        }
        Err(Error::Corrupt(format!(
            "salvage could not save {} items",
            self.lost.len()
        )))
    }
}
