//! Executing a planned deploy step by step, recording `StepStarted` before and
//! `StepSucceeded`/`StepFailed` after every step, each committed before the next begins.
//!
//! The executor decides nothing about *what* to do (that is the plan) and touches workers only
//! through [`RemoteOps`], so a simulation can inject failures and crashes at any step. Groups
//! (one job, or one worker's reconcile or finalize steps) of a wave run concurrently; within a
//! group, batches run in order and the steps of a batch run concurrently. A failed step skips
//! the rest of its group; other groups go on.

use crate::events::{
    AllocationHashCleared, AllocationPromoted, AllocationStaged, AllocationStopped, DeployFinished,
    Event, PlannedStep, RunOutcome, StepFailed, StepKind, StepSkipped, StepStarted, StepSucceeded,
};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

/// Why a remote step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepError {
    /// The worker could not be reached at all.
    Unreachable(String),
    /// The work ran and failed.
    Failed(String),
    /// The executor must stop now, as if the process died (simulation only).
    Crash,
}

/// The effects deploy needs on workers. Every operation must be idempotent.
pub trait RemoteOps: Sync {
    /// Copy the staged tree of `job` (and the worker's `worker.json`, `jobs.json`, `bin/`).
    fn sync(&self, worker: &str, job: &str) -> impl Future<Output = Result<(), StepError>> + Send;
    /// Run a Makefile target of `job` with `CURRENT_VERSION` and `NEW_VERSION` set to `versions`,
    /// as attempt `step` of a planned step: asked again for the same attempt (a resume after
    /// the operator died), the worker reports the outcome of the run it already has instead of
    /// running the target a second time.
    fn run_target(
        &self,
        step: &StepAttempt,
        worker: &str,
        job: &str,
        target: &str,
        versions: (&str, &str),
    ) -> impl Future<Output = Result<(), StepError>> + Send;
    /// Copy `job`'s staged tree to `worker` and run `target` right after it, in one privileged
    /// process on the worker, when the worker's copy can be brought up to date from what the
    /// journal says it holds. `None`: not possible here, nothing was done, and the copy and
    /// the target run as two steps. The target runs as attempt `step`, exactly as
    /// [`RemoteOps::run_target`] would run it, and `applied` is called once the copy is in
    /// place and before the target starts, so the journal records the copy's end and the
    /// target's start when they happen.
    fn sync_then_run_target(
        &self,
        _step: &StepAttempt,
        _worker: &str,
        _job: &str,
        _target: &str,
        _versions: (&str, &str),
        _applied: &(dyn Fn() + Sync),
    ) -> impl Future<Output = Option<CopyThenTarget>> + Send {
        async { None }
    }
    /// Delete `jobs/<job>` except `data/` and `logs/`.
    fn remove_job_files(
        &self,
        worker: &str,
        job: &str,
    ) -> impl Future<Output = Result<(), StepError>> + Send;
    /// Delete the bucket's tree on the worker.
    fn remove_worker_tree(
        &self,
        worker: &str,
    ) -> impl Future<Output = Result<(), StepError>> + Send;
    /// Replace the worker's `jobs.json`.
    fn write_jobs_json(
        &self,
        worker: &str,
        content: &str,
    ) -> impl Future<Output = Result<(), StepError>> + Send;
    /// Run a job command for a deploy event as attempt `step` of a planned step; returns the KV
    /// it wrote (as events to record with the step's success: the KV checkpoint). Asked again
    /// for an attempt whose hook already ended (a resume after the operator died between the
    /// hook's end and the step's), it returns the recorded outcome instead of running the hook
    /// a second time.
    fn run_hook(
        &self,
        step: &StepAttempt,
        job: &str,
        command: &str,
        event: &str,
        allocations: &[HookAllocation],
        env: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<Event>, StepError>> + Send;
    /// Wait until the allocations pass `job`'s health checks (retrying as its manifest says).
    fn health_gate(
        &self,
        job: &str,
        allocations: &[HookAllocation],
    ) -> impl Future<Output = Result<(), StepError>> + Send;
    /// Stage `job`'s trees again from the catalog as it is now (after its `pre_deploy` hooks).
    fn restage(&self, job: &str) -> impl Future<Output = Result<(), StepError>> + Send;
    /// The tree a restage produced for an allocation (hash and file hashes), which then
    /// replaces the planned one.
    fn restaged_tree(&self, alloc_id: &str) -> Option<(String, Vec<(String, String)>)>;
}

/// What [`RemoteOps::sync_then_run_target`] did.
#[derive(Debug)]
pub enum CopyThenTarget {
    /// The copy could not go that way: its result after copying the usual way (or failing
    /// before anything was applied). The target was not run.
    CopiedAlone(Result<(), StepError>),
    /// The copy was applied and the target ran after it: the target's result.
    TargetRan(Result<(), StepError>),
}

/// One attempt of one planned step. A step that failed and is resumed is a new attempt; a step
/// the operator lost track of (started, never recorded as ended) is the same attempt again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepAttempt {
    pub deploy_id: String,
    pub index: u32,
    /// How many earlier attempts of this step failed.
    pub attempt: u32,
}

