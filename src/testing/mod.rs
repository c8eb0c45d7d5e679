//! Test machinery (feature `test-support`, which `cargo test` enables): power-cut simulation
//! behind the `Io` seam, and the fuzz targets' entry points. Not part of the shipped library.

pub mod crashsim;
pub mod fuzz;
pub mod reseal;
