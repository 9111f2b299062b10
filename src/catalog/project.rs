//! How each event changes the projection tables. One arm per event kind; every arm is total
//! (an event whose subject is missing changes nothing rather than failing the replay).

use super::{CatalogError, EventMeta};
use crate::events::{Event, JobRecord, KvChange, KvChanged, KvImported, KvValue};
use rusqlite::{params, Transaction};

/// Every projection table, in an order safe for deleting rows (children first).
pub const PROJECTION_TABLES: &[&str] = &[
    "health",
    "deploy_steps",
    "deploys",
    "deployments",
    "kv",
    "allocations",
    "job_ports",
    "job_certs",
    "job_commands",
    "job_files",
    "jobs",
    "workers",
    "runs",
    "bucket",
];

/// Versions kept per KV key; older ones are dropped as new ones arrive.
pub const KV_VERSIONS_KEPT: i64 = 7;

pub(super) fn apply(tx: &Transaction, meta: &EventMeta, event: &Event) -> Result<(), CatalogError> {
    if changes_catalog_structure(event) {
        tx.prepare_cached("UPDATE bucket SET catalog_seq = ?1 WHERE id = 1")?
            .execute([meta.seq as i64])?;
    }
    match event {
        Event::RunStarted(e) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO runs (run_id, command, argv, maand_version, user, host, pid, started_seq, started_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                meta.run_id,
                e.command,
                serde_json::to_string(&e.argv).expect("argv serializes"),
                e.maand_version,
                e.user,
                e.host,
                e.pid,
                meta.seq as i64,
                meta.time_ms
            ])?;
        }
        Event::RunFinished(e) => {
            tx.prepare_cached(
                "UPDATE runs SET finished_ms = ?2, outcome = ?3, duration_ms = ?4, error = ?5 WHERE run_id = ?1",
            )?
            .execute(params![meta.run_id, meta.time_ms, e.outcome.as_str(), e.duration_ms as i64, e.error])?;
        }
        Event::RunAbandoned(e) => {
            tx.prepare_cached(
                "UPDATE runs SET finished_ms = ?2, outcome = 'abandoned', error = ?3 WHERE run_id = ?1 AND outcome IS NULL",
            )?
            .execute(params![
                e.run_id,
                meta.time_ms,
                format!("never recorded its end (process {} was killed); closed by run {}", e.pid, meta.run_id)
            ])?;
        }
        Event::BucketInitialized(e) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO bucket (id, bucket_id, update_seq, ca_fingerprint, schema_version, initialized_ms)
                 VALUES (1, ?1, 0, ?2, ?3, ?4)",
            )?
            .execute(params![e.bucket_id, e.ca_fingerprint, e.schema_version, meta.time_ms])?;
        }
        Event::BucketUpgraded(e) => {
            tx.prepare_cached("UPDATE bucket SET schema_version = ?1 WHERE id = 1")?
                .execute([e.to_schema])?;
        }
        Event::WorkerUpserted(w) => {
            let tags: serde_json::Map<String, serde_json::Value> = w
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            tx.prepare_cached(
                "INSERT OR REPLACE INTO workers (host, worker_id, hostname, labels, memory_mb, cpu_mhz, tags, position)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                w.host,
                w.worker_id,
                w.hostname,
                json(&w.labels),
                w.memory_mb.map(|v| v as i64),
                w.cpu_mhz.map(|v| v as i64),
                serde_json::Value::Object(tags).to_string(),
                w.position
            ])?;
        }
        Event::WorkerRemoved(e) => {
            tx.prepare_cached("DELETE FROM workers WHERE host = ?1")?
                .execute([&e.host])?;
        }
        Event::JobUpserted(job) => project_job(tx, job)?,
        Event::JobRemoved(e) => {
            for table in ["job_files", "job_commands", "job_certs"] {
                tx.prepare_cached(&format!("DELETE FROM {table} WHERE job = ?1"))?
                    .execute([&e.name])?;
            }
            tx.prepare_cached("DELETE FROM jobs WHERE name = ?1")?
                .execute([&e.name])?;
        }
        Event::PortAssigned(e) => {
            tx.prepare_cached("INSERT OR REPLACE INTO job_ports (job, name, port, assigned) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![e.job, e.name, e.port, e.from_pool])?;
        }
        Event::PortReleased(e) => {
            tx.prepare_cached("DELETE FROM job_ports WHERE job = ?1 AND name = ?2")?
                .execute([&e.job, &e.name])?;
        }
        Event::AllocationUpserted(a) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO allocations (alloc_id, job, worker_ip, disabled, removed, new_version, deployment_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![a.alloc_id, a.job, a.worker_ip, a.disabled, a.removed, a.new_version, a.deployment_seq])?;
        }
        Event::KvChanged(e) => project_kv(tx, meta, e)?,
        // Command activity and skips live in the journal only: `logs show` reads them there.
        Event::CommandStarted(_)
        | Event::CommandOutput(_)
        | Event::CommandFinished(_)
        | Event::DeploySkipped(_) => {}
        Event::UpdateSeqBumped(e) => {
            tx.prepare_cached("UPDATE bucket SET update_seq = ?1 WHERE id = 1")?
                .execute([e.update_seq as i64])?;
        }
        Event::DeployPlanned(plan) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO deploys (deploy_id, run_id, planned_seq, catalog_seq, flags, status, failed)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'planned', '[]')",
            )?
            .execute(params![plan.deploy_id, meta.run_id, meta.seq as i64, plan.catalog_seq as i64, json(&plan.flags)])?;
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO deploy_steps (deploy_id, idx, wave, job, worker, batch, kind, status, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', NULL)",
            )?;
            for step in &plan.steps {
                insert.execute(params![
                    plan.deploy_id,
                    step.index,
                    step.wave,
                    step.job,
                    step.worker,
                    step.batch,
                    json(&step.kind)
                ])?;
            }
        }
        Event::StepStarted(e) => step_status(tx, &e.deploy_id, e.index, "started", None)?,
        Event::StepSucceeded(e) => {
            step_status(tx, &e.deploy_id, e.index, "succeeded", e.note.as_deref())?
        }
        Event::StepFailed(e) => step_status(tx, &e.deploy_id, e.index, "failed", Some(&e.error))?,
        Event::StepSkipped(e) => {
            step_status(tx, &e.deploy_id, e.index, "skipped", Some(&e.reason))?
        }
        Event::DeployFinished(e) => {
            tx.prepare_cached("UPDATE deploys SET status = ?2, failed = ?3 WHERE deploy_id = ?1")?
                .execute(params![
                    e.deploy_id,
                    e.outcome.as_str(),
                    json(&e.failed_jobs)
                ])?;
        }
        Event::AllocationStaged(e) => {
            let files: serde_json::Map<String, serde_json::Value> = e
                .files
                .iter()
                .map(|(path, hash)| (path.clone(), hash.clone().into()))
                .collect();
            let files = serde_json::Value::Object(files).to_string();
            tx.prepare_cached(
                "INSERT INTO deployments (alloc_id, job, worker_ip, current_hash, previous_hash, current_version, current_files, previous_files)
                 VALUES (?1, ?2, ?3, ?4, NULL, '0.0.0', ?5, NULL)
                 ON CONFLICT (alloc_id) DO UPDATE SET current_hash = excluded.current_hash, current_files = excluded.current_files",
            )?
            .execute(params![e.alloc_id, e.job, e.worker_ip, e.tree_hash, files])?;
        }
        Event::AllocationPromoted(e) => {
            tx.prepare_cached(
                "UPDATE deployments SET previous_hash = current_hash, previous_files = current_files, current_version = ?2,
                     stopped = 0, health_failed = 0, adopted = 0 WHERE alloc_id = ?1",
            )?
            .execute(params![e.alloc_id, e.version])?;
        }
        Event::AllocationStopped(e) => {
            tx.prepare_cached("UPDATE deployments SET stopped = 1 WHERE alloc_id = ?1")?
                .execute([&e.alloc_id])?;
        }
        Event::AllocationPurged(e) => {
            tx.prepare_cached("DELETE FROM health WHERE alloc_id = ?1")?
                .execute([&e.alloc_id])?;
            tx.prepare_cached("DELETE FROM deployments WHERE alloc_id = ?1")?
                .execute([&e.alloc_id])?;
            tx.prepare_cached("DELETE FROM allocations WHERE alloc_id = ?1")?
                .execute([&e.alloc_id])?;
        }
        Event::KvPurged(e) => {
            let mut delete =
                tx.prepare_cached("DELETE FROM kv WHERE namespace = ?1 AND key = ?2")?;
            for (namespace, key) in &e.keys {
                delete.execute([namespace, key])?;
            }
        }
        Event::AllocationHashCleared(e) => {
            tx.prepare_cached("DELETE FROM deployments WHERE alloc_id = ?1")?
                .execute([&e.alloc_id])?;
        }
        Event::HealthChecked(e) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO health (alloc_id, job, worker_ip, healthy, detail, attempt, run_id, checked_seq, checked_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                e.alloc_id,
                e.job,
                e.worker_ip,
                e.healthy,
                e.detail,
                e.attempt,
                meta.run_id,
                meta.seq as i64,
                meta.time_ms
            ])?;
            tx.prepare_cached("UPDATE deployments SET health_failed = ?2 WHERE alloc_id = ?1")?
                .execute(params![e.alloc_id, !e.healthy])?;
        }
        Event::BucketImported(e) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO bucket (id, bucket_id, update_seq, ca_fingerprint, schema_version, initialized_ms)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![e.bucket_id, e.update_seq as i64, e.ca_fingerprint, e.schema_version, meta.time_ms])?;
        }
        Event::KvImported(e) => project_imported_kv(tx, meta, e)?,
        Event::AllocationAdopted(e) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO deployments (alloc_id, job, worker_ip, current_hash, previous_hash, current_version,
                     current_files, previous_files, health_failed, stopped, adopted)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5, '{}', NULL, 0, 0, 1)",
            )?
            .execute(params![e.alloc_id, e.job, e.worker_ip, e.go_hash, e.version])?;
        }
    }
    Ok(())
}

