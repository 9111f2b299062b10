//! Pure planning and judging of health checks: which checks a job's allocations get (manifest
//! probes with their ports resolved, then `health_check` commands), how a check is named in
//! tables and events, and what a list of check results means for the allocation. No I/O.

use std::fmt;
use std::time::Duration;

use super::catalog::{HealthTarget, JobHealth};
use crate::workspace::{HealthWait, HttpScheme, Probe};

/// Seconds a check may take when the manifest sets no `timeout_seconds` (a job with
/// `health_check` commands but no probes); the manifest's own default is the same.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 5;

/// One check of an allocation, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedCheck {
    /// Connect to `worker_ip:port`.
    Tcp { port_name: String, port: u16 },
    /// `GET path` on `worker_ip:port`, expecting `expect_status`.
    Http {
        port_name: String,
        port: u16,
        path: String,
        expect_status: u16,
        scheme: HttpScheme,
    },
    /// Run `command` on the worker; exit 0 is healthy.
    Ssh { command: String },
    /// A probe naming a port that has no number in the catalog: fails without running.
    UnassignedPort {
        probe: &'static str,
        port_name: String,
    },
}

impl PlannedCheck {
    /// How the check is named in tables and events, e.g. `http web:8080/health`.
    pub fn label(&self) -> String {
        match self {
            PlannedCheck::Tcp { port_name, port } => format!("tcp {port_name}:{port}"),
            PlannedCheck::Http {
                port_name,
                port,
                path,
                scheme,
                ..
            } => format!("{} {port_name}:{port}{path}", scheme_name(*scheme)),
            PlannedCheck::Ssh { command } => format!("ssh {command}"),
            PlannedCheck::UnassignedPort { probe, port_name } => format!("{probe} {port_name}"),
        }
    }
}

/// How a `health_check` command is named in tables and events.
pub fn command_label(name: &str) -> String {
    format!("command {name}")
}

pub(super) fn scheme_name(scheme: HttpScheme) -> &'static str {
    match scheme {
        HttpScheme::Http => "http",
        HttpScheme::Https => "https",
    }
}

/// The checks every allocation of one job gets, and how long to wait for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPlan {
    pub job: String,
    /// Manifest probes, in manifest order.
    pub probes: Vec<PlannedCheck>,
    /// `health_check` commands in catalog order; they run once every probe passed.
    pub commands: Vec<String>,
    /// Longest time one probe may take.
    pub timeout: Duration,
    /// Longest time one run of a `health_check` command may take: the manifest's
    /// `timeout_seconds` when the job declares a `health_check` block (with or without
    /// probes); no limit otherwise.
    pub command_timeout: Option<Duration>,
    /// Attempts and pause when waiting for health (the manifest's, or the default).
    pub wait: HealthWait,
}

impl JobPlan {
    /// The plan for `job`; `None` when it declares neither probes nor `health_check` commands.
    pub fn of(job: &JobHealth) -> Option<JobPlan> {
        if job.probes.is_none() && job.commands.is_empty() {
            return None;
        }
        let port = |probe: &'static str, name: &str| match job.ports.get(name) {
            Some(&port) => Ok(port),
            None => Err(PlannedCheck::UnassignedPort {
                probe,
                port_name: name.to_string(),
            }),
        };
        let mut probes = Vec::new();
        for probe in job.probes.iter().flat_map(|h| &h.checks) {
            probes.push(match probe {
                Probe::Tcp { port: name } => match port("tcp", name) {
                    Ok(port) => PlannedCheck::Tcp {
                        port_name: name.clone(),
                        port,
                    },
                    Err(unassigned) => unassigned,
                },
                Probe::Http {
                    port: name,
                    path,
                    expect_status,
                    scheme,
                } => match port(scheme_name(*scheme), name) {
                    Ok(port) => PlannedCheck::Http {
                        port_name: name.clone(),
                        port,
                        path: path.clone(),
                        expect_status: *expect_status,
                        scheme: *scheme,
                    },
                    Err(unassigned) => unassigned,
                },
                Probe::Ssh { command } => PlannedCheck::Ssh {
                    command: command.clone(),
                },
            });
        }
        let timeout_seconds = job
            .probes
            .as_ref()
            .map_or(DEFAULT_TIMEOUT_SECONDS, |h| h.timeout_seconds);
        let timeout = Duration::from_secs(u64::from(timeout_seconds.max(1)));
        Some(JobPlan {
            job: job.job.clone(),
            probes,
            commands: job.commands.clone(),
            timeout,
            command_timeout: job.probes.as_ref().map(|_| timeout),
            wait: job.probes.as_ref().map(|h| h.wait).unwrap_or_default(),
        })
    }
}

/// How one check ended; the text says what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    Passed(String),
    Failed(String),
    /// Not attempted (a command after a failed probe).
    NotRun(String),
}

impl CheckOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckOutcome::Passed(_) => "passed",
            CheckOutcome::Failed(_) => "failed",
            CheckOutcome::NotRun(_) => "not run",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            CheckOutcome::Passed(d) | CheckOutcome::Failed(d) | CheckOutcome::NotRun(d) => d,
        }
    }
}

/// One check's result on one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// [`PlannedCheck::label`], [`command_label`], or `ssh gate` for the worker gate.
    pub check: String,
    pub outcome: CheckOutcome,
}

