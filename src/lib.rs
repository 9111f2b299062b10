//! maand: an agentless workload orchestrator whose every action is an event in an
//! append-only journal. The binary in `main.rs` only calls [`cli::main`].

pub mod activity;
pub mod bucket;
pub mod build;
pub mod catalog;
pub mod certs;
pub mod cli;
pub mod deploy;
pub mod events;
pub mod gc;
pub mod gobucket;
pub mod health;
pub mod hooks;
pub mod interrupt;
pub mod job_control;
pub mod kv;
pub mod logs;
pub mod progress;
pub mod prometheus;
pub mod remote;
pub mod run;
pub mod shared_journal;
pub mod templates;
pub mod terminal;
pub mod worker_facts;
pub mod workspace;
