//! The import as a decision: from a read Go bucket (and the bucket's keys) to the events that
//! make our catalog hold the same state. Pure: no files, no database, no clock; the nonce
//! source is passed in.
//!
//! Ids of workers, jobs and allocations are re-derived the way `maand build` derives them (the
//! Go maand's ids would make the first build replace every allocation); the bucket id and the
//! update sequence are kept. Secrets are opened with the Go format and sealed in ours.

use super::read::{GoBucket, GoJob};
use super::secret;
use super::ImportError;
use crate::build::{alloc_id, derived_id};
use crate::catalog::Blob;
use crate::events::{
    AllocationAdopted, AllocationRecord, BucketImported, Event, ImportedKvVersion, JobCertRecord,
    JobCommandRecord, JobFileRecord, JobRecord, KvImported, KvValue, PortAssigned, WorkerRecord,
};
use crate::kv::secret::{seal, SecretKey};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What the import needs besides the Go database.
pub struct ImportContext<'a> {
    /// `secrets/kv.key`; required when the Go database holds encrypted values.
    pub kv_key: Option<&'a SecretKey>,
    pub ca_fingerprint: &'a str,
    /// Where the Go database is kept, relative to the bucket.
    pub kept_copy: &'a str,
    pub source_sha256: &'a str,
    /// The Go database, for error messages.
    pub source: PathBuf,
}

/// How much an import brings over.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportSummary {
    pub bucket_id: String,
    pub update_seq: u64,
    pub workers: usize,
    pub jobs: usize,
    pub allocations: usize,
    pub ports: usize,
    pub kv_keys: usize,
    pub kv_versions: usize,
    pub secrets: usize,
    /// Allocations the Go maand had promoted: adopted until our first deploy.
    pub adopted: usize,
}

/// The events (and job file blobs) of an import.
#[derive(Debug, Default)]
pub struct ImportDecision {
    pub events: Vec<Event>,
    pub blobs: Vec<Blob>,
    pub summary: ImportSummary,
}