impl StepAttempt {
    /// The name of this attempt among the deploy's steps on a worker.
    pub fn key(&self) -> String {
        format!("{}.{}", self.index, self.attempt)
    }
}

/// An allocation a deploy hook runs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookAllocation {
    pub alloc_id: String,
    pub worker: String,
    pub current_version: String,
    pub new_version: String,
}

/// Where the executor records events; each call is one committed transaction.
pub trait StepJournal: Sync {
    fn record(&self, events: Vec<Event>) -> Result<(), String>;
    /// `jobs.json` content for a worker as the catalog stands now (for finalize steps).
    fn jobs_json(&self, worker: &str) -> Result<String, String>;
}

/// What the executor knows about each allocation of the plan.
#[derive(Debug, Clone)]
pub struct AllocationFacts {
    pub job: String,
    pub worker: String,
    pub new_version: String,
    /// The version running before this deploy (handed to make as `CURRENT_VERSION`).
    pub current_version: String,
    /// The staged files (path, hash) recorded when its tree is synced.
    pub files: Vec<(String, String)>,
    /// Whether the worker still is in the catalog (an unreachable departed worker is tolerated).
    pub worker_present: bool,
}

/// A plan ready to run: its steps with what already happened to them.
pub struct Execution<'a> {
    pub deploy_id: String,
    pub steps: Vec<PlannedStep>,
    /// Indexes of steps that already succeeded (on resume).
    pub done: BTreeSet<u32>,
    /// Per step index, how many of its attempts failed before (on resume).
    pub failed_attempts: BTreeMap<u32, u32>,
    pub facts: &'a BTreeMap<String, AllocationFacts>,
}

/// How a deploy ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionReport {
    pub failed_jobs: Vec<String>,
    /// `(step label, error)` of every failed step.
    pub failures: Vec<(String, String)>,
    /// Set when the executor stopped as if killed (simulation).
    pub crashed: bool,
    /// The operator interrupted the deploy (SIGINT/SIGTERM): the steps running then finished,
    /// the rest did not start; `maand deploy --resume` continues.
    pub interrupted: bool,
}

fn group_key(step: &PlannedStep) -> String {
    // Reconcile (wave 0) and finalize steps group by worker; everything else by job.
    match (&step.job, &step.kind) {
        (Some(job), _) if step.wave != 0 && !matches!(step.kind, StepKind::Finalize) => {
            format!("job:{job}")
        }
        _ => format!("worker:{}", step.worker.as_deref().unwrap_or("-")),
    }
}

fn describe(step: &PlannedStep) -> String {
    let label = step.label();
    match (&label.job, &label.worker) {
        (Some(job), Some(worker)) => format!("{} {job}@{worker}", label.action),
        (Some(job), None) => format!("{} {job}", label.action),
        (None, Some(worker)) => format!("{} {worker}", label.action),
        (None, None) => label.action,
    }
}

