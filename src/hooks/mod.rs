//! Job commands: the Python and Bun scripts under a job's `_modules/` that maand runs on the
//! operator host, one process per allocation, for an event (`post_build`, `pre_deploy`,
//! `cli`, ...), and the runtime HTTP API those processes call for KV, demands and semaphores.
//!
//! [`run_hook`] is the one entry point: it stages the job's files from the blob store into a
//! private directory under `tmp/hooks/`, starts the API on 127.0.0.1 (ephemeral port, one
//! random token per allocation process), runs the script for every allocation it is given with
//! bounded concurrency, each in its own process group killed at the bucket's `hook_time_limit`
//! ("timed out after N s"), records each process's start, output lines and end in the journal
//! (phase `job_command`), and returns what the scripts wrote to KV as `KvChanged` events.
//!
//! It never records those KV changes itself: the caller decides (a `cli` run records them
//! when every allocation succeeded, `post_build` when the whole pass succeeded, deploy at its
//! checkpoints). It never prints except the `job@worker | line` echo when asked, never writes a
//! plaintext secret anywhere (secrets are sealed inside the API before they leave it), and
//! never decides which allocations an event runs on: callers pass them in.
//!
//! The callers that decide are [`run_pass`] (every hook of an event, as `post_build` and
//! deploy run them) and [`run_cli_command`] (`maand jobcommand`: the jobs registering a
//! command for `cli`, on their active allocations).

mod api;
mod catalog;
mod cli;
mod clients;
mod pass;
mod runner;
mod session;
#[cfg(test)]
mod tests;

pub use catalog::HookCatalog;
pub use cli::{run_cli_command, CliOutcome, CliRequest, JobRun};
pub use clients::{PYTHON_CLIENT, TYPESCRIPT_CLIENT};
pub use pass::{run_pass, run_pass_blocking, PassHook, PassOutcome};

use crate::activity::SharedRun;
use crate::bucket::{Bucket, BucketError};
use crate::events::{Event, KvChange, KvChanged};
use crate::kv::secret::{SecretError, SecretKey};
use crate::run::Run;
use crate::workspace::CommandEvent;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// The journal phase of job command activity.
pub const PHASE: &str = "job_command";

/// One allocation a hook runs for, as its process sees it in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationContext {
    pub alloc_id: String,
    pub worker_ip: String,
    /// `ALLOCATION_INDEX`: position among the job's non-removed allocations (the
    /// `<job>_allocation_index` build records); `None` for a removed allocation.
    pub index: Option<u32>,
    /// `DISABLED`.
    pub disabled: bool,
    /// `CURRENT_VERSION`: running version (`0.0.0` before the first promote).
    pub current_version: String,
    /// `NEW_VERSION`: the catalog's target version.
    pub new_version: String,
}

/// What to run: one command of one job for one event, on the given allocations.
#[derive(Debug, Clone)]
pub struct HookRequest {
    pub job: String,
    pub command: String,
    pub event: CommandEvent,
    /// One process each. Callers choose (most events: the active allocations).
    pub allocations: Vec<AllocationContext>,
    /// Most processes at once; 0 runs all at once.
    pub concurrency: usize,
    /// More environment for every process (`NEW_ALLOCATIONS`, `BATCH_*`, `DEPLOY_PHASE`, ...);
    /// set after maand's own variables.
    pub extra_env: BTreeMap<String, String>,
    /// Echo output lines to stderr as `job@worker | line` (`!` for stderr).
    pub verbose: bool,
    /// Longest time one process may run; on expiry its whole process group is killed and the
    /// allocation fails. `None`: no limit.
    pub timeout: Option<Duration>,
}

/// How one allocation's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationRun {
    pub alloc_id: String,
    pub worker_ip: String,
    /// The exit code, when the process exited on its own.
    pub exit_code: Option<i32>,
    /// Why it failed; `None` when it exited 0.
    pub error: Option<String>,
    pub duration: Duration,
}

impl AllocationRun {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// What a hook run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HookOutcome {
    /// KV the scripts wrote, one event per namespace, secrets sealed; for the caller to
    /// record (or drop) in its own transaction.
    pub kv_changes: Vec<KvChanged>,
    /// One entry per allocation, in request order.
    pub runs: Vec<AllocationRun>,
}

impl HookOutcome {
    /// `(worker_ip, error)` of every allocation that failed.
    pub fn failures(&self) -> Vec<(String, String)> {
        self.runs
            .iter()
            .filter_map(|r| Some((r.worker_ip.clone(), r.error.clone()?)))
            .collect()
    }

    pub fn succeeded(&self) -> bool {
        self.runs.iter().all(AllocationRun::succeeded)
    }
}

