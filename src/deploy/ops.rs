//! The deploy's effects on real workers: rsync of staged trees, runner targets, removals and
//! `jobs.json` rewrites through the remote layer, with every command journaled.

use super::execute::{
    CopyThenTarget, HookAllocation, RemoteOps, StepAttempt, StepError, StepJournal,
};
use super::hook_receipts::{HookReceipt, HookReceipts, ReceiptOutcome, ReceiptRun};
use crate::activity::SharedRun;
use crate::events::DeployFlags;
use crate::events::{CommandOutput, Event, Stream};
use crate::hooks::{AllocationContext, HookCatalog, HookHost, HookRequest};
use crate::kv::secret::SecretKey;
use crate::remote::{
    bucket_dir_on_worker, shell_quote, step_command, step_command_applying, FilterRule, Fleet,
    Observer, RemoteCommand, RemoteError, RemoteRecord, StepReceiptKey, Transfer, DELTA_APPLIED,
    STEP_TIMED_OUT, STEP_VANISHED,
};
use crate::workspace::CommandEvent;
use std::path::PathBuf;
use std::time::Duration;

/// How long one transfer or housekeeping command may run.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);

/// A tree staged again after `pre_deploy`: its hash and (path, file hash) pairs.
type RestagedTree = (String, Vec<(String, String)>);

/// Per worker: the outcome of its tool check (run once, after a step there failed), or known
/// good from an earlier deploy.
type Readiness = std::sync::Mutex<
    std::collections::HashMap<String, std::sync::Arc<tokio::sync::OnceCell<Result<(), StepError>>>>,
>;

/// Remote operations over an open fleet, recording into the run.
pub struct FleetOps {
    pub fleet: Fleet,
    /// Filled when a step fails on a worker not known good, or from earlier deploys.
    pub ready: Readiness,
    /// The bucket (for job commands and restaging).
    pub bucket: crate::bucket::Bucket,
    /// Trees staged again after `pre_deploy` hooks: allocation → (tree hash, file hashes).
    pub restaged: std::sync::Mutex<std::collections::BTreeMap<String, RestagedTree>>,
    /// Workers whose staged `jobs.json` this run has already shipped with a copy.
    pub shipped: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// One copy at a time per worker: jobs of a wave deploy side by side, and two rsyncs
    /// creating the same bucket directory on a fresh worker race (`mkdir: File exists`).
    pub copying:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    pub run: SharedRun,
    pub bucket_id: String,
    /// `tmp/workers/`: one staged image of `/opt/worker/<bucket_id>/` per worker.
    pub staging_root: PathBuf,
    /// Echo output lines to the terminal.
    pub echo: bool,
    /// How long a lifecycle target may run on a worker (`step_time_limit` in maand.conf).
    pub step_limit: Duration,
    /// Hashes of the staged files, shared by the deltas built for each worker.
    pub staged_hashes: super::delta::StagedHashes,
    /// The files staged trees link to (`tmp/store/`).
    pub store: super::stage::FileStore,
}

/// The phase under which the commands of a deploy step with `action` are journaled: copies
/// under `rsync`, removals and stops under `reconcile`, the rollout's targets under `rollout`.
pub(crate) fn step_phase(action: &str) -> &'static str {
    match action {
        "sync" | "finalize" => "rsync",
        "stop" | "remove_files" | "remove_worker" => "reconcile",
        _ => "rollout",
    }
}

fn classify(error: RemoteError) -> StepError {
    match error {
        RemoteError::Refused { .. }
        | RemoteError::ConnectTimeout { .. }
        | RemoteError::ConnectFailed { .. } => StepError::Unreachable(error.to_string()),
        other => StepError::Failed(other.to_string()),
    }
}

impl FleetOps {
    pub fn new(
        bucket: crate::bucket::Bucket,
        fleet: Fleet,
        run: SharedRun,
        bucket_id: String,
        staging_root: PathBuf,
        echo: bool,
        step_limit: Duration,
    ) -> FleetOps {
        let store = super::stage::FileStore::new(bucket.tmp_dir().join("store"));
        FleetOps {
            fleet,
            ready: Readiness::default(),
            shipped: Default::default(),
            copying: Default::default(),
            bucket,
            restaged: Default::default(),
            run,
            bucket_id,
            staging_root,
            echo,
            step_limit,
            staged_hashes: Default::default(),
            store,
        }
    }

