//! Command-line parsing and output. Every failure becomes one line on stderr and a
//! non-zero exit; nothing here panics on user input.

use clap::{Parser, Subcommand};
use lstore::{Container, Error, Layer, Options, PutOptions, Result, Store, Target, ValueInfo};
use serde_json::json;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "lstore",
    version,
    about = "Layer store with block-level copy-on-write (debug CLI)"
)]
struct Cli {
    /// Store file (or set LSTORE_PATH).
    #[arg(short, long, global = true, env = "LSTORE_PATH")]
    store: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a new store file.
    Init {
        #[arg(long, default_value = "64K")]
        block_size: String,
        #[arg(long, default_value = "64M")]
        segment_size: String,
        /// none, zstd or zstd:LEVEL
        #[arg(long, default_value = "none")]
        compression: String,
    },
    /// Import every regular file under DIR as a new read-only layer; prints its id.
    Import {
        dir: PathBuf,
        #[arg(long)]
        parent: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// List layers: id, name, parent, key count.
    Layers {
        #[arg(long)]
        json: bool,
    },
    /// List containers: id, name, image, key count.
    Containers {
        #[arg(long)]
        json: bool,
    },
    /// Create a container on a layer; prints its id.
    Create {
        image: String,
        #[arg(long)]
        name: Option<String>,
        /// NAME:/TARGET[:ro] (volume) or /HOST/DIR:/TARGET[:ro] (bind mount)
        #[arg(short = 'v', long = "volume")]
        volumes: Vec<String>,
        /// type=volume|bind,source=S,target=T[,readonly][,volume-nocopy]
        #[arg(long = "mount")]
        mounts: Vec<String>,
    },
    /// Show a container: image, keys, mounts.
    Inspect {
        container: String,
        #[arg(long)]
        json: bool,
    },
    /// Build a Layerfile through the build cache; prints each step and the final layer id.
    Build {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Name a layer (the name moves if another layer had it).
    Tag { layer: String, name: String },
    /// Remove a layer (refused while a container or a child layer uses it).
    Rmi { layer: String },
    /// Named volumes.
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Store a value from FILE or standard input.
    Put {
        target: String,
        key: String,
        file: Option<PathBuf>,
    },
    /// Print a value's bytes.
    Get { target: String, key: String },
    /// Delete a key.
    Del { target: String, key: String },
    /// List keys with their sizes.
    Ls {
        target: String,
        prefix: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write FILE or standard input into a value at an offset.
    Write {
        target: String,
        key: String,
        #[arg(long)]
        offset: u64,
        file: Option<PathBuf>,
    },
    /// Print part of a value.
    Read {
        target: String,
        key: String,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long)]
        length: Option<u64>,
    },
    /// Turn a container's state into a new layer; prints its id.
    Commit {
        container: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove a container.
    Rm { container: String },
    /// Where the space goes: totals, and per layer, container and volume.
    Df {
        #[arg(long)]
        json: bool,
    },
    /// Give the space of removed layers, containers and volumes back to the file system.
    Gc {
        #[arg(long)]
        json: bool,
    },
    /// Check the store: superblocks, every record's crc, tree invariants; --deep adds every
    /// chunk's blake3. Exit 0 only when clean.
    Verify {
        #[arg(long)]
        deep: bool,
        #[arg(long)]
        json: bool,
    },
    /// Copy what can be read of a damaged store SRC into a new store DST.
    Salvage { src: PathBuf, dst: PathBuf },
    /// Tell Docker's storage story on a fresh store, with real numbers.
    Demo,
    /// Test workload for the kill test: put key `kN` and commit durably, N = 0, 1, ...,
    /// printing N after each commit returns.
    #[command(hide = true)]
    Torture {
        #[arg(long)]
        commits: u64,
    },
}

#[derive(Subcommand)]
enum VolumeCmd {
    /// Create an empty volume.
    Create { name: String },
    /// List volumes: name, key count.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show a volume as JSON.
    Inspect { name: String },
    /// Remove a volume (refused while a container mounts it).
    Rm { name: String },
}

fn mounts_json(mounts: &[lstore::Mount]) -> serde_json::Value {
    mounts
        .iter()
        .map(|m| {
            let (kind, source) = match &m.source {
                lstore::MountSource::Volume(v) => ("volume", v.clone()),
                lstore::MountSource::Bind(p) => ("bind", p.display().to_string()),
            };
            json!({"type": kind, "source": source, "target": format!("/{}", m.target), "readonly": m.readonly})
        })
        .collect()
}

fn container_json(c: &lstore::ContainerInfo) -> serde_json::Value {
    json!({"id": c.id.to_string(), "name": c.name, "image": c.image.to_string(), "keys": c.keys, "mounts": mounts_json(&c.mounts)})
}

fn volume_json(v: &lstore::VolumeInfo) -> serde_json::Value {
    json!({"name": v.name, "keys": v.keys, "created_ns": v.created_ns})
}

pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return e.exit_code();
            }
            // One line on stderr, as for every other error; `--help` has the rest.
            let text = e.render().to_string();
            let what: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("lstore: {} (see --help)", what.join(" ").trim_start_matches("error: "));
            return 2;
        }
    };
    match dispatch(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lstore: {}", one_line(&e.to_string()));
            1
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses sizes like `4096`, `4K`, `64KiB`, `1M`, `1MiB`, `2G`.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || Error::InvalidArgument(format!("size '{s}': use a number with K, M or G (e.g. 64K)"));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

fn store_path(p: &Option<PathBuf>) -> Result<&Path> {
    p.as_deref()
        .ok_or_else(|| Error::InvalidArgument("no store given: pass --store PATH or set LSTORE_PATH".into()))
}

/// Keys on the command line may start with `/`, as paths do.
fn key_arg(k: &str) -> Result<&str> {
    let k = k.strip_prefix('/').unwrap_or(k);
    lstore::value::check_key(k.as_bytes())?;
    Ok(k)
}

fn input(file: &Option<PathBuf>) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    match file.as_deref() {
        None => {
            std::io::stdin().read_to_end(&mut data)?;
        }
        Some(p) if p == Path::new("-") => {
            std::io::stdin().read_to_end(&mut data)?;
        }
        Some(p) => {
            data = std::fs::read(p).map_err(|e| Error::InvalidArgument(format!("{}: {e}", p.display())))?;
        }
    }
    Ok(data)
}

