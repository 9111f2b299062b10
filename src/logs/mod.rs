//! The auditor's view of the journal: every event as a log record, filters, and the three
//! renderings (`raw` key=value lines, `json` objects, `human` blocks).
//!
//! Reads only the journal (and the `runs` projection for command names). Rendering returns
//! strings; the CLI prints them.

pub mod files;

use crate::catalog::{self, CatalogError, EventMeta};
use crate::events::Event;
use crate::run::format_time_ms;
use rusqlite::Connection;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};

/// One journal event as a flat log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogRecord {
    pub seq: u64,
    pub ts_ms: i64,
    pub run: String,
    /// The maand command of the run (`init`, `build`, `deploy`, ...).
    pub maand: String,
    pub event: String,
    pub level: &'static str,
    pub worker: Option<String>,
    pub job: Option<String>,
    pub phase: Option<String>,
    pub action: Option<String>,
    /// Further fields in a stable order.
    pub fields: Vec<(String, String)>,
}

/// Which records to show. `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// A run id or a unique prefix of one.
    pub run: Option<String>,
    pub event: Option<String>,
    pub worker: Option<String>,
    pub job: Option<String>,
    pub phase: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

impl Filter {
    fn matches(&self, record: &LogRecord) -> bool {
        fn field(want: &Option<String>, have: &Option<String>) -> bool {
            want.as_ref()
                .is_none_or(|w| have.as_deref() == Some(w.as_str()))
        }
        self.run
            .as_ref()
            .is_none_or(|r| record.run.starts_with(r.as_str()))
            && self.event.as_ref().is_none_or(|e| record.event == *e)
            && field(&self.worker, &record.worker)
            && field(&self.job, &record.job)
            && field(&self.phase, &record.phase)
            && self.since_ms.is_none_or(|t| record.ts_ms >= t)
            && self.until_ms.is_none_or(|t| record.ts_ms <= t)
    }
}