enum Outcome {
    Succeeded(Vec<Event>, Option<String>),
    Failed(String),
    Crash,
}

async fn run_step<O: RemoteOps, J: StepJournal>(
    ops: &O,
    journal: &J,
    exec: &Execution<'_>,
    step: &PlannedStep,
) -> Outcome {
    let fact = |alloc_id: &str| exec.facts.get(alloc_id);
    let attempt = StepAttempt {
        deploy_id: exec.deploy_id.clone(),
        index: step.index,
        attempt: exec.failed_attempts.get(&step.index).copied().unwrap_or(0),
    };
    let departed = |step: &PlannedStep| {
        step.worker.as_deref().is_some_and(|w| {
            exec.facts
                .values()
                .filter(|f| f.worker == w)
                .all(|f| !f.worker_present)
        })
    };
    match &step.kind {
        StepKind::Stop { alloc_id } => {
            let Some(f) = fact(alloc_id) else {
                return Outcome::Failed(format!("unknown allocation {alloc_id}"));
            };
            let result = ops
                .run_target(
                    &attempt,
                    &f.worker,
                    &f.job,
                    "stop",
                    (&f.current_version, &f.current_version),
                )
                .await;
            let events = vec![Event::AllocationStopped(AllocationStopped {
                alloc_id: alloc_id.clone(),
            })];
            remote_outcome(result, events, !f.worker_present)
        }
        StepKind::RemoveJobFiles { alloc_id } => {
            let Some(f) = fact(alloc_id) else {
                return Outcome::Failed(format!("unknown allocation {alloc_id}"));
            };
            let result = ops.remove_job_files(&f.worker, &f.job).await;
            let events = vec![Event::AllocationHashCleared(AllocationHashCleared {
                alloc_id: alloc_id.clone(),
            })];
            remote_outcome(result, events, !f.worker_present)
        }
        StepKind::RemoveWorkerTree => {
            let worker = step.worker.as_deref().unwrap_or_default();
            remote_outcome(ops.remove_worker_tree(worker).await, vec![], departed(step))
        }
        StepKind::Sync {
            alloc_id,
            tree_hash,
            transfer,
        } => {
            let Some(f) = fact(alloc_id) else {
                return Outcome::Failed(format!("unknown allocation {alloc_id}"));
            };
            let staged = staged(ops, alloc_id, tree_hash, f);
            if !*transfer {
                return Outcome::Succeeded(staged, Some("disabled: recorded, not shipped".into()));
            }
            remote_outcome(ops.sync(&f.worker, &f.job).await, staged, false)
        }
        StepKind::Lifecycle { alloc_id, target } => {
            let Some(f) = fact(alloc_id) else {
                return Outcome::Failed(format!("unknown allocation {alloc_id}"));
            };
            remote_outcome(
                ops.run_target(
                    &attempt,
                    &f.worker,
                    &f.job,
                    target,
                    (&f.current_version, &f.new_version),
                )
                .await,
                vec![],
                false,
            )
        }
        StepKind::Promote { alloc_ids } => {
            let events = alloc_ids
                .iter()
                .filter_map(|id| {
                    fact(id).map(|f| {
                        Event::AllocationPromoted(AllocationPromoted {
                            alloc_id: id.clone(),
                            version: f.new_version.clone(),
                        })
                    })
                })
                .collect();
            Outcome::Succeeded(events, None)
        }
        StepKind::Hook {
            command,
            event,
            alloc_ids,
            env,
        } => {
            let job = step.job.as_deref().unwrap_or_default();
            let allocations: Vec<HookAllocation> = alloc_ids
                .iter()
                .filter_map(|id| {
                    fact(id).map(|f| HookAllocation {
                        alloc_id: id.clone(),
                        worker: f.worker.clone(),
                        current_version: f.current_version.clone(),
                        new_version: f.new_version.clone(),
                    })
                })
                .collect();
            match ops
                .run_hook(&attempt, job, command, event, &allocations, env)
                .await
            {
                Ok(kv_events) => Outcome::Succeeded(kv_events, None),
                Err(StepError::Crash) => Outcome::Crash,
                Err(StepError::Failed(message)) | Err(StepError::Unreachable(message)) => {
                    Outcome::Failed(message)
                }
            }
        }
        StepKind::HealthGate { alloc_ids } => {
            let job = step.job.as_deref().unwrap_or_default();
            let allocations: Vec<HookAllocation> = alloc_ids
                .iter()
                .filter_map(|id| {
                    fact(id).map(|f| HookAllocation {
                        alloc_id: id.clone(),
                        worker: f.worker.clone(),
                        current_version: f.current_version.clone(),
                        new_version: f.new_version.clone(),
                    })
                })
                .collect();
            remote_outcome(ops.health_gate(job, &allocations).await, vec![], false)
        }
        StepKind::Restage => {
            let job = step.job.as_deref().unwrap_or_default();
            remote_outcome(ops.restage(job).await, vec![], false)
        }
        StepKind::Finalize => {
            let worker = step.worker.as_deref().unwrap_or_default();
            match journal.jobs_json(worker) {
                Ok(content) => {
                    remote_outcome(ops.write_jobs_json(worker, &content).await, vec![], false)
                }
                Err(message) => Outcome::Failed(message),
            }
        }
    }
}

