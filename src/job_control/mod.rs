//! Work an operator starts by hand on workers, outside a deploy: ad-hoc shell commands
//! (`maand run_command`), the capacity probe of `maand worker_facts`, and Makefile targets of
//! one job (`maand job start|stop|restart|status|run`).
//!
//! Owns which workers take part (every filter checked against what exists, so a misspelt
//! worker or label fails instead of silently matching nothing), the SSH settings derived from
//! `maand.conf`, the command lines, the fan-out with per-worker timing, and the sync check that
//! refuses to run a job target on a worker whose deployed tree is not the one the catalog
//! describes (its `worker.json` names another bucket or worker, or another `update_seq`).
//!
//! Never prints, never writes the catalog or the workspace (callers pass observers that
//! journal what happens) and never changes a worker's files.
//!
//! The use cases of `run_command` and `job start|stop|restart|status|run`, with their
//! `--health_check` afterwards, are [`run_command`] and [`job_target`] (in `actions.rs`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::catalog::tables::{self, Selection, TableError};
use crate::catalog::{self, CatalogError};
use crate::events::{CommandFinished, Event};
use crate::remote::{
    bucket_dir_on_worker, runner_command, step_command, CapturedOutput, Fleet, Observer,
    RemoteCommand, RemoteError, Session, StepReceiptKey, WorkerIdentity,
};
use crate::workspace;

mod actions;
pub use actions::{job_target, run_command, Acted, ShellRequest, TargetRequest};

/// How long a worker may take to accept a connection unless the operator says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most workers a job target runs on at once.
pub const JOB_TARGET_CONCURRENCY: usize = 32;
/// The targets that change what runs (as deploy's steps do): they run detached on the worker
/// and finish even when maand is interrupted. Every other target stops with maand.
const LIFECYCLE_TARGETS: [&str; 4] = ["start", "stop", "restart", "reload"];
/// Longest wait for a worker's `worker.json`.
const IDENTITY_TIMEOUT: Duration = Duration::from_secs(30);
/// Exit code of the identity probe when the file does not exist.
const NOT_DEPLOYED_EXIT: i32 = 3;

/// Why hand-run work could not start. Each message names what was asked for and what exists.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{source_name} lists no workers; add them to workspace/workers.json{}", if *.source_name == CATALOG { " and run `maand build`" } else { "" })]
    NoWorkers { source_name: &'static str },
    #[error("unknown {} {}: not in {source_name} (known: {}){}", plural("worker", names.len()), names.join(", "), list_or_none(known), if *.source_name == CATALOG { "; run `maand build` if you just added it to workspace/workers.json" } else { "" })]
    UnknownWorkers {
        names: Vec<String>,
        source_name: &'static str,
        known: Vec<String>,
    },
    #[error("no worker in {source_name} has the {} {} (labels in use: {})", plural("label", names.len()), names.join(", "), list_or_none(known))]
    UnknownLabels {
        names: Vec<String>,
        source_name: &'static str,
        known: Vec<String>,
    },
    #[error("{target:?} is not a Makefile target maand can run: use letters, digits, '.', '_' and '-', starting with a letter or digit")]
    InvalidTarget { target: String },
    #[error(
        "job {job} has no active allocation (every one is disabled or removed); nothing to run"
    )]
    NoActiveAllocations { job: String },
    #[error("job {job} has no active allocation on {}: {} (active on: {})", plural("worker", workers.len()), workers.join(", "), list_or_none(active))]
    NotAllocated {
        job: String,
        workers: Vec<String>,
        active: Vec<String>,
    },
    #[error("the catalog has no bucket identity; run `maand init`")]
    NoBucket,
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// Where workers were looked up, as named in messages.
pub const CATALOG: &str = "the catalog";
/// See [`CATALOG`].
pub const WORKERS_FILE: &str = "workspace/workers.json";

fn plural(word: &str, count: usize) -> String {
    if count == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// A worker that filters may pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub host: String,
    pub labels: Vec<String>,
}

/// `--workers` / `--labels`: empty lists mean every worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerFilter {
    pub workers: Vec<String>,
    /// A worker matches when it has any of these labels.
    pub labels: Vec<String>,
}