/// Why a hook could not run at all (per-allocation failures are in [`HookOutcome::runs`]).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("catalog database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("job {job} does not register {command} for {event}; add \"{event}\" to commands.{command}.executed_on in workspace/jobs/{job}/manifest.json and run `maand build`")]
    NotRegistered {
        job: String,
        command: String,
        event: CommandEvent,
    },
    #[error("job {job}: {path} is not in the catalog's files of the job; run `maand build`")]
    MissingScript { job: String, path: String },
    #[error("job {job}: the content of {path} (blob {hash}) is missing from the catalog; run `maand build`")]
    MissingBlob {
        job: String,
        path: String,
        hash: String,
    },
    #[error("job {job}: {path}: {source}; run `maand journal verify`, then `maand journal rebuild --salvage` and `maand build`")]
    DamagedFile {
        job: String,
        path: String,
        #[source]
        source: crate::catalog::integrity::DamagedBlob,
    },
    #[error("job {job}: {path} would shadow the maand client module that job commands import; rename it")]
    ShadowedClient { job: String, path: String },
    #[error("job {job}: {script} needs {tool}, which is not on PATH of this host; {advice}")]
    MissingInterpreter {
        job: String,
        script: String,
        tool: &'static str,
        advice: &'static str,
    },
    #[error("cannot write {}: {source}", path.display())]
    Stage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the job command API on 127.0.0.1: {0}")]
    Listen(#[source] std::io::Error),
    #[error("cannot start the async runtime for job commands: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("recording job command activity failed: {0}")]
    Journal(String),
}

/// Where hook activity is recorded: one committed transaction per call.
pub trait HookJournal: Sync {
    fn record(&self, events: &[Event]) -> Result<(), String>;

    /// Shows a line of hook output (already escaped) on stderr.
    fn echo(&self, line: &str) {
        eprintln!("{line}");
    }
}

impl HookJournal for SharedRun {
    fn record(&self, events: &[Event]) -> Result<(), String> {
        SharedRun::record(self, events).map_err(|e| e.to_string())
    }

    fn echo(&self, line: &str) {
        SharedRun::echo(self, line);
    }
}

/// A run borrowed for the length of a hook (`maand build` holds its run by `&mut`).
pub struct RunJournal<'a> {
    run: Mutex<&'a mut Run>,
}

impl<'a> RunJournal<'a> {
    pub fn new(run: &'a mut Run) -> RunJournal<'a> {
        RunJournal {
            run: Mutex::new(run),
        }
    }
}

impl HookJournal for RunJournal<'_> {
    fn record(&self, events: &[Event]) -> Result<(), String> {
        self.run
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(events, &[])
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// SSH settings handed to scripts for `run_ssh` and friends.
#[derive(Debug, Clone)]
struct SshSettings {
    user: String,
    port: u16,
    key_path: PathBuf,
    known_hosts_path: PathBuf,
    use_sudo: bool,
}

/// The operator host's side of job commands: the bucket, its secret key, its SSH settings.
#[derive(Debug, Clone)]
pub struct HookHost {
    bucket: Bucket,
    kv_key: SecretKey,
    ssh: SshSettings,
    /// How long one process may run before its process group is killed.
    time_limit: std::time::Duration,
}

impl HookHost {
    /// Reads `maand.conf` and `secrets/kv.key` of the bucket.
    pub fn new(bucket: &Bucket) -> Result<HookHost, HookError> {
        let conf = bucket.conf()?;
        let kv_key = SecretKey::load(&bucket.kv_key_path())?;
        Ok(HookHost {
            bucket: bucket.clone(),
            kv_key,
            ssh: SshSettings {
                user: conf.ssh_user,
                port: conf.ssh_port,
                key_path: bucket.secrets_dir().join(&conf.ssh_key),
                known_hosts_path: bucket.known_hosts_path(),
                use_sudo: conf.use_sudo,
            },
            time_limit: std::time::Duration::from_secs(u64::from(conf.hook_time_limit)),
        })
    }
}

/// Runs one command of one job for an event on the request's allocations; see the module
/// documentation. Returns an error only when nothing could run; a failing script is an
/// entry of [`HookOutcome::runs`]. Must be called inside a tokio runtime.
pub async fn run_hook<J: HookJournal + ?Sized>(
    host: &HookHost,
    catalog: &HookCatalog,
    journal: &J,
    request: &HookRequest,
) -> Result<HookOutcome, HookError> {
    runner::run(host, catalog, journal, request).await
}

/// [`run_hook`] for synchronous callers: runs it on a runtime of its own.
pub fn run_hook_blocking<J: HookJournal + ?Sized>(
    host: &HookHost,
    catalog: &HookCatalog,
    journal: &J,
    request: &HookRequest,
) -> Result<HookOutcome, HookError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(HookError::Runtime)?
        .block_on(run_hook(host, catalog, journal, request))
}

/// Folds KV changes of several hook runs into one event per namespace, the last change of
/// each key winning (what `maand jobcommand` and `post_build` record).
pub fn merge_kv_changes(changes: impl IntoIterator<Item = KvChanged>) -> Vec<KvChanged> {
    let mut merged: BTreeMap<String, BTreeMap<String, KvChange>> = BTreeMap::new();
    for changed in changes {
        let keys = merged.entry(changed.namespace).or_default();
        for change in changed.changes {
            let key = match &change {
                KvChange::Put { key, .. } | KvChange::Delete { key } => key.clone(),
            };
            keys.insert(key, change);
        }
    }
    merged
        .into_iter()
        .map(|(namespace, keys)| KvChanged {
            namespace,
            changes: keys.into_values().collect(),
        })
        .collect()
}