    /// Skips the tool check on `workers`: an earlier deploy copied this bucket there through
    /// `sudo rsync` and ran the runner, so the check's round trip (and its `sudo`) would only
    /// repeat what is known. A tool removed since shows as the failing step's own error.
    pub fn trusting_tools_of(self, workers: std::collections::BTreeSet<String>) -> FleetOps {
        {
            let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
            for worker in workers {
                let known = tokio::sync::OnceCell::new_with(Some(Ok(())));
                ready.insert(worker, std::sync::Arc::new(known));
            }
        }
        self
    }

    /// Checks the worker's tools (one round trip); later calls return the remembered answer.
    async fn ready(&self, worker: &str) -> Result<(), StepError> {
        let cell = {
            let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
            ready.entry(worker.to_string()).or_default().clone()
        };
        cell.get_or_init(|| async {
            let observer =
                std::sync::Arc::new(self.run.observer(None, "validate", "prerequisites", false));
            match crate::remote::check_worker_tools(&self.fleet, &[worker.to_string()], observer)
                .await
            {
                Ok(()) => Ok(()),
                Err(crate::remote::PrerequisiteError::WorkersNotReady { problems }) => {
                    Err(match problems.into_iter().next() {
                        Some(crate::remote::WorkerProblem::Unreachable(error)) => classify(error),
                        Some(problem) => {
                            StepError::Failed(format!("worker is not ready: {problem}"))
                        }
                        None => StepError::Failed("worker is not ready".into()),
                    })
                }
                Err(other) => Err(StepError::Failed(other.to_string())),
            }
        })
        .await
        .clone()
    }

    /// The error a failed step on `worker` reports. A worker's tools are only checked once
    /// something failed there (a deploy that works needs no check, and a check costs every
    /// worker a privileged process): when the check finds a missing tool or a `sudo` that
    /// asks for a password, that is the error, rather than the command's exit code.
    async fn diagnosed(&self, worker: &str, error: StepError) -> StepError {
        match error {
            StepError::Failed(_) => match self.ready(worker).await {
                Err(problem) => problem,
                Ok(()) => error,
            },
            other => other,
        }
    }

    /// Opens the worker's master ahead of its first step.
    pub async fn warm_up(&self, worker: &str) {
        let _ = self.fleet.session(worker).await;
    }

    async fn run_command(
        &self,
        worker: &str,
        job: Option<&str>,
        phase: &str,
        action: &str,
        command: RemoteCommand,
    ) -> Result<(), StepError> {
        let exit_code = self
            .run_for_exit_code(worker, job, phase, action, command)
            .await?;
        if exit_code == 0 {
            Ok(())
        } else {
            Err(StepError::Failed(format!("`{action}` exited with code {exit_code} (see `maand logs show --worker {worker} --format human`)")))
        }
    }

    /// Runs `command` with its activity journaled; returns its exit code.
    async fn run_for_exit_code(
        &self,
        worker: &str,
        job: Option<&str>,
        phase: &str,
        action: &str,
        command: RemoteCommand,
    ) -> Result<i32, StepError> {
        let session = self.fleet.session(worker).await.map_err(classify)?;
        let observer = self.run.observer(job, phase, action, self.echo);
        let outcome = session.run(&command, &observer).await.map_err(classify)?;
        if let Some(error) = observer.journal_error() {
            return Err(StepError::Failed(format!(
                "recording output failed: {error}"
            )));
        }
        Ok(outcome.exit_code)
    }

    fn script(&self, script: &str, timeout: Duration) -> Result<RemoteCommand, StepError> {
        RemoteCommand::bash(script, timeout)
            .map(|command| command.privileged().finish_on_interrupt())
            .map_err(|e| StepError::Failed(e.to_string()))
    }

