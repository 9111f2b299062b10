//! The shared journal: a bucket's journal on PostgreSQL, the source of truth for a team of
//! operators whose own `data/maand.db` files are caches of it.
//!
//! This module owns the conversation with PostgreSQL: the address ([`JournalUrl`]) and TLS
//! (`tls`), the tables (`schema`), the bucket lock across hosts (a session advisory lock whose
//! holder others can read), pulling new events into a local cache (verified link by link, then projected),
//! appending a run's events (PostgreSQL first, atomically, with the primary key `(bucket, seq)`
//! as the optimistic head check, then the local cache with the very same rows), and uploading a
//! local journal to become shared. It decides nothing about the bucket, never touches workers and
//! never prints; [`crate::run::Run`] calls it at the start of a run and for every record.

mod freshness;
mod schema;
mod session;
mod tls;
mod url;

pub use freshness::{last_sync, Freshness};
pub use url::JournalUrl;

use crate::bucket::Bucket;
use crate::catalog::{self, Blob, CatalogError};
use crate::events::Event;
use journal::StoredEvent;
use postgres::error::SqlState;
use rusqlite::Connection;
use session::{Pending, Session};

/// Events fetched from PostgreSQL per query (and applied per local transaction) when pulling.
const PULL_PAGE: i64 = 10_000;
/// Rows sent per `INSERT` when appending or uploading.
const UPLOAD_CHUNK: usize = 5_000;

