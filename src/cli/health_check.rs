//! `maand health_check`: the SSH gate of the workers, then the health checks of every job on
//! its active allocations, as a table; and the same checks after the action of
//! `run_command --health_check` and `job start|stop|restart|run --health_check`.
//!
//! Parses, calls `health`, renders. Which checks run and what they mean is decided in
//! `health`, never here.

use std::collections::BTreeSet;

use anyhow::{bail, Context};
use comfy_table::{presets, ContentArrangement, Table};

use crate::activity::SharedRun;
use crate::bucket::Bucket;
use crate::catalog::tables::Selection;
use crate::health::{
    self, active_targets, AllocationHealth, CheckOptions, HealthCatalog, HealthStatus,
    HealthTarget, Retry, WorkerGate,
};
use crate::job_control;
use crate::remote::{self, Fleet};
use crate::run::Run;

use super::run_command::{runtime, SshArgs};

/// Most workers dialled at once for `ssh` probes.
const CHECK_CONCURRENCY: usize = 32;

#[derive(Debug, clap::Args)]
pub struct HealthCheckArgs {
    /// Only these jobs, comma-separated. A name the catalog does not know fails. Default:
    /// every job.
    #[arg(long, value_delimiter = ',', value_name = "JOB,...")]
    pub jobs: Vec<String>,
    /// Keep checking what is not healthy yet: a worker up to 30 times, an allocation up to
    /// its job's health_check.wait.attempts (default 30), the job's interval_seconds apart
    /// (default 1). Without it, one attempt each.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub ssh: SshArgs,
}

/// What `--health_check` flags check after their action.
pub(super) enum Scope<'a> {
    /// Every active allocation on these workers, after the SSH gate of the workers.
    Workers(&'a [String]),
    /// The active allocations of `job` on these workers.
    Job { job: &'a str, workers: &'a [String] },
}

pub fn run(
    bucket: &Bucket,
    args: &HealthCheckArgs,
    verbose: bool,
    argv: &[String],
) -> anyhow::Result<i32> {
    let run = Run::begin(bucket, "health_check", argv)?;
    let shared = SharedRun::new(run);
    let result = check(bucket, args, verbose, &shared).and_then(|report| {
        println!("{}", report.render());
        report.verdict()
    });
    let run = shared
        .into_run()
        .context("internal: the run is still shared after the checks finished")?;
    run.finish(&result)?;
    result.map(|()| 0)
}

