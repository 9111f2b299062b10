//! Command activity: turns what the remote layer reports (commands started, output lines,
//! exits) into journal events, and echoes output lines to the terminal as `job@worker | line`
//! (`!` for stderr).
//!
//! Shared by every command that touches workers. The run it records into sits behind a mutex
//! because records arrive from many workers at once; each record is one short transaction.

use crate::catalog::CatalogError;
use crate::events::{CommandFinished, CommandOutput, CommandStarted, Event, Stream};
use crate::remote::{Observer, RemoteRecord};
use crate::run::Run;
use std::sync::{Arc, Mutex};

/// The journal of the current run, shared by concurrent work.
#[derive(Clone)]
pub struct SharedRun {
    run: Arc<Mutex<Run>>,
}

impl SharedRun {
    pub fn new(run: Run) -> SharedRun {
        SharedRun {
            run: Arc::new(Mutex::new(run)),
        }
    }

    /// Records events in one transaction.
    pub fn record(&self, events: &[Event]) -> Result<(), CatalogError> {
        self.lock().record(events, &[]).map(drop)
    }

    /// Runs `f` with exclusive access to the run (for reads of the catalog).
    pub fn with<T>(&self, f: impl FnOnce(&mut Run) -> T) -> T {
        f(&mut self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Run> {
        // A panic while holding the lock cannot leave a half-written transaction (SQLite rolls
        // it back), so a poisoned lock is still safe to use.
        self.run
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the run back once every clone is gone.
    pub fn into_run(self) -> Option<Run> {
        Arc::try_unwrap(self.run)
            .ok()
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
    }

    /// An observer that records the remote activity of one action.
    pub fn observer(
        &self,
        job: Option<&str>,
        phase: &str,
        action: &str,
        echo: bool,
    ) -> ActivityObserver {
        ActivityObserver {
            run: self.clone(),
            job: job.map(str::to_string),
            phase: phase.to_string(),
            action: action.to_string(),
            echo,
            errors: Arc::new(Mutex::new(Vec::new())),
            pending: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

/// Records one action's remote activity; remembers journal failures so the caller can fail
/// the action instead of losing history silently.
pub struct ActivityObserver {
    run: SharedRun,
    job: Option<String>,
    phase: String,
    action: String,
    echo: bool,
    errors: Arc<Mutex<Vec<String>>>,
    /// Output lines not yet committed: they are written in batches (at a command's end, or
    /// every [`OUTPUT_BATCH`] lines) so a chatty command costs a few transactions, not one
    /// per line. A command's start and end are committed as they happen.
    pending: Arc<Mutex<Vec<Event>>>,
}

/// Most output lines held before they are committed.
const OUTPUT_BATCH: usize = 256;

impl ActivityObserver {
    fn commit(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        if let Err(error) = self.run.record(events) {
            if let Ok(mut errors) = self.errors.lock() {
                errors.push(error.to_string());
            }
        }
    }

    /// Commits the held output lines (and `then`, after them).
    fn flush(&self, then: Option<Event>) {
        let mut events =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        events.extend(then);
        self.commit(&events);
    }

    /// The first journal failure seen, if any.
    pub fn journal_error(&self) -> Option<String> {
        self.errors.lock().ok().and_then(|e| e.first().cloned())
    }

    fn subject(&self, worker: &str) -> String {
        match &self.job {
            Some(job) => format!("{job}@{worker}"),
            None => worker.to_string(),
        }
    }
}

impl Observer for ActivityObserver {
    fn record(&self, record: RemoteRecord) {
        let event = match record {
            RemoteRecord::CommandStarted { worker, command } => {
                Event::CommandStarted(CommandStarted {
                    worker,
                    job: self.job.clone(),
                    phase: self.phase.clone(),
                    action: self.action.clone(),
                    command,
                })
            }
            RemoteRecord::OutputLine {
                worker,
                stream,
                line,
            } => {
                let stream = match stream {
                    crate::remote::Stream::Stdout => Stream::Stdout,
                    crate::remote::Stream::Stderr => Stream::Stderr,
                };
                if self.echo {
                    let marker = if stream == Stream::Stderr { '!' } else { '|' };
                    eprintln!(
                        "{} {marker} {}",
                        self.subject(&worker),
                        crate::terminal::visible(&line)
                    );
                }
                Event::CommandOutput(CommandOutput {
                    worker,
                    job: self.job.clone(),
                    phase: self.phase.clone(),
                    stream,
                    line,
                })
            }
            RemoteRecord::CommandFinished {
                worker,
                exit_code,
                duration,
            } => Event::CommandFinished(CommandFinished {
                worker,
                job: self.job.clone(),
                phase: self.phase.clone(),
                action: self.action.clone(),
                exit_code: Some(exit_code),
                duration_ms: duration.as_millis() as u64,
                error: None,
            }),
            RemoteRecord::CommandFailed {
                worker,
                error,
                duration,
            } => Event::CommandFinished(CommandFinished {
                worker,
                job: self.job.clone(),
                phase: self.phase.clone(),
                action: self.action.clone(),
                exit_code: None,
                duration_ms: duration.as_millis() as u64,
                error: Some(error),
            }),
        };
        match event {
            Event::CommandOutput(_) => {
                let full = {
                    let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                    pending.push(event);
                    pending.len() >= OUTPUT_BATCH
                };
                if full {
                    self.flush(None);
                }
            }
            Event::CommandFinished(_) => self.flush(Some(event)),
            other => {
                self.flush(None);
                self.commit(&[other]);
            }
        }
    }
}

impl Drop for ActivityObserver {
    /// Lines of a command that never reported its end (a dropped connection) are kept too.
    fn drop(&mut self) {
        self.flush(None);
    }
}
