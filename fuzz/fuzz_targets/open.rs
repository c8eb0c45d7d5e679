#![no_main]
//! See `lstore::testing::fuzz::open`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lstore::testing::fuzz::open(data));
