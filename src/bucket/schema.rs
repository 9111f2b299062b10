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
/// A database this user may not write (a bucket shared read-only with an auditor) is opened
/// read-only, so reading commands work; a command that writes then fails on its first write.
pub fn open(path: &Path) -> Result<Connection, BucketError> {
    if path.exists() && !writable(path) {
        return open_read_only(path);
    }
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

/// Whether this user may write the database file and create its WAL side files beside it.
fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let may_write = |p: &Path| {
        let Ok(c_path) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: access(2) reads the NUL-terminated path and nothing else.
        unsafe { libc::access(c_path.as_ptr(), libc::W_OK) == 0 }
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    may_write(path) && may_write(dir.unwrap_or(Path::new(".")))
}

/// A read-only connection through [`read_only_uri`].
fn open_read_only(path: &Path) -> Result<Connection, BucketError> {
    let conn = Connection::open_with_flags(
        read_only_uri(path),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(sqlite_err(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite_err(path))?;
    Ok(conn)
}

/// The `file:` URI that reads the database at `path` without writing anything. When this user
/// may not write the bucket and no WAL file lies beside the database, no writer is active (the
/// last one to close removes it), so the file is read as immutable: SQLite then needs no
/// shared-memory file, which this user could not create.
pub fn read_only_uri(path: &Path) -> String {
    let wal = path.with_file_name(format!(
        "{}-wal",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("maand.db")
    ));
    let mut uri = url_path(path);
    uri.push_str("?mode=ro");
    if !writable(path) && !wal.exists() {
        uri.push_str("&immutable=1");
    }
    uri
}

/// `path` as an SQLite `file:` URI, with the characters URIs reserve percent-encoded.
fn url_path(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '?' | '#' | '%' => uri.push_str(&format!("%{:02X}", c as u32)),
            _ => uri.push(c),
        }
    }
    uri
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
