//! Reading a Go maand database (schema_version 1) into a typed model, as stored: no mapping
//! to our records happens here (that is `decide`). Checks the schema version, the columns the
//! import reads, and the database's integrity first.

use super::{open_read_only, ImportError, SUPPORTED_GO_SCHEMA};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};
use std::path::Path;

/// Everything the import takes from a Go maand database.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoBucket {
    pub schema_version: i64,
    pub bucket_id: String,
    pub update_seq: u64,
    /// In `position` order.
    pub workers: Vec<GoWorker>,
    /// By name.
    pub jobs: Vec<GoJob>,
    pub allocations: Vec<GoAllocation>,
    /// Every row of `key_value`, in the order the Go maand wrote them.
    pub kv: Vec<GoKvRow>,
    pub hashes: Vec<GoHash>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoWorker {
    pub worker_id: String,
    pub ip: String,
    pub memory_mb: Option<String>,
    pub cpu_mhz: Option<String>,
    pub position: i64,
    pub labels: Vec<String>,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoJob {
    pub job_id: String,
    pub name: String,
    pub version: Option<String>,
    pub min_memory_mb: Option<String>,
    pub max_memory_mb: Option<String>,
    pub current_memory_mb: Option<String>,
    pub min_cpu_mhz: Option<String>,
    pub max_cpu_mhz: Option<String>,
    pub current_cpu_mhz: Option<String>,
    pub update_parallel_count: i64,
    pub health_check: Option<String>,
    pub selectors: Vec<String>,
    pub ports: Vec<(String, i64)>,
    pub certs: Vec<GoCert>,
    pub files: Vec<GoFile>,
    pub commands: Vec<GoCommand>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoCert {
    pub name: String,
    pub pkcs8: bool,
    pub one: bool,
    /// JSON of the subject.
    pub subject: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoFile {
    /// As stored: `<job>/<path in the job>` (or the job directory itself).
    pub path: String,
    pub content: Vec<u8>,
    pub is_dir: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoCommand {
    pub name: String,
    pub executed_on: String,
    pub demand_job: Option<String>,
    pub demand_command: Option<String>,
    pub demand_config: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoAllocation {
    pub alloc_id: String,
    pub worker_ip: String,
    pub job: String,
    pub disabled: bool,
    pub removed: bool,
    pub deployment_seq: i64,
    pub new_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoKvRow {
    pub namespace: String,
    pub key: String,
    pub value: Option<String>,
    pub version: i64,
    pub created_date: Option<String>,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoHash {
    pub namespace: String,
    pub key: String,
    pub current_hash: Option<String>,
    pub previous_hash: Option<String>,
    pub current_version: Option<String>,
}

/// Columns the import reads, per table.
const READ_COLUMNS: &[(&str, &[&str])] = &[
    ("bucket", &["bucket_id", "update_seq"]),
    (
        "worker",
        &[
            "worker_id",
            "worker_ip",
            "available_memory_mb",
            "available_cpu_mhz",
            "position",
        ],
    ),
    ("worker_labels", &["worker_id", "label"]),
    ("worker_tags", &["worker_id", "key", "value"]),
    (
        "allocations",
        &[
            "alloc_id",
            "worker_ip",
            "job",
            "disabled",
            "removed",
            "deployment_seq",
            "new_version",
        ],
    ),
    (
        "job",
        &[
            "job_id",
            "name",
            "version",
            "min_memory_mb",
            "max_memory_mb",
            "current_memory_mb",
            "min_cpu_mhz",
            "max_cpu_mhz",
            "current_cpu_mhz",
            "update_parallel_count",
            "health_check",
        ],
    ),
    ("job_selectors", &["job_id", "selector"]),
    ("job_ports", &["job_id", "name", "port"]),
    ("job_certs", &["job_id", "name", "pkcs8", "one", "subject"]),
    ("job_files", &["job_id", "path", "content", "isdir"]),
    (
        "job_commands",
        &[
            "job_id",
            "name",
            "executed_on",
            "demand_job",
            "demand_command",
            "demand_config",
        ],
    ),
    (
        "key_value",
        &[
            "key",
            "value",
            "namespace",
            "version",
            "created_date",
            "deleted",
        ],
    ),
    (
        "hash",
        &[
            "namespace",
            "key",
            "current_hash",
            "previous_hash",
            "current_version",
        ],
    ),
];

/// A column as text, whatever SQLite stored (the Go maand writes numbers into TEXT columns).
fn text(row: &Row, index: usize) -> rusqlite::Result<Option<String>> {
    Ok(match row.get_ref(index)? {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    })
}

fn int(row: &Row, index: usize) -> rusqlite::Result<i64> {
    Ok(match row.get_ref(index)? {
        ValueRef::Integer(i) => i,
        ValueRef::Real(f) => f as i64,
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok())
            .map(|f| f as i64)
            .unwrap_or(0),
        ValueRef::Null | ValueRef::Blob(_) => 0,
    })
}

fn owned(row: &Row, index: usize) -> rusqlite::Result<String> {
    Ok(text(row, index)?.unwrap_or_default())
}

fn bytes(row: &Row, index: usize) -> rusqlite::Result<Vec<u8>> {
    Ok(match row.get_ref(index)? {
        ValueRef::Null => Vec::new(),
        ValueRef::Integer(i) => i.to_string().into_bytes(),
        ValueRef::Real(f) => f.to_string().into_bytes(),
        ValueRef::Text(t) | ValueRef::Blob(t) => t.to_vec(),
    })
}

fn rows<T>(
    conn: &Connection,
    sql: &str,
    map: impl FnMut(&Row) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = conn.prepare(sql)?;
    let items = stmt.query_map([], map)?.collect();
    items
}

/// Reads the Go database at `path` (which `detect` recognised as a Go maand database).
pub fn read(path: &Path) -> Result<GoBucket, ImportError> {
    let conn = open_read_only(path)?;
    let damaged = super::ImportError::damaged(path);
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(&damaged)?;
    if check != "ok" {
        return Err(ImportError::Damaged {
            path: path.to_path_buf(),
            detail: format!("integrity check: {check}"),
        });
    }
    let schema_version = match super::detect(path)? {
        super::Detected::Go {
            schema_version: Some(v),
        } => v,
        super::Detected::Go {
            schema_version: None,
        } => {
            return Err(ImportError::NoSchemaVersion {
                path: path.to_path_buf(),
            })
        }
        other => {
            return Err(ImportError::Unmappable {
                path: path.to_path_buf(),
                what: format!("not a Go maand database ({other:?})"),
            })
        }
    };
    if schema_version != SUPPORTED_GO_SCHEMA {
        return Err(ImportError::UnknownSchemaVersion {
            path: path.to_path_buf(),
            found: schema_version,
        });
    }
    for (table, columns) in READ_COLUMNS {
        let present: Vec<String> = rows(
            &conn,
            &format!("SELECT name FROM pragma_table_info('{table}')"),
            |r| r.get(0),
        )
        .map_err(&damaged)?;
        if let Some(missing) = columns.iter().find(|c| !present.iter().any(|p| p == *c)) {
            return Err(ImportError::MissingColumn {
                path: path.to_path_buf(),
                table: table.to_string(),
                column: missing.to_string(),
            });
        }
    }
    read_rows(&conn, schema_version)
        .map_err(&damaged)?
        .ok_or_else(|| ImportError::Unmappable {
            path: path.to_path_buf(),
            what: "table `bucket` has no row (the Go maand never finished `maand init` here)"
                .into(),
        })
}

fn read_rows(conn: &Connection, schema_version: i64) -> rusqlite::Result<Option<GoBucket>> {
    let bucket: Option<(String, i64)> = rows(
        conn,
        "SELECT bucket_id, update_seq FROM bucket LIMIT 1",
        |r| Ok((owned(r, 0)?, int(r, 1)?)),
    )?
    .into_iter()
    .next();
    let Some((bucket_id, update_seq)) = bucket else {
        return Ok(None);
    };
    let labels = rows(
        conn,
        "SELECT worker_id, label FROM worker_labels ORDER BY rowid",
        |r| Ok((owned(r, 0)?, owned(r, 1)?)),
    )?;
    let tags = rows(
        conn,
        "SELECT worker_id, key, value FROM worker_tags ORDER BY rowid",
        |r| Ok((owned(r, 0)?, owned(r, 1)?, owned(r, 2)?)),
    )?;
    let workers = rows(
        conn,
        "SELECT worker_id, worker_ip, available_memory_mb, available_cpu_mhz, position FROM worker ORDER BY position, worker_ip",
        |r| {
            Ok(GoWorker {
                worker_id: owned(r, 0)?,
                ip: owned(r, 1)?,
                memory_mb: text(r, 2)?,
                cpu_mhz: text(r, 3)?,
                position: int(r, 4)?,
                labels: Vec::new(),
                tags: Vec::new(),
            })
        },
    )?
    .into_iter()
    .map(|mut w| {
        w.labels = labels
            .iter()
            .filter(|(id, _)| *id == w.worker_id)
            .map(|(_, l)| l.clone())
            .collect();
        w.tags = tags
            .iter()
            .filter(|(id, _, _)| *id == w.worker_id)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect();
        w
    })
    .collect();

    let selectors = rows(
        conn,
        "SELECT job_id, selector FROM job_selectors ORDER BY rowid",
        |r| Ok((owned(r, 0)?, owned(r, 1)?)),
    )?;
    let ports = rows(
        conn,
        "SELECT job_id, name, port FROM job_ports ORDER BY rowid",
        |r| Ok((owned(r, 0)?, owned(r, 1)?, int(r, 2)?)),
    )?;
    let certs = rows(
        conn,
        "SELECT job_id, name, pkcs8, one, subject FROM job_certs ORDER BY rowid",
        |r| {
            Ok((
                owned(r, 0)?,
                GoCert {
                    name: owned(r, 1)?,
                    pkcs8: int(r, 2)? != 0,
                    one: int(r, 3)? != 0,
                    subject: text(r, 4)?.unwrap_or_else(|| "{}".into()),
                },
            ))
        },
    )?;
    let files = rows(
        conn,
        "SELECT job_id, path, content, isdir FROM job_files ORDER BY rowid",
        |r| {
            Ok((
                owned(r, 0)?,
                GoFile {
                    path: owned(r, 1)?,
                    content: bytes(r, 2)?,
                    is_dir: int(r, 3)? != 0
                        || matches!(r.get_ref(3)?, ValueRef::Text(t) if t.eq_ignore_ascii_case(b"true")),
                },
            ))
        },
    )?;
    let commands = rows(
        conn,
        "SELECT job_id, name, executed_on, demand_job, demand_command, demand_config FROM job_commands ORDER BY rowid",
        |r| {
            Ok((
                owned(r, 0)?,
                GoCommand {
                    name: owned(r, 1)?,
                    executed_on: owned(r, 2)?,
                    demand_job: text(r, 3)?,
                    demand_command: text(r, 4)?,
                    demand_config: text(r, 5)?,
                },
            ))
        },
    )?;
    let jobs = rows(
        conn,
        "SELECT job_id, name, version, min_memory_mb, max_memory_mb, current_memory_mb, min_cpu_mhz, max_cpu_mhz,
                current_cpu_mhz, update_parallel_count, health_check FROM job ORDER BY name",
        |r| {
            Ok(GoJob {
                job_id: owned(r, 0)?,
                name: owned(r, 1)?,
                version: text(r, 2)?,
                min_memory_mb: text(r, 3)?,
                max_memory_mb: text(r, 4)?,
                current_memory_mb: text(r, 5)?,
                min_cpu_mhz: text(r, 6)?,
                max_cpu_mhz: text(r, 7)?,
                current_cpu_mhz: text(r, 8)?,
                update_parallel_count: int(r, 9)?,
                health_check: text(r, 10)?.filter(|h| !h.trim().is_empty()),
                ..GoJob::default()
            })
        },
    )?
    .into_iter()
    .map(|mut j| {
        let id = j.job_id.clone();
        j.selectors = selectors
            .iter()
            .filter(|(job, _)| *job == id)
            .map(|(_, s)| s.clone())
            .collect();
        j.ports = ports
            .iter()
            .filter(|(job, _, _)| *job == id)
            .map(|(_, n, p)| (n.clone(), *p))
            .collect();
        j.certs = certs
            .iter()
            .filter(|(job, _)| *job == id)
            .map(|(_, c)| c.clone())
            .collect();
        j.files = files
            .iter()
            .filter(|(job, _)| *job == id)
            .map(|(_, f)| f.clone())
            .collect();
        j.commands = commands
            .iter()
            .filter(|(job, _)| *job == id)
            .map(|(_, c)| c.clone())
            .collect();
        j
    })
    .collect();

    let allocations = rows(
        conn,
        "SELECT alloc_id, worker_ip, job, disabled, removed, deployment_seq, new_version FROM allocations ORDER BY job, worker_ip",
        |r| {
            Ok(GoAllocation {
                alloc_id: owned(r, 0)?,
                worker_ip: owned(r, 1)?,
                job: owned(r, 2)?,
                disabled: int(r, 3)? != 0,
                removed: int(r, 4)? != 0,
                deployment_seq: int(r, 5)?,
                new_version: text(r, 6)?.filter(|v| !v.is_empty()),
            })
        },
    )?;
    let kv = rows(
        conn,
        "SELECT namespace, key, value, version, created_date, deleted FROM key_value ORDER BY rowid",
        |r| {
            Ok(GoKvRow {
                namespace: owned(r, 0)?,
                key: owned(r, 1)?,
                value: text(r, 2)?,
                version: int(r, 3)?,
                created_date: text(r, 4)?,
                deleted: int(r, 5)? != 0,
            })
        },
    )?;
    let hashes = rows(
        conn,
        "SELECT namespace, key, current_hash, previous_hash, current_version FROM hash ORDER BY namespace, key",
        |r| {
            Ok(GoHash {
                namespace: owned(r, 0)?,
                key: owned(r, 1)?,
                current_hash: text(r, 2)?.filter(|h| !h.is_empty()),
                previous_hash: text(r, 3)?.filter(|h| !h.is_empty()),
                current_version: text(r, 4)?.filter(|v| !v.is_empty()),
            })
        },
    )?;
    Ok(Some(GoBucket {
        schema_version,
        bucket_id,
        update_seq: update_seq.max(0) as u64,
        workers,
        jobs,
        allocations,
        kv,
        hashes,
    }))
}
