#![no_main]
//! See `lstore::testing::fuzz::sealed`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lstore::testing::fuzz::sealed(data));