/// How one chain of steps ended.
enum ChainEnd {
    Done,
    Failed(String, String),
    Crashed,
    /// The operator interrupted maand before the chain's next step.
    Interrupted,
}

/// Runs steps one after the other (one worker's lane), recording each; after a failure the
/// rest of the chain is recorded as skipped. A copy followed by a lifecycle target of the same
/// allocation is offered to [`RemoteOps::sync_then_run_target`] first; when both ran there,
/// both are recorded (the target's start after the copy's success, as if run one by one).
async fn run_chain<O: RemoteOps, J: StepJournal>(
    ops: &O,
    journal: &J,
    exec: &Execution<'_>,
    chain: Vec<&PlannedStep>,
) -> Result<ChainEnd, String> {
    let mut position = 0;
    while position < chain.len() {
        let step = chain[position];
        if crate::interrupt::requested() {
            return Ok(ChainEnd::Interrupted);
        }
        journal.record(vec![started(exec, step)])?;
        let outcome = match chain.get(position + 1) {
            Some(next) if same_allocation_target(step, next) => {
                match run_copy_then_target(ops, journal, exec, step, next).await? {
                    Merged::Alone(outcome) => outcome,
                    Merged::TargetRan(outcome) => {
                        // The copy's success and the target's start are already recorded.
                        position += 1;
                        outcome
                    }
                }
            }
            _ => run_step(ops, journal, exec, step).await,
        };
        if let Some(end) = settle(journal, exec, &chain, position, outcome)? {
            return Ok(end);
        }
        position += 1;
    }
    Ok(ChainEnd::Done)
}

fn started(exec: &Execution<'_>, step: &PlannedStep) -> Event {
    Event::StepStarted(StepStarted {
        deploy_id: exec.deploy_id.clone(),
        index: step.index,
        step: step.label(),
    })
}

