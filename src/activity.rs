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
}

impl ActivityObserver {
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
                    eprintln!("{} {marker} {line}", self.subject(&worker));
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
        if let Err(error) = self.run.record(&[event]) {
            if let Ok(mut errors) = self.errors.lock() {
                errors.push(error.to_string());
            }
        }
    }
}