/// Turns one event into its log record.
pub fn record_of(meta: &EventMeta, event: &Event, maand: &str) -> LogRecord {
    let mut record = LogRecord {
        seq: meta.seq,
        ts_ms: meta.time_ms,
        run: meta.run_id.clone(),
        maand: maand.to_string(),
        event: event.kind().to_string(),
        level: "INFO",
        worker: None,
        job: None,
        phase: None,
        action: None,
        fields: Vec::new(),
    };
    let mut field = |k: &str, v: String| record.fields.push((k.to_string(), v));
    match event {
        Event::RunStarted(e) => {
            field("cmd", e.argv.join(" "));
            field("user", e.user.clone());
            field("host", e.host.clone());
            field("pid", e.pid.to_string());
            field("version", e.maand_version.clone());
        }
        Event::RunFinished(e) => {
            field("outcome", e.outcome.as_str().to_string());
            field("duration_ms", e.duration_ms.to_string());
            if let Some(error) = &e.error {
                field("error", error.clone());
            }
            if e.error.is_some() {
                record.level = "ERROR";
            }
        }
        Event::RunAbandoned(e) => {
            field("abandoned_run", e.run_id.clone());
            field("command", e.command.clone());
            field("pid", e.pid.to_string());
            record.level = "WARN";
        }
        Event::BucketInitialized(e) => {
            field("bucket_id", e.bucket_id.clone());
            field("schema", e.schema_version.to_string());
            field("ca_fingerprint", e.ca_fingerprint.clone());
        }
        Event::BucketUpgraded(e) => {
            field("from_schema", e.from_schema.to_string());
            field("to_schema", e.to_schema.to_string());
        }
        Event::WorkerUpserted(w) => {
            field("labels", w.labels.join(","));
            record.worker = Some(w.host.clone());
        }
        Event::WorkerRemoved(e) => record.worker = Some(e.host.clone()),
        Event::JobUpserted(job) => {
            field("version", job.version.clone());
            field("files", job.files.len().to_string());
            field("files_hash", job.files_hash.clone());
            record.job = Some(job.name.clone());
        }
        Event::JobRemoved(e) => record.job = Some(e.name.clone()),
        Event::PortAssigned(e) => {
            field("port_name", e.name.clone());
            field("port", e.port.to_string());
            record.job = Some(e.job.clone());
        }
        Event::PortReleased(e) => {
            field("port_name", e.name.clone());
            record.job = Some(e.job.clone());
        }
        Event::AllocationUpserted(a) => {
            field("alloc_id", a.alloc_id.clone());
            field("disabled", a.disabled.to_string());
            field("removed", a.removed.to_string());
            field("new_version", a.new_version.clone());
            record.job = Some(a.job.clone());
            record.worker = Some(a.worker_ip.clone());
        }
        Event::KvChanged(e) => {
            // Keys only: values may be large, and sealed values are no business of a log.
            field("namespace", e.namespace.clone());
            let keys: Vec<String> = e
                .changes
                .iter()
                .map(|c| match c {
                    crate::events::KvChange::Put { key, .. } => key.clone(),
                    crate::events::KvChange::Delete { key } => format!("-{key}"),
                })
                .collect();
            field("keys", keys.join(","));
        }
        Event::UpdateSeqBumped(e) => field("update_seq", e.update_seq.to_string()),
        Event::DeployPlanned(plan) => {
            field("deploy_id", plan.deploy_id.clone());
            field("steps", plan.steps.len().to_string());
            field("update_seq", plan.update_seq.to_string());
            if !plan.flags.jobs.is_empty() {
                field("jobs", plan.flags.jobs.join(","));
            }
            if plan.flags.force {
                field("force", "true".into());
            }
            if plan.flags.sync_only {
                field("sync_only", "true".into());
            }
        }
        Event::StepStarted(e) => step_fields(&mut record, &e.deploy_id, e.index, &e.step, None),
        Event::StepSucceeded(e) => step_fields(
            &mut record,
            &e.deploy_id,
            e.index,
            &e.step,
            e.note.as_deref().map(|n| ("note", n)),
        ),
        Event::StepFailed(e) => {
            step_fields(
                &mut record,
                &e.deploy_id,
                e.index,
                &e.step,
                Some(("error", &e.error)),
            );
            record.level = "ERROR";
        }
        Event::StepSkipped(e) => step_fields(
            &mut record,
            &e.deploy_id,
            e.index,
            &e.step,
            Some(("reason", &e.reason)),
        ),
        Event::DeployFinished(e) => {
            field("deploy_id", e.deploy_id.clone());
            field("outcome", e.outcome.as_str().into());
            if !e.failed_jobs.is_empty() {
                field("failed_jobs", e.failed_jobs.join(","));
                record.level = "ERROR";
            }
        }
        Event::DeploySkipped(e) => {
            field("reason", e.reason.clone());
            record.job = Some(e.job.clone());
            record.worker = Some("-".into());
        }
        Event::AllocationStaged(e) => {
            field("alloc_id", e.alloc_id.clone());
            field("tree_hash", e.tree_hash.clone());
            record.job = Some(e.job.clone());
            record.worker = Some(e.worker_ip.clone());
        }
        Event::AllocationPromoted(e) => {
            field("alloc_id", e.alloc_id.clone());
            field("version", e.version.clone());
        }
        Event::AllocationStopped(e) => field("alloc_id", e.alloc_id.clone()),
        Event::AllocationHashCleared(e) => field("alloc_id", e.alloc_id.clone()),
        Event::AllocationPurged(e) => {
            field("alloc_id", e.alloc_id.clone());
            record.job = Some(e.job.clone());
            record.worker = Some(e.worker_ip.clone());
            record.phase = Some("gc".into());
        }
        Event::KvPurged(e) => {
            field("keys", e.keys.len().to_string());
            record.phase = Some("gc".into());
        }
        Event::HealthChecked(e) => {
            field("alloc_id", e.alloc_id.clone());
            field("healthy", e.healthy.to_string());
            field("attempt", e.attempt.to_string());
            field("detail", e.detail.clone());
            record.job = Some(e.job.clone());
            record.worker = Some(e.worker_ip.clone());
            record.phase = Some("health_check".into());
            if !e.healthy {
                record.level = "ERROR";
            }
        }
        Event::BucketImported(e) => {
            field("bucket_id", e.bucket_id.clone());
            field("update_seq", e.update_seq.to_string());
            field("go_schema", e.go_schema_version.to_string());
            field("kept_copy", e.kept_copy.clone());
            field("source_sha256", e.source_sha256.clone());
            record.phase = Some("import".into());
        }
        Event::KvImported(e) => {
            // Keys only, as for kv_changed: values are no business of a log.
            field("namespace", e.namespace.clone());
            field("keys", e.key.clone());
            field("versions", e.versions.len().to_string());
            record.phase = Some("import".into());
        }
        Event::AllocationAdopted(e) => {
            field("alloc_id", e.alloc_id.clone());
            field("version", e.version.clone());
            record.job = Some(e.job.clone());
            record.worker = Some(e.worker_ip.clone());
            record.phase = Some("import".into());
        }
        Event::CommandStarted(e) => {
            record.worker = Some(e.worker.clone());
            record.job = e.job.clone();
            record.phase = Some(e.phase.clone());
            record.action = Some(e.action.clone());
            field("cmd", e.command.clone());
        }
        Event::CommandOutput(e) => {
            record.worker = Some(e.worker.clone());
            record.job = e.job.clone();
            record.phase = Some(e.phase.clone());
            field("stream", e.stream.as_str().to_string());
            field("msg", e.line.clone());
        }
        Event::CommandFinished(e) => {
            record.worker = Some(e.worker.clone());
            record.job = e.job.clone();
            record.phase = Some(e.phase.clone());
            record.action = Some(e.action.clone());
            if let Some(code) = e.exit_code {
                field("exit", code.to_string());
            }
            field("duration_ms", e.duration_ms.to_string());
            if let Some(error) = &e.error {
                field("error", error.clone());
            }
            if e.exit_code != Some(0) {
                record.level = "ERROR";
            }
        }
    }
    record
}

