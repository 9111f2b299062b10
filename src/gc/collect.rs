//! `maand gc` as a use case: reads what the catalog marks removed, deletes it on workers and
//! records the purges through the run, trims KV, and removes the step and hook receipts of
//! finished deploys. What to purge is decided by the pure functions of [`super`].

use crate::activity::SharedRun;
use crate::bucket::Bucket;
use crate::deploy::hook_receipts::HookReceipts;
use crate::events::Event;
use crate::remote::{
    bucket_dir_on_worker, forget_steps_command, shell_quote, Fleet, RemoteCommand, RemoteError,
};
use crate::run::now_ms;
use rusqlite::{Connection, OptionalExtension};
use std::collections::BTreeSet;
use std::time::Duration;

use super::{
    purge_allocation, purge_jobs_without_allocations, purge_kv_history, KvKey, RemovedAllocation,
};

fn removed_allocations(conn: &Connection) -> rusqlite::Result<Vec<RemovedAllocation>> {
    let mut stmt = conn.prepare(
        "SELECT a.alloc_id, a.job, a.worker_ip, w.host IS NOT NULL FROM allocations a
         LEFT JOIN workers w ON w.host = a.worker_ip WHERE a.removed = 1 ORDER BY a.job, a.worker_ip",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(RemovedAllocation {
            alloc_id: r.get(0)?,
            job: r.get(1)?,
            worker: r.get(2)?,
            worker_present: r.get(3)?,
        })
    })?;
    rows.collect()
}

fn kv_keys(conn: &Connection) -> Result<Vec<KvKey>, crate::catalog::CatalogError> {
    Ok(crate::catalog::read::current_kv(conn)?
        .into_iter()
        .map(|k| KvKey {
            namespace: k.namespace,
            key: k.key,
            deleted: k.deleted,
            time_ms: k.time_ms,
        })
        .collect())
}

fn jobs_with_allocations(conn: &Connection) -> rusqlite::Result<BTreeSet<String>> {
    let mut stmt = conn.prepare("SELECT DISTINCT job FROM allocations WHERE removed = 0")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

pub struct GcSummary {
    /// Removed allocations whose job trees were deleted and rows purged.
    pub allocations: usize,
    /// KV namespaces deleted.
    pub namespaces: usize,
    /// Deleted KV keys whose history was dropped.
    pub purged_keys: usize,
    /// Workers whose receipts of finished deploys were removed.
    pub receipt_workers: usize,
    /// `worker: error` of workers whose receipts could not be removed.
    pub receipt_failures: Vec<String>,
    /// Finished deploys whose hook receipts were removed from this host.
    pub hook_receipt_deploys: usize,
}

/// The deploy whose receipts must stay: the latest one, while it is unfinished (no
/// `deploy_finished`) and `maand deploy --resume` may still continue it. `None` when no deploy
/// ever ran.
fn resumable_deploy(conn: &Connection) -> rusqlite::Result<Option<Vec<String>>> {
    let latest: Option<(String, String)> = conn
        .query_row(
            "SELECT deploy_id, status FROM deploys ORDER BY planned_seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(latest.map(|(deploy_id, status)| {
        if status == "planned" {
            vec![deploy_id]
        } else {
            vec![]
        }
    }))
}

/// Workers of the catalog and the deploy whose step receipts must stay (see
/// [`resumable_deploy`]); `None` when no deploy ever ran.
fn receipt_scope(conn: &Connection) -> rusqlite::Result<Option<(Vec<String>, Vec<String>)>> {
    let Some(keep) = resumable_deploy(conn)? else {
        return Ok(None);
    };
    let workers = conn
        .prepare("SELECT host FROM workers ORDER BY position")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(Some((workers, keep)))
}

/// Removes the hook receipts (`tmp/receipts/<deploy>/`) of finished deploys on this host.
fn forget_hook_receipts(bucket: &Bucket, run: &SharedRun) -> anyhow::Result<usize> {
    let keep = run
        .with(|r| resumable_deploy(r.conn()))?
        .unwrap_or_default();
    Ok(HookReceipts::new(&bucket.tmp_dir()).forget_except(&keep)?)
}

/// Removes the step receipts and step logs of finished deploys on every worker.
fn forget_receipts(
    bucket: &Bucket,
    run: &SharedRun,
    bucket_id: &str,
    summary: &mut GcSummary,
) -> anyhow::Result<()> {
    let Some((workers, keep)) = run.with(|r| receipt_scope(r.conn()))? else {
        return Ok(());
    };
    if workers.is_empty() {
        return Ok(());
    }
    crate::remote::check_host_tools()?;
    let fleet = Fleet::new(
        bucket.remote_config(&bucket.conf()?, Duration::from_secs(10))?,
        16,
    )?;
    let command = forget_steps_command(bucket_id, &keep, Duration::from_secs(60))?;
    let observer: std::sync::Arc<dyn crate::remote::Observer> =
        std::sync::Arc::new(run.observer(None, "gc", "forget_receipts", false));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for result in runtime.block_on(fleet.run(&workers, &command, observer)) {
        match result.result {
            Ok(outcome) if outcome.success() => summary.receipt_workers += 1,
            Ok(outcome) => summary.receipt_failures.push(format!(
                "{}: the cleanup exited with code {}",
                result.worker, outcome.exit_code
            )),
            Err(error) => summary
                .receipt_failures
                .push(format!("{}: {error}", result.worker)),
        }
    }
    Ok(())
}

