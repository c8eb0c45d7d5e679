//! `lstore run`: a program in a container on lstore, the way Docker and Podman do it. The
//! container is mounted through FUSE as the root file system of an OCI runtime bundle
//! (`config.json` from the image config and the run's options) and a standard runtime (runc
//! or crun) runs it. The mount is committed and unmounted when the program ends; the
//! container stays (unless asked otherwise) for `diff`, `commit` and `export`.

mod bundle;
mod runtime;
mod tree;
mod user;

use crate::{Container, Error, FuseMount, FuseOptions, Mount, Result, Store};
use bundle::{ImageProcess, Process};
use std::path::{Path, PathBuf};

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The container's name.
    pub name: Option<String>,
    /// Remove the container when the program ends (`--rm`).
    pub remove: bool,
    /// `K=V` (or `K`, taken from this process) on top of the image's environment.
    pub env: Vec<String>,
    /// The working folder, instead of the image's; made when missing.
    pub workdir: Option<String>,
    /// `USER[:GROUP]`, names or numbers, instead of the image's.
    pub user: Option<String>,
    /// Volumes and bind mounts, as `docker run -v` and `--mount` give them.
    pub mounts: Vec<Mount>,
    /// The command, instead of the image's Cmd (after its Entrypoint).
    pub command: Vec<String>,
    /// The OCI runtime: by default `LSTORE_RUNTIME`, else runc or crun from `PATH`.
    pub runtime: Option<PathBuf>,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct RunExit {
    /// The container it ran in (gone when [`RunOptions::remove`] was asked).
    pub container: crate::Id,
    /// The program's exit code (128 + the signal that killed it).
    pub code: i32,
}

/// Creates a container on `image` (an image, or a layer with no config) and runs its
/// program in it, in the foreground. Needs root and an OCI runtime, checked before anything
/// is made.
pub fn run(store: &Store, image: &str, opts: &RunOptions) -> Result<RunExit> {
    let runtime = ready(opts.runtime.as_deref())?;
    // From here to the end, a signal is for the program: it is passed on once the runtime
    // runs (one before stops the run there), and never ends lstore with its mount up.
    let _signals = runtime::Signals::catch();
    let (layer, config, image_id) = image_of(store, image)?;
    // What can be refused is refused before a container is made.
    process(&layer, &config, opts, "")?;
    let kept = Kept {
        image: image_id,
        env: opts.env.clone(),
        workdir: opts.workdir.clone(),
        user: opts.user.clone(),
        command: opts.command.clone(),
    };
    let kept = serde_json::to_vec(&kept).map_err(|e| Error::InvalidArgument(format!("the run's options: {e}")))?;
    runtime::not_interrupted()?;
    let c = store.create_container_with_config(&layer, opts.name.as_deref(), &opts.mounts, &kept)?;
    store.commit()?;
    let ran = start_in(store, &c, &config, opts, &runtime);
    if opts.remove {
        let removed = store.remove_container(&c.id().to_string()).and_then(|_| store.commit());
        removed?;
    }
    Ok(RunExit {
        container: c.id(),
        code: ran?,
    })
}

/// Runs a program again in an existing container, as `run` ran it (the same image config,
/// environment, folder, user and command); `opts`' command, env, workdir and user apply over
/// those (its name, mounts and `remove` do not: the container has its own).
pub fn start(store: &Store, container: &str, opts: &RunOptions) -> Result<i32> {
    let runtime = ready(opts.runtime.as_deref())?;
    let _signals = runtime::Signals::catch();
    let c = store.container(container)?;
    let info = c.info()?;
    let kept: Kept = match info.config.as_slice() {
        [] => Kept::default(),
        bytes => serde_json::from_slice(bytes).map_err(|e| {
            Error::InvalidArgument(format!("container {container}: its config is not lstore run's: {e}"))
        })?,
    };
    let config = match &kept.image {
        Some(id) => match store.image(&format!("sha256:{id}")) {
            Ok(i) => ImageProcess::parse(&store.image_config(&i)?)?,
            // Removed since (its layers stay while a container uses them): what was kept
            // is run without the image's config.
            Err(Error::UnknownRef(_)) => ImageProcess::default(),
            Err(e) => return Err(e),
        },
        None => ImageProcess::default(),
    };
    let or = |given: &Option<String>, was: &Option<String>| given.clone().or_else(|| was.clone());
    let opts = RunOptions {
        env: kept.env.iter().chain(&opts.env).cloned().collect(),
        workdir: or(&opts.workdir, &kept.workdir),
        user: or(&opts.user, &kept.user),
        command: if opts.command.is_empty() {
            kept.command
        } else {
            opts.command.clone()
        },
        ..opts.clone()
    };
    start_in(store, &c, &config, &opts, &runtime)
}

