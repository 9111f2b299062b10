//! `maand journal verify|rebuild|push`: prove the catalog is derived from the journal, and
//! make a local journal the shared journal of a team.

use crate::bucket::{self, Bucket};
use crate::catalog::{self, integrity};
use crate::run::Run;

#[derive(Debug, clap::Subcommand)]
pub enum JournalCommand {
    /// Check the database file (SQLite's integrity check), re-hash every stored blob (job files)
    /// against its key, check the hash chain of every event, then replay the journal into a
    /// scratch database and compare every projection table with the live one. Exits 1 naming
    /// the first damaged object, the first corrupted event, or every differing row. Read-only.
    Verify,
    /// Delete every projection row and replay the whole journal in one transaction, and write
    /// the log files under logs/ again (in the current log_format). Use after `journal verify`
    /// reports differing projections. The journal itself is never changed.
    Rebuild {
        /// For a damaged database file (`journal verify` reports SQLite or blob damage): copy
        /// every readable journal row and every intact blob into a fresh file, replay the
        /// projections there and swap it in, keeping the damaged file beside it as
        /// data/maand.db.damaged-<time>. When journal rows themselves are unreadable nothing is
        /// swapped: the lost sequence range is named and the readable part kept aside.
        #[arg(long)]
        salvage: bool,
    },
    /// Make this bucket's journal shared: verify the local journal (hash chain, blobs), upload
    /// every event and blob to PostgreSQL at URL in one transaction, and name it in maand.conf
    /// (journal_url, journal_bucket). From then on every command pulls from and appends to the
    /// shared journal first; data/maand.db is its local cache. Other operators join with
    /// `maand init --join URL BUCKET_ID`. The URL must not hold a password: put it in
    /// PGPASSWORD or ~/.pgpass. Fails, changing nothing, if the shared journal already holds
    /// this bucket. See docs/team.md.
    Push {
        /// postgres://[user@]host[:port]/database (or a libpq key=value string).
        url: String,
    },
}

