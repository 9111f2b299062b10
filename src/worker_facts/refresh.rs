//! `maand worker_facts` as a use case ([`refresh`]): probes the selected workers of
//! `workspace/workers.json` over SSH with their activity journaled, and writes the measured
//! memory and CPU back into the file (atomically, and only if nobody edited it meanwhile). What
//! changed is returned for the caller to print.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::{parse_probe, Capacity, FactsUpdate, WorkersFile, PROBE_SCRIPT};
use crate::activity::{self, SharedRun};
use crate::bucket::{self, Bucket};
use crate::job_control::{self, Candidate, Outcome, WorkerFilter, WorkerOutcome, WORKERS_FILE};
use crate::remote::{self, RemoteCommand};

/// Longest time the probe may take on one worker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Which workers are probed, and how.
pub struct FactsRequest {
    pub filter: WorkerFilter,
    /// How many workers are probed at the same time.
    pub concurrency: usize,
    /// How long a worker may take to accept the SSH connection.
    pub connect_timeout: Duration,
    /// Compute the update but leave workers.json alone.
    pub dry_run: bool,
}

/// What probing did to workers.json.
pub enum Refreshed {
    /// Every figure already matched.
    UpToDate,
    /// These changes would be written (`--dry-run`).
    WouldChange(FactsUpdate),
    /// These changes were written; `probed` workers took part.
    Written { update: FactsUpdate, probed: usize },
}

/// Probes the selected workers and updates workers.json with what they report. Fails, leaving
/// the file alone, when any worker could not be probed or the file changed meanwhile.
pub fn refresh(
    bucket: &Bucket,
    shared: &SharedRun,
    request: &FactsRequest,
) -> anyhow::Result<Refreshed> {
    remote::check_host_tools()?;
    let path = bucket.workspace_dir().join("workers.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}; run `maand init` to create it", path.display()))?;
    let file = WorkersFile::parse(&text)?;
    let candidates: Vec<Candidate> = file
        .entries()
        .iter()
        .map(|entry| Candidate {
            host: entry.host.clone(),
            labels: entry.labels.clone(),
        })
        .collect();
    let workers = job_control::select_workers(&candidates, &request.filter, WORKERS_FILE)?;

    let concurrency = request.concurrency;
    let fleet = bucket.fleet(request.connect_timeout, concurrency)?;
    let observer = Arc::new(shared.observer(None, "worker_facts", "probe", false));
    let probe = Arc::new(RemoteCommand::bash(PROBE_SCRIPT, PROBE_TIMEOUT)?);
    let task_observer = observer.clone();
    let probed = activity::runtime()?.block_on(job_control::fan_out(
        &fleet,
        &workers,
        concurrency,
        move |session| {
            let (probe, observer) = (probe.clone(), task_observer.clone());
            async move { session.capture(&probe, observer.as_ref()).await }
        },
    ));
    if let Some(error) = observer.journal_error() {
        bail!("recording the probes failed: {error}");
    }

    let mut facts: Vec<(String, Capacity)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut unreachable: Vec<WorkerOutcome> = Vec::new();
    for timed in probed {
        match timed.result {
            Ok(Ok(output)) if output.outcome.success() => {
                match parse_probe(&timed.worker, &output.stdout.join("\n")) {
                    Ok(capacity) => facts.push((timed.worker, capacity)),
                    Err(error) => problems.push(error.to_string()),
                }
            }
            Ok(Ok(output)) => problems.push(format!(
                "worker {}: the capacity probe exited with code {}: {}",
                timed.worker,
                output.outcome.exit_code,
                output
                    .stderr
                    .last()
                    .map_or("no error output", String::as_str)
            )),
            Ok(Err(error)) => problems.push(error.to_string()),
            Err(error) => {
                problems.push(error.to_string());
                unreachable.push(WorkerOutcome {
                    worker: timed.worker,
                    outcome: Outcome::Unreachable(error),
                    elapsed: timed.elapsed,
                });
            }
        }
    }
    shared.record(&job_control::unrun_events(
        &unreachable,
        None,
        "worker_facts",
        "probe",
    ))?;
    if !problems.is_empty() {
        bail!(
            "{WORKERS_FILE} left unchanged: {} of {} workers could not be probed:\n  {}",
            problems.len(),
            workers.len(),
            problems.join("\n  ")
        );
    }

    let update = file.plan(&facts);
    if update.is_empty() {
        return Ok(Refreshed::UpToDate);
    }
    if request.dry_run {
        return Ok(Refreshed::WouldChange(update));
    }
    // The probes took time; an edit made meanwhile must not be overwritten.
    let current = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} again", path.display()))?;
    if current != text {
        bail!(
            "{} changed while the workers were probed; nothing was written, run worker_facts again",
            path.display()
        );
    }
    let mode = std::fs::metadata(&path)
        .map(|meta| meta.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    bucket::write_atomically(&path, update.new_text().as_bytes(), mode)?;
    Ok(Refreshed::Written {
        update,
        probed: workers.len(),
    })
}
