//! `maand jobcommand <command> [job]`: parse the arguments, run
//! [`crate::hooks::run_cli_command`] in a run of its own with the chosen reporter, then print
//! the recap (a per-allocation table) and what was recorded. Which allocations run and how is decided in `hooks`, never here.

use anyhow::Context;
use comfy_table::{presets, ContentArrangement, Table};

use crate::bucket::Bucket;
use crate::hooks::{self, CliRequest, JobRun};

use super::args::{print_recap, reported_run, ReportArgs};

#[derive(Debug, clap::Args)]
pub struct JobCommandArgs {
    /// The command, as named in the manifest (`command_...`). It must list `cli` in its
    /// `executed_on`.
    #[arg(value_name = "COMMAND")]
    pub command: String,
    /// Only this job. Without it, every job that registers the command for `cli` runs it,
    /// in deployment_seq order.
    #[arg(value_name = "JOB")]
    pub job: Option<String>,
    /// How many allocations of a job run the command at the same time.
    #[arg(short = 'c', long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    #[command(flatten)]
    pub report: ReportArgs,
}

pub fn run(
    bucket: &Bucket,
    args: &JobCommandArgs,
    verbose: bool,
    argv: &[String],
) -> anyhow::Result<i32> {
    let progress = args.report.progress();
    let shared = reported_run(bucket, "jobcommand", argv, &progress)?;
    let request = CliRequest {
        command: &args.command,
        job: args.job.as_deref(),
        concurrency: usize::from(args.concurrency),
        verbose,
    };
    let text = progress.mode().shows_text();
    let mut idle = |job: &str| {
        progress.note(&format!(
            "jobcommand: job {job} has no active allocation; nothing ran for it"
        ));
    };
    let result = hooks::run_cli_command(bucket, &shared, &request, &mut idle).and_then(|done| {
        print_recap(&progress, || {
            if done.runs.iter().any(|r| !r.outcome.runs.is_empty()) {
                println!("{}", summary_table(&done.runs));
            }
        });
        let namespaces = done.recorded?;
        if namespaces > 0 && text {
            println!("jobcommand: recorded KV changes in {namespaces} namespace(s)");
        }
        Ok(())
    });
    let run = shared
        .into_run()
        .context("internal: the run is still shared after the job command finished")?;
    run.finish(&result)?;
    result.map(|_| 0)
}

fn summary_table(runs: &[JobRun]) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(["JOB", "WORKER", "RESULT", "DURATION"]);
    for run in runs {
        for allocation in &run.outcome.runs {
            table.add_row([
                run.job.clone(),
                allocation.worker_ip.clone(),
                allocation.error.clone().unwrap_or_else(|| "ok".to_string()),
                format!("{:.1}s", allocation.duration.as_secs_f64()),
            ]);
        }
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table.to_string()
}