    /// Copies the staged tree of `job` and the worker's own files.
    async fn copy(&self, worker: &str, job: &str) -> Result<(), StepError> {
        let lane = self.copy_lane(worker);
        let _one_copy_at_a_time = lane.lock().await;
        let session = self.fleet.session(worker).await.map_err(classify)?;
        let transfer = Transfer {
            source: self.staging_root.join(worker),
            destination: bucket_dir_on_worker(&self.bucket_id),
            filters: vec![
                FilterRule::Include("/worker.json".into()),
                FilterRule::Include("/jobs.json".into()),
                FilterRule::Include("/bin/".into()),
                FilterRule::Include("/bin/runner.py".into()),
                FilterRule::Include("/bin/maand_runner.py".into()),
                FilterRule::Include("/jobs/".into()),
                FilterRule::Exclude(format!("/jobs/{job}/data/")),
                FilterRule::Exclude(format!("/jobs/{job}/logs/")),
                FilterRule::Exclude(format!("/jobs/{job}/bin/")),
                FilterRule::Include(format!("/jobs/{job}/***")),
                FilterRule::Exclude("*".into()),
            ],
            delete: true,
            checksum: true,
            timeout: TRANSFER_TIMEOUT,
        };
        // rsync's itemized changes are journaled, not echoed: the terminal shows lifecycle output.
        let observer = self
            .run
            .observer(Some(job), step_phase("sync"), "sync", false);
        session.sync(&transfer, &observer).await.map_err(classify)?;
        match observer.journal_error() {
            Some(error) => Err(StepError::Failed(format!(
                "recording the transfer failed: {error}"
            ))),
            None => Ok(()),
        }
    }
    /// The receipt key and program of a lifecycle target. Deploy knows both versions from its
    /// plan, so the runner's step mode runs make directly (detached, with a receipt) rather
    /// than through the runner's job lookup.
    fn target_step(
        &self,
        step: &StepAttempt,
        job: &str,
        target: &str,
        versions: (&str, &str),
    ) -> (StepReceiptKey, Vec<String>) {
        let dir = format!("{}/jobs/{job}", bucket_dir_on_worker(&self.bucket_id));
        let argv = vec![
            "env".to_string(),
            format!("CURRENT_VERSION={}", versions.0),
            format!("NEW_VERSION={}", versions.1),
            "make".into(),
            "-s".into(),
            "-C".into(),
            dir,
            target.to_string(),
        ];
        let receipt = StepReceiptKey {
            deploy_id: step.deploy_id.clone(),
            key: step.key(),
        };
        (receipt, argv)
    }

    /// A lifecycle target's result from the runner's exit status.
    fn target_result(&self, worker: &str, target: &str, code: i32) -> Result<(), StepError> {
        let see = format!("see `maand logs show --worker {worker} --format human`");
        match code {
            0 => Ok(()),
            STEP_TIMED_OUT => Err(StepError::Failed(format!(
                "`{target}` timed out after {} s ({see})",
                self.step_limit.as_secs()
            ))),
            STEP_VANISHED => Err(StepError::Failed(format!(
                "`{target}` ended on the worker without a receipt (did the worker restart?); its outcome is unknown ({see})"
            ))),
            code => Err(StepError::Failed(format!(
                "`{target}` exited with code {code} ({see})"
            ))),
        }
    }

    /// The files (job path → content hash) the last successful copy of `job` to `worker`
    /// shipped, as the catalog records them; `None` when there was none.
    fn shipped_files(
        &self,
        worker: &str,
        job: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        let text: Option<String> = self.run.with(|run| {
            run.conn()
                .query_row(
                    "SELECT current_files FROM deployments WHERE job = ?1 AND worker_ip = ?2 AND current_files IS NOT NULL",
                    [job, worker],
                    |row| row.get(0),
                )
                .ok()
        });
        serde_json::from_str(&text?).ok()
    }

    /// The lock that lets one copy at a time reach `worker`.
    fn copy_lane(&self, worker: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        self.copying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(worker.to_string())
            .or_default()
            .clone()
    }

