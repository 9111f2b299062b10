//! `maand worker_facts`: probe the workers listed in `workspace/workers.json` for memory and
//! CPU, and write the figures back into that file (only `memory` and `cpu` change). The probe,
//! the arithmetic and the file edit belong to `crate::worker_facts`; this file only wires them
//! to the fleet, the run and the disk, and never edits the JSON itself.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::activity::{self, SharedRun};
use crate::bucket::{self, Bucket};
use crate::build::{self, BuildOptions};
use crate::job_control::{self, Candidate, Outcome, WorkerFilter, WorkerOutcome, WORKERS_FILE};
use crate::remote::{self, RemoteCommand};
use crate::run::Run;
use crate::worker_facts::{parse_probe, Capacity, WorkersFile, PROBE_SCRIPT};

use super::args::{hook_echo, print_build_summary, warn, SshArgs};

/// Longest time the probe may take on one worker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct WorkerFactsArgs {
    /// Only these workers (hosts as in workers.json), comma-separated.
    #[arg(
        short = 'w',
        long,
        value_delimiter = ',',
        value_name = "IP,...",
        conflicts_with = "labels"
    )]
    pub workers: Vec<String>,
    /// Only workers with any of these labels, comma-separated.
    #[arg(short = 'l', long, value_delimiter = ',', value_name = "LABEL,...")]
    pub labels: Vec<String>,
    /// How many workers are probed at the same time.
    #[arg(short = 'c', long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Print what would change, as a diff of workers.json, and leave the file alone.
    #[arg(long, conflicts_with = "build")]
    pub dry_run: bool,
    /// Run `maand build` (in the same run) once workers.json is up to date.
    #[arg(long)]
    pub build: bool,
    #[command(flatten)]
    pub ssh: SshArgs,
}

pub fn run(bucket: &Bucket, args: &WorkerFactsArgs, argv: &[String]) -> anyhow::Result<i32> {
    let run = Run::begin(bucket, "worker_facts", argv)?;
    let shared = SharedRun::new(run);
    let probed = probe_and_update(bucket, args, &shared);
    let mut run = shared
        .into_run()
        .context("internal: the run is still shared after the probes finished")?;
    let result = match probed {
        Ok(()) if args.build => {
            let options = BuildOptions {
                purge_job_kv: false,
                echo: hook_echo(),
            };
            build::run_build(bucket, &mut run, &options, &mut warn).map(Some)
        }
        Ok(()) => Ok(None),
        Err(error) => Err(error),
    };
    run.finish(&result)?;
    if let Some(summary) = result? {
        print_build_summary(&summary);
    }
    Ok(0)
}

fn probe_and_update(
    bucket: &Bucket,
    args: &WorkerFactsArgs,
    shared: &SharedRun,
) -> anyhow::Result<()> {
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
    let filter = WorkerFilter {
        workers: args.workers.clone(),
        labels: args.labels.clone(),
    };
    let workers = job_control::select_workers(&candidates, &filter, WORKERS_FILE)?;

    let concurrency = usize::from(args.concurrency);
    let fleet = args.ssh.fleet(bucket, concurrency)?;
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
        println!("workers.json already up to date");
        return Ok(());
    }
    for change in update.changes() {
        println!("{change}");
    }
    if args.dry_run {
        print!("{}", update.diff());
        println!("dry run: {WORKERS_FILE} left unchanged");
        return Ok(());
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
    let hint = if args.build {
        ""
    } else {
        "; run `maand build` to record it"
    };
    println!(
        "updated {WORKERS_FILE} ({} of {} workers changed){hint}",
        update.changes().len(),
        workers.len()
    );
    Ok(())
}
