//! OCI digests: `sha256:` and 64 lowercase hex digits.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Write;

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

/// A writer that passes bytes on and hashes and counts what was written.
pub(crate) struct Sha256Writer<W> {
    out: W,
    sha: Sha256,
    written: u64,
}

impl<W: Write> Sha256Writer<W> {
    pub(crate) fn new(out: W) -> Sha256Writer<W> {
        Sha256Writer {
            out,
            sha: Sha256::new(),
            written: 0,
        }
    }

    /// The digest and byte count of what was written, and the writer.
    pub(crate) fn finish(self) -> ([u8; 32], u64, W) {
        (self.sha.finalize().into(), self.written, self.out)
    }
}

impl<W: Write> Write for Sha256Writer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.sha.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
