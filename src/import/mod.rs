//! Front ends that bring files into a store and out of it, using only its public API:
//! folders in and out, and Layerfiles.

pub mod digest;
pub mod export;
pub mod folder;
pub mod layerfile;
pub mod oci;
pub mod tar_in;
pub mod tar_out;
pub mod tar_split;
