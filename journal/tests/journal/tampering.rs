//! What the database refuses, and what `verify` / `verify_anchored` report when someone edits
//! the file anyway (after dropping the triggers, as the `sqlite3` shell allows).

use crate::fixture::{
    append_committed, arbitrary_event, drop_append_only_triggers, numbered_events, sample_event,
    JournalFile,
};
use journal::{Anchor, JournalError, StoredEvent, VerifyReport, GENESIS_HASH};
use proptest::prelude::*;
use proptest::sample::Index;
use rusqlite::Connection;

fn first_bad(conn: &Connection) -> Option<(u64, String)> {
    journal::verify(conn)
        .unwrap()
        .first_bad
        .map(|bad| (bad.seq, bad.reason))
}

fn assert_refused_as_append_only(result: rusqlite::Result<usize>) {
    let err = result.expect_err("the triggers must refuse this statement");
    assert!(
        err.to_string().contains("journal rows are append-only"),
        "{err}"
    );
}

#[test]
fn the_database_refuses_update_and_delete() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(3));

    assert_refused_as_append_only(conn.execute("UPDATE journal SET kind = 'x' WHERE seq = 2", []));
    assert_refused_as_append_only(conn.execute("DELETE FROM journal WHERE seq = 3", []));
    assert_refused_as_append_only(conn.execute("DELETE FROM journal", []));
    assert_eq!(
        journal::verify(&conn).unwrap(),
        VerifyReport {
            checked: 3,
            head: 3,
            first_bad: None
        }
    );
}

/// `INSERT ... SELECT` copying row 3 under another seq (bypassing `journal::append`).
fn copy_row_3(conn: &Connection, verb: &str, seq: i64) {
    conn.execute(
        &format!(
            "{verb} INTO journal SELECT ?1, run_id, time_ms, kind, schema_version, payload, prev_hash, hash \
             FROM journal WHERE seq = 3"
        ),
        [seq],
    )
    .unwrap();
}

#[test]
fn a_row_overwritten_by_insert_or_replace_is_reported() {
    // The triggers cannot see this: SQLite deletes the replaced row without firing them.
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(4));
    copy_row_3(&conn, "INSERT OR REPLACE", 2);
    let (seq, reason) = first_bad(&conn).unwrap();
    assert_eq!(seq, 2);
    assert!(reason.contains("hash mismatch"), "{reason}");
}

#[test]
fn a_row_inserted_past_the_head_is_reported_as_a_gap() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(3));
    copy_row_3(&conn, "INSERT", 5);
    assert_eq!(
        first_bad(&conn),
        Some((
            4,
            "gap: expected seq 4, found 5 (rows deleted, renumbered or inserted out of order)"
                .into()
        ))
    );
}

#[test]
fn a_copy_of_the_head_appended_by_hand_does_not_link() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(3));
    copy_row_3(&conn, "INSERT", 4);
    let (seq, reason) = first_bad(&conn).unwrap();
    assert_eq!(seq, 4);
    assert!(reason.contains("hash mismatch"), "{reason}");
}

#[test]
fn an_empty_journal_verifies() {
    let file = JournalFile::new();
    assert_eq!(
        journal::verify(&file.connect()).unwrap(),
        VerifyReport {
            checked: 0,
            head: 0,
            first_bad: None
        }
    );
}

/// The columns of a journal row, and how a byte-level edit of each is written back.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Column {
    Seq,
    RunId,
    TimeMs,
    Kind,
    SchemaVersion,
    Payload,
    PrevHash,
    Hash,
}

impl Column {
    const ALL: [Column; 8] = [
        Column::Seq,
        Column::RunId,
        Column::TimeMs,
        Column::Kind,
        Column::SchemaVersion,
        Column::Payload,
        Column::PrevHash,
        Column::Hash,
    ];

