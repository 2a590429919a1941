//! Vault (and OpenBao, which keeps the same API): the client with its addresses, TLS, retries
//! and deadline; login; transit.

pub mod auth;
pub mod client;
pub mod transit;

pub use client::Vault;
