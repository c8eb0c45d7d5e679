//! OCI images in and out: `load` reads an OCI image layout (a folder or a tar of one) or a
//! `docker save` tar into layers and an image; `save` writes an image as an OCI layout that
//! skopeo and umoci read.

pub mod load;
pub mod save;
mod source;
mod spec;
