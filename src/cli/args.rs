//! Typed value parsers for clap: a bad size, compression or mount spec is a usage error (one
//! line, exit 2) before any store is opened.

use lstore::{Compression, Error, Mount};

/// The message of a library error without its kind (`invalid argument: `), for clap to print
/// after "invalid value 'X' for '--flag'".
fn message(e: Error) -> String {
    match e {
        Error::InvalidArgument(m) => m,
        other => other.to_string(),
    }
}

/// Sizes like `4096`, `4K`, `64KiB`, `1M`, `1MiB`, `2G` (units are powers of 1024).
pub fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("size '{s}': use a number with K, M or G (e.g. 64K)");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// `none`, `zstd` or `zstd:LEVEL`.
pub fn compression(s: &str) -> Result<Compression, String> {
    s.parse().map_err(message)
}

/// `-v NAME:/TARGET[:ro]` or `-v /HOST/DIR:/TARGET[:ro]` (a bind source must exist).
pub fn volume(s: &str) -> Result<Mount, String> {
    Mount::parse_volume_flag(s).map_err(message)
}

/// `--mount type=volume|bind,source=S,target=T[,readonly][,volume-nocopy]`.
pub fn mount(s: &str) -> Result<Mount, String> {
    Mount::parse_mount_flag(s).map_err(message)
}

/// A duration in seconds: finite, from 0 to a day.
pub fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a number of seconds from 0 to 86400")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units_of_1024() {
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("4K"), Ok(4096));
        assert_eq!(size("64KiB"), Ok(64 << 10));
        assert_eq!(size("4MiB"), Ok(4 << 20));
        assert_eq!(size("1g"), Ok(1 << 30));
        assert!(size("12x").unwrap_err().contains("size '12x'"));
        assert!(size("").is_err());
        assert!(size("99999999999G").is_err());
    }

    #[test]
    fn compression_and_mounts_parse_or_say_why() {
        assert_eq!(compression("zstd:5"), Ok(Compression::Zstd(5)));
        assert!(compression("zip").unwrap_err().starts_with("compression 'zip'"));
        assert!(volume("relative/path:/x").unwrap_err().contains("volume name"));
        assert!(mount("type=tmpfs,target=/x").unwrap_err().contains("unsupported"));
        assert!(volume("data:/srv").is_ok());
    }
}