/// What `run` keeps with a container for `start`: the image and the options it was given.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Kept {
    /// The image's id (its config's sha256, hex), when it ran an image.
    image: Option<String>,
    env: Vec<String>,
    workdir: Option<String>,
    user: Option<String>,
    command: Vec<String>,
}

fn ready(runtime: Option<&Path>) -> Result<PathBuf> {
    if !rustix::process::geteuid().is_root() {
        return Err(Error::InvalidArgument(
            "running a container needs root (it mounts the container and starts an OCI runtime)".into(),
        ));
    }
    if !Path::new("/dev/fuse").exists() {
        return Err(Error::InvalidArgument(
            "running a container needs /dev/fuse (modprobe fuse)".into(),
        ));
    }
    runtime::find(runtime)
}

/// The layer to run on, what its image config says (nothing for a plain layer), and the
/// image's id.
fn image_of(store: &Store, r: &str) -> Result<(crate::Layer, ImageProcess, Option<String>)> {
    match store.image(r) {
        Ok(i) => {
            let config = ImageProcess::parse(&store.image_config(&i)?)?;
            let layer = match i.layer {
                Some(id) => store.layer(&id.to_string())?,
                None => store.new_layer(None)?.finish(None)?,
            };
            let id = i.id_string().trim_start_matches("sha256:").to_string();
            Ok((layer, config, Some(id)))
        }
        Err(Error::UnknownRef(_)) => Ok((store.layer(r)?, ImageProcess::default(), None)),
        Err(e) => Err(e),
    }
}

/// Mounts the container as a bundle's root file system, runs the program, and unmounts
/// (committing) whatever the program's end.
fn start_in(store: &Store, c: &Container, image: &ImageProcess, opts: &RunOptions, runtime: &Path) -> Result<i32> {
    let id = c.id().to_string();
    let hostname = id[..12].to_string();
    let process = process(c, image, opts, &hostname)?;
    runtime::not_interrupted()?;
    // What an earlier run of it left when killed (its process gone) is nobody's.
    sweep(&id, runtime);
    let bundle = Bundle::new(&id)?;
    let fuse = FuseOptions {
        allow_other: true,
        ..FuseOptions::default()
    };
    let mount = bundle
        .write(&process, &hostname, runtime)
        .and_then(|_| runtime::not_interrupted())
        .and_then(|_| FuseMount::new(store, &id, &bundle.rootfs(), &fuse));
    let mount = match mount {
        Ok(m) => m,
        Err(e) => {
            bundle.remove();
            return Err(e);
        }
    };
    let prepared = make_workdir(&bundle.rootfs(), &process.cwd).and_then(|_| runnable(c, &process));
    let ran = prepared.and_then(|_| runtime::run(runtime, &bundle.dir, &format!("lstore-{id}")));
    let unmounted = mount.unmount();
    // Only once nothing is mounted in it; else it stays, named in the error.
    if unmounted.is_ok() {
        bundle.remove();
    }
    let code = ran?;
    unmounted?;
    Ok(code)
}

/// An OCI runtime bundle: `config.json`, the files bound over the container's `/etc`, and
/// `rootfs`, where the container is mounted. Never removed recursively: a mount still in
/// it must not lose its files.
struct Bundle {
    dir: PathBuf,
}

const BUNDLE_FILES: [&str; 5] = ["runtime", "config.json", "hosts", "resolv.conf", "hostname"];