/// Writes to stdout; a closed pipe (e.g. `| head`) ends quietly.
fn out(bytes: &[u8]) -> Result<()> {
    let mut o = std::io::stdout().lock();
    match o.write_all(bytes).and_then(|_| o.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

fn println(s: impl std::fmt::Display) -> Result<()> {
    out(format!("{s}\n").as_bytes())
}

enum View {
    Layer(Layer),
    Container(Container),
}

impl View {
    fn of(store: &Store, r: &str) -> Result<View> {
        Ok(match store.resolve(r)? {
            Target::Layer(id) => View::Layer(store.layer_by_id(id)?),
            Target::Container(_) => View::Container(store.container(r)?),
        })
    }
    fn stat(&self, key: &str) -> Result<Option<ValueInfo>> {
        match self {
            View::Layer(l) => l.stat(key),
            View::Container(c) => c.stat(key),
        }
    }
    fn read_at(&self, key: &str, off: u64, buf: &mut [u8]) -> Result<usize> {
        match self {
            View::Layer(l) => l.read_at(key, off, buf),
            View::Container(c) => c.read_at(key, off, buf),
        }
    }
    fn list(&self, prefix: &str) -> Result<Vec<ValueInfo>> {
        match self {
            View::Layer(l) => l.list(prefix)?.collect(),
            View::Container(c) => Ok(c.list(prefix)?.collect()),
        }
    }
}

fn writable(store: &Store, r: &str) -> Result<Container> {
    store.container(r)
}

/// Streams a value (or part of it) to stdout in bounded pieces.
fn copy_out(v: &View, key: &str, offset: u64, length: Option<u64>) -> Result<()> {
    let info = v.stat(key)?.ok_or_else(|| Error::KeyNotFound(key.into()))?;
    let end = match length {
        Some(l) => offset
            .checked_add(l)
            .ok_or_else(|| Error::OutOfRange(format!("offset {offset} + length {l}")))?,
        None => info.size,
    }
    .min(info.size);
    let mut pos = offset;
    let mut buf = vec![0u8; 1 << 20];
    while pos < end {
        let want = ((end - pos) as usize).min(buf.len());
        let n = v.read_at(key, pos, &mut buf[..want])?;
        if n == 0 {
            break;
        }
        out(&buf[..n])?;
        pos += n as u64;
    }
    Ok(())
}

fn dispatch(cli: Cli) -> Result<()> {
    let path = &cli.store;
    match cli.cmd {
        Cmd::Init {
            block_size,
            segment_size,
            compression,
        } => {
            let opts = Options {
                block_size: parse_size(&block_size)?,
                segment_size: parse_size(&segment_size)?,
                compression: compression.parse()?,
            };
            Store::create(store_path(path)?, opts)?;
            Ok(())
        }
        Cmd::Import { dir, parent, name } => {
            let store = Store::open(store_path(path)?)?;
            let parent = parent.map(|p| store.layer(&p)).transpose()?;
            let layer = import_dir(&store, &dir, parent.as_ref(), name.as_deref())?;
            store.commit()?;
            println(layer.id())
        }
        Cmd::Layers { json } => {
            let store = Store::open_read_only(store_path(path)?)?;
            let layers = store.layers()?;
            if json {
                let v: Vec<_> = layers
                    .iter()
                    .map(|l| json!({"id": l.id.to_string(), "name": l.name, "parent": l.parent.map(|p| p.to_string()), "keys": l.keys}))
                    .collect();
                return println(serde_json::Value::from(v));
            }
            for l in layers {
                let parent = l.parent.map_or("-".to_string(), |p| p.to_string());
                println(format!(
                    "{}\t{}\t{}\t{}",
                    l.id,
                    l.name.as_deref().unwrap_or("-"),
                    parent,
                    l.keys
                ))?;
            }
            Ok(())
        }
        Cmd::Containers { json } => {
            let store = Store::open_read_only(store_path(path)?)?;
            let cs = store.containers()?;
            if json {
                let v: Vec<_> = cs.iter().map(container_json).collect();
                return println(serde_json::Value::from(v));
            }
            for c in cs {
                println(format!(
                    "{}\t{}\t{}\t{}",
                    c.id,
                    c.name.as_deref().unwrap_or("-"),
                    c.image,
                    c.keys
                ))?;
            }
            Ok(())
        }
        Cmd::Create {
            image,
            name,
            volumes,
            mounts,
        } => {
            let mut specs = Vec::new();
            for v in &volumes {
                specs.push(lstore::Mount::parse_volume_flag(v)?);
            }
            for m in &mounts {
                specs.push(lstore::Mount::parse_mount_flag(m)?);
            }
            let store = Store::open(store_path(path)?)?;
            let layer = store.layer(&image)?;
            let c = store.create_container_with(&layer, name.as_deref(), &specs)?;
            store.commit()?;
            println(c.id())
        }
        Cmd::Inspect { container, json } => {
            let store = Store::open_read_only(store_path(path)?)?;
            let info = store.container(&container)?.info()?;
            let v = container_json(&info);
            if json {
                return println(v);
            }
            println(serde_json::to_string_pretty(&v).map_err(|e| Error::InvalidArgument(e.to_string()))?)
        }
        Cmd::Build { file, name, json } => {
            let lf = lstore::layerfile::Layerfile::parse_file(&file)?;
            let store = Store::open(store_path(path)?)?;
            let (last, steps) = lf.build(&store)?;
            let last = last.ok_or_else(|| {
                Error::InvalidArgument(format!("{}: nothing to build after FROM scratch", file.display()))
            })?;
            if let Some(n) = &name {
                store.tag(&last.id().to_string(), n)?;
            }
            store.commit()?;
            if json {
                let s: Vec<_> = steps
                    .iter()
                    .map(|s| json!({"instruction": s.instruction, "cached": s.cached, "layer": s.layer.id().to_string()}))
                    .collect();
                return println(json!({"steps": s, "layer": last.id().to_string()}));
            }
            for (i, s) in steps.iter().enumerate() {
                let how = if s.cached { "cached" } else { "built" };
                println(format!(
                    "step {}/{}: {} -> {how} {}",
                    i + 1,
                    steps.len(),
                    s.instruction,
                    s.layer.id()
                ))?;
            }
            println(last.id())
        }
        Cmd::Tag { layer, name } => {
            let store = Store::open(store_path(path)?)?;
            store.tag(&layer, &name)?;
            store.commit()
        }
        Cmd::Rmi { layer } => {
            let store = Store::open(store_path(path)?)?;
            store.remove_layer(&layer)?;
            store.commit()
        }
        Cmd::Volume(VolumeCmd::Create { name }) => {
            let store = Store::open(store_path(path)?)?;
            store.create_volume(&name)?;
            store.commit()?;
            println(name)
        }
        Cmd::Volume(VolumeCmd::Ls { json }) => {
            let store = Store::open_read_only(store_path(path)?)?;
            let vs = store.volumes()?;
            if json {
                return println(serde_json::Value::from(vs.iter().map(volume_json).collect::<Vec<_>>()));
            }
            for v in vs {
                println(format!("{}\t{}", v.name, v.keys))?;
            }
            Ok(())
        }
        Cmd::Volume(VolumeCmd::Inspect { name }) => {
            let store = Store::open_read_only(store_path(path)?)?;
            println(volume_json(&store.volume(&name)?))
        }
        Cmd::Volume(VolumeCmd::Rm { name }) => {
            let store = Store::open(store_path(path)?)?;
            store.remove_volume(&name)?;
            store.commit()
        }
        Cmd::Put { target, key, file } => {
            let store = Store::open(store_path(path)?)?;
            let c = writable(&store, &target)?;
            let data = input(&file)?;
            c.put(key_arg(&key)?, &data)?;
            store.commit()
        }
        Cmd::Get { target, key } => {
            let store = Store::open_read_only(store_path(path)?)?;
            copy_out(&View::of(&store, &target)?, key_arg(&key)?, 0, None)
        }
        Cmd::Del { target, key } => {
            let store = Store::open(store_path(path)?)?;
            let c = writable(&store, &target)?;
            let key = key_arg(&key)?;
            if !c.delete(key)? {
                return Err(Error::KeyNotFound(key.into()));
            }
            store.commit()
        }
        Cmd::Ls { target, prefix, json } => {
            let store = Store::open_read_only(store_path(path)?)?;
            let v = View::of(&store, &target)?;
            let items = match prefix
                .as_deref()
                .map(|p| p.trim_start_matches('/'))
                .filter(|p| !p.is_empty())
            {
                None => v.list("")?,
                Some(p) => {
                    // A path prefix names that key and the keys below it, not `p*`.
                    let dir = if p.ends_with('/') {
                        p.to_string()
                    } else {
                        format!("{p}/")
                    };
                    let mut items: Vec<ValueInfo> = v.stat(p)?.into_iter().collect();
                    items.extend(v.list(&dir)?);
                    items
                }
            };
            if json {
                let v: Vec<_> = items
                    .iter()
                    .map(|i| json!({"key": String::from_utf8_lossy(&i.key), "size": i.size}))
                    .collect();
                return println(serde_json::Value::from(v));
            }
            let mut text = String::new();
            for i in items {
                text.push_str(&format!("{}\t{}\n", String::from_utf8_lossy(&i.key), i.size));
            }
            out(text.as_bytes())
        }
        Cmd::Write {
            target,
            key,
            offset,
            file,
        } => {
            let store = Store::open(store_path(path)?)?;
            let c = writable(&store, &target)?;
            let data = input(&file)?;
            c.write_at(key_arg(&key)?, offset, &data)?;
            store.commit()
        }
        Cmd::Read {
            target,
            key,
            offset,
            length,
        } => {
            let store = Store::open_read_only(store_path(path)?)?;
            copy_out(&View::of(&store, &target)?, key_arg(&key)?, offset, length)
        }
        Cmd::Commit { container, name } => {
            let store = Store::open(store_path(path)?)?;
            let layer = writable(&store, &container)?.commit(name.as_deref())?;
            store.commit()?;
            println(layer.id())
        }
        Cmd::Rm { container } => {
            let store = Store::open(store_path(path)?)?;
            store.remove_container(&container)?;
            store.commit()
        }
        Cmd::Df { json } => {
            let store = Store::open_read_only(store_path(path)?)?;
            let r = store.usage()?;
            let s = &r.stats;
            let tree = |id: String, name: &Option<String>, u: &lstore::TreeUsage| {
                json!({"id": id, "name": name, "logical_bytes": u.logical_bytes,
                       "referenced_bytes": u.referenced_bytes, "exclusive_bytes": u.exclusive_bytes})
            };
            let v = json!({
                "file_bytes": s.file_bytes, "file_allocated_bytes": r.file_allocated_bytes,
                "used_bytes": s.used_bytes, "live_bytes": r.live_bytes, "garbage_bytes": r.garbage_bytes,
                "logical_bytes": r.logical_bytes, "stored_bytes": r.stored_bytes, "chunks": s.chunks,
                "dedup_ratio": r.dedup_ratio, "compression_ratio": r.compression_ratio,
                "block_size": s.block_size, "segment_size": s.segment_size, "generation": s.generation,
                "layers": r.layers.iter().map(|(l, u)| tree(l.id.to_string(), &l.name, u)).collect::<Vec<_>>(),
                "containers": r.containers.iter().map(|(c, u)| tree(c.id.to_string(), &c.name, u)).collect::<Vec<_>>(),
                "volumes": r.volumes.iter().map(|(v, u)| tree(v.name.clone(), &Some(v.name.clone()), u)).collect::<Vec<_>>(),
            });
            if json {
                return println(v);
            }
            let mut text = String::new();
            for (k, val) in v.as_object().expect("built as an object") {
                if !val.is_array() {
                    text.push_str(&format!("{k}\t{val}\n"));
                }
            }
            for kind in ["layers", "containers", "volumes"] {
                for t in v[kind].as_array().expect("built as an array") {
                    text.push_str(&format!(
                        "{}\t{}\t{}\tlogical={}\treferenced={}\texclusive={}\n",
                        kind.trim_end_matches('s'),
                        t["id"].as_str().unwrap_or("-"),
                        t["name"].as_str().unwrap_or("-"),
                        t["logical_bytes"],
                        t["referenced_bytes"],
                        t["exclusive_bytes"]
                    ));
                }
            }
            out(text.as_bytes())
        }
        Cmd::Gc { json } => {
            let store = Store::open(store_path(path)?)?;
            let r = store.gc()?;
            let v = json!({
                "live_records": r.live_records, "live_bytes": r.live_bytes,
                "segments_scanned": r.segments_scanned, "records_moved": r.records_moved,
                "bytes_moved": r.bytes_moved, "segments_freed": r.segments_freed, "bytes_freed": r.bytes_freed,
            });
            if json {
                return println(v);
            }
            println(format!(
                "scanned {} segments, {} live records ({} bytes); moved {} records ({} bytes); freed {} bytes",
                r.segments_scanned, r.live_records, r.live_bytes, r.records_moved, r.bytes_moved, r.bytes_freed
            ))
        }
        Cmd::Verify { deep, json } => {
            let store = Store::open_read_only(store_path(path)?)?;
            let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
                let b = indicatif::ProgressBar::new(0);
                b.set_style(
                    indicatif::ProgressStyle::with_template("verifying chunks {bar:40} {pos}/{len} {eta}")
                        .expect("a valid template"),
                );
                b
            });
            let progress = |done: u64, total: u64| {
                if let Some(b) = &bar {
                    b.set_length(total);
                    b.set_position(done);
                }
            };
            let r = store.verify_with_progress(deep, &progress)?;
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            let problems: Vec<_> = r
                .problems
                .iter()
                .map(|p| json!({"what": p.what, "affects": p.affects, "keys": p.keys}))
                .collect();
            if json {
                println(json!({
                    "clean": r.is_clean(), "deep": deep, "records_checked": r.records_checked,
                    "chunks_checked": r.chunks_checked, "bytes_checked": r.bytes_checked,
                    "problems": problems, "warnings": r.warnings,
                }))?;
            } else {
                for w in &r.warnings {
                    println(format!("warning: {w}"))?;
                }
                for p in &r.problems {
                    let affects: Vec<&str> = p.affects.iter().map(String::as_str).collect();
                    let keys: Vec<&str> = p.keys.iter().map(String::as_str).collect();
                    println(format!(
                        "DAMAGED {} | affects: {} | keys: {}",
                        p.what,
                        affects.join(", "),
                        keys.join(", ")
                    ))?;
                }
                println(format!(
                    "{}: {} records, {} chunks ({} bytes) checked{}",
                    if r.is_clean() { "clean" } else { "damaged" },
                    r.records_checked,
                    r.chunks_checked,
                    r.bytes_checked,
                    if deep { " with blake3" } else { "" }
                ))?;
            }
            if r.is_clean() {
                Ok(())
            } else {
                Err(Error::Corrupt(format!(
                    "verify found {} damaged records",
                    r.problems.len()
                )))
            }
        }
        Cmd::Salvage { src, dst } => {
            let r = lstore::salvage::salvage(&src, &dst)?;
            for s in &r.saved {
                println(format!("saved {s}"))?;
            }
            for l in &r.lost {
                println(format!("LOST {l}"))?;
            }
            if r.lost.is_empty() {
                Ok(())
            } else {
                Err(Error::Corrupt(format!("salvage could not save {} items", r.lost.len())))
            }
        }
        Cmd::Demo => crate::demo::run(cli.store.as_deref()),
        Cmd::Torture { commits } => {
            let store = Store::open(store_path(path)?)?;
            let image = store.new_layer(None)?.finish(None)?;
            let c = store.create_container(&image, Some("torture"))?;
            store.commit()?;
            for i in 0..commits {
                c.put(
                    format!("k{i}"),
                    format!("value {i}").repeat(1 + (i as usize % 50)).as_bytes(),
                )?;
                store.commit()?;
                println(i + 1)?;
            }
            Ok(())
        }
    }
}