/// The hosts of `candidates` that `filter` picks, in the candidates' order. Every named worker
/// and every label must exist among the candidates (`source_name` says where they came from).
pub fn select_workers(
    candidates: &[Candidate],
    filter: &WorkerFilter,
    source_name: &'static str,
) -> Result<Vec<String>, ControlError> {
    if candidates.is_empty() {
        return Err(ControlError::NoWorkers { source_name });
    }
    let wanted: Vec<String> = filter
        .workers
        .iter()
        .map(|worker| workspace::parse_host(worker).unwrap_or_else(|_| worker.clone()))
        .collect();
    let unknown: Vec<String> = wanted
        .iter()
        .filter(|worker| !candidates.iter().any(|c| &c.host == *worker))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(ControlError::UnknownWorkers {
            names: unknown,
            source_name,
            known: candidates.iter().map(|c| c.host.clone()).collect(),
        });
    }
    let unknown: Vec<String> = filter
        .labels
        .iter()
        .filter(|label| !candidates.iter().any(|c| c.labels.contains(label)))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        let mut known: Vec<String> = candidates
            .iter()
            .flat_map(|c| c.labels.iter().cloned())
            .collect();
        known.sort();
        known.dedup();
        return Err(ControlError::UnknownLabels {
            names: unknown,
            source_name,
            known,
        });
    }
    Ok(candidates
        .iter()
        .filter(|c| wanted.is_empty() || wanted.contains(&c.host))
        .filter(|c| filter.labels.is_empty() || c.labels.iter().any(|l| filter.labels.contains(l)))
        .map(|c| c.host.clone())
        .collect())
}

/// The workers of the catalog, for [`select_workers`].
pub fn catalog_candidates(conn: &Connection) -> Result<Vec<Candidate>, ControlError> {
    Ok(tables::workers(conn)?
        .into_iter()
        .map(|row| Candidate {
            host: row.host,
            labels: row.labels,
        })
        .collect())
}

/// The bucket id recorded by `maand init`.
pub fn bucket_id(conn: &Connection) -> Result<String, ControlError> {
    catalog::read::bucket_id(conn)?.ok_or(ControlError::NoBucket)
}

/// What `run_command` runs on `worker`: `script` under bash, started in the bucket's directory
/// on the worker when it exists (the login directory otherwise), with `BUCKET_ID` and
/// `WORKER_IP` in its environment. Runs as the SSH user, not through sudo.
pub fn shell_command(
    bucket_id: &str,
    worker: &str,
    script: &str,
    timeout: Duration,
) -> Result<RemoteCommand, RemoteError> {
    const WRAPPER: &str = "export BUCKET_ID=\"$1\" WORKER_IP=\"$2\"; \
                           cd \"$3\" 2>/dev/null || true; exec bash -c \"$4\"";
    RemoteCommand::new(
        [
            "bash",
            "-c",
            WRAPPER,
            "maand-run-command",
            bucket_id,
            worker,
            &bucket_dir_on_worker(bucket_id),
            script,
        ],
        timeout,
    )
}

/// How hand-run work ended on one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran to its end with this exit code.
    Exited(i32),
    /// The worker was not asked to run anything: its deployed tree is out of sync.
    Refused(Drift),
    /// No session to the worker: nothing ran there.
    Unreachable(RemoteError),
    /// The command started but did not finish (timeout, lost connection), or could not start.
    Failed(RemoteError),
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        matches!(self, Outcome::Exited(0))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(code) => write!(f, "exit {code}"),
            Outcome::Refused(drift) => write!(f, "refused: {drift}"),
            Outcome::Unreachable(error) | Outcome::Failed(error) => write!(f, "{error}"),
        }
    }
}

/// One worker's part in hand-run work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOutcome {
    pub worker: String,
    pub outcome: Outcome,
    /// From the start of this worker's turn (connecting included) to its end.
    pub elapsed: Duration,
}

/// The result of `task` on one worker, with the time its turn took.
#[derive(Debug)]
pub struct Timed<T> {
    pub worker: String,
    /// `Ok(Err(..))`: connected, and the task failed; `Err(..)`: no session.
    pub result: Result<Result<T, RemoteError>, RemoteError>,
    pub elapsed: Duration,
}

impl<T> Timed<T> {
    /// The outcome of a task that ran a command to its end.
    fn outcome(self, exit_code: impl FnOnce(T) -> i32) -> WorkerOutcome {
        WorkerOutcome {
            worker: self.worker,
            outcome: match self.result {
                Ok(Ok(done)) => Outcome::Exited(exit_code(done)),
                Ok(Err(error)) => Outcome::Failed(error),
                Err(error) => Outcome::Unreachable(error),
            },
            elapsed: self.elapsed,
        }
    }
}

