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

/// Checks a user-given name: 1-128 bytes of letters, digits, `_.-:/`, not all hex.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-:/".contains(&b));
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "name '{name}': use 1-128 letters, digits or _.-:/"
        )));
    }
    Ok(())
}
