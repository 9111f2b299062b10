//! Every fact maand records, in one place.
//!
//! An [`Event`] is what gets appended to the journal. Each variant has a stable `kind` string
//! (stored in the journal row for filtering) and a payload schema version. Payloads are encoded
//! with bincode through serde. Stored payloads are never reinterpreted: when a payload must
//! change, add a new version and an explicit upcast in [`Event::decode`].
//!
//! This module only describes facts. It never touches the database (projections live in
//! `catalog/`) and never decides anything (decisions live in the command modules).

use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunOutcome {
    Succeeded,
    Failed,
    /// Stopped by SIGINT or SIGTERM after it finished or stopped what was running.
    Interrupted,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Interrupted => "interrupted",
        }
    }
}

/// A run that never recorded its end (its process was killed) was found by a later run, which
/// closes it: its outcome becomes `abandoned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAbandoned {
    pub run_id: String,
    pub command: String,
    pub pid: u32,
}

/// A maand command invocation began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStarted {
    /// The command name as typed (`build`, `deploy`, `logs show`, ...).
    pub command: String,
    /// The full argument vector.
    pub argv: Vec<String>,
    pub maand_version: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
}

/// A maand command invocation ended (absent when the process was killed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFinished {
    pub outcome: RunOutcome,
    pub duration_ms: u64,
    pub error: Option<String>,
}

/// `maand init` created the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInitialized {
    pub bucket_id: String,
    pub schema_version: u32,
    /// SHA-256 of the bucket CA certificate (DER), hex.
    pub ca_fingerprint: String,
}

/// `maand init` ran again on an existing bucket and brought its schema up to date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketUpgraded {
    pub from_schema: u32,
    pub to_schema: u32,
}

/// A worker as the catalog knows it (from `workers.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub host: String,
    pub worker_id: String,
    pub hostname: Option<String>,
    /// Sorted; always contains `worker`.
    pub labels: Vec<String>,
    pub memory_mb: Option<u64>,
    pub cpu_mhz: Option<u64>,
    pub tags: Vec<(String, String)>,
    pub position: u32,
}

/// A worker left `workers.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRemoved {
    pub host: String,
}

/// One `(command, executed_on)` pair of a job manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCommandRecord {
    pub name: String,
    pub event: String,
    pub script: String,
    pub demand_job: String,
    pub demand_command: String,
    /// JSON object text.
    pub demand_config: String,
}

/// One file of a job tree; the content is in the blob store under `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFileRecord {
    pub path: String,
    pub hash: String,
    pub size: u64,
    pub executable: bool,
}

/// One certificate definition of a job manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCertRecord {
    pub name: String,
    /// JSON text of the definition.
    pub definition: String,
    pub definition_hash: String,
}

/// A job as the catalog knows it: its manifest settings, commands, certs and files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub name: String,
    pub job_id: String,
    pub version: String,
    pub version_declared: bool,
    pub selectors: Vec<String>,
    pub max_concurrent_upgrades: u32,
    pub max_concurrent_starts: u32,
    pub min_allocations_count: u32,
    pub restart_policy: String,
    pub restart_globs: Vec<String>,
    pub min_memory_mb: u64,
    pub max_memory_mb: u64,
    pub current_memory_mb: u64,
    pub min_cpu_mhz: u64,
    pub max_cpu_mhz: u64,
    pub current_cpu_mhz: u64,
    pub resources_source: String,
    pub deployment_seq: u32,
    /// JSON text of the manifest probes.
    pub health_check: Option<String>,
    pub commands: Vec<JobCommandRecord>,
    pub certs: Vec<JobCertRecord>,
    pub files: Vec<JobFileRecord>,
    pub files_hash: String,
}

/// A job directory left the workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRemoved {
    pub name: String,
}

/// A named port of a job got (or kept with a new number) a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortAssigned {
    pub job: String,
    pub name: String,
    pub port: u16,
    /// Picked from the bucket pool (`{}`), as opposed to fixed in the manifest.
    pub from_pool: bool,
}

/// A named port is no longer declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortReleased {
    pub job: String,
    pub name: String,
}

/// An allocation (job × worker) as placement decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationRecord {
    pub alloc_id: String,
    pub job: String,
    pub worker_ip: String,
    pub disabled: bool,
    pub removed: bool,
    pub new_version: String,
    pub deployment_seq: u32,
}

