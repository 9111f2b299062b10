//! `maand gc`: parse the flags, run [`crate::gc::collect`] in a run of its own with the chosen
//! reporter, print what it removed.

use crate::bucket::Bucket;
use crate::gc;

use super::args::{print_recap, reported_run, ReportArgs};

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Keep deleted KV keys for this many days before dropping their history (default 0:
    /// drop every deleted key's history now). Live keys always keep their last 7 versions.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retain_days: u32,
    #[command(flatten)]
    pub report: ReportArgs,
}

pub fn run(bucket: &Bucket, args: &GcArgs, argv: &[String]) -> anyhow::Result<i32> {
    let progress = args.report.progress();
    let run = reported_run(bucket, "gc", argv, &progress)?;
    let result = gc::collect(bucket, &run, args.retain_days);
    let run = run
        .into_run()
        .ok_or_else(|| anyhow::anyhow!("internal: the run is still shared"))?;
    run.finish(&result)?;
    let summary = result?;
    print_recap(&progress, || print_summary(&summary));
    for warning in &summary.receipt_failures {
        eprintln!(
            "gc: warning: step receipts stay on {warning}; run `maand gc` again once it answers"
        );
    }
    Ok(0)
}

/// What gc removed, in words.
fn print_summary(summary: &gc::GcSummary) {
    println!(
        "gc: removed {} allocation tree(s), deleted {} KV namespace(s), purged history of {} KV key(s)",
        summary.allocations, summary.namespaces, summary.purged_keys
    );
    if summary.receipt_workers > 0 {
        println!(
            "gc: removed the step receipts of finished deploys on {} worker(s)",
            summary.receipt_workers
        );
    }
    if summary.hook_receipt_deploys > 0 {
        println!(
            "gc: removed the hook receipts of {} finished deploy(s)",
            summary.hook_receipt_deploys
        );
    }
}
