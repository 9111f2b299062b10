-- Foundation: content-addressed blobs, projection bookkeeping, bucket identity, runs.
-- The journal table itself is created by the `journal` crate (journal::install).

-- Content-addressed storage for big payloads (job files, staged trees). Rows are written in the
-- same transaction as the events that reference them and are never updated.
CREATE TABLE blobs (
    hash    TEXT PRIMARY KEY,      -- sha256 hex of content
    size    INTEGER NOT NULL,
    content BLOB NOT NULL
) WITHOUT ROWID;

-- The journal position the projections reflect.
CREATE TABLE projection_state (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL
);
INSERT INTO projection_state (id, last_seq) VALUES (1, 0);

-- Projection: the bucket's identity.
CREATE TABLE bucket (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    bucket_id      TEXT NOT NULL,
    update_seq     INTEGER NOT NULL,
    ca_fingerprint TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    initialized_ms INTEGER NOT NULL
);

-- Projection: every maand invocation that recorded anything.
CREATE TABLE runs (
    run_id        TEXT PRIMARY KEY,
    command       TEXT NOT NULL,
    argv          TEXT NOT NULL,     -- JSON array
    maand_version TEXT NOT NULL,
    user          TEXT NOT NULL,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    started_seq   INTEGER NOT NULL,
    started_ms    INTEGER NOT NULL,
    finished_ms   INTEGER,
    outcome       TEXT,              -- NULL while running or when the process died
    duration_ms   INTEGER,
    error         TEXT
);
CREATE INDEX runs_started ON runs (started_seq);
