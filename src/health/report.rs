//! What a health check found ([`Report`]): the table an operator reads and the verdict that
//! fails the command when a worker did not answer or an allocation stayed unhealthy.

use anyhow::bail;
use comfy_table::{presets, ContentArrangement, Table};

use super::{AllocationHealth, HealthStatus, WorkerGate};

/// What a health check found, ready to render.
pub struct Report {
    pub(super) ssh_port: u16,
    /// `None` when no worker was gated (`job ... --health_check`).
    pub(super) gates: Option<Vec<WorkerGate>>,
    /// Selected jobs with no active allocation: nothing to check.
    pub(super) idle_jobs: Vec<String>,
    pub(super) allocations: Vec<AllocationHealth>,
}

impl Report {
    /// The gate line and a table: one row per check of each allocation, one row per job
    /// without a health check or without an active allocation, one row per worker that
    /// failed the gate.
    pub fn render(&self) -> String {
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
    pub fn verdict(&self) -> anyhow::Result<()> {
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
    use crate::health::{CheckOutcome, CheckResult, HealthTarget};

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
                    worker: "127.9.0.1".into(),
                    result: Ok("SSH-2.0-x".into()),
                    attempts: 1,
                },
                WorkerGate {
                    worker: "127.9.0.9".into(),
                    result: Err("cannot connect to port 22: refused".into()),
                    attempts: 30,
                },
            ]),
            idle_jobs: vec!["batch".into()],
            allocations: vec![
                AllocationHealth {
                    target: target("api", "127.9.0.1"),
                    status: HealthStatus::Unhealthy,
                    checks: vec![CheckResult {
                        check: "tcp http:8080".into(),
                        outcome: CheckOutcome::Failed("cannot connect: refused".into()),
                    }],
                    attempts: 3,
                },
                AllocationHealth {
                    target: target("cache", "127.9.0.1"),
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
            "- 127.9.0.9 ssh gate failed (attempt 30) cannot connect to port 22: refused",
            "api 127.9.0.1 tcp http:8080 failed (attempt 3) cannot connect: refused",
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
            message.contains("1 worker did not answer on SSH port 22: 127.9.0.9"),
            "{message}"
        );
        assert!(
            message.contains("1 allocation unhealthy: api@127.9.0.1"),
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