fn step_fields(
    record: &mut LogRecord,
    deploy_id: &str,
    index: u32,
    step: &crate::events::StepLabel,
    extra: Option<(&str, &str)>,
) {
    record.job = step.job.clone();
    record.worker = step.worker.clone();
    record.action = Some(step.action.clone());
    record
        .fields
        .push(("deploy_id".into(), deploy_id.to_string()));
    record.fields.push(("step".into(), index.to_string()));
    if let Some((key, value)) = extra {
        record.fields.push((key.to_string(), value.to_string()));
    }
}

/// Reads the journal from the start and returns the matching records; with `tail`, only the
/// last `tail` of them. Memory stays bounded by `tail` when it is given.
pub fn collect(
    conn: &Connection,
    filter: &Filter,
    tail: Option<usize>,
) -> Result<Vec<LogRecord>, CatalogError> {
    let commands: HashMap<String, String> = catalog::read::runs(conn)?
        .into_iter()
        .map(|r| (r.run_id, r.command))
        .collect();
    let mut kept = VecDeque::new();
    for stored in journal::events_from(conn, 0) {
        let (meta, event) = catalog::decode_stored(&stored?)?;
        let maand = commands
            .get(&meta.run_id)
            .map(String::as_str)
            .unwrap_or("-");
        let record = record_of(&meta, &event, maand);
        if filter.matches(&record) {
            kept.push_back(record);
            if let Some(n) = tail {
                if kept.len() > n {
                    kept.pop_front();
                }
            }
        }
    }
    Ok(kept.into())
}

fn quote_kv(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && c != '"' && c != '=' && !c.is_control());
    if plain {
        value.to_string()
    } else {
        serde_json::to_string(value).expect("strings serialize")
    }
}

