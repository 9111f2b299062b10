//! `maand health_check`: parse the flags, run [`crate::health::health_check`] in a run of its
//! own, print the report's table and fail with its verdict. Which checks run and what they
//! mean is decided in `health`, never here.

use anyhow::Context;

use crate::activity::SharedRun;
use crate::bucket::Bucket;
use crate::health::{self, CheckRequest};
use crate::run::Run;

use super::args::SshArgs;

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
}

pub fn run(
    bucket: &Bucket,
    args: &HealthCheckArgs,
    verbose: bool,
    argv: &[String],
) -> anyhow::Result<i32> {
    let run = Run::begin(bucket, "health_check", argv)?;
    let shared = SharedRun::new(run);
    let request = CheckRequest {
        jobs: args.jobs.clone(),
        wait: args.wait,
        echo: verbose,
        connect_timeout: args.ssh.connect_timeout(),
    };
    let result = health::health_check(bucket, &shared, &request).and_then(|report| {
        println!("{}", report.render());
        report.verdict()
    });
    let run = shared
        .into_run()
        .context("internal: the run is still shared after the checks finished")?;
    run.finish(&result)?;
    result.map(|()| 0)
}
