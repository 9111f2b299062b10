//! Owns the journal's SQL schema: the `journal` table, its indexes and the triggers that make
//! the table append-only inside SQLite itself. It never writes or reads events.

use crate::JournalError;
use rusqlite::Connection;

/// Column names and declared types, in order. `install` refuses a pre-existing `journal`
/// table whose columns differ.
const LAYOUT: [(&str, &str); 8] = [
    ("seq", "INTEGER"),
    ("run_id", "TEXT"),
    ("time_ms", "INTEGER"),
    ("kind", "TEXT"),
    ("schema_version", "INTEGER"),
    ("payload", "BLOB"),
    ("prev_hash", "BLOB"),
    ("hash", "BLOB"),
];

const DDL: &str = "
CREATE TABLE IF NOT EXISTS journal (
    seq            INTEGER PRIMARY KEY,
    run_id         TEXT    NOT NULL,
    time_ms        INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        BLOB    NOT NULL,
    prev_hash      BLOB    NOT NULL,
    hash           BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_by_run ON journal (run_id);
CREATE INDEX IF NOT EXISTS journal_by_kind ON journal (kind, seq);
CREATE TRIGGER IF NOT EXISTS journal_refuse_update BEFORE UPDATE ON journal
BEGIN
    SELECT RAISE(ABORT, 'journal rows are append-only: UPDATE is refused; append a new event that supersedes the old one instead');
END;
CREATE TRIGGER IF NOT EXISTS journal_refuse_delete BEFORE DELETE ON journal
BEGIN
    SELECT RAISE(ABORT, 'journal rows are append-only: DELETE is refused; the journal is never pruned in place');
END;
";

/// Names of the triggers `install` creates. Dropping them is what a tamperer with the
/// `sqlite3` shell would do first; `install` recreates them.
pub const APPEND_ONLY_TRIGGERS: [&str; 2] = ["journal_refuse_update", "journal_refuse_delete"];

/// Creates the `journal` table, its indexes and its append-only triggers if they are missing.
///
/// Idempotent: running it on an installed journal changes nothing, except that dropped triggers
/// or indexes are recreated. Works inside or outside a transaction (it uses a savepoint, so it
/// either installs everything or nothing). Fails with [`JournalError::ForeignTable`] if a table
/// named `journal` with another layout already exists.
pub fn install(conn: &Connection) -> Result<(), JournalError> {
    conn.execute_batch("SAVEPOINT journal_install")?;
    let outcome = check_existing_layout(conn).and_then(|()| Ok(conn.execute_batch(DDL)?));
    match outcome {
        Ok(()) => {
            conn.execute_batch("RELEASE journal_install")?;
            Ok(())
        }
        Err(err) => {
            // The original error is what the caller needs; a failing rollback of a savepoint
            // whose statements all failed leaves nothing half-installed to report.
            let _ = conn.execute_batch("ROLLBACK TO journal_install; RELEASE journal_install");
            Err(err)
        }
    }
}

fn check_existing_layout(conn: &Connection) -> Result<(), JournalError> {
    let mut statement =
        conn.prepare("SELECT name, type FROM pragma_table_info('journal') ORDER BY cid")?;
    let found = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let matches = found.len() == LAYOUT.len()
        && found
            .iter()
            .zip(LAYOUT)
            .all(|((name, kind), (want_name, want_kind))| {
                name == want_name && kind.eq_ignore_ascii_case(want_kind)
            });
    if found.is_empty() || matches {
        return Ok(());
    }
    let describe = |columns: Vec<String>| columns.join(", ");
    Err(JournalError::ForeignTable {
        found: describe(
            found
                .iter()
                .map(|(name, kind)| format!("{name} {kind}"))
                .collect(),
        ),
        expected: describe(
            LAYOUT
                .iter()
                .map(|(name, kind)| format!("{name} {kind}"))
                .collect(),
        ),
    })
}
