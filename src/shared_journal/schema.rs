//! Owns the shared journal's tables on PostgreSQL. Several buckets share one database: every
//! row carries its bucket id.
//!
//! * `maand_journal` — the events, with exactly the columns and hash chain of the local SQLite
//!   journal; the primary key `(bucket, seq)` is the optimistic head check: a second writer of
//!   the same sequence number fails instead of forking history.
//! * `maand_blobs` — the content-addressed blobs events refer to, with the first sequence number
//!   of the batch that stored them so a cache pulls only the blobs of the events it pulls.
//! * `maand_lock_holders` — who holds each bucket's advisory lock (host, user, pid, command,
//!   start time); a row counts only while its PostgreSQL backend still holds the lock.
//!
//! Triggers refuse `UPDATE`, `DELETE` and `TRUNCATE` of events and blobs: like the SQLite
//! triggers they stop mistakes, not the database owner. This module never reads or writes rows.

/// The statements creating (idempotently) every table, index and trigger.
pub const DDL: &str = "
CREATE TABLE IF NOT EXISTS maand_journal (
    bucket         text    NOT NULL,
    seq            bigint  NOT NULL CHECK (seq >= 1),
    run_id         text    NOT NULL,
    time_ms        bigint  NOT NULL,
    kind           text    NOT NULL,
    schema_version integer NOT NULL,
    payload        bytea   NOT NULL,
    prev_hash      bytea   NOT NULL,
    hash           bytea   NOT NULL,
    PRIMARY KEY (bucket, seq)
);
CREATE TABLE IF NOT EXISTS maand_blobs (
    bucket    text   NOT NULL,
    hash      text   NOT NULL,
    first_seq bigint NOT NULL,
    content   bytea  NOT NULL,
    PRIMARY KEY (bucket, hash)
);
CREATE INDEX IF NOT EXISTS maand_blobs_by_seq ON maand_blobs (bucket, first_seq);
CREATE TABLE IF NOT EXISTS maand_lock_holders (
    bucket      text    PRIMARY KEY,
    backend_pid integer NOT NULL,
    host        text    NOT NULL,
    user_name   text    NOT NULL,
    pid         bigint  NOT NULL,
    command     text    NOT NULL,
    started     text    NOT NULL
);
CREATE OR REPLACE FUNCTION maand_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'maand shared journal: % on % is refused: journal rows and blobs are append-only', TG_OP, TG_TABLE_NAME;
END
$$;
CREATE OR REPLACE TRIGGER maand_journal_append_only BEFORE UPDATE OR DELETE ON maand_journal
    FOR EACH ROW EXECUTE FUNCTION maand_refuse_change();
CREATE OR REPLACE TRIGGER maand_journal_no_truncate BEFORE TRUNCATE ON maand_journal
    FOR EACH STATEMENT EXECUTE FUNCTION maand_refuse_change();
CREATE OR REPLACE TRIGGER maand_blobs_append_only BEFORE UPDATE OR DELETE ON maand_blobs
    FOR EACH ROW EXECUTE FUNCTION maand_refuse_change();
CREATE OR REPLACE TRIGGER maand_blobs_no_truncate BEFORE TRUNCATE ON maand_blobs
    FOR EACH STATEMENT EXECUTE FUNCTION maand_refuse_change();
";

/// First key of every advisory lock maand takes (`maan` in ASCII), so maand's locks do not
/// collide with other applications' in the same database.
pub const LOCK_NAMESPACE: i32 = 0x6d61_616e;

/// Second key of the schema installation lock (bucket locks use a hash of the bucket id).
pub const INSTALL_LOCK: i32 = 0;
