//! `maand health_check`: parse the flags, run [`crate::health::health_check`] in a run of its
//! own with the chosen reporter, print the recap (the report's table) and fail with its
//! verdict. Which checks run and what they
//! mean is decided in `health`, never here.

use anyhow::Context;

use crate::bucket::Bucket;
use crate::health::{self, CheckRequest};

use super::args::{print_recap, reported_run, ReportArgs, SshArgs};

#[derive(Debug, clap::Args)]
pub struct HealthCheckArgs {
    /// Only these jobs, comma-separated. A name the catalog does not know fails. Default:
    /// every job.
    #[arg(long, value_delimiter = ',', value_name = "JOB,...")]
    pub jobs: Vec<String>,
    /// Keep checking what is not healthy yet: a worker up to 30 times, an allocation up to
    /// its job's health_check.wait.attempts (default 30), the job's interval_seconds apart
    /// (default 1). Without it, one attempt each.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub ssh: SshArgs,
    #[command(flatten)]
    pub report: ReportArgs,
}

pub fn run(
    bucket: &Bucket,
    args: &HealthCheckArgs,
    verbose: bool,
    argv: &[String],
) -> anyhow::Result<i32> {
    let progress = args.report.progress();
    let shared = reported_run(bucket, "health_check", argv, &progress)?;
    let request = CheckRequest {
        jobs: args.jobs.clone(),
        wait: args.wait,
        echo: verbose,
        connect_timeout: args.ssh.connect_timeout(),
    };
    let result = health::health_check(bucket, &shared, &request).and_then(|report| {
        print_recap(&progress, || println!("{}", report.render()));
        report.verdict()
    });
    let run = shared
        .into_run()
        .context("internal: the run is still shared after the checks finished")?;
    run.finish(&result)?;
    result.map(|()| 0)
}