/// Records how `chain[position]` ended; after a failure also the rest of the chain as skipped.
/// Returns how the chain ends when it does.
fn settle<J: StepJournal>(
    journal: &J,
    exec: &Execution<'_>,
    chain: &[&PlannedStep],
    position: usize,
    outcome: Outcome,
) -> Result<Option<ChainEnd>, String> {
    let step = chain[position];
    match outcome {
        Outcome::Succeeded(mut events, note) => {
            events.insert(
                0,
                Event::StepSucceeded(StepSucceeded {
                    deploy_id: exec.deploy_id.clone(),
                    index: step.index,
                    step: step.label(),
                    note,
                }),
            );
            journal.record(events)?;
            Ok(None)
        }
        Outcome::Failed(error) => {
            let mut events = vec![Event::StepFailed(StepFailed {
                deploy_id: exec.deploy_id.clone(),
                index: step.index,
                step: step.label(),
                error: error.clone(),
            })];
            let reason = format!("not run: {} failed", describe(step));
            events.extend(chain[position + 1..].iter().map(|s| {
                Event::StepSkipped(StepSkipped {
                    deploy_id: exec.deploy_id.clone(),
                    index: s.index,
                    step: s.label(),
                    reason: reason.clone(),
                })
            }));
            journal.record(events)?;
            Ok(Some(ChainEnd::Failed(describe(step), error)))
        }
        Outcome::Crash => Ok(Some(ChainEnd::Crashed)),
    }
}

/// Whether `next` is a lifecycle target of the allocation `copy` ships.
fn same_allocation_target(copy: &PlannedStep, next: &PlannedStep) -> bool {
    match (&copy.kind, &next.kind) {
        (
            StepKind::Sync {
                alloc_id,
                transfer: true,
                ..
            },
            StepKind::Lifecycle {
                alloc_id: target_alloc,
                ..
            },
        ) => alloc_id == target_alloc,
        _ => false,
    }
}

/// A remote effect's outcome: `events` recorded on success; an unreachable worker counts as
/// done (with a note) when `tolerate_unreachable` (it is being removed anyway).
fn remote_outcome(
    result: Result<(), StepError>,
    events: Vec<Event>,
    tolerate_unreachable: bool,
) -> Outcome {
    match result {
        Ok(()) => Outcome::Succeeded(events, None),
        Err(StepError::Unreachable(message)) if tolerate_unreachable => Outcome::Succeeded(
            events,
            Some(format!("worker unreachable, assumed gone: {message}")),
        ),
        Err(StepError::Unreachable(message)) | Err(StepError::Failed(message)) => {
            Outcome::Failed(message)
        }
        Err(StepError::Crash) => Outcome::Crash,
    }
}

/// The event a successful copy of `alloc_id` records: the tree now on the worker (restaged
/// by a pre-deploy hook, or as planned).
fn staged<O: RemoteOps>(
    ops: &O,
    alloc_id: &str,
    planned_hash: &str,
    f: &AllocationFacts,
) -> Vec<Event> {
    let (tree_hash, files) = ops
        .restaged_tree(alloc_id)
        .unwrap_or_else(|| (planned_hash.to_string(), f.files.clone()));
    vec![Event::AllocationStaged(AllocationStaged {
        alloc_id: alloc_id.to_string(),
        job: f.job.clone(),
        worker_ip: f.worker.clone(),
        tree_hash,
        files,
    })]
}

/// How a copy offered to [`RemoteOps::sync_then_run_target`] went.
enum Merged {
    /// Only the copy ran: its outcome.
    Alone(Outcome),
    /// The copy succeeded (recorded, with the target's start) and the target ran: its outcome.
    TargetRan(Outcome),
}

