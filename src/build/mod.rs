//! `maand build` as a decision: from the parsed workspace and the current catalog to the events
//! that make the catalog match the workspace; and as a use case ([`run_build`]: read the
//! bucket, decide, record in the run, run the `post_build` hooks).
//!
//! [`decide_build`] is pure: it reads no files, opens no database and takes its clock, CA, KV
//! key and randomness as arguments. An unchanged workspace yields no events. Every problem
//! found is returned together, each naming the file to fix.

mod kv;
mod placement;
mod ports;
mod prometheus_kv;
mod run;
pub mod snapshot;

pub use run::{run_build, BuildOptions, BuildSummary, PostBuildHook};
pub use snapshot::CatalogSnapshot;

use crate::catalog::{job_record_hash, Blob};
use crate::certs::BucketCa;
use crate::events::{
    AllocationRecord, Event, JobCertRecord, JobCommandRecord, JobFileRecord, JobRecord, JobRemoved,
    WorkerRecord, WorkerRemoved,
};
use crate::kv::secret::SecretKey;
use crate::workspace::Workspace;
use std::collections::BTreeMap;

/// One problem that stops a build. `file` is relative to the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    pub file: String,
    /// The documented error kind, when there is one.
    pub kind: &'static str,
    pub message: String,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.kind, self.message)
        }
    }
}

/// Everything besides the workspace and catalog that a build decision depends on.
pub struct BuildContext<'a, R: rand::CryptoRng + ?Sized> {
    pub ca: &'a BucketCa,
    pub kv_key: &'a SecretKey,
    pub now: time::OffsetDateTime,
    pub certs_ttl_days: u32,
    pub certs_renewal_buffer_days: u32,
    /// `maand build --purge-job-kv`.
    pub purge_job_kv: bool,
    /// Where the reservations came from (`bucket.jobs.conf` or `bucket.jobs.<selector>.conf`).
    pub reservations_file: String,
    pub rng: &'a mut R,
}

/// The events (and blobs they reference) a build records.
#[derive(Debug, Default)]
pub struct BuildDecision {
    pub events: Vec<Event>,
    pub blobs: Vec<Blob>,
}

/// UUID namespace for ids maand derives from names (worker, job, allocation, label).
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6d61616e_642d_7273_8000_000000000001);

/// A stable id derived from `kind` and `name`.
pub fn derived_id(kind: &str, name: &str) -> String {
    uuid::Uuid::new_v5(&ID_NAMESPACE, format!("{kind}:{name}").as_bytes()).to_string()
}

/// The stable allocation id of `job` on `worker`.
pub fn alloc_id(job: &str, worker: &str) -> String {
    derived_id("allocation", &format!("{job}|{worker}"))
}

pub fn decide_build<R: rand::CryptoRng + ?Sized>(
    ws: &Workspace,
    current: &CatalogSnapshot,
    ctx: &mut BuildContext<'_, R>,
) -> Result<BuildDecision, Vec<BuildError>> {
    let mut errors = Vec::new();
    let placement = placement::place(ws, current);
    placement::check(ws, &placement, &mut errors);
    let port_plan = ports::assign(ws, current, &mut errors);
    errors.extend(prometheus_kv::validate(ws));
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut decision = BuildDecision::default();
    decide_workers(ws, current, &mut decision.events);
    decide_jobs(ws, current, ctx, &mut decision);
    decision.events.extend(port_plan.events);
    decision.events.extend(placement.events());
    let kv_events =
        kv::decide(ws, current, &placement, &port_plan.assigned, ctx).map_err(|e| vec![e])?;
    decision.events.extend(kv_events);
    Ok(decision)
}

fn worker_record(worker: &crate::workspace::Worker) -> WorkerRecord {
    WorkerRecord {
        host: worker.host.clone(),
        worker_id: derived_id("worker", &worker.host),
        hostname: worker.hostname.clone(),
        labels: worker.labels.iter().cloned().collect(),
        memory_mb: worker.memory_mb,
        cpu_mhz: worker.cpu_mhz,
        tags: worker
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        position: worker.position as u32,
    }
}

fn decide_workers(ws: &Workspace, current: &CatalogSnapshot, events: &mut Vec<Event>) {
    for worker in &ws.workers {
        let record = worker_record(worker);
        if current.workers.get(&worker.host) != Some(&record) {
            events.push(Event::WorkerUpserted(record));
        }
    }
    for host in current.workers.keys() {
        if ws.worker(host).is_none() {
            events.push(Event::WorkerRemoved(WorkerRemoved { host: host.clone() }));
        }
    }
}