    /// Runs a deploy hook; returns how each allocation's process ended and the outcome.
    async fn execute_hook(
        &self,
        job: &str,
        command: &str,
        event: &str,
        allocations: &[HookAllocation],
        env: &[(String, String)],
    ) -> (Vec<ReceiptRun>, ReceiptOutcome) {
        let failed = |error: &dyn std::fmt::Display| {
            (
                Vec::new(),
                ReceiptOutcome::Failed {
                    error: error.to_string(),
                },
            )
        };
        let Some(event_kind) = CommandEvent::from_name(event) else {
            return failed(&format!("unknown job command event {event}"));
        };
        let host = match HookHost::new(&self.bucket) {
            Ok(host) => host,
            Err(error) => return failed(&error),
        };
        let catalog = match self.run.with(|r| HookCatalog::load(r.conn())) {
            Ok(catalog) => catalog,
            Err(error) => return failed(&error),
        };
        let known = catalog.allocations(job);
        let contexts = allocations
            .iter()
            .map(|a| {
                known
                    .iter()
                    .find(|c| c.alloc_id == a.alloc_id)
                    .cloned()
                    .unwrap_or_else(|| AllocationContext {
                        alloc_id: a.alloc_id.clone(),
                        worker_ip: a.worker.clone(),
                        index: None,
                        disabled: false,
                        current_version: a.current_version.clone(),
                        new_version: a.new_version.clone(),
                    })
            })
            .collect();
        let request = HookRequest {
            job: job.to_string(),
            command: command.to_string(),
            event: event_kind,
            allocations: contexts,
            concurrency: 0,
            extra_env: env.iter().cloned().collect(),
            verbose: self.echo,
            timeout: None,
        };
        let outcome = match crate::hooks::run_hook(&host, &catalog, &self.run, &request).await {
            Ok(outcome) => outcome,
            Err(error) => return failed(&error),
        };
        let runs = outcome
            .runs
            .iter()
            .map(|run| ReceiptRun {
                alloc_id: run.alloc_id.clone(),
                worker_ip: run.worker_ip.clone(),
                exit_code: run.exit_code,
                error: run.error.clone(),
            })
            .collect();
        if outcome.succeeded() {
            (
                runs,
                ReceiptOutcome::Succeeded {
                    kv_changes: outcome.kv_changes,
                },
            )
        } else {
            let failures: Vec<String> = outcome
                .failures()
                .into_iter()
                .map(|(worker, error)| format!("{worker}: {error}"))
                .collect();
            let error = format!("{command} ({event}) failed: {}", failures.join("; "));
            (runs, ReceiptOutcome::Failed { error })
        }
    }

    /// Says in the journal (and on the terminal when echoing) that a hook step was answered
    /// from its receipt, with how each allocation's process had ended.
    fn note_replayed(
        &self,
        receipt: &HookReceipt,
        allocations: &[HookAllocation],
    ) -> Result<(), StepError> {
        let ended = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(receipt.ended_ms) * 1_000_000,
        )
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{} ms after the epoch", receipt.ended_ms));
        let lines: Vec<(String, String)> = allocations
            .iter()
            .map(|allocation| {
                let status = match receipt.runs.iter().find(|r| r.alloc_id == allocation.alloc_id) {
                    Some(ReceiptRun { error: None, .. }) => "it succeeded".to_string(),
                    Some(ReceiptRun {
                        error: Some(error), ..
                    }) => format!("it failed: {error}"),
                    None => "it did not start".to_string(),
                };
                let line = format!(
                    "{} ({}) step {} of deploy {} already finished on this host at {ended} ({status}); not run again",
                    receipt.command, receipt.event, receipt.step, receipt.deploy_id
                );
                (allocation.worker.clone(), line)
            })
            .collect();
        self.record_lines(&receipt.job, lines)
    }

    /// Records `line` for every allocation of a hook step (echoed when asked).
    fn note(&self, job: &str, allocations: &[HookAllocation], line: &str) -> Result<(), StepError> {
        let lines = allocations
            .iter()
            .map(|a| (a.worker.clone(), line.to_string()))
            .collect();
        self.record_lines(job, lines)
    }

    /// Records `(worker, line)` pairs as the job command's stderr lines; echoes them when asked.
    fn record_lines(&self, job: &str, lines: Vec<(String, String)>) -> Result<(), StepError> {
        let events: Vec<Event> = lines
            .into_iter()
            .map(|(worker, line)| {
                if self.echo {
                    eprintln!("{job}@{worker} ! {}", crate::terminal::visible(&line));
                }
                Event::CommandOutput(CommandOutput {
                    worker,
                    job: Some(job.to_string()),
                    phase: crate::hooks::PHASE.to_string(),
                    stream: Stream::Stderr,
                    line,
                })
            })
            .collect();
        self.run
            .record(&events)
            .map_err(|e| StepError::Failed(format!("recording job command activity failed: {e}")))
    }
}