/// Runs a copy and the target after it through [`RemoteOps::sync_then_run_target`], or the
/// copy alone when that declines. When the copy is applied, its success, the allocation's
/// staging and the target's start are recorded at that moment, before the target runs.
async fn run_copy_then_target<O: RemoteOps, J: StepJournal>(
    ops: &O,
    journal: &J,
    exec: &Execution<'_>,
    copy: &PlannedStep,
    next: &PlannedStep,
) -> Result<Merged, String> {
    let (
        StepKind::Sync {
            alloc_id,
            tree_hash,
            ..
        },
        StepKind::Lifecycle { target, .. },
    ) = (&copy.kind, &next.kind)
    else {
        return Ok(Merged::Alone(run_step(ops, journal, exec, copy).await));
    };
    let Some(f) = exec.facts.get(alloc_id) else {
        return Ok(Merged::Alone(run_step(ops, journal, exec, copy).await));
    };
    let attempt = StepAttempt {
        deploy_id: exec.deploy_id.clone(),
        index: next.index,
        attempt: exec.failed_attempts.get(&next.index).copied().unwrap_or(0),
    };
    let versions = (f.current_version.as_str(), f.new_version.as_str());
    let recorded: std::sync::Mutex<Option<Result<(), String>>> = std::sync::Mutex::new(None);
    let applied = || {
        let mut recorded = recorded.lock().unwrap_or_else(|p| p.into_inner());
        if recorded.is_none() {
            let mut events = vec![Event::StepSucceeded(StepSucceeded {
                deploy_id: exec.deploy_id.clone(),
                index: copy.index,
                step: copy.label(),
                note: None,
            })];
            events.extend(staged(ops, alloc_id, tree_hash, f));
            events.push(started(exec, next));
            *recorded = Some(journal.record(events));
        }
    };
    let merged = ops
        .sync_then_run_target(&attempt, &f.worker, &f.job, target, versions, &applied)
        .await;
    Ok(match merged {
        None => Merged::Alone(run_step(ops, journal, exec, copy).await),
        Some(CopyThenTarget::CopiedAlone(result)) => Merged::Alone(remote_outcome(
            result,
            staged(ops, alloc_id, tree_hash, f),
            false,
        )),
        Some(CopyThenTarget::TargetRan(result)) => {
            applied();
            let recorded = recorded.lock().unwrap_or_else(|p| p.into_inner()).take();
            recorded.expect("recorded by the call above")?;
            Merged::TargetRan(remote_outcome(result, vec![], false))
        }
    })
}

/// Splits a group's pending steps into stages of concurrent chains. A batch is normally a
/// stage of one-step chains. When a copy batch is followed by a lifecycle batch over exactly
/// the same workers (a job started or restarted everywhere at once), each worker runs its copy
/// and then its lifecycle without waiting for the other workers' copies: the order on every
/// worker is the same, and no worker waits for the slowest transfer.
fn stages(batches: Vec<Vec<&PlannedStep>>) -> Vec<Vec<Vec<&PlannedStep>>> {
    let workers = |batch: &[&PlannedStep]| -> Option<BTreeSet<String>> {
        let set: BTreeSet<String> = batch.iter().filter_map(|s| s.worker.clone()).collect();
        (set.len() == batch.len()).then_some(set)
    };
    let mut stages = Vec::new();
    let mut batches = batches.into_iter().peekable();
    while let Some(batch) = batches.next() {
        let copies = batch
            .iter()
            .all(|s| matches!(s.kind, StepKind::Sync { .. }));
        let chained = copies
            && batches.peek().is_some_and(|next| {
                next.iter()
                    .all(|s| matches!(s.kind, StepKind::Lifecycle { .. }))
                    && workers(next).is_some()
                    && workers(next) == workers(&batch)
            });
        if chained {
            let lifecycle = batches.next().expect("peeked");
            let chains = batch
                .into_iter()
                .map(|copy| {
                    let then = lifecycle
                        .iter()
                        .find(|l| l.worker == copy.worker)
                        .expect("same workers");
                    vec![copy, *then]
                })
                .collect();
            stages.push(chains);
        } else {
            stages.push(batch.into_iter().map(|s| vec![s]).collect());
        }
    }
    stages
}

