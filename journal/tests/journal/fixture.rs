//! Real SQLite journal files in temporary directories, and the few moves every test repeats:
//! opening a connection the way an application would, appending in committed transactions,
//! and stripping the append-only triggers the way someone with the `sqlite3` shell could.

use journal::{NewEvent, APPEND_ONLY_TRIGGERS};
use proptest::prelude::*;
use rusqlite::{Connection, TransactionBehavior};
use std::path::PathBuf;
use std::time::Duration;
use tempfile::TempDir;

/// A journal database file that disappears with the value.
pub struct JournalFile {
    _dir: TempDir,
    pub path: PathBuf,
}

impl JournalFile {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("journal.db");
        JournalFile { _dir: dir, path }
    }

    /// A WAL-mode connection with a generous busy timeout and the journal installed.
    /// The timeout only bounds lock waits so contended tests never fail spuriously.
    pub fn connect(&self) -> Connection {
        let conn = Connection::open(&self.path).expect("open the journal file");
        conn.busy_timeout(Duration::from_secs(600))
            .expect("set busy_timeout");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("enable WAL");
        journal::install(&conn).expect("install the journal");
        conn
    }
}

pub fn sample_event(run_id: &str, kind: &str, payload: &[u8]) -> NewEvent {
    NewEvent {
        run_id: run_id.to_owned(),
        time_ms: 1_700_000_000_000,
        kind: kind.to_owned(),
        schema_version: 1,
        payload: payload.to_vec(),
    }
}

/// `count` events numbered in their payload, all in run `run-<n mod 3>`, kind `kind-<n mod 2>`.
pub fn numbered_events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|n| {
            sample_event(
                &format!("run-{}", n % 3),
                &format!("kind-{}", n % 2),
                &(n as u64).to_be_bytes(),
            )
        })
        .collect()
}

/// Appends `events` at the current head in one `BEGIN IMMEDIATE` transaction and commits.
pub fn append_committed(conn: &mut Connection, events: &[NewEvent]) -> Vec<u64> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .expect("begin immediate");
    let head = journal::head(&tx).expect("read head");
    let seqs = journal::append(&tx, head, events).expect("append");
    tx.commit().expect("commit");
    seqs
}

/// Simulates an attacker (or a careless operator) editing the file with the `sqlite3` shell:
/// the triggers are ordinary schema objects, so the first thing such an edit does is drop them.
/// Everything a test does afterwards to the rows is therefore possible in real life, and only
/// `verify` stands between it and going unnoticed.
pub fn drop_append_only_triggers(conn: &Connection) {
    for trigger in APPEND_ONLY_TRIGGERS {
        conn.execute_batch(&format!("DROP TRIGGER {trigger}"))
            .expect("drop trigger");
    }
}

pub fn arbitrary_text() -> impl Strategy<Value = String> {
    // A small alphabet makes runs and kinds repeat; arbitrary Unicode (NUL included) checks
    // that any text survives storage and filtering.
    prop_oneof![3 => "[ab]{0,2}", 1 => any::<String>()]
}

pub fn arbitrary_event() -> impl Strategy<Value = NewEvent> {
    (
        arbitrary_text(),
        any::<i64>(),
        arbitrary_text(),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..96),
    )
        .prop_map(
            |(run_id, time_ms, kind, schema_version, payload)| NewEvent {
                run_id,
                time_ms,
                kind,
                schema_version,
                payload,
            },
        )
}
