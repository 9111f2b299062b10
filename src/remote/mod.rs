//! Reaching workers: one SSH session per worker (an OpenSSH ControlMaster reused by every
//! remote command and every rsync, and by later maand commands while it stays open; see
//! [`MasterPolicy`]), commands with quoting and timeouts, rsync transfers, fan-out over many
//! workers, prerequisite checks, the worker-side runner's files, and the command lines of
//! lifecycle steps that the runner runs detached with a receipt (see `receipts`).
//!
//! What happens is reported as structured [`RemoteRecord`]s to an [`Observer`] the caller
//! supplies; turning them into journal events or terminal lines is the caller's business.
//! This module never prints, never opens the database and never decides what to deploy.
//!
//! ## Why the master is spawned here instead of through the `openssh` crate
//! We run `ssh -M -f -N` ourselves. The crate would hide three things this module needs:
//! the master's own diagnostics (to tell a changed host key from a refused or silent worker
//! and give the operator the right instruction), the exact options every ssh invocation
//! carries (rsync's `-e` must reproduce them so a fallback connection is checked like the
//! master), and the child processes themselves (our deadlines kill the whole process group
//! of a command or transfer). The spawned form is a few dozen lines and keeps all three.
//!
//! ## Host keys
//! Trust on first use against the bucket's own known_hosts (`StrictHostKeyChecking=accept-new`,
//! global files ignored). A key that differs from the recorded one is
//! [`RemoteError::HostKeyChanged`]; host-key checking is never turned off.
//!
//! ## Deadlines
//! Every command and transfer has a timeout enforced here, not by ssh. Remote commands also
//! run under the worker's `timeout`, slightly longer than ours, so work orphaned by a dropped
//! connection stops too.

mod command;
mod config;
mod control;
mod error;
mod fleet;
mod prerequisites;
mod quote;
mod receipts;
mod record;
mod session;
mod transfer;
mod worker_files;

pub use command::RemoteCommand;
pub use config::{MasterPolicy, RemoteConfig};
pub use control::{close_masters, shared_control_dir};
pub use error::RemoteError;
pub use fleet::{Fleet, WorkerResult};
pub use prerequisites::{
    check_host_tools, check_worker_tools, PrerequisiteError, WorkerProblem, HOST_TOOLS,
    WORKER_TOOLS,
};
pub use quote::shell_quote;
pub use receipts::{
    forget_steps_command, is_safe_name, step_command, step_command_applying, StepReceiptKey,
    DELTA_APPLIED, STEP_TIMED_OUT, STEP_VANISHED,
};
pub use record::{Observer, RemoteRecord, Stream};
pub use session::{CapturedOutput, CommandOutcome, Session, MAX_CAPTURED_BYTES, MAX_LINE_BYTES};
pub use transfer::{FilterRule, Transfer, TransferSummary};
pub use worker_files::{
    bucket_dir_on_worker, runner_command, stage_worker_files, JobEntry, StageError, WorkerFiles,
    WorkerIdentity, RUNNER_FILES, WORKER_ROOT,
};
