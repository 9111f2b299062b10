//! `maand jobcommand` as a use case ([`run_cli_command`]): picks the jobs that register a
//! command for the `cli` event (or checks the one named), runs it on each job's active
//! allocations in deployment_seq order, and records what the scripts wrote to KV only when
//! every allocation succeeded.

use anyhow::bail;

use crate::activity::{self, SharedRun};
use crate::bucket::Bucket;
use crate::events::Event;
use crate::workspace::CommandEvent;

use super::{merge_kv_changes, run_hook, HookCatalog, HookHost, HookOutcome, HookRequest};

/// What `maand jobcommand` runs.
pub struct CliRequest<'a> {
    /// The command, as named in the manifest.
    pub command: &'a str,
    /// Only this job; every job registering the command for `cli` when `None`.
    pub job: Option<&'a str>,
    /// How many allocations of a job run it at the same time.
    pub concurrency: usize,
    /// Echo the scripts' output as `job@worker | line`.
    pub verbose: bool,
}

/// One job's run of the command.
pub struct JobRun {
    pub job: String,
    pub outcome: HookOutcome,
}

/// What a `cli` run did on every job, and its verdict.
pub struct CliOutcome {
    pub runs: Vec<JobRun>,
    /// The KV namespaces recorded; an error naming the allocations that failed (nothing was
    /// recorded then), or why the record failed.
    pub recorded: anyhow::Result<usize>,
}

/// Runs `request.command` for the `cli` event. `on_idle` hears of every selected job that
/// has no active allocation, when its turn comes.
pub fn run_cli_command(
    bucket: &Bucket,
    shared: &SharedRun,
    request: &CliRequest<'_>,
    on_idle: &mut dyn FnMut(&str),
) -> anyhow::Result<CliOutcome> {
    let host = HookHost::new(bucket)?;
    let mut catalog = shared.with(|run| HookCatalog::load(run.conn()))?;
    let jobs = select_jobs(&catalog, request.command, request.job)?;
    let runtime = activity::runtime()?;
    let mut runs = Vec::new();
    for job in jobs {
        let hook = HookRequest {
            allocations: catalog.active_allocations(&job),
            job: job.clone(),
            command: request.command.to_string(),
            event: CommandEvent::Cli,
            concurrency: request.concurrency,
            extra_env: Default::default(),
            verbose: request.verbose,
            timeout: None,
        };
        if hook.allocations.is_empty() {
            on_idle(&job);
        }
        let outcome = runtime.block_on(run_hook(&host, &catalog, shared, &hook))?;
        catalog.apply(&outcome.kv_changes);
        runs.push(JobRun { job, outcome });
    }
    let recorded = record(shared, request.command, &runs);
    Ok(CliOutcome { runs, recorded })
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

/// Records the KV writes when every allocation succeeded, else fails naming the allocations
/// that did not. Returns the number of namespaces recorded.
fn record(shared: &SharedRun, command: &str, runs: &[JobRun]) -> anyhow::Result<usize> {
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
    let changes = merge_kv_changes(runs.iter().flat_map(|r| r.outcome.kv_changes.clone()));
    if !changes.is_empty() {
        let events: Vec<Event> = changes.into_iter().map(Event::KvChanged).collect();
        shared.record(&events)?;
        return Ok(events.len());
    }
    Ok(0)
}
