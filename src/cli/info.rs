//! `maand info`: the bucket's identity and size.

use crate::bucket::{self, Bucket};
use crate::catalog::read;

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(bucket: &Bucket, args: &InfoArgs) -> anyhow::Result<i32> {
    let conn = bucket::open_checked(bucket)?;
    let info = read::bucket_info(&conn)?.ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no bucket identity yet: run `maand init`",
            bucket.root().display()
        )
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(0);
    }
    let rows = [
        ("Bucket ID", info.bucket_id.clone()),
        ("Update Sequence", info.update_seq.to_string()),
        ("Schema Version", info.schema_version.to_string()),
        ("Number of Workers", info.workers.to_string()),
        ("Number of Jobs", info.jobs.to_string()),
        ("Number of Allocations", info.allocations.to_string()),
        ("Runs", info.runs.to_string()),
        ("Journal Head", info.journal_head.to_string()),
        ("Projected Up To", info.projected_seq.to_string()),
    ];
    for (label, value) in rows {
        println!("{label:<22} {value}");
    }
    let conf = bucket.conf().ok();
    if let Some((url, bucket_id)) = conf.as_ref().and_then(|conf| conf.shared_journal()) {
        println!("{:<22} {url} (bucket {bucket_id})", "Shared Journal");
        if let Some(sync) = crate::shared_journal::last_sync(bucket) {
            println!(
                "{:<22} {} (head {})",
                "Last Caught Up",
                crate::run::format_time_ms(sync.synced_ms),
                sync.head
            );
        }
    }
    Ok(0)
}
