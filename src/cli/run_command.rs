//! `maand run_command`: parse the flags, run [`crate::job_control::run_command`] in a run of
//! its own with the chosen reporter, then print the recap (the per-worker table, and the
//! health table with `--health_check`).
//! Which workers take part and what runs there is decided in `job_control`, never here.

use std::time::Duration;

use crate::bucket::Bucket;
use crate::job_control::{self, ShellRequest, WorkerFilter};

use super::args::{finish, reported_run, ReportArgs, SshArgs};

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
    #[command(flatten)]
    pub report: ReportArgs,
}

pub fn run(bucket: &Bucket, args: &RunCommandArgs, argv: &[String]) -> anyhow::Result<i32> {
    let progress = args.report.progress();
    let shared = reported_run(bucket, "run_command", argv, &progress)?;
    let request = ShellRequest {
        command: args.command.clone(),
        filter: WorkerFilter {
            workers: args.workers.clone(),
            labels: args.labels.clone(),
        },
        concurrency: usize::from(args.concurrency),
        timeout: Duration::from_secs(args.timeout),
        connect_timeout: args.ssh.connect_timeout(),
        health_check: args.health_check,
    };
    let result = job_control::run_command(bucket, &shared, &request);
    finish(shared, &progress, result)
}