    fn name(self) -> &'static str {
        match self {
            Column::Seq => "seq",
            Column::RunId => "run_id",
            Column::TimeMs => "time_ms",
            Column::Kind => "kind",
            Column::SchemaVersion => "schema_version",
            Column::Payload => "payload",
            Column::PrevHash => "prev_hash",
            Column::Hash => "hash",
        }
    }

    /// The stored value as bytes: integers as SQLite's 8-byte big-endian value, text as UTF-8.
    fn bytes(self, event: &StoredEvent) -> Vec<u8> {
        match self {
            Column::Seq => (event.seq as i64).to_be_bytes().to_vec(),
            Column::RunId => event.run_id.as_bytes().to_vec(),
            Column::TimeMs => event.time_ms.to_be_bytes().to_vec(),
            Column::Kind => event.kind.as_bytes().to_vec(),
            Column::SchemaVersion => i64::from(event.schema_version).to_be_bytes().to_vec(),
            Column::Payload => event.payload.clone(),
            Column::PrevHash => event.prev_hash.to_vec(),
            Column::Hash => event.hash.to_vec(),
        }
    }

    /// Writes `bytes` back into the column of row `seq`, keeping the column's storage class.
    fn overwrite(self, conn: &Connection, seq: u64, bytes: &[u8]) -> rusqlite::Result<usize> {
        let name = self.name();
        let integer = || i64::from_be_bytes(bytes.try_into().unwrap());
        match self {
            Column::Seq | Column::TimeMs | Column::SchemaVersion => conn.execute(
                &format!("UPDATE journal SET {name} = ?1 WHERE seq = ?2"),
                rusqlite::params![integer(), seq as i64],
            ),
            Column::RunId | Column::Kind => conn.execute(
                &format!("UPDATE journal SET {name} = CAST(?1 AS TEXT) WHERE seq = ?2"),
                rusqlite::params![bytes, seq as i64],
            ),
            Column::Payload | Column::PrevHash | Column::Hash => conn.execute(
                &format!("UPDATE journal SET {name} = ?1 WHERE seq = ?2"),
                rusqlite::params![bytes, seq as i64],
            ),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn flipping_any_byte_of_any_column_is_reported_at_that_row(
        events in proptest::collection::vec(arbitrary_event(), 1..12),
        row in any::<Index>(),
        column in any::<Index>(),
        byte in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let file = JournalFile::new();
        let mut conn = file.connect();
        append_committed(&mut conn, &events);
        let stored: Vec<_> = journal::events_from(&conn, 0).collect::<Result<_, _>>().unwrap();
        let target = row.get(&stored);
        let editable: Vec<_> = Column::ALL
            .iter()
            .map(|&column| (column, column.bytes(target)))
            .filter(|(_, bytes)| !bytes.is_empty())
            .collect();
        let (column, mut bytes) = column.get(&editable).clone();
        let position = byte.index(bytes.len());
        bytes[position] ^= mask;

        drop_append_only_triggers(&conn);
        if let Err(err) = column.overwrite(&conn, target.seq, &bytes) {
            // Renumbering onto an existing seq violates the primary key: the edit cannot happen.
            prop_assert_eq!(column, Column::Seq);
            prop_assert!(err.to_string().contains("UNIQUE"), "{}", err);
            prop_assert!(journal::verify(&conn).unwrap().is_intact());
            return Ok(());
        }

        // A row renumbered below 1 sorts before the chain; verify reports where the chain should
        // start. Every other edit is reported at the edited row itself.
        let expected = match column {
            Column::Seq if i64::from_be_bytes(bytes.as_slice().try_into().unwrap()) < 1 => 1,
            _ => target.seq,
        };
        let report = journal::verify(&conn).unwrap();
        let bad = report.first_bad.clone().expect("the edit must be detected");
        prop_assert_eq!(bad.seq, expected, "{} edited at byte {}: {}", column.name(), position, bad.reason);
        prop_assert_eq!(report.checked, expected - 1);
    }

    #[test]
    fn deleting_a_row_is_a_gap_unless_it_is_the_tail_which_only_an_anchor_reveals(
        count in 2u64..40,
        victim in any::<Index>(),
    ) {
        let file = JournalFile::new();
        let mut conn = file.connect();
        append_committed(&mut conn, &numbered_events(count as usize));
        let anchor = journal::anchor(&conn).unwrap();
        let victim = victim.index(count as usize) as u64 + 1;

        drop_append_only_triggers(&conn);
        conn.execute("DELETE FROM journal WHERE seq = ?1", [victim as i64]).unwrap();

        if victim < count {
            let (seq, reason) = first_bad(&conn).expect("a gap must be detected");
            prop_assert_eq!(seq, victim);
            prop_assert_eq!(reason, format!("gap: expected seq {victim}, found {} (rows deleted, renumbered or inserted out of order)", victim + 1));
        } else {
            prop_assert_eq!(first_bad(&conn), None, "a truncated tail is a valid shorter journal");
            let report = journal::verify_anchored(&conn, &anchor).unwrap();
            let bad = report.first_bad.expect("the anchor reveals the truncation");
            prop_assert_eq!(bad.seq, count);
            prop_assert!(bad.reason.contains("truncated"), "{}", bad.reason);
        }
    }
}

#[test]
fn swapping_the_contents_of_two_rows_is_reported_at_the_earlier_one() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(6));
    drop_append_only_triggers(&conn);
    // Renumber 2 -> 100, 5 -> 2, 100 -> 5: rows 2 and 5 trade places, each with its own hash.
    for (from, to) in [(2, 100), (5, 2), (100, 5)] {
        conn.execute("UPDATE journal SET seq = ?2 WHERE seq = ?1", [from, to])
            .unwrap();
    }
    let (seq, reason) = first_bad(&conn).unwrap();
    assert_eq!(seq, 2);
    assert!(reason.contains("hash mismatch"), "{reason}");
}

#[test]
fn a_column_edited_into_another_type_is_reported() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(3));
    drop_append_only_triggers(&conn);
    conn.execute("UPDATE journal SET time_ms = 'yesterday' WHERE seq = 2", [])
        .unwrap();
    assert_eq!(
        first_bad(&conn),
        Some((
            2,
            "column time_ms holds TEXT where INTEGER is expected (row edited)".into()
        ))
    );
}

