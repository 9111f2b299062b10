//! Checking allocations: each job's plan on each of its allocations, probes first and then
//! `health_check` commands (through the hooks module, on the allocations whose probes
//! passed), one `health_checked` event per allocation per attempt, and retrying the
//! allocations that are not healthy yet while waiting.
//!
//! Jobs are checked side by side; within a job, the probes of at most
//! [`PROBING_CONCURRENCY`] allocations (over all jobs) run at once, and commands run one
//! allocation at a time, as job commands of `health_check` always have.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::catalog::{CommandHost, HealthCatalog, HealthTarget};
use super::gate::{gate_workers, WorkerGate};
use super::http::tls_connector;
use super::plan::{
    command_label, is_healthy, summary, AllocationHealth, CheckOutcome, CheckResult, HealthStatus,
    JobPlan, PlannedCheck,
};
use super::probe::Prober;
use super::HealthError;
use crate::activity::SharedRun;
use crate::events::{Event, HealthChecked};
use crate::hooks::{run_hook, HookRequest};
use crate::remote::Fleet;
use crate::workspace::{CommandEvent, HealthWait, HttpScheme};

/// Most allocations probed at the same time.
const PROBING_CONCURRENCY: usize = 16;

/// How long to keep checking an allocation that is not healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// One attempt.
    Once,
    /// Until healthy, with each job's manifest `health_check.wait` (attempts and pause); a
    /// job with only `health_check` commands, and the SSH gate, use 30 attempts 1 second
    /// apart.
    UntilHealthy,
}

/// How to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    pub retry: Retry,
    /// Echo the output of `ssh` probes and commands as `job@worker | line`.
    pub echo: bool,
}

/// The SSH gate of the workers, then the health of the allocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetHealth {
    pub gates: Vec<WorkerGate>,
    /// In the order of the targets given.
    pub allocations: Vec<AllocationHealth>,
}

/// Checks every target with its job's plan and records one `health_checked` event per
/// allocation per attempt (jobs without any health check record nothing and come back as
/// [`HealthStatus::NoHealthCheck`]). Results are in the order of `targets`.
///
/// Fails only when checking itself is impossible: the journal refuses events, or an https
/// probe has no usable bucket CA. A `health_check` command that cannot start is not such a
/// case: its allocations are unhealthy, with the reason.
pub async fn check_allocations(
    fleet: &Fleet,
    run: &SharedRun,
    catalog: &HealthCatalog,
    targets: &[HealthTarget],
    options: CheckOptions,
) -> Result<Vec<AllocationHealth>, HealthError> {
    let mut by_job: BTreeMap<&str, Vec<(usize, HealthTarget)>> = BTreeMap::new();
    for (position, target) in targets.iter().enumerate() {
        by_job
            .entry(target.job.as_str())
            .or_default()
            .push((position, target.clone()));
    }
    let plans: BTreeMap<&str, Option<JobPlan>> = by_job
        .keys()
        .map(|job| (*job, catalog.job(job).and_then(JobPlan::of)))
        .collect();
    let needs_tls = plans.values().flatten().any(|plan| {
        plan.probes.iter().any(|probe| {
            matches!(
                probe,
                PlannedCheck::Http {
                    scheme: HttpScheme::Https,
                    ..
                }
            )
        })
    });
    let tls = match (&catalog.ca_pem, needs_tls) {
        (_, false) => None,
        (Some(pem), true) => Some(tls_connector(pem)?),
        (None, true) => {
            return Err(HealthError::CaCertificate {
                namespace: crate::certs::CA_KV_NAMESPACE,
                key: crate::certs::CA_KV_KEY,
                reason: "it is missing".into(),
            })
        }
    };
    let prober = Prober {
        fleet: fleet.clone(),
        run: run.clone(),
        bucket_id: Arc::from(catalog.bucket_id.as_str()),
        tls,
        echo: options.echo,
    };
    let limit = Arc::new(Semaphore::new(PROBING_CONCURRENCY));
    let mut results: Vec<Option<AllocationHealth>> = targets.iter().map(|_| None).collect();
    let mut running = JoinSet::new();
    for (job, members) in by_job {
        match plans.get(job).cloned().flatten() {
            None => {
                for (position, target) in members {
                    results[position] = Some(AllocationHealth {
                        target,
                        status: HealthStatus::NoHealthCheck,
                        checks: Vec::new(),
                        attempts: 0,
                    });
                }
            }
            Some(plan) => {
                let attempts = match options.retry {
                    Retry::Once => 1,
                    Retry::UntilHealthy => plan.wait.attempts.max(1),
                };
                running.spawn(check_job(
                    prober.clone(),
                    catalog.hooks.clone(),
                    Arc::new(plan),
                    members,
                    attempts,
                    limit.clone(),
                ));
            }
        }
    }
    let mut failure = None;
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(Ok(checked)) => {
                for (position, health) in checked {
                    results[position] = Some(health);
                }
            }
            Ok(Err(error)) => failure = failure.or(Some(error)),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    Ok(results
        .into_iter()
        .map(|health| health.expect("every target is checked or has no health check"))
        .collect())
}

