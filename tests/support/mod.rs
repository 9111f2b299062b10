//! Test support shared by the integration tests and benches: real SSH workers
//! ([`cluster::Cluster`]) and glue to `maand::remote` ([`remote`]). Each test binary compiles
//! this module on its own and uses only part of it, hence the `dead_code` allowance below;
//! nothing here is part of maand itself.
#![allow(dead_code)]

pub mod bucket;
pub mod cluster;
pub mod go_bucket;
pub mod output;
pub mod postgres;
pub mod pty;
pub mod remote;