/// `raw` format: one `key=value` line, values quoted when they need it.
pub fn render_kv(record: &LogRecord) -> String {
    let mut parts = vec![
        format!("ts={}", format_time_ms(record.ts_ms)),
        format!("level={}", record.level),
        format!("event={}", record.event),
        format!("run={}", record.run),
        format!("maand={}", quote_kv(&record.maand)),
        format!("seq={}", record.seq),
        format!(
            "worker={}",
            record
                .worker
                .as_deref()
                .map(quote_kv)
                .unwrap_or_else(|| "-".into())
        ),
    ];
    for (key, value) in [
        ("job", &record.job),
        ("phase", &record.phase),
        ("action", &record.action),
    ] {
        if let Some(value) = value {
            parts.push(format!("{key}={}", quote_kv(value)));
        }
    }
    for (key, value) in &record.fields {
        parts.push(format!("{key}={}", quote_kv(value)));
    }
    parts.join(" ")
}

/// `json` format: one object per line.
pub fn render_json(record: &LogRecord) -> String {
    let mut object = serde_json::Map::new();
    object.insert("ts".into(), format_time_ms(record.ts_ms).into());
    object.insert("level".into(), record.level.into());
    object.insert("event".into(), record.event.clone().into());
    object.insert("run".into(), record.run.clone().into());
    object.insert("maand".into(), record.maand.clone().into());
    object.insert("seq".into(), record.seq.into());
    object.insert(
        "worker".into(),
        record.worker.clone().unwrap_or_else(|| "-".into()).into(),
    );
    for (key, value) in [
        ("job", &record.job),
        ("phase", &record.phase),
        ("action", &record.action),
    ] {
        if let Some(value) = value {
            object.insert(key.into(), value.clone().into());
        }
    }
    for (key, value) in &record.fields {
        object.insert(key.clone(), value.clone().into());
    }
    serde_json::Value::Object(object).to_string()
}

fn field_value<'a>(record: &'a LogRecord, key: &str) -> &'a str {
    record
        .fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// `job@worker`, `job`, or `worker`, whichever is known.
fn subject(record: &LogRecord) -> String {
    match (&record.job, &record.worker) {
        (Some(job), Some(worker)) if worker != "-" => format!("{job}@{worker}"),
        (Some(job), _) => job.clone(),
        (None, Some(worker)) => worker.clone(),
        (None, None) => "-".into(),
    }
}

/// One record as an indented line of a human block.
fn human_line(record: &LogRecord) -> String {
    match record.event.as_str() {
        "command_begin" => format!(
            "  {}  {}  {}\n  $ {}",
            record.phase.as_deref().unwrap_or("-"),
            record.action.as_deref().unwrap_or("-"),
            subject(record),
            crate::terminal::visible(field_value(record, "cmd"))
        ),
        "command_output" => {
            let marker = if field_value(record, "stream") == "stderr" {
                "!"
            } else {
                "|"
            };
            format!(
                "  {} {marker} {}",
                subject(record),
                crate::terminal::visible(field_value(record, "msg"))
            )
        }
        "command_end" => {
            let ok = field_value(record, "exit") == "0";
            let seconds = field_value(record, "duration_ms")
                .parse::<f64>()
                .unwrap_or(0.0)
                / 1000.0;
            let mut line = format!(
                "  {}  exit={}  {seconds:.1}s",
                if ok { "ok" } else { "FAILED" },
                field_value(record, "exit")
            );
            let error = field_value(record, "error");
            if !error.is_empty() {
                line.push_str(&format!("  {}", crate::terminal::visible(error)));
            }
            line
        }
        _ => {
            let mut details: Vec<String> = Vec::new();
            if record.job.is_some() || record.worker.is_some() {
                details.push(subject(record));
            }
            details.extend(
                record
                    .fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", quote_kv(v))),
            );
            let line = format!("  {:<20} {}", record.event, details.join(" "));
            line.trim_end().to_string()
        }
    }
}

