//! Simulation of the deploy executor against a fake remote: failures and crashes injected at
//! any step, then `--resume` until done. Lifecycle targets leave receipts on their workers and
//! hooks leave receipts on the operator host, as the real ones do, so a crash after either
//! ended but before its step was recorded is answered from the receipt on resume. The
//! real-cluster tests live in `tests/cli_deploy.rs` and `tests/cli_exactly_once.rs`.

use super::execute::{execute, CopyThenTarget, Execution, RemoteOps, StepError, StepJournal};
use super::plan::plan;
use super::prepare::{prepare, worker_jobs};
use crate::build::{decide_build, BuildContext, CatalogSnapshot};
use crate::catalog;
use crate::events::{
    DeployFlags, DeployPlanned, Event, KvChange, KvChanged, KvValue, PlannedStep, StepKind,
};
use crate::kv::secret::SecretKey;
use proptest::prelude::*;
use rusqlite::Connection;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

/// Where the operator's crash leaves a lifecycle command on its worker, or a hook on the
/// operator host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum CrashPoint {
    /// The command never started.
    #[default]
    BeforeStart,
    /// The command is still running on the worker when the operator dies; it ends later. (A
    /// hook dies with the operator, half done, and leaves no receipt.)
    WhileRunning,
    /// The command finished and left its receipt; the operator died before recording it.
    AfterFinish,
}

/// A lifecycle command's trace on a worker, by step attempt key (the runner's receipts).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Trace {
    Running(Result<(), String>),
    Finished(Result<(), String>),
}

/// A lifecycle command that really executed on a worker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Executed {
    worker: String,
    job: String,
    target: String,
    attempt_key: String,
    succeeded: bool,
}

/// A hook that really executed on the operator host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ExecutedHook {
    job: String,
    event: String,
    attempt_key: String,
    /// It ran to its end (and left its receipt); `false`: killed with the operator.
    completed: bool,
    succeeded: bool,
}

/// The workers' own state and the operator host's disk, which outlive the operator process:
/// receipts, and every lifecycle command and hook that really executed.
#[derive(Default)]
struct WorkerSide {
    traces: Mutex<BTreeMap<String, Trace>>,
    executed: Mutex<Vec<Executed>>,
    /// The operator host's hook receipts, by deploy and step attempt key.
    hook_receipts: Mutex<BTreeMap<String, Result<Vec<Event>, String>>>,
    hooks_executed: Mutex<Vec<ExecutedHook>>,
}

/// What the fake workers did in one operator run, and the fault to inject.
#[derive(Default)]
struct FakeWorkers {
    /// (worker, job, action) of every operation that ran to completion, in order.
    ran: Mutex<Vec<(String, String, String)>>,
    /// Operation counter and the 1-based call at which to fail (once) or crash.
    calls: Mutex<u32>,
    fail_at: Option<u32>,
    crash_at: Option<u32>,
    crash_point: CrashPoint,
    worker_side: std::sync::Arc<WorkerSide>,
    /// The calls that ran (or answered) hooks.
    hook_calls: Mutex<Vec<u32>>,
    /// Whether a copy followed by its allocation's target runs as one operation (as a warm
    /// redeploy's delta does), and how many did.
    merge_copies: bool,
    merged: Mutex<u32>,
}

impl FakeWorkers {
    fn next_call(&self) -> u32 {
        let mut calls = self.calls.lock().unwrap();
        *calls += 1;
        *calls
    }

    fn op(&self, worker: &str, job: &str, action: &str) -> Result<(), StepError> {
        let call = self.next_call();
        if Some(call) == self.crash_at {
            return Err(StepError::Crash);
        }
        if Some(call) == self.fail_at {
            return Err(StepError::Failed(format!(
                "injected failure at call {call}"
            )));
        }
        self.ran
            .lock()
            .unwrap()
            .push((worker.into(), job.into(), action.into()));
        Ok(())
    }

