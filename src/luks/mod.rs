//! LUKS through the cryptsetup binary (the one the initramfs already has), never by writing
//! to the device ourselves.

pub mod cryptsetup;
pub mod header;
pub mod mounts;

pub use cryptsetup::{Cryptsetup, OpenError};
