//! Layered key/value store: namespaces, versions, secrets.

pub mod secret;