    /// A lifecycle command under the worker-side runner: an attempt the worker already has a
    /// trace of is reported (after waiting for it when it still runs), never executed again.
    fn lifecycle(
        &self,
        step: &super::execute::StepAttempt,
        worker: &str,
        job: &str,
        target: &str,
    ) -> Result<(), StepError> {
        let call = self.next_call();
        let key = format!("{worker}/{}/{}", step.deploy_id, step.key());
        let known = self.worker_side.traces.lock().unwrap().get(&key).cloned();
        let result = match known {
            Some(Trace::Finished(result)) | Some(Trace::Running(result)) => {
                self.worker_side
                    .traces
                    .lock()
                    .unwrap()
                    .insert(key, Trace::Finished(result.clone()));
                result
            }
            None => {
                if Some(call) == self.crash_at && self.crash_point == CrashPoint::BeforeStart {
                    return Err(StepError::Crash);
                }
                let result = if Some(call) == self.fail_at {
                    Err(format!("injected failure at call {call}"))
                } else {
                    Ok(())
                };
                self.worker_side.executed.lock().unwrap().push(Executed {
                    worker: worker.into(),
                    job: job.into(),
                    target: target.into(),
                    attempt_key: step.key(),
                    succeeded: result.is_ok(),
                });
                let trace = if Some(call) == self.crash_at {
                    match self.crash_point {
                        CrashPoint::WhileRunning => Trace::Running(result.clone()),
                        _ => Trace::Finished(result.clone()),
                    }
                } else {
                    Trace::Finished(result.clone())
                };
                self.worker_side.traces.lock().unwrap().insert(key, trace);
                if Some(call) == self.crash_at {
                    return Err(StepError::Crash);
                }
                result
            }
        };
        match result {
            Ok(()) => {
                self.ran
                    .lock()
                    .unwrap()
                    .push((worker.into(), job.into(), target.into()));
                Ok(())
            }
            Err(message) => Err(StepError::Failed(message)),
        }
    }
}

impl FakeWorkers {
    /// A hook on the operator host: an attempt with a receipt is answered from it, never
    /// executed again; a hook running when the operator dies dies with it and leaves no
    /// receipt. A successful hook writes one KV key, recorded with its step.
    fn hook(
        &self,
        step: &super::execute::StepAttempt,
        job: &str,
        event: &str,
    ) -> Result<Vec<Event>, StepError> {
        let call = self.next_call();
        self.hook_calls.lock().unwrap().push(call);
        let key = format!("{}/{}", step.deploy_id, step.key());
        let receipt = self
            .worker_side
            .hook_receipts
            .lock()
            .unwrap()
            .get(&key)
            .cloned();
        let result = match receipt {
            Some(result) => result,
            None => {
                let crash_here = Some(call) == self.crash_at;
                if crash_here && self.crash_point == CrashPoint::BeforeStart {
                    return Err(StepError::Crash);
                }
                let result = if Some(call) == self.fail_at {
                    Err(format!("injected failure at call {call}"))
                } else {
                    Ok(vec![Event::KvChanged(KvChanged {
                        namespace: format!("vars/job/{job}"),
                        changes: vec![KvChange::Put {
                            key: format!("hook.{event}"),
                            value: KvValue::Plain("ran".into()),
                        }],
                    })])
                };
                let completed = !(crash_here && self.crash_point == CrashPoint::WhileRunning);
                self.worker_side
                    .hooks_executed
                    .lock()
                    .unwrap()
                    .push(ExecutedHook {
                        job: job.into(),
                        event: event.into(),
                        attempt_key: step.key(),
                        completed,
                        succeeded: completed && result.is_ok(),
                    });
                if completed {
                    self.worker_side
                        .hook_receipts
                        .lock()
                        .unwrap()
                        .insert(key, result.clone());
                }
                if crash_here {
                    return Err(StepError::Crash);
                }
                result
            }
        };
        match result {
            Ok(events) => {
                self.ran
                    .lock()
                    .unwrap()
                    .push(("-".into(), job.into(), event.into()));
                Ok(events)
            }
            Err(message) => Err(StepError::Failed(message)),
        }
    }
}

