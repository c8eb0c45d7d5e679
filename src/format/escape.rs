//! How a path's bytes are shown as text and read back: printable UTF-8 stays as it is; a
//! backslash, a tab, a newline, a carriage return and every other byte that is a control
//! character or not UTF-8 is written as `\\`, `\t`, `\n`, `\r` or `\xHH`. The mapping is
//! one-to-one, and the same as bash's `$'...'` quoting reads, so a printed name can be typed
//! back: `lstore stat IMG $'name\xff'`.

use crate::error::{Error, Result};
use std::fmt::Write;

/// The text form of a path.
///
/// ```
/// assert_eq!(lstore::escape_path(b"caf\xc3\xa9/a\\b\xff\n"), "café/a\\\\b\\xff\\n");
/// ```
pub fn escape_path(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut b = [0; 4];
                    for byte in c.encode_utf8(&mut b).bytes() {
                        let _ = write!(out, "\\x{byte:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The bytes a text form stands for (the inverse of [`escape_path`]).
///
/// ```
/// assert_eq!(lstore::unescape_path("a\\\\b\\xff").unwrap(), b"a\\b\xff");
/// ```
pub fn unescape_path(text: &str) -> Result<Vec<u8>> {
    let bad = || Error::InvalidArgument(format!("'{text}': a backslash starts \\\\, \\t, \\n, \\r or \\xHH"));
    let mut out = Vec::with_capacity(text.len());
    let mut it = text.bytes();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next().ok_or_else(bad)? {
            b'\\' => out.push(b'\\'),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'x' => {
                let hex = [it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?];
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(bad());
                }
                let hex = std::str::from_utf8(&hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_string_round_trips_through_its_text_form() {
        let cases: [&[u8]; 6] = [
            b"plain/name",
            b"name\xff",
            b"name\xfe",
            b"a\\b",
            b"\x01\x7f\t\n\r",
            "€ü".as_bytes(),
        ];
        for c in cases {
            assert_eq!(unescape_path(&escape_path(c)).unwrap(), c);
        }
        assert_ne!(escape_path(b"name\xff"), escape_path(b"name\xfe"));
        for b in 0..=255u8 {
            assert_eq!(unescape_path(&escape_path(&[b, b'x', b])).unwrap(), [b, b'x', b]);
        }
        assert!(unescape_path("a\\q").is_err());
        assert!(unescape_path("a\\x4").is_err());
        assert!(unescape_path("a\\x+1").is_err());
    }
}
