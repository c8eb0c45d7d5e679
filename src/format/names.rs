//! The names users give layers, containers and volumes, as the catalog accepts them.

use crate::error::{Error, Result};

/// Checks a volume name as Docker does: a letter or digit, then letters, digits or `_.-`.
pub fn check_volume_name(name: &str) -> Result<()> {
    let ok = name.len() <= 128
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "volume name '{name}': use a letter or digit, then letters, digits or _.- (a bind mount needs an absolute path)"
        )));
    }
    Ok(())
}

/// Checks a user-given name of a layer or container: 1-128 bytes of letters, digits,
/// `_.-:/`, and never something an id could be written as (4 to 32 hex digits), so that a
/// reference means one thing however the catalog grows.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-:/".contains(&b));
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "name '{name}': use 1-128 letters, digits or _.-:/"
        )));
    }
    if could_be_id(name) {
        return Err(Error::InvalidArgument(format!(
            "name '{name}': 4 to 32 hex digits read as an id; add a letter past f or a '-'"
        )));
    }
    Ok(())
}

/// An image tag as Docker reads one: `REPO` alone means `REPO:latest`.
pub fn normalize_tag(tag: &str) -> String {
    let last = tag.rsplit('/').next().unwrap_or(tag);
    if last.contains(':') {
        tag.to_string()
    } else {
        format!("{tag}:latest")
    }
}

/// The layer or container names an image tag would be confused with, and the other way
/// round: `web:latest` and `web` are one name to a user.
pub fn aliases(name: &str) -> Vec<String> {
    let tag = normalize_tag(name);
    let mut out = vec![name.to_string()];
    if tag != name {
        out.push(tag.clone());
    }
    if let Some(bare) = tag.strip_suffix(":latest") {
        if bare != name {
            out.push(bare.to_string());
        }
    }
    out
}

/// Whether `r` has the shape of a full id or an id prefix.
pub fn could_be_id(r: &str) -> bool {
    (4..=32).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_hexdigit())
}