impl Bundle {
    /// A new folder in `/run/lstore` (memory, gone at reboot), named after the container and
    /// this process (a sweep leaves a live process's bundles alone).
    fn new(container: &str) -> Result<Bundle> {
        let base = bundles_dir()?;
        let prefix = format!("bundle-{container}-{}-", std::process::id());
        let dir = (tempfile::Builder::new().prefix(&prefix).tempdir_in(&base))
            .map_err(|e| Error::File { path: base, source: e })?
            .keep();
        let bundle = Bundle { dir };
        std::fs::create_dir(bundle.rootfs()).map_err(|e| bundle.failed(e))?;
        Ok(bundle)
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    fn failed(&self, e: std::io::Error) -> Error {
        Error::File {
            path: self.dir.clone(),
            source: e,
        }
    }

    fn write(&self, process: &Process, hostname: &str, runtime: &Path) -> Result<()> {
        let hosts = format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n");
        // The host's resolver: the network is the host's.
        let resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        let config = bundle::config(process, hostname, &self.dir).to_string();
        let name = format!("{hostname}\n");
        // The runtime it ran with, for a sweep after a kill.
        use std::os::unix::ffi::OsStrExt;
        let files: [(&str, &[u8]); 5] = [
            ("runtime", runtime.as_os_str().as_bytes()),
            ("config.json", config.as_bytes()),
            ("hosts", hosts.as_bytes()),
            ("resolv.conf", &resolv),
            ("hostname", name.as_bytes()),
        ];
        for (name, bytes) in files {
            std::fs::write(self.dir.join(name), bytes).map_err(|e| self.failed(e))?;
        }
        Ok(())
    }

    /// Its own files and its two folders, one by one: a folder that is not empty stays.
    fn remove(&self) {
        for name in BUNDLE_FILES {
            let _ = std::fs::remove_file(self.dir.join(name));
        }
        let _ = std::fs::remove_dir(self.rootfs());
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The process to start: the image config's, with the run's options over it.
fn process(t: &dyn tree::Tree, image: &ImageProcess, opts: &RunOptions, hostname: &str) -> Result<Process> {
    let user = user::resolve(&|p| tree::read(t, p), opts.user.as_deref().unwrap_or(&image.user))?;
    let args: Vec<String> = (image.entrypoint.iter())
        .chain(if opts.command.is_empty() {
            &image.cmd
        } else {
            &opts.command
        })
        .cloned()
        .collect();
    if args.is_empty() {
        return Err(Error::InvalidArgument(
            "no command: the image gives no Entrypoint or Cmd, so name one after the image or container".into(),
        ));
    }
    for e in &opts.env {
        let name = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        if name.is_empty() || e.contains('\0') {
            return Err(Error::InvalidArgument(format!("-e '{e}': not NAME=VALUE")));
        }
    }
    Ok(Process {
        env: bundle::environment(&image.env, &opts.env, hostname, &user.home),
        args,
        cwd: workdir(opts.workdir.as_deref().unwrap_or(&image.working_dir))?,
        user,
    })
}

/// The working folder as given, checked: absolute, and not where the runtime mounts its
/// own file systems and files (a folder made there would keep the container from starting).
fn workdir(given: &str) -> Result<String> {
    let cwd = match given.trim_end_matches('/') {
        "" => return Ok("/".to_string()),
        c if c.starts_with('/') => c.to_string(),
        c => {
            return Err(Error::InvalidArgument(format!(
                "working folder '{c}': must be an absolute path"
            )))
        }
    };
    let runtime_owned = ["/proc", "/sys", "/dev"]
        .iter()
        .any(|d| cwd == *d || cwd.starts_with(&format!("{d}/")))
        || ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"].contains(&cwd.as_str());
    if runtime_owned {
        return Err(Error::InvalidArgument(format!(
            "working folder '{cwd}': the runtime mounts its own there"
        )));
    }
    Ok(cwd)
}

/// Fails unless the program can be found and run in the container: a path, or a name found
/// in the process's `PATH`, leading to an executable file.
fn runnable(c: &Container, p: &Process) -> Result<()> {
    let program = &p.args[0];
    let found = if program.contains('/') {
        let full = if program.starts_with('/') {
            program.clone()
        } else {
            format!("{}/{program}", p.cwd)
        };
        tree::executable(c, &full)?
    } else {
        let path = (p.env.iter()).find_map(|e| e.strip_prefix("PATH=")).unwrap_or_default();
        let mut found = false;
        // Relative entries are skipped, and an entry that cannot be read (a symlink loop)
        // is passed over, as a shell's lookup does.
        for dir in path.split(':').filter(|d| d.starts_with('/')) {
            if tree::executable(c, &format!("{dir}/{program}")).unwrap_or(false) {
                found = true;
                break;
            }
        }
        found
    };
    if found {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "'{program}': no such program in the container (or not executable)"
        )))
    }
}

