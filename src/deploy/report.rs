//! What the operator sees of a deploy: the executor's step events (the same ones it journals)
//! rendered live, and a recap at the end.
//!
//! The executor knows nothing of terminals. Everything it commits passes through
//! [`Reported`], which hands the step events to a [`DeployProgress`] after the journal took
//! them; the progress renders them in one of four [`OutputMode`]s and keeps one
//! [`RecapRow`] per finished step for the recap. Formatting is pure (`step_line`,
//! [`Recap::summary`], [`Recap::table`]) so it is tested without a deploy.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::execute::StepJournal;
use crate::activity::SharedRun;
use crate::events::Event;
pub use crate::progress::OutputMode;
use crate::progress::{finished_line, print_json, print_line, subject, LiveLines};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    Failed,
    Skipped,
}

/// One finished step, as the recap lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecapRow {
    /// The step's place in the deploy's plan.
    pub step: u32,
    pub job: Option<String>,
    pub worker: Option<String>,
    /// The step's action (`start`, `sync`, `health_gate`, `post_deploy`, …).
    pub action: String,
    pub status: StepStatus,
    /// What the recap calls the outcome: `started`, `restarted`, `synced`, `failed`, …
    pub outcome: String,
    pub seconds: f64,
    /// Why it failed or was skipped.
    pub detail: Option<String>,
}

/// What the recap calls a step that ended with `status`.
fn outcome_of(action: &str, status: StepStatus) -> String {
    match (status, action) {
        (StepStatus::Skipped, _) => "skipped",
        (StepStatus::Failed, "health_gate") => "health_failed",
        (StepStatus::Failed, _) => "failed",
        (StepStatus::Ok, "start") => "started",
        (StepStatus::Ok, "restart") => "restarted",
        (StepStatus::Ok, "reload") => "reloaded",
        (StepStatus::Ok, "sync") => "synced",
        (StepStatus::Ok, "stop") => "stopped",
        (StepStatus::Ok, "remove_files" | "remove_worker") => "removed",
        (StepStatus::Ok, "health_gate") => "healthy",
        (StepStatus::Ok, _) => "done",
    }
    .to_string()
}

/// Bookkeeping steps (promotion, the final jobs.json, restaging) appear in the recap only when
/// they fail; the operator asked for starts and copies, not for them.
fn is_bookkeeping(action: &str) -> bool {
    matches!(action, "promote" | "finalize" | "restage")
}

/// The line a finished step prints: `web@127.0.0.1  start  ok  0.41s`.
pub fn step_line(row: &RecapRow) -> String {
    let status = match row.status {
        StepStatus::Ok => "ok",
        StepStatus::Failed => "failed",
        StepStatus::Skipped => "skipped",
    };
    finished_line(
        row.job.as_deref(),
        row.worker.as_deref(),
        &row.action,
        status,
        row.seconds,
        row.detail.as_deref(),
    )
}

/// How many of a failed step's last output lines the recap shows.
pub const FAILED_OUTPUT_LINES: usize = 5;

/// The last `n` output lines `worker` printed for `job`'s step `action` among `events` (a run's
/// journal), for the recap of a failed step.
pub fn last_output_lines<'e>(
    events: impl IntoIterator<Item = &'e Event>,
    worker: &str,
    job: Option<&str>,
    action: &str,
    n: usize,
) -> Vec<String> {
    let phase = super::ops::step_phase(action);
    let lines: Vec<&str> = events
        .into_iter()
        .filter_map(|event| match event {
            Event::CommandOutput(output)
                if output.worker == worker
                    && output.job.as_deref() == job
                    && output.phase == phase =>
            {
                Some(output.line.as_str())
            }
            _ => None,
        })
        .collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|line| crate::terminal::visible(line).into_owned())
        .collect()
}

/// The events `run` has recorded so far (where a failed step's output lines are).
pub fn events_of_run(run: &SharedRun) -> Vec<Event> {
    run.with(|run| {
        journal::events_of_run(run.conn(), run.id())
            .filter_map(|stored| stored.ok())
            .filter_map(|stored| crate::catalog::decode_stored(&stored).ok())
            .map(|(_, event)| event)
            .collect()
    })
}