/// The value of a KV version: plaintext, or sealed with the bucket's KV key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvValue {
    Plain(String),
    /// `kv::secret::SealedSecret` in its encoded text form; never plaintext.
    Sealed(String),
}

/// One change to one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvChange {
    Put { key: String, value: KvValue },
    Delete { key: String },
}

/// Changes to the keys of one namespace, applied together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvChanged {
    pub namespace: String,
    pub changes: Vec<KvChange>,
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A command started on a worker (or on the operator host for a job command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandStarted {
    /// Worker host, or `-` for commands that run on the operator host.
    pub worker: String,
    pub job: Option<String>,
    /// What the command is part of: `run_command`, `rsync`, `rollout`, `reconcile`, `job_control`, ...
    pub phase: String,
    /// What it does within the phase: `start`, `stop`, `exec`, `sync`, ...
    pub action: String,
    /// The command line as it was run (never containing secrets).
    pub command: String,
}

/// One line a command printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    pub worker: String,
    pub job: Option<String>,
    pub phase: String,
    pub stream: Stream,
    pub line: String,
}

/// A command ended: with an exit code, or with an error before one existed (unreachable
/// worker, timeout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandFinished {
    pub worker: String,
    pub job: Option<String>,
    pub phase: String,
    pub action: String,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub error: Option<String>,
}

/// A deploy with work to do took the next update sequence number (mirrored in `worker.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateSeqBumped {
    pub update_seq: u64,
}

/// The flags a deploy was planned with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeployFlags {
    /// Empty: every job.
    pub jobs: Vec<String>,
    pub force: bool,
    pub sync_only: bool,
}

/// What one deploy step does. Every step is idempotent: running it again after a crash
/// leaves the same result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepKind {
    /// Run the `stop` target of a removed or disabled allocation.
    Stop { alloc_id: String },
    /// Delete a removed allocation's job files on its worker, keeping `data/` and `logs/`.
    RemoveJobFiles { alloc_id: String },
    /// Delete the bucket's whole tree on a worker that left `workers.json`.
    RemoveWorkerTree,
    /// Copy the staged tree of an allocation to its worker (`transfer = false` for disabled
    /// allocations: their new tree is recorded but not shipped).
    Sync {
        alloc_id: String,
        tree_hash: String,
        transfer: bool,
    },
    /// Run a lifecycle target (`start`, `restart`, `reload`) of an allocation.
    Lifecycle { alloc_id: String, target: String },
    /// Mark the staged trees and target versions of these allocations as running.
    Promote { alloc_ids: Vec<String> },
    /// Rewrite a worker's `jobs.json` with the versions now running.
    Finalize,
    /// Run a job command for a deploy event (`pre_deploy`, `job_control`,
    /// `after_allocation_started`, `after_allocation_stopped`, `post_deploy`) on these
    /// allocations, with extra environment (batch variables, new/updated allocations).
    Hook {
        command: String,
        event: String,
        alloc_ids: Vec<String>,
        env: Vec<(String, String)>,
    },
    /// Stage the job's trees again after its `pre_deploy` hooks wrote KV its templates read.
    Restage,
    /// Wait until these allocations pass the job's health checks (probes, then `health_check`
    /// commands), retrying as the manifest's `wait` says; failing it stops the job's rollout.
    HealthGate { alloc_ids: Vec<String> },
}

/// One step of a deploy plan. Steps of one group (a job, or a worker for reconcile and
/// finalize steps) run in `batch` order; steps of a batch run at the same time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub index: u32,
    /// 0: reconcile; n + 1: jobs of deployment_seq n; last: finalize.
    pub wave: u32,
    pub job: Option<String>,
    pub worker: Option<String>,
    pub batch: u32,
    pub kind: StepKind,
}

/// A deploy was planned: every step it will take, and the catalog it was planned from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployPlanned {
    pub deploy_id: String,
    /// Journal position of the last build event the plan saw; `--resume` refuses if it moved.
    pub catalog_seq: u64,
    pub update_seq: u64,
    pub flags: DeployFlags,
    pub steps: Vec<PlannedStep>,
}

/// Who a step concerns and what it does, repeated on every step event for the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepLabel {
    pub job: Option<String>,
    pub worker: Option<String>,
    /// `stop`, `remove_files`, `remove_worker`, `sync`, `start`, `restart`, `reload`, `promote`, `finalize`.
    pub action: String,
}