/// Groups records into the blocks the human view shows: every command (its begin, output lines
/// and end, which interleave with other workers' in the journal) becomes one block, placed
/// where it began; every other record is a block of its own.
pub fn blocks(records: Vec<LogRecord>) -> Vec<Vec<LogRecord>> {
    type Key = (String, Option<String>, Option<String>, Option<String>);
    let key = |r: &LogRecord| -> Key {
        (
            r.run.clone(),
            r.worker.clone(),
            r.job.clone(),
            r.phase.clone(),
        )
    };
    let mut blocks: Vec<Vec<LogRecord>> = Vec::new();
    let mut open: HashMap<Key, usize> = HashMap::new();
    for record in records {
        match record.event.as_str() {
            "command_begin" => {
                open.insert(key(&record), blocks.len());
                blocks.push(vec![record]);
            }
            "command_output" | "command_end" => {
                let k = key(&record);
                let ends = record.event == "command_end";
                match open.get(&k).copied() {
                    Some(index) => {
                        blocks[index].push(record);
                        if ends {
                            open.remove(&k);
                        }
                    }
                    None => blocks.push(vec![record]),
                }
            }
            _ => blocks.push(vec![record]),
        }
    }
    blocks
}

/// `human` format: blocks under a header line per run, in journal order.
pub fn render_human_blocks(blocks: &[Vec<LogRecord>]) -> String {
    let records: Vec<LogRecord> = blocks.iter().flatten().cloned().collect();
    render_human(&records)
}

