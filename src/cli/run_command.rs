//! `maand run_command`: run a shell command on workers of the catalog, streaming their output
//! as `worker | line` and journaling it, then print a per-worker summary.
//!
//! Also holds what the other hand-run commands (`worker_facts`, `job start|stop|...`) share
//! at the CLI edge: the SSH flags, the async runtime, the summary table. Which workers take
//! part and what runs there is decided in `job_control`, never here.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use comfy_table::{presets, ContentArrangement, Table};

use crate::activity::SharedRun;
use crate::bucket::Bucket;
use crate::job_control::{self, WorkerFilter, WorkerOutcome, CATALOG};
use crate::remote::{self, Fleet};
use crate::run::Run;

use super::health_check::{self, Report, Scope};

#[derive(Debug, clap::Args)]
pub struct RunCommandArgs {
    /// The shell command, run with bash on each worker as the SSH user. It starts in the
    /// bucket's directory on the worker (/opt/worker/<bucket_id>) when that exists, else in
    /// the login directory, with BUCKET_ID and WORKER_IP set.
    #[arg(value_name = "COMMAND")]
    pub command: String,
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
    /// How many workers run the command at the same time.
    #[arg(short = 'c', long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Stop the command on a worker after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// After the command, check the targeted workers answer over SSH and every job is
    /// healthy on its active allocations there, waiting like `maand health_check --wait`;
    /// fails when anything stays unhealthy. See docs/health.md.
    #[arg(long = "health_check")]
    pub health_check: bool,
    #[command(flatten)]
    pub ssh: SshArgs,
}

/// SSH flags of every command that contacts workers.
#[derive(Debug, clap::Args)]
pub struct SshArgs {
    /// Seconds to wait for a worker to accept the SSH connection; a worker that does not is
    /// reported as unreachable and the others carry on.
    #[arg(long, value_name = "SECONDS", env = "MAAND_CONNECT_TIMEOUT", default_value_t = job_control::DEFAULT_CONNECT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,
}

impl SshArgs {
    /// A fleet for the bucket's workers with at most `concurrency` of them worked on at once.
    pub(super) fn fleet(&self, bucket: &Bucket, concurrency: usize) -> anyhow::Result<Fleet> {
        let conf = bucket.conf()?;
        let config = bucket.remote_config(&conf, Duration::from_secs(self.connect_timeout))?;
        Ok(Fleet::new(config, concurrency)?)
    }
}

/// The runtime remote work runs on; the CLI itself stays synchronous.
pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run(bucket: &Bucket, args: &RunCommandArgs, argv: &[String]) -> anyhow::Result<i32> {
    let run = Run::begin(bucket, "run_command", argv)?;
    let shared = SharedRun::new(run);
    let result = run_command(bucket, args, &shared);
    finish(shared, result)
}

fn run_command(
    bucket: &Bucket,
    args: &RunCommandArgs,
    shared: &SharedRun,
) -> anyhow::Result<Acted> {
    remote::check_host_tools()?;
    let (candidates, bucket_id) = shared.with(|run| -> anyhow::Result<_> {
        Ok((
            job_control::catalog_candidates(run.conn())?,
            job_control::bucket_id(run.conn())?,
        ))
    })?;
    let filter = WorkerFilter {
        workers: args.workers.clone(),
        labels: args.labels.clone(),
    };
    let workers = job_control::select_workers(&candidates, &filter, CATALOG)?;
    let concurrency = usize::from(args.concurrency);
    let fleet = args.ssh.fleet(bucket, concurrency)?;
    let observer = Arc::new(shared.observer(None, "run_command", "exec", true));
    let outcomes = runtime()?.block_on(job_control::run_shell(
        &fleet,
        &bucket_id,
        &workers,
        &args.command,
        Duration::from_secs(args.timeout),
        concurrency,
        observer.clone(),
    ));
    if let Some(error) = observer.journal_error() {
        bail!("recording the command's activity failed: {error}");
    }
    shared.record(&job_control::unrun_events(
        &outcomes,
        None,
        "run_command",
        "exec",
    ))?;
    let health = args
        .health_check
        .then(|| health_check::after_action(bucket, shared, &fleet, Scope::Workers(&workers)));
    Ok(Acted { outcomes, health })
}

/// What a hand-run action did on each worker, and what `--health_check` found afterwards.
pub(super) struct Acted {
    pub outcomes: Vec<WorkerOutcome>,
    /// `None` without `--health_check`.
    pub health: Option<anyhow::Result<Report>>,
}

/// Prints the summary (and the health table), records the run's end, and turns failed
/// workers and failed health checks into the command's error. Shared by every command whose
/// result is a list of worker outcomes.
pub(super) fn finish(shared: SharedRun, result: anyhow::Result<Acted>) -> anyhow::Result<i32> {
    let result = result.and_then(|Acted { outcomes, health }| {
        println!("{}", summary_table(&outcomes));
        let failed: Vec<&str> = outcomes
            .iter()
            .filter(|o| !o.outcome.succeeded())
            .map(|o| o.worker.as_str())
            .collect();
        let mut problems = Vec::new();
        if !failed.is_empty() {
            problems.push(format!(
                "failed on {} of {} workers: {} (the summary says why; `maand logs show --format human` has every line)",
                failed.len(),
                outcomes.len(),
                failed.join(", ")
            ));
        }
        let health = health.map(|report| {
            report.and_then(|report| {
                println!("{}", report.render());
                report.verdict()
            })
        });
        if let Some(Err(error)) = health {
            problems.push(format!("{error:#}"));
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        Ok(outcomes.len())
    });
    let run = shared
        .into_run()
        .context("internal: the run is still shared after the workers finished")?;
    run.finish(&result)?;
    result.map(|_| 0)
}

/// One row per worker: worker, result (`exit N`, a refusal or an error), duration.
pub(super) fn summary_table(outcomes: &[WorkerOutcome]) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(["WORKER", "RESULT", "DURATION"]);
    for outcome in outcomes {
        table.add_row([
            outcome.worker.clone(),
            outcome.outcome.to_string(),
            format!("{:.1}s", outcome.elapsed.as_secs_f64()),
        ]);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table.to_string()
}