/// Everything a deploy did, for the recap.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recap {
    pub rows: Vec<RecapRow>,
    /// Jobs left alone because every allocation already runs their version.
    pub unchanged_jobs: Vec<String>,
    /// Steps finished by an earlier run of this deploy (a resume does not redo them).
    pub done_before: usize,
    /// The last output lines of each failed step with a worker, by plan index.
    pub failed_output: BTreeMap<u32, Vec<String>>,
    pub seconds: f64,
}

impl Recap {
    /// How many rows have each outcome.
    fn counts(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for row in &self.rows {
            *counts.entry(row.outcome.as_str()).or_default() += 1;
        }
        counts
    }

    /// `8 started, 0 restarted, 2 skipped, 0 failed in 0.83 s`, plus any other outcome seen.
    pub fn summary(&self) -> String {
        let counts = self.counts();
        let count = |name: &str| counts.get(name).copied().unwrap_or(0);
        let mut parts = vec![
            format!("{} started", count("started")),
            format!("{} restarted", count("restarted")),
            format!("{} skipped", count("skipped") + self.unchanged_jobs.len()),
            format!("{} failed", count("failed") + count("health_failed")),
        ];
        for (outcome, n) in &counts {
            if !matches!(
                *outcome,
                "started" | "restarted" | "skipped" | "failed" | "health_failed" | "done"
            ) {
                parts.push(format!("{n} {outcome}"));
            }
        }
        let mut line = format!("{} in {:.2} s", parts.join(", "), self.seconds);
        if self.done_before > 0 {
            line.push_str(&format!(
                " ({} step(s) were done by the run this one resumed)",
                self.done_before
            ));
        }
        line
    }

    /// The table job × worker × outcome × duration, one row per reported step in plan order,
    /// unchanged jobs last.
    pub fn table(&self) -> String {
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::NOTHING);
        table.set_header(["JOB", "WORKER", "ACTION", "OUTCOME", "TIME"]);
        for row in &self.rows {
            table.add_row([
                row.job.clone().unwrap_or_else(|| "-".into()),
                row.worker.clone().unwrap_or_else(|| "-".into()),
                row.action.clone(),
                row.outcome.clone(),
                format!("{:.2}s", row.seconds),
            ]);
        }
        for job in &self.unchanged_jobs {
            table.add_row([job.as_str(), "-", "-", "skipped (unchanged)", "-"]);
        }
        let text: Vec<String> = table
            .to_string()
            .lines()
            .map(|line| crate::terminal::visible(line.trim_end()).into_owned())
            .collect();
        text.join("\n")
    }
}

/// Renders a deploy's step events as they are committed and keeps the recap.
pub struct DeployProgress {
    mode: OutputMode,
    started: Instant,
    /// Steps running now, by plan index.
    live: LiveLines<u32>,
    rows: Mutex<Vec<RecapRow>>,
}

impl DeployProgress {
    pub fn new(mode: OutputMode) -> DeployProgress {
        DeployProgress {
            mode,
            started: Instant::now(),
            live: LiveLines::new(mode),
            rows: Mutex::new(Vec::new()),
        }
    }

    pub fn mode(&self) -> OutputMode {
        self.mode
    }

    /// The deploy is about to run `pending` steps: on a terminal, the live lines start.
    pub fn begin(&mut self, pending: usize) {
        self.live.begin(Some(pending as u64));
    }

    /// Takes the events the executor just committed.
    pub fn observe(&self, events: &[Event]) {
        for event in events {
            let (index, label, status, detail) = match event {
                Event::StepStarted(started) => {
                    let step = &started.step;
                    let label = format!(
                        "{} {}",
                        subject(step.job.as_deref(), step.worker.as_deref()),
                        step.action
                    );
                    self.live.started(started.index, label);
                    continue;
                }
                Event::StepSucceeded(done) => {
                    (done.index, &done.step, StepStatus::Ok, done.note.clone())
                }
                Event::StepFailed(failed) => (
                    failed.index,
                    &failed.step,
                    StepStatus::Failed,
                    Some(failed.error.clone()),
                ),
                Event::StepSkipped(skipped) => (
                    skipped.index,
                    &skipped.step,
                    StepStatus::Skipped,
                    Some(skipped.reason.clone()),
                ),
                _ => continue,
            };
            let seconds = self.live.finished(&index);
            if status == StepStatus::Ok && is_bookkeeping(&label.action) {
                self.live.tick();
                continue;
            }
            let row = RecapRow {
                step: index,
                job: label.job.clone(),
                worker: label.worker.clone(),
                action: label.action.clone(),
                status,
                outcome: outcome_of(&label.action, status),
                seconds,
                detail,
            };
            self.live.show(&step_line(&row), "step", &row);
            self.rows
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(row);
        }
    }

