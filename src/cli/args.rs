//! What the command modules share, and the only `cli` module they may import: argument types
//! used by more than one command (the SSH flags, `--json`, the `cat prometheus` arguments that
//! `cat` declares and `cat_prometheus` runs) and the small renderers several commands print
//! with (a catalog listing as a table or JSON, the reporter flags and recap of the commands
//! that work on many workers, the per-worker summary of a hand-run action, the summary of a
//! build, workspace warnings).
//!
//! Holds no use case: what runs where is decided in the domain modules.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;

use crate::activity::SharedRun;
use crate::bucket::Bucket;
use crate::build::BuildSummary;
use crate::job_control::{self, Acted, WorkerOutcome};
use crate::progress::{CommandProgress, OutputMode};

/// SSH flags of every command that contacts workers.
#[derive(Debug, clap::Args)]
pub struct SshArgs {
    /// Seconds to wait for a worker to accept the SSH connection; a worker that does not is
    /// reported as unreachable and the others carry on.
    #[arg(long, value_name = "SECONDS", env = "MAAND_CONNECT_TIMEOUT", default_value_t = job_control::DEFAULT_CONNECT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,
}

impl SshArgs {
    /// `--connect-timeout` as a duration.
    pub(super) fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout)
    }
}

/// How a command that works on many workers reports: see [`crate::progress`].
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Print JSON lines instead of text: one object per finished command on a worker as it
    /// happens (`"type": "work"`), then the recap as one object (`"type": "recap"`).
    #[arg(long, conflicts_with = "quiet")]
    pub json: bool,
    /// Print only errors and the summary line (no line per worker, no tables).
    #[arg(short, long)]
    pub quiet: bool,
}

impl ReportArgs {
    /// The reporter these flags ask for: on a terminal a live line of what runs where, else
    /// a line per finished command; JSON lines with --json; only the summary with -q.
    pub(super) fn progress(&self) -> Arc<CommandProgress> {
        Arc::new(CommandProgress::new(OutputMode::chosen(
            self.json, self.quiet,
        )))
    }
}

/// Opens a run of `command` whose recorded work `progress` shows as it happens.
pub(super) fn reported_run(
    bucket: &Bucket,
    command: &str,
    argv: &[String],
    progress: &Arc<CommandProgress>,
) -> anyhow::Result<SharedRun> {
    let run = crate::run::Run::begin(bucket, command, argv)?;
    Ok(SharedRun::reported(run, progress.clone()))
}

/// Ends the live line and prints the recap's summary (or the JSON recap); `text` prints the
/// command's own tables first, in the text modes only.
pub(super) fn print_recap(progress: &CommandProgress, text: impl FnOnce()) {
    let recap = progress.finish();
    if progress.mode().shows_text() {
        text();
    }
    progress.print_summary(&recap);
}

/// Output format shared by every listing.
#[derive(Debug, clap::Args)]
pub struct JsonFlag {
    /// Print a JSON array of objects (every field of every row) instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PrometheusArgs {
    #[command(subcommand)]
    pub command: Option<PrometheusCommand>,
    #[command(flatten)]
    pub output: JsonFlag,
}

#[derive(Debug, clap::Subcommand)]
pub enum PrometheusCommand {
    /// Print one file of a job's `_prometheus/` folder, e.g. `get api scrape.yaml` or
    /// `get api alerts/slo.yaml`.
    Get {
        /// The job.
        job: String,
        /// The file, relative to the job's `_prometheus/` folder.
        path: String,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// The scrape catalog with `maand:port/*` and `maand:job` expanded against the active
    /// allocations, as YAML list items (what `scrape_configs()` inserts). Jobs that expand to
    /// no target are skipped and named in a comment.
    Scrape {
        /// Only these jobs (comma-separated). An unknown name is an error.
        #[arg(long, value_delimiter = ',', value_name = "JOB,...")]
        jobs: Vec<String>,
        #[command(flatten)]
        output: JsonFlag,
    },
}

/// Prints `rows` as JSON, or as a table with `header` and one `cells` line per row. Columns
/// are separated by two spaces; nothing wraps, whatever the terminal width.
pub(super) fn print<T: Serialize>(
    rows: &[T],
    output: &JsonFlag,
    header: &[&str],
    cells: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<i32> {
    if output.json {
        println!("{}", serde_json::to_string_pretty(rows)?);
        return Ok(0);
    }
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    for row in rows {
        table.add_row(cells(row));
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    for line in table.lines() {
        println!("{}", line.trim_end());
    }
    Ok(0)
}

/// Prints the recap (the per-worker table and the health table in the text modes), records the
/// run's end, and turns failed workers and failed health checks into the command's error.
/// Shared by every command whose result is a list of worker outcomes.
pub(super) fn finish(
    shared: SharedRun,
    progress: &CommandProgress,
    result: anyhow::Result<Acted>,
) -> anyhow::Result<i32> {
    let result = result.and_then(|Acted { outcomes, health }| {
        print_recap(progress, || {
            println!("{}", summary_table(&outcomes));
            if let Some(Ok(report)) = &health {
                println!("{}", report.render());
            }
        });
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
        if let Some(Err(error)) = health.map(|report| report.and_then(|report| report.verdict())) {
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
fn summary_table(outcomes: &[WorkerOutcome]) -> String {
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

/// Prints a workspace warning on stderr.
pub(super) fn warn(warning: &str) {
    eprintln!("warning: {warning}");
}

/// Whether hook output is echoed to stderr as it arrives: on a terminal, or when MAAND_ECHO
/// asks for it.
pub(super) fn hook_echo() -> bool {
    std::io::stderr().is_terminal() || std::env::var_os("MAAND_ECHO").is_some()
}

/// What `maand build` (and `--build` of `deploy` and `worker_facts`) prints after a build.
pub(super) fn print_build_summary(summary: &BuildSummary) {
    if summary.events == 0 {
        println!(
            "build: catalog already matches the workspace ({} workers, {} jobs)",
            summary.workers, summary.jobs
        );
    } else {
        println!(
            "build: recorded {} catalog events ({} workers, {} jobs)",
            summary.events, summary.workers, summary.jobs
        );
    }
    for hook in &summary.hooks {
        println!(
            "post_build: {} of job {} ran on {} allocation(s)",
            hook.command, hook.job, hook.allocations
        );
    }
}
