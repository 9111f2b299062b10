//! What the operator sees while a command works on many workers, in one of four
//! [`OutputMode`]s: the shared rendering machinery ([`LiveLines`]: a live line naming what runs
//! now over the finished lines scrolling above it) and [`CommandProgress`], the reporter of the
//! fan-out commands (`run_command`, `job …`, `health_check`, `jobcommand`, `gc`,
//! `worker_facts`).
//!
//! Reporters are fed the events the journal just took (through [`crate::activity::SharedRun`]),
//! so what is shown is what was recorded; the use cases know nothing of terminals. The deploy
//! reporter (`deploy::report`) renders step events with the same [`LiveLines`].

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::events::Event;

/// How a command reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// A live line of what runs now over the finished lines (stdout is a terminal).
    Terminal,
    /// One line per finished piece of work (stdout is a file or a pipe).
    Plain,
    /// One JSON object per finished piece of work, then the recap as one object (`--json`).
    Json,
    /// Only errors and the summary line (`-q`).
    Quiet,
}

impl OutputMode {
    /// The mode the flags ask for, else the one stdout suits.
    pub fn chosen(json: bool, quiet: bool) -> OutputMode {
        if json {
            OutputMode::Json
        } else if quiet {
            OutputMode::Quiet
        } else if std::io::stdout().is_terminal() {
            OutputMode::Terminal
        } else {
            OutputMode::Plain
        }
    }

    /// Whether the human-readable text of a command (tables, notes) is printed.
    pub fn shows_text(self) -> bool {
        matches!(self, OutputMode::Terminal | OutputMode::Plain)
    }
}

/// Prints a line to stdout; a closed stdout (`| head`) is not the command's problem.
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints `value` as one JSON line with `"type": kind` added.
pub fn print_json(kind: &str, value: impl Serialize) {
    let mut value = serde_json::to_value(value).unwrap_or_default();
    value["type"] = kind.into();
    print_line(&value.to_string());
}

/// `job@worker`, `job` or `worker`: who a piece of work concerns.
pub fn subject(job: Option<&str>, worker: Option<&str>) -> String {
    match (job, worker) {
        (Some(job), Some(worker)) => format!("{job}@{worker}"),
        (Some(job), None) => job.to_string(),
        (None, Some(worker)) => worker.to_string(),
        (None, None) => "-".to_string(),
    }
}

/// The line a finished piece of work prints: `web@127.0.0.1  start  ok  0.41s[: detail]`,
/// escaped for the terminal.
pub fn finished_line(
    job: Option<&str>,
    worker: Option<&str>,
    action: &str,
    status: &str,
    seconds: f64,
    detail: Option<&str>,
) -> String {
    let mut line = format!(
        "{}  {action}  {status}  {seconds:.2}s",
        subject(job, worker)
    );
    if let Some(detail) = detail {
        line.push_str(": ");
        line.push_str(detail);
    }
    crate::terminal::visible(&line).into_owned()
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The work running now, by key: a label (`web@127.0.0.1 start`) and since when.
type Running<K> = BTreeMap<K, (String, Instant)>;

/// The live part of a report: on a terminal, a spinner line naming what runs now and for how
/// long (refreshed on a timer, so a slow step shows time passing rather than a hang), with
/// finished lines printed above it; in the other modes, only the bookkeeping of what runs.
pub struct LiveLines<K: Ord + Send + 'static> {
    mode: OutputMode,
    running: Arc<Mutex<Running<K>>>,
    bar: Option<indicatif::ProgressBar>,
}