/// Runs `task` with the session of every worker in `workers`, at most `concurrency` at once;
/// results come back in the order of `workers`. Unlike [`Fleet::for_each`], each result
/// carries the time its worker's turn took, connecting included, so an unreachable worker
/// shows how long it was waited for.
pub async fn fan_out<T, F, Fut>(
    fleet: &Fleet,
    workers: &[String],
    concurrency: usize,
    task: F,
) -> Vec<Timed<T>>
where
    T: Send + 'static,
    F: Fn(Arc<Session>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, RemoteError>> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let task = Arc::new(task);
    let mut running = JoinSet::new();
    for (position, worker) in workers.iter().enumerate() {
        let (fleet, limit, task, worker) =
            (fleet.clone(), limit.clone(), task.clone(), worker.clone());
        running.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let started = Instant::now();
            let result = match fleet.session(&worker).await {
                Ok(session) => Ok(task(session).await),
                Err(error) => Err(error),
            };
            let elapsed = started.elapsed();
            (
                position,
                Timed {
                    worker,
                    result,
                    elapsed,
                },
            )
        });
    }
    let mut results: Vec<Option<Timed<T>>> = workers.iter().map(|_| None).collect();
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok((position, timed)) => results[position] = Some(timed),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    results
        .into_iter()
        .map(|timed| timed.expect("every worker reports"))
        .collect()
}

/// Runs `script` on every worker in `workers` (see [`shell_command`]).
pub async fn run_shell(
    fleet: &Fleet,
    bucket_id: &str,
    workers: &[String],
    script: &str,
    timeout: Duration,
    concurrency: usize,
    observer: Arc<dyn Observer>,
) -> Vec<WorkerOutcome> {
    let (bucket_id, script) = (Arc::<str>::from(bucket_id), Arc::<str>::from(script));
    fan_out(fleet, workers, concurrency, move |session| {
        let (bucket_id, script, observer) = (bucket_id.clone(), script.clone(), observer.clone());
        async move {
            let command = shell_command(&bucket_id, session.worker(), &script, timeout)?;
            session.run(&command, observer.as_ref()).await
        }
    })
    .await
    .into_iter()
    .map(|timed| timed.outcome(|done| done.exit_code))
    .collect()
}

/// `command_end` events for the workers where nothing ran, so the journal names every
/// worker's fate: unreachable ones (their error) and refused ones (`refused: <drift>`).
/// Workers that ran something already have their events from the observer.
pub fn unrun_events(
    outcomes: &[WorkerOutcome],
    job: Option<&str>,
    phase: &str,
    action: &str,
) -> Vec<Event> {
    outcomes
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Unreachable(_) | Outcome::Refused(_)))
        .map(|o| {
            Event::CommandFinished(CommandFinished {
                worker: o.worker.clone(),
                job: job.map(str::to_string),
                phase: phase.to_string(),
                action: action.to_string(),
                exit_code: None,
                duration_ms: o.elapsed.as_millis() as u64,
                error: Some(o.outcome.to_string()),
            })
        })
        .collect()
}

/// Checks a Makefile target name before anything runs: the rule the worker's runner applies.
pub fn check_target(target: &str) -> Result<(), ControlError> {
    let mut bytes = target.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !target.contains("..");
    if valid {
        Ok(())
    } else {
        Err(ControlError::InvalidTarget {
            target: target.to_string(),
        })
    }
}

/// What the catalog says a worker's deployed tree must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub bucket_id: String,
    pub worker_id: String,
    pub update_seq: u64,
}

/// One worker a job target is meant for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetWorker {
    pub host: String,
    pub expected: Expected,
}

/// A job target and the workers it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTargets {
    pub job: String,
    pub target: String,
    pub bucket_id: String,
    pub workers: Vec<TargetWorker>,
}