/// Imports the regular files under `dir` as one new layer (keys are `/`-separated paths).
pub fn import_dir(store: &Store, dir: &Path, parent: Option<&Layer>, name: Option<&str>) -> Result<Layer> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::InvalidArgument(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Error::InvalidArgument(format!("{} is not a directory", dir.display())));
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let mut b = store.new_layer(parent)?;
    for (key, path) in files {
        let file = std::fs::File::open(&path)?;
        let md = file.metadata()?;
        let attrs = lstore::Attrs {
            mode: std::os::unix::fs::PermissionsExt::mode(&md.permissions()),
            mtime_ns: md
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i64),
            ..Default::default()
        };
        let opts = PutOptions {
            attrs: Some(attrs),
            ..Default::default()
        };
        if md.len() > 1 << 20 {
            // SAFETY: a read-only map of a file we only read; a concurrent writer could change
            // what we store, never our memory safety beyond what any reader of a changing file sees.
            let map = unsafe { memmap2::Mmap::map(&file)? };
            b.put_with(&key, &map, &opts)?;
        } else {
            b.put_with(&key, &std::fs::read(&path)?, &opts)?;
        }
    }
    b.finish(name)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let path = entry.path();
        if ft.is_dir() {
            walk(root, &path, out)?;
        } else if ft.is_file() {
            let rel = path.strip_prefix(root).expect("walked from root");
            let key: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push((key.join("/"), path));
        }
    }
    Ok(())
}
