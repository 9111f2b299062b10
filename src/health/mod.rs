//! Health of allocations: is each job answering on each worker it runs on?
//!
//! Owns what the catalog says about a job's health (its manifest probes, named ports and
//! `health_check` commands, read once into a [`HealthCatalog`]), the pure planning of the
//! checks of a job ([`JobPlan`]), running them from the operator host against one allocation
//! (`tcp` connect, `http`/`https` GET, `ssh` command on the worker through the fleet's
//! session), the worker SSH gate ([`gate_workers`]), the retry loop for waiting on health, and
//! the `health_checked` event each attempt on each allocation records.
//!
//! Never prints, never writes a catalog table except by recording events through the run,
//! and never starts, stops or copies anything on a worker: an `ssh` probe runs exactly the
//! command line the manifest declares, nothing else.
//!
//! Entry points: [`check_allocations`] (the gate a deploy calls after a batch, and what
//! `--health_check` flags call after their action) and [`check_fleet`] (the SSH gate of the
//! workers first, then [`check_allocations`] on the allocations of the workers that answered;
//! what `maand health_check` runs). The use cases on top of them, [`health_check`] and
//! [`after_action`], read the catalog, pick what to check and return a [`Report`]: the table
//! and the verdict of the check.

mod catalog;
mod check;
mod command;
mod gate;
mod http;
mod plan;
mod probe;
mod report;

pub use catalog::{active_targets, HealthCatalog, HealthTarget, JobHealth};
pub use check::{check_allocations, check_fleet, CheckOptions, FleetHealth, Retry};
pub use command::{after_action, health_check, CheckRequest, Scope};
pub use gate::{gate_workers, WorkerGate};
pub use plan::{
    AllocationHealth, CheckOutcome, CheckResult, HealthStatus, JobPlan, PlannedCheck,
    DEFAULT_TIMEOUT_SECONDS,
};
pub use report::Report;

/// Why health could not be checked at all (as opposed to a check that ran and failed, which
/// is an unhealthy [`AllocationHealth`]).
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error(
        "job {job}: the health_check stored in the catalog is not what maand writes ({reason}); \
         run `maand build` to record it again"
    )]
    StoredSpec { job: String, reason: String },
    #[error(
        "the bucket CA certificate (KV {namespace} {key}) cannot verify https probes: {reason}; \
         run `maand build` so the catalog holds the CA of secrets/ca.crt"
    )]
    CaCertificate {
        namespace: &'static str,
        key: &'static str,
        reason: String,
    },
    #[error("the catalog has no bucket identity; run `maand init`")]
    NoBucket,
    #[error(transparent)]
    Table(#[from] crate::catalog::tables::TableError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    Hooks(#[from] crate::hooks::HookError),
    #[error("recording health results in the journal failed: {0}")]
    Journal(String),
}