    /// Ends the live lines and returns the recap; `run_events` (the run's journal) give the
    /// last output lines of failed steps.
    pub fn finish(
        &self,
        unchanged_jobs: Vec<String>,
        done_before: usize,
        run_events: &[Event],
    ) -> Recap {
        self.live.clear();
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner()).clone();
        rows.sort_by_key(|row| row.step);
        let failed_output = rows
            .iter()
            .filter(|row| row.status == StepStatus::Failed)
            .filter_map(|row| {
                let worker = row.worker.as_deref()?;
                let lines = last_output_lines(
                    run_events,
                    worker,
                    row.job.as_deref(),
                    &row.action,
                    FAILED_OUTPUT_LINES,
                );
                (!lines.is_empty()).then_some((row.step, lines))
            })
            .collect();
        Recap {
            rows,
            unchanged_jobs,
            done_before,
            failed_output,
            seconds: self.started.elapsed().as_secs_f64(),
        }
    }

    /// Prints the recap in this mode: the table and the summary, or one JSON object.
    pub fn print_recap(&self, recap: &Recap) {
        match self.mode {
            OutputMode::Json => {
                let mut value = serde_json::to_value(recap).unwrap_or_default();
                value["summary"] = recap.summary().into();
                print_json("recap", value);
            }
            OutputMode::Quiet => print_line(&recap.summary()),
            OutputMode::Terminal | OutputMode::Plain => {
                if !recap.rows.is_empty() || !recap.unchanged_jobs.is_empty() {
                    print_line(&recap.table());
                }
                for row in &recap.rows {
                    if let Some(lines) = recap.failed_output.get(&row.step) {
                        print_line(&format!(
                            "last output of {} {}:",
                            subject(row.job.as_deref(), row.worker.as_deref()),
                            row.action
                        ));
                        for line in lines {
                            print_line(&format!("  {line}"));
                        }
                    }
                }
                print_line(&recap.summary());
            }
        }
    }
}

/// A [`StepJournal`] that shows every committed batch of events to a [`DeployProgress`].
pub struct Reported<'a, J: StepJournal> {
    pub journal: &'a J,
    pub progress: &'a DeployProgress,
}