impl PlannedStep {
    pub fn label(&self) -> StepLabel {
        let action = match &self.kind {
            StepKind::Stop { .. } => "stop",
            StepKind::RemoveJobFiles { .. } => "remove_files",
            StepKind::RemoveWorkerTree => "remove_worker",
            StepKind::Sync { .. } => "sync",
            StepKind::Lifecycle { target, .. } => target.as_str(),
            StepKind::Promote { .. } => "promote",
            StepKind::Finalize => "finalize",
            StepKind::Hook { event, .. } => event.as_str(),
            StepKind::Restage => "restage",
            StepKind::HealthGate { .. } => "health_gate",
        };
        StepLabel {
            job: self.job.clone(),
            worker: self.worker.clone(),
            action: action.to_string(),
        }
    }

    /// The phase a step belongs to in logs.
    pub fn phase(&self) -> &'static str {
        match &self.kind {
            StepKind::Stop { .. }
            | StepKind::RemoveJobFiles { .. }
            | StepKind::RemoveWorkerTree => "reconcile",
            StepKind::Sync { .. } | StepKind::Finalize | StepKind::Restage => "rsync",
            StepKind::Lifecycle { .. } | StepKind::Promote { .. } => "rollout",
            StepKind::Hook { .. } => "job_command",
            StepKind::HealthGate { .. } => "health_check",
        }
    }
}

/// A step is about to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStarted {
    pub deploy_id: String,
    pub index: u32,
    /// Copied from the plan so the log of a step reads on its own.
    pub step: StepLabel,
}

/// A step finished its work (`note` says when that meant tolerating something, like an
/// unreachable removed worker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSucceeded {
    pub deploy_id: String,
    pub index: u32,
    /// Copied from the plan so the log of a step reads on its own.
    pub step: StepLabel,
    pub note: Option<String>,
}

/// A step failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailed {
    pub deploy_id: String,
    pub index: u32,
    /// Copied from the plan so the log of a step reads on its own.
    pub step: StepLabel,
    pub error: String,
}

/// A step was not run because an earlier step of its group failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSkipped {
    pub deploy_id: String,
    pub index: u32,
    /// Copied from the plan so the log of a step reads on its own.
    pub step: StepLabel,
    pub reason: String,
}

/// A deploy ended (absent when the process died: `--resume` continues it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployFinished {
    pub deploy_id: String,
    pub outcome: RunOutcome,
    pub failed_jobs: Vec<String>,
}

/// A job needed no rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploySkipped {
    pub job: String,
    pub reason: String,
}

/// An allocation's staged tree reached its worker (or was recorded, for a disabled one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationStaged {
    pub alloc_id: String,
    pub job: String,
    pub worker_ip: String,
    pub tree_hash: String,
    /// (path, sha256) of every staged file.
    pub files: Vec<(String, String)>,
}

/// An allocation now runs its staged tree at `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationPromoted {
    pub alloc_id: String,
    pub version: String,
}

/// A removed or disabled allocation was stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationStopped {
    pub alloc_id: String,
}

/// A removed allocation's files are gone; its hash row is dropped so a return starts fresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationHashCleared {
    pub alloc_id: String,
}

/// `maand gc` deleted a removed allocation's tree on its worker: its rows go too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationPurged {
    pub alloc_id: String,
    pub job: String,
    pub worker_ip: String,
}

/// `maand gc` dropped every version of deleted KV keys whose deletion is past the retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvPurged {
    /// (namespace, key) pairs.
    pub keys: Vec<(String, String)>,
}

/// One health check of an allocation: its probes (and `health_check` commands) on one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthChecked {
    pub alloc_id: String,
    pub job: String,
    pub worker_ip: String,
    pub healthy: bool,
    /// What passed, or what failed and why (never secrets).
    pub detail: String,
    /// 1 for the first attempt of a check; higher while waiting for health.
    pub attempt: u32,
}

/// `maand init` imported a bucket of the Go maand in place: its identity (same bucket id and
/// update sequence) now lives in this journal. Replaces `bucket_initialized` for such a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketImported {
    pub bucket_id: String,
    pub update_seq: u64,
    /// The schema of the database the import wrote (ours).
    pub schema_version: u32,
    /// SHA-256 of the bucket CA certificate (DER), hex.
    pub ca_fingerprint: String,
    /// `schema_version` of the Go maand database that was imported.
    pub go_schema_version: u32,
    /// Where the Go database was kept, relative to the bucket (never modified afterwards).
    pub kept_copy: String,
    /// SHA-256 of the Go database file as imported, hex.
    pub source_sha256: String,
}

