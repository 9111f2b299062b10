//! `chain_after`, `check_extends` and `append_chained`: keeping a second copy of a journal
//! (a cache of a shared journal) identical row for row, and refusing rows that do not extend it.

use crate::fixture::{append_committed, numbered_events, JournalFile};
use journal::{JournalError, StoredEvent, GENESIS_HASH};
use rusqlite::{Connection, TransactionBehavior};

fn all_rows(conn: &Connection) -> Vec<StoredEvent> {
    journal::events_from(conn, 0)
        .collect::<Result<_, _>>()
        .unwrap()
}

fn copy_committed(conn: &mut Connection, rows: &[StoredEvent]) -> Result<(), JournalError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    journal::append_chained(&tx, rows)?;
    tx.commit().unwrap();
    Ok(())
}

#[test]
fn chain_after_computes_exactly_the_rows_append_stores() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(3));
    let (head, head_hash) = journal::head_link(&conn).unwrap();
    let more = numbered_events(4);
    let predicted = journal::chain_after(head, head_hash, &more).unwrap();
    append_committed(&mut conn, &more);
    assert_eq!(predicted, all_rows(&conn)[3..]);
}

#[test]
fn rows_copied_in_batches_give_an_identical_verified_journal() {
    let (source, copy) = (JournalFile::new(), JournalFile::new());
    let (mut source_conn, mut copy_conn) = (source.connect(), copy.connect());
    append_committed(&mut source_conn, &numbered_events(10));
    let rows = all_rows(&source_conn);
    copy_committed(&mut copy_conn, &rows[..4]).unwrap();
    copy_committed(&mut copy_conn, &rows[4..]).unwrap();
    assert_eq!(all_rows(&copy_conn), rows);
    assert!(journal::verify(&copy_conn).unwrap().is_intact());
}

#[test]
fn rows_that_skip_or_repeat_a_seq_are_a_conflict_and_store_nothing() {
    let (source, copy) = (JournalFile::new(), JournalFile::new());
    let (mut source_conn, mut copy_conn) = (source.connect(), copy.connect());
    append_committed(&mut source_conn, &numbered_events(5));
    let rows = all_rows(&source_conn);
    copy_committed(&mut copy_conn, &rows[..2]).unwrap();
    let ahead = copy_committed(&mut copy_conn, &rows[3..]).unwrap_err();
    assert!(
        matches!(ahead, JournalError::Conflict { actual: 2, .. }),
        "{ahead}"
    );
    let repeated = copy_committed(&mut copy_conn, &rows[1..]).unwrap_err();
    assert!(
        matches!(repeated, JournalError::Conflict { .. }),
        "{repeated}"
    );
    assert_eq!(journal::head(&copy_conn).unwrap(), 2);
}

#[test]
fn rows_of_a_diverged_history_are_refused_naming_the_first_that_does_not_link() {
    let (ours, theirs) = (JournalFile::new(), JournalFile::new());
    let (mut ours_conn, mut theirs_conn) = (ours.connect(), theirs.connect());
    append_committed(&mut ours_conn, &numbered_events(2));
    let mut other = numbered_events(3);
    other[1].payload = b"a different second event".to_vec();
    append_committed(&mut theirs_conn, &other);
    let err = copy_committed(&mut ours_conn, &all_rows(&theirs_conn)[2..]).unwrap_err();
    assert!(
        matches!(err, JournalError::BrokenLink { seq: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("diverged"), "{err}");
}

#[test]
fn a_row_altered_in_transit_is_refused() {
    let rows = journal::chain_after(0, GENESIS_HASH, &numbered_events(2)).unwrap();
    let mut altered = rows.clone();
    altered[1].payload = b"edited".to_vec();
    let err = journal::check_extends(0, GENESIS_HASH, &altered).unwrap_err();
    assert!(
        matches!(err, JournalError::BrokenLink { seq: 2, .. }),
        "{err}"
    );
    journal::check_extends(0, GENESIS_HASH, &rows).unwrap();
}
