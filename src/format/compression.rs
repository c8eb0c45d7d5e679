//! How chunks are compressed: the store's default (in the file header) and a value's
//! override (in its entry), two bytes on disk.

use crate::error::{Error, Result};

/// Per-store or per-value compression of chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    /// zstd at the given level (1..=22).
    Zstd(i32),
}

impl Compression {
    /// Refuses a zstd level outside 1..=22 (the two bytes on disk could not say it).
    pub(crate) fn check(self) -> Result<Self> {
        match self {
            Compression::Zstd(l) if !(1..=22).contains(&l) => {
                Err(Error::InvalidArgument(format!("zstd level {l}: must be 1 to 22")))
            }
            c => Ok(c),
        }
    }

    pub(crate) fn to_bytes(self) -> [u8; 2] {
        match self {
            Compression::None => [0, 0],
            Compression::Zstd(l) => [1, l.clamp(1, 22) as u8],
        }
    }
    pub(crate) fn from_bytes(b: [u8; 2]) -> Result<Self> {
        match b[0] {
            0 => Ok(Compression::None),
            1 if (1..=22).contains(&b[1]) => Ok(Compression::Zstd(b[1] as i32)),
            _ => Err(Error::corrupt(format!("unknown compression code {:?}", b))),
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidArgument(format!("compression '{s}': use none, zstd or zstd:LEVEL (1-22)"));
        match s {
            "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::Zstd(3)),
            _ => {
                let level = s.strip_prefix("zstd:").ok_or_else(bad)?;
                let level: i32 = level.parse().map_err(|_| bad())?;
                if (1..=22).contains(&level) {
                    Ok(Compression::Zstd(level))
                } else {
                    Err(bad())
                }
            }
        }
    }
}