impl RemoteOps for FakeWorkers {
    async fn sync(&self, worker: &str, job: &str) -> Result<(), StepError> {
        self.op(worker, job, "sync")
    }
    async fn run_target(
        &self,
        step: &super::execute::StepAttempt,
        worker: &str,
        job: &str,
        target: &str,
        _versions: (&str, &str),
    ) -> Result<(), StepError> {
        self.lifecycle(step, worker, job, target)
    }
    /// The copy (which may fail or crash like any operation) and, once it is applied, the
    /// target under the worker-side runner, as one operation.
    async fn sync_then_run_target(
        &self,
        step: &super::execute::StepAttempt,
        worker: &str,
        job: &str,
        target: &str,
        _versions: (&str, &str),
        applied: &(dyn Fn() + Sync),
    ) -> Option<CopyThenTarget> {
        if !self.merge_copies {
            return None;
        }
        *self.merged.lock().unwrap() += 1;
        if let Err(error) = self.op(worker, job, "sync") {
            return Some(CopyThenTarget::CopiedAlone(Err(error)));
        }
        applied();
        Some(CopyThenTarget::TargetRan(
            self.lifecycle(step, worker, job, target),
        ))
    }
    async fn remove_job_files(&self, worker: &str, job: &str) -> Result<(), StepError> {
        self.op(worker, job, "remove_files")
    }
    async fn remove_worker_tree(&self, worker: &str) -> Result<(), StepError> {
        self.op(worker, "-", "remove_worker")
    }
    async fn write_jobs_json(&self, worker: &str, _content: &str) -> Result<(), StepError> {
        self.op(worker, "-", "finalize")
    }
    async fn run_hook(
        &self,
        step: &super::execute::StepAttempt,
        job: &str,
        _command: &str,
        event: &str,
        _allocations: &[super::execute::HookAllocation],
        _env: &[(String, String)],
    ) -> Result<Vec<Event>, StepError> {
        self.hook(step, job, event)
    }
    async fn health_gate(
        &self,
        job: &str,
        _allocations: &[super::execute::HookAllocation],
    ) -> Result<(), StepError> {
        self.op("-", job, "health_gate")
    }
    async fn restage(&self, job: &str) -> Result<(), StepError> {
        self.op("-", job, "restage")
    }
    fn restaged_tree(&self, _alloc_id: &str) -> Option<(String, Vec<(String, String)>)> {
        None
    }
}

struct DbJournal(Mutex<Connection>);

impl StepJournal for DbJournal {
    fn record(&self, events: Vec<Event>) -> Result<(), String> {
        let mut conn = self.0.lock().unwrap();
        catalog::commit(&mut conn, "sim", 1, &events, &[])
            .map(drop)
            .map_err(|e| e.to_string())
    }
    fn jobs_json(&self, worker: &str) -> Result<String, String> {
        let conn = self.0.lock().unwrap();
        worker_jobs(&conn, worker)
            .map(|j| serde_json::to_string(&j).unwrap())
            .map_err(|e| e.to_string())
    }
}

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A catalog with two waves: `db` (2 workers, batches of 1, a `post_deploy` hook) and `web`
/// (3 workers, demands db, a `pre_deploy` hook).
fn built_catalog(dir: &Path) -> Connection {
    let ws = dir.join("workspace");
    write(
        &ws,
        "workers.json",
        r#"[{"host": "127.9.0.1", "labels": ["db", "web"]}, {"host": "127.9.0.2", "labels": ["db", "web"]}, {"host": "127.9.0.3", "labels": ["web"]}]"#,
    );
    write(
        &ws,
        "jobs/db/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["db"], "max_concurrent_starts": 1, "commands": {"command_x": {"executed_on": ["cli", "post_deploy"]}}}"#,
    );
    write(&ws, "jobs/db/Makefile", "start:\n");
    write(&ws, "jobs/db/_modules/command_x.py", "");
    write(
        &ws,
        "jobs/web/manifest.json",
        r#"{"version": "2.0.0", "selectors": ["web"], "commands": {"command_y": {"executed_on": ["cli", "pre_deploy"], "demands": {"job": "db", "command": "command_x"}}}}"#,
    );
    write(&ws, "jobs/web/Makefile", "start:\n");
    write(&ws, "jobs/web/_modules/command_y.py", "");
    let path = dir.join("maand.db");
    let mut conn = crate::bucket::open(&path).unwrap();
    crate::bucket::migrate(&mut conn, &path).unwrap();
    let init = Event::BucketInitialized(crate::events::BucketInitialized {
        bucket_id: "b".into(),
        schema_version: 3,
        ca_fingerprint: "f".into(),
    });
    catalog::commit(&mut conn, "init", 1, &[init], &[]).unwrap();
    let workspace = crate::workspace::load(&ws, "").unwrap();
    // The same CA in every catalog: it is staged into every job's tree (certs/ca.crt), and
    // the runs compared here must stage the same trees.
    let ca = crate::certs::BucketCa::generate(
        "b",
        crate::certs::MIN_KEY_BITS,
        time::macros::datetime!(2026-01-01 0:00 UTC),
        &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7),
    )
    .unwrap();
    let key = SecretKey::generate(&mut rand::rng());
    let mut rng = rand::rng();
    let mut ctx = BuildContext {
        ca: &ca,
        kv_key: &key,
        now: time::OffsetDateTime::now_utc(),
        certs_ttl_days: 60,
        certs_renewal_buffer_days: 10,
        purge_job_kv: false,
        reservations_file: "bucket.jobs.conf".into(),
        rng: &mut rng,
    };
    let decision =
        decide_build(&workspace, &CatalogSnapshot::load(&conn).unwrap(), &mut ctx).unwrap();
    catalog::commit(&mut conn, "build", 2, &decision.events, &decision.blobs).unwrap();
    conn
}

