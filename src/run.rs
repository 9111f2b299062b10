//! A run: one maand invocation as recorded in the journal.
//!
//! Every command except pure reads opens a [`Run`]: it takes the bucket lock, appends
//! `RunStarted` (committed at once, so a killed command still shows up), lets the command
//! record its events, and appends `RunFinished` with the outcome.
//!
//! On a bucket with a shared journal (`journal_url` in maand.conf) the run also takes the
//! bucket's lock in PostgreSQL, pulls the events other operators appended into the local cache
//! before the command decides anything, and records every batch in PostgreSQL first, then
//! locally (see [`crate::shared_journal`]). PostgreSQL unreachable: the run does not begin.

use crate::bucket::{self, Bucket, BucketLock, LockHolder};
use crate::catalog::{self, Blob, CatalogError};
use crate::events::{Event, RunAbandoned, RunFinished, RunOutcome, RunStarted};
use crate::shared_journal::{self, SharedJournal, SharedJournalError};
use rusqlite::Connection;
use std::time::Instant;

/// Milliseconds since the Unix epoch: the only clock the recording layer reads.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Renders an epoch-milliseconds time as RFC 3339 UTC with millisecond precision.
pub fn format_time_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

/// An open run of a mutating command. Holds the bucket lock until dropped.
pub struct Run {
    id: String,
    conn: Connection,
    started: Instant,
    /// Where the log-file projection goes, and in which format.
    logs: (std::path::PathBuf, crate::bucket::LogFormat),
    /// `journal_output_limit` of maand.conf: output bytes per command and worker journaled.
    output_limit: u64,
    /// The bucket directory, for the shared journal's sync note.
    bucket: Bucket,
    /// The shared journal, holding the bucket's lock there, when the bucket has one.
    shared: Option<SharedJournal>,
    _lock: BucketLock,
}

/// Errors opening or recording a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Bucket(#[from] bucket::BucketError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    SharedJournal(#[from] SharedJournalError),
}

impl Run {
    /// Takes the lock and records `RunStarted` for a command on an initialized bucket.
    pub fn begin(bucket: &Bucket, command: &str, argv: &[String]) -> Result<Run, RunError> {
        bucket.require_exists()?;
        let lock = Run::lock(bucket, command)?;
        let conn = bucket::open_checked(bucket)?;
        Run::start(bucket, conn, lock, command, argv)
    }

    /// Takes the bucket lock on behalf of `command`.
    pub fn lock(bucket: &Bucket, command: &str) -> Result<BucketLock, bucket::BucketError> {
        let holder = LockHolder {
            command: format!("maand {command}"),
            pid: std::process::id(),
            started: format_time_ms(now_ms()),
        };
        BucketLock::acquire(&bucket.lock_path(), &holder)
    }

    /// Records `RunStarted` on an already opened, current database while holding `lock`.
    pub fn start(
        bucket: &Bucket,
        mut conn: Connection,
        lock: BucketLock,
        command: &str,
        argv: &[String],
    ) -> Result<Run, RunError> {
        let conf = conf_for_run(bucket)?;
        let id = uuid::Uuid::new_v4().to_string();
        let started = RunStarted {
            command: command.to_string(),
            argv: argv.to_vec(),
            maand_version: env!("CARGO_PKG_VERSION").to_string(),
            user: whoami::username(),
            host: whoami::fallible::hostname().unwrap_or_else(|_| "unknown".into()),
            pid: std::process::id(),
        };
        let shared = match conf.shared_journal() {
            Some((url, bucket_id)) => {
                let shared = SharedJournal::connect(&url, bucket_id)?;
                shared.lock(&shared_journal::Holder {
                    host: started.host.clone(),
                    user: started.user.clone(),
                    pid: started.pid,
                    command: format!("maand {command}"),
                    started: format_time_ms(now_ms()),
                })?;
                shared.pull(&mut conn, bucket)?;
                Some(shared)
            }
            None => None,
        };
        // Holding the lock, no other run is alive: one without an end was killed.
        let mut events = vec![Event::RunStarted(started)];
        events.extend(catalog::read::open_runs(&conn)?.into_iter().map(
            |(run_id, command, pid)| {
                Event::RunAbandoned(RunAbandoned {
                    run_id,
                    command,
                    pid,
                })
            },
        ));
        let mut run = Run {
            id,
            conn,
            started: Instant::now(),
            logs: (bucket.logs_dir(), conf.log_format),
            output_limit: conf.journal_output_limit,
            bucket: bucket.clone(),
            shared,
            _lock: lock,
        };
        run.record(&events, &[])?;
        Ok(run)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Output bytes of one command on one worker that the journal keeps.
    pub fn output_limit(&self) -> u64 {
        self.output_limit
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Appends and applies events in one transaction (on a shared bucket: appends them to the
    /// shared journal first, then the same rows locally), then appends them to the log files.
    pub fn record(&mut self, events: &[Event], blobs: &[Blob]) -> Result<Vec<u64>, CatalogError> {
        let seqs = match &self.shared {
            None => catalog::commit(&mut self.conn, &self.id, now_ms(), events, blobs)?,
            Some(shared) => shared.record(
                &mut self.conn,
                &self.bucket,
                &self.id,
                now_ms(),
                events,
                blobs,
            )?,
        };
        self.export_logs();
        Ok(seqs)
    }

    /// Appends what the journal holds beyond the log files' cursor to `logs/`. The log files
    /// are a projection: failing to write them loses nothing (the journal has it all, and
    /// `maand journal rebuild` rewrites them), so it never fails the command.
    fn export_logs(&self) {
        if let Err(error) = crate::logs::files::export(&self.conn, &self.logs.0, self.logs.1) {
            tracing::warn!("could not update {}: {error}", self.logs.0.display());
        }
    }

    /// Records `RunFinished` with the outcome of `result` (`interrupted` when a stop signal
    /// arrived, see [`crate::interrupt`]) and releases the lock.
    pub fn finish<T, E: std::fmt::Display>(
        mut self,
        result: &Result<T, E>,
    ) -> Result<(), CatalogError> {
        let interrupted = crate::interrupt::requested();
        let finished = RunFinished {
            outcome: match result {
                _ if interrupted => RunOutcome::Interrupted,
                Ok(_) => RunOutcome::Succeeded,
                Err(_) => RunOutcome::Failed,
            },
            duration_ms: self.started.elapsed().as_millis() as u64,
            error: match result {
                Err(error) => Some(error.to_string()),
                Ok(_) if interrupted => Some("interrupted by SIGINT or SIGTERM".into()),
                Ok(_) => None,
            },
        };
        self.record(&[Event::RunFinished(finished)], &[])?;
        Ok(())
    }
}

/// maand.conf for a run. A conf that does not parse falls back to the defaults (the command
/// reports the problem where it needs a setting) — unless it names a shared journal: running
/// such a bucket as a local one would fork its history, so that is an error.
fn conf_for_run(bucket: &Bucket) -> Result<bucket::MaandConf, bucket::BucketError> {
    match bucket.conf() {
        Ok(conf) => Ok(conf),
        Err(error) => {
            let text = std::fs::read_to_string(bucket.conf_path()).unwrap_or_default();
            match text.contains("journal_url") {
                true => Err(error),
                false => Ok(bucket::MaandConf::default()),
            }
        }
    }
}