/// The SSH gate of `workers` (each must answer on the bucket's SSH port), then
/// [`check_allocations`] on the targets whose worker answered. Targets on a worker that did
/// not answer are unhealthy without being probed (and recorded so, when their job has a
/// health check).
pub async fn check_fleet(
    fleet: &Fleet,
    run: &SharedRun,
    catalog: &HealthCatalog,
    workers: &[String],
    targets: &[HealthTarget],
    options: CheckOptions,
) -> Result<FleetHealth, HealthError> {
    let wait = match options.retry {
        Retry::Once => None,
        Retry::UntilHealthy => Some(HealthWait::default()),
    };
    let config = fleet.config();
    let gates = gate_workers(workers, config.port, config.connect_timeout, wait).await;
    let closed: BTreeMap<&str, &WorkerGate> = gates
        .iter()
        .filter(|gate| !gate.passed())
        .map(|gate| (gate.worker.as_str(), gate))
        .collect();
    let (open, shut): (Vec<_>, Vec<_>) = targets
        .iter()
        .cloned()
        .enumerate()
        .partition(|(_, target)| !closed.contains_key(target.worker_ip.as_str()));
    let open_targets: Vec<HealthTarget> = open.iter().map(|(_, t)| t.clone()).collect();
    let checked = check_allocations(fleet, run, catalog, &open_targets, options).await?;
    let mut results: Vec<Option<AllocationHealth>> = targets.iter().map(|_| None).collect();
    for ((position, _), health) in open.into_iter().zip(checked) {
        results[position] = Some(health);
    }
    let mut events = Vec::new();
    for (position, target) in shut {
        let gate = closed[target.worker_ip.as_str()];
        let declared = catalog.job(&target.job).and_then(JobPlan::of).is_some();
        let health = if declared {
            let checks = vec![CheckResult {
                check: "ssh gate".into(),
                outcome: CheckOutcome::Failed(format!(
                    "worker {} did not answer: {}",
                    gate.worker,
                    gate.result.as_ref().err().map_or("", String::as_str)
                )),
            }];
            events.push(checked_event(&target, &checks, gate.attempts));
            AllocationHealth {
                target,
                status: HealthStatus::Unhealthy,
                checks,
                attempts: gate.attempts,
            }
        } else {
            AllocationHealth {
                target,
                status: HealthStatus::NoHealthCheck,
                checks: Vec::new(),
                attempts: 0,
            }
        };
        results[position] = Some(health);
    }
    run.record(&events)
        .map_err(|e| HealthError::Journal(e.to_string()))?;
    Ok(FleetHealth {
        gates,
        allocations: results
            .into_iter()
            .map(|health| health.expect("every target is settled"))
            .collect(),
    })
}

fn checked_event(target: &HealthTarget, checks: &[CheckResult], attempt: u32) -> Event {
    Event::HealthChecked(HealthChecked {
        alloc_id: target.alloc_id.clone(),
        job: target.job.clone(),
        worker_ip: target.worker_ip.clone(),
        healthy: is_healthy(checks),
        detail: summary(checks),
        attempt,
    })
}