/// Everything that can go wrong talking to the shared journal.
#[derive(Debug, thiserror::Error)]
pub enum SharedJournalError {
    #[error("journal URL {url}: {problem}")]
    BadUrl { url: String, problem: String },
    #[error("cannot reach the shared journal at {url}: {source}; nothing was changed. Check that PostgreSQL is up and that the URL, user, password (PGPASSWORD or ~/.pgpass) and, with sslmode=require, the CA (PGSSLROOTCERT or ~/.postgresql/root.crt) are right")]
    Unreachable {
        url: String,
        #[source]
        source: postgres::Error,
    },
    #[error("shared journal at {url}: {source}")]
    Database {
        url: String,
        #[source]
        source: postgres::Error,
    },
    #[error("the connection to the shared journal at {url} was lost ({reason}); the server released the bucket lock with it, so this command recorded nothing more and stopped. Run it again once PostgreSQL is back (an interrupted deploy: `maand deploy --resume`, from any operator's host)")]
    ConnectionLost { url: String, reason: String },
    #[error("starting the shared journal connection: {0}")]
    Thread(String),
    #[error("TLS to the shared journal at {url}: {problem}")]
    Tls { url: String, problem: String },
    #[error("bucket {bucket} is locked in the shared journal at {url} by {holder}; wait for it to finish (the server releases the lock when that process ends, even if it is killed)")]
    Locked {
        url: String,
        bucket: String,
        holder: String,
    },
    #[error("another operator appended event {seq} of bucket {bucket} to the shared journal at {url} first, so this batch was not stored (histories are never merged). Run the command again: it pulls the new events and decides anew")]
    LostRace {
        url: String,
        bucket: String,
        seq: u64,
    },
    #[error("the shared journal at {url} holds no bucket {bucket}; check the bucket id (`maand info` on a host that has the bucket), or create it with `maand init --journal` or `maand journal push`")]
    NoSuchBucket { url: String, bucket: String },
    #[error("the shared journal at {url} already holds bucket {bucket} (head {head}); join it with `maand init --join {url} {bucket}` in an empty directory instead")]
    AlreadyShared {
        url: String,
        bucket: String,
        head: u64,
    },
    #[error("the local cache data/maand.db of bucket {bucket} does not match the shared journal at {url}: {source}. Move data/maand.db aside and run `maand init --join {url} {bucket}` to make a fresh cache")]
    Diverged {
        url: String,
        bucket: String,
        #[source]
        source: journal::JournalError,
    },
    #[error("the local cache data/maand.db of bucket {bucket} holds event {seq}, but the shared journal at {url} {problem}: the cache belongs to another history. Check journal_bucket in maand.conf; or move data/maand.db aside and run `maand init --join {url} {bucket}` to make a fresh cache")]
    NotThisHistory {
        url: String,
        bucket: String,
        seq: u64,
        problem: &'static str,
    },
    #[error("the shared journal at {url} is damaged at event {seq} of bucket {bucket}: {problem}; restore the database from a backup")]
    Damaged {
        url: String,
        bucket: String,
        seq: u64,
        problem: String,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Bucket(#[from] crate::bucket::BucketError),
}

/// Who holds a bucket's lock, as other operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub host: String,
    pub user: String,
    pub pid: u32,
    pub command: String,
    pub started: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` (user {} on host {}, pid {}, started {})",
            self.command, self.user, self.host, self.pid, self.started
        )
    }
}

/// Events fetched by one query of a pull, with the blobs their batches stored.
type Page = (Vec<StoredEvent>, Vec<Blob>);

/// A connection to the shared journal of one bucket.
pub struct SharedJournal {
    session: Session,
    bucket: String,
}

impl SharedJournal {
    /// Connects. The tables are created by the first writer ([`SharedJournal::lock`],
    /// [`SharedJournal::install`]), so a read costs no more than its own queries.
    pub fn connect(url: &JournalUrl, bucket: &str) -> Result<SharedJournal, SharedJournalError> {
        Ok(SharedJournal {
            session: Session::connect(url)?,
            bucket: bucket.to_string(),
        })
    }

    /// Creates the tables if this database has none yet.
    pub fn install(&self) -> Result<(), SharedJournalError> {
        let url = self.url().to_string();
        self.session
            .run(move |client| install(client).map_err(database_error(&url)))
    }

    pub fn url(&self) -> &JournalUrl {
        self.session.url()
    }

    /// Takes the bucket's advisory lock for the life of this connection and publishes `holder`;
    /// fails at once naming the current holder.
    pub fn lock(&self, holder: &Holder) -> Result<(), SharedJournalError> {
        let (url, bucket, holder) = (self.url().to_string(), self.bucket.clone(), holder.clone());
        let key = lock_key(&bucket);
        self.session.run(move |client| {
            let db = database_error(&url);
            let row = client
                .query_one(
                    "SELECT to_regclass('maand_journal') IS NOT NULL, pg_try_advisory_lock($1, $2)",
                    &[&schema::LOCK_NAMESPACE, &key],
                )
                .map_err(&db)?;
            let (installed, taken): (bool, bool) = (row.get(0), row.get(1));
            if !installed {
                install(client).map_err(&db)?;
            }
            if !taken {
                let row = client
                    .query_opt(
                        "SELECT h.host, h.user_name, h.pid, h.command, h.started
                         FROM maand_lock_holders h
                         WHERE h.bucket = $1 AND EXISTS (
                             SELECT 1 FROM pg_locks l
                             WHERE l.locktype = 'advisory' AND l.granted AND l.pid = h.backend_pid)",
                        &[&bucket],
                    )
                    .map_err(&db)?;
                let holder = match row {
                    Some(row) => Holder {
                        host: row.get(0),
                        user: row.get(1),
                        pid: u32::try_from(row.get::<_, i64>(2)).unwrap_or(0),
                        command: row.get(3),
                        started: row.get(4),
                    }
                    .to_string(),
                    None => "a maand command that has not published its name yet".into(),
                };
                return Err(SharedJournalError::Locked {
                    url: url.clone(),
                    bucket,
                    holder,
                });
            }
            client
                .execute(
                    "INSERT INTO maand_lock_holders
                         (bucket, backend_pid, host, user_name, pid, command, started)
                     VALUES ($1, pg_backend_pid(), $2, $3, $4, $5, $6)
                     ON CONFLICT (bucket) DO UPDATE SET backend_pid = excluded.backend_pid,
                         host = excluded.host, user_name = excluded.user_name, pid = excluded.pid,
                         command = excluded.command, started = excluded.started",
                    &[
                        &bucket,
                        &holder.host,
                        &holder.user,
                        &i64::from(holder.pid),
                        &holder.command,
                        &holder.started,
                    ],
                )
                .map_err(&db)?;
            Ok(())
        })
    }

    /// The bucket's last sequence number in the shared journal (0 when it has none).
    pub fn head(&self) -> Result<u64, SharedJournalError> {
        let (url, bucket) = (self.url().to_string(), self.bucket.clone());
        self.session.run(move |client| {
            let head = client.query_one(
                "SELECT max(seq) FROM maand_journal WHERE bucket = $1",
                &[&bucket],
            );
            match head {
                Ok(row) => Ok(row.get::<_, Option<i64>>(0).unwrap_or(0) as u64),
                // A database maand never wrote to holds no bucket.
                Err(error) if error.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(0),
                Err(error) => Err(database_error(&url)(error)),
            }
        })
    }

    /// Pulls every event after the cache's head into `conn`, page by page: each page's rows
    /// must extend the cache's chain exactly; they are stored with their blobs and projected
    /// in one local transaction. Returns the number of events pulled.
    pub fn pull(&self, conn: &mut Connection, bucket: &Bucket) -> Result<u64, SharedJournalError> {
        let (head, head_hash) = journal::head_link(conn).map_err(CatalogError::from)?;
        let mut next = self.fetch_after(head, head_hash)?;
        let mut pulled = 0;
        loop {
            let (rows, blobs) = next.wait()?;
            let Some(last) = rows.last() else {
                let head = journal::head(conn).map_err(CatalogError::from)?;
                freshness::record_sync(bucket, head);
                return Ok(pulled);
            };
            // The next page is fetched while this one is stored and projected.
            next = self.fetch_after(last.seq, last.hash)?;
            catalog::commit_chained(conn, &rows, &blobs).map_err(|error| match error {
                CatalogError::Journal(source) => SharedJournalError::Diverged {
                    url: self.url().to_string(),
                    bucket: self.bucket.clone(),
                    source,
                },
                other => other.into(),
            })?;
            pulled += rows.len() as u64;
        }
    }

    /// Starts fetching up to [`PULL_PAGE`] events after `head`, with the blobs their batches
    /// stored — after checking, in the same query, that the shared journal holds the event
    /// `head` with the hash `head_hash` (that the cache belongs to this history).
    fn fetch_after(
        &self,
        head: u64,
        head_hash: [u8; 32],
    ) -> Result<Pending<Page>, SharedJournalError> {
        let (url, bucket) = (self.url().to_string(), self.bucket.clone());
        self.session.submit(move |client| {
            let db = database_error(&url);
            let after = head as i64;
            let rows = client
                .query(
                    "SELECT seq, run_id, time_ms, kind, schema_version, payload, prev_hash, hash
                     FROM maand_journal WHERE bucket = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                    &[&bucket, &after, &(PULL_PAGE + 1)],
                )
                .map_err(&db)?;
            let mut events = rows
                .iter()
                .map(|row| stored_event(row, &url, &bucket))
                .collect::<Result<Vec<_>, _>>()?;
            if head > 0 {
                let problem = match events.first() {
                    Some(first) if first.seq == head && first.hash == head_hash => None,
                    Some(first) if first.seq == head => {
                        Some("holds a different event with that number")
                    }
                    _ => Some("has no event with that number"),
                };
                if let Some(problem) = problem {
                    return Err(SharedJournalError::NotThisHistory {
                        url: url.clone(),
                        bucket,
                        seq: head,
                        problem,
                    });
                }
                events.remove(0);
            }
            let Some(last) = events.last().map(|event| event.seq as i64) else {
                return Ok((events, Vec::new()));
            };
            let blobs = client
                .query(
                    "SELECT hash, content FROM maand_blobs
                     WHERE bucket = $1 AND first_seq > $2 AND first_seq <= $3",
                    &[&bucket, &after, &last],
                )
                .map_err(&db)?
                .iter()
                .map(|row| Blob {
                    hash: row.get(0),
                    content: row.get(1),
                })
                .collect();
            Ok((events, blobs))
        })
    }

    /// Records `events` of run `run_id`: chains them after the cache's head, appends them to
    /// the shared journal atomically (failing with [`SharedJournalError::LostRace`] if anyone
    /// appended there since), then stores the very same rows in the cache and
    /// projects them. Returns their sequence numbers.
    pub fn record(
        &self,
        conn: &mut Connection,
        bucket: &Bucket,
        run_id: &str,
        time_ms: i64,
        events: &[Event],
        blobs: &[Blob],
    ) -> Result<Vec<u64>, SharedJournalError> {
        let new_events = catalog::encode_events(run_id, time_ms, events)?;
        let (head, head_hash) = journal::head_link(conn).map_err(CatalogError::from)?;
        let rows =
            journal::chain_after(head, head_hash, &new_events).map_err(CatalogError::from)?;
        self.append(rows.clone(), blobs.to_vec())?;
        catalog::commit_chained(conn, &rows, blobs)?;
        freshness::record_sync(bucket, rows.last().map_or(head, |row| row.seq));
        Ok(rows.iter().map(|row| row.seq).collect())
    }

    /// Appends rows already chained after the shared head, with their blobs, atomically: one
    /// statement for a small batch without blobs (most records), one transaction otherwise.
    /// Each insert carries the link check, so a cache of another history stores nothing.
    fn append(&self, rows: Vec<StoredEvent>, blobs: Vec<Blob>) -> Result<(), SharedJournalError> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let (first_seq, link) = (first.seq, (first.seq - 1, first.prev_hash));
        let (url, bucket) = (self.url().to_string(), self.bucket.clone());
        self.session.run(move |client| {
            let db = database_error(&url);
            // Someone stored a row with one of these numbers first.
            let lost_race = |error: postgres::Error, seq: u64| {
                if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                    return SharedJournalError::LostRace {
                        url: url.clone(),
                        bucket: bucket.clone(),
                        seq,
                    };
                }
                db(error)
            };
            if blobs.is_empty() && rows.len() <= UPLOAD_CHUNK {
                return match insert_events(client, &bucket, &rows, link) {
                    Ok(0) => Err(not_this_history(client, &url, &bucket, link)),
                    Ok(_) => Ok(()),
                    Err(error) => Err(lost_race(error, first_seq)),
                };
            }
            let mut tx = client.transaction().map_err(&db)?;
            insert_blobs(&mut tx, &bucket, first_seq, &blobs).map_err(&db)?;
            let mut chunk_link = link;
            for chunk in rows.chunks(UPLOAD_CHUNK) {
                match insert_events(&mut tx, &bucket, chunk, chunk_link) {
                    Ok(0) => {
                        drop(tx);
                        return Err(not_this_history(client, &url, &bucket, link));
                    }
                    Ok(_) => {}
                    Err(error) => return Err(lost_race(error, chunk[0].seq)),
                }
                let last = &chunk[chunk.len() - 1];
                chunk_link = (last.seq, last.hash);
            }
            tx.commit().map_err(&db)
        })
    }

    /// Uploads the whole local journal `conn` (and every blob) as this bucket's shared journal,
    /// in one transaction. The bucket must have no events there yet.
    pub fn upload(&self, conn: &Connection) -> Result<u64, SharedJournalError> {
        let shared_head = self.head()?;
        if shared_head > 0 {
            return Err(SharedJournalError::AlreadyShared {
                url: self.url().to_string(),
                bucket: self.bucket.clone(),
                head: shared_head,
            });
        }
        let rows = journal::events_from(conn, 0)
            .collect::<Result<Vec<_>, _>>()
            .map_err(CatalogError::from)?;
        let blobs = catalog::all_blobs(conn)?;
        let count = rows.len() as u64;
        self.append(rows, blobs)?;
        Ok(count)
    }
}

/// Pulls what other operators appended into the local cache of `bucket`, without the bucket
/// lock (a read command's refresh). Does nothing for a bucket without a shared journal or
/// without a local database yet.
pub fn catch_up(bucket: &Bucket) -> Result<(), SharedJournalError> {
    let Some(conf) = bucket.conf().ok() else {
        return Ok(());
    };
    let Some((url, bucket_id)) = conf.shared_journal() else {
        return Ok(());
    };
    if !bucket.db_path().exists() {
        return Ok(());
    }
    let mut conn = crate::bucket::open_checked(bucket)?;
    SharedJournal::connect(&url, bucket_id)?.pull(&mut conn, bucket)?;
    Ok(())
}

/// Creates the tables, serialised with other installers by a transaction-scoped advisory lock.
fn install(client: &mut postgres::Client) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&schema::LOCK_NAMESPACE, &schema::INSTALL_LOCK],
    )?;
    tx.batch_execute(schema::DDL)?;
    tx.commit()
}

/// The second advisory-lock key of `bucket`: 31 bits of the SHA-256 of its id, never the
/// schema installation key.
fn lock_key(bucket: &str) -> i32 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bucket.as_bytes());
    let key = i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) & 0x7fff_ffff;
    key.max(schema::INSTALL_LOCK + 1)
}

/// Why an insert linked to event `link.0` with hash `link.1` stored nothing: the shared journal
/// does not hold that event, or holds another one under its number.
fn not_this_history(
    client: &mut postgres::Client,
    url: &str,
    bucket: &str,
    (seq, hash): (u64, [u8; 32]),
) -> SharedJournalError {
    let stored = client.query_opt(
        "SELECT hash FROM maand_journal WHERE bucket = $1 AND seq = $2",
        &[&bucket, &(seq as i64)],
    );
    let problem = match stored {
        Err(error) => return database_error(url)(error),
        Ok(None) => "has no event with that number",
        Ok(Some(row)) if row.get::<_, Vec<u8>>(0) != hash => {
            "holds a different event with that number"
        }
        // It holds the link now: another writer appended it meanwhile.
        Ok(Some(_)) => "did not hold it when this batch was appended",
    };
    SharedJournalError::NotThisHistory {
        url: url.to_string(),
        bucket: bucket.to_string(),
        seq,
        problem,
    }
}

/// Maps a PostgreSQL error: a dropped connection (server stopped, network gone) is
/// [`SharedJournalError::ConnectionLost`], anything else [`SharedJournalError::Database`].
fn database_error(url: &str) -> impl Fn(postgres::Error) -> SharedJournalError + '_ {
    move |source| {
        let io = std::error::Error::source(&source)
            .is_some_and(|cause| cause.downcast_ref::<std::io::Error>().is_some());
        if source.is_closed() || io {
            return SharedJournalError::ConnectionLost {
                url: url.to_string(),
                reason: source.to_string(),
            };
        }
        SharedJournalError::Database {
            url: url.to_string(),
            source,
        }
    }
}

fn stored_event(
    row: &postgres::Row,
    url: &str,
    bucket: &str,
) -> Result<StoredEvent, SharedJournalError> {
    let seq: i64 = row.get(0);
    let damaged = |problem: &str| SharedJournalError::Damaged {
        url: url.to_string(),
        bucket: bucket.to_string(),
        seq: seq as u64,
        problem: problem.to_string(),
    };
    let hash = |index: usize, column: &str| -> Result<[u8; 32], SharedJournalError> {
        row.get::<_, Vec<u8>>(index)
            .try_into()
            .map_err(|_| damaged(&format!("{column} is not 32 bytes long")))
    };
    Ok(StoredEvent {
        seq: seq as u64,
        run_id: row.get(1),
        time_ms: row.get(2),
        kind: row.get(3),
        schema_version: u16::try_from(row.get::<_, i32>(4))
            .map_err(|_| damaged("schema_version is outside 0..=65535"))?,
        payload: row.get(5),
        prev_hash: hash(6, "prev_hash")?,
        hash: hash(7, "hash")?,
    })
}

/// Inserts `rows` provided the journal holds the event they link to (`link`: its seq and hash;
/// seq 0 is the genesis and always held). Returns the number of rows inserted: 0 when the link
/// is missing.
fn insert_events(
    client: &mut impl postgres::GenericClient,
    bucket: &str,
    rows: &[StoredEvent],
    (link_seq, link_hash): (u64, [u8; 32]),
) -> Result<u64, postgres::Error> {
    let seqs: Vec<i64> = rows.iter().map(|row| row.seq as i64).collect();
    let run_ids: Vec<&str> = rows.iter().map(|row| row.run_id.as_str()).collect();
    let times: Vec<i64> = rows.iter().map(|row| row.time_ms).collect();
    let kinds: Vec<&str> = rows.iter().map(|row| row.kind.as_str()).collect();
    let versions: Vec<i32> = rows
        .iter()
        .map(|row| i32::from(row.schema_version))
        .collect();
    let payloads: Vec<&[u8]> = rows.iter().map(|row| row.payload.as_slice()).collect();
    let prev_hashes: Vec<&[u8]> = rows.iter().map(|row| row.prev_hash.as_slice()).collect();
    let hashes: Vec<&[u8]> = rows.iter().map(|row| row.hash.as_slice()).collect();
    client.execute(
        "INSERT INTO maand_journal
             (bucket, seq, run_id, time_ms, kind, schema_version, payload, prev_hash, hash)
         SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::text[],
                                  $6::integer[], $7::bytea[], $8::bytea[], $9::bytea[])
         WHERE $10::bigint = 0 OR EXISTS (
             SELECT 1 FROM maand_journal WHERE bucket = $1 AND seq = $10 AND hash = $11)",
        &[
            &bucket,
            &seqs,
            &run_ids,
            &times,
            &kinds,
            &versions,
            &payloads,
            &prev_hashes,
            &hashes,
            &(link_seq as i64),
            &link_hash.as_slice(),
        ],
    )
}

fn insert_blobs(
    tx: &mut postgres::Transaction<'_>,
    bucket: &str,
    first_seq: u64,
    blobs: &[Blob],
) -> Result<(), postgres::Error> {
    let first_seq = first_seq as i64;
    for chunk in blobs.chunks(UPLOAD_CHUNK) {
        let hashes: Vec<&str> = chunk.iter().map(|blob| blob.hash.as_str()).collect();
        let contents: Vec<&[u8]> = chunk.iter().map(|blob| blob.content.as_slice()).collect();
        tx.execute(
            "INSERT INTO maand_blobs (bucket, hash, first_seq, content)
             SELECT $1, hash, $2, content FROM unnest($3::text[], $4::bytea[]) AS b(hash, content)
             ON CONFLICT (bucket, hash) DO NOTHING",
            &[&bucket, &first_seq, &hashes, &contents],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_lock_keys_are_stable_positive_and_never_the_install_lock() {
        assert_eq!(lock_key("bucket-1"), lock_key("bucket-1"));
        assert_ne!(lock_key("bucket-1"), lock_key("bucket-2"));
        for bucket in ["", "a", "bucket-1", "6f1c0000-0000-4000-8000-000000000000"] {
            assert!(lock_key(bucket) > schema::INSTALL_LOCK, "{bucket}");
        }
    }

    #[test]
    fn a_holder_reads_as_command_user_host_pid_and_start() {
        let holder = Holder {
            host: "ops-1".into(),
            user: "alice".into(),
            pid: 4242,
            command: "maand deploy".into(),
            started: "2026-01-05T09:00:00.000Z".into(),
        };
        assert_eq!(
            holder.to_string(),
            "`maand deploy` (user alice on host ops-1, pid 4242, started 2026-01-05T09:00:00.000Z)"
        );
    }
}