/// One version of a key as the Go maand recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedKvVersion {
    /// `None`: the version deleted the key.
    pub value: Option<KvValue>,
    /// When the Go maand wrote the version (Unix milliseconds; 0 when it recorded none).
    pub time_ms: i64,
}

/// The whole history of one key of an imported Go bucket, oldest version first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvImported {
    pub namespace: String,
    pub key: String,
    pub versions: Vec<ImportedKvVersion>,
}

/// An allocation the Go maand had deployed and promoted. Its Go content hash cannot be compared
/// with ours, so the first deploy decides by comparing the staged tree with the worker's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationAdopted {
    pub alloc_id: String,
    pub job: String,
    pub worker_ip: String,
    /// The version the Go maand promoted (running on the worker).
    pub version: String,
    /// The Go maand's content hash of the promoted tree (for the record only).
    pub go_hash: String,
}

/// One fact recorded in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    RunStarted(RunStarted),
    RunFinished(RunFinished),
    BucketInitialized(BucketInitialized),
    BucketUpgraded(BucketUpgraded),
    WorkerUpserted(WorkerRecord),
    WorkerRemoved(WorkerRemoved),
    JobUpserted(Box<JobRecord>),
    JobRemoved(JobRemoved),
    PortAssigned(PortAssigned),
    PortReleased(PortReleased),
    AllocationUpserted(AllocationRecord),
    KvChanged(KvChanged),
    CommandStarted(CommandStarted),
    CommandOutput(CommandOutput),
    CommandFinished(CommandFinished),
    UpdateSeqBumped(UpdateSeqBumped),
    DeployPlanned(Box<DeployPlanned>),
    StepStarted(StepStarted),
    StepSucceeded(StepSucceeded),
    StepFailed(StepFailed),
    StepSkipped(StepSkipped),
    DeployFinished(DeployFinished),
    DeploySkipped(DeploySkipped),
    AllocationStaged(AllocationStaged),
    AllocationPromoted(AllocationPromoted),
    AllocationStopped(AllocationStopped),
    AllocationHashCleared(AllocationHashCleared),
    AllocationPurged(AllocationPurged),
    KvPurged(KvPurged),
    HealthChecked(HealthChecked),
    RunAbandoned(RunAbandoned),
    BucketImported(BucketImported),
    KvImported(KvImported),
    AllocationAdopted(AllocationAdopted),
}

/// A payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum EventCodecError {
    #[error("unknown event kind `{kind}` (written by a newer maand? upgrade maand)")]
    UnknownKind { kind: String },
    #[error("event kind `{kind}` has schema version {version}, this maand reads up to {known} (upgrade maand)")]
    UnknownVersion {
        kind: String,
        version: u16,
        known: u16,
    },
    #[error("event `{kind}` payload: {source}")]
    Payload {
        kind: String,
        #[source]
        source: journal::JournalError,
    },
}

/// Declares, once, the kind string and current schema version of every variant, and generates
/// encode/decode so the three can never drift apart.
macro_rules! event_kinds {
    ($($variant:ident => $kind:literal v $version:literal),* $(,)?) => {
        impl Event {
            /// The stable kind string stored in the journal row.
            pub fn kind(&self) -> &'static str {
                match self { $(Event::$variant(_) => $kind,)* }
            }

            /// The schema version this binary writes for the event's kind.
            pub fn schema_version(&self) -> u16 {
                match self { $(Event::$variant(_) => $version,)* }
            }

            /// Every kind this binary knows, for `logs show --event` validation and docs.
            pub const KINDS: &'static [&'static str] = &[$($kind),*];

            /// Every kind with the schema version this binary writes for it: what the golden
            /// journals under `tests/golden/` must cover.
            pub const KIND_VERSIONS: &'static [(&'static str, u16)] = &[$(($kind, $version)),*];

            /// Encodes the payload (without kind or version, which live in the journal row).
            pub fn encode(&self) -> Result<Vec<u8>, EventCodecError> {
                let kind = self.kind();
                match self {
                    $(Event::$variant(payload) => journal::encode(payload),)*
                }
                .map_err(|source| EventCodecError::Payload { kind: kind.to_string(), source })
            }

            /// Decodes a stored payload, upcasting older schema versions.
            pub fn decode(kind: &str, version: u16, bytes: &[u8]) -> Result<Event, EventCodecError> {
                match kind {
                    $($kind => {
                        if version != $version {
                            return Err(EventCodecError::UnknownVersion {
                                kind: kind.to_string(), version, known: $version,
                            });
                        }
                        journal::decode(bytes)
                            .map(Event::$variant)
                            .map_err(|source| EventCodecError::Payload { kind: kind.to_string(), source })
                    })*
                    _ => Err(EventCodecError::UnknownKind { kind: kind.to_string() }),
                }
            }
        }
    };
}

