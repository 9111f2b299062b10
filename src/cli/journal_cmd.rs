//! `maand journal verify|rebuild`: prove the catalog is derived from the journal.

use crate::bucket::{self, Bucket};
use crate::catalog;
use crate::run::Run;

#[derive(Debug, clap::Subcommand)]
pub enum JournalCommand {
    /// Check the hash chain of every event, then replay the journal into a scratch database and
    /// compare every projection table with the live one. Exits 1 naming the first corrupted
    /// event or listing every differing row. Read-only.
    Verify,
    /// Delete every projection row and replay the whole journal in one transaction, and write
    /// the log files under logs/ again (in the current log_format). Use after `journal verify`
    /// reports differing projections. The journal itself is never changed.
    Rebuild,
}

pub fn run(
    bucket: &Bucket,
    command: &JournalCommand,
    name: &str,
    argv: &[String],
) -> anyhow::Result<i32> {
    match command {
        JournalCommand::Verify => verify(bucket),
        JournalCommand::Rebuild => {
            let mut run = Run::begin(bucket, name, argv)?;
            let format = bucket.conf()?.log_format;
            let result = catalog::rebuild(run.conn_mut()).and_then(|report| {
                crate::logs::files::rewrite(run.conn(), &bucket.logs_dir(), format)
                    .map_err(|e| crate::catalog::CatalogError::Scratch(e.to_string()))?;
                Ok(report)
            });
            run.finish(&result)?;
            let report = result?;
            println!(
                "journal rebuild: replayed {} events into the projections",
                report.events
            );
            Ok(0)
        }
    }
}

fn verify(bucket: &Bucket) -> anyhow::Result<i32> {
    let conn = bucket::open_checked(bucket)?;
    let report = journal::verify(&conn)?;
    if let Some(bad) = report.first_bad {
        println!(
            "journal verify: FAILED at event {}: {}",
            bad.seq, bad.reason
        );
        println!("the journal was modified outside maand; restore data/maand.db from a backup");
        return Ok(1);
    }
    println!(
        "journal verify: hash chain ok ({} events, head {})",
        report.checked, report.head
    );
    let diffs = catalog::diff_with_replay(&conn)?;
    if diffs.is_empty() {
        println!("journal verify: projections equal a replay from event 1");
        return Ok(0);
    }
    println!("journal verify: projections DIFFER from a replay of the journal:");
    for diff in diffs {
        for row in diff.only_live {
            println!("  {}: live only      {row}", diff.table);
        }
        for row in diff.only_replayed {
            println!("  {}: replayed only  {row}", diff.table);
        }
    }
    println!("run `maand journal rebuild` to replace the projections with the replayed state");
    Ok(1)
}
