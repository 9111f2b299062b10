//! The readers: `event`, `events_from`, `events_of_run`, `events_of_kind`.

use crate::fixture::{append_committed, drop_append_only_triggers, numbered_events, JournalFile};
use journal::{JournalError, PAGE_ROWS};

#[test]
fn event_beyond_the_head_is_none() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(2));
    assert!(journal::event(&conn, 0).unwrap().is_none());
    assert!(journal::event(&conn, 3).unwrap().is_none());
    assert!(journal::event(&conn, u64::MAX).unwrap().is_none());
}

#[test]
fn iteration_crosses_page_boundaries_without_losing_or_repeating_events() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    let count = 2 * PAGE_ROWS + 5;
    append_committed(&mut conn, &numbered_events(count));
    let seqs: Vec<u64> = journal::events_from(&conn, 0)
        .map(|e| e.unwrap().seq)
        .collect();
    assert_eq!(seqs, (1..=count as u64).collect::<Vec<_>>());

    // numbered_events puts event n in run-(n mod 3) and kind-(n mod 2).
    let of_run = journal::events_of_run(&conn, "run-1").map(|e| e.unwrap().seq);
    assert!(of_run.eq((1..=count as u64).filter(|seq| (seq - 1) % 3 == 1)));
    let of_kind =
        journal::events_of_kind(&conn, "kind-0", PAGE_ROWS as u64).map(|e| e.unwrap().seq);
    assert!(of_kind.eq((PAGE_ROWS as u64 + 1..=count as u64).filter(|seq| (seq - 1) % 2 == 0)));
}

#[test]
fn iteration_from_past_the_head_is_empty() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(3));
    assert_eq!(journal::events_from(&conn, 3).count(), 0);
    assert_eq!(journal::events_from(&conn, u64::MAX).count(), 0);
}

#[test]
fn an_unknown_run_or_kind_yields_nothing() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(3));
    assert_eq!(journal::events_of_run(&conn, "nope").count(), 0);
    assert_eq!(journal::events_of_kind(&conn, "nope", 0).count(), 0);
}

#[test]
fn readers_yield_events_up_to_a_row_edited_into_the_wrong_type_then_stop() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(3));
    drop_append_only_triggers(&conn);
    conn.execute("UPDATE journal SET run_id = x'00ff' WHERE seq = 2", [])
        .unwrap();

    let mut results = journal::events_from(&conn, 0);
    assert_eq!(
        results.next().unwrap().unwrap().seq,
        1,
        "events before the damage are yielded"
    );
    let err = results.next().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::MalformedRow {
                seq: 2,
                column: "run_id",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("BLOB where TEXT is expected"),
        "{err}"
    );
    assert!(
        results.next().is_none(),
        "iteration stops at the first error"
    );
    assert!(journal::event(&conn, 2).is_err());
    assert!(journal::event(&conn, 3).unwrap().is_some());
}

#[test]
fn text_edited_into_invalid_utf8_is_reported_by_readers() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(1));
    drop_append_only_triggers(&conn);
    conn.execute(
        "UPDATE journal SET kind = CAST(x'ff' AS TEXT) WHERE seq = 1",
        [],
    )
    .unwrap();
    let err = journal::event(&conn, 1).unwrap_err();
    assert!(
        matches!(err, JournalError::MalformedRow { column: "kind", .. }),
        "{err:?}"
    );
}