impl<K: Ord + Send + 'static> LiveLines<K> {
    pub fn new(mode: OutputMode) -> LiveLines<K> {
        LiveLines {
            mode,
            running: Arc::new(Mutex::new(BTreeMap::new())),
            bar: None,
        }
    }

    /// Starts the live line on a terminal; `total` pieces of work are expected when known.
    pub fn begin(&mut self, total: Option<u64>) {
        if self.mode != OutputMode::Terminal || self.bar.is_some() {
            return;
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            total,
            indicatif::ProgressDrawTarget::stdout(),
        );
        let template = if total.is_some() {
            "{spinner} {pos}/{len} steps {elapsed} {wide_msg}"
        } else {
            "{spinner} {pos} done {elapsed} {wide_msg}"
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(template).expect("a valid progress template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let (running, ticker) = (self.running.clone(), bar.clone());
        std::thread::spawn(move || {
            while !ticker.is_finished() {
                ticker.set_message(running_message(&locked(&running)));
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        self.bar = Some(bar);
    }

    /// `key` started: the live line names it as `label`.
    pub fn started(&self, key: K, label: String) {
        locked(&self.running).insert(key, (label, Instant::now()));
    }

    /// `key` finished: it leaves the live line; returns how long it ran (0 when its start was
    /// not seen).
    pub fn finished(&self, key: &K) -> f64 {
        locked(&self.running)
            .remove(key)
            .map(|(_, since)| since.elapsed().as_secs_f64())
            .unwrap_or(0.0)
    }

    /// Counts one finished piece of work without a line of its own.
    pub fn tick(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Shows one finished piece of work: `line` in the terminal and plain modes, `json` (as
    /// a `kind` object) in the JSON mode, nothing when quiet.
    pub fn show(&self, line: &str, kind: &str, json: impl Serialize) {
        match self.mode {
            OutputMode::Json => print_json(kind, json),
            OutputMode::Quiet => {}
            OutputMode::Terminal | OutputMode::Plain => {
                self.tick();
                self.note(line);
            }
        }
    }

    /// Prints a note of the command's own in the text modes, above the live line.
    pub fn note(&self, line: &str) {
        match (self.mode, &self.bar) {
            (OutputMode::Terminal, Some(bar)) => bar.println(line),
            (OutputMode::Terminal | OutputMode::Plain, _) => print_line(line),
            (OutputMode::Json | OutputMode::Quiet, _) => {}
        }
    }

    /// Prints `line` on stderr without tearing the live line.
    pub fn echo(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the live line (before the recap is printed).
    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl<K: Ord + Send + 'static> Drop for LiveLines<K> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// `running: web@127.0.0.1 start 3.2s, …` for the live line.
fn running_message<K>(running: &Running<K>) -> String {
    if running.is_empty() {
        return String::new();
    }
    let work: Vec<String> = running
        .values()
        .map(|(label, since)| format!("{label} {:.1}s", since.elapsed().as_secs_f64()))
        .collect();
    crate::terminal::visible(&format!("running: {}", work.join(", "))).into_owned()
}

/// How a piece of fan-out work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkStatus {
    Ok,
    Failed,
}

/// One finished command (or health check) of a fan-out command, as its recap lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkRow {
    pub job: Option<String>,
    /// `None` for work on the operator host.
    pub worker: Option<String>,
    /// What it is part of (`run_command`, `job_control`, `health_check`, `job_command`, `gc`, …).
    pub phase: String,
    /// What it did (`exec`, `start`, `probe`, the command's name, `health`, …).
    pub action: String,
    pub status: WorkStatus,
    pub exit_code: Option<i32>,
    pub seconds: f64,
    /// Why it failed, or what a health check found.
    pub detail: Option<String>,
}

impl WorkRow {
    /// The line a finished piece of work prints: `web@127.0.0.1  start  ok  0.41s`.
    pub fn line(&self) -> String {
        let status = match (self.status, self.exit_code) {
            (WorkStatus::Ok, _) => "ok".to_string(),
            (WorkStatus::Failed, Some(code)) => format!("exit {code}"),
            (WorkStatus::Failed, None) => "failed".to_string(),
        };
        finished_line(
            self.job.as_deref(),
            self.worker.as_deref(),
            &self.action,
            &status,
            self.seconds,
            self.detail.as_deref(),
        )
    }
}

/// Phase of the health checks' rows (and of the commands that probe for them).
const HEALTH_PHASE: &str = "health_check";

/// Commands counted but not listed: the probes of a health check (its verdict is listed as the
/// check's own row), and the checks before the real work unless they fail.
fn counted_only(phase: &str, action: &str, ok: bool) -> bool {
    phase == HEALTH_PHASE || (ok && matches!(action, "sync_check" | "prerequisites"))
}

/// Who and what a running command is: worker, job, phase, action.
type CommandKey = (String, Option<String>, String, String);

fn command_key(worker: &str, job: &Option<String>, phase: &str, action: &str) -> CommandKey {
    (
        worker.to_string(),
        job.clone(),
        phase.to_string(),
        action.to_string(),
    )
}

/// Everything a fan-out command did, for its recap.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkRecap {
    pub rows: Vec<WorkRow>,
    pub seconds: f64,
}

impl WorkRecap {
    /// `8 ok, 1 failed in 0.83 s`.
    pub fn summary(&self) -> String {
        let failed = self
            .rows
            .iter()
            .filter(|row| row.status == WorkStatus::Failed)
            .count();
        format!(
            "{} ok, {failed} failed in {:.2} s",
            self.rows.len() - failed,
            self.seconds
        )
    }
}

/// The reporter of a fan-out command: turns the command and health events the journal just
/// took into live lines, one line per finished piece of work and a recap.
pub struct CommandProgress {
    started: Instant,
    live: LiveLines<CommandKey>,
    rows: Mutex<Vec<WorkRow>>,
}

impl CommandProgress {
    /// A reporter in `mode`; on a terminal its live line starts at once.
    pub fn new(mode: OutputMode) -> CommandProgress {
        let mut live = LiveLines::new(mode);
        live.begin(None);
        CommandProgress {
            started: Instant::now(),
            live,
            rows: Mutex::new(Vec::new()),
        }
    }

    /// Takes events the journal just recorded.
    pub fn observe(&self, events: &[Event]) {
        for event in events {
            let row = match event {
                Event::CommandStarted(started) => {
                    let label = format!(
                        "{} {}",
                        subject(started.job.as_deref(), worker_of(&started.worker)),
                        started.action
                    );
                    let key = command_key(
                        &started.worker,
                        &started.job,
                        &started.phase,
                        &started.action,
                    );
                    self.live.started(key, label);
                    continue;
                }
                Event::CommandFinished(finished) => {
                    self.live.finished(&command_key(
                        &finished.worker,
                        &finished.job,
                        &finished.phase,
                        &finished.action,
                    ));
                    let ok = finished.error.is_none() && finished.exit_code == Some(0);
                    if counted_only(&finished.phase, &finished.action, ok) {
                        self.live.tick();
                        continue;
                    }
                    WorkRow {
                        job: finished.job.clone(),
                        worker: worker_of(&finished.worker).map(str::to_string),
                        phase: finished.phase.clone(),
                        action: finished.action.clone(),
                        status: if ok {
                            WorkStatus::Ok
                        } else {
                            WorkStatus::Failed
                        },
                        exit_code: finished.exit_code,
                        seconds: finished.duration_ms as f64 / 1000.0,
                        detail: finished.error.clone(),
                    }
                }
                Event::HealthChecked(checked) => WorkRow {
                    job: Some(checked.job.clone()),
                    worker: Some(checked.worker_ip.clone()),
                    phase: HEALTH_PHASE.into(),
                    action: "health".into(),
                    status: if checked.healthy {
                        WorkStatus::Ok
                    } else {
                        WorkStatus::Failed
                    },
                    exit_code: None,
                    // How long the command had run when the verdict came: with --wait, how
                    // long the allocation took to become healthy.
                    seconds: self.started.elapsed().as_secs_f64(),
                    detail: Some(if checked.healthy {
                        format!("attempt {}", checked.attempt)
                    } else {
                        format!("{} (attempt {})", checked.detail, checked.attempt)
                    }),
                },
                _ => continue,
            };
            self.live.show(&row.line(), "work", &row);
            locked(&self.rows).push(row);
        }
    }

    /// Prints a worker's output line (already escaped) without tearing the live line.
    pub fn echo(&self, line: &str) {
        self.live.echo(line);
    }

    /// Prints a note of the command's own (text modes only) without tearing the live line.
    pub fn note(&self, line: &str) {
        self.live.note(line);
    }

    /// Ends the live line and returns the recap. A health check waited on shows only its
    /// last attempt per allocation.
    pub fn finish(&self) -> WorkRecap {
        self.live.clear();
        let rows = locked(&self.rows).clone();
        WorkRecap {
            rows: last_health_attempts(rows),
            seconds: self.started.elapsed().as_secs_f64(),
        }
    }

    /// Prints the recap's summary line (the JSON recap object in JSON mode); the command
    /// prints its own tables before it in the text modes.
    pub fn print_summary(&self, recap: &WorkRecap) {
        match self.live.mode {
            OutputMode::Json => print_json(
                "recap",
                serde_json::json!({
                    "rows": recap.rows,
                    "seconds": recap.seconds,
                    "summary": recap.summary(),
                }),
            ),
            OutputMode::Terminal | OutputMode::Plain | OutputMode::Quiet => {
                print_line(&recap.summary())
            }
        }
    }

    pub fn mode(&self) -> OutputMode {
        self.live.mode
    }
}

/// `-` is how the journal names the operator host.
fn worker_of(worker: &str) -> Option<&str> {
    (worker != "-").then_some(worker)
}

/// Keeps, of the health rows, only the last attempt of each job on each worker (in the place of
/// its first attempt); other rows stay as they are.
fn last_health_attempts(rows: Vec<WorkRow>) -> Vec<WorkRow> {
    let mut placed: BTreeMap<(Option<String>, Option<String>), usize> = BTreeMap::new();
    let mut kept: Vec<WorkRow> = Vec::with_capacity(rows.len());
    for row in rows {
        if row.phase == HEALTH_PHASE {
            let key = (row.job.clone(), row.worker.clone());
            if let Some(&at) = placed.get(&key) {
                kept[at] = row;
                continue;
            }
            placed.insert(key, kept.len());
        }
        kept.push(row);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{CommandFinished, CommandStarted, HealthChecked};

    fn started(worker: &str, action: &str) -> Event {
        Event::CommandStarted(CommandStarted {
            worker: worker.into(),
            job: None,
            phase: "run_command".into(),
            action: action.into(),
            command: "true".into(),
        })
    }

    fn finished(worker: &str, action: &str, exit_code: Option<i32>, error: Option<&str>) -> Event {
        Event::CommandFinished(CommandFinished {
            worker: worker.into(),
            job: None,
            phase: "run_command".into(),
            action: action.into(),
            exit_code,
            duration_ms: 410,
            error: error.map(str::to_string),
        })
    }

    fn health(worker: &str, healthy: bool, attempt: u32) -> Event {
        // `detail` says what passed or failed; a healthy row shows only the attempt.
        Event::HealthChecked(HealthChecked {
            alloc_id: "a".into(),
            job: "web".into(),
            worker_ip: worker.into(),
            healthy,
            detail: if healthy {
                "tcp 8080 open"
            } else {
                "connection refused"
            }
            .into(),
            attempt,
        })
    }

    #[test]
    fn finished_commands_become_lines_with_their_exit_and_time() {
        let progress = CommandProgress::new(OutputMode::Quiet);
        progress.observe(&[started("127.0.0.1", "exec"), started("127.0.0.2", "exec")]);
        progress.observe(&[
            finished("127.0.0.1", "exec", Some(0), None),
            finished("127.0.0.2", "exec", Some(3), None),
            finished("127.0.0.3", "exec", None, Some("connection refused")),
        ]);
        let recap = progress.finish();
        let lines: Vec<String> = recap.rows.iter().map(WorkRow::line).collect();
        assert_eq!(
            lines,
            [
                "127.0.0.1  exec  ok  0.41s",
                "127.0.0.2  exec  exit 3  0.41s",
                "127.0.0.3  exec  failed  0.41s: connection refused",
            ]
        );
        assert!(recap.summary().starts_with("1 ok, 2 failed in "));
    }

    #[test]
    fn a_passed_preflight_check_is_counted_but_not_listed() {
        let progress = CommandProgress::new(OutputMode::Quiet);
        progress.observe(&[
            finished("127.0.0.1", "sync_check", Some(0), None),
            finished("127.0.0.2", "sync_check", Some(1), None),
        ]);
        let recap = progress.finish();
        assert_eq!(recap.rows.len(), 1);
        assert_eq!(recap.rows[0].worker.as_deref(), Some("127.0.0.2"));
    }

    #[test]
    fn waiting_for_health_keeps_the_last_attempt_of_each_allocation() {
        let progress = CommandProgress::new(OutputMode::Quiet);
        progress.observe(&[
            health("127.0.0.1", false, 1),
            health("127.0.0.2", true, 1),
            health("127.0.0.1", true, 2),
        ]);
        let recap = progress.finish();
        let verdicts: Vec<(&str, &str)> = recap
            .rows
            .iter()
            .map(|row| {
                (
                    row.worker.as_deref().unwrap(),
                    row.detail.as_deref().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            verdicts,
            [("127.0.0.1", "attempt 2"), ("127.0.0.2", "attempt 1")]
        );
    }

    #[test]
    fn an_unhealthy_verdict_says_what_failed() {
        let progress = CommandProgress::new(OutputMode::Quiet);
        progress.observe(&[health("127.0.0.1", false, 3)]);
        let recap = progress.finish();
        assert_eq!(recap.rows[0].status, WorkStatus::Failed);
        assert_eq!(
            recap.rows[0].detail.as_deref(),
            Some("connection refused (attempt 3)")
        );
    }

    #[test]
    fn work_on_the_operator_host_names_only_the_job() {
        let row = WorkRow {
            job: Some("api".into()),
            worker: worker_of("-").map(str::to_string),
            phase: "job_command".into(),
            action: "command_migrate".into(),
            status: WorkStatus::Ok,
            exit_code: Some(0),
            seconds: 1.0,
            detail: None,
        };
        assert_eq!(row.line(), "api  command_migrate  ok  1.00s");
    }

    #[test]
    fn control_characters_from_workers_are_shown_escaped() {
        let progress = CommandProgress::new(OutputMode::Quiet);
        progress.observe(&[finished(
            "127.0.0.1",
            "exec",
            None,
            Some("\x1b]0;pwned\x07"),
        )]);
        assert!(!progress.finish().rows[0].line().contains('\x1b'));
    }

    #[test]
    fn the_live_line_names_running_work_and_its_time() {
        let live: LiveLines<u32> = LiveLines::new(OutputMode::Quiet);
        live.started(1, "web@127.0.0.1 start".into());
        let message = running_message(&locked(&live.running));
        assert!(
            message.starts_with("running: web@127.0.0.1 start 0."),
            "{message}"
        );
        assert!(live.finished(&1) >= 0.0);
        assert_eq!(running_message(&locked(&live.running)), "");
    }
}
