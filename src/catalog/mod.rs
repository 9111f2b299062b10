//! Projections: the catalog tables `maand cat` reads, folded from journal events.
//!
//! Nothing else writes these tables. [`commit`] appends events and applies them in one SQLite
//! transaction; [`rebuild`] drops every projection and replays the journal; [`diff_with_replay`]
//! replays into a scratch database and reports every row that differs from the live tables;
//! [`integrity`] checks what lies below the hash chain (pages, blobs) and salvages a damaged file.
//! Each event type's effect is one function in `project.rs`.

pub mod integrity;
mod project;
pub mod read;
mod replay;
pub mod tables;

pub use project::{job_record_hash, KV_VERSIONS_KEPT, PROJECTION_TABLES};
pub use replay::{
    catalog_at, diff_with_replay, projection_dump, rebuild, RebuildReport, TableDiff,
};

use crate::events::{Event, EventCodecError};
use rusqlite::{Connection, Transaction, TransactionBehavior};

/// Where an event sits in the journal: what a projection may use besides the event itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    pub seq: u64,
    pub run_id: String,
    pub time_ms: i64,
}

/// A failure to record or project events.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("journal: {0}")]
    Journal(#[from] journal::JournalError),
    #[error("journal event {seq}: {source}")]
    Decode {
        seq: u64,
        #[source]
        source: EventCodecError,
    },
    #[error("encoding an event: {0}")]
    Encode(EventCodecError),
    #[error("preparing the replay database: {0}")]
    Scratch(String),
    #[error(transparent)]
    SharedJournal(Box<crate::shared_journal::SharedJournalError>),
}

impl From<crate::shared_journal::SharedJournalError> for CatalogError {
    fn from(error: crate::shared_journal::SharedJournalError) -> Self {
        match error {
            crate::shared_journal::SharedJournalError::Catalog(inner) => inner,
            other => CatalogError::SharedJournal(Box::new(other)),
        }
    }
}

/// Decodes a stored journal row into its metadata and domain event.
pub fn decode_stored(stored: &journal::StoredEvent) -> Result<(EventMeta, Event), CatalogError> {
    let event =
        Event::decode(&stored.kind, stored.schema_version, &stored.payload).map_err(|source| {
            CatalogError::Decode {
                seq: stored.seq,
                source,
            }
        })?;
    let meta = EventMeta {
        seq: stored.seq,
        run_id: stored.run_id.clone(),
        time_ms: stored.time_ms,
    };
    Ok((meta, event))
}

/// Applies one event to every projection and advances the recorded projection position.
pub fn apply(tx: &Transaction, meta: &EventMeta, event: &Event) -> Result<(), CatalogError> {
    project::apply(tx, meta, event)?;
    tx.prepare_cached("UPDATE projection_state SET last_seq = ?1 WHERE id = 1")?
        .execute([meta.seq as i64])?;
    Ok(())
}

/// Extra rows written in the same transaction as the events (content-addressed blobs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub hash: String,
    pub content: Vec<u8>,
}

impl Blob {
    pub fn of(content: Vec<u8>) -> Blob {
        use sha2::Digest;
        Blob {
            hash: hex::encode(sha2::Sha256::digest(&content)),
            content,
        }
    }
}

/// Appends `events` (and stores `blobs`) and applies them to the projections, all in one
/// transaction. Returns the sequence numbers assigned.
pub fn commit(
    conn: &mut Connection,
    run_id: &str,
    time_ms: i64,
    events: &[Event],
    blobs: &[Blob],
) -> Result<Vec<u64>, CatalogError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let seqs = append_and_apply(&tx, run_id, time_ms, events, blobs)?;
    tx.commit()?;
    Ok(seqs)
}

/// The body of [`commit`], for callers that need more work in the same transaction.
pub fn append_and_apply(
    tx: &Transaction,
    run_id: &str,
    time_ms: i64,
    events: &[Event],
    blobs: &[Blob],
) -> Result<Vec<u64>, CatalogError> {
    store_blobs(tx, blobs)?;
    let new_events = encode_events(run_id, time_ms, events)?;
    let head = journal::head(tx)?;
    let seqs = journal::append(tx, head, &new_events)?;
    for (seq, event) in seqs.iter().zip(events) {
        let meta = EventMeta {
            seq: *seq,
            run_id: run_id.to_string(),
            time_ms,
        };
        apply(tx, &meta, event)?;
    }
    Ok(seqs)
}

/// The journal rows of `events`, before numbering and chaining.
pub fn encode_events(
    run_id: &str,
    time_ms: i64,
    events: &[Event],
) -> Result<Vec<journal::NewEvent>, CatalogError> {
    events
        .iter()
        .map(|event| {
            Ok(journal::NewEvent {
                run_id: run_id.to_string(),
                time_ms,
                kind: event.kind().to_string(),
                schema_version: event.schema_version(),
                payload: event.encode().map_err(CatalogError::Encode)?,
            })
        })
        .collect()
}

/// Stores rows that another copy of the journal already numbered and chained (the shared
/// journal), with their blobs, and applies them to the projections — all in one transaction.
/// Rows this journal already holds (a concurrent pull of the same cache stored them) are
/// skipped once their hashes are found equal; the rest must extend the head exactly, or
/// nothing is stored ([`journal::JournalError::Conflict`] or `BrokenLink`).
pub fn commit_chained(
    conn: &mut Connection,
    rows: &[journal::StoredEvent],
    blobs: &[Blob],
) -> Result<(), CatalogError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let head = journal::head(&tx)?;
    let known = rows.partition_point(|row| row.seq <= head);
    for row in &rows[..known] {
        let local = journal::event(&tx, row.seq)?;
        if local.map(|local| local.hash) != Some(row.hash) {
            return Err(journal::JournalError::BrokenLink {
                seq: row.seq,
                problem: "this journal holds a different event with the same number".into(),
            }
            .into());
        }
    }
    store_blobs(&tx, blobs)?;
    let fresh = &rows[known..];
    journal::append_chained(&tx, fresh)?;
    for stored in fresh {
        let (meta, event) = decode_stored(stored)?;
        apply(&tx, &meta, &event)?;
    }
    tx.commit()?;
    Ok(())
}

fn store_blobs(tx: &Transaction, blobs: &[Blob]) -> Result<(), CatalogError> {
    let mut insert =
        tx.prepare_cached("INSERT OR IGNORE INTO blobs (hash, size, content) VALUES (?1, ?2, ?3)")?;
    for blob in blobs {
        insert.execute(rusqlite::params![
            blob.hash,
            blob.content.len() as i64,
            blob.content
        ])?;
    }
    Ok(())
}

/// Every stored blob, for uploading a whole journal.
pub fn all_blobs(conn: &Connection) -> Result<Vec<Blob>, CatalogError> {
    let mut statement = conn.prepare("SELECT hash, content FROM blobs ORDER BY hash")?;
    let blobs = statement
        .query_map([], |row| {
            Ok(Blob {
                hash: row.get(0)?,
                content: row.get(1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(blobs)
}

#[cfg(test)]
mod project_tests;
