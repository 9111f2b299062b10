//! The hand-run actions as use cases: `maand run_command` ([`run_command`]) and a job's
//! Makefile target ([`job_target`]). Each picks its workers, dials them, runs the action with
//! its output journaled, and runs the `--health_check` checks afterwards when asked; the
//! result ([`Acted`]) is for the caller to print and judge.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;

use crate::activity::{self, SharedRun};
use crate::bucket::Bucket;
use crate::health::{self, Report, Scope};
use crate::remote;

use super::{
    bucket_id, catalog_candidates, plan_job_targets, run_job_target, run_shell, select_workers,
    unrun_events, WorkerFilter, WorkerOutcome, CATALOG, JOB_TARGET_CONCURRENCY,
};

/// What a hand-run action did on each worker, and what `--health_check` found afterwards.
pub struct Acted {
    pub outcomes: Vec<WorkerOutcome>,
    /// `None` without `--health_check`.
    pub health: Option<anyhow::Result<Report>>,
}

/// What `maand run_command` runs, and where.
pub struct ShellRequest {
    /// The shell command, run with bash on each worker.
    pub command: String,
    pub filter: WorkerFilter,
    /// How many workers run it at the same time.
    pub concurrency: usize,
    /// Stop the command on a worker after this long.
    pub timeout: Duration,
    /// How long a worker may take to accept the SSH connection.
    pub connect_timeout: Duration,
    /// Check the targeted workers' health afterwards.
    pub health_check: bool,
}

/// Runs a shell command on the selected workers of the catalog.
pub fn run_command(
    bucket: &Bucket,
    shared: &SharedRun,
    request: &ShellRequest,
) -> anyhow::Result<Acted> {
    remote::check_host_tools()?;
    let (candidates, bucket_id) = shared.with(|run| -> anyhow::Result<_> {
        Ok((catalog_candidates(run.conn())?, bucket_id(run.conn())?))
    })?;
    let workers = select_workers(&candidates, &request.filter, CATALOG)?;
    let fleet = bucket.fleet(request.connect_timeout, request.concurrency)?;
    let observer = Arc::new(shared.observer(None, "run_command", "exec", true));
    let outcomes = activity::runtime()?.block_on(run_shell(
        &fleet,
        &bucket_id,
        &workers,
        &request.command,
        request.timeout,
        request.concurrency,
        observer.clone(),
    ));
    if let Some(error) = observer.journal_error() {
        bail!("recording the command's activity failed: {error}");
    }
    shared.record(&unrun_events(&outcomes, None, "run_command", "exec"))?;
    let health = request
        .health_check
        .then(|| health::after_action(bucket, shared, &fleet, Scope::Workers(&workers)));
    Ok(Acted { outcomes, health })
}

/// Which Makefile target of which job runs where.
pub struct TargetRequest<'a> {
    pub job: &'a str,
    /// A target [`super::check_target`] accepted.
    pub target: &'a str,
    /// Only the job's allocations on these workers; all of them when empty.
    pub allocations: &'a [String],
    /// Stop the target on a worker after this long.
    pub timeout: Duration,
    /// How long a worker may take to accept the SSH connection.
    pub connect_timeout: Duration,
    /// Check the job's health on the allocations the target ran on afterwards.
    pub health_check: bool,
}

/// Runs a job's Makefile target on its active allocations, after the sync check of each
/// worker.
pub fn job_target(
    bucket: &Bucket,
    shared: &SharedRun,
    request: &TargetRequest<'_>,
) -> anyhow::Result<Acted> {
    let (job, target) = (request.job, request.target);
    remote::check_host_tools()?;
    let plan = shared.with(|run| plan_job_targets(run.conn(), job, target, request.allocations))?;
    let hosts = plan.workers.len();
    let fleet = bucket.fleet(request.connect_timeout, hosts.min(JOB_TARGET_CONCURRENCY))?;
    let check = Arc::new(shared.observer(Some(job), "job_control", "sync_check", false));
    let runner = Arc::new(shared.observer(Some(job), "job_control", target, true));
    let outcomes = activity::runtime()?.block_on(run_job_target(
        &fleet,
        &plan,
        request.timeout,
        check.clone(),
        runner.clone(),
    ))?;
    if let Some(error) = check.journal_error().or_else(|| runner.journal_error()) {
        bail!("recording the job's activity failed: {error}");
    }
    shared.record(&unrun_events(&outcomes, Some(job), "job_control", target))?;
    let targeted: Vec<String> = plan.workers.iter().map(|w| w.host.clone()).collect();
    let health = request.health_check.then(|| {
        let scope = Scope::Job {
            job,
            workers: &targeted,
        };
        health::after_action(bucket, shared, &fleet, scope)
    });
    Ok(Acted { outcomes, health })
}
