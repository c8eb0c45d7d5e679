//! Command-line parsing and error rendering. Commands live in `cmd/` (one small function
//! each), value parsers in `args`, printing in `output`. Every failure becomes one line on
//! stderr: exit 2 for usage errors (as clap), 1 for the rest; nothing here panics on user input.

mod args;
mod cmd;
mod demo;
mod help;
mod output;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use cmd::{containers, files, images, layers, mount, run, store, values, volume, Ctx};
use lstore::Error;
use output::{emit, Format, JsonFlag};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "lstore",
    version,
    about = "Layer store with block-level copy-on-write (debug CLI)",
    after_help = help::TOPICS
)]
struct Cli {
    /// Store file (or set LSTORE_PATH).
    #[arg(short, long, global = true, env = "LSTORE_PATH")]
    store: Option<PathBuf>,
    /// Seconds a command that writes waits for another process writing the same container or
    /// volume (gc: any other writer), then fails as busy. Commands that only read never wait.
    #[arg(long, global = true, env = "LSTORE_WAIT", default_value_t = 10.0, value_parser = args::seconds)]
    wait: f64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a new store file.
    #[command(after_long_help = help::SIZES)]
    Init(store::InitArgs),
    /// Import a folder as a new read-only layer, every kind and attribute kept; prints its id.
    Import(layers::ImportArgs),
    /// Write a layer or container into a folder with every kind and attribute.
    Export(files::ExportArgs),
    /// Write the changes from --parent (or all) to a layer or container as an OCI layer tar,
    /// with whiteouts; the same trees always give the same bytes.
    #[command(name = "export-tar")]
    ExportTar(files::ExportTarArgs),
    /// Show one path's kind and attributes.
    Stat(files::StatArgs),
    /// What changed between two layers or containers, or a container and its image, as
    /// docker diff prints it (A added, C changed, D deleted).
    Diff(files::DiffArgs),
    /// Make a folder in a container.
    Mkdir(files::MkdirArgs),
    /// Make a symlink in a container.
    Symlink(files::SymlinkArgs),
    /// Give a file of a container another name (a hard link).
    Link(files::TwoPathArgs),
    /// Rename a file or folder of a container.
    Mv(files::TwoPathArgs),
    /// Change permission bits of a path in a container.
    Chmod(files::ChmodArgs),
    /// Change the owner of a path in a container.
    Chown(files::ChownArgs),
    /// Set the mtime of a path in a container.
    Touch(files::TouchArgs),
    /// Set or remove an extended attribute of a path in a container.
    Setxattr(files::SetxattrArgs),
    /// List layers: id, name, parent, key count.
    Layers(JsonFlag),
    /// List containers: id, name, image, key count.
    Containers(JsonFlag),
    /// Create a container on a layer; prints its id.
    Create(containers::CreateArgs),
    /// Show a container: image, keys, mounts.
    Inspect(containers::InspectArgs),
    /// Build a Layerfile through the build cache; prints each step and the final layer id.
    #[command(after_long_help = help::LAYERFILE)]
    Build(layers::BuildArgs),
    /// Tag an image, or name a layer (a tag or name moves if another had it).
    Tag(layers::TagArgs),
    /// Untag an image (its last tag removes it, with the layers nothing else uses), or
    /// remove a layer (refused while a container, a child layer or an image uses it).
    Rmi(layers::RmiArgs),
    /// Load the images of an OCI layout (folder or tar) or a docker save tar, checking every
    /// digest; layers already stored are reused.
    Load(images::LoadArgs),
    /// Save an image (or a layer's chain) as an OCI image layout that skopeo and umoci read.
    Save(images::SaveArgs),
    /// Mount a layer, image (read-only) or container (read-write) as a file system (FUSE);
    /// unmount with `lstore umount`, which waits for the final commit.
    Mount(mount::MountArgs),
    /// Run a program in a new container on an image, through FUSE and an OCI runtime (runc or
    /// crun; root only); its exit code is this command's. The container stays unless --rm.
    Run(run::RunArgs),
    /// Run a program again in an existing container (its image's command unless one is given).
    Start(run::StartArgs),
    /// Unmount an lstore mount with what is mounted inside it, and wait until its last changes
    /// are committed.
    Umount(mount::UmountArgs),
    /// List images: id, tags, top layer.
    Images(JsonFlag),
    /// Remove untagged images no container uses, with the layers nothing else uses.
    ImagePrune(JsonFlag),
    /// Named volumes.
    #[command(subcommand)]
    Volume(volume::VolumeCmd),
    /// Store a value from FILE or standard input.
    Put(values::PutArgs),
    /// Print a value's bytes.
    Get(values::GetArgs),
    /// Delete a key.
    Del(values::DelArgs),
    /// List keys with their sizes.
    #[command(long_about = help::LS)]
    Ls(values::LsArgs),
    /// Write FILE or standard input into a value at an offset.
    Write(values::WriteArgs),
    /// Print part of a value.
    Read(values::ReadArgs),
    /// Turn a container's state into a new layer; prints its id.
    Commit(containers::CommitArgs),
    /// Remove a container.
    Rm(containers::RmArgs),
    /// Where the space goes: totals, and per layer, container and volume.
    Df(JsonFlag),
    /// Give the space of removed layers, containers and volumes back to the file system.
    Gc(JsonFlag),
    /// Check the store: superblocks, every record's crc, tree invariants; --deep adds every
    /// chunk's blake3. Exit 0 only when clean.
    Verify(store::VerifyArgs),
    /// Copy what can be read of a damaged store SRC into a new store DST.
    Salvage(store::SalvageArgs),
    /// Tell Docker's storage story on a fresh store, with real numbers.
    Demo,
}

pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    // A missing store is a usage error, like a missing argument (salvage names its own files;
    // demo makes a scratch store when given none).
    if cli.store.is_none() && !matches!(cli.cmd, Cmd::Salvage(_) | Cmd::Demo | Cmd::Umount(_)) {
        eprintln!("lstore: no store given: pass --store PATH or set LSTORE_PATH (see --help)");
        return 2;
    }
    match dispatch(cli) {
        Ok(code) => code,
        // The reader went away (`| head`): stop at once and quietly, as `cat` does.
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("lstore: {}", one_line(&e.to_string()));
            1
        }
    }
}

/// Help and version print as clap prints them; any other parse error is one line on
/// stderr and exit 2 (`--help` has the rest).
fn usage_error(e: clap::Error) -> i32 {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return e.exit_code();
    }
    let text = e.render().to_string();
    let what: Vec<&str> = (text.lines())
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    eprintln!("lstore: {} (see --help)", what.join(" ").trim_start_matches("error: "));
    2
}

/// A program's exit code, or 125 (said on stderr) when lstore could not run it.
fn own_failure(r: lstore::Result<i32>) -> i32 {
    r.unwrap_or_else(|e| {
        eprintln!("lstore: {}", one_line(&e.to_string()));
        125
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs one command and prints its report; each arm is one call.
fn dispatch(cli: Cli) -> lstore::Result<i32> {
    let ctx = Ctx::new(cli.store, std::time::Duration::from_secs_f64(cli.wait));
    let text = Format::Text;
    let done = match cli.cmd {
        // The program's exit code is the command's; lstore's own failure is 125, as
        // Docker's, so it is not taken for the program's.
        Cmd::Run(a) => return Ok(own_failure(run::run(&ctx, a))),
        Cmd::Start(a) => return Ok(own_failure(run::start(&ctx, a))),
        Cmd::Init(a) => emit(store::init(&ctx, a), text),
        Cmd::Import(a) => emit(layers::import(&ctx, a), text),
        Cmd::Export(a) => emit(files::export(&ctx, a), text),
        Cmd::ExportTar(a) => emit(files::export_tar(&ctx, a), text),
        Cmd::Stat(a) => emit(files::stat(&ctx, &a), a.json.format()),
        Cmd::Diff(a) => emit(files::diff(&ctx, &a), a.json.format()),
        Cmd::Mkdir(a) => emit(files::mkdir(&ctx, a), text),
        Cmd::Symlink(a) => emit(files::symlink(&ctx, a), text),
        Cmd::Link(a) => emit(files::link(&ctx, a), text),
        Cmd::Mv(a) => emit(files::mv(&ctx, a), text),
        Cmd::Chmod(a) => emit(files::chmod(&ctx, a), text),
        Cmd::Chown(a) => emit(files::chown(&ctx, a), text),
        Cmd::Touch(a) => emit(files::touch(&ctx, a), text),
        Cmd::Setxattr(a) => emit(files::setxattr(&ctx, a), text),
        Cmd::Layers(j) => emit(layers::layers(&ctx), j.format()),
        Cmd::Containers(j) => emit(containers::containers(&ctx), j.format()),
        Cmd::Create(a) => emit(containers::create(&ctx, a), text),
        Cmd::Inspect(a) => emit(containers::inspect(&ctx, &a), a.json.format()),
        Cmd::Build(a) => emit(layers::build(&ctx, &a), a.json.format()),
        Cmd::Tag(a) => emit(layers::tag(&ctx, a), text),
        Cmd::Rmi(a) => emit(layers::rmi(&ctx, a), text),
        Cmd::Load(a) => emit(images::load(&ctx, &a), a.json.format()),
        Cmd::Save(a) => emit(images::save(&ctx, &a), text),
        Cmd::Images(j) => emit(images::images(&ctx), j.format()),
        Cmd::Mount(a) => emit(mount::mount(&ctx, a), text),
        Cmd::Umount(a) => emit(mount::umount(a), text),
        Cmd::ImagePrune(j) => emit(images::prune(&ctx), j.format()),
        Cmd::Volume(v) => volume::run(&ctx, v),
        Cmd::Put(a) => emit(values::put(&ctx, a), text),
        Cmd::Get(a) => emit(values::get(&ctx, a), text),
        Cmd::Del(a) => emit(values::del(&ctx, a), text),
        Cmd::Ls(a) => emit(values::ls(&ctx, &a), a.json.format()),
        Cmd::Write(a) => emit(values::write(&ctx, a), text),
        Cmd::Read(a) => emit(values::read(&ctx, a), text),
        Cmd::Commit(a) => emit(containers::commit(&ctx, a), text),
        Cmd::Rm(a) => emit(containers::rm(&ctx, a), text),
        Cmd::Df(j) => emit(store::df(&ctx), j.format()),
        Cmd::Gc(j) => emit(store::gc(&ctx), j.format()),
        Cmd::Verify(a) => emit(store::verify(&ctx, &a), a.json.format()),
        Cmd::Salvage(a) => emit(store::salvage(&a), text),
        Cmd::Demo => demo::run(ctx.store()),
    };
    done.map(|()| 0)
}
