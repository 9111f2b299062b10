//! Physical integrity of `data/maand.db`, below what the hash chain proves: SQLite's own page
//! and index check, content-addressed blobs re-hashed against their keys, and salvage of a
//! damaged file into a fresh one from whatever journal rows and blobs are still readable.
//!
//! The hash chain proves the journal was not *edited*; it says nothing about a damaged index
//! page (every query through it fails) or a stored job file whose bytes changed (deploy would
//! ship them). These checks close both gaps.

use std::ops::RangeInclusive;
use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sha2::Digest;

use super::CatalogError;

/// What SQLite's `PRAGMA integrity_check` reports, one line per problem; empty when the file is
/// sound. A check that cannot even run (the damage is in the pages it starts from) is itself
/// the one problem reported.
pub fn sqlite_problems(conn: &Connection) -> Vec<String> {
    let lines = conn.prepare("PRAGMA integrity_check").and_then(|mut stmt| {
        stmt.query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()
    });
    match lines {
        Ok(lines) => lines.into_iter().filter(|line| line != "ok").collect(),
        Err(error) => vec![format!(
            "the integrity check itself failed: {}",
            sqlite_message(&error)
        )],
    }
}

/// SQLite's own message for `error`, said once (rusqlite's Display repeats the cause).
pub fn sqlite_message(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
        rusqlite::Error::SqliteFailure(code, None) => code.to_string(),
        other => other.to_string(),
    }
}

/// A stored blob whose content no longer hashes to its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("blob {key} is damaged: its content hashes to {actual}")]
pub struct DamagedBlob {
    /// The key the blob is stored (and referenced) under.
    pub key: String,
    /// The SHA-256 of the bytes actually stored.
    pub actual: String,
}

/// Checks that `content` is what `key` (a SHA-256 hex digest) names.
pub fn check_blob(key: &str, content: &[u8]) -> Result<(), DamagedBlob> {
    let actual = hex::encode(sha2::Sha256::digest(content));
    if actual == key {
        Ok(())
    } else {
        Err(DamagedBlob {
            key: key.to_string(),
            actual,
        })
    }
}

/// Re-hashes every blob, one at a time (memory stays at one blob), and returns the damaged ones
/// in key order.
pub fn damaged_blobs(conn: &Connection) -> Result<Vec<DamagedBlob>, CatalogError> {
    let mut stmt = conn.prepare("SELECT hash, content FROM blobs ORDER BY hash")?;
    let mut rows = stmt.query([])?;
    let mut damaged = Vec::new();
    while let Some(row) = rows.next()? {
        let key: String = row.get(0)?;
        let content: Vec<u8> = row.get(1)?;
        if let Err(bad) = check_blob(&key, &content) {
            damaged.push(bad);
        }
    }
    Ok(damaged)
}

/// What a salvage found and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalvageReport {
    /// Journal rows copied into the fresh file.
    pub events: u64,
    /// Sequence ranges that could not be read (the journal itself is damaged there).
    pub lost_events: Vec<RangeInclusive<u64>>,
    /// Blobs copied (each re-hashed first).
    pub blobs: u64,
    /// Blobs left behind: unreadable, or their content no longer matches their key.
    pub lost_blobs: Vec<String>,
}

impl SalvageReport {
    /// True when nothing the journal refers to was lost.
    pub fn complete(&self) -> bool {
        self.lost_events.is_empty() && self.lost_blobs.is_empty()
    }
}