/// Makes the working folder in the container where it is missing, as Docker does. Each part
/// is resolved by the kernel with the mount as its root (`RESOLVE_IN_ROOT`), so a symlink
/// on the way leads where it leads inside the container, never out to the host's folders.
fn make_workdir(rootfs: &Path, cwd: &str) -> Result<()> {
    use rustix::fs::{mkdirat, openat2, Mode, OFlags, ResolveFlags};
    let failed = |p: &Path, e: rustix::io::Errno| Error::File {
        path: rootfs.join(p),
        source: e.into(),
    };
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let root = rustix::fs::open(rootfs, flags, Mode::empty()).map_err(|e| failed(Path::new(""), e))?;
    let mut at = PathBuf::from(".");
    for part in Path::new(cwd.trim_start_matches('/')).components() {
        let parent = openat2(&root, &at, flags, Mode::empty(), ResolveFlags::IN_ROOT).map_err(|e| failed(&at, e))?;
        at.push(part);
        match openat2(&root, &at, flags, Mode::empty(), ResolveFlags::IN_ROOT) {
            Ok(_) => {}
            Err(rustix::io::Errno::NOENT) => match mkdirat(&parent, part.as_os_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                // The name is there, and leads nowhere: a symlink to what is missing.
                Err(rustix::io::Errno::EXIST) => {
                    return Err(Error::InvalidArgument(format!(
                        "working folder {cwd}: /{} is a symlink to nothing",
                        at.strip_prefix(".").unwrap_or(&at).display()
                    )))
                }
                Err(e) => return Err(failed(&at, e)),
            },
            Err(rustix::io::Errno::NOTDIR) => {
                return Err(Error::NotADirectory(format!(
                    "working folder {cwd}: /{}",
                    at.strip_prefix(".").unwrap_or(&at).display()
                )))
            }
            Err(e) => return Err(failed(&at, e)),
        }
    }
    Ok(())
}

/// Where run bundles are made: `/run/lstore`, made by root with mode 0755, and refused
/// when anyone else could write there (a link planted there must not lead a sweep).
fn bundles_dir() -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let dir = PathBuf::from("/run/lstore");
    let failed = |e: std::io::Error| Error::File {
        path: dir.clone(),
        source: e,
    };
    match std::fs::DirBuilder::new().mode(0o755).create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(failed(e)),
        _ => {}
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(failed)?;
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(Error::InvalidArgument(format!(
            "{}: must be a folder of root's that nobody else may write",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Clears what runs of the container `id` left when their process was killed: the runtime's
/// container (its processes killed) and bundles, each unmounted lazily (a dead mount answers
/// nothing) and removed file by file. A bundle whose process lives is left alone, and so is
/// the runtime's container then.
fn sweep(id: &str, default_runtime: &Path) {
    let Ok(base) = bundles_dir() else {
        return;
    };
    let prefix = format!("bundle-{id}-");
    let Ok(entries) = std::fs::read_dir(&base) else {
        return;
    };
    let mut dead = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        // A real folder only (the entry's own type: a link is never followed).
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
        let alive = pid
            .and_then(rustix::process::Pid::from_raw)
            .is_some_and(|p| rustix::process::test_kill_process(p) != Err(rustix::io::Errno::SRCH));
        if alive {
            // A run going on (or one of an older naming): nothing of it is touched.
            return;
        }
        dead.push(e.path());
    }
    let mut runtimes = vec![default_runtime.to_path_buf()];
    for dir in dead {
        if let Ok(r) = std::fs::read(dir.join("runtime")) {
            use std::os::unix::ffi::OsStringExt;
            runtimes.push(PathBuf::from(std::ffi::OsString::from_vec(r)));
        }
        let _ = rustix::mount::unmount(dir.join("rootfs"), rustix::mount::UnmountFlags::DETACH);
        Bundle { dir }.remove();
    }
    runtimes.dedup();
    for r in runtimes.iter().filter(|r| r.is_file()) {
        runtime::delete(r, &format!("lstore-{id}"));
    }
}

/// Clears what killed runs of a container left (its runtime container and bundles); a run
/// going on is left alone. Does nothing without root or a runtime.
pub fn sweep_runs(container: &Container) {
    if let Ok(runtime) = ready(None) {
        sweep(&container.id().to_string(), &runtime);
    }
}
