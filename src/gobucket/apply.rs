//! Replacing a Go maand's `data/maand.db` with the imported journal, crash-safely.
//!
//! 1. a write-ahead log the Go maand left is folded into its database (content unchanged:
//!    SQLite does the same when the Go maand next opens it);
//! 2. the Go database is copied aside to `data/go-maand.db` (through a temporary name), and
//!    that copy is the one read; it is never modified afterwards;
//! 3. our database is built in `data/maand.db.importing`: schema, then every import event (run
//!    start and end included) in ONE transaction, then folded into a single file;
//! 4. it is renamed over `data/maand.db`, the commit point.
//!
//! A crash before 4 leaves the Go bucket as it was (the next `maand init` starts over); after
//! 4 the import is complete. On an error the temporary files are removed.

use super::decide::{decide_import, ImportContext, ImportSummary};
use super::read::{read, GoBucket};
use super::{ImportError, KEPT_COPY};
use crate::bucket::{self, Bucket};
use crate::catalog;
use crate::events::{Event, RunFinished, RunOutcome, RunStarted};
use crate::kv::secret::SecretKey;
use std::path::{Path, PathBuf};

/// The temporary name our database is built under.
fn importing_path(bucket: &Bucket) -> PathBuf {
    bucket.data_dir().join("maand.db.importing")
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Folds a write-ahead log the Go maand left next to its database back into it.
fn fold_wal(db: &Path) -> Result<(), ImportError> {
    let wal = sidecar(db, "-wal");
    if !wal.exists() {
        return Ok(());
    }
    let conn = rusqlite::Connection::open(db).map_err(ImportError::damaged(db))?;
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .map_err(ImportError::damaged(db))?;
    drop(conn);
    let left = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    if busy != 0 || left > 0 {
        return Err(ImportError::Busy {
            path: db.to_path_buf(),
        });
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), ImportError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ImportError::io(dir))
}

/// Copies `from` to `to` through a temporary name, flushed to disk. Returns the SHA-256 of
/// the bytes copied.
fn copy_durably(from: &Path, to: &Path) -> Result<String, ImportError> {
    use sha2::Digest;
    let bytes = std::fs::read(from).map_err(ImportError::io(from))?;
    let temp = sidecar(to, ".tmp");
    bucket::write_atomically(&temp, &bytes, 0o600)?;
    std::fs::rename(&temp, to).map_err(ImportError::io(to))?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// The Go bucket in `bucket`, folded and read (nothing is written but the WAL fold).
pub fn inspect(bucket: &Bucket) -> Result<GoBucket, ImportError> {
    let db = bucket.db_path();
    fold_wal(&db)?;
    read(&db)
}

/// Imports the Go bucket in `bucket` in place. `run_started` describes the command for the
/// journal. Returns what was imported.
pub fn import_in_place(
    bucket: &Bucket,
    run_started: RunStarted,
    now_ms: impl Fn() -> i64,
) -> Result<ImportSummary, ImportError> {
    let db = bucket.db_path();
    let kept = bucket.root().join(KEPT_COPY);
    let importing = importing_path(bucket);
    let result = build_import(bucket, &db, &kept, &importing, run_started, &now_ms);
    if result.is_err() {
        for leftover in [
            importing.clone(),
            sidecar(&importing, "-wal"),
            sidecar(&importing, "-shm"),
            kept.clone(),
        ] {
            let _ = std::fs::remove_file(leftover);
        }
    }
    result
}

fn build_import(
    bucket: &Bucket,
    db: &Path,
    kept: &Path,
    importing: &Path,
    run_started: RunStarted,
    now_ms: &impl Fn() -> i64,
) -> Result<ImportSummary, ImportError> {
    let started_ms = now_ms();
    fold_wal(db)?;
    let source_sha256 = copy_durably(db, kept)?;
    let go = read(kept)?;

    let ca = crate::certs::read_bucket_ca(&bucket.secrets_dir())
        .map_err(|e| ImportError::Ca(e.to_string()))?
        .ok_or_else(|| ImportError::Ca("missing: the Go bucket's CA must be there".into()))?;
    let kv_key_path = bucket.kv_key_path();
    let kv_key = if kv_key_path.exists() {
        Some(SecretKey::load(&kv_key_path).map_err(|e| ImportError::KvKey(e.to_string()))?)
    } else {
        None
    };
    let fingerprint = ca.fingerprint();
    let ctx = ImportContext {
        kv_key: kv_key.as_ref(),
        ca_fingerprint: fingerprint.as_str(),
        kept_copy: KEPT_COPY,
        source_sha256: &source_sha256,
        source: kept.to_path_buf(),
    };
    let decision = decide_import(&go, &ctx, bucket::LATEST_SCHEMA, &mut rand::rng())?;

    for leftover in [
        importing.to_path_buf(),
        sidecar(importing, "-wal"),
        sidecar(importing, "-shm"),
    ] {
        if leftover.exists() {
            std::fs::remove_file(&leftover).map_err(ImportError::io(&leftover))?;
        }
    }
    let mut conn = bucket::open(importing)?;
    bucket::migrate(&mut conn, importing)?;
    let run_id = uuid::Uuid::new_v4().to_string();
    let finished_ms = now_ms();
    let mut events = Vec::with_capacity(decision.events.len() + 2);
    events.push(Event::RunStarted(run_started));
    events.extend(decision.events);
    events.push(Event::RunFinished(RunFinished {
        outcome: RunOutcome::Succeeded,
        duration_ms: (finished_ms - started_ms).max(0) as u64,
        error: None,
    }));
    catalog::commit(&mut conn, &run_id, finished_ms, &events, &decision.blobs)?;
    // One self-contained file: nothing of it may live in a -wal beside the temporary name.
    conn.pragma_update(None, "journal_mode", "DELETE")
        .map_err(|source| ImportError::Sqlite {
            path: importing.to_path_buf(),
            source,
        })?;
    drop(conn);
    std::fs::File::open(importing)
        .and_then(|f| f.sync_all())
        .map_err(ImportError::io(importing))?;
    // A shared-memory index the Go maand left describes its database, not ours.
    let shm = sidecar(db, "-shm");
    if shm.exists() {
        std::fs::remove_file(&shm).map_err(ImportError::io(&shm))?;
    }
    std::fs::rename(importing, db).map_err(ImportError::io(db))?;
    sync_dir(&bucket.data_dir())?;
    Ok(decision.summary)
}
