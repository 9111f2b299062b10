//! `install`: idempotent schema creation and refusal of foreign tables.

use crate::fixture::{append_committed, numbered_events, JournalFile};
use journal::{JournalError, APPEND_ONLY_TRIGGERS};
use rusqlite::Connection;

fn trigger_count(conn: &Connection) -> usize {
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'journal'",
        [],
        |row| row.get::<_, usize>(0),
    )
    .unwrap()
}

#[test]
fn installing_twice_keeps_the_events() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(3));
    journal::install(&conn).unwrap();
    journal::install(&conn).unwrap();
    assert_eq!(journal::head(&conn).unwrap(), 3);
    assert!(journal::verify(&conn).unwrap().is_intact());
}

#[test]
fn installing_recreates_dropped_triggers() {
    let file = JournalFile::new();
    let conn = file.connect();
    assert_eq!(trigger_count(&conn), APPEND_ONLY_TRIGGERS.len());
    crate::fixture::drop_append_only_triggers(&conn);
    assert_eq!(trigger_count(&conn), 0);
    journal::install(&conn).unwrap();
    assert_eq!(trigger_count(&conn), APPEND_ONLY_TRIGGERS.len());
}

#[test]
fn installing_refuses_a_foreign_journal_table() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE journal (id INTEGER PRIMARY KEY, entry TEXT)")
        .unwrap();
    let err = journal::install(&conn).unwrap_err();
    assert!(matches!(err, JournalError::ForeignTable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("id INTEGER, entry TEXT"), "{message}");
    // Nothing was half-installed next to the foreign table.
    assert_eq!(trigger_count(&conn), 0);
}

#[test]
fn installing_inside_a_rolled_back_transaction_leaves_no_table() {
    let mut conn = Connection::open_in_memory().unwrap();
    let tx = conn.transaction().unwrap();
    journal::install(&tx).unwrap();
    tx.rollback().unwrap();
    let tables: usize = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'journal'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
}
