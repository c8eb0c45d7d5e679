#![no_main]
//! See `lstore::fuzzing::ops`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lstore::fuzzing::ops(data));