pub fn run(
    bucket: &Bucket,
    command: &JournalCommand,
    name: &str,
    argv: &[String],
) -> anyhow::Result<i32> {
    match command {
        JournalCommand::Verify => verify(bucket),
        JournalCommand::Rebuild { salvage: true } => salvage(bucket),
        JournalCommand::Push { url } => push(bucket, url, name, argv),
        JournalCommand::Rebuild { salvage: false } => {
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
    let conn = match bucket::open_checked(bucket) {
        Ok(conn) => conn,
        Err(bucket::BucketError::Sqlite { source, .. }) => {
            println!(
                "journal verify: FAILED: the database file is damaged: {}",
                integrity::sqlite_message(&source)
            );
            println!("run `maand journal rebuild --salvage` to rebuild data/maand.db from its readable journal rows and blobs");
            return Ok(1);
        }
        Err(other) => return Err(other.into()),
    };
    let problems = integrity::sqlite_problems(&conn);
    if !problems.is_empty() {
        println!("journal verify: FAILED: the database file is damaged (SQLite integrity check):");
        for problem in problems.iter().take(20) {
            println!("  {problem}");
        }
        if problems.len() > 20 {
            println!("  … and {} more", problems.len() - 20);
        }
        println!("run `maand journal rebuild --salvage` to rebuild data/maand.db from its readable journal rows and blobs");
        return Ok(1);
    }
    let damaged = integrity::damaged_blobs(&conn)?;
    if let Some(first) = damaged.first() {
        println!(
            "journal verify: FAILED: {first} ({} damaged blob(s) in all)",
            damaged.len()
        );
        println!("deploy refuses to ship a damaged blob; run `maand journal rebuild --salvage` to drop damaged blobs, then `maand build` to store the job files again from the workspace");
        return Ok(1);
    }
    println!("journal verify: database file ok, every blob matches its hash");
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

/// `journal rebuild --salvage`: a fresh database from what the damaged one still holds.
fn salvage(bucket: &Bucket) -> anyhow::Result<i32> {
    bucket.require_exists()?;
    let _lock = Run::lock(bucket, "journal rebuild --salvage")?;
    let damaged = bucket.db_path();
    let stamp = crate::run::now_ms();
    let fresh = bucket.data_dir().join(format!("maand.db.salvage-{stamp}"));
    let report = match integrity::salvage(&damaged, &fresh) {
        Ok(report) => report,
        Err(error) => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", fresh.display()));
            }
            println!("journal rebuild: nothing was changed: {error}");
            return Ok(1);
        }
    };
    if !report.lost_events.is_empty() {
        let ranges: Vec<String> = report
            .lost_events
            .iter()
            .map(|r| {
                if r.start() == r.end() {
                    r.start().to_string()
                } else {
                    format!("{}-{}", r.start(), r.end())
                }
            })
            .collect();
        println!(
            "journal rebuild: the journal itself is damaged: event(s) {} cannot be read; {} readable event(s) and {} blob(s) were copied to {}",
            ranges.join(", "),
            report.events,
            report.blobs,
            fresh.display()
        );
        println!("data/maand.db was left as it is; restore it from a backup (history after the lost range cannot be verified without it)");
        return Ok(1);
    }
    let aside = bucket.data_dir().join(format!("maand.db.damaged-{stamp}"));
    std::fs::rename(&damaged, &aside)?;
    for suffix in ["-wal", "-shm"] {
        let side = bucket.data_dir().join(format!("maand.db{suffix}"));
        if side.exists() {
            std::fs::rename(
                &side,
                bucket
                    .data_dir()
                    .join(format!("maand.db.damaged-{stamp}{suffix}")),
            )?;
        }
    }
    std::fs::rename(&fresh, &damaged)?;
    let format = bucket.conf()?.log_format;
    let conn = bucket::open_checked(bucket)?;
    crate::logs::files::rewrite(&conn, &bucket.logs_dir(), format)?;
    println!(
        "journal rebuild: salvaged {} event(s) and {} blob(s) into a fresh data/maand.db and replayed the projections; the damaged file is kept as {}",
        report.events,
        report.blobs,
        aside.display()
    );
    if !report.lost_blobs.is_empty() {
        println!(
            "{} damaged blob(s) were dropped ({}…); run `maand build` to store the job files again from the workspace",
            report.lost_blobs.len(),
            &report.lost_blobs[0][..12.min(report.lost_blobs[0].len())]
        );
    }
    Ok(0)
}

/// `journal push URL`: upload the verified local journal to become the shared one.
fn push(bucket: &Bucket, url: &str, name: &str, argv: &[String]) -> anyhow::Result<i32> {
    use crate::shared_journal::{Holder, JournalUrl, SharedJournal};
    bucket.require_exists()?;
    let url = JournalUrl::parse(url)?;
    let conf = bucket.conf()?;
    if let Some(shared) = &conf.journal_url {
        anyhow::bail!(
            "{} already names a shared journal ({shared}); nothing was pushed",
            bucket.conf_path().display()
        );
    }
    let lock = Run::lock(bucket, name)?;
    let conn = bucket::open_checked(bucket)?;
    let Some(bucket_id) = catalog::read::bucket_id(&conn)? else {
        anyhow::bail!(
            "{} has no bucket identity yet: run `maand init` first",
            bucket.root().display()
        );
    };
    let report = journal::verify(&conn)?;
    if let Some(bad) = report.first_bad {
        anyhow::bail!(
            "the local journal is damaged at event {}: {}; nothing was pushed (run `maand journal verify`)",
            bad.seq,
            bad.reason
        );
    }
    if let Some(first) = integrity::damaged_blobs(&conn)?.first() {
        anyhow::bail!("{first}; nothing was pushed (run `maand journal verify`)");
    }
    let shared = SharedJournal::connect(&url, &bucket_id)?;
    shared.lock(&Holder {
        host: whoami::fallible::hostname().unwrap_or_else(|_| "unknown".into()),
        user: whoami::username(),
        pid: std::process::id(),
        command: format!("maand {name}"),
        started: crate::run::format_time_ms(crate::run::now_ms()),
    })?;
    let events = shared.upload(&conn)?;
    let mut text = std::fs::read_to_string(bucket.conf_path())?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&bucket::MaandConf::shared_journal_lines(&url, &bucket_id));
    bucket::write_atomically(&bucket.conf_path(), text.as_bytes(), 0o644)?;
    drop((shared, conn, lock));
    println!(
        "journal push: uploaded {events} event(s) of bucket {bucket_id} to the shared journal at {url}; maand.conf now names it, and data/maand.db is its local cache"
    );
    println!(
        "other operators join with `maand init --join {url} {bucket_id}` and copy secrets/ from this bucket (see docs/team.md)"
    );
    let run = Run::begin(bucket, name, argv)?;
    run.finish(&Ok::<(), String>(()))?;
    Ok(0)
}