impl<J: StepJournal> StepJournal for Reported<'_, J> {
    fn record(&self, events: Vec<Event>) -> Result<(), String> {
        let shown = events.clone();
        self.journal.record(events)?;
        self.progress.observe(&shown);
        Ok(())
    }

    fn jobs_json(&self, worker: &str) -> Result<String, String> {
        self.journal.jobs_json(worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::StepLabel;

    fn row(job: &str, worker: &str, action: &str, status: StepStatus, seconds: f64) -> RecapRow {
        RecapRow {
            step: 0,
            job: Some(job.into()),
            worker: Some(worker.into()),
            action: action.into(),
            status,
            outcome: outcome_of(action, status),
            seconds,
            detail: (status != StepStatus::Ok).then(|| "make exited 2".to_string()),
        }
    }

    #[test]
    fn a_finished_step_is_one_line_with_its_subject_status_and_time() {
        let line = step_line(&row("web", "127.0.0.3", "restart", StepStatus::Ok, 0.414));
        assert_eq!(line, "web@127.0.0.3  restart  ok  0.41s");
        let failed = step_line(&row("web", "127.0.0.3", "start", StepStatus::Failed, 1.0));
        assert_eq!(failed, "web@127.0.0.3  start  failed  1.00s: make exited 2");
    }

    #[test]
    fn control_characters_from_an_error_are_shown_escaped() {
        let mut hostile = row("web", "127.0.0.3", "start", StepStatus::Failed, 1.0);
        hostile.detail = Some("\x1b]0;pwned\x07".into());
        assert!(!step_line(&hostile).contains('\x1b'));
    }

    #[test]
    fn a_failed_step_keeps_the_last_lines_its_worker_printed_for_its_job() {
        let output = |worker: &str, job: &str, line: &str| {
            Event::CommandOutput(crate::events::CommandOutput {
                worker: worker.into(),
                job: Some(job.into()),
                phase: if line == "a copied file" {
                    "rsync"
                } else {
                    "rollout"
                }
                .into(),
                stream: crate::events::Stream::Stderr,
                line: line.into(),
            })
        };
        let events = [
            output("127.0.0.3", "web", "one"),
            output("127.0.0.3", "web", "a copied file"),
            output("127.0.0.3", "db", "not this job"),
            output("127.0.0.4", "web", "not this worker"),
            output("127.0.0.3", "web", "two"),
            output("127.0.0.3", "web", "\x1b[2Jthree"),
        ];
        assert_eq!(
            last_output_lines(&events, "127.0.0.3", Some("web"), "start", 2),
            ["two", "\\e[2Jthree"]
        );
    }

    #[test]
    fn outcomes_name_what_happened() {
        for (action, status, outcome) in [
            ("start", StepStatus::Ok, "started"),
            ("restart", StepStatus::Ok, "restarted"),
            ("reload", StepStatus::Ok, "reloaded"),
            ("sync", StepStatus::Ok, "synced"),
            ("stop", StepStatus::Ok, "stopped"),
            ("remove_worker", StepStatus::Ok, "removed"),
            ("health_gate", StepStatus::Failed, "health_failed"),
            ("start", StepStatus::Failed, "failed"),
            ("restart", StepStatus::Skipped, "skipped"),
            ("post_deploy", StepStatus::Ok, "done"),
        ] {
            assert_eq!(outcome_of(action, status), outcome, "{action} {status:?}");
        }
    }

    #[test]
    fn the_summary_counts_starts_restarts_skips_and_failures() {
        let recap = Recap {
            rows: vec![
                row("web", "127.0.0.1", "sync", StepStatus::Ok, 0.1),
                row("web", "127.0.0.1", "start", StepStatus::Ok, 0.2),
                row("web", "127.0.0.2", "start", StepStatus::Failed, 0.2),
                row("db", "127.0.0.2", "restart", StepStatus::Skipped, 0.0),
            ],
            unchanged_jobs: vec!["cache".into()],
            done_before: 0,
            failed_output: BTreeMap::new(),
            seconds: 0.834,
        };
        assert_eq!(
            recap.summary(),
            "1 started, 0 restarted, 2 skipped, 1 failed, 1 synced in 0.83 s"
        );
        insta::assert_snapshot!(recap.table());
    }

    #[test]
    fn a_resumed_deploy_says_how_much_the_earlier_run_did() {
        let recap = Recap {
            rows: vec![row("web", "127.0.0.2", "start", StepStatus::Ok, 0.2)],
            unchanged_jobs: vec![],
            done_before: 3,
            failed_output: BTreeMap::new(),
            seconds: 0.5,
        };
        assert_eq!(
            recap.summary(),
            "1 started, 0 restarted, 0 skipped, 0 failed in 0.50 s (3 step(s) were done by the run this one resumed)"
        );
    }

    #[test]
    fn committed_step_events_become_rows_and_bookkeeping_stays_out() {
        let progress = DeployProgress::new(OutputMode::Quiet);
        let label = |action: &str| StepLabel {
            job: Some("web".into()),
            worker: Some("127.0.0.1".into()),
            action: action.into(),
        };
        let started = |index, action: &str| {
            Event::StepStarted(crate::events::StepStarted {
                deploy_id: "d".into(),
                index,
                step: label(action),
            })
        };
        let succeeded = |index, action: &str| {
            Event::StepSucceeded(crate::events::StepSucceeded {
                deploy_id: "d".into(),
                index,
                step: label(action),
                note: None,
            })
        };
        progress.observe(&[started(0, "start")]);
        progress.observe(&[succeeded(0, "start"), started(1, "promote")]);
        progress.observe(&[succeeded(1, "promote")]);
        let recap = progress.finish(vec![], 0, &[]);
        assert_eq!(recap.rows.len(), 1);
        assert_eq!(recap.rows[0].outcome, "started");
    }
}