/// What an import would bring over, without opening any secret (for the confirmation).
pub fn summarize(go: &GoBucket) -> ImportSummary {
    let mut keys: Vec<(&str, &str)> = go
        .kv
        .iter()
        .map(|r| (r.namespace.as_str(), r.key.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    ImportSummary {
        bucket_id: go.bucket_id.clone(),
        update_seq: go.update_seq,
        workers: go.workers.len(),
        jobs: go.jobs.len(),
        allocations: go.allocations.len(),
        ports: go.jobs.iter().map(|j| j.ports.len()).sum(),
        kv_keys: keys.len(),
        kv_versions: go.kv.len(),
        secrets: go.kv.iter().filter(|r| is_secret(r)).count(),
        adopted: adoptable(go).count(),
    }
}

fn is_secret(row: &super::read::GoKvRow) -> bool {
    !row.deleted
        && (row.namespace.starts_with("secrets/")
            || row.value.as_deref().is_some_and(secret::is_sealed))
}

/// Allocations with a promoted Go hash row: (allocation, hash row).
fn adoptable(
    go: &GoBucket,
) -> impl Iterator<Item = (&super::read::GoAllocation, &super::read::GoHash)> {
    go.hashes.iter().filter_map(move |h| {
        let job = h.namespace.strip_suffix("_allocation")?;
        h.previous_hash.as_ref()?;
        let alloc = go
            .allocations
            .iter()
            .find(|a| a.alloc_id == h.key && a.job == job && !a.removed)?;
        Some((alloc, h))
    })
}

/// Decides the import events.
pub fn decide_import<R: rand::CryptoRng + ?Sized>(
    go: &GoBucket,
    ctx: &ImportContext<'_>,
    schema_version: u32,
    rng: &mut R,
) -> Result<ImportDecision, ImportError> {
    let unmappable = |what: String| ImportError::Unmappable {
        path: ctx.source.clone(),
        what,
    };
    let mut decision = ImportDecision {
        summary: summarize(go),
        ..ImportDecision::default()
    };
    let events = &mut decision.events;
    events.push(Event::BucketImported(BucketImported {
        bucket_id: go.bucket_id.clone(),
        update_seq: go.update_seq,
        schema_version,
        ca_fingerprint: ctx.ca_fingerprint.to_string(),
        go_schema_version: go.schema_version as u32,
        kept_copy: ctx.kept_copy.to_string(),
        source_sha256: ctx.source_sha256.to_string(),
    }));

    for (index, worker) in go.workers.iter().enumerate() {
        let mut labels: Vec<String> = worker.labels.clone();
        labels.push("worker".into());
        labels.sort();
        labels.dedup();
        let mut tags = worker.tags.clone();
        tags.sort();
        let size = |what: &str, value: &Option<String>| {
            quantity(value).map_err(|v| {
                unmappable(format!(
                    "worker {}: {what} `{v}` is not a number",
                    worker.ip
                ))
            })
        };
        events.push(Event::WorkerUpserted(WorkerRecord {
            host: worker.ip.clone(),
            worker_id: derived_id("worker", &worker.ip),
            hostname: None,
            labels,
            memory_mb: size("available_memory_mb", &worker.memory_mb)?.filter(|v| *v > 0),
            cpu_mhz: size("available_cpu_mhz", &worker.cpu_mhz)?.filter(|v| *v > 0),
            tags,
            position: u32::try_from(worker.position.max(0)).unwrap_or(index as u32),
        }));
    }

    let mut ports = Vec::new();
    for job in &go.jobs {
        let (record, blobs, pool) = job_record(go, job).map_err(unmappable)?;
        for (name, port) in &job.ports {
            let port = u16::try_from(*port).map_err(|_| {
                unmappable(format!(
                    "job {}: port {name} = {port} is not a TCP port number",
                    job.name
                ))
            })?;
            ports.push(Event::PortAssigned(PortAssigned {
                job: job.name.clone(),
                name: name.clone(),
                port,
                from_pool: pool.get(name).copied().unwrap_or(true),
            }));
        }
        events.push(Event::JobUpserted(Box::new(record)));
        decision.blobs.extend(blobs);
    }
    events.extend(ports);

    for alloc in &go.allocations {
        let job_version = go
            .jobs
            .iter()
            .find(|j| j.name == alloc.job)
            .and_then(|j| j.version.clone());
        events.push(Event::AllocationUpserted(AllocationRecord {
            alloc_id: alloc_id(&alloc.job, &alloc.worker_ip),
            job: alloc.job.clone(),
            worker_ip: alloc.worker_ip.clone(),
            disabled: alloc.disabled,
            removed: alloc.removed,
            new_version: alloc
                .new_version
                .clone()
                .or(job_version)
                .unwrap_or_else(|| "0.0.0".into()),
            deployment_seq: u32::try_from(alloc.deployment_seq.max(0)).unwrap_or(0),
        }));
    }

    let mut histories: BTreeMap<(&str, &str), Vec<ImportedKvVersion>> = BTreeMap::new();
    for row in &go.kv {
        let value = if row.deleted {
            None
        } else {
            let stored = row.value.clone().unwrap_or_default();
            Some(if is_secret(row) {
                let plaintext = if secret::is_sealed(&stored) {
                    let key = ctx.kv_key.ok_or_else(|| {
                        ImportError::KvKey(
                            "missing, and the Go database holds encrypted values".into(),
                        )
                    })?;
                    secret::open(key, &stored).map_err(|reason| ImportError::Secret {
                        namespace: row.namespace.clone(),
                        key: row.key.clone(),
                        version: row.version,
                        reason: reason.to_string(),
                    })?
                } else {
                    stored
                };
                let key = ctx.kv_key.ok_or_else(|| {
                    ImportError::KvKey("missing, and the Go database holds secrets".into())
                })?;
                let sealed = seal(key, &row.namespace, &row.key, &plaintext, rng).map_err(|e| {
                    ImportError::Secret {
                        namespace: row.namespace.clone(),
                        key: row.key.clone(),
                        version: row.version,
                        reason: e.to_string(),
                    }
                })?;
                KvValue::Sealed(sealed.encode())
            } else {
                KvValue::Plain(stored)
            })
        };
        let time_ms = created_ms(row.created_date.as_deref()).ok_or_else(|| {
            unmappable(format!(
                "key `{}` in namespace `{}` (version {}): created_date `{}` is not a time",
                row.key,
                row.namespace,
                row.version,
                row.created_date.as_deref().unwrap_or_default()
            ))
        })?;
        histories
            .entry((row.namespace.as_str(), row.key.as_str()))
            .or_default()
            .push(ImportedKvVersion { value, time_ms });
    }
    for ((namespace, key), versions) in histories {
        events.push(Event::KvImported(KvImported {
            namespace: namespace.to_string(),
            key: key.to_string(),
            versions,
        }));
    }

    for (alloc, hash) in adoptable(go) {
        events.push(Event::AllocationAdopted(AllocationAdopted {
            alloc_id: alloc_id(&alloc.job, &alloc.worker_ip),
            job: alloc.job.clone(),
            worker_ip: alloc.worker_ip.clone(),
            version: hash
                .current_version
                .clone()
                .unwrap_or_else(|| "0.0.0".into()),
            go_hash: hash.previous_hash.clone().unwrap_or_default(),
        }));
    }
    Ok(decision)
}

/// A number the Go maand stored as text (`"2048"`, `"1500.5"`); `None` when absent or empty.
fn quantity(value: &Option<String>) -> Result<Option<u64>, String> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| Some(v.round() as u64))
            .ok_or_else(|| text.to_string()),
    }
}

