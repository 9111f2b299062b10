//! A run: one maand invocation as recorded in the journal.
//!
//! Every command except pure reads opens a [`Run`]: it takes the bucket lock, appends
//! `RunStarted` (committed at once, so a killed command still shows up), lets the command
//! record its events, and appends `RunFinished` with the outcome.

use crate::bucket::{self, Bucket, BucketLock, LockHolder};
use crate::catalog::{self, Blob, CatalogError};
use crate::events::{Event, RunAbandoned, RunFinished, RunOutcome, RunStarted};
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
    _lock: BucketLock,
}

/// Errors opening or recording a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Bucket(#[from] bucket::BucketError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
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
        let conf = bucket.conf().unwrap_or_default();
        let id = uuid::Uuid::new_v4().to_string();
        let started = RunStarted {
            command: command.to_string(),
            argv: argv.to_vec(),
            maand_version: env!("CARGO_PKG_VERSION").to_string(),
            user: whoami::username(),
            host: whoami::fallible::hostname().unwrap_or_else(|_| "unknown".into()),
            pid: std::process::id(),
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
        catalog::commit(&mut conn, &id, now_ms(), &events, &[])?;
        let run = Run {
            id,
            conn,
            started: Instant::now(),
            logs: (bucket.logs_dir(), conf.log_format),
            output_limit: conf.journal_output_limit,
            _lock: lock,
        };
        run.export_logs();
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

    /// Appends and applies events in one transaction, then appends them to the log files.
    pub fn record(&mut self, events: &[Event], blobs: &[Blob]) -> Result<Vec<u64>, CatalogError> {
        let seqs = catalog::commit(&mut self.conn, &self.id, now_ms(), events, blobs)?;
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