/// Runs one group's batches in order. Returns the failures, or an error after a crash.
async fn run_group<O: RemoteOps, J: StepJournal>(
    ops: &O,
    journal: &J,
    exec: &Execution<'_>,
    steps: Vec<&PlannedStep>,
) -> Result<Vec<(String, String)>, String> {
    let mut batches: BTreeMap<u32, Vec<&PlannedStep>> = BTreeMap::new();
    for step in steps.into_iter().filter(|s| !exec.done.contains(&s.index)) {
        batches.entry(step.batch).or_default().push(step);
    }
    let mut failures: Vec<(String, String)> = Vec::new();
    for stage in stages(batches.into_values().collect()) {
        if let Some((failed, _)) = failures.first() {
            let reason = format!("not run: {failed} failed earlier in this deploy");
            let skipped = stage
                .iter()
                .flatten()
                .map(|s| {
                    Event::StepSkipped(StepSkipped {
                        deploy_id: exec.deploy_id.clone(),
                        index: s.index,
                        step: s.label(),
                        reason: reason.clone(),
                    })
                })
                .collect();
            journal.record(skipped)?;
            continue;
        }
        let ends = futures_join(
            stage
                .into_iter()
                .map(|chain| run_chain(ops, journal, exec, chain)),
        )
        .await;
        let mut crashed = false;
        let mut interrupted = false;
        for end in ends {
            match end? {
                ChainEnd::Done => {}
                ChainEnd::Failed(step, error) => failures.push((step, error)),
                ChainEnd::Crashed => crashed = true,
                ChainEnd::Interrupted => interrupted = true,
            }
        }
        if crashed {
            return Err(CRASHED.into());
        }
        if interrupted {
            return Err(INTERRUPTED.into());
        }
    }
    Ok(failures)
}

const CRASHED: &str = "executor crashed (simulated)";
/// The operator interrupted the deploy: steps running then finished, nothing new started.
const INTERRUPTED: &str = "interrupted";

/// Awaits every future concurrently, keeping their order.
async fn futures_join<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let futures: Vec<_> = futures.map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut pending: Vec<(usize, std::pin::Pin<Box<F>>)> =
        futures.into_iter().enumerate().collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(i, fut)| match fut.as_mut().poll(cx) {
            std::task::Poll::Ready(value) => {
                results[*i] = Some(value);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results
        .into_iter()
        .map(|r| r.expect("every future completed"))
        .collect()
}

/// Runs every step not yet done, wave by wave, and records `DeployFinished`.
pub async fn execute<O: RemoteOps, J: StepJournal>(
    ops: &O,
    journal: &J,
    exec: &Execution<'_>,
) -> Result<ExecutionReport, String> {
    let mut waves: BTreeMap<u32, BTreeMap<String, Vec<&PlannedStep>>> = BTreeMap::new();
    for step in &exec.steps {
        waves
            .entry(step.wave)
            .or_default()
            .entry(group_key(step))
            .or_default()
            .push(step);
    }
    let mut failures = Vec::new();
    let mut failed_jobs = BTreeSet::new();
    for (_, groups) in waves {
        let results =
            futures_join(groups.into_iter().map(|(key, steps)| async move {
                (key, run_group(ops, journal, exec, steps).await)
            }))
            .await;
        for (key, result) in results {
            match result {
                Ok(group_failures) => {
                    if !group_failures.is_empty() {
                        failed_jobs.insert(
                            key.trim_start_matches("job:")
                                .trim_start_matches("worker:")
                                .to_string(),
                        );
                    }
                    failures.extend(group_failures);
                }
                Err(error) if error == CRASHED || error == INTERRUPTED => {
                    return Ok(ExecutionReport {
                        failed_jobs: failed_jobs.into_iter().collect(),
                        failures,
                        crashed: error == CRASHED,
                        interrupted: error == INTERRUPTED,
                    })
                }
                Err(error) => return Err(error),
            }
        }
    }
    let failed_jobs: Vec<String> = failed_jobs.into_iter().collect();
    journal.record(vec![Event::DeployFinished(DeployFinished {
        deploy_id: exec.deploy_id.clone(),
        outcome: if failures.is_empty() {
            RunOutcome::Succeeded
        } else {
            RunOutcome::Failed
        },
        failed_jobs: failed_jobs.clone(),
    })])?;
    Ok(ExecutionReport {
        failed_jobs,
        failures,
        crashed: false,
        interrupted: false,
    })
}
