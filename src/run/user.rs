//! `-u USER[:GROUP]` as runtimes resolve it: names looked up in the container's own
//! `/etc/passwd` and `/etc/group` (never the host's), numbers taken as they are.

use crate::{Error, Result};

/// The process identity a container runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct User {
    pub uid: u32,
    pub gid: u32,
    /// Groups that list the user as a member (`/etc/group`'s fourth field).
    pub additional_gids: Vec<u32>,
    /// The user's home folder, for `HOME`.
    pub home: String,
}

/// Resolves `spec` (`""` is root) against the account files `get` reads from the
/// container's (or its image's) tree.
pub(crate) fn resolve(get: &dyn Fn(&str) -> Result<Option<Vec<u8>>>, spec: &str) -> Result<User> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = account_file(get, "etc/passwd")?;
    let groups = account_file(get, "etc/group")?;
    let user = if user.is_empty() { "0" } else { user };
    let entry = passwd
        .iter()
        .find(|f| f[0] == user || (f[2] == user && user.parse::<u32>().is_ok()));
    let (uid, mut gid, name, home) = match (entry, user.parse::<u32>()) {
        (Some(f), _) => (
            number(&f[2], "uid", spec)?,
            number(&f[3], "gid", spec)?,
            f[0].clone(),
            f[5].clone(),
        ),
        (None, Ok(uid)) => (uid, 0, String::new(), "/".to_string()),
        (None, Err(_)) => {
            return Err(Error::InvalidArgument(format!(
                "user '{user}': not found in the container's /etc/passwd"
            )))
        }
    };
    if let Some(g) = group {
        gid = match (groups.iter().find(|f| f[0] == g), g.parse::<u32>()) {
            (_, Ok(n)) => n,
            (Some(f), _) => number(&f[2], "gid", spec)?,
            (None, Err(_)) => {
                return Err(Error::InvalidArgument(format!(
                    "group '{g}': not found in the container's /etc/group"
                )))
            }
        };
    }
    let mut additional_gids: Vec<u32> = (groups.iter())
        .filter(|f| !name.is_empty() && f[3].split(',').any(|m| m == name))
        .filter_map(|f| f[2].parse().ok())
        .filter(|&g| g != gid)
        .collect();
    additional_gids.sort_unstable();
    additional_gids.dedup();
    let home = if home.is_empty() { "/".to_string() } else { home };
    Ok(User {
        uid,
        gid,
        additional_gids,
        home,
    })
}

fn number(field: &str, what: &str, spec: &str) -> Result<u32> {
    field.parse().map_err(|_| {
        Error::InvalidArgument(format!(
            "user '{spec}': the container's account files give a {what} that is not a number: '{field}'"
        ))
    })
}

/// The lines of a colon-separated account file, each padded to 7 fields; none when the
/// container has no such file.
fn account_file(get: &dyn Fn(&str) -> Result<Option<Vec<u8>>>, path: &str) -> Result<Vec<Vec<String>>> {
    let Some(bytes) = get(path)? else {
        return Ok(Vec::new());
    };
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f: Vec<String> = l.split(':').map(str::to_string).collect();
            f.resize(7, String::new());
            f
        })
        .collect())
}
