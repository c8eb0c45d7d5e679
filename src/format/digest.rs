//! OCI digests as text: `sha256:` and 64 lowercase hex digits (image ids in the catalog,
//! diffIDs, blob names).

use crate::error::{Error, Result};

/// `sha256:` and the digest in lowercase hex.
pub fn sha256_string(digest: &[u8; 32]) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The 32 bytes of a `sha256:HEX` digest; any other algorithm or form is refused.
pub fn parse_sha256(s: &str) -> Result<[u8; 32]> {
    let bad = || {
        Error::InvalidArgument(format!(
            "'{s}' is not a sha256 digest (sha256: and 64 lowercase hex digits)"
        ))
    };
    let hex = s.strip_prefix("sha256:").ok_or_else(bad)?;
    if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}