fn job_record(
    ws: &Workspace,
    job: &crate::workspace::Job,
    reservations_file: &str,
) -> (JobRecord, Vec<Blob>) {
    use sha2::Digest;
    let manifest = &job.manifest;
    let resources = ws.resources(&job.name).expect("job exists");
    let mut blobs = Vec::with_capacity(job.files.len());
    let mut files = Vec::with_capacity(job.files.len());
    let mut tree = sha2::Sha256::new();
    for file in &job.files {
        let blob = Blob::of(file.content.clone());
        tree.update(format!("{}\0{}\0{}\n", file.path, blob.hash, file.executable).as_bytes());
        files.push(JobFileRecord {
            path: file.path.clone(),
            hash: blob.hash.clone(),
            size: file.content.len() as u64,
            executable: file.executable,
        });
        blobs.push(blob);
    }
    let mut commands = Vec::new();
    for command in manifest.commands.values() {
        for event in &command.executed_on {
            let (demand_job, demand_command, demand_config) = match &command.demand {
                Some(d) => (
                    d.job.clone(),
                    d.command.clone(),
                    serde_json::Value::Object(d.config.clone()).to_string(),
                ),
                None => (String::new(), String::new(), "{}".to_string()),
            };
            commands.push(JobCommandRecord {
                name: command.name.clone(),
                event: event.as_str().to_string(),
                script: command.script.path.clone(),
                demand_job,
                demand_command,
                demand_config,
            });
        }
    }
    let certs = manifest
        .certs
        .iter()
        .map(|(name, spec)| {
            let subject = &spec.subject;
            let mut definition = serde_json::json!({
                "common_name": subject.common_name, "one": spec.one, "pkcs8": spec.pkcs8,
            });
            // Optional attributes only when set, so definitions without them keep the text
            // (and the job record hash) they always had.
            for (key, value) in [
                ("organization", &subject.organization),
                ("organizational_unit", &subject.organizational_unit),
                ("country", &subject.country),
                ("province", &subject.province),
                ("locality", &subject.locality),
            ] {
                if let Some(value) = value {
                    definition[key] = serde_json::Value::from(value.as_str());
                }
            }
            let definition = definition.to_string();
            let definition_hash = kv::cert_definition(name, spec)
                .map(|d| crate::certs::definition_hash(&d))
                .unwrap_or_default();
            JobCertRecord {
                name: name.clone(),
                definition,
                definition_hash,
            }
        })
        .collect();
    let reserved = ws
        .job_reservations
        .get(&job.name)
        .is_some_and(|r| r.memory_mb.is_some() || r.cpu_mhz.is_some());
    let record = JobRecord {
        name: job.name.clone(),
        job_id: derived_id("job", &job.name),
        version: manifest.version.to_string(),
        version_declared: manifest.version_declared,
        selectors: manifest.selectors.iter().cloned().collect(),
        max_concurrent_upgrades: manifest.max_concurrent_upgrades,
        max_concurrent_starts: manifest.max_concurrent_starts,
        min_allocations_count: manifest.min_allocations_count,
        restart_policy: manifest.restart_policy.as_str().to_string(),
        restart_globs: manifest.restart_globs.clone(),
        min_memory_mb: resources.min_memory_mb,
        max_memory_mb: resources.max_memory_mb,
        current_memory_mb: resources.memory_mb,
        min_cpu_mhz: resources.min_cpu_mhz,
        max_cpu_mhz: resources.max_cpu_mhz,
        current_cpu_mhz: resources.cpu_mhz,
        resources_source: if reserved {
            reservations_file.to_string()
        } else {
            "manifest".to_string()
        },
        deployment_seq: job.deployment_seq,
        health_check: manifest.health_check.as_ref().map(health_check_json),
        commands,
        certs,
        files,
        files_hash: hex::encode(tree.finalize()),
    };
    (record, blobs)
}

fn health_check_json(health: &crate::workspace::HealthCheck) -> String {
    use crate::workspace::{HttpScheme, Probe};
    let checks: Vec<serde_json::Value> = health
        .checks
        .iter()
        .map(|probe| match probe {
            Probe::Tcp { port } => serde_json::json!({"type": "tcp", "port": port}),
            Probe::Http {
                port,
                path,
                expect_status,
                scheme,
            } => serde_json::json!({
                "type": "http", "port": port, "path": path, "expect_status": expect_status,
                "scheme": match scheme { HttpScheme::Http => "http", HttpScheme::Https => "https" },
            }),
            Probe::Ssh { command } => serde_json::json!({"type": "ssh", "command": command}),
        })
        .collect();
    serde_json::json!({
        "checks": checks,
        "timeout_seconds": health.timeout_seconds,
        "wait": {"attempts": health.wait.attempts, "interval_seconds": health.wait.interval_seconds},
    })
    .to_string()
}

fn decide_jobs<R: rand::CryptoRng + ?Sized>(
    ws: &Workspace,
    current: &CatalogSnapshot,
    ctx: &BuildContext<'_, R>,
    decision: &mut BuildDecision,
) {
    for job in ws.jobs.values() {
        let (record, blobs) = job_record(ws, job, &ctx.reservations_file);
        if current.job_hashes.get(&job.name) != Some(&job_record_hash(&record)) {
            decision.events.push(Event::JobUpserted(Box::new(record)));
            decision.blobs.extend(blobs);
        }
    }
    for name in current.job_hashes.keys() {
        if !ws.jobs.contains_key(name) {
            decision
                .events
                .push(Event::JobRemoved(JobRemoved { name: name.clone() }));
        }
    }
}

/// Allocations keyed by (job, worker) after placement, with the set of active ones.
pub(crate) type Allocations = BTreeMap<(String, String), AllocationRecord>;

#[cfg(test)]
mod tests;
