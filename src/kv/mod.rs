//! Layered key/value store: namespaces, versions, secrets.

pub mod access;
pub mod secret;