/// Journals one runner process that applies a delta and then runs a target as the two steps it
/// stands for: its start and lines up to [`DELTA_APPLIED`] as the copy's command, the rest as
/// the target's. The marker ends the copy's command with status 0 and calls `applied` (which
/// records the copy step's end and the target step's start) before the target's command begins.
struct CopyThenTargetObserver<'a> {
    copy: crate::activity::ActivityObserver,
    target: crate::activity::ActivityObserver,
    copy_description: String,
    target_description: String,
    applied: &'a (dyn Fn() + Sync),
    /// Whether the marker arrived, and when the current command began.
    state: std::sync::Mutex<(bool, std::time::Instant)>,
}

impl CopyThenTargetObserver<'_> {
    /// The observer of the command running now: the target's once the delta is `applied`.
    fn current(&self, applied: bool) -> &crate::activity::ActivityObserver {
        if applied {
            &self.target
        } else {
            &self.copy
        }
    }

    fn applied(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

impl Observer for CopyThenTargetObserver<'_> {
    fn record(&self, record: RemoteRecord) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match record {
            RemoteRecord::CommandStarted { worker, .. } => {
                *state = (false, std::time::Instant::now());
                self.copy.record(RemoteRecord::CommandStarted {
                    worker,
                    command: self.copy_description.clone(),
                });
            }
            RemoteRecord::OutputLine {
                worker,
                stream: crate::remote::Stream::Stdout,
                line,
            } if !state.0 && line == DELTA_APPLIED => {
                self.copy.record(RemoteRecord::CommandFinished {
                    worker: worker.clone(),
                    exit_code: 0,
                    duration: state.1.elapsed(),
                });
                *state = (true, std::time::Instant::now());
                (self.applied)();
                self.target.record(RemoteRecord::CommandStarted {
                    worker,
                    command: self.target_description.clone(),
                });
            }
            // The process's end is the end of whichever command it was running, timed from
            // that command's start.
            RemoteRecord::CommandFinished {
                worker, exit_code, ..
            } => self.current(state.0).record(RemoteRecord::CommandFinished {
                worker,
                exit_code,
                duration: state.1.elapsed(),
            }),
            RemoteRecord::CommandFailed { worker, error, .. } => {
                self.current(state.0).record(RemoteRecord::CommandFailed {
                    worker,
                    error,
                    duration: state.1.elapsed(),
                })
            }
            line => self.current(state.0).record(line),
        }
    }
}

/// A hook step's result from its receipt's outcome.
fn receipt_result(outcome: ReceiptOutcome) -> Result<Vec<Event>, StepError> {
    match outcome {
        ReceiptOutcome::Succeeded { kv_changes } => {
            Ok(kv_changes.into_iter().map(Event::KvChanged).collect())
        }
        ReceiptOutcome::Failed { error } => Err(StepError::Failed(error)),
    }
}

impl RemoteOps for FleetOps {
    async fn sync(&self, worker: &str, job: &str) -> Result<(), StepError> {
        if let Err(error) = self.copy(worker, job).await {
            return Err(self.diagnosed(worker, error).await);
        }
        self.shipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(worker.to_string());
        Ok(())
    }

    async fn run_target(
        &self,
        step: &StepAttempt,
        worker: &str,
        job: &str,
        target: &str,
        versions: (&str, &str),
    ) -> Result<(), StepError> {
        let (receipt, argv) = self.target_step(step, job, target, versions);
        let command = step_command(&self.bucket_id, &receipt, self.step_limit, &argv)
            .map_err(|e| StepError::Failed(e.to_string()))?
            // A deploy step runs to its end on Ctrl-C, so the journal records what happened.
            .finish_on_interrupt();
        let ran = self
            .run_for_exit_code(worker, Some(job), step_phase(target), target, command)
            .await
            .and_then(|code| self.target_result(worker, target, code));
        match ran {
            Err(error) => Err(self.diagnosed(worker, error).await),
            Ok(()) => Ok(()),
        }
    }