fn steps_and_done(conn: &Connection, deploy_id: &str) -> (Vec<PlannedStep>, BTreeSet<u32>) {
    let mut stmt = conn.prepare("SELECT idx, wave, job, worker, batch, kind, status FROM deploy_steps WHERE deploy_id = ?1 ORDER BY idx").unwrap();
    let mut done = BTreeSet::new();
    let steps = stmt
        .query_map([deploy_id], |r| {
            let index: u32 = r.get(0)?;
            if r.get::<_, String>(6)? == "succeeded" {
                done.insert(index);
            }
            let kind: String = r.get(5)?;
            Ok(PlannedStep {
                index,
                wave: r.get(1)?,
                job: r.get(2)?,
                worker: r.get(3)?,
                batch: r.get(4)?,
                kind: serde_json::from_str::<StepKind>(&kind).unwrap(),
            })
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (steps, done)
}

/// The final state that matters: hash rows, every KV version and the deploy's status.
fn outcome(conn: &Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT job || '@' || worker_ip || ' ' || current_hash || ' ' || COALESCE(previous_hash, '-') || ' ' || current_version || ' ' || stopped FROM deployments ORDER BY 1")
        .unwrap();
    let mut rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut kv = conn
        .prepare("SELECT namespace || ' ' || key || ' ' || version || ' ' || value || ' ' || deleted FROM kv ORDER BY namespace, key, version")
        .unwrap();
    rows.extend(
        kv.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap(),
    );
    rows.push(
        conn.query_row("SELECT status FROM deploys", [], |r| r.get(0))
            .unwrap(),
    );
    rows
}

/// Plans and records a deploy; returns its id.
fn plan_deploy(journal: &DbJournal) -> String {
    let conn = journal.0.lock().unwrap();
    let prepared = prepare(&conn, None, &DeployFlags::default()).unwrap();
    let plan = plan(&prepared.input).unwrap();
    drop(conn);
    let deploy_id = "d1".to_string();
    journal
        .record(vec![Event::DeployPlanned(Box::new(DeployPlanned {
            deploy_id: deploy_id.clone(),
            catalog_seq: prepared.catalog_seq,
            update_seq: 1,
            flags: DeployFlags::default(),
            steps: plan.steps,
        }))])
        .unwrap();
    deploy_id
}

fn run_once(journal: &DbJournal, deploy_id: &str, workers: &FakeWorkers) -> bool {
    let (steps, done) = steps_and_done(&journal.0.lock().unwrap(), deploy_id);
    let prepared = prepare(&journal.0.lock().unwrap(), None, &DeployFlags::default()).unwrap();
    let execution = Execution {
        deploy_id: deploy_id.to_string(),
        steps,
        done,
        failed_attempts: super::driver::failed_attempts(&journal.0.lock().unwrap(), deploy_id)
            .unwrap(),
        facts: &prepared.facts,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let report = runtime
        .block_on(execute(workers, journal, &execution))
        .unwrap();
    !report.crashed && report.failures.is_empty()
}

/// What a deploy without faults does.
struct Reference {
    /// Its end state.
    state: Vec<String>,
    /// How many operations it ran.
    calls: usize,
    /// How many of them were lifecycle commands.
    lifecycle_runs: usize,
    /// How many of them were hooks.
    hook_runs: usize,
    /// The 1-based operation calls that ran hooks.
    hook_calls: Vec<u32>,
}

/// The run of a deploy without faults.
fn uninterrupted() -> Reference {
    let dir = tempfile::tempdir().unwrap();
    let journal = DbJournal(Mutex::new(built_catalog(dir.path())));
    let id = plan_deploy(&journal);
    let workers = FakeWorkers::default();
    assert!(run_once(&journal, &id, &workers));
    let hook_runs = workers.worker_side.hooks_executed.lock().unwrap().len();
    assert!(hook_runs > 0, "the simulated catalog has deploy hooks");
    let state = outcome(&journal.0.lock().unwrap());
    let calls = workers.ran.lock().unwrap().len();
    let lifecycle_runs = workers.worker_side.executed.lock().unwrap().len();
    let hook_calls = workers.hook_calls.lock().unwrap().clone();
    Reference {
        state,
        calls,
        lifecycle_runs,
        hook_runs,
        hook_calls,
    }
}

/// Which crash point a proptest case uses.
fn crash_point(choice: u8) -> CrashPoint {
    match choice % 3 {
        0 => CrashPoint::BeforeStart,
        1 => CrashPoint::WhileRunning,
        _ => CrashPoint::AfterFinish,
    }
}

/// Runs the deploy with `faults` injected, one per operator run in order (the 1-based call at
/// which to crash (`true`) or fail (`false`), crashes leaving their command at `point`), then
/// resumes until it finishes, and checks it against `reference`: no step that succeeded ran
/// again, no lifecycle command or completed hook executed twice, and the end state is the
/// uninterrupted one.
fn faults_then_resume(
    reference: &Reference,
    mut faults: Vec<(u32, bool)>,
    point: CrashPoint,
    merge_copies: bool,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let journal = DbJournal(Mutex::new(built_catalog(dir.path())));
    let id = plan_deploy(&journal);
    let worker_side = std::sync::Arc::new(WorkerSide::default());
    let mut attempts = 0;
    loop {
        attempts += 1;
        prop_assert!(attempts < 10, "resume did not converge");
        let (fail_at, crash_at) = match faults.first() {
            Some((at, true)) => (None, Some(*at)),
            Some((at, false)) => (Some(*at), None),
            None => (None, None),
        };
        if !faults.is_empty() {
            faults.remove(0);
        }
        let before: BTreeSet<u32> = steps_and_done(&journal.0.lock().unwrap(), &id).1;
        let workers = FakeWorkers {
            fail_at,
            crash_at,
            crash_point: point,
            worker_side: worker_side.clone(),
            merge_copies,
            ..FakeWorkers::default()
        };
        let finished = run_once(&journal, &id, &workers);
        // No step that had succeeded before this attempt ran again.
        let (steps, _) = steps_and_done(&journal.0.lock().unwrap(), &id);
        for (worker, job, action) in workers.ran.lock().unwrap().iter() {
            let rerun = steps.iter().filter(|s| before.contains(&s.index)).any(|s| {
                let label = s.label();
                label.worker.as_deref() == Some(worker.as_str())
                    && label.job.as_deref().unwrap_or("-") == job
                    && label.action == *action
            });
            prop_assert!(!rerun, "{action} {job}@{worker} ran again after succeeding");
        }
        if finished {
            break;
        }
    }
    // No lifecycle command that completed (or was left running) on a worker executed
    // again: each attempt of a step executed at most once, and only a failed attempt is
    // followed by another.
    let executed = worker_side.executed.lock().unwrap().clone();
    let distinct: BTreeSet<_> = executed
        .iter()
        .map(|run| (&run.worker, &run.attempt_key))
        .collect();
    prop_assert_eq!(
        distinct.len(),
        executed.len(),
        "a step attempt executed twice: {:?}",
        executed
    );
    let successful_runs = executed.iter().filter(|run| run.succeeded).count();
    prop_assert_eq!(
        successful_runs,
        reference.lifecycle_runs,
        "executed: {:?}",
        executed
    );
    // No hook that ran to its end executed again: an attempt runs once more only when the
    // operator died while it ran (it died too, without a receipt).
    let hooks = worker_side.hooks_executed.lock().unwrap().clone();
    for (position, run) in hooks.iter().enumerate() {
        let again = hooks[position + 1..].iter().any(|later| {
            (&later.job, &later.event, &later.attempt_key)
                == (&run.job, &run.event, &run.attempt_key)
        });
        prop_assert!(
            !(run.completed && again),
            "a completed hook executed again: {:?}",
            hooks
        );
    }
    let successful_hooks = hooks.iter().filter(|run| run.succeeded).count();
    prop_assert_eq!(
        successful_hooks,
        reference.hook_runs,
        "hooks executed: {:?}",
        hooks
    );
    prop_assert_eq!(outcome(&journal.0.lock().unwrap()), reference.state.clone());
    prop_assert_eq!(
        catalog::diff_with_replay(&journal.0.lock().unwrap()).unwrap(),
        vec![]
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 60, ..ProptestConfig::default() })]

    #[test]
    fn faults_at_any_step_then_resume_reach_the_uninterrupted_state(fault in 1u32..20, crash in any::<bool>(), second_fault in proptest::option::of(1u32..20), point in 0u8..3, merge_copies in any::<bool>()) {
        let reference = uninterrupted();
        let fault = 1 + (fault - 1) % reference.calls as u32;
        let mut faults = vec![(fault, crash)];
        if let Some(second) = second_fault {
            faults.push((second, !crash));
        }
        faults_then_resume(&reference, faults, crash_point(point), merge_copies)?;
    }
}

/// Every fault one call can meet: a crash (`true`) at each crash point, or a failure.
const EVERY_FAULT: [(bool, CrashPoint); 4] = [
    (true, CrashPoint::BeforeStart),
    (true, CrashPoint::WhileRunning),
    (true, CrashPoint::AfterFinish),
    (false, CrashPoint::BeforeStart),
];

/// Every hook call crashed at every point (and failed), then resumed: a hook that completed
/// before the crash is answered from its receipt, never executed again.
#[test]
fn a_crash_or_failure_at_any_hook_then_resume_never_runs_a_completed_hook_again() {
    let reference = uninterrupted();
    for &call in &reference.hook_calls {
        for (crash, point) in EVERY_FAULT {
            if let Err(error) = faults_then_resume(&reference, vec![(call, crash)], point, false) {
                panic!("fault at hook call {call} (crash {crash}, {point:?}): {error}");
            }
        }
    }
}

/// A copy and its target run as one operation: the uninterrupted run takes that path and ends
/// in the same state, and a failure or a crash at every call of it, at every crash point, then
/// resume, never executes a target twice.
#[test]
fn copies_merged_with_their_target_resume_like_separate_steps() {
    let reference = uninterrupted();
    let dir = tempfile::tempdir().unwrap();
    let journal = DbJournal(Mutex::new(built_catalog(dir.path())));
    let id = plan_deploy(&journal);
    let workers = FakeWorkers {
        merge_copies: true,
        ..FakeWorkers::default()
    };
    assert!(run_once(&journal, &id, &workers));
    assert!(*workers.merged.lock().unwrap() > 0, "no copy was merged");
    assert_eq!(workers.ran.lock().unwrap().len(), reference.calls);
    assert_eq!(outcome(&journal.0.lock().unwrap()), reference.state);
    for call in 1..=reference.calls as u32 {
        for (crash, point) in EVERY_FAULT {
            if let Err(error) = faults_then_resume(&reference, vec![(call, crash)], point, true) {
                panic!("fault at call {call} (crash {crash}, {point:?}): {error}");
            }
        }
    }
}

#[test]
fn waves_respect_demands_and_batches_of_one_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let journal = DbJournal(Mutex::new(built_catalog(dir.path())));
    let id = plan_deploy(&journal);
    let workers = FakeWorkers::default();
    assert!(run_once(&journal, &id, &workers));
    let ran = workers.ran.lock().unwrap().clone();
    let first_web = ran.iter().position(|(_, job, _)| job == "web").unwrap();
    let last_db = ran.iter().rposition(|(_, job, _)| job == "db").unwrap();
    assert!(
        last_db < first_web,
        "web started before db finished: {ran:?}"
    );
    // db has max_concurrent_starts = 1: two separate batches of one start each.
    let (steps, _) = steps_and_done(&journal.0.lock().unwrap(), &id);
    let db_start_batches: BTreeMap<u32, usize> = steps
        .iter()
        .filter(|s| s.job.as_deref() == Some("db") && matches!(s.kind, StepKind::Lifecycle { .. }))
        .fold(BTreeMap::new(), |mut m, s| {
            *m.entry(s.batch).or_default() += 1;
            m
        });
    assert_eq!(
        db_start_batches.values().copied().collect::<Vec<_>>(),
        vec![1, 1]
    );
}
