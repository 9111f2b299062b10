//! How each event changes the projection tables. One arm per event kind; every arm is total
//! (an event whose subject is missing changes nothing rather than failing the replay).

use super::{CatalogError, EventMeta};
use crate::events::Event;
use rusqlite::{params, Transaction};

/// Every projection table, in an order safe for deleting rows (children first).
pub const PROJECTION_TABLES: &[&str] = &["runs", "bucket"];

pub(super) fn apply(tx: &Transaction, meta: &EventMeta, event: &Event) -> Result<(), CatalogError> {
    match event {
        Event::RunStarted(e) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO runs (run_id, command, argv, maand_version, user, host, pid, started_seq, started_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                meta.run_id,
                e.command,
                serde_json::to_string(&e.argv).expect("argv serializes"),
                e.maand_version,
                e.user,
                e.host,
                e.pid,
                meta.seq as i64,
                meta.time_ms
            ])?;
        }
        Event::RunFinished(e) => {
            tx.prepare_cached(
                "UPDATE runs SET finished_ms = ?2, outcome = ?3, duration_ms = ?4, error = ?5 WHERE run_id = ?1",
            )?
            .execute(params![meta.run_id, meta.time_ms, e.outcome.as_str(), e.duration_ms as i64, e.error])?;
        }
        Event::BucketInitialized(e) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO bucket (id, bucket_id, update_seq, ca_fingerprint, schema_version, initialized_ms)
                 VALUES (1, ?1, 0, ?2, ?3, ?4)",
            )?
            .execute(params![e.bucket_id, e.ca_fingerprint, e.schema_version, meta.time_ms])?;
        }
        Event::BucketUpgraded(e) => {
            tx.prepare_cached("UPDATE bucket SET schema_version = ?1 WHERE id = 1")?
                .execute([e.to_schema])?;
        }
    }
    Ok(())
}
