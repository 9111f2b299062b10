//! The log files under `logs/`, kept as a projection of the journal for people who grep:
//! `logs/<worker>.log` (every record about that worker), `logs/maand.log` (records about no
//! worker) and `logs/runs/<run_id>/<worker|maand>.log` (one invocation), each line in the
//! bucket's `log_format`.
//!
//! The files are derived, never a source: `logs/.exported` holds the last journal sequence
//! written, every commit of a run appends what follows it (so `tail -f logs/maand.log` follows
//! a running deploy, and a killed run's lines are already there), and [`rewrite`] recreates
//! them all.

use super::{render_json, render_kv, LogRecord};
use crate::bucket::LogFormat;
use crate::catalog::{self, CatalogError};
use rusqlite::{Connection, OptionalExtension};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

const CURSOR: &str = ".exported";

/// Failure to write the log files.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn file_name(record: &LogRecord) -> String {
    match record.worker.as_deref() {
        Some(worker) if worker != "-" => format!("{worker}.log"),
        _ => "maand.log".to_string(),
    }
}

/// Appends every journal event after the cursor to the log files. Returns how many records it
/// wrote.
pub fn export(conn: &Connection, logs_dir: &Path, format: LogFormat) -> Result<u64, ExportError> {
    let cursor_path = logs_dir.join(CURSOR);
    let after: u64 = std::fs::read_to_string(&cursor_path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    // Called after every commit: look up only the commands of the runs met, not every run.
    let mut commands: HashMap<String, String> = HashMap::new();
    let mut lines: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut last = after;
    let mut written = 0;
    for stored in journal::events_from(conn, after) {
        let (meta, event) = catalog::decode_stored(&stored.map_err(CatalogError::from)?)?;
        if !commands.contains_key(&meta.run_id) {
            let command: Option<String> = conn
                .prepare_cached("SELECT command FROM runs WHERE run_id = ?1")
                .and_then(|mut stmt| stmt.query_row([&meta.run_id], |row| row.get(0)).optional())
                .map_err(CatalogError::from)?;
            commands.insert(meta.run_id.clone(), command.unwrap_or_else(|| "-".into()));
        }
        let record = super::record_of(&meta, &event, &commands[&meta.run_id]);
        let line = match format {
            LogFormat::Kv => render_kv(&record),
            LogFormat::Json | LogFormat::Jsonl => render_json(&record),
        };
        let name = file_name(&record);
        for path in [
            logs_dir.join(&name),
            logs_dir.join("runs").join(&record.run).join(&name),
        ] {
            let buffer = lines.entry(path).or_default();
            buffer.push_str(&line);
            buffer.push('\n');
        }
        last = meta.seq;
        written += 1;
    }
    for (path, text) in &lines {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io(path))?;
        file.write_all(text.as_bytes()).map_err(io(path))?;
    }
    if last != after {
        // Replaced atomically but not flushed to disk: this runs after every commit, and a
        // cursor lost to a power cut only repeats some lines of these derived files.
        let temporary = logs_dir.join(format!(".exported.tmp-{}", std::process::id()));
        std::fs::write(&temporary, format!("{last}\n")).map_err(io(&temporary))?;
        std::fs::rename(&temporary, &cursor_path).map_err(io(&cursor_path))?;
    }
    Ok(written)
}

/// Deletes every exported log file and writes them again from the whole journal.
pub fn rewrite(conn: &Connection, logs_dir: &Path, format: LogFormat) -> Result<u64, ExportError> {
    if logs_dir.exists() {
        for entry in std::fs::read_dir(logs_dir).map_err(io(logs_dir))? {
            let path = entry.map_err(io(logs_dir))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if name == "runs" {
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
            } else if name.ends_with(".log") || name == CURSOR {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
    }
    export(conn, logs_dir, format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{CommandOutput, Event, RunStarted, Stream};

    fn catalog(dir: &Path) -> Connection {
        let path = dir.join("maand.db");
        let mut conn = crate::bucket::open(&path).unwrap();
        crate::bucket::migrate(&mut conn, &path).unwrap();
        conn
    }

    fn started() -> Event {
        Event::RunStarted(RunStarted {
            command: "deploy".into(),
            argv: vec!["maand".into(), "deploy".into()],
            maand_version: "0".into(),
            user: "u".into(),
            host: "h".into(),
            pid: 1,
        })
    }

    fn output(worker: &str, line: &str) -> Event {
        Event::CommandOutput(CommandOutput {
            worker: worker.into(),
            job: Some("api".into()),
            phase: "rollout".into(),
            stream: Stream::Stdout,
            line: line.into(),
        })
    }

    #[test]
    fn records_land_in_the_worker_bucket_and_run_files_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = catalog(dir.path());
        let logs = dir.path().join("logs");
        catalog::commit(
            &mut conn,
            "run-1",
            1,
            &[started(), output("127.9.0.1", "hello")],
            &[],
        )
        .unwrap();
        assert_eq!(export(&conn, &logs, LogFormat::Kv).unwrap(), 2);
        assert_eq!(
            export(&conn, &logs, LogFormat::Kv).unwrap(),
            0,
            "nothing is written twice"
        );
        let worker = std::fs::read_to_string(logs.join("127.9.0.1.log")).unwrap();
        assert!(
            worker.contains("msg=hello") && worker.contains("job=api"),
            "{worker}"
        );
        assert!(std::fs::read_to_string(logs.join("maand.log"))
            .unwrap()
            .contains("event=run_started"));
        assert!(logs.join("runs/run-1/127.9.0.1.log").is_file());
        catalog::commit(&mut conn, "run-2", 2, &[output("127.9.0.1", "again")], &[]).unwrap();
        export(&conn, &logs, LogFormat::Kv).unwrap();
        assert_eq!(
            std::fs::read_to_string(logs.join("127.9.0.1.log"))
                .unwrap()
                .lines()
                .count(),
            2
        );
    }

    #[test]
    fn rewrite_reproduces_the_files_in_another_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = catalog(dir.path());
        let logs = dir.path().join("logs");
        catalog::commit(
            &mut conn,
            "run-1",
            1,
            &[started(), output("127.9.0.1", "hello")],
            &[],
        )
        .unwrap();
        export(&conn, &logs, LogFormat::Kv).unwrap();
        rewrite(&conn, &logs, LogFormat::Jsonl).unwrap();
        let line = std::fs::read_to_string(logs.join("127.9.0.1.log")).unwrap();
        let value: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(value["msg"], "hello");
    }
}
