//! maand: an agentless workload orchestrator whose every action is an event in an
//! append-only journal. The binary in `main.rs` only calls [`run`]; everything else lives here.

pub mod certs;
pub mod remote;
pub mod workspace;

/// Entry point of the `maand` binary.
pub fn run() {}
