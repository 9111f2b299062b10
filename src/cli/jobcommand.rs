//! `maand jobcommand <command> [job]`: run a job command for the `cli` event on the active
//! allocations of one job, or of every job that registers it, then print a per-allocation
//! summary. What the scripts write to KV is recorded only when every allocation succeeded.
//! Which allocations run and how is decided in `hooks`, never here.

use anyhow::{bail, Context};
use comfy_table::{presets, ContentArrangement, Table};

use crate::activity::SharedRun;
use crate::bucket::Bucket;
use crate::events::Event;
use crate::hooks::{self, HookCatalog, HookHost, HookOutcome, HookRequest};
use crate::run::Run;
use crate::workspace::CommandEvent;

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
}

/// One job's run of the command.
struct JobRun {
    job: String,
    outcome: HookOutcome,
}

pub fn run(
    bucket: &Bucket,
    args: &JobCommandArgs,
    verbose: bool,
    argv: &[String],
) -> anyhow::Result<i32> {
    let run = Run::begin(bucket, "jobcommand", argv)?;
    let shared = SharedRun::new(run);
    let result = job_command(bucket, args, verbose, &shared)
        .and_then(|runs| conclude(&shared, &args.command, runs));
    let run = shared
        .into_run()
        .context("internal: the run is still shared after the job command finished")?;
    run.finish(&result)?;
    result.map(|_| 0)
}

fn job_command(
    bucket: &Bucket,
    args: &JobCommandArgs,
    verbose: bool,
    shared: &SharedRun,
) -> anyhow::Result<Vec<JobRun>> {
    let host = HookHost::new(bucket)?;
    let mut catalog = shared.with(|run| HookCatalog::load(run.conn()))?;
    let jobs = select_jobs(&catalog, &args.command, args.job.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut runs = Vec::new();
    for job in jobs {
        let request = HookRequest {
            allocations: catalog.active_allocations(&job),
            job: job.clone(),
            command: args.command.clone(),
            event: CommandEvent::Cli,
            concurrency: usize::from(args.concurrency),
            extra_env: Default::default(),
            verbose,
            timeout: None,
        };
        if request.allocations.is_empty() {
            println!("jobcommand: job {job} has no active allocation; nothing ran for it");
        }
        let outcome = runtime.block_on(hooks::run_hook(&host, &catalog, shared, &request))?;
        catalog.apply(&outcome.kv_changes);
        runs.push(JobRun { job, outcome });
    }
    Ok(runs)
}

/// The jobs that run `command`: the named one (which must register it for `cli`), or every
/// job that does.
fn select_jobs(
    catalog: &HookCatalog,
    command: &str,
    job: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    match job {
        Some(job) => {
            if !catalog.knows_job(job) {
                bail!("job {job} is not in the catalog; check the name, or run `maand build` if it was just added");
            }
            if catalog.registers(job, command, CommandEvent::Cli) {
                return Ok(vec![job.to_string()]);
            }
            let events = catalog.events_of(job, command);
            if events.is_empty() {
                bail!("job {job} has no command {command}; `maand cat job_commands --jobs {job}` lists its commands");
            }
            bail!(
                "job {job} runs {command} only on {}; add \"cli\" to commands.{command}.executed_on in workspace/jobs/{job}/manifest.json and run `maand build`",
                events.join(", ")
            )
        }
        None => {
            let jobs: Vec<String> = catalog
                .hooks(CommandEvent::Cli)
                .into_iter()
                .filter(|(_, name)| name == command)
                .map(|(job, _)| job)
                .collect();
            if jobs.is_empty() {
                if catalog.knows_command(command) {
                    bail!("no job registers {command} for cli; add \"cli\" to its executed_on in the job's manifest.json and run `maand build`");
                }
                bail!("no job has a command named {command}; `maand cat job_commands` lists them");
            }
            Ok(jobs)
        }
    }
}

/// Prints the summary; records the KV writes when every allocation succeeded, else fails
/// naming the allocations that did not.
fn conclude(shared: &SharedRun, command: &str, runs: Vec<JobRun>) -> anyhow::Result<()> {
    if runs.iter().any(|r| !r.outcome.runs.is_empty()) {
        println!("{}", summary_table(&runs));
    }
    let total: usize = runs.iter().map(|r| r.outcome.runs.len()).sum();
    let failed: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.outcome
                .failures()
                .into_iter()
                .map(move |(worker, error)| format!("{}@{worker} ({error})", r.job))
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "{command} failed on {} of {total} allocations: {}; nothing it wrote to KV was recorded (`maand logs show --format human` has every line)",
            failed.len(),
            failed.join(", ")
        );
    }
    let changes = hooks::merge_kv_changes(runs.into_iter().flat_map(|r| r.outcome.kv_changes));
    if !changes.is_empty() {
        let events: Vec<Event> = changes.into_iter().map(Event::KvChanged).collect();
        shared.record(&events)?;
        println!(
            "jobcommand: recorded KV changes in {} namespace(s)",
            events.len()
        );
    }
    Ok(())
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
