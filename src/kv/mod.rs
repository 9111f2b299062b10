//! Layered key/value store: namespaces, versions, secrets.

pub mod access;
pub mod peers;
pub mod secret;