    async fn sync_then_run_target(
        &self,
        step: &StepAttempt,
        worker: &str,
        job: &str,
        target: &str,
        versions: (&str, &str),
        applied: &(dyn Fn() + Sync),
    ) -> Option<CopyThenTarget> {
        // Only where an earlier deploy's copy is known to be there, and the worker proven.
        let ready = self
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(worker)
            .is_some_and(|cell| matches!(cell.get(), Some(Ok(()))));
        if !ready {
            return None;
        }
        let shipped = self.shipped_files(worker, job)?;
        let delta = super::delta::build(
            &self.staging_root.join(worker),
            job,
            &shipped,
            &self.staged_hashes,
        )?;
        let copy_description = delta.describe(job);
        let (receipt, argv) = self.target_step(step, job, target, versions);
        let command = step_command_applying(
            &self.bucket_id,
            &receipt,
            self.step_limit,
            (job, delta.payload),
            &argv,
        )
        .ok()?
        .finish_on_interrupt();
        let lane = self.copy_lane(worker);
        let one_copy_at_a_time = lane.lock().await;
        let copy_then_target = CopyThenTargetObserver {
            copy: self
                .run
                .observer(Some(job), step_phase("sync"), "sync", false),
            target: self
                .run
                .observer(Some(job), step_phase(target), target, self.echo),
            copy_description,
            target_description: command.describe(self.fleet.config().use_sudo),
            applied,
            state: std::sync::Mutex::new((false, std::time::Instant::now())),
        };
        let ran = match self.fleet.session(worker).await {
            Ok(session) => session.run(&command, &copy_then_target).await,
            Err(error) => Err(error),
        };
        let applied = copy_then_target.applied();
        let journaled = copy_then_target
            .copy
            .journal_error()
            .or_else(|| copy_then_target.target.journal_error())
            .map(|error| StepError::Failed(format!("recording the step failed: {error}")));
        drop(one_copy_at_a_time);
        if !applied {
            return Some(CopyThenTarget::CopiedAlone(match (ran, journaled) {
                (_, Some(error)) => Err(error),
                (Err(error), None) => Err(classify(error)),
                // The runner changed nothing and claimed nothing (the worker's copy drifted, or
                // an older runner): copy the usual way; the target then runs as its own step.
                (Ok(_), None) => self.sync(worker, job).await,
            }));
        }
        self.shipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(worker.to_string());
        let target_result = match (ran, journaled) {
            (_, Some(error)) => Err(error),
            (Err(error), None) => Err(classify(error)),
            (Ok(outcome), None) => self.target_result(worker, target, outcome.exit_code),
        };
        Some(CopyThenTarget::TargetRan(target_result))
    }

    async fn remove_job_files(&self, worker: &str, job: &str) -> Result<(), StepError> {
        let dir = format!("{}/jobs/{job}", bucket_dir_on_worker(&self.bucket_id));
        let script = format!(
            "cd {} 2>/dev/null || exit 0; find . -mindepth 1 -maxdepth 1 ! -name data ! -name logs -exec rm -rf {{}} +",
            shell_quote(&dir)
        );
        let command = self.script(&script, TRANSFER_TIMEOUT)?;
        self.run_command(
            worker,
            Some(job),
            step_phase("remove_files"),
            "remove_files",
            command,
        )
        .await
    }

    async fn remove_worker_tree(&self, worker: &str) -> Result<(), StepError> {
        let script = format!(
            "rm -rf -- {}",
            shell_quote(&bucket_dir_on_worker(&self.bucket_id))
        );
        let command = self.script(&script, TRANSFER_TIMEOUT)?;
        self.run_command(
            worker,
            None,
            step_phase("remove_worker"),
            "remove_worker",
            command,
        )
        .await
    }

    async fn write_jobs_json(&self, worker: &str, content: &str) -> Result<(), StepError> {
        // The copy already shipped the expected jobs.json; write only when the outcome differs
        // (a job failed, or this run shipped nothing to the worker).
        let staged = std::fs::read_to_string(self.staging_root.join(worker).join("jobs.json")).ok();
        let shipped = self
            .shipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(worker);
        if shipped && staged.as_deref() == Some(content) {
            return Ok(());
        }
        let dir = bucket_dir_on_worker(&self.bucket_id);
        let script = format!(
            "printf '%s' {} > {dir}/jobs.json.tmp && mv {dir}/jobs.json.tmp {dir}/jobs.json",
            shell_quote(content),
            dir = shell_quote(&dir)
        );
        let command = self.script(&script, TRANSFER_TIMEOUT)?;
        self.run_command(worker, None, step_phase("finalize"), "finalize", command)
            .await
    }

