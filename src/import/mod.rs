//! Front ends that bring files into a store, using only its public API: folders and
//! Layerfiles.

pub mod folder;
pub mod layerfile;
