//! `maand job`: job subcommands. `job create` scaffolds a job directory in the workspace
//! ([`crate::workspace::create_job`]); `job start|stop|restart|status|run` run a Makefile
//! target of a job on its workers ([`crate::job_control::job_target`]) with the chosen reporter.
//!
//! The target commands run inside a run (they take the bucket lock), check every worker's
//! deployed `worker.json` against the catalog first, and journal the runner's output with
//! phase `job_control` and the target as action (`job_control` owns the logic).

use std::time::Duration;

use crate::bucket::Bucket;
use crate::job_control::{self, TargetRequest};
use crate::workspace;

use super::args::{finish, reported_run, ReportArgs, SshArgs};

#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Scaffold workspace/jobs/<JOB>/ with a manifest.json and a Makefile.
    ///
    /// The manifest declares version 1.0.0, the selectors (the job name when --selectors is
    /// not given), one upgrade at a time, all starts at once, no minimum allocation count and
    /// restart_policy "always". The Makefile has start, stop, restart, reload and status
    /// targets that run a placeholder loop in the background on the worker, keeping its pid
    /// under ./data and its output under ./logs; replace SERVICE in it with your program.
    ///
    /// Only writes workspace files: records no journal event and contacts no worker. Run
    /// `maand build` to add the job to the catalog. Refuses an invalid job name and an
    /// existing directory.
    Create(CreateArgs),
    /// Run `make start` for the job on its workers (through the worker's runner).
    ///
    /// Every command below first reads /opt/worker/<bucket_id>/worker.json on each worker and
    /// refuses a worker whose file is missing (not deployed yet) or names another bucket,
    /// worker or update_seq than the catalog: run `maand deploy` first. Runs on the job's
    /// active allocations (not disabled, not removed), at most 32 workers at once, prints a
    /// summary per worker and fails when any worker failed or was refused.
    Start(TargetArgs),
    /// Run `make stop` for the job on its workers (see `job start`).
    Stop(TargetArgs),
    /// Run `make restart` for the job on its workers (see `job start`).
    Restart(TargetArgs),
    /// Run `make status` for the job on its workers (see `job start`); a non-zero status
    /// (the scaffold exits 3 when the job is not running) counts as a failure.
    Status(StatusArgs),
    /// Run any Makefile target of the job on its workers, e.g. `--target reload` or
    /// `--target migrate` (see `job start`).
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// The job, as in the catalog.
    pub job: String,
    /// Only the job's allocations on these workers (hosts), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "IP,...")]
    pub allocations: Vec<String>,
    /// Stop the target on a worker after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Afterwards, check the job's health on the allocations the target ran on, waiting like
    /// `maand health_check --wait`; fails when any stays unhealthy. See docs/health.md.
    #[arg(long = "health_check")]
    pub health_check: bool,
    #[command(flatten)]
    pub ssh: SshArgs,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The job, as in the catalog.
    pub job: String,
    /// Only the job's allocations on these workers (hosts), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "IP,...")]
    pub allocations: Vec<String>,
    /// Stop the target on a worker after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    #[command(flatten)]
    pub ssh: SshArgs,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The Makefile target: letters, digits, '.', '_' and '-'.
    #[arg(long, value_name = "TARGET")]
    pub target: String,
    #[command(flatten)]
    pub common: TargetArgs,
}

impl JobCommand {
    /// The command name recorded in the journal.
    pub fn name(&self) -> &'static str {
        match self {
            JobCommand::Create(_) => "job create",
            JobCommand::Start(_) => "job start",
            JobCommand::Stop(_) => "job stop",
            JobCommand::Restart(_) => "job restart",
            JobCommand::Status(_) => "job status",
            JobCommand::Run(_) => "job run",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The job name: lowercase letters, digits, '_' and '-'; not data, logs or bin.
    pub job: String,
    /// Worker labels the job is placed on, comma-separated (all must match). Defaults to the
    /// job name.
    #[arg(long, value_delimiter = ',', value_name = "LABEL,...")]
    pub selectors: Vec<String>,
}

pub fn run(bucket: &Bucket, command: &JobCommand, argv: &[String]) -> anyhow::Result<i32> {
    let (target, args) = match command {
        JobCommand::Create(args) => return create(bucket, args),
        JobCommand::Start(args) => ("start", args),
        JobCommand::Stop(args) => ("stop", args),
        JobCommand::Restart(args) => ("restart", args),
        JobCommand::Run(args) => (args.target.as_str(), &args.common),
        JobCommand::Status(args) => {
            let target = Target {
                job: &args.job,
                allocations: &args.allocations,
                timeout: args.timeout,
                health_check: false,
                ssh: &args.ssh,
                report: &args.report,
            };
            return run_target(bucket, command.name(), "status", &target, argv);
        }
    };
    let common = Target {
        job: &args.job,
        allocations: &args.allocations,
        timeout: args.timeout,
        health_check: args.health_check,
        ssh: &args.ssh,
        report: &args.report,
    };
    run_target(bucket, command.name(), target, &common, argv)
}

/// What every target command needs.
struct Target<'a> {
    job: &'a str,
    allocations: &'a [String],
    timeout: u64,
    /// Check the job's health after the target.
    health_check: bool,
    ssh: &'a SshArgs,
    report: &'a ReportArgs,
}

fn run_target(
    bucket: &Bucket,
    name: &str,
    target: &str,
    args: &Target<'_>,
    argv: &[String],
) -> anyhow::Result<i32> {
    job_control::check_target(target)?;
    let progress = args.report.progress();
    let shared = reported_run(bucket, name, argv, &progress)?;
    let request = TargetRequest {
        job: args.job,
        target,
        allocations: args.allocations,
        timeout: Duration::from_secs(args.timeout),
        connect_timeout: args.ssh.connect_timeout(),
        health_check: args.health_check,
    };
    let result = job_control::job_target(bucket, &shared, &request);
    finish(shared, &progress, result)
}

fn create(bucket: &Bucket, args: &CreateArgs) -> anyhow::Result<i32> {
    bucket.require_exists()?;
    workspace::create_job(
        &bucket.workspace_dir(),
        &bucket.tmp_dir(),
        &args.job,
        &args.selectors,
    )?;
    println!(
        "created workspace/jobs/{}/ (manifest.json, Makefile); edit them, then run `maand build`",
        args.job
    );
    Ok(0)
}
