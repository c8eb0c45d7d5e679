//! Little-endian integers stored as byte arrays, and a cursor for variable-length records.
//!
//! Fixed layouts are `#[repr(C)]` structs of these and of byte arrays: every field has
//! alignment 1, so a layout has no padding, reads the same on every machine, and can be cast
//! from any byte slice of its size (`bytemuck`'s fallible casts: a short slice is an error,
//! never a panic).

use crate::error::{Error, Result};
use bytemuck::{Pod, Zeroable};

macro_rules! little_endian {
    ($name:ident, $int:ty, $n:literal) => {
        #[doc = concat!("A little-endian `", stringify!($int), "`.")]
        #[derive(Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
        #[repr(transparent)]
        pub struct $name([u8; $n]);

        impl $name {
            pub fn new(v: $int) -> Self {
                Self(v.to_le_bytes())
            }

            pub fn get(self) -> $int {
                <$int>::from_le_bytes(self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.get().fmt(f)
            }
        }
    };
}

little_endian!(U16, u16, 2);
little_endian!(U32, u32, 4);
little_endian!(U64, u64, 8);

/// The layout `T` at the front of `bytes`, or `None` when `bytes` is too short.
pub fn view<T: Pod>(bytes: &[u8]) -> Option<&T> {
    bytemuck::try_from_bytes(bytes.get(..size_of::<T>())?).ok()
}

/// Reads a variable-length record front to back; running out of bytes is `Corrupt`, naming
/// what was being read.
pub struct Cursor<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Cursor { rest: bytes, what }
    }

    /// The error for a malformed record of this kind.
    pub fn malformed(&self) -> Error {
        Error::corrupt(format!("{} is malformed", self.what))
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(self.malformed());
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// A fixed layout.
    pub fn fixed<T: Pod>(&mut self) -> Result<&'a T> {
        let bytes = self.take(size_of::<T>())?;
        bytemuck::try_from_bytes(bytes).map_err(|_| self.malformed())
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16> {
        Ok(self.fixed::<U16>()?.get())
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(self.fixed::<U32>()?.get())
    }

    pub fn u64(&mut self) -> Result<u64> {
        Ok(self.fixed::<U64>()?.get())
    }

    /// Bytes left to read.
    pub fn remaining_len(&self) -> usize {
        self.rest.len()
    }

    /// A byte string preceded by its `u16` length.
    pub fn bytes16(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_little_endian_whatever_the_machine() {
        assert_eq!(bytemuck::bytes_of(&U32::new(0x0102_0304)), [4, 3, 2, 1]);
        assert_eq!(U64::new(u64::MAX - 1).get(), u64::MAX - 1);
    }

    #[test]
    fn a_cursor_reads_in_order_and_a_short_record_is_corrupt_not_a_panic() {
        let bytes = [7, 3, 0, b'a', b'b', b'c', 9];
        let mut c = Cursor::new(&bytes, "test record");
        assert_eq!(c.u8().unwrap(), 7);
        assert_eq!(c.bytes16().unwrap(), b"abc");
        assert_eq!(c.remaining(), [9]);
        assert!(matches!(c.u16(), Err(Error::Corrupt(m)) if m.contains("test record")));
        assert!(view::<U64>(&[1, 2, 3]).is_none());
    }
}
