//! Schema migrations of `data/maand.db` and the version check every command performs.
//!
//! The schema version is SQLite's `user_version`. Migrations are numbered SQL files under
//! `migrations/`, compiled into the binary and applied in order by `maand init` only.

use super::{Bucket, BucketError};
use rusqlite::Connection;
use std::path::Path;

/// Migration `n` (1-based) is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_foundation.sql"),
    include_str!("../../migrations/0002_catalog.sql"),
    include_str!("../../migrations/0003_deploy.sql"),
    include_str!("../../migrations/0004_health.sql"),
    include_str!("../../migrations/0005_import.sql"),
];

/// The schema version this binary reads and writes.
pub const LATEST_SCHEMA: u32 = MIGRATIONS.len() as u32;

/// Where a database stands relative to this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaState {
    Fresh,
    Behind(u32),
    Current,
    Ahead(u32),
}

fn sqlite_err(path: &Path) -> impl Fn(rusqlite::Error) -> BucketError + '_ {
    move |source| BucketError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens a database file with maand's connection settings (WAL, busy timeout, foreign keys).
pub fn open(path: &Path) -> Result<Connection, BucketError> {
    let conn = Connection::open(path).map_err(sqlite_err(path))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sqlite_err(path))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sqlite_err(path))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sqlite_err(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite_err(path))?;
    Ok(conn)
}

pub fn schema_state(conn: &Connection, path: &Path) -> Result<SchemaState, BucketError> {
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sqlite_err(path))?;
    Ok(match version {
        0 => SchemaState::Fresh,
        v if v < LATEST_SCHEMA => SchemaState::Behind(v),
        v if v == LATEST_SCHEMA => SchemaState::Current,
        v => SchemaState::Ahead(v),
    })
}

/// Opens the bucket's database for any command except `init`, refusing a missing bucket or a
/// schema that is older or newer than this binary.
pub fn open_checked(bucket: &Bucket) -> Result<Connection, BucketError> {
    bucket.require_exists()?;
    let path = bucket.db_path();
    // Read-only first: opening a Go maand database with our settings would write to it.
    if let Ok(crate::gobucket::Detected::Go { .. }) = crate::gobucket::detect(&path) {
        return Err(BucketError::GoBucket {
            dir: bucket.root().to_path_buf(),
        });
    }
    let conn = open(&path)?;
    match schema_state(&conn, &path)? {
        SchemaState::Current => Ok(conn),
        SchemaState::Fresh => Err(BucketError::NotABucket {
            dir: bucket.root().to_path_buf(),
        }),
        SchemaState::Behind(found) => Err(BucketError::SchemaBehind {
            db: path,
            found,
            latest: LATEST_SCHEMA,
        }),
        SchemaState::Ahead(found) => Err(BucketError::SchemaAhead {
            db: path,
            found,
            latest: LATEST_SCHEMA,
        }),
    }
}

/// Applies every migration newer than the database's version, each in its own transaction.
/// Returns the version found before migrating. Refuses a database newer than this binary.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<u32, BucketError> {
    let before = match schema_state(conn, path)? {
        SchemaState::Fresh => 0,
        SchemaState::Behind(v) => v,
        SchemaState::Current => LATEST_SCHEMA,
        SchemaState::Ahead(found) => {
            return Err(BucketError::SchemaAhead {
                db: path.to_path_buf(),
                found,
                latest: LATEST_SCHEMA,
            })
        }
    };
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(before as usize) {
        let version = index as u32 + 1;
        let tx = conn.transaction().map_err(sqlite_err(path))?;
        if version == 1 {
            journal::install(&tx).map_err(|source| BucketError::Journal {
                path: path.to_path_buf(),
                source,
            })?;
        }
        tx.execute_batch(sql).map_err(sqlite_err(path))?;
        tx.pragma_update(None, "user_version", version)
            .map_err(sqlite_err(path))?;
        tx.commit().map_err(sqlite_err(path))?;
    }
    Ok(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_brings_a_fresh_database_to_latest_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut conn = open(&path).unwrap();
        assert_eq!(schema_state(&conn, &path).unwrap(), SchemaState::Fresh);
        assert_eq!(migrate(&mut conn, &path).unwrap(), 0);
        assert_eq!(schema_state(&conn, &path).unwrap(), SchemaState::Current);
        assert_eq!(migrate(&mut conn, &path).unwrap(), LATEST_SCHEMA);
    }

    #[test]
    fn a_newer_database_is_refused_with_upgrade_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut conn = open(&path).unwrap();
        conn.pragma_update(None, "user_version", LATEST_SCHEMA + 1)
            .unwrap();
        let err = migrate(&mut conn, &path).unwrap_err();
        assert!(err.to_string().contains("upgrade maand"), "{err}");
    }
}