#[test]
fn a_row_inserted_before_seq_one_is_reported_at_seq_one() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(2));
    drop_append_only_triggers(&conn);
    conn.execute(
        "INSERT INTO journal SELECT 0, run_id, time_ms, kind, schema_version, payload, prev_hash, hash \
         FROM journal WHERE seq = 1",
        [],
    )
    .unwrap();
    let (seq, reason) = first_bad(&conn).unwrap();
    assert_eq!(seq, 1);
    assert!(reason.contains("row numbered 0 before seq 1"), "{reason}");
}

/// Builds, in a second file, the journal `events` would produce, so a test can copy rows with
/// correctly recomputed hashes — what a tamperer who knows the hash framing would do.
fn forged_journal(events: &[journal::NewEvent]) -> JournalFile {
    let forged = JournalFile::new();
    append_committed(&mut forged.connect(), events);
    forged
}

/// Replaces rows `from..` of `conn`'s journal with the rows of `forged`.
fn replace_rows_from(conn: &Connection, forged: &JournalFile, from: u64) {
    drop_append_only_triggers(conn);
    conn.execute(
        "ATTACH DATABASE ?1 AS forged",
        [forged.path.to_str().unwrap()],
    )
    .unwrap();
    conn.execute("DELETE FROM journal WHERE seq >= ?1", [from as i64])
        .unwrap();
    conn.execute(
        "INSERT INTO journal SELECT * FROM forged.journal WHERE seq >= ?1",
        [from as i64],
    )
    .unwrap();
    conn.execute_batch("DETACH DATABASE forged").unwrap();
}

#[test]
fn a_row_replaced_with_a_recomputed_hash_is_caught_where_the_next_row_no_longer_links() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    let mut events = numbered_events(5);
    append_committed(&mut conn, &events);

    events[2].payload = b"forged".to_vec();
    let forged = forged_journal(&events[..3]);
    drop_append_only_triggers(&conn);
    conn.execute(
        "ATTACH DATABASE ?1 AS forged",
        [forged.path.to_str().unwrap()],
    )
    .unwrap();
    conn.execute("DELETE FROM journal WHERE seq = 3", [])
        .unwrap();
    conn.execute(
        "INSERT INTO journal SELECT * FROM forged.journal WHERE seq = 3",
        [],
    )
    .unwrap();

    let (seq, reason) = first_bad(&conn).unwrap();
    assert_eq!(seq, 4);
    assert!(reason.contains("prev_hash does not match"), "{reason}");
}

#[test]
fn a_tail_rewritten_with_recomputed_hashes_passes_verify_but_not_the_anchor() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    let mut events = numbered_events(6);
    append_committed(&mut conn, &events);
    let anchor = journal::anchor(&conn).unwrap();

    events[3].kind = "forged".into();
    replace_rows_from(&conn, &forged_journal(&events), 4);

    assert_eq!(
        first_bad(&conn),
        None,
        "a consistent rewrite is invisible without an anchor"
    );
    let report = journal::verify_anchored(&conn, &anchor).unwrap();
    let bad = report.first_bad.unwrap();
    assert_eq!(bad.seq, 6);
    assert!(bad.reason.contains("rewritten"), "{}", bad.reason);
}

#[test]
fn an_anchor_taken_earlier_still_holds_after_honest_appends() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    let empty = journal::anchor(&conn).unwrap();
    assert_eq!(
        empty,
        Anchor {
            seq: 0,
            hash: GENESIS_HASH
        }
    );
    append_committed(&mut conn, &numbered_events(3));
    let anchor = journal::anchor(&conn).unwrap();
    append_committed(&mut conn, &numbered_events(3));
    assert!(journal::verify_anchored(&conn, &empty).unwrap().is_intact());
    assert_eq!(
        journal::verify_anchored(&conn, &anchor).unwrap(),
        VerifyReport {
            checked: 6,
            head: 6,
            first_bad: None
        }
    );
}

#[test]
fn an_anchor_survives_its_text_form() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &[sample_event("r", "k", b"p")]);
    let anchor = journal::anchor(&conn).unwrap();
    let text = anchor.to_string();
    assert!(text.starts_with("1:") && text.len() == 2 + 64, "{text}");
    assert_eq!(text.parse::<Anchor>().unwrap(), anchor);
    assert_eq!(format!("{text}\n").parse::<Anchor>().unwrap(), anchor);
}

#[test]
fn malformed_anchor_text_is_refused_with_the_expected_format() {
    for text in ["", "12", "x:00", "1:abc"] {
        let err = text.parse::<Anchor>().unwrap_err();
        assert!(matches!(err, JournalError::BadAnchor { .. }), "{err:?}");
        assert!(err.to_string().contains("<seq>:<64 hex digits>"), "{err}");
    }
}
