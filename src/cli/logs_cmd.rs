//! `maand logs show`: render journal events with filters.

use crate::bucket::{self, Bucket};
use crate::logs::{self, Filter};

#[derive(Debug, clap::Subcommand)]
pub enum LogsCommand {
    /// Show recorded events, oldest first.
    ///
    /// Examples:
    ///   maand logs show --tail 20
    ///   maand logs show --run 8f3a2c12 --format human
    ///   maand logs show --event run_finished --format json
    Show(ShowArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// key=value lines (the default; grep-friendly).
    Raw,
    /// One JSON object per line.
    Json,
    /// Blocks grouped by run, for reading.
    Human,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Only this run (a run id or a unique prefix of one).
    #[arg(long)]
    pub run: Option<String>,
    /// Only events of this name (for example run_started, run_finished, command_begin).
    #[arg(long)]
    pub event: Option<String>,
    /// Only events about this worker (its host as in workers.json).
    #[arg(long)]
    pub worker: Option<String>,
    /// Only events about this job.
    #[arg(long)]
    pub job: Option<String>,
    /// Only events of this phase (for example rsync, rollout, reconcile).
    #[arg(long)]
    pub phase: Option<String>,
    /// Only the last N matching events (with --format human: the last N command blocks).
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Only events at or after this time (RFC 3339, e.g. 2026-11-25T08:00:00Z).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Only events at or before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Raw)]
    pub format: Format,
}

fn parse_time(text: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|e| format!("{e}: use RFC 3339, for example 2026-11-25T08:00:00Z"))
}

pub fn run(bucket: &Bucket, command: &LogsCommand) -> anyhow::Result<i32> {
    let LogsCommand::Show(args) = command;
    let conn = bucket::open_checked(bucket)?;
    let filter = Filter {
        run: args.run.clone(),
        event: args.event.clone(),
        worker: args.worker.clone(),
        job: args.job.clone(),
        phase: args.phase.clone(),
        since_ms: args.since,
        until_ms: args.until,
    };
    // In the human view --tail counts command blocks, elsewhere records.
    let human = args.format == Format::Human;
    let records = logs::collect(&conn, &filter, if human { None } else { args.tail })?;
    match args.format {
        Format::Raw => records
            .iter()
            .for_each(|r| println!("{}", logs::render_kv(r))),
        Format::Json => records
            .iter()
            .for_each(|r| println!("{}", logs::render_json(r))),
        Format::Human => {
            let mut blocks = logs::blocks(records);
            if let Some(n) = args.tail {
                blocks.drain(..blocks.len().saturating_sub(n));
            }
            print!("{}", logs::render_human_blocks(&blocks))
        }
    }
    Ok(0)
}
