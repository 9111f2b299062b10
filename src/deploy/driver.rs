//! One `maand deploy` (or `--resume`) from start to end: prepare, plan, record the plan, stage
//! to disk, open the fleet, execute.

use super::execute::{execute, Execution, ExecutionReport};
use super::ops::FleetOps;
use super::plan::{plan, Plan, PlanError};
use super::prepare::{prepare, worker_jobs, PrepareError, Prepared};
use super::report::{DeployProgress, Reported};
use super::stage::FileStore;
use crate::activity::SharedRun;
use crate::bucket::Bucket;
use crate::events::{
    DeployFlags, DeployPlanned, DeploySkipped, Event, PlannedStep, StepKind, UpdateSeqBumped,
};
use crate::kv::secret::SecretKey;
use crate::remote::{self, stage_worker_files, Fleet, WorkerFiles, WorkerIdentity};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What the operator asked for.
#[derive(Debug, Clone, Default)]
pub struct DeployRequest {
    pub flags: DeployFlags,
    pub dry_run: bool,
    pub resume: bool,
    /// Echo worker output to the terminal.
    pub echo: bool,
}

/// How a deploy ended.
pub enum DeployOutcome {
    /// `--dry-run`: the plan, nothing recorded but the run.
    DryRun { plan: Plan, prepared: Box<Prepared> },
    /// Every selected job is already promoted.
    NothingToDo { skipped: Vec<String> },
    Executed {
        deploy_id: String,
        skipped: Vec<String>,
        report: ExecutionReport,
        /// Steps an earlier run of this deploy had finished (on `--resume`).
        done_before: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Bucket(#[from] crate::bucket::BucketError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("catalog database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Remote(#[from] remote::RemoteError),
    #[error(transparent)]
    Prerequisites(#[from] remote::PrerequisiteError),
    #[error("{0}")]
    Resume(String),
    #[error("{0}")]
    Other(String),
}

/// The unfinished deploy `--resume` continues: its id, steps and what already succeeded.
struct Unfinished {
    deploy_id: String,
    catalog_seq: u64,
    update_seq: u64,
    steps: Vec<PlannedStep>,
    done: BTreeSet<u32>,
}

fn load_unfinished(run: &SharedRun) -> Result<Unfinished, DeployError> {
    run.with(|run| -> Result<Unfinished, DeployError> {
        let conn = run.conn();
        let latest: Option<(String, String, i64)> = conn
            .query_row(
                "SELECT deploy_id, status, catalog_seq FROM deploys ORDER BY planned_seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .ok();
        let Some((deploy_id, status, catalog_seq)) = latest else {
            return Err(DeployError::Resume("there is no deploy to resume: run `maand deploy`".into()));
        };
        if status == "succeeded" {
            return Err(DeployError::Resume(format!(
                "the last deploy ({deploy_id}) finished successfully; nothing to resume: run `maand deploy`"
            )));
        }
        let current_catalog: i64 = conn.query_row("SELECT catalog_seq FROM bucket WHERE id = 1", [], |r| r.get(0))?;
        if current_catalog != catalog_seq {
            return Err(DeployError::Resume(format!(
                "`maand build` changed the catalog after deploy {deploy_id} was planned; its plan no longer matches: run `maand deploy` to plan afresh"
            )));
        }
        let bucket_update_seq: i64 = conn.query_row("SELECT update_seq FROM bucket WHERE id = 1", [], |r| r.get(0))?;
        let mut stmt = conn.prepare("SELECT idx, wave, job, worker, batch, kind, status FROM deploy_steps WHERE deploy_id = ?1 ORDER BY idx")?;
        let mut steps = Vec::new();
        let mut done = BTreeSet::new();
        let rows = stmt.query_map([&deploy_id], |r| {
            Ok((r.get::<_, u32>(0)?, r.get::<_, u32>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, Option<String>>(3)?, r.get::<_, u32>(4)?, r.get::<_, String>(5)?, r.get::<_, String>(6)?))
        })?;
        for row in rows {
            let (index, wave, job, worker, batch, kind, status) = row?;
            let kind: StepKind = serde_json::from_str(&kind).map_err(|e| DeployError::Other(format!("deploy step {index}: {e}")))?;
            if status == "succeeded" {
                done.insert(index);
            }
            steps.push(PlannedStep { index, wave, job, worker, batch, kind });
        }
        Ok(Unfinished { deploy_id, catalog_seq: catalog_seq as u64, update_seq: bucket_update_seq as u64, steps, done })
    })
}

/// Per step of `deploy_id`, how many of its attempts failed: a failed step resumed is a new
/// attempt (a fresh receipt on the worker), a step in doubt is the same attempt again.
pub(crate) fn failed_attempts(
    conn: &rusqlite::Connection,
    deploy_id: &str,
) -> Result<BTreeMap<u32, u32>, DeployError> {
    let planned: i64 = conn.query_row(
        "SELECT planned_seq FROM deploys WHERE deploy_id = ?1",
        [deploy_id],
        |r| r.get(0),
    )?;
    let mut failed: BTreeMap<u32, u32> = BTreeMap::new();
    for stored in journal::events_of_kind(conn, "step_failed", planned.max(0) as u64) {
        let stored = stored.map_err(crate::catalog::CatalogError::from)?;
        if let (_, Event::StepFailed(event)) = crate::catalog::decode_stored(&stored)? {
            if event.deploy_id == deploy_id {
                *failed.entry(event.index).or_default() += 1;
            }
        }
    }
    Ok(failed)
}

/// Writes `worker.json`, `jobs.json`, `bin/` and the trees the pending sync steps ship.
fn stage_to_disk(
    bucket: &Bucket,
    store: &FileStore,
    prepared: &Prepared,
    steps: &[PlannedStep],
    done: &BTreeSet<u32>,
    update_seq: u64,
    run: &SharedRun,
) -> Result<(), DeployError> {
    let root = bucket.tmp_dir().join("workers");
    let mut workers: BTreeSet<&str> = BTreeSet::new();
    for step in steps.iter().filter(|s| !done.contains(&s.index)) {
        if let StepKind::Sync {
            alloc_id,
            transfer: true,
            ..
        } = &step.kind
        {
            let fact = &prepared.facts[alloc_id];
            workers.insert(&fact.worker);
            // A tree that renders only after pre_deploy hooks is written by the restage step.
            if let Some(tree) = prepared.trees.get(alloc_id) {
                let dir = root.join(&fact.worker).join("jobs").join(&fact.job);
                tree.write_to(&dir, store)
                    .map_err(|e| DeployError::Other(format!("writing {}: {e}", dir.display())))?;
            }
        }
    }
    // jobs.json says what will run once this deploy succeeds, so a successful deploy needs no
    // second write; the finalize step rewrites it when the outcome differs.
    let promoted: BTreeSet<(&str, &str)> = steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Promote { alloc_ids } => Some(alloc_ids),
            _ => None,
        })
        .flatten()
        .filter_map(|id| prepared.facts.get(id))
        .map(|f| (f.job.as_str(), f.worker.as_str()))
        .collect();
    for worker in workers {
        let (worker_id, labels) = prepared.workers.get(worker).cloned().unwrap_or_default();
        let mut jobs = run.with(|r| worker_jobs(r.conn(), worker))?;
        for entry in &mut jobs {
            if promoted.contains(&(entry.name.as_str(), worker)) {
                entry.current_version = entry.new_version.clone();
            }
        }
        let files = WorkerFiles {
            identity: WorkerIdentity {
                bucket_id: prepared.bucket_id.clone(),
                worker_id,
                update_seq,
                labels,
            },
            jobs,
        };
        stage_worker_files(&root.join(worker), &files)
            .map_err(|e| DeployError::Other(e.to_string()))?;
    }
    Ok(())
}

/// Runs a deploy inside `run`, showing its steps to `progress` as they are recorded.
pub fn deploy(
    bucket: &Bucket,
    run: &SharedRun,
    request: &DeployRequest,
    progress: &mut DeployProgress,
) -> Result<DeployOutcome, DeployError> {
    let kv_key = SecretKey::load(&bucket.kv_key_path()).ok();
    let unfinished = if request.resume {
        Some(load_unfinished(run)?)
    } else {
        None
    };
    let flags = match &unfinished {
        Some(u) => run
            .with(|r| {
                r.conn().query_row(
                    "SELECT flags FROM deploys WHERE deploy_id = ?1",
                    [&u.deploy_id],
                    |row| row.get::<_, String>(0),
                )
            })
            .ok()
            .and_then(|f| serde_json::from_str(&f).ok())
            .unwrap_or_default(),
        None => request.flags.clone(),
    };
    let mut prepared = run.with(|r| prepare(r.conn(), kv_key, &flags))?;

    let (deploy_id, steps, done, update_seq, skipped) = match unfinished {
        Some(u) => {
            if u.catalog_seq != prepared.catalog_seq {
                return Err(DeployError::Resume(
                    "the catalog changed since the plan: run `maand deploy`".into(),
                ));
            }
            // Jobs with pre_deploy hooks are staged again after their hooks: their planned
            // hashes predate the hooks' KV and are not comparable.
            let restaged: BTreeSet<&str> = u
                .steps
                .iter()
                .filter(|s| matches!(s.kind, StepKind::Restage))
                .filter_map(|s| s.job.as_deref())
                .collect();
            for step in u.steps.iter().filter(|s| {
                !u.done.contains(&s.index)
                    && !s.job.as_deref().is_some_and(|j| restaged.contains(j))
            }) {
                if let StepKind::Sync {
                    alloc_id,
                    tree_hash,
                    ..
                } = &step.kind
                {
                    let staged = prepared.trees.get(alloc_id).map(|t| t.tree_hash.as_str());
                    if staged != Some(tree_hash.as_str()) {
                        return Err(DeployError::Resume(format!(
                            "the staged files of {} changed since deploy {} was planned (KV or templates changed); run `maand deploy` to plan afresh",
                            step.job.as_deref().unwrap_or("?"),
                            u.deploy_id
                        )));
                    }
                }
            }
            (u.deploy_id, u.steps, u.done, u.update_seq, vec![])
        }
        None => {
            prepared.input.adopted_unchanged =
                super::adopt::unchanged_on_workers(bucket, &prepared, run)
                    .map_err(DeployError::Other)?;
            let plan = plan(&prepared.input)?;
            if request.dry_run {
                return Ok(DeployOutcome::DryRun {
                    plan,
                    prepared: Box::new(prepared),
                });
            }
            let skipped_events: Vec<Event> = plan
                .skipped_jobs
                .iter()
                .map(|job| {
                    Event::DeploySkipped(DeploySkipped {
                        job: job.clone(),
                        reason: "already_promoted".into(),
                    })
                })
                .collect();
            if plan.is_empty() {
                run.record(&skipped_events)?;
                return Ok(DeployOutcome::NothingToDo {
                    skipped: plan.skipped_jobs,
                });
            }
            let deploy_id = uuid::Uuid::new_v4().to_string();
            let update_seq = prepared.update_seq + 1;
            let mut events = skipped_events;
            events.push(Event::UpdateSeqBumped(UpdateSeqBumped { update_seq }));
            events.push(Event::DeployPlanned(Box::new(DeployPlanned {
                deploy_id: deploy_id.clone(),
                catalog_seq: prepared.catalog_seq,
                update_seq,
                flags: flags.clone(),
                steps: plan.steps.clone(),
            })));
            run.record(&events)?;
            (
                deploy_id,
                plan.steps,
                BTreeSet::new(),
                update_seq,
                plan.skipped_jobs,
            )
        }
    };

    let failed_attempts = run.with(|r| failed_attempts(r.conn(), &deploy_id))?;
    remote::check_host_tools()?;
    let conf = bucket.conf()?;
    let step_limit = Duration::from_secs(u64::from(conf.step_time_limit));
    let fleet = Fleet::new(bucket.remote_config(&conf, Duration::from_secs(10))?, 32)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| DeployError::Other(e.to_string()))?;
    // Workers holding an allocation this bucket's deploys copied before (not one adopted from
    // the Go maand) have shown their tools work.
    let proven: BTreeSet<String> = prepared
        .input
        .allocations
        .iter()
        .filter(|a| a.deployed.as_ref().is_some_and(|d| !d.adopted))
        .map(|a| a.worker.clone())
        .collect();
    let ops = std::sync::Arc::new(
        FleetOps::new(
            bucket.clone(),
            fleet,
            run.clone(),
            prepared.bucket_id.clone(),
            bucket.tmp_dir().join("workers"),
            request.echo,
            step_limit,
        )
        .trusting_tools_of(proven),
    );
    // Connecting is the slowest part of a deploy: start every worker's master and tool check
    // now, and write the staged trees while the handshakes run.
    let to_ship: BTreeSet<String> = steps
        .iter()
        .filter(|s| {
            !done.contains(&s.index)
                && matches!(
                    s.kind,
                    StepKind::Sync { transfer: true, .. } | StepKind::Lifecycle { .. }
                )
        })
        .filter_map(|s| s.worker.clone())
        .collect();
    for worker in to_ship {
        let ops = ops.clone();
        // Each worker's first step awaits the same connection; a failed warm-up is reported
        // there.
        runtime.spawn(async move { ops.warm_up(&worker).await });
    }
    stage_to_disk(
        bucket, &ops.store, &prepared, &steps, &done, update_seq, run,
    )?;
    ops.store
        .prune()
        .map_err(|e| DeployError::Other(format!("cleaning {}: {e}", ops.store.dir().display())))?;
    let done_before = done.len();
    progress.begin(steps.len() - done_before);
    let progress: &DeployProgress = progress;
    let report = runtime.block_on(async {
        let execution = Execution {
            deploy_id: deploy_id.clone(),
            steps,
            done,
            failed_attempts,
            facts: &prepared.facts,
        };
        let journal = Reported {
            journal: run,
            progress,
        };
        execute(ops.as_ref(), &journal, &execution)
            .await
            .map_err(DeployError::Other)
    })?;
    Ok(DeployOutcome::Executed {
        deploy_id,
        skipped,
        report,
        done_before,
    })
}

/// Per wave and job, the dry-run view of a plan.
pub fn dry_run_waves(
    plan: &Plan,
    prepared: &Prepared,
) -> BTreeMap<u32, BTreeMap<String, Vec<super::plan::AllocationAction>>> {
    let mut waves: BTreeMap<u32, BTreeMap<String, Vec<super::plan::AllocationAction>>> =
        BTreeMap::new();
    for (name, job) in &prepared.input.jobs {
        let selected =
            prepared.input.flags.jobs.is_empty() || prepared.input.flags.jobs.contains(name);
        if selected {
            waves
                .entry(job.deployment_seq)
                .or_default()
                .entry(name.clone())
                .or_default();
        }
    }
    for action in &plan.actions {
        let seq = prepared
            .input
            .jobs
            .get(&action.job)
            .map(|j| j.deployment_seq)
            .unwrap_or(0);
        waves
            .entry(seq)
            .or_default()
            .entry(action.job.clone())
            .or_default()
            .push(action.clone());
    }
    waves
}
