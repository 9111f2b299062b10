//! Owns writing: reading the head, the optimistic concurrency check and appending a batch of
//! events with their chain hashes. It never opens, commits or rolls back transactions: the
//! caller owns the transaction so it can update its projections atomically with the append.

use crate::chain::{RowImage, GENESIS_HASH};
use crate::event::chain_link;
use crate::{JournalError, NewEvent};
use rusqlite::{Connection, OptionalExtension, Transaction};

const INSERT: &str = "INSERT INTO journal \
    (seq, run_id, time_ms, kind, schema_version, payload, prev_hash, hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// Sequence number of the last event, or 0 for an empty journal.
///
/// Fails with [`JournalError::MalformedRow`] if the last row's `seq` or `hash` was damaged
/// outside this crate, since nothing could be appended after it.
pub fn head(conn: &Connection) -> Result<u64, JournalError> {
    Ok(head_link(conn)?.0)
}

/// The head's sequence number and hash: what the next event must link to.
/// An empty journal yields `(0, GENESIS_HASH)`.
pub(crate) fn head_link(conn: &Connection) -> Result<(u64, [u8; 32]), JournalError> {
    let mut statement =
        conn.prepare_cached("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1")?;
    let link = statement
        .query_row([], |row| {
            let seq = row.get::<_, i64>(0)?;
            Ok(chain_link(seq, row.get_ref(1)?).map_err(|defect| defect.into_error(seq)))
        })
        .optional()?;
    link.unwrap_or(Ok((0, GENESIS_HASH)))
}

/// Appends `events` after `expected_head`, inside the caller's transaction, and returns their
/// sequence numbers (`expected_head + 1 ..= expected_head + events.len()`).
///
/// If the journal's head is not `expected_head`, nothing is written and the result is
/// [`JournalError::Conflict`]: the caller decided on stale state and must roll back, re-read
/// and decide again. Open the transaction with `TransactionBehavior::Immediate` (`BEGIN
/// IMMEDIATE`) so the head cannot move between this check and the commit; a deferred
/// transaction can instead fail with `SQLITE_BUSY` when another connection wrote first.
///
/// On any other error some events of the batch may already be inserted in the transaction;
/// roll it back (dropping a `rusqlite::Transaction` does) rather than committing.
pub fn append(
    tx: &Transaction<'_>,
    expected_head: u64,
    events: &[NewEvent],
) -> Result<Vec<u64>, JournalError> {
    let (head, mut prev_hash) = head_link(tx)?;
    if head != expected_head {
        return Err(JournalError::Conflict {
            expected: expected_head,
            actual: head,
        });
    }
    u64::try_from(events.len())
        .ok()
        .and_then(|count| head.checked_add(count))
        .filter(|&last| i64::try_from(last).is_ok())
        .ok_or(JournalError::SequenceExhausted {
            head,
            count: events.len(),
        })?;

    let mut insert = tx.prepare_cached(INSERT)?;
    let mut seqs = Vec::with_capacity(events.len());
    for (seq, event) in (head + 1..).zip(events) {
        // The range check above keeps every seq within SQLite's signed 64-bit rowid.
        let row_seq = seq as i64;
        let schema_version = i64::from(event.schema_version);
        let hash = RowImage {
            seq: row_seq,
            prev_hash: &prev_hash,
            run_id: event.run_id.as_bytes(),
            time_ms: event.time_ms,
            kind: event.kind.as_bytes(),
            schema_version,
            payload: &event.payload,
        }
        .hash();
        insert.execute(rusqlite::params![
            row_seq,
            event.run_id,
            event.time_ms,
            event.kind,
            schema_version,
            event.payload,
            prev_hash.as_slice(),
            hash.as_slice(),
        ])?;
        prev_hash = hash;
        seqs.push(seq);
    }
    Ok(seqs)
}
