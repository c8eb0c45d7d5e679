#![no_main]
//! See `lstore::fuzzing::open`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lstore::fuzzing::open(data));
