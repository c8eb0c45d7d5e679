//! The host's file system, as the store's front ends and bind mounts meet it: resolving paths
//! beneath a root (`openat2`), walking folders, reading and setting a file's metadata, opening
//! a file without blocking. It knows nothing of the store; like `error`, every layer may use it.

pub(crate) mod beneath;
pub(crate) mod meta;
mod open;
pub(crate) mod walk;

pub(crate) use open::open_regular;
