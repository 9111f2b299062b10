//! `append` and `head`: numbering, optimistic concurrency, and round trips of arbitrary events.

use crate::fixture::{
    append_committed, arbitrary_event, numbered_events, sample_event, JournalFile,
};
use journal::{JournalError, NewEvent, GENESIS_HASH};
use proptest::prelude::*;
use rusqlite::TransactionBehavior;

#[test]
fn an_empty_journal_has_head_zero() {
    let file = JournalFile::new();
    assert_eq!(journal::head(&file.connect()).unwrap(), 0);
}

#[test]
fn the_first_event_is_seq_one_and_links_to_the_genesis_hash() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    assert_eq!(append_committed(&mut conn, &numbered_events(1)), vec![1]);
    let first = journal::event(&conn, 1).unwrap().unwrap();
    assert_eq!(first.prev_hash, GENESIS_HASH);
    assert_ne!(first.hash, GENESIS_HASH);
}

#[test]
fn a_batch_takes_consecutive_seqs_after_the_head() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(2));
    assert_eq!(
        append_committed(&mut conn, &numbered_events(3)),
        vec![3, 4, 5]
    );
    assert_eq!(journal::head(&conn).unwrap(), 5);
}

#[test]
fn each_event_links_to_the_hash_of_its_predecessor() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(2));
    append_committed(&mut conn, &numbered_events(2));
    let events: Vec<_> = journal::events_from(&conn, 0).map(Result::unwrap).collect();
    for pair in events.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
}

#[test]
fn a_stale_expected_head_is_a_conflict_and_writes_nothing() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(2));
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    let err = journal::append(&tx, 1, &numbered_events(3)).unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::Conflict {
                expected: 1,
                actual: 2
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("re-read"), "{err}");
    assert_eq!(journal::head(&tx).unwrap(), 2);
    tx.commit().unwrap();
    assert_eq!(journal::head(&conn).unwrap(), 2);
}

#[test]
fn an_empty_batch_still_checks_the_expected_head() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(1));
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    assert_eq!(journal::append(&tx, 1, &[]).unwrap(), Vec::<u64>::new());
    assert!(matches!(
        journal::append(&tx, 0, &[]),
        Err(JournalError::Conflict { .. })
    ));
}

#[test]
fn a_rolled_back_append_leaves_no_gap() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    append_committed(&mut conn, &numbered_events(1));
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    journal::append(&tx, 1, &numbered_events(4)).unwrap();
    tx.rollback().unwrap();
    assert_eq!(append_committed(&mut conn, &numbered_events(1)), vec![2]);
    assert!(journal::verify(&conn).unwrap().is_intact());
}

#[test]
fn appending_past_the_largest_rowid_is_refused() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    crate::fixture::drop_append_only_triggers(&conn);
    conn.execute(
        "INSERT INTO journal VALUES (?1, 'r', 0, 'k', 1, x'', zeroblob(32), zeroblob(32))",
        [i64::MAX],
    )
    .unwrap();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    let err = journal::append(&tx, i64::MAX as u64, &[sample_event("r", "k", b"")]).unwrap_err();
    assert!(
        matches!(err, JournalError::SequenceExhausted { .. }),
        "{err:?}"
    );
}

#[test]
fn payloads_written_with_encode_read_back_with_decode() {
    let file = JournalFile::new();
    let mut conn = file.connect();
    let value = (String::from("web"), vec![1u16, 2, 3], Some(-7i64));
    let event = NewEvent {
        payload: journal::encode(&value).unwrap(),
        ..sample_event("r", "k", b"")
    };
    append_committed(&mut conn, &[event]);
    let stored = journal::event(&conn, 1).unwrap().unwrap();
    assert_eq!(
        journal::decode::<(String, Vec<u16>, Option<i64>)>(&stored.payload).unwrap(),
        value
    );
}

/// Events plus the sizes of the successive `append` calls that store them.
fn events_in_batches() -> impl Strategy<Value = (Vec<NewEvent>, Vec<usize>)> {
    proptest::collection::vec(arbitrary_event(), 0..40).prop_flat_map(|events| {
        let count = events.len();
        (Just(events), proptest::collection::vec(0..=count, 0..6)).prop_map(
            move |(events, mut cuts)| {
                cuts.push(0);
                cuts.push(count);
                cuts.sort_unstable();
                let sizes = cuts.windows(2).map(|pair| pair[1] - pair[0]).collect();
                (events, sizes)
            },
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn appended_events_read_back_unchanged_whatever_the_batching(
        (events, sizes) in events_in_batches(),
        after in 0u64..45,
    ) {
        let file = JournalFile::new();
        let mut conn = file.connect();
        let mut seqs = Vec::new();
        let mut rest = events.as_slice();
        for size in sizes {
            let (batch, tail) = rest.split_at(size);
            seqs.extend(append_committed(&mut conn, batch));
            rest = tail;
        }
        let count = events.len() as u64;
        prop_assert_eq!(seqs, (1..=count).collect::<Vec<_>>());
        prop_assert_eq!(journal::head(&conn).unwrap(), count);

        let stored: Vec<_> = journal::events_from(&conn, 0).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(stored.len(), events.len());
        for (seq, (stored, event)) in (1..).zip(stored.iter().zip(&events)) {
            prop_assert_eq!(stored.seq, seq);
            prop_assert_eq!(&stored.run_id, &event.run_id);
            prop_assert_eq!(stored.time_ms, event.time_ms);
            prop_assert_eq!(&stored.kind, &event.kind);
            prop_assert_eq!(stored.schema_version, event.schema_version);
            prop_assert_eq!(&stored.payload, &event.payload);
            prop_assert_eq!(journal::event(&conn, seq).unwrap(), Some(stored.clone()));
        }

        let tail: Vec<_> = journal::events_from(&conn, after).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(tail.as_slice(), &stored[(after.min(count) as usize)..]);

        for probe in &events {
            let of_run: Vec<_> = journal::events_of_run(&conn, &probe.run_id).collect::<Result<_, _>>().unwrap();
            let want: Vec<_> = stored.iter().filter(|e| e.run_id == probe.run_id).cloned().collect();
            prop_assert_eq!(of_run, want);

            let of_kind: Vec<_> = journal::events_of_kind(&conn, &probe.kind, after).collect::<Result<_, _>>().unwrap();
            let want: Vec<_> = stored.iter().filter(|e| e.kind == probe.kind && e.seq > after).cloned().collect();
            prop_assert_eq!(of_kind, want);
        }

        let report = journal::verify(&conn).unwrap();
        prop_assert_eq!(report, journal::VerifyReport { checked: count, head: count, first_bad: None });
    }
}
