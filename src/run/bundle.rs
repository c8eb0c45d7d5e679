//! The OCI runtime bundle a run starts from: `config.json` made from the image config
//! (Entrypoint, Cmd, Env, WorkingDir, User) and the run's options, with the namespaces,
//! mounts, capabilities and masked paths Docker gives a container by default.

use super::user::User;
use crate::{Error, Result};
use serde_json::{json, Value};

/// What the image config says about the process (`config` of an OCI image config).
#[derive(Clone, Debug, Default)]
pub(crate) struct ImageProcess {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

impl ImageProcess {
    /// Reads an image config's bytes; a missing or `null` field is empty.
    pub(crate) fn parse(config: &[u8]) -> Result<ImageProcess> {
        let v: Value = serde_json::from_slice(config)
            .map_err(|e| Error::InvalidArgument(format!("the image config is not JSON: {e}")))?;
        let c = &v["config"];
        let strings = |field: &str| -> Result<Vec<String>> {
            match &c[field] {
                Value::Null => Ok(Vec::new()),
                Value::Array(a) => a
                    .iter()
                    .map(|s| s.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad(field)),
                _ => Err(bad(field)),
            }
        };
        let string = |field: &str| -> Result<String> {
            match &c[field] {
                Value::Null => Ok(String::new()),
                Value::String(s) => Ok(s.clone()),
                _ => Err(bad(field)),
            }
        };
        Ok(ImageProcess {
            entrypoint: strings("Entrypoint")?,
            cmd: strings("Cmd")?,
            env: strings("Env")?,
            working_dir: string("WorkingDir")?,
            user: string("User")?,
        })
    }
}

fn bad(field: &str) -> Error {
    Error::InvalidArgument(format!("the image config's {field} is not what OCI says it is"))
}

/// The process a run starts, all options applied.
#[derive(Clone, Debug)]
pub(crate) struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: User,
}

/// The environment: the image's, then `-e` (a bare `K` takes this process's `K`, as
/// `docker run -e K` does), with PATH, HOSTNAME and HOME set where nobody set them.
pub(crate) fn environment(image: &[String], given: &[String], hostname: &str, home: &str) -> Vec<String> {
    fn set(env: &mut Vec<(String, String)>, k: &str, v: &str) {
        match env.iter_mut().find(|(n, _)| n == k) {
            Some(e) => e.1 = v.to_string(),
            None => env.push((k.to_string(), v.to_string())),
        }
    }
    let mut env = Vec::new();
    set(
        &mut env,
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    set(&mut env, "HOSTNAME", hostname);
    for e in image {
        if let Some((k, v)) = e.split_once('=') {
            set(&mut env, k, v);
        }
    }
    for e in given {
        match e.split_once('=') {
            Some((k, v)) => set(&mut env, k, v),
            None => {
                if let Ok(v) = std::env::var(e) {
                    set(&mut env, e, &v)
                }
            }
        }
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        set(&mut env, "HOME", home);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Docker's default capabilities.
const CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `config.json` for a root file system at `rootfs` (the bundle's `rootfs`), with the
/// bundle's `hosts`, `resolv.conf` and `hostname` files bound over the container's.
/// The network is the host's (`--network host`): lstore sets up no network of its own. Not
/// Docker's: no seccomp or AppArmor profile and no cgroup namespace or limits; the
/// namespaces, capabilities and masked paths are Docker's defaults.
pub(crate) fn config(p: &Process, hostname: &str, bundle: &std::path::Path) -> Value {
    let file = |name: &str| bundle.join(name).display().to_string();
    let bind = |dest: &str, name: &str| json!({"destination": dest, "type": "bind", "source": file(name), "options": ["rbind", "rprivate"]});
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": p.user.uid, "gid": p.user.gid, "additionalGids": p.user.additional_gids},
            "args": p.args,
            "env": p.env,
            "cwd": p.cwd,
            // As Docker: a user other than root keeps the bounding set only, so it is not
            // root in all but name.
            "capabilities": if p.user.uid == 0 {
                json!({"bounding": CAPABILITIES, "effective": CAPABILITIES, "permitted": CAPABILITIES})
            } else {
                json!({"bounding": CAPABILITIES, "effective": [], "permitted": []})
            },
            "noNewPrivileges": false
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            bind("/etc/hosts", "hosts"),
            bind("/etc/resolv.conf", "resolv.conf"),
            bind("/etc/hostname", "hostname"),
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap"
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_options_override_the_image_environment_and_fill_in_what_is_missing() {
        let image = ["PATH=/opt/bin".to_string(), "A=1".to_string()];
        let env = environment(&image, &["A=2".to_string(), "B=x=y".to_string()], "h1", "/root");
        assert_eq!(env, ["PATH=/opt/bin", "HOSTNAME=h1", "A=2", "B=x=y", "HOME=/root"]);
    }

    #[test]
    fn an_image_config_gives_its_process_and_refuses_wrong_types() {
        let p = ImageProcess::parse(br#"{"config":{"Cmd":["sh"],"Env":null,"WorkingDir":"/w","User":"1:2"}}"#).unwrap();
        assert_eq!(
            (p.cmd, p.entrypoint, p.working_dir, p.user),
            (vec!["sh".to_string()], vec![], "/w".into(), "1:2".into())
        );
        assert!(ImageProcess::parse(br#"{"config":{"Cmd":"sh"}}"#).is_err());
        assert!(ImageProcess::parse(b"not json").is_err());
    }
}