/// Attempts `plan` on `members` until each is healthy or `attempts` ran out; the pause
/// between attempts is the plan's interval.
async fn check_job(
    prober: Prober,
    hooks: Option<Arc<CommandHost>>,
    plan: Arc<JobPlan>,
    members: Vec<(usize, HealthTarget)>,
    attempts: u32,
    limit: Arc<Semaphore>,
) -> Result<Vec<(usize, AllocationHealth)>, HealthError> {
    let interval = Duration::from_secs(u64::from(plan.wait.interval_seconds));
    let mut pending = members;
    let mut settled = Vec::with_capacity(pending.len());
    for attempt in 1..=attempts {
        let targets: Vec<HealthTarget> = pending.iter().map(|(_, t)| t.clone()).collect();
        let checks = attempt_job(&prober, hooks.as_deref(), &plan, &targets, &limit).await?;
        let events: Vec<Event> = targets
            .iter()
            .zip(&checks)
            .map(|(target, checks)| checked_event(target, checks, attempt))
            .collect();
        prober
            .run
            .record(&events)
            .map_err(|e| HealthError::Journal(e.to_string()))?;
        let mut still = Vec::new();
        for ((position, target), checks) in pending.into_iter().zip(checks) {
            let healthy = is_healthy(&checks);
            if healthy || attempt == attempts {
                settled.push((
                    position,
                    AllocationHealth {
                        target,
                        status: if healthy {
                            HealthStatus::Healthy
                        } else {
                            HealthStatus::Unhealthy
                        },
                        checks,
                        attempts: attempt,
                    },
                ));
            } else {
                still.push((position, target));
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(interval).await;
    }
    Ok(settled)
}

/// One attempt of `plan` on `targets`: every allocation's probes (allocations side by side,
/// probes in order), then each command on the allocations whose checks all passed so far.
async fn attempt_job(
    prober: &Prober,
    hooks: Option<&CommandHost>,
    plan: &Arc<JobPlan>,
    targets: &[HealthTarget],
    limit: &Arc<Semaphore>,
) -> Result<Vec<Vec<CheckResult>>, HealthError> {
    let mut running = JoinSet::new();
    for (index, target) in targets.iter().enumerate() {
        let (prober, plan, limit, target) =
            (prober.clone(), plan.clone(), limit.clone(), target.clone());
        running.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let mut checks = Vec::with_capacity(plan.probes.len());
            for probe in &plan.probes {
                let outcome = prober.probe(&target, probe, plan.timeout).await?;
                checks.push(CheckResult {
                    check: probe.label(),
                    outcome,
                });
            }
            Ok::<_, HealthError>((index, checks))
        });
    }
    let mut results: Vec<Vec<CheckResult>> = targets.iter().map(|_| Vec::new()).collect();
    let mut failure = None;
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(Ok((index, checks))) => results[index] = checks,
            Ok(Err(error)) => failure = failure.or(Some(error)),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    for command in &plan.commands {
        let ready: Vec<usize> = (0..targets.len())
            .filter(|&i| {
                results[i]
                    .iter()
                    .all(|c| matches!(c.outcome, CheckOutcome::Passed(_)))
            })
            .collect();
        let outcomes = match hooks {
            Some(hooks) if !ready.is_empty() => {
                run_health_command(prober, hooks, plan, command, targets, &ready).await
            }
            _ => BTreeMap::new(),
        };
        for (index, checks) in results.iter_mut().enumerate() {
            let outcome = match outcomes.get(&index) {
                Some(outcome) => outcome.clone(),
                None if ready.contains(&index) => CheckOutcome::Failed(
                    "internal: the bucket's job command settings were not loaded".into(),
                ),
                None => CheckOutcome::NotRun("a check before it failed".into()),
            };
            checks.push(CheckResult {
                check: command_label(command),
                outcome,
            });
        }
    }
    Ok(results)
}

/// Runs `command` of the plan's job for `health_check` on the targets at `ready`, one at a
/// time, each run bounded by the plan's timeout.
/// Returns each one's outcome by target index; a command that cannot start at all fails
/// every one of them with the reason.
async fn run_health_command(
    prober: &Prober,
    hooks: &CommandHost,
    plan: &JobPlan,
    command: &str,
    targets: &[HealthTarget],
    ready: &[usize],
) -> BTreeMap<usize, CheckOutcome> {
    let job = plan.job.as_str();
    let contexts = hooks.catalog.allocations(job);
    let mut outcomes = BTreeMap::new();
    let mut allocations = Vec::new();
    let mut indexes = Vec::new();
    for &index in ready {
        match contexts
            .iter()
            .find(|c| c.alloc_id == targets[index].alloc_id)
        {
            Some(context) => {
                allocations.push(context.clone());
                indexes.push(index);
            }
            None => {
                outcomes.insert(
                    index,
                    CheckOutcome::Failed(
                        "the allocation is not in the catalog any more; run `maand build`".into(),
                    ),
                );
            }
        }
    }
    if allocations.is_empty() {
        return outcomes;
    }
    let request = HookRequest {
        job: job.to_string(),
        command: command.to_string(),
        event: CommandEvent::HealthCheck,
        allocations,
        concurrency: 1,
        extra_env: BTreeMap::new(),
        verbose: prober.echo,
        timeout: plan.command_timeout,
    };
    // What the scripts write to KV is not kept: a health check observes, it does not change
    // the catalog.
    match run_hook(&hooks.host, &hooks.catalog, &prober.run, &request).await {
        Ok(outcome) => {
            for (index, run) in indexes.into_iter().zip(outcome.runs) {
                let result = match &run.error {
                    None => CheckOutcome::Passed("exit 0".into()),
                    Some(error) => CheckOutcome::Failed(error.clone()),
                };
                outcomes.insert(index, result);
            }
        }
        Err(error) => {
            for index in indexes {
                outcomes.insert(index, CheckOutcome::Failed(error.to_string()));
            }
        }
    }
    outcomes
}