event_kinds! {
    RunStarted => "run_started" v 1,
    RunFinished => "run_finished" v 1,
    BucketInitialized => "bucket_initialized" v 1,
    BucketUpgraded => "bucket_upgraded" v 1,
    WorkerUpserted => "worker_upserted" v 1,
    WorkerRemoved => "worker_removed" v 1,
    JobUpserted => "job_upserted" v 1,
    JobRemoved => "job_removed" v 1,
    PortAssigned => "port_assigned" v 1,
    PortReleased => "port_released" v 1,
    AllocationUpserted => "allocation_upserted" v 1,
    KvChanged => "kv_changed" v 1,
    CommandStarted => "command_begin" v 1,
    CommandOutput => "command_output" v 1,
    CommandFinished => "command_end" v 1,
    UpdateSeqBumped => "update_seq_bumped" v 1,
    DeployPlanned => "deploy_planned" v 1,
    StepStarted => "step_started" v 1,
    StepSucceeded => "step_succeeded" v 1,
    StepFailed => "step_failed" v 1,
    StepSkipped => "step_skipped" v 1,
    DeployFinished => "deploy_finished" v 1,
    DeploySkipped => "deploy_skip" v 1,
    AllocationStaged => "allocation_staged" v 1,
    AllocationPromoted => "allocation_promoted" v 1,
    AllocationStopped => "allocation_stopped" v 1,
    AllocationHashCleared => "allocation_hash_cleared" v 1,
    AllocationPurged => "allocation_purged" v 1,
    KvPurged => "kv_purged" v 1,
    HealthChecked => "health_checked" v 1,
    RunAbandoned => "run_abandoned" v 1,
    BucketImported => "bucket_imported" v 1,
    KvImported => "kv_imported" v 1,
    AllocationAdopted => "allocation_adopted" v 1,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Event> {
        vec![
            Event::RunStarted(RunStarted {
                command: "build".into(),
                argv: vec!["maand".into(), "build".into()],
                maand_version: "0.1.0".into(),
                user: "root".into(),
                host: "op".into(),
                pid: 42,
            }),
            Event::RunFinished(RunFinished {
                outcome: RunOutcome::Failed,
                duration_ms: 12,
                error: Some("boom".into()),
            }),
            Event::RunFinished(RunFinished {
                outcome: RunOutcome::Interrupted,
                duration_ms: 3,
                error: Some("interrupted by SIGINT".into()),
            }),
            Event::RunAbandoned(RunAbandoned {
                run_id: "r0".into(),
                command: "deploy".into(),
                pid: 7,
            }),
            Event::BucketInitialized(BucketInitialized {
                bucket_id: "b".into(),
                schema_version: 1,
                ca_fingerprint: "ff".into(),
            }),
            Event::BucketUpgraded(BucketUpgraded {
                from_schema: 1,
                to_schema: 2,
            }),
        ]
    }

    #[test]
    fn every_event_round_trips_through_its_kind_and_version() {
        for event in samples() {
            let bytes = event.encode().unwrap();
            let back = Event::decode(event.kind(), event.schema_version(), &bytes).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn kinds_are_unique() {
        let mut kinds = Event::KINDS.to_vec();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), Event::KINDS.len());
    }

    #[test]
    fn unknown_kind_and_future_version_are_refused_with_upgrade_hint() {
        let err = Event::decode("from_the_future", 1, &[]).unwrap_err();
        assert!(err.to_string().contains("upgrade maand"));
        let err = Event::decode("run_started", 9, &[]).unwrap_err();
        assert!(err.to_string().contains("schema version 9"));
    }
}