/// Where `target` of `job` runs: the job's active allocations (not disabled, not removed),
/// limited to `allocations` (worker hosts) when that is not empty.
pub fn plan_job_targets(
    conn: &Connection,
    job: &str,
    target: &str,
    allocations: &[String],
) -> Result<JobTargets, ControlError> {
    check_target(target)?;
    let info = catalog::read::bucket_info(conn)?.ok_or(ControlError::NoBucket)?;
    let selection = Selection {
        jobs: vec![job.to_string()],
        workers: Vec::new(),
    };
    let active: Vec<String> = tables::allocations(conn, &selection)?
        .into_iter()
        .filter(|row| !row.removed && !row.disabled)
        .map(|row| row.worker_ip)
        .collect();
    if active.is_empty() {
        return Err(ControlError::NoActiveAllocations {
            job: job.to_string(),
        });
    }
    let wanted: Vec<String> = allocations
        .iter()
        .map(|worker| workspace::parse_host(worker).unwrap_or_else(|_| worker.clone()))
        .collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|worker| !active.contains(worker))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(ControlError::NotAllocated {
            job: job.to_string(),
            workers: missing,
            active,
        });
    }
    let workers = tables::workers(conn)?;
    let targets = active
        .into_iter()
        .filter(|host| wanted.is_empty() || wanted.contains(host))
        .map(|host| {
            let worker_id = workers
                .iter()
                .find(|row| row.host == host)
                .map(|row| row.worker_id.clone())
                .unwrap_or_default();
            TargetWorker {
                host,
                expected: Expected {
                    bucket_id: info.bucket_id.clone(),
                    worker_id,
                    update_seq: info.update_seq,
                },
            }
        })
        .collect();
    Ok(JobTargets {
        job: job.to_string(),
        target: target.to_string(),
        bucket_id: info.bucket_id,
        workers: targets,
    })
}

/// Why a worker's deployed tree does not match the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// No `worker.json` on the worker.
    NotDeployed {
        path: String,
    },
    /// The file exists but could not be read or parsed.
    Unreadable {
        path: String,
        reason: String,
    },
    OtherBucket {
        path: String,
        found: String,
    },
    OtherWorker {
        path: String,
        found: String,
        expected: String,
    },
    UpdateSeq {
        worker: u64,
        catalog: u64,
    },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::NotDeployed { path } => {
                write!(f, "not deployed yet ({path} is missing): run maand deploy")
            }
            Drift::Unreadable { path, reason } => {
                write!(f, "cannot read {path}: {reason}; run maand deploy")
            }
            Drift::OtherBucket { path, found } => write!(
                f,
                "{path} belongs to bucket {found}, not this one: run maand deploy"
            ),
            Drift::OtherWorker {
                path,
                found,
                expected,
            } => write!(
                f,
                "{path} names worker id {found}, the catalog has {expected}: run maand deploy"
            ),
            Drift::UpdateSeq { worker, catalog } => write!(
                f,
                "worker is at update_seq {worker}, catalog at {catalog}: run maand deploy"
            ),
        }
    }
}

/// The path of `worker.json` on a worker.
pub fn identity_path(bucket_id: &str) -> String {
    format!("{}/worker.json", bucket_dir_on_worker(bucket_id))
}

/// Largest `worker.json` maand reads; the one deploy writes is a few hundred bytes.
pub const MAX_IDENTITY_BYTES: u64 = 64 * 1024;

/// Prints the worker's `worker.json`, exits 3 when it does not exist, and refuses (exit 4, with
/// the reason on stderr) one larger than [`MAX_IDENTITY_BYTES`].
pub fn identity_command(bucket_id: &str) -> Result<RemoteCommand, RemoteError> {
    let script = format!(
        "[ -e \"$1\" ] || exit 3; size=$(wc -c < \"$1\") || exit 4; \
         if [ \"$size\" -gt {MAX_IDENTITY_BYTES} ]; then \
         echo \"it is $size bytes, more than the {MAX_IDENTITY_BYTES} maand reads: not a file maand wrote; remove it and run maand deploy\" >&2; exit 4; fi; \
         cat -- \"$1\""
    );
    RemoteCommand::new(
        [
            "bash",
            "-c",
            &script,
            "maand-sync-check",
            &identity_path(bucket_id),
        ],
        IDENTITY_TIMEOUT,
    )
}

/// Compares what [`identity_command`] printed on a worker with what the catalog expects.
pub fn check_identity(expected: &Expected, captured: &CapturedOutput) -> Result<(), Drift> {
    let path = identity_path(&expected.bucket_id);
    match captured.outcome.exit_code {
        0 => {}
        NOT_DEPLOYED_EXIT => return Err(Drift::NotDeployed { path }),
        code => {
            return Err(Drift::Unreadable {
                reason: captured
                    .stderr
                    .last()
                    .cloned()
                    .unwrap_or_else(|| format!("exit code {code}")),
                path,
            })
        }
    }
    let identity: WorkerIdentity =
        serde_json::from_str(&captured.stdout.join("\n")).map_err(|error| Drift::Unreadable {
            path: path.clone(),
            reason: error.to_string(),
        })?;
    if identity.bucket_id != expected.bucket_id {
        return Err(Drift::OtherBucket {
            path,
            found: identity.bucket_id,
        });
    }
    if identity.worker_id != expected.worker_id {
        return Err(Drift::OtherWorker {
            path,
            found: identity.worker_id,
            expected: expected.worker_id.clone(),
        });
    }
    if identity.update_seq != expected.update_seq {
        return Err(Drift::UpdateSeq {
            worker: identity.update_seq,
            catalog: expected.update_seq,
        });
    }
    Ok(())
}

