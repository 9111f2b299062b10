//! Several writers on separate connections to one WAL database: optimistic appends with
//! `BEGIN IMMEDIATE` and retry on conflict never leave a gap, a duplicate or a broken chain.

use crate::fixture::{sample_event, JournalFile};
use journal::{JournalError, NewEvent};
use proptest::prelude::*;
use rusqlite::TransactionBehavior;
use std::sync::Barrier;

/// What one writer appended: its batches and the seqs each got.
struct Written {
    batches: Vec<(Vec<NewEvent>, Vec<u64>)>,
}

/// One writer: decides each batch on the head it last saw (read outside any transaction, so it
/// can go stale), appends in `BEGIN IMMEDIATE`, and on `Conflict` rolls back and tries again.
fn writer(
    file: &JournalFile,
    start: &Barrier,
    writer: usize,
    appends: usize,
    batch: usize,
) -> Written {
    let mut conn = file.connect();
    let mut batches = Vec::new();
    start.wait();
    for append in 0..appends {
        let events: Vec<_> = (0..batch)
            .map(|item| {
                sample_event(
                    &format!("writer-{writer}"),
                    "written",
                    format!("{append}/{item}").as_bytes(),
                )
            })
            .collect();
        let seqs = loop {
            let seen = journal::head(&conn).unwrap();
            std::thread::yield_now();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            match journal::append(&tx, seen, &events) {
                Ok(seqs) => {
                    tx.commit().unwrap();
                    break seqs;
                }
                Err(JournalError::Conflict { .. }) => continue, // dropping `tx` rolls back
                Err(err) => panic!("writer {writer}: {err}"),
            }
        };
        batches.push((events, seqs));
    }
    Written { batches }
}

fn run_writers(writers: usize, appends: usize, batch: usize) {
    let file = JournalFile::new();
    let conn = file.connect();
    let start = Barrier::new(writers);
    let written: Vec<Written> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|id| {
                let (file, start) = (&file, &start);
                scope.spawn(move || writer(file, start, id, appends, batch))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });

    let total = (writers * appends * batch) as u64;
    let mut all_seqs = Vec::new();
    for (events, seqs) in written.iter().flat_map(|w| &w.batches) {
        let first = seqs[0];
        assert_eq!(
            *seqs,
            (first..first + events.len() as u64).collect::<Vec<_>>(),
            "a batch is contiguous"
        );
        for (event, &seq) in events.iter().zip(seqs) {
            let stored = journal::event(&conn, seq).unwrap().unwrap();
            assert_eq!(
                (&stored.run_id, &stored.payload),
                (&event.run_id, &event.payload)
            );
        }
        all_seqs.extend_from_slice(seqs);
    }
    all_seqs.sort_unstable();
    assert_eq!(
        all_seqs,
        (1..=total).collect::<Vec<_>>(),
        "no gap and no duplicate"
    );
    assert_eq!(
        journal::verify(&conn).unwrap(),
        journal::VerifyReport {
            checked: total,
            head: total,
            first_bad: None
        }
    );
}

#[test]
fn four_writers_appending_two_hundred_batches_each_leave_an_intact_journal() {
    run_writers(4, 200, 3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn concurrent_writers_never_produce_a_gap_or_a_duplicate(
        writers in 2usize..=4,
        appends in 1usize..=15,
        batch in 1usize..=4,
    ) {
        run_writers(writers, appends, batch);
    }
}