/// Events of `maand build` that change what a deploy plan would contain.
fn changes_catalog_structure(event: &Event) -> bool {
    matches!(
        event,
        Event::WorkerUpserted(_)
            | Event::WorkerRemoved(_)
            | Event::JobUpserted(_)
            | Event::JobRemoved(_)
            | Event::PortAssigned(_)
            | Event::PortReleased(_)
            | Event::AllocationUpserted(_)
    )
}

fn step_status(
    tx: &Transaction,
    deploy_id: &str,
    index: u32,
    status: &str,
    detail: Option<&str>,
) -> Result<(), CatalogError> {
    tx.prepare_cached(
        "UPDATE deploy_steps SET status = ?3, detail = ?4 WHERE deploy_id = ?1 AND idx = ?2",
    )?
    .execute(params![deploy_id, index, status, detail])?;
    Ok(())
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("catalog values serialize")
}

/// The fingerprint build compares to tell whether a job changed: SHA-256 of its encoded record.
pub fn job_record_hash(job: &JobRecord) -> String {
    use sha2::Digest;
    let bytes = journal::encode(job).expect("job records encode");
    hex::encode(sha2::Sha256::digest(bytes))
}

fn project_job(tx: &Transaction, job: &JobRecord) -> Result<(), CatalogError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO jobs (name, job_id, version, version_declared, selectors, max_concurrent_upgrades,
             max_concurrent_starts, min_allocations_count, restart_policy, restart_globs, min_memory_mb, max_memory_mb,
             current_memory_mb, min_cpu_mhz, max_cpu_mhz, current_cpu_mhz, resources_source, deployment_seq,
             health_check, files_hash, record_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
    )?
    .execute(params![
        job.name,
        job.job_id,
        job.version,
        job.version_declared,
        json(&job.selectors),
        job.max_concurrent_upgrades,
        job.max_concurrent_starts,
        job.min_allocations_count,
        job.restart_policy,
        json(&job.restart_globs),
        job.min_memory_mb as i64,
        job.max_memory_mb as i64,
        job.current_memory_mb as i64,
        job.min_cpu_mhz as i64,
        job.max_cpu_mhz as i64,
        job.current_cpu_mhz as i64,
        job.resources_source,
        job.deployment_seq,
        job.health_check,
        job.files_hash,
        job_record_hash(job)
    ])?;
    for table in ["job_files", "job_commands", "job_certs"] {
        tx.prepare_cached(&format!("DELETE FROM {table} WHERE job = ?1"))?
            .execute([&job.name])?;
    }
    let mut insert_file = tx.prepare_cached(
        "INSERT INTO job_files (job, path, hash, size, executable) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for file in &job.files {
        insert_file.execute(params![
            job.name,
            file.path,
            file.hash,
            file.size as i64,
            file.executable
        ])?;
    }
    let mut insert_command = tx.prepare_cached(
        "INSERT INTO job_commands (job, name, event, script, demand_job, demand_command, demand_config)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for c in &job.commands {
        insert_command.execute(params![
            job.name,
            c.name,
            c.event,
            c.script,
            c.demand_job,
            c.demand_command,
            c.demand_config
        ])?;
    }
    let mut insert_cert = tx.prepare_cached(
        "INSERT INTO job_certs (job, name, definition, definition_hash) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for c in &job.certs {
        insert_cert.execute(params![job.name, c.name, c.definition, c.definition_hash])?;
    }
    Ok(())
}