/// Runs the job target of `plan` through each worker's runner, after reading every worker's
/// `worker.json` (one round trip each) and refusing the workers whose tree is out of sync.
/// `check_observer` sees the identity reads, `target_observer` the runner.
pub async fn run_job_target(
    fleet: &Fleet,
    plan: &JobTargets,
    timeout: Duration,
    check_observer: Arc<dyn Observer>,
    target_observer: Arc<dyn Observer>,
) -> Result<Vec<WorkerOutcome>, ControlError> {
    let probe = Arc::new(identity_command(&plan.bucket_id)?);
    let target = runner_command(
        &plan.bucket_id,
        &plan.target,
        std::slice::from_ref(&plan.job),
        timeout,
    )?;
    let runner = Arc::new(if LIFECYCLE_TARGETS.contains(&plan.target.as_str()) {
        // A lifecycle target runs detached under the runner's step mode and to its end on
        // Ctrl-C, so neither a killed maand nor a dropped connection stops a restart half-way.
        let step = StepReceiptKey {
            deploy_id: format!("job-{}", uuid::Uuid::new_v4()),
            key: format!("{}.{}", plan.job, plan.target),
        };
        step_command(&plan.bucket_id, &step, timeout, target.argv())?.finish_on_interrupt()
    } else {
        // Any other target (`status`, a migration, a backup) serves the operator who asked:
        // it stops on the worker when maand is interrupted or dies.
        target
    });
    let hosts: Vec<String> = plan.workers.iter().map(|w| w.host.clone()).collect();
    let checks = fan_out(fleet, &hosts, JOB_TARGET_CONCURRENCY, move |session| {
        let (probe, observer) = (probe.clone(), check_observer.clone());
        async move { session.capture(&probe, observer.as_ref()).await }
    })
    .await;
    // Refused and unreachable workers are settled by the check; the rest by their run.
    let mut settled: Vec<(String, Option<Outcome>, Duration)> = Vec::with_capacity(checks.len());
    let mut in_sync = Vec::new();
    for (worker, check) in plan.workers.iter().zip(checks) {
        let outcome = match check.result {
            Err(error) => Some(Outcome::Unreachable(error)),
            Ok(Err(error)) => Some(Outcome::Failed(error)),
            Ok(Ok(captured)) => match check_identity(&worker.expected, &captured) {
                Ok(()) => {
                    in_sync.push(worker.host.clone());
                    None
                }
                Err(drift) => Some(Outcome::Refused(drift)),
            },
        };
        settled.push((worker.host.clone(), outcome, check.elapsed));
    }
    let runs = fan_out(fleet, &in_sync, JOB_TARGET_CONCURRENCY, move |session| {
        let (runner, observer) = (runner.clone(), target_observer.clone());
        async move { session.run(&runner, observer.as_ref()).await }
    })
    .await;
    for run in runs {
        let run = run.outcome(|done| done.exit_code);
        let (_, outcome, elapsed) = settled
            .iter_mut()
            .find(|(host, _, _)| *host == run.worker)
            .expect("every in-sync worker was checked");
        *elapsed += run.elapsed;
        *outcome = Some(run.outcome);
    }
    let outcomes = settled
        .into_iter()
        .map(|(worker, outcome, elapsed)| WorkerOutcome {
            worker,
            outcome: outcome.expect("every worker is settled by its check or its run"),
            elapsed,
        })
        .collect();
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::CommandOutcome;

    fn candidates() -> Vec<Candidate> {
        vec![
            Candidate {
                host: "127.9.0.1".into(),
                labels: vec!["worker".into(), "web".into()],
            },
            Candidate {
                host: "127.9.0.2".into(),
                labels: vec!["db".into(), "worker".into()],
            },
            Candidate {
                host: "127.9.0.3".into(),
                labels: vec!["web".into(), "worker".into()],
            },
        ]
    }

    fn filter(workers: &[&str], labels: &[&str]) -> WorkerFilter {
        WorkerFilter {
            workers: workers.iter().map(|s| s.to_string()).collect(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn no_filter_selects_every_worker_in_order() {
        let all = select_workers(&candidates(), &filter(&[], &[]), CATALOG).unwrap();
        assert_eq!(all, ["127.9.0.1", "127.9.0.2", "127.9.0.3"]);
    }

    #[test]
    fn workers_are_picked_by_host_in_candidate_order() {
        let some = select_workers(
            &candidates(),
            &filter(&["127.9.0.3", "127.9.0.1"], &[]),
            CATALOG,
        )
        .unwrap();
        assert_eq!(some, ["127.9.0.1", "127.9.0.3"]);
    }

    #[test]
    fn labels_match_any() {
        let some = select_workers(&candidates(), &filter(&[], &["db", "web"]), CATALOG).unwrap();
        assert_eq!(some, ["127.9.0.1", "127.9.0.2", "127.9.0.3"]);
        let web = select_workers(&candidates(), &filter(&[], &["web"]), CATALOG).unwrap();
        assert_eq!(web, ["127.9.0.1", "127.9.0.3"]);
    }

    #[test]
    fn unknown_workers_and_labels_are_named() {
        let error =
            select_workers(&candidates(), &filter(&["127.9.0.9"], &[]), CATALOG).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown worker 127.9.0.9: not in the catalog (known: 127.9.0.1, 127.9.0.2, 127.9.0.3); run `maand build` if you just added it to workspace/workers.json"
        );
        let error =
            select_workers(&candidates(), &filter(&[], &["gpu", "web"]), WORKERS_FILE).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no worker in workspace/workers.json has the label gpu (labels in use: db, web, worker)"
        );
        let error = select_workers(&[], &filter(&[], &[]), CATALOG).unwrap_err();
        assert!(error.to_string().contains("run `maand build`"), "{error}");
    }

    #[test]
    fn run_command_scripts_get_the_bucket_context() {
        let command =
            shell_command("b1", "127.9.0.1", "echo $BUCKET_ID", Duration::from_secs(5)).unwrap();
        assert_eq!(
            &command.argv()[3..],
            [
                "maand-run-command",
                "b1",
                "127.9.0.1",
                "/opt/worker/b1",
                "echo $BUCKET_ID"
            ]
        );
        // The wrapper itself, run locally: the directory is missing, so it stays where it is.
        let output = std::process::Command::new(&command.argv()[0])
            .args(&command.argv()[1..])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "b1\n");
    }

    #[test]
    fn targets_follow_the_runner_name_rule() {
        for good in ["start", "migrate", "db.backup", "v2_up-now"] {
            check_target(good).unwrap();
        }
        for bad in ["", "-rf", "../x", "a b", "start;reboot", ".hidden"] {
            assert!(check_target(bad).is_err(), "{bad:?}");
        }
    }

    fn captured(code: i32, stdout: &str) -> CapturedOutput {
        CapturedOutput {
            outcome: CommandOutcome {
                exit_code: code,
                duration: Duration::ZERO,
            },
            stdout: stdout.lines().map(str::to_string).collect(),
            stderr: vec!["cat: permission denied".into()],
        }
    }

    fn expected() -> Expected {
        Expected {
            bucket_id: "b1".into(),
            worker_id: "w1".into(),
            update_seq: 4,
        }
    }

    fn identity(bucket: &str, worker: &str, seq: u64) -> String {
        format!(
            r#"{{"bucket_id": "{bucket}", "worker_id": "{worker}", "update_seq": {seq}, "labels": ["worker"]}}"#
        )
    }

    #[test]
    fn a_matching_worker_json_passes() {
        check_identity(&expected(), &captured(0, &identity("b1", "w1", 4))).unwrap();
    }

    #[test]
    fn drift_is_named_with_what_to_do() {
        let drift = |code, text: &str| {
            check_identity(&expected(), &captured(code, text))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            drift(3, ""),
            "not deployed yet (/opt/worker/b1/worker.json is missing): run maand deploy"
        );
        assert_eq!(
            drift(0, &identity("b1", "w1", 2)),
            "worker is at update_seq 2, catalog at 4: run maand deploy"
        );
        assert!(drift(0, &identity("b2", "w1", 4)).contains("belongs to bucket b2"));
        assert!(drift(0, &identity("b1", "w9", 4)).contains("names worker id w9"));
        assert!(drift(1, "").contains("permission denied"));
        assert!(drift(0, "{").contains("cannot read"));
    }
}