fn check(
    bucket: &Bucket,
    args: &HealthCheckArgs,
    verbose: bool,
    shared: &SharedRun,
) -> anyhow::Result<Report> {
    remote::check_host_tools()?;
    let selection = Selection {
        jobs: args.jobs.clone(),
        workers: Vec::new(),
    };
    let (catalog, targets, all_workers) = shared.with(|run| -> anyhow::Result<_> {
        let targets = active_targets(run.conn(), &selection)?;
        let catalog = HealthCatalog::read(bucket, run.conn())?;
        let workers: Vec<String> = job_control::catalog_candidates(run.conn())?
            .into_iter()
            .map(|c| c.host)
            .collect();
        Ok((catalog, targets, workers))
    })?;
    // Without --jobs every worker must answer; with it, the workers those jobs run on.
    let workers = if args.jobs.is_empty() {
        all_workers
    } else {
        hosts_of(&targets)
    };
    let jobs: Vec<String> = if args.jobs.is_empty() {
        catalog_jobs(&catalog, &targets)
    } else {
        args.jobs.clone()
    };
    let fleet = args.ssh.fleet(bucket, CHECK_CONCURRENCY)?;
    let options = CheckOptions {
        retry: if args.wait {
            Retry::UntilHealthy
        } else {
            Retry::Once
        },
        echo: verbose,
    };
    let checked = runtime()?.block_on(health::check_fleet(
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
pub(super) fn after_action(
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
    let runtime = runtime()?;
    let (gates, allocations) = match scope {
        Scope::Workers(_) => {
            let checked = runtime.block_on(health::check_fleet(
                fleet, shared, &catalog, workers, &targets, options,
            ))?;
            (Some(checked.gates), checked.allocations)
        }
        Scope::Job { .. } => (
            None,
            runtime.block_on(health::check_allocations(
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

/// What a health check found, ready to render.
pub(super) struct Report {
    ssh_port: u16,
    /// `None` when no worker was gated (`job ... --health_check`).
    gates: Option<Vec<WorkerGate>>,
    /// Selected jobs with no active allocation: nothing to check.
    idle_jobs: Vec<String>,
    allocations: Vec<AllocationHealth>,
}

impl Report {
    /// The gate line and a table: one row per check of each allocation, one row per job
    /// without a health check or without an active allocation, one row per worker that
    /// failed the gate.
    pub(super) fn render(&self) -> String {
        let mut table = Table::new();
        table
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(["JOB", "WORKER", "CHECK", "RESULT", "DETAIL"]);
        let mut text = String::new();
        if let Some(gates) = &self.gates {
            let answered = gates.iter().filter(|g| g.passed()).count();
            text.push_str(&format!(
                "worker SSH gate: {answered} of {} workers answered on port {}\n",
                gates.len(),
                self.ssh_port
            ));
            for gate in gates.iter().filter(|g| !g.passed()) {
                table.add_row([
                    "-".to_string(),
                    gate.worker.clone(),
                    "ssh gate".to_string(),
                    attempt_text("failed", gate.attempts),
                    gate.result.clone().err().unwrap_or_default(),
                ]);
            }
        }
        let mut unchecked: Vec<&str> = Vec::new();
        for health in &self.allocations {
            if health.status == HealthStatus::NoHealthCheck {
                if !unchecked.contains(&health.target.job.as_str()) {
                    unchecked.push(&health.target.job);
                }
                continue;
            }
            for check in &health.checks {
                table.add_row([
                    health.target.job.clone(),
                    health.target.worker_ip.clone(),
                    check.check.clone(),
                    attempt_text(check.outcome.as_str(), health.attempts),
                    check.outcome.detail().to_string(),
                ]);
            }
        }
        for job in &unchecked {
            table.add_row([
                job.to_string(),
                "-".to_string(),
                "-".to_string(),
                HealthStatus::NoHealthCheck.to_string(),
                "declare health_check in its manifest.json, or a command with executed_on health_check".to_string(),
            ]);
        }
        for job in &self.idle_jobs {
            table.add_row([
                job.clone(),
                "-".to_string(),
                "-".to_string(),
                "no active allocation".to_string(),
                String::new(),
            ]);
        }
        for column in table.column_iter_mut() {
            column.set_padding((0, 2));
        }
        let count = |status: HealthStatus| {
            self.allocations
                .iter()
                .filter(|h| h.status == status)
                .count()
        };
        for line in table.to_string().lines() {
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text.push_str(&format!(
            "{} healthy, {} unhealthy allocations; {} without a health check",
            count(HealthStatus::Healthy),
            count(HealthStatus::Unhealthy),
            plural(unchecked.len(), "job")
        ));
        text
    }

    /// Fails naming every worker that failed the gate and every unhealthy allocation.
    pub(super) fn verdict(&self) -> anyhow::Result<()> {
        let silent: Vec<&str> = self
            .gates
            .iter()
            .flatten()
            .filter(|g| !g.passed())
            .map(|g| g.worker.as_str())
            .collect();
        let unhealthy: Vec<String> = self
            .allocations
            .iter()
            .filter(|h| h.status == HealthStatus::Unhealthy)
            .map(|h| format!("{}@{}", h.target.job, h.target.worker_ip))
            .collect();
        let mut problems = Vec::new();
        if !silent.is_empty() {
            problems.push(format!(
                "{} did not answer on SSH port {}: {}",
                plural(silent.len(), "worker"),
                self.ssh_port,
                silent.join(", ")
            ));
        }
        if !unhealthy.is_empty() {
            problems.push(format!(
                "{} unhealthy: {}",
                plural(unhealthy.len(), "allocation"),
                unhealthy.join(", ")
            ));
        }
        if problems.is_empty() {
            return Ok(());
        }
        bail!(
            "health check failed: {} (the table says why; `maand logs show --event health_checked` has every attempt)",
            problems.join("; ")
        )
    }
}

fn attempt_text(result: &str, attempts: u32) -> String {
    if attempts > 1 {
        format!("{result} (attempt {attempts})")
    } else {
        result.to_string()
    }
}

fn plural(count: usize, word: &str) -> String {
    if count == 1 {
        format!("1 {word}")
    } else {
        format!("{count} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{CheckOutcome, CheckResult};

    fn target(job: &str, worker: &str) -> HealthTarget {
        HealthTarget {
            alloc_id: format!("{job}@{worker}"),
            job: job.into(),
            worker_ip: worker.into(),
        }
    }

    fn report() -> Report {
        Report {
            ssh_port: 22,
            gates: Some(vec![
                WorkerGate {
                    worker: "10.0.0.1".into(),
                    result: Ok("SSH-2.0-x".into()),
                    attempts: 1,
                },
                WorkerGate {
                    worker: "10.0.0.9".into(),
                    result: Err("cannot connect to port 22: refused".into()),
                    attempts: 30,
                },
            ]),
            idle_jobs: vec!["batch".into()],
            allocations: vec![
                AllocationHealth {
                    target: target("api", "10.0.0.1"),
                    status: HealthStatus::Unhealthy,
                    checks: vec![CheckResult {
                        check: "tcp http:8080".into(),
                        outcome: CheckOutcome::Failed("cannot connect: refused".into()),
                    }],
                    attempts: 3,
                },
                AllocationHealth {
                    target: target("cache", "10.0.0.1"),
                    status: HealthStatus::NoHealthCheck,
                    checks: Vec::new(),
                    attempts: 0,
                },
            ],
        }
    }

    #[test]
    fn the_table_names_every_check_every_silent_worker_and_every_unchecked_job() {
        let text = report().render();
        assert!(
            text.starts_with("worker SSH gate: 1 of 2 workers answered on port 22\n"),
            "{text}"
        );
        let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for expected in [
            "- 10.0.0.9 ssh gate failed (attempt 30) cannot connect to port 22: refused",
            "api 10.0.0.1 tcp http:8080 failed (attempt 3) cannot connect: refused",
            "cache - - no health check declare health_check",
            "batch - - no active allocation",
            "0 healthy, 1 unhealthy allocations; 1 job without a health check",
        ] {
            assert!(words.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn the_verdict_names_silent_workers_and_unhealthy_allocations() {
        let message = report().verdict().unwrap_err().to_string();
        assert!(
            message.contains("1 worker did not answer on SSH port 22: 10.0.0.9"),
            "{message}"
        );
        assert!(
            message.contains("1 allocation unhealthy: api@10.0.0.1"),
            "{message}"
        );
    }

    #[test]
    fn jobs_without_a_health_check_do_not_fail_the_verdict() {
        let mut report = report();
        report.gates = None;
        report.allocations.remove(0);
        assert!(report.verdict().is_ok());
    }
}