/// Copies every readable journal row (verbatim, hashes included) and every intact blob of the
/// database at `damaged` into the new database at `fresh` (which must not exist yet), then
/// replays the projections there when no journal row was lost. The damaged file is only read.
pub fn salvage(damaged: &Path, fresh: &Path) -> Result<SalvageReport, CatalogError> {
    let source = Connection::open_with_flags(
        damaged,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut target =
        crate::bucket::open(fresh).map_err(|e| CatalogError::Scratch(e.to_string()))?;
    crate::bucket::migrate(&mut target, fresh).map_err(|e| CatalogError::Scratch(e.to_string()))?;
    let unreadable = |_: Option<rusqlite::Error>| {
        CatalogError::Scratch(
            "no journal row can be read: the file is damaged where SQLite keeps its schema or the journal's table; restore data/maand.db from a backup".into(),
        )
    };
    let user_version: u32 = source
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| unreadable(Some(e)))?;
    if user_version != crate::bucket::LATEST_SCHEMA {
        return Err(CatalogError::Scratch(format!(
            "the damaged database has schema version {user_version}, this maand writes {}: salvage it with the maand version that wrote it",
            crate::bucket::LATEST_SCHEMA
        )));
    }

    let tx = target.transaction()?;
    let head = last_readable_seq(&source);
    let mut report = SalvageReport {
        events: 0,
        lost_events: Vec::new(),
        blobs: 0,
        lost_blobs: Vec::new(),
    };
    {
        let read = source.prepare(
            "SELECT run_id, time_ms, kind, schema_version, payload, prev_hash, hash FROM journal WHERE seq = ?1",
        );
        let mut write = tx.prepare(
            "INSERT INTO journal (seq, run_id, time_ms, kind, schema_version, payload, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        match (read, head) {
            (Ok(mut read), Some(head)) => {
                for seq in 1..=head {
                    let row = read
                        .query_row([seq as i64], |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, i64>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, i64>(3)?,
                                r.get::<_, Vec<u8>>(4)?,
                                r.get::<_, Vec<u8>>(5)?,
                                r.get::<_, Vec<u8>>(6)?,
                            ))
                        })
                        .optional();
                    match row {
                        Ok(Some((run_id, time_ms, kind, version, payload, prev, hash))) => {
                            write.execute(rusqlite::params![
                                seq as i64, run_id, time_ms, kind, version, payload, prev, hash
                            ])?;
                            report.events += 1;
                        }
                        Ok(None) | Err(_) => note_lost(&mut report.lost_events, seq),
                    }
                }
            }
            (Ok(_), None) => return Err(unreadable(None)),
            (Err(error), _) => return Err(unreadable(Some(error))),
        }
    }
    {
        let mut write =
            tx.prepare("INSERT INTO blobs (hash, size, content) VALUES (?1, ?2, ?3)")?;
        for key in readable_blob_keys(&source) {
            let content = source
                .query_row("SELECT content FROM blobs WHERE hash = ?1", [&key], |r| {
                    r.get::<_, Vec<u8>>(0)
                })
                .ok();
            match content {
                Some(content) if check_blob(&key, &content).is_ok() => {
                    write.execute(rusqlite::params![key, content.len() as i64, content])?;
                    report.blobs += 1;
                }
                _ => report.lost_blobs.push(key),
            }
        }
    }
    tx.commit()?;
    if report.lost_events.is_empty() {
        super::rebuild(&mut target)?;
    }
    Ok(report)
}

/// The highest journal sequence that can be read, found through the table itself rather than
/// an index (a damaged index must not hide the journal's length); `None` when even that fails.
fn last_readable_seq(source: &Connection) -> Option<u64> {
    source
        .query_row("SELECT max(seq) FROM journal", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .ok()
        .map(|max| max.unwrap_or(0) as u64)
}

/// The blob keys a scan can still read; a scan that breaks off keeps what it read before.
fn readable_blob_keys(source: &Connection) -> Vec<String> {
    let mut keys = Vec::new();
    let Ok(mut stmt) = source.prepare("SELECT hash FROM blobs") else {
        return keys;
    };
    let Ok(mut rows) = stmt.query([]) else {
        return keys;
    };
    while let Ok(Some(row)) = rows.next() {
        if let Ok(key) = row.get::<_, String>(0) {
            keys.push(key);
        }
    }
    keys
}

/// Adds `seq` to the lost ranges, extending the last range when it is adjacent.
fn note_lost(lost: &mut Vec<RangeInclusive<u64>>, seq: u64) {
    match lost.last_mut() {
        Some(range) if *range.end() + 1 == seq => *range = *range.start()..=seq,
        _ => lost.push(seq..=seq),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_matches_its_key_and_a_changed_byte_does_not() {
        let content = b"start:\n\ttrue\n".to_vec();
        let key = hex::encode(sha2::Sha256::digest(&content));
        assert!(check_blob(&key, &content).is_ok());
        let mut changed = content.clone();
        changed[0] ^= 1;
        let err = check_blob(&key, &changed).unwrap_err();
        assert_eq!(err.key, key);
        assert_ne!(err.actual, key);
        assert!(err
            .to_string()
            .starts_with(&format!("blob {key} is damaged")));
    }

    #[test]
    fn lost_sequences_fold_into_ranges() {
        let mut lost = Vec::new();
        for seq in [3, 4, 5, 9, 11, 12] {
            note_lost(&mut lost, seq);
        }
        assert_eq!(lost, vec![3..=5, 9..=9, 11..=12]);
    }
}
