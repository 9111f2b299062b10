//! Buckets of the Go maand, imported in place by `maand init`.
//!
//! Owns recognising a Go maand database by its schema ([`detect`]), reading it into a typed
//! model ([`read::GoBucket`]), opening its `enc:v1:` secrets, the pure decision of the import
//! events ([`decide::decide_import`]) and replacing `data/maand.db` with the imported journal
//! so that a crash leaves either the untouched Go bucket or the finished import
//! ([`apply::import_in_place`]).
//!
//! It never prints and never writes the Go database: the original is copied aside
//! (`data/go-maand.db`) and only read.

pub mod apply;
pub mod decide;
pub mod read;
mod secret;

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

/// The only `schema_version` of the Go maand this importer understands.
pub const SUPPORTED_GO_SCHEMA: i64 = 1;

/// Where the Go database is kept after an import, relative to the bucket.
pub const KEPT_COPY: &str = "data/go-maand.db";

/// Tables every Go maand database has (schema_version 1).
const GO_TABLES: &[&str] = &[
    "bucket",
    "worker",
    "worker_labels",
    "worker_tags",
    "allocations",
    "job",
    "job_selectors",
    "job_ports",
    "job_certs",
    "job_files",
    "job_commands",
    "key_value",
    "hash",
];

/// What `data/maand.db` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    /// No database file.
    Absent,
    /// A database of this maand (or an empty file `maand init` will fill).
    Ours,
    /// A Go maand database; `schema_version` is `None` when it has no `schema_version` table.
    Go { schema_version: Option<i64> },
    /// Some other SQLite database (its tables).
    Foreign(Vec<String>),
}

/// Why a Go bucket cannot be imported. Every variant leaves the directory as it was.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path} cannot be read as a SQLite database ({detail}): it is damaged or truncated; restore it from a backup and run `maand init` again (nothing was changed)")]
    Damaged { path: PathBuf, detail: String },
    #[error("{path} is a Go maand database without a schema_version table (an old Go maand); run `maand init` of Go maand 1.x once to bring it to schema_version {SUPPORTED_GO_SCHEMA}, then run this `maand init` again (nothing was changed)")]
    NoSchemaVersion { path: PathBuf },
    #[error("{path} is a Go maand database at schema_version {found}; this maand imports schema_version {SUPPORTED_GO_SCHEMA} only; open the bucket with a Go maand release that writes schema_version {SUPPORTED_GO_SCHEMA}, or upgrade maand (nothing was changed)")]
    UnknownSchemaVersion { path: PathBuf, found: i64 },
    #[error("{path}: table `{table}` has no column `{column}`, which schema_version {SUPPORTED_GO_SCHEMA} of the Go maand has; the database was edited or is not from the Go maand (nothing was changed)")]
    MissingColumn {
        path: PathBuf,
        table: String,
        column: String,
    },
    #[error("{path}: {what}; fix it with the Go maand (or restore a backup) and run `maand init` again (nothing was changed)")]
    Unmappable { path: PathBuf, what: String },
    #[error("secret `{key}` in namespace `{namespace}` (version {version} in the Go database) cannot be decrypted with secrets/kv.key: {reason}; put the kv.key this Go bucket was created with in secrets/ and run `maand init` again (nothing was changed)")]
    Secret {
        namespace: String,
        key: String,
        version: i64,
        reason: String,
    },
    #[error("secrets/kv.key: {0}; the Go bucket's secrets cannot be imported without the key it created (nothing was changed)")]
    KvKey(String),
    #[error("secrets/ca.crt, secrets/ca.key: {0} (nothing was changed)")]
    Ca(String),
    #[error("{path} has a write-ahead log another process keeps open (is a Go maand command running?); stop it and run `maand init` again (nothing was changed)")]
    Busy { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Bucket(#[from] crate::bucket::BucketError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

impl ImportError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImportError + '_ {
        move |source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn damaged(path: &Path) -> impl Fn(rusqlite::Error) -> ImportError + '_ {
        move |error| ImportError::Damaged {
            path: path.to_path_buf(),
            detail: error.to_string(),
        }
    }
}

/// Opens a database for reading only; the file is never written.
fn open_read_only(path: &Path) -> Result<Connection, ImportError> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(ImportError::damaged(path))
}

/// The names of the tables of an open database.
fn table_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    let names = stmt.query_map([], |r| r.get(0))?.collect();
    names
}

/// Whether the tables are those of a Go maand database (by schema, never by guessing from
/// contents): every Go table is there, and none of ours (the journal).
fn is_go_schema(tables: &[String]) -> bool {
    !tables.iter().any(|t| t == "journal")
        && GO_TABLES.iter().all(|go| tables.iter().any(|t| t == go))
}

/// Says what the database at `path` is, reading it only.
pub fn detect(path: &Path) -> Result<Detected, ImportError> {
    if !path.exists() {
        return Ok(Detected::Absent);
    }
    let conn = open_read_only(path)?;
    let user_version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(ImportError::damaged(path))?;
    let tables = table_names(&conn).map_err(ImportError::damaged(path))?;
    if tables.is_empty() || tables.iter().any(|t| t == "journal") || user_version > 0 {
        return Ok(Detected::Ours);
    }
    if !is_go_schema(&tables) {
        return Ok(Detected::Foreign(tables));
    }
    let schema_version = if tables.iter().any(|t| t == "schema_version") {
        conn.query_row("SELECT version FROM schema_version WHERE id = 1", [], |r| {
            r.get(0)
        })
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            other => Err(other),
        })
        .map_err(ImportError::damaged(path))?
    } else {
        None
    };
    Ok(Detected::Go { schema_version })
}