/// `human` format of records already in display order: a header line whenever the run
/// changes, then one indented line (or two, for a command's start) per record.
pub fn render_human(records: &[LogRecord]) -> String {
    let mut out = String::new();
    let mut current_run: Option<&str> = None;
    for record in records {
        if current_run != Some(record.run.as_str()) {
            if current_run.is_some() {
                out.push('\n');
            }
            let ts = format_time_ms(record.ts_ms).replace('T', " ");
            out.push_str(&format!(
                "{}  {}  run={}\n",
                &ts[..19.min(ts.len())],
                record.maand,
                &record.run[..8.min(record.run.len())]
            ));
            current_run = Some(record.run.as_str());
        }
        out.push_str(&human_line(record));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{RunFinished, RunOutcome};

    fn meta(seq: u64) -> EventMeta {
        EventMeta {
            seq,
            run_id: "0123456789".into(),
            time_ms: 1_780_000_000_000,
        }
    }

    #[test]
    fn kv_values_with_spaces_or_quotes_are_quoted() {
        let finished = Event::RunFinished(RunFinished {
            outcome: RunOutcome::Failed,
            duration_ms: 5,
            error: Some("bad \"x\" here".into()),
        });
        let line = render_kv(&record_of(&meta(3), &finished, "build"));
        assert!(line.contains(r#"error="bad \"x\" here""#), "{line}");
        assert!(
            line.contains(
                "level=ERROR event=run_finished run=0123456789 maand=build seq=3 worker=-"
            ),
            "{line}"
        );
    }

    #[test]
    fn json_lines_parse_back_with_every_field() {
        let finished = Event::RunFinished(RunFinished {
            outcome: RunOutcome::Succeeded,
            duration_ms: 5,
            error: None,
        });
        let line = render_json(&record_of(&meta(3), &finished, "init"));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["event"], "run_finished");
        assert_eq!(value["outcome"], "succeeded");
        assert_eq!(value["seq"], 3);
    }

    #[test]
    fn filter_by_run_prefix_and_event() {
        let finished = Event::RunFinished(RunFinished {
            outcome: RunOutcome::Succeeded,
            duration_ms: 5,
            error: None,
        });
        let record = record_of(&meta(1), &finished, "init");
        assert!(Filter {
            run: Some("0123".into()),
            ..Filter::default()
        }
        .matches(&record));
        assert!(!Filter {
            run: Some("9".into()),
            ..Filter::default()
        }
        .matches(&record));
        assert!(!Filter {
            event: Some("run_started".into()),
            ..Filter::default()
        }
        .matches(&record));
        assert!(!Filter {
            worker: Some("127.9.0.1".into()),
            ..Filter::default()
        }
        .matches(&record));
    }
}

#[cfg(test)]
mod human_tests {
    use super::*;
    use crate::events::{CommandFinished, CommandOutput, CommandStarted, Stream};

    #[test]
    fn a_command_renders_as_one_block_with_marked_stderr() {
        let meta = |seq| EventMeta {
            seq,
            run_id: "8f3a2c12-0000".into(),
            time_ms: 1_780_000_000_000,
        };
        let events = [
            Event::CommandStarted(CommandStarted {
                worker: "127.9.0.3".into(),
                job: Some("db".into()),
                phase: "reconcile".into(),
                action: "stop".into(),
                command: "python3 runner.py stop db".into(),
            }),
            Event::CommandOutput(CommandOutput {
                worker: "127.9.0.3".into(),
                job: Some("db".into()),
                phase: "reconcile".into(),
                stream: Stream::Stderr,
                line: "stopping".into(),
            }),
            Event::CommandFinished(CommandFinished {
                worker: "127.9.0.3".into(),
                job: Some("db".into()),
                phase: "reconcile".into(),
                action: "stop".into(),
                exit_code: Some(0),
                duration_ms: 1300,
                error: None,
            }),
        ];
        let records: Vec<LogRecord> = events
            .iter()
            .enumerate()
            .map(|(i, e)| record_of(&meta(i as u64 + 1), e, "deploy"))
            .collect();
        let text = render_human(&records);
        let body: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            body,
            [
                "  reconcile  stop  db@127.9.0.3",
                "  $ python3 runner.py stop db",
                "  db@127.9.0.3 ! stopping",
                "  ok  exit=0  1.3s"
            ]
        );
        assert!(
            text.starts_with("2026-05-28 20:26:40  deploy  run=8f3a2c12"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod block_tests {
    use super::*;
    use crate::events::{CommandFinished, CommandOutput, CommandStarted, Stream};

    fn rec(seq: u64, event: Event) -> LogRecord {
        record_of(
            &EventMeta {
                seq,
                run_id: "r".into(),
                time_ms: 0,
            },
            &event,
            "deploy",
        )
    }

    fn begin(worker: &str) -> Event {
        Event::CommandStarted(CommandStarted {
            worker: worker.into(),
            job: Some("j".into()),
            phase: "rollout".into(),
            action: "start".into(),
            command: "make start".into(),
        })
    }

    fn line(worker: &str) -> Event {
        Event::CommandOutput(CommandOutput {
            worker: worker.into(),
            job: Some("j".into()),
            phase: "rollout".into(),
            stream: Stream::Stdout,
            line: format!("from {worker}"),
        })
    }

    fn end(worker: &str) -> Event {
        Event::CommandFinished(CommandFinished {
            worker: worker.into(),
            job: Some("j".into()),
            phase: "rollout".into(),
            action: "start".into(),
            exit_code: Some(0),
            duration_ms: 1,
            error: None,
        })
    }

    #[test]
    fn interleaved_commands_of_two_workers_become_two_whole_blocks() {
        let records = vec![
            rec(1, begin("a")),
            rec(2, begin("b")),
            rec(3, line("b")),
            rec(4, line("a")),
            rec(5, end("a")),
            rec(6, end("b")),
        ];
        let blocks = blocks(records);
        assert_eq!(blocks.len(), 2);
        let seqs: Vec<Vec<u64>> = blocks
            .iter()
            .map(|b| b.iter().map(|r| r.seq).collect())
            .collect();
        assert_eq!(seqs, [vec![1, 4, 5], vec![2, 3, 6]]);
    }
}
