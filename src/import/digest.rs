//! Hashing what is written, for OCI digests (the text forms are in `format::digest`).

use sha2::{Digest, Sha256};
use std::io::Write;

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
