//! `maand deploy`: plan (pure), stage, and execute journaled, resumable steps.
//!
//! A deploy is planned from the catalog and freshly staged trees into one `DeployPlanned`
//! event; then every step is recorded as it starts and as it ends. `--resume` reloads the
//! latest unfinished plan and runs every step without a success event again. A step that
//! started but never ended is in doubt: copies and deletions are idempotent and run again;
//! lifecycle targets run under the worker's runner with a receipt per attempt, so asking again
//! reports the outcome the worker already has instead of repeating the target. Hooks, which
//! run on the operator host and die with maand, leave a receipt in the bucket's `tmp/receipts/`
//! when they end (see `hook_receipts`), so a hook that completed is not run again either.

pub mod adopt;
pub mod delta;
pub mod driver;
pub mod execute;
pub mod hook_receipts;
pub mod ops;
pub mod plan;
pub mod prepare;
pub mod prometheus_stage;
pub mod render;
pub mod report;
pub mod stage;

#[cfg(test)]
mod simulation_tests;