/// Runs `maand gc` in the open run: deletes the trees of removed allocations on their
/// workers and purges their rows, trims KV (namespaces of jobs without allocations, history of
/// keys deleted more than `retain_days` days ago), and removes the receipts of finished
/// deploys. Fails naming the allocations whose trees could not be deleted; they stay marked
/// removed for the next gc.
pub fn collect(bucket: &Bucket, run: &SharedRun, retain_days: u32) -> anyhow::Result<GcSummary> {
    let (removed, bucket_id) = run.with(|r| -> anyhow::Result<_> {
        let bucket_id = crate::catalog::read::bucket_id(r.conn())?.unwrap_or_default();
        Ok((removed_allocations(r.conn())?, bucket_id))
    })?;
    let mut summary = GcSummary {
        allocations: 0,
        namespaces: 0,
        purged_keys: 0,
        receipt_workers: 0,
        receipt_failures: Vec::new(),
        hook_receipt_deploys: 0,
    };
    let mut failures = Vec::new();
    if !removed.is_empty() {
        crate::remote::check_host_tools()?;
        let fleet = Fleet::new(
            bucket.remote_config(&bucket.conf()?, Duration::from_secs(10))?,
            16,
        )?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let outcomes = runtime.block_on(async {
            let mut outcomes = Vec::new();
            for allocation in &removed {
                outcomes.push(remove_tree(&fleet, run, &bucket_id, allocation).await);
            }
            outcomes
        });
        for (allocation, outcome) in removed.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    let kv = run.with(|r| kv_keys(r.conn()))?;
                    let events = purge_allocation(allocation, &kv);
                    summary.namespaces += events.len() - 1;
                    run.record(&events)?;
                    summary.allocations += 1;
                }
                Err(error) => {
                    failures.push(format!("{}@{}: {error}", allocation.job, allocation.worker))
                }
            }
        }
    }
    let kv = run.with(|r| kv_keys(r.conn()))?;
    let jobs = run.with(|r| jobs_with_allocations(r.conn()))?;
    let job_events = purge_jobs_without_allocations(&kv, &jobs);
    summary.namespaces += job_events.len();
    run.record(&job_events)?;
    let kv = run.with(|r| kv_keys(r.conn()))?;
    if let Some(event) = purge_kv_history(&kv, now_ms(), retain_days) {
        if let Event::KvPurged(purged) = &event {
            summary.purged_keys = purged.keys.len();
        }
        run.record(&[event])?;
    }
    summary.hook_receipt_deploys = forget_hook_receipts(bucket, run)?;
    forget_receipts(bucket, run, &bucket_id, &mut summary)?;
    if failures.is_empty() {
        Ok(summary)
    } else {
        Err(anyhow::anyhow!(
            "gc could not clean {} allocation(s); they stay marked removed, run `maand gc` again once the workers answer:\n  {}",
            failures.len(),
            failures.join("\n  ")
        ))
    }
}

/// Deletes the allocation's whole job tree (data and logs included). A worker that left the
/// catalog and does not answer is assumed gone.
async fn remove_tree(
    fleet: &Fleet,
    run: &SharedRun,
    bucket_id: &str,
    allocation: &RemovedAllocation,
) -> Result<(), String> {
    let dir = format!(
        "{}/jobs/{}",
        bucket_dir_on_worker(bucket_id),
        allocation.job
    );
    let command = RemoteCommand::bash(
        &format!("rm -rf -- {}", shell_quote(&dir)),
        Duration::from_secs(300),
    )
    .map_err(|e| e.to_string())?
    .privileged();
    let session = match fleet.session(&allocation.worker).await {
        Ok(session) => session,
        Err(
            RemoteError::Refused { .. }
            | RemoteError::ConnectTimeout { .. }
            | RemoteError::ConnectFailed { .. },
        ) if !allocation.worker_present => {
            return Ok(());
        }
        Err(error) => return Err(error.to_string()),
    };
    let observer = run.observer(Some(&allocation.job), "gc", "remove_job_tree", false);
    match session.run(&command, &observer).await {
        Ok(outcome) if outcome.success() => Ok(()),
        Ok(outcome) => Err(format!("rm exited with code {}", outcome.exit_code)),
        Err(error) => Err(error.to_string()),
    }
}
