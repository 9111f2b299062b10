//! The health checks as use cases: `maand health_check` ([`health_check`]) and the checks
//! that `--health_check` flags run after their action ([`after_action`]). Reads the catalog,
//! picks the workers and allocations, dials the fleet and returns a [`Report`].

use std::collections::BTreeSet;
use std::time::Duration;

use crate::activity::{self, SharedRun};
use crate::bucket::Bucket;
use crate::catalog::tables::{self, Selection};
use crate::remote::{self, Fleet};

use super::{
    active_targets, check_allocations, check_fleet, CheckOptions, HealthCatalog, HealthTarget,
    Report, Retry,
};

/// What `maand health_check` checks.
pub struct CheckRequest {
    /// Only these jobs (and the workers they run on); every job and worker when empty.
    pub jobs: Vec<String>,
    /// Keep checking until healthy (`--wait`) instead of one attempt each.
    pub wait: bool,
    /// Echo `ssh` probe and command output (`--verbose`).
    pub echo: bool,
    /// How long a worker may take to accept the SSH connection.
    pub connect_timeout: Duration,
}

/// Most workers dialled at once for `ssh` probes.
const CHECK_CONCURRENCY: usize = 32;

/// What `--health_check` flags check after their action.
pub enum Scope<'a> {
    /// Every active allocation on these workers, after the SSH gate of the workers.
    Workers(&'a [String]),
    /// The active allocations of `job` on these workers.
    Job { job: &'a str, workers: &'a [String] },
}

/// `maand health_check`: the SSH gate of the workers (every worker of the catalog, or those
/// the selected jobs run on), then the checks of the selected jobs on their active
/// allocations.
pub fn health_check(
    bucket: &Bucket,
    shared: &SharedRun,
    request: &CheckRequest,
) -> anyhow::Result<Report> {
    remote::check_host_tools()?;
    let selection = Selection {
        jobs: request.jobs.clone(),
        workers: Vec::new(),
    };
    let (catalog, targets, all_workers) = shared.with(|run| -> anyhow::Result<_> {
        let targets = active_targets(run.conn(), &selection)?;
        let catalog = HealthCatalog::read(bucket, run.conn())?;
        let workers: Vec<String> = tables::workers(run.conn())?
            .into_iter()
            .map(|w| w.host)
            .collect();
        Ok((catalog, targets, workers))
    })?;
    // Without --jobs every worker must answer; with it, the workers those jobs run on.
    let workers = if request.jobs.is_empty() {
        all_workers
    } else {
        hosts_of(&targets)
    };
    let jobs: Vec<String> = if request.jobs.is_empty() {
        catalog_jobs(&catalog, &targets)
    } else {
        request.jobs.clone()
    };
    let fleet = bucket.fleet(request.connect_timeout, CHECK_CONCURRENCY)?;
    let options = CheckOptions {
        retry: if request.wait {
            Retry::UntilHealthy
        } else {
            Retry::Once
        },
        echo: request.echo,
    };
    let checked = activity::runtime()?.block_on(check_fleet(
        &fleet, shared, &catalog, &workers, &targets, options,
    ))?;
    Ok(Report {
        ssh_port: fleet.config().port,
        gates: Some(checked.gates),
        idle_jobs: jobs_without(&jobs, &targets),
        allocations: checked.allocations,
    })
}

/// Runs the checks of `scope` after an action, waiting for health like `--wait`.
pub fn after_action(
    bucket: &Bucket,
    shared: &SharedRun,
    fleet: &Fleet,
    scope: Scope<'_>,
) -> anyhow::Result<Report> {
    let (selection, workers) = match &scope {
        Scope::Workers(workers) => (
            Selection {
                jobs: Vec::new(),
                workers: workers.to_vec(),
            },
            workers,
        ),
        Scope::Job { job, workers } => (
            Selection {
                jobs: vec![job.to_string()],
                workers: workers.to_vec(),
            },
            workers,
        ),
    };
    let (catalog, targets) = shared.with(|run| -> anyhow::Result<_> {
        Ok((
            HealthCatalog::read(bucket, run.conn())?,
            active_targets(run.conn(), &selection)?,
        ))
    })?;
    let options = CheckOptions {
        retry: Retry::UntilHealthy,
        echo: false,
    };
    let runtime = activity::runtime()?;
    let (gates, allocations) = match scope {
        Scope::Workers(_) => {
            let checked = runtime.block_on(check_fleet(
                fleet, shared, &catalog, workers, &targets, options,
            ))?;
            (Some(checked.gates), checked.allocations)
        }
        Scope::Job { .. } => (
            None,
            runtime.block_on(check_allocations(
                fleet, shared, &catalog, &targets, options,
            ))?,
        ),
    };
    let jobs = match scope {
        Scope::Workers(_) => catalog_jobs(&catalog, &targets),
        Scope::Job { job, .. } => vec![job.to_string()],
    };
    Ok(Report {
        ssh_port: fleet.config().port,
        gates,
        idle_jobs: jobs_without(&jobs, &targets),
        allocations,
    })
}

/// Workers of the targets, in first-seen order.
fn hosts_of(targets: &[HealthTarget]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    targets
        .iter()
        .filter(|t| seen.insert(t.worker_ip.clone()))
        .map(|t| t.worker_ip.clone())
        .collect()
}

/// Every job of the catalog, plus any job a target names.
fn catalog_jobs(catalog: &HealthCatalog, targets: &[HealthTarget]) -> Vec<String> {
    let mut jobs: BTreeSet<String> = catalog.job_names().map(str::to_string).collect();
    jobs.extend(targets.iter().map(|t| t.job.clone()));
    jobs.into_iter().collect()
}

/// The jobs in `jobs` without an active allocation among `targets`.
fn jobs_without(jobs: &[String], targets: &[HealthTarget]) -> Vec<String> {
    jobs.iter()
        .filter(|job| !targets.iter().any(|t| &t.job == *job))
        .cloned()
        .collect()
}
