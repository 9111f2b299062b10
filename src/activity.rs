//! Command activity: turns what the remote layer reports (commands started, output lines,
//! exits) into journal events, and echoes output lines to the terminal as `job@worker | line`
//! (`!` for stderr).
//!
//! Shared by every command that touches workers. The run it records into sits behind a mutex
//! because records arrive from many workers at once; each record is one short transaction.
//! The journal keeps at most `journal_output_limit` bytes of one command's output per worker
//! (the first and the last half, with a line saying how much was dropped between); the
//! terminal still sees every line.

use crate::catalog::CatalogError;
use crate::events::{CommandFinished, CommandOutput, CommandStarted, Event, Stream};
use crate::progress::CommandProgress;
use crate::remote::{Observer, RemoteRecord};
use crate::run::Run;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The runtime that remote work of a synchronous command runs on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The journal of the current run, shared by concurrent work, and the reporter (if any) that
/// shows the operator what it records.
#[derive(Clone)]
pub struct SharedRun {
    run: Arc<Mutex<Run>>,
    progress: Option<Arc<CommandProgress>>,
}

impl SharedRun {
    pub fn new(run: Run) -> SharedRun {
        SharedRun {
            run: Arc::new(Mutex::new(run)),
            progress: None,
        }
    }

    /// A shared run whose recorded events are also shown by `progress`.
    pub fn reported(run: Run, progress: Arc<CommandProgress>) -> SharedRun {
        SharedRun {
            run: Arc::new(Mutex::new(run)),
            progress: Some(progress),
        }
    }

    /// Records events in one transaction, then shows them to the reporter.
    pub fn record(&self, events: &[Event]) -> Result<(), CatalogError> {
        self.lock().record(events, &[])?;
        if let Some(progress) = &self.progress {
            progress.observe(events);
        }
        Ok(())
    }

    /// Prints a line of worker output on stderr, around the reporter's live line if any.
    pub fn echo(&self, line: &str) {
        match &self.progress {
            Some(progress) => progress.echo(line),
            None => eprintln!("{line}"),
        }
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
        let limit = self.with(|run| run.output_limit());
        ActivityObserver {
            limit,
            budgets: Arc::new(Mutex::new(HashMap::new())),
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
    /// Output bytes per command and worker the journal keeps.
    limit: u64,
    /// Per worker: how much of the running command's output the journal still takes.
    budgets: Arc<Mutex<HashMap<String, OutputBudget>>>,
}

/// What is left of one command's journal budget on one worker: the head is committed as it
/// comes; once it is spent, lines wait in a tail window that keeps only the newest.
#[derive(Default)]
struct OutputBudget {
    head_used: u64,
    tail: VecDeque<(u64, Event)>,
    tail_bytes: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl OutputBudget {
    /// Takes a line of `size` bytes: returns it when it belongs to the head, otherwise keeps it
    /// in the tail window (dropping the oldest tail lines beyond `limit / 2`).
    fn take(&mut self, limit: u64, size: u64, event: Event) -> Option<Event> {
        let half = limit / 2;
        if self.tail.is_empty() && self.dropped_lines == 0 && self.head_used + size <= half {
            self.head_used += size;
            return Some(event);
        }
        self.tail.push_back((size, event));
        self.tail_bytes += size;
        while self.tail_bytes > half {
            let Some((old, _)) = self.tail.pop_front() else {
                break;
            };
            self.tail_bytes -= old;
            self.dropped_lines += 1;
            self.dropped_bytes += old;
        }
        None
    }

    /// The held tail, preceded by a line recording what was dropped (if anything was).
    fn finish(self, limit: u64, marker: impl FnOnce(String) -> Event) -> Vec<Event> {
        let mut events = Vec::with_capacity(self.tail.len() + 1);
        if self.dropped_lines > 0 {
            events.push(marker(format!(
                "[maand] {} line(s), {} byte(s) of output not journaled here: the journal keeps the first and last {} bytes of a command's output (journal_output_limit in maand.conf)",
                self.dropped_lines,
                self.dropped_bytes,
                limit / 2
            )));
        }
        events.extend(self.tail.into_iter().map(|(_, event)| event));
        events
    }
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

    /// Moves `worker`'s held output tail (and the line saying what was dropped) to the lines
    /// waiting for commit, and starts a fresh budget for its next command.
    fn hold_tail(&self, worker: &str) {
        let budget = self
            .budgets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(worker);
        let Some(budget) = budget else {
            return;
        };
        let marker = |line| {
            Event::CommandOutput(CommandOutput {
                worker: worker.to_string(),
                job: self.job.clone(),
                phase: self.phase.clone(),
                stream: Stream::Stderr,
                line,
            })
        };
        let tail = budget.finish(self.limit, marker);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tail);
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
                    self.run.echo(&format!(
                        "{} {marker} {}",
                        self.subject(&worker),
                        crate::terminal::visible(&line)
                    ));
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
            Event::CommandOutput(ref output) => {
                let size = output.line.len() as u64 + 1;
                let worker = output.worker.clone();
                let kept = self
                    .budgets
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(worker)
                    .or_default()
                    .take(self.limit, size, event);
                let Some(event) = kept else {
                    return;
                };
                let full = {
                    let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                    pending.push(event);
                    pending.len() >= OUTPUT_BATCH
                };
                if full {
                    self.flush(None);
                }
            }
            Event::CommandFinished(ref finished) => {
                self.hold_tail(&finished.worker);
                self.flush(Some(event))
            }
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
        let workers: Vec<String> = self
            .budgets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for worker in workers {
            self.hold_tail(&worker);
        }
        self.flush(None);
    }
}
