#![no_main]
//! See `lstore::fuzzing::decode`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lstore::fuzzing::decode(data));
