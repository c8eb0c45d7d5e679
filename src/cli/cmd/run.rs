//! `lstore run` and `lstore start`: a program in a container, through FUSE and an OCI
//! runtime; the program's exit code is the command's.

use crate::cli::args;
use crate::cli::cmd::Ctx;
use clap::Args;
use lstore::{Mount, Result, RunOptions};
use std::path::PathBuf;

/// What `run` and `start` share: the process's environment, folder, user and runtime.
#[derive(Args)]
pub struct ProcessArgs {
    /// Set an environment variable, K=V (K alone: this shell's value). Repeatable.
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// The working folder in the container (made when missing).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// USER[:GROUP], names from the container's /etc/passwd and /etc/group, or numbers.
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// The OCI runtime (default: LSTORE_RUNTIME, else runc or crun from PATH).
    #[arg(long, value_name = "PATH")]
    runtime: Option<PathBuf>,
}

impl ProcessArgs {
    fn options(self, command: Vec<String>) -> RunOptions {
        RunOptions {
            env: self.env,
            workdir: self.workdir,
            user: self.user,
            runtime: self.runtime,
            command,
            ..RunOptions::default()
        }
    }
}

#[derive(Args)]
pub struct RunArgs {
    /// Name for the container.
    #[arg(long)]
    name: Option<String>,
    /// Remove the container when the program ends.
    #[arg(long = "rm")]
    remove: bool,
    /// NAME:/TARGET[:ro] (a volume) or /HOST/DIR:/TARGET[:ro] (a folder), as docker -v.
    #[arg(short = 'v', long = "volume", value_name = "SPEC", value_parser = args::volume)]
    volumes: Vec<Mount>,
    /// type=volume|bind,source=S,target=T[,readonly][,volume-nocopy], as docker --mount.
    #[arg(long = "mount", value_name = "SPEC", value_parser = args::mount)]
    mounts: Vec<Mount>,
    #[command(flatten)]
    process: ProcessArgs,
    /// The image (tag or id) or layer to run.
    image: String,
    /// The command and its arguments, instead of the image's Cmd.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct StartArgs {
    #[command(flatten)]
    process: ProcessArgs,
    /// The container (name, id or id prefix).
    container: String,
    /// The command and its arguments, instead of its image's Cmd.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Runs and returns the program's exit code.
pub fn run(ctx: &Ctx, a: RunArgs) -> Result<i32> {
    let store = ctx.open()?;
    let opts = RunOptions {
        name: a.name,
        remove: a.remove,
        mounts: a.volumes.into_iter().chain(a.mounts).collect(),
        ..a.process.options(a.command)
    };
    Ok(lstore::run(&store, &a.image, &opts)?.code)
}

/// Runs again in a container and returns the program's exit code.
pub fn start(ctx: &Ctx, a: StartArgs) -> Result<i32> {
    let store = ctx.open()?;
    lstore::start(&store, &a.container, &a.process.options(a.command))
}