/// What the checks of an allocation amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    /// The job declares no health check: nothing was checked and nothing recorded.
    NoHealthCheck,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::NoHealthCheck => "no health check",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The health of one allocation after its last attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationHealth {
    pub target: HealthTarget,
    pub status: HealthStatus,
    /// The checks of the last attempt, in plan order (empty for [`HealthStatus::NoHealthCheck`]).
    pub checks: Vec<CheckResult>,
    /// Attempts made (0 when nothing was checked).
    pub attempts: u32,
}

/// Healthy when there is at least one check and every check passed.
pub(super) fn is_healthy(checks: &[CheckResult]) -> bool {
    !checks.is_empty()
        && checks
            .iter()
            .all(|c| matches!(c.outcome, CheckOutcome::Passed(_)))
}

/// The one-line summary an event carries: what passed, or every failure with its reason.
pub(super) fn summary(checks: &[CheckResult]) -> String {
    if is_healthy(checks) {
        let passed: Vec<&str> = checks.iter().map(|c| c.check.as_str()).collect();
        return format!("passed: {}", passed.join(", "));
    }
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| matches!(c.outcome, CheckOutcome::Failed(_)))
        .map(|c| format!("{}: {}", c.check, c.outcome.detail()))
        .collect();
    if failed.is_empty() {
        "no check ran".to_string()
    } else {
        failed.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::HealthCheck;
    use std::collections::BTreeMap;

    fn job(probes: Option<Vec<Probe>>, commands: &[&str]) -> JobHealth {
        JobHealth {
            job: "api".into(),
            probes: probes.map(|checks| HealthCheck {
                checks,
                timeout_seconds: 3,
                wait: HealthWait {
                    attempts: 4,
                    interval_seconds: 2,
                },
            }),
            ports: BTreeMap::from([("web".to_string(), 8080)]),
            commands: commands.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn a_job_without_probes_or_commands_has_no_plan() {
        assert_eq!(JobPlan::of(&job(None, &[])), None);
    }

    #[test]
    fn probes_resolve_their_ports_and_commands_come_last() {
        let plan = JobPlan::of(&job(
            Some(vec![
                Probe::Ssh {
                    command: "true".into(),
                },
                Probe::Http {
                    port: "web".into(),
                    path: "/health".into(),
                    expect_status: 200,
                    scheme: HttpScheme::Https,
                },
                Probe::Tcp { port: "web".into() },
            ]),
            &["command_health"],
        ))
        .unwrap();
        let labels: Vec<String> = plan.probes.iter().map(PlannedCheck::label).collect();
        assert_eq!(
            labels,
            ["ssh true", "https web:8080/health", "tcp web:8080"]
        );
        assert_eq!(plan.commands, ["command_health"]);
        assert_eq!(plan.timeout, Duration::from_secs(3));
        assert_eq!(plan.command_timeout, Some(Duration::from_secs(3)));
        assert_eq!(plan.wait.attempts, 4);
    }

    #[test]
    fn a_port_without_a_number_becomes_a_failing_check_instead_of_a_skipped_one() {
        let plan = JobPlan::of(&job(
            Some(vec![Probe::Tcp {
                port: "admin".into(),
            }]),
            &[],
        ))
        .unwrap();
        assert_eq!(
            plan.probes,
            [PlannedCheck::UnassignedPort {
                probe: "tcp",
                port_name: "admin".into()
            }]
        );
    }

    #[test]
    fn commands_alone_use_the_default_timeout_and_wait() {
        let plan = JobPlan::of(&job(None, &["command_health"])).unwrap();
        assert_eq!(
            plan.timeout,
            Duration::from_secs(u64::from(DEFAULT_TIMEOUT_SECONDS))
        );
        assert_eq!(plan.wait, HealthWait::default());
        assert_eq!(plan.command_timeout, None);
    }

    #[test]
    fn a_health_check_block_without_probes_bounds_and_paces_its_commands() {
        let plan = JobPlan::of(&job(Some(vec![]), &["command_health"])).unwrap();
        assert!(plan.probes.is_empty());
        assert_eq!(plan.command_timeout, Some(Duration::from_secs(3)));
        assert_eq!(
            plan.wait,
            HealthWait {
                attempts: 4,
                interval_seconds: 2
            }
        );
    }

    fn result(check: &str, outcome: CheckOutcome) -> CheckResult {
        CheckResult {
            check: check.into(),
            outcome,
        }
    }

    #[test]
    fn healthy_means_every_check_passed_and_at_least_one_ran() {
        let passed = result("tcp web:1", CheckOutcome::Passed("connected".into()));
        let failed = result("ssh x", CheckOutcome::Failed("exit 1".into()));
        let not_run = result("command c", CheckOutcome::NotRun("probes failed".into()));
        assert!(is_healthy(std::slice::from_ref(&passed)));
        assert!(!is_healthy(&[]));
        assert!(!is_healthy(&[passed.clone(), not_run.clone()]));
        assert_eq!(
            summary(&[passed.clone(), failed.clone(), not_run]),
            "ssh x: exit 1"
        );
        assert_eq!(summary(&[passed]), "passed: tcp web:1");
    }
}
