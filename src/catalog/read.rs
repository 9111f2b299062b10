//! Read models over the projections: what `maand info`, `maand cat` and `logs show` display.
//! Reads never take the bucket lock and never write.

use super::CatalogError;
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

/// The bucket's identity and size, for `maand info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketInfo {
    pub bucket_id: String,
    pub update_seq: u64,
    pub schema_version: u32,
    pub journal_head: u64,
    pub projected_seq: u64,
    pub runs: u64,
    /// Workers in the catalog.
    pub workers: u64,
    /// Jobs in the catalog.
    pub jobs: u64,
    /// Allocation rows: active, disabled and removed.
    pub allocations: u64,
}

pub fn bucket_info(conn: &Connection) -> Result<Option<BucketInfo>, CatalogError> {
    let identity = conn
        .query_row(
            "SELECT bucket_id, update_seq, schema_version FROM bucket WHERE id = 1",
            [],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, u32>(2)?,
                ))
            },
        )
        .optional()?;
    let Some((bucket_id, update_seq, schema_version)) = identity else {
        return Ok(None);
    };
    let projected_seq: i64 = conn.query_row(
        "SELECT last_seq FROM projection_state WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    let count = |table: &str| -> Result<u64, CatalogError> {
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(n as u64)
    };
    Ok(Some(BucketInfo {
        bucket_id,
        update_seq: update_seq as u64,
        schema_version,
        journal_head: journal::head(conn)?,
        projected_seq: projected_seq as u64,
        runs: count("runs")?,
        workers: count("workers")?,
        jobs: count("jobs")?,
        allocations: count("allocations")?,
    }))
}

/// The bucket id alone (present once `maand init` has run).
pub fn bucket_id(conn: &Connection) -> Result<Option<String>, CatalogError> {
    Ok(conn
        .query_row("SELECT bucket_id FROM bucket WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?)
}

/// One row of the `runs` projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub command: String,
    pub argv: Vec<String>,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub started_seq: u64,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    /// `succeeded`, `failed`, or `None` while running or after the process died.
    pub outcome: Option<String>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
}

/// Runs that recorded a start but no end: (run id, command, pid), oldest first.
pub fn open_runs(conn: &Connection) -> Result<Vec<(String, String, u32)>, CatalogError> {
    let mut stmt = conn.prepare(
        "SELECT run_id, command, pid FROM runs WHERE outcome IS NULL ORDER BY started_seq",
    )?;
    let rows = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Runs in journal order.
pub fn runs(conn: &Connection) -> Result<Vec<RunRow>, CatalogError> {
    let mut stmt = conn.prepare(
        "SELECT run_id, command, argv, user, host, pid, started_seq, started_ms, finished_ms, outcome, duration_ms, error
         FROM runs ORDER BY started_seq",
    )?;
    let rows = stmt.query_map([], |row| {
        let argv: String = row.get(2)?;
        Ok(RunRow {
            run_id: row.get(0)?,
            command: row.get(1)?,
            argv: serde_json::from_str(&argv).unwrap_or_default(),
            user: row.get(3)?,
            host: row.get(4)?,
            pid: row.get(5)?,
            started_seq: row.get::<_, i64>(6)? as u64,
            started_ms: row.get(7)?,
            finished_ms: row.get(8)?,
            outcome: row.get(9)?,
            duration_ms: row.get::<_, Option<i64>>(10)?.map(|d| d as u64),
            error: row.get(11)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The current (highest) version of one KV key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentKv {
    pub namespace: String,
    pub key: String,
    /// Plaintext, or the sealed form when `sealed`; empty for a deletion.
    pub value: String,
    pub sealed: bool,
    pub deleted: bool,
    pub version: i64,
    /// When the current version was written.
    pub time_ms: i64,
}

/// The current version of every KV key, deleted ones included (flagged), ordered by namespace
/// and key. One ordered scan: the last row of each key is its current version.
pub fn current_kv(conn: &Connection) -> Result<Vec<CurrentKv>, CatalogError> {
    let mut stmt = conn.prepare(
        "SELECT namespace, key, value, sealed, deleted, version, time_ms FROM kv ORDER BY namespace, key, version",
    )?;
    let mut rows = stmt.query([])?;
    let mut current: Vec<CurrentKv> = Vec::new();
    while let Some(row) = rows.next()? {
        let entry = CurrentKv {
            namespace: row.get(0)?,
            key: row.get(1)?,
            value: row.get(2)?,
            sealed: row.get(3)?,
            deleted: row.get(4)?,
            version: row.get(5)?,
            time_ms: row.get(6)?,
        };
        match current.last_mut() {
            Some(last) if last.namespace == entry.namespace && last.key == entry.key => {
                *last = entry
            }
            _ => current.push(entry),
        }
    }
    Ok(current)
}

/// How many current KV values are sealed with the bucket key (secrets, certificate keys).
pub fn sealed_value_count(conn: &Connection) -> Result<u64, CatalogError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM kv k WHERE sealed = 1 AND deleted = 0
           AND version = (SELECT max(version) FROM kv WHERE namespace = k.namespace AND key = k.key)",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}
