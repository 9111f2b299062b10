//! Owns writing: reading the head, the optimistic concurrency check, chaining a batch of new
//! events after a head, and storing rows — new ones, or rows already chained by another copy
//! of the same journal (which must extend the head exactly). It never opens, commits or rolls
//! back transactions: the caller owns the transaction so it can update its projections
//! atomically with the append.

use crate::chain::{RowImage, GENESIS_HASH};
use crate::event::chain_link;
use crate::{JournalError, NewEvent, StoredEvent};
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
pub fn head_link(conn: &Connection) -> Result<(u64, [u8; 32]), JournalError> {
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
    let (head, prev_hash) = head_link(tx)?;
    if head != expected_head {
        return Err(JournalError::Conflict {
            expected: expected_head,
            actual: head,
        });
    }
    let rows = chain_after(head, prev_hash, events)?;
    insert_rows(tx, &rows)?;
    Ok(rows.iter().map(|row| row.seq).collect())
}

/// The rows [`append`] would store for `events` after the event `head` whose hash is
/// `head_hash`: sequence numbers, `prev_hash` links and hashes, computed without touching any
/// database. Another store holding a copy of the journal (a shared server, say) uses this to
/// write exactly the rows the local journal will hold.
pub fn chain_after(
    head: u64,
    head_hash: [u8; 32],
    events: &[NewEvent],
) -> Result<Vec<StoredEvent>, JournalError> {
    u64::try_from(events.len())
        .ok()
        .and_then(|count| head.checked_add(count))
        .filter(|&last| i64::try_from(last).is_ok())
        .ok_or(JournalError::SequenceExhausted {
            head,
            count: events.len(),
        })?;
    let mut prev_hash = head_hash;
    let mut rows = Vec::with_capacity(events.len());
    for (seq, event) in (head + 1..).zip(events) {
        // The range check above keeps every seq within SQLite's signed 64-bit rowid.
        let hash = RowImage {
            seq: seq as i64,
            prev_hash: &prev_hash,
            run_id: event.run_id.as_bytes(),
            time_ms: event.time_ms,
            kind: event.kind.as_bytes(),
            schema_version: i64::from(event.schema_version),
            payload: &event.payload,
        }
        .hash();
        rows.push(StoredEvent {
            seq,
            run_id: event.run_id.clone(),
            time_ms: event.time_ms,
            kind: event.kind.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
            prev_hash,
            hash,
        });
        prev_hash = hash;
    }
    Ok(rows)
}

/// Checks that `rows` — chained by another copy of this journal — extend the event `head`
/// whose hash is `head_hash`: consecutive sequence numbers from `head + 1`, each `prev_hash`
/// linking to its predecessor and each hash matching its row. Pure; see [`append_chained`].
pub fn check_extends(
    head: u64,
    head_hash: [u8; 32],
    rows: &[StoredEvent],
) -> Result<(), JournalError> {
    let mut expected = (head, head_hash);
    for row in rows {
        if row.seq != expected.0 + 1 {
            return Err(JournalError::Conflict {
                expected: row.seq.saturating_sub(1),
                actual: expected.0,
            });
        }
        let broken = |problem: &str| JournalError::BrokenLink {
            seq: row.seq,
            problem: problem.to_owned(),
        };
        if row.prev_hash != expected.1 {
            return Err(broken(
                "its prev_hash is not the hash of the event before it here",
            ));
        }
        let hash = RowImage {
            seq: row.seq as i64,
            prev_hash: &row.prev_hash,
            run_id: row.run_id.as_bytes(),
            time_ms: row.time_ms,
            kind: row.kind.as_bytes(),
            schema_version: i64::from(row.schema_version),
            payload: &row.payload,
        }
        .hash();
        if hash != row.hash {
            return Err(broken("its stored hash does not match its columns"));
        }
        expected = (row.seq, row.hash);
    }
    Ok(())
}

/// Stores rows that another copy of this journal already chained, inside the caller's
/// transaction, after checking with [`check_extends`] that they extend this journal's head.
///
/// Fails with [`JournalError::Conflict`] when the first row is not numbered `head + 1` (this
/// copy is behind or ahead) and with [`JournalError::BrokenLink`] when the rows do not link to
/// this head or to each other: the two copies have diverged. Nothing is written then.
pub fn append_chained(tx: &Transaction<'_>, rows: &[StoredEvent]) -> Result<(), JournalError> {
    let (head, head_hash) = head_link(tx)?;
    if i64::try_from(rows.last().map_or(0, |row| row.seq)).is_err() {
        return Err(JournalError::SequenceExhausted {
            head,
            count: rows.len(),
        });
    }
    check_extends(head, head_hash, rows)?;
    insert_rows(tx, rows)
}

fn insert_rows(tx: &Transaction<'_>, rows: &[StoredEvent]) -> Result<(), JournalError> {
    let mut insert = tx.prepare_cached(INSERT)?;
    for row in rows {
        // Callers checked every seq fits SQLite's signed 64-bit rowid.
        insert.execute(rusqlite::params![
            row.seq as i64,
            row.run_id,
            row.time_ms,
            row.kind,
            i64::from(row.schema_version),
            row.payload,
            row.prev_hash.as_slice(),
            row.hash.as_slice(),
        ])?;
    }
    Ok(())
}
