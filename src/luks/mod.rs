//! LUKS through the cryptsetup binary (the one the initramfs already has), never by writing
//! to the device ourselves. What only needs reading (the LUKS2 header, which mappings are
//! active) is read directly, with cryptsetup as the fallback.

pub mod cryptsetup;
pub mod header;
mod luks2;
pub mod mapper;
pub mod mounts;

pub use cryptsetup::{Cryptsetup, OpenError};
