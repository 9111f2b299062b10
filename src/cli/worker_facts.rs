//! `maand worker_facts`: parse the flags, run [`crate::worker_facts::refresh`] (probe the
//! workers of `workspace/workers.json` for memory and CPU and write the figures back) in a run
//! of its own with the chosen reporter, print what changed, and build after it with `--build`.

use anyhow::Context;

use crate::bucket::Bucket;
use crate::build::{self, BuildOptions};
use crate::job_control::{WorkerFilter, WORKERS_FILE};
use crate::worker_facts::{self, FactsRequest, Refreshed};

use super::args::{
    hook_echo, print_build_summary, print_recap, reported_run, warn, ReportArgs, SshArgs,
};

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
    #[command(flatten)]
    pub report: ReportArgs,
}

pub fn run(bucket: &Bucket, args: &WorkerFactsArgs, argv: &[String]) -> anyhow::Result<i32> {
    let progress = args.report.progress();
    let shared = reported_run(bucket, "worker_facts", argv, &progress)?;
    let request = FactsRequest {
        filter: WorkerFilter {
            workers: args.workers.clone(),
            labels: args.labels.clone(),
        },
        concurrency: usize::from(args.concurrency),
        connect_timeout: args.ssh.connect_timeout(),
        dry_run: args.dry_run,
    };
    let probed = worker_facts::refresh(bucket, &shared, &request).map(|refreshed| {
        print_recap(&progress, || print_refreshed(&refreshed, args.build));
    });
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

/// What probing changed in workers.json, in words.
fn print_refreshed(refreshed: &Refreshed, build: bool) {
    match refreshed {
        Refreshed::UpToDate => println!("workers.json already up to date"),
        Refreshed::WouldChange(update) => {
            for change in update.changes() {
                println!("{change}");
            }
            print!("{}", update.diff());
            println!("dry run: {WORKERS_FILE} left unchanged");
        }
        Refreshed::Written { update, probed } => {
            for change in update.changes() {
                println!("{change}");
            }
            let hint = if build {
                ""
            } else {
                "; run `maand build` to record it"
            };
            println!(
                "updated {WORKERS_FILE} ({} of {probed} workers changed){hint}",
                update.changes().len(),
            );
        }
    }
}