/// `created_date` as the Go maand wrote it (Unix seconds), or an RFC 3339 / SQLite date-time;
/// 0 when it recorded none.
fn created_ms(value: Option<&str>) -> Option<i64> {
    let text = value.map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Some(0);
    }
    if let Ok(seconds) = text.parse::<i64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let sqlite = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .or_else(|| {
            time::PrimitiveDateTime::parse(text, sqlite)
                .ok()
                .map(|t| t.assume_utc())
        })
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Per port name of a job: whether the bucket pool assigned it (`{}` in the manifest).
type PoolPorts = BTreeMap<String, bool>;

/// A job's record, its file blobs and which ports come from the bucket pool, from the Go job
/// rows and the `manifest.json` among its files (for settings the Go tables do not keep).
fn job_record(go: &GoBucket, job: &GoJob) -> Result<(JobRecord, Vec<Blob>, PoolPorts), String> {
    use sha2::Digest;
    let prefix = format!("{}/", job.name);
    let mut files: Vec<(String, Vec<u8>)> = job
        .files
        .iter()
        .filter(|f| !f.is_dir && f.path != job.name)
        .map(|f| {
            let path = f.path.strip_prefix(&prefix).unwrap_or(&f.path).to_string();
            (path, f.content.clone())
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let manifest: serde_json::Value = files
        .iter()
        .find(|(path, _)| path == "manifest.json")
        .map(|(_, content)| {
            serde_json::from_slice(content)
                .map_err(|e| format!("job {}: manifest.json is not JSON: {e}", job.name))
        })
        .transpose()?
        .unwrap_or(serde_json::Value::Null);
    let mut blobs = Vec::new();
    let mut records = Vec::new();
    let mut tree = sha2::Sha256::new();
    for (path, content) in files {
        let blob = Blob::of(content);
        // The Go maand keeps no file modes: scripts are recognised by their `#!` line.
        let executable = blob.content.starts_with(b"#!");
        tree.update(format!("{path}\0{}\0{executable}\n", blob.hash).as_bytes());
        records.push(JobFileRecord {
            path,
            hash: blob.hash.clone(),
            size: blob.content.len() as u64,
            executable,
        });
        blobs.push(blob);
    }
    let number = |what: &str, value: &Option<String>| {
        quantity(value)
            .map(Option::unwrap_or_default)
            .map_err(|v| format!("job {}: {what} `{v}` is not a number", job.name))
    };
    let setting = |key: &str| manifest.get(key).and_then(serde_json::Value::as_u64);
    let commands = job
        .commands
        .iter()
        .map(|c| JobCommandRecord {
            name: c.name.clone(),
            event: c.executed_on.clone(),
            script: records
                .iter()
                .map(|f| f.path.clone())
                .find(|p| {
                    p.strip_prefix("_modules/")
                        .and_then(|file| file.rsplit_once('.'))
                        .is_some_and(|(stem, _)| stem == c.name)
                })
                .unwrap_or_default(),
            demand_job: c.demand_job.clone().unwrap_or_default(),
            demand_command: c.demand_command.clone().unwrap_or_default(),
            demand_config: c
                .demand_config
                .clone()
                .filter(|c| !c.is_empty() && c != "null")
                .unwrap_or_else(|| "{}".into()),
        })
        .collect();
    let certs = job
        .certs
        .iter()
        .map(|c| {
            let subject: serde_json::Value =
                serde_json::from_str(&c.subject).unwrap_or(serde_json::Value::Null);
            let common_name = subject
                .get("common_name")
                .or_else(|| subject.get("CommonName"))
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            let definition = serde_json::json!({
                "common_name": common_name, "one": c.one, "pkcs8": c.pkcs8,
            })
            .to_string();
            JobCertRecord {
                name: c.name.clone(),
                definition_hash: hex::encode(sha2::Sha256::digest(definition.as_bytes())),
                definition,
            }
        })
        .collect();
    let pool: PoolPorts = manifest
        .pointer("/resources/ports")
        .or_else(|| manifest.get("ports"))
        .and_then(serde_json::Value::as_object)
        .map(|ports| {
            ports
                .iter()
                .map(|(name, value)| (name.clone(), !value.is_number()))
                .collect()
        })
        .unwrap_or_default();
    let version = job
        .version
        .clone()
        .filter(|v| !v.is_empty() && v != "unknown");
    let deployment_seq = go
        .allocations
        .iter()
        .filter(|a| a.job == job.name)
        .map(|a| a.deployment_seq)
        .max()
        .unwrap_or(0);
    let record = JobRecord {
        name: job.name.clone(),
        job_id: derived_id("job", &job.name),
        version_declared: version.is_some(),
        version: version.unwrap_or_else(|| "0.0.0".into()),
        selectors: {
            let mut s = job.selectors.clone();
            s.sort();
            s.dedup();
            s
        },
        max_concurrent_upgrades: u32::try_from(job.update_parallel_count.max(1)).unwrap_or(1),
        max_concurrent_starts: setting("max_concurrent_starts").unwrap_or(0) as u32,
        min_allocations_count: setting("min_allocations_count").unwrap_or(0) as u32,
        restart_policy: manifest
            .get("restart_policy")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("always")
            .to_string(),
        restart_globs: manifest
            .get("restart_globs")
            .and_then(serde_json::Value::as_array)
            .map(|globs| {
                globs
                    .iter()
                    .filter_map(|g| g.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        min_memory_mb: number("min_memory_mb", &job.min_memory_mb)?,
        max_memory_mb: number("max_memory_mb", &job.max_memory_mb)?,
        current_memory_mb: number("current_memory_mb", &job.current_memory_mb)?,
        min_cpu_mhz: number("min_cpu_mhz", &job.min_cpu_mhz)?,
        max_cpu_mhz: number("max_cpu_mhz", &job.max_cpu_mhz)?,
        current_cpu_mhz: number("current_cpu_mhz", &job.current_cpu_mhz)?,
        resources_source: "go maand import".into(),
        deployment_seq: u32::try_from(deployment_seq.max(0)).unwrap_or(0),
        health_check: job.health_check.clone(),
        commands,
        certs,
        files: records,
        files_hash: hex::encode(tree.finalize()),
    };
    Ok((record, blobs, pool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quantities_and_dates_map_or_say_why_not() {
        assert_eq!(quantity(&Some("2048".into())), Ok(Some(2048)));
        assert_eq!(quantity(&Some("1500.5".into())), Ok(Some(1501)));
        assert_eq!(quantity(&None), Ok(None));
        assert_eq!(quantity(&Some("lots".into())), Err("lots".into()));
        assert_eq!(created_ms(Some("1700000000")), Some(1_700_000_000_000));
        assert_eq!(created_ms(None), Some(0));
        assert_eq!(
            created_ms(Some("2024-01-02 03:04:05")),
            Some(1_704_164_645_000)
        );
        assert_eq!(created_ms(Some("yesterday")), None);
    }
}