    async fn run_hook(
        &self,
        step: &StepAttempt,
        job: &str,
        command: &str,
        event: &str,
        allocations: &[HookAllocation],
        env: &[(String, String)],
    ) -> Result<Vec<Event>, StepError> {
        let receipts = HookReceipts::new(&self.bucket.tmp_dir());
        let known = receipts
            .read(step)
            .map_err(|e| StepError::Failed(e.to_string()))?;
        if let Some(receipt) = known {
            self.note_replayed(&receipt, allocations)?;
            return receipt_result(receipt.outcome);
        }
        let (runs, outcome) = self
            .execute_hook(job, command, event, allocations, env)
            .await;
        let receipt = HookReceipt {
            deploy_id: step.deploy_id.clone(),
            step: step.key(),
            job: job.to_string(),
            command: command.to_string(),
            event: event.to_string(),
            ended_ms: crate::run::now_ms(),
            runs,
            outcome,
        };
        if let Err(error) = receipts.write(step, &receipt) {
            // The hook ran: its outcome stands. Only a crash before the step is recorded would
            // now run it again.
            self.note(
                job,
                allocations,
                &format!(
                    "warning: the hook's receipt could not be written ({error}); should maand die before this step is recorded, `maand deploy --resume` runs it again"
                ),
            )?;
        }
        receipt_result(receipt.outcome)
    }

    async fn health_gate(
        &self,
        job: &str,
        allocations: &[HookAllocation],
    ) -> Result<(), StepError> {
        use crate::health::{
            check_allocations, CheckOptions, HealthCatalog, HealthStatus, HealthTarget, Retry,
        };
        let catalog = self
            .run
            .with(|r| HealthCatalog::read(&self.bucket, r.conn()))
            .map_err(|e| StepError::Failed(e.to_string()))?;
        let targets: Vec<HealthTarget> = allocations
            .iter()
            .map(|a| HealthTarget {
                alloc_id: a.alloc_id.clone(),
                job: job.to_string(),
                worker_ip: a.worker.clone(),
            })
            .collect();
        let options = CheckOptions {
            retry: Retry::UntilHealthy,
            echo: self.echo,
        };
        let results = check_allocations(&self.fleet, &self.run, &catalog, &targets, options)
            .await
            .map_err(|e| StepError::Failed(e.to_string()))?;
        let unhealthy: Vec<String> = results
            .iter()
            .filter(|r| r.status == HealthStatus::Unhealthy)
            .map(|r| r.target.worker_ip.clone())
            .collect();
        if unhealthy.is_empty() {
            Ok(())
        } else {
            Err(StepError::Failed(format!(
                "health check failed on {} (see `maand logs show --event health_checked --job {job}`)",
                unhealthy.join(", ")
            )))
        }
    }

    async fn restage(&self, job: &str) -> Result<(), StepError> {
        let flags = DeployFlags {
            jobs: vec![job.to_string()],
            ..DeployFlags::default()
        };
        let key = SecretKey::load(&self.bucket.kv_key_path()).ok();
        let prepared = self
            .run
            .with(|r| super::prepare::prepare(r.conn(), key, &flags))
            .map_err(|e| StepError::Failed(e.to_string()))?;
        let mut restaged = self.restaged.lock().unwrap_or_else(|p| p.into_inner());
        for (alloc_id, tree) in &prepared.trees {
            let fact = &prepared.facts[alloc_id];
            let dir = self
                .staging_root
                .join(&fact.worker)
                .join("jobs")
                .join(&fact.job);
            tree.write_to(&dir, &self.store)
                .map_err(|e| StepError::Failed(format!("writing {}: {e}", dir.display())))?;
            restaged.insert(
                alloc_id.clone(),
                (
                    tree.tree_hash.clone(),
                    tree.file_hashes().into_iter().collect(),
                ),
            );
        }
        Ok(())
    }

    fn restaged_tree(&self, alloc_id: &str) -> Option<(String, Vec<(String, String)>)> {
        self.restaged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(alloc_id)
            .cloned()
    }
}

impl StepJournal for SharedRun {
    fn record(&self, events: Vec<Event>) -> Result<(), String> {
        SharedRun::record(self, &events).map_err(|e| e.to_string())
    }

    fn jobs_json(&self, worker: &str) -> Result<String, String> {
        let jobs = self
            .with(|run| super::prepare::worker_jobs(run.conn(), worker))
            .map_err(|e| e.to_string())?;
        let mut text = serde_json::to_string_pretty(&jobs).map_err(|e| e.to_string())?;
        text.push('\n');
        Ok(text)
    }
}