fn project_kv(tx: &Transaction, meta: &EventMeta, e: &KvChanged) -> Result<(), CatalogError> {
    let mut latest =
        tx.prepare_cached("SELECT max(version) FROM kv WHERE namespace = ?1 AND key = ?2")?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO kv (namespace, key, version, value, sealed, deleted, seq, time_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut trim =
        tx.prepare_cached("DELETE FROM kv WHERE namespace = ?1 AND key = ?2 AND version <= ?3")?;
    for change in &e.changes {
        let (key, value, sealed, deleted) = match change {
            KvChange::Put {
                key,
                value: KvValue::Plain(v),
            } => (key, v.as_str(), false, false),
            KvChange::Put {
                key,
                value: KvValue::Sealed(v),
            } => (key, v.as_str(), true, false),
            KvChange::Delete { key } => (key, "", false, true),
        };
        let previous: Option<i64> = latest.query_row(params![e.namespace, key], |r| r.get(0))?;
        let version = previous.unwrap_or(0) + 1;
        insert.execute(params![
            e.namespace,
            key,
            version,
            value,
            sealed,
            deleted,
            meta.seq as i64,
            meta.time_ms
        ])?;
        if version > KV_VERSIONS_KEPT {
            trim.execute(params![e.namespace, key, version - KV_VERSIONS_KEPT])?;
        }
    }
    Ok(())
}

/// The versions of an imported key, oldest first, numbered after whatever the key already has
/// and stamped with the time the Go maand wrote them.
fn project_imported_kv(
    tx: &Transaction,
    meta: &EventMeta,
    e: &KvImported,
) -> Result<(), CatalogError> {
    let previous: Option<i64> = tx
        .prepare_cached("SELECT max(version) FROM kv WHERE namespace = ?1 AND key = ?2")?
        .query_row(params![e.namespace, e.key], |r| r.get(0))?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO kv (namespace, key, version, value, sealed, deleted, seq, time_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut version = previous.unwrap_or(0);
    for imported in &e.versions {
        version += 1;
        let (value, sealed) = match &imported.value {
            Some(KvValue::Plain(v)) => (v.as_str(), false),
            Some(KvValue::Sealed(v)) => (v.as_str(), true),
            None => ("", false),
        };
        insert.execute(params![
            e.namespace,
            e.key,
            version,
            value,
            sealed,
            imported.value.is_none(),
            meta.seq as i64,
            imported.time_ms
        ])?;
    }
    if version > KV_VERSIONS_KEPT {
        tx.prepare_cached("DELETE FROM kv WHERE namespace = ?1 AND key = ?2 AND version <= ?3")?
            .execute(params![e.namespace, e.key, version - KV_VERSIONS_KEPT])?;
    }
    Ok(())
}
